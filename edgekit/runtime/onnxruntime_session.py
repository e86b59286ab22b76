"""ONNX Runtime session (CPU by default; the artifact may name other execution providers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Session, import_runtime


class OrtSession(Session):
    """``simulate_qdq``: no graph optimisation, so Q/DQ pairs stay float ops instead of fusing into int8
    kernels: the quantized model's own arithmetic, free of this CPU's int8 quirks (x86 without VNNI
    saturates U8S8 sums). Used to judge another runtime's input (TensorRT's QDQ ONNX)."""

    def __init__(self, path: Path, threads: int, simulate_qdq: bool = False, providers: list[str] | None = None):
        ort = import_runtime("onnxruntime")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL if simulate_qdq
                                         else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        available = ort.get_available_providers()
        providers = [p for p in providers or [] if p in available] or ["CPUExecutionProvider"]
        self._s = ort.InferenceSession(str(path), opts, providers=providers)
        self._input = self._s.get_inputs()[0].name
        batch = self._s.get_inputs()[0].shape[0]
        self.max_batch = batch if isinstance(batch, int) and batch > 0 else None  # a file exported for a fixed batch
        self.info = {"runtime_version": ort.__version__, "providers": self._s.get_providers(), "threads": threads}

    @classmethod
    def from_artifact(cls, art: dict, root: Path, threads: int, **_) -> "OrtSession":
        return cls(root / art["path"], threads, providers=(art.get("meta") or {}).get("providers"))

    def run(self, inputs: np.ndarray) -> np.ndarray:
        return self._s.run(None, {self._input: np.ascontiguousarray(inputs, dtype=np.float32)})[0]
