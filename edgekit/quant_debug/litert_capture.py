"""LiteRT: probes from an FP32 ``.tflite`` and its INT8 sibling (litert-torch names a tensor after the module that
made it, the same in both files), and their values, read with ``experimental_preserve_all_tensors`` (the
interpreter otherwise reuses intermediate buffers) and dequantized with each tensor's own scale and zero point.

Files from litert-torch take one image at a time (batch 1), so images are run one by one.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from edgekit.models.layer_names import layer_of_litert_name
from edgekit.quant_debug.probes import Probe, layer_outputs, with_nodes

_SKIP = {"DELEGATE", "QUANTIZE", "DEQUANTIZE"}


def _interpreter(path: Path, threads: int = 1):
    from edgekit.runtime.base import import_runtime

    module = import_runtime("litert")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # "intended for debugging purposes only": that is the purpose here
        it = module.Interpreter(model_path=str(path), num_threads=threads, experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    return it


def _op_outputs(it) -> list[tuple[str, str]]:
    """(op name, output tensor name) in execution order, float or quantized activations only."""
    details = {d["index"]: d for d in it.get_tensor_details()}
    out = []
    for op in it._get_ops_details():   # the interpreter's only op listing (used by LiteRT's own debugger)
        if op["op_name"] in _SKIP:
            continue
        for index in op["outputs"]:
            d = details.get(int(index))
            if d is not None and np.dtype(d["dtype"]) in (np.float32, np.int8, np.uint8, np.int16):
                out.append((op["op_name"], d["name"]))
    return out


def litert_probes(fp32: Path, int8: Path) -> list[Probe]:
    """One probe per layer of the FP32 file whose output tensor (by name) the INT8 file also has."""
    ref, q = _op_outputs(_interpreter(fp32)), _op_outputs(_interpreter(int8))
    qnames = {name for _, name in q}
    candidates = [Probe(layer_of_litert_name(name), op, name, name) for op, name in ref if name in qnames]
    return with_nodes(layer_outputs(candidates), [(name, name) for _, name in q], layer_of_litert_name)


def litert_values(path: Path, tensors: list[str], images: np.ndarray, threads: int = 1, layout: str = "NHWC"
                  ) -> Iterator[dict[str, np.ndarray]]:
    """Image by image, the dequantized values of ``tensors`` (by name) in the file at ``path``; ``images`` are
    NCHW, transposed for an NHWC file as its session does."""
    it = _interpreter(path, threads)
    details = {d["name"]: d for d in it.get_tensor_details()}
    inp = it.get_input_details()[0]
    names = list(dict.fromkeys(tensors))
    for image in images:
        x = image[None].transpose(0, 2, 3, 1) if layout == "NHWC" else image[None]
        scale, zero = inp.get("quantization", (0.0, 0))
        dtype = np.dtype(inp["dtype"])
        if dtype != np.float32 and scale:
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        it.set_tensor(inp["index"], np.ascontiguousarray(x, dtype=dtype))
        it.invoke()
        yield {n: _dequantized(it.get_tensor(details[n]["index"]), details[n]) for n in names}


def _dequantized(value: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail.get("quantization", (0.0, 0))
    if np.dtype(value.dtype) != np.float32 and scale:
        return (value.astype(np.float32) - zero) * scale
    return np.asarray(value, dtype=np.float32)
