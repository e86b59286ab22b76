"""TensorRT's INT8 calibration cache (text format), written from our own calibration statistics.

TensorRT's ``IInt8EntropyCalibrator2`` writes (and reads back instead of recalibrating) a cache::

    TRT-<version>-EntropyCalibration2
    <tensor name>: <scale as the 8 hex digits of its big-endian IEEE-754 float32 bits>
    ...

one line per network tensor, scale = amax / 127. TensorRT names its tensors after the ONNX graph's,
so we can produce the same file without TensorRT: run the FP32 ONNX on ONNX Runtime with ORT's
entropy calibrator (the same KL-divergence threshold search idea as EntropyCalibration2) over the
bundle's calibration set, take each tensor's threshold as amax, and write the lines above. On the
device, ``edgekit build-engine --recalibrate`` rebuilds the cache with TensorRT's own calibrator
(use it when the device's TensorRT rejects the header version).
"""

from __future__ import annotations

import contextlib
import re
import sys
import struct
import tempfile
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError

HEADER_RE = re.compile(r"^TRT-(\d+)-(EntropyCalibration2|EntropyCalibration|MinMaxCalibration|LegacyCalibration)$")
LINE_RE = re.compile(r"^(.+): ([0-9a-f]{8})$")


def trt_version_number(version: str) -> int:
    """'10.3.0' -> 100300 and '8.6.1' -> 8601 (TensorRT's NV_TENSORRT_VERSION encoding)."""
    parts = [int(p) for p in (version.split(".") + ["0", "0"])[:3]]
    major, minor, patch = parts
    return major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch


def scale_hex(scale: float) -> str:
    return struct.pack(">f", float(scale)).hex()


def hex_scale(text: str) -> float:
    return struct.unpack(">f", bytes.fromhex(text))[0]


def format_cache(scales: dict[str, float], version: str, algorithm: str = "EntropyCalibration2") -> str:
    lines = [f"TRT-{trt_version_number(version)}-{algorithm}"]
    lines += [f"{name}: {scale_hex(s)}" for name, s in scales.items()]
    return "\n".join(lines) + "\n"


def parse_cache(text: str) -> tuple[int, str, dict[str, float]]:
    """(version number, algorithm, tensor -> scale); raises EdgekitError on anything malformed."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or not (head := HEADER_RE.match(lines[0])):
        raise EdgekitError("not a TensorRT calibration cache: bad header line",
                           "expected TRT-<version>-EntropyCalibration2")
    scales = {}
    for ln in lines[1:]:
        m = LINE_RE.match(ln)
        if not m:
            raise EdgekitError(f"not a TensorRT calibration cache: bad line {ln[:80]!r}")
        scales[m.group(1)] = hex_scale(m.group(2))
    return int(head.group(1)), head.group(2), scales


def tensor_scales(fp32_onnx: Path, calibration: np.ndarray, method: str = "entropy") -> dict[str, float]:
    """amax/127 per tensor (graph input, every node output) from ORT's calibrator on the FP32 model."""
    import onnx
    from onnxruntime.quantization.calibrate import CalibrationDataReader, CalibrationMethod, create_calibrator

    from edgekit.backends.onnx_quant import NpzReader

    model = onnx.load(str(fp32_onnx))
    input_name = model.graph.input[0].name
    reader = type("Reader", (NpzReader, CalibrationDataReader), {})(calibration, input_name)
    calib_method = {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax}[method]
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):  # ORT prints stats
        calibrator = create_calibrator(str(fp32_onnx), None, augmented_model_path=str(Path(tmp) / "aug.onnx"),
                                       calibrate_method=calib_method, extra_options={"symmetric": True})
        calibrator.collect_data(reader)
        data = calibrator.compute_data()
    ranges = {name: td.range_value for name, td in data.data.items()}
    # The network input is calibrated from the data itself (entropy on inputs clips useful range).
    ranges[input_name] = (float(calibration.min()), float(calibration.max()))
    order = [input_name] + [o for n in model.graph.node for o in n.output]
    scales = {}
    for name in order:
        if name in ranges:
            lo, hi = (float(np.asarray(v).max()) if np.ndim(v) else float(v) for v in ranges[name])
            amax = max(abs(lo), abs(hi))
            scales[name] = max(amax, 1e-8) / 127.0
    if not scales:
        raise EdgekitError(f"calibration produced no tensor ranges for {fp32_onnx}")
    return scales
