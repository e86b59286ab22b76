"""LiteRT session: ``ai_edge_litert`` (x86/ARM wheels) or ``tflite_runtime`` (Raspberry Pi OS), same API.

NHWC files get the NCHW batch transposed; the interpreter is resized in place when the batch size
changes; int8/uint8 inputs and outputs are (de)quantized with the tensors' own scale and zero point.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .base import Session, import_runtime

QUANTIZED = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16))


class LiteRTSession(Session):
    def __init__(self, path: Path, threads: int, layout: str = "NCHW"):
        module = import_runtime("litert")
        self._it = module.Interpreter(model_path=str(path), num_threads=threads)
        self._it.allocate_tensors()
        self._details()
        self._nhwc = layout == "NHWC"
        package = module.__name__.split(".")[0]
        self.info = {"runtime_version": getattr(sys.modules.get(package), "__version__", None) or litert_version(),
                     "module": package, "threads": threads, "layout": layout,
                     "delegate": "XNNPACK (default CPU delegate)", "input_dtype": self._in["dtype"].name}

    @classmethod
    def from_artifact(cls, art: dict, root: Path, threads: int, **_) -> "LiteRTSession":
        return cls(root / art["path"], threads, art.get("layout") or "NCHW")

    def _details(self) -> None:
        self._in, self._out = self._it.get_input_details()[0], self._it.get_output_details()[0]
        self._in["dtype"], self._out["dtype"] = np.dtype(self._in["dtype"]), np.dtype(self._out["dtype"])
        self._batch = int(self._in["shape"][0])

    def _resize(self, batch: int) -> None:
        shape = [int(v) for v in self._in["shape"]]
        shape[0] = batch
        self._it.resize_tensor_input(self._in["index"], shape)
        self._it.allocate_tensors()
        self._details()

    def run(self, inputs: np.ndarray) -> np.ndarray:
        x = np.asarray(inputs, dtype=np.float32)
        if x.shape[0] != self._batch and not self._dynamic_batch():
            # Exported with a fixed batch (litert-torch: batch 1): resizing the input leaves the graph's
            # constant Reshape shapes (AlexNet/VGG flatten, ConvNeXt's LayerNorm permutes) at the old
            # batch and XNNPACK fails "to reshape runtime"; run the batch image by image instead.
            if self._batch == 1:
                return np.concatenate([self._invoke(x[i:i + 1]) for i in range(x.shape[0])])
        if x.shape[0] != self._batch:
            self._resize(x.shape[0])
        return self._invoke(x)

    def _dynamic_batch(self) -> bool:
        signature = self._in.get("shape_signature")
        return signature is not None and len(signature) > 0 and int(signature[0]) == -1

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        if self._nhwc:
            x = x.transpose(0, 2, 3, 1)
        dtype = self._in["dtype"]
        scale, zero = self._in.get("quantization", (0.0, 0))
        if dtype in QUANTIZED and scale:
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        self._it.set_tensor(self._in["index"], np.ascontiguousarray(x, dtype=dtype))
        self._it.invoke()
        y = self._it.get_tensor(self._out["index"])
        scale, zero = self._out.get("quantization", (0.0, 0))
        if self._out["dtype"] in QUANTIZED and scale:
            y = (y.astype(np.float32) - zero) * scale
        return np.array(y, dtype=np.float32)


def litert_version() -> str:
    """The installed interpreter distribution's version (what artifacts record as runtime_version)."""
    import importlib.metadata as md

    for dist in ("ai-edge-litert", "tflite-runtime"):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            pass
    return "unknown"
