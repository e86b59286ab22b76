"""The comparison loop every runtime shares: run the FP32 and the INT8 file on the same images, batch by batch,
accumulate each probe's error, and name the first layer where INT8 breaks."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from edgekit.quant_debug.metrics import TensorError
from edgekit.quant_debug.probes import Probe
from edgekit.quant_debug.records import FLOOR_DB, STEP_DB, LayerError, LayerReport, first_divergence
from edgekit.vocab import Runtime

Values = Callable[[Path, list[str], np.ndarray], Iterator[dict[str, np.ndarray]]]


def compare(probes: Sequence[Probe], reference: Iterator[dict[str, np.ndarray]],
            quantized: Iterator[dict[str, np.ndarray]], runtime: str, images: int, channel_axis: int = 1,
            floor_db: float = FLOOR_DB, step_db: float = STEP_DB) -> LayerReport:
    """Per-layer errors from the two runs' batches (each batch: tensor name -> value)."""
    errors = [TensorError(channel_axis) for _ in probes]
    for ref, q in zip(reference, quantized):
        for probe, err in zip(probes, errors):
            err.add(ref[probe.reference], q[probe.quantized])
    layers = tuple(LayerError(p.layer, p.op, p.reference, e.sqnr_db(), e.tensor_sqnr_db(), e.cosine(), p.nodes)
                   for p, e in zip(probes, errors))
    return LayerReport(runtime=runtime, images=images, layers=layers,
                       divergence=first_divergence(layers, floor_db, step_db), floor_db=floor_db, step_db=step_db)


def compare_files(runtime: Runtime | str, fp32: Path, int8: Path, images: np.ndarray, *, threads: int = 1,
                  batch: int = 8, floor_db: float = FLOOR_DB, step_db: float = STEP_DB, **options) -> LayerReport:
    """Per-layer SQNR/cosine of ``int8`` against ``fp32`` (two files of one runtime, built from the same model)
    on model-ready ``images`` (N x C x H x W float32), through that runtime. ``options``: the runtime's own
    (OpenVINO: ``precision_hint``; LiteRT: ``layout``)."""
    runtime = Runtime(runtime)
    images = np.asarray(images, dtype=np.float32)
    if runtime == Runtime.ONNXRUNTIME:
        from edgekit.quant_debug.onnx_capture import onnx_probes, onnx_values

        probes = onnx_probes(fp32, int8)
        ref = onnx_values(fp32, [p.reference for p in probes], images, batch, threads)
        q = onnx_values(int8, [p.quantized for p in probes], images, batch, threads)
        axis = 1
    elif runtime == Runtime.OPENVINO:
        from edgekit.quant_debug.openvino_capture import openvino_probes, openvino_values

        probes = openvino_probes(fp32, int8)
        hint = options.get("precision_hint", "f32")
        ref = openvino_values(fp32, [p.reference for p in probes], images, batch, threads, hint)
        q = openvino_values(int8, [p.quantized for p in probes], images, batch, threads, hint)
        axis = 1
    elif runtime == Runtime.LITERT:
        from edgekit.quant_debug.litert_capture import litert_probes, litert_values

        probes = litert_probes(fp32, int8)
        layout = options.get("layout", "NCHW")
        ref = litert_values(fp32, [p.reference for p in probes], images, threads, layout)
        q = litert_values(int8, [p.quantized for p in probes], images, threads, layout)
        axis = -1
    else:
        raise ValueError(f"no per-layer capture for runtime {runtime}")
    return compare(probes, ref, q, str(runtime), len(images), axis, floor_db, step_db)
