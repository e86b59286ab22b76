"""The one TensorRT engine builder and INT8 calibrator, used by ``edgekit build-engine`` and by the
TensorRT session that builds on the device (``edgekit bench``), so both write the same engine.

What to build comes from the artifact's recorded build settings (``meta["build"]``, written by the
TensorRT backend): the ONNX file (for INT8 the QDQ graph: explicit INT8), the calibration cache when
implicit INT8 is asked for, and the optimization profile's min/opt/max shapes (the target's batches).

Written against the TensorRT 10 Python API with the TensorRT 8 fallbacks JetPack 4/5 need.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import RuntimeLayerError, import_runtime

WORKSPACE_MB = 1024
# The precisions an engine is built at: the manifest's (edgekit.vocab.Precision), spelled here because this
# package ships to devices on its own.
PRECISIONS = FP32, FP16, INT8 = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class EnginePlan:
    """What an engine is built from: ONNX, precision, (min, opt, max) batch, implicit-INT8 cache."""

    onnx: Path
    precision: str
    batches: tuple[int, int, int] = (1, 1, 1)
    calibration_cache: Path | None = None


def engine_plan(art: dict, root: Path) -> EnginePlan:
    """The plan recorded in a TensorRT artifact (``meta["build"]``), paths resolved against ``root``."""
    build = (art.get("meta") or {}).get("build")
    if not build:
        raise RuntimeLayerError(f"artifact {art.get('name')} records no TensorRT build settings",
                                "recompile the bundle for a TensorRT target")
    shapes = build.get("shapes") or {}
    batches = tuple(int((shapes.get(k) or [1])[0]) for k in ("min", "opt", "max"))
    cache = build.get("calibration_cache")
    return EnginePlan(onnx=root / build["onnx"], precision=build.get("precision") or art["precision"],
                      batches=batches, calibration_cache=root / cache if cache else None)


def has_qdq(onnx_bytes: bytes) -> bool:
    """Whether the graph holds Q/DQ nodes (explicit INT8), without the onnx package (not on devices):
    a NodeProto's op_type is field 4, a length-prefixed string."""
    return any(b"\x22" + bytes([len(op)]) + op in onnx_bytes for op in (b"QuantizeLinear", b"DequantizeLinear"))


def entropy_calibrator(trt, cache_path: Path | None, images: np.ndarray | None = None, batch_size: int = 1):
    """An ``IInt8EntropyCalibrator2`` that reads ``cache_path`` (no images: TensorRT takes the scales and
    never asks for batches) or calibrates on model-ready ``images`` and writes the cache there.
    With dynamic shapes TensorRT calibrates at the calibration profile's opt shape, so ``batch_size``
    must be the profile's opt batch."""
    from .cuda import H2D, Cuda

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self._i, self._ptr = 0, None
            self._cuda = Cuda() if images is not None else None

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names):
            if images is None or self._i + batch_size > len(images):
                return None
            chunk = np.ascontiguousarray(images[self._i:self._i + batch_size], dtype=np.float32)
            if self._ptr is None:
                self._ptr = self._cuda.malloc(chunk.nbytes)
            self._cuda.copy(self._ptr, chunk.ctypes.data_as(ctypes.c_void_p), chunk.nbytes, H2D)
            self._cuda.sync()
            self._i += batch_size
            return [int(self._ptr.value)]

        def read_calibration_cache(self):
            if images is None and cache_path is not None and cache_path.is_file():
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache) -> None:
            if images is not None and cache_path is not None:
                cache_path.write_bytes(bytes(cache))

    return EntropyCalibrator()


def _parse_error(parser, onnx: Path) -> RuntimeLayerError:
    errors = [parser.get_error(i) for i in range(parser.num_errors)]
    first = errors[0] if errors else None
    node = getattr(first, "node_name", lambda: "?")() if first is not None else "?"
    op = getattr(first, "node_operator", lambda: "?")() if first is not None else "?"
    desc = first.desc() if first is not None and hasattr(first, "desc") else str(first or "unknown parser error")
    return RuntimeLayerError(f"TensorRT cannot parse {onnx.name}: operator {op} (node {node}): {desc}",
                             "replace that layer or export with another opset")


def build_engine(plan: EnginePlan, engine_path: Path, calibration: np.ndarray | None = None,
                 workspace_mb: int = WORKSPACE_MB) -> dict:
    """Parse the ONNX, set precision flags and the dynamic-batch profile, build, write ``engine_path``
    atomically. ``calibration``: images to recalibrate implicit INT8 with (rewrites the plan's cache)."""
    if plan.precision not in PRECISIONS:
        raise RuntimeLayerError(f"TensorRT precision {plan.precision!r} is not one of {', '.join(PRECISIONS)}")
    lo, opt, hi = plan.batches
    if not 1 <= lo <= opt <= hi:
        raise RuntimeLayerError(f"batch profile {plan.batches} must satisfy 1 <= min <= opt <= max")
    trt = import_runtime("tensorrt")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(str(trt.__version__).split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    data = plan.onnx.read_bytes()
    if not parser.parse(data):
        raise _parse_error(parser, plan.onnx)
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    else:  # TensorRT < 8.4
        config.max_workspace_size = workspace_mb << 20
    profile = builder.create_optimization_profile()
    inp = network.get_input(0)
    chw = tuple(int(v) for v in tuple(inp.shape)[1:])
    profile.set_shape(inp.name, (lo, *chw), (opt, *chw), (hi, *chw))
    config.add_optimization_profile(profile)
    mode = plan.precision
    if plan.precision in (FP16, INT8):
        config.set_flag(trt.BuilderFlag.FP16)   # int8: layers TensorRT keeps in float run in fp16
    if plan.precision == INT8:
        config.set_flag(trt.BuilderFlag.INT8)
        if has_qdq(data):
            mode = "int8 explicit (QDQ)"
        else:
            if plan.calibration_cache is None and calibration is None:
                raise RuntimeLayerError("implicit INT8 needs a calibration cache or calibration images",
                                        "pass --calibration-cache artifacts/trt/calibration.cache or use the QDQ model")
            config.int8_calibrator = entropy_calibrator(trt, plan.calibration_cache, calibration, opt)
            config.set_calibration_profile(profile)
            mode = "int8 implicit (entropy calibrator, " + ("recalibrated" if calibration is not None
                                                            else "from cache") + ")"
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeLayerError(f"TensorRT failed to build an engine from {plan.onnx.name}",
                                "rerun with TensorRT verbose logging (trtexec --verbose) to see the failing layer")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=engine_path.parent, suffix=".engine.tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(bytes(serialized))
    os.replace(tmp, engine_path)
    return {"engine": str(engine_path), "bytes": engine_path.stat().st_size, "mode": mode,
            "tensorrt_version": str(trt.__version__), "profile": {"min": lo, "opt": opt, "max": hi}}
