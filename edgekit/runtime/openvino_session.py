"""OpenVINO session. The CPU plugin silently runs an "FP32" model in bf16 where the CPU supports it,
so the artifact's ``inference_precision_hint`` is passed on and ``info["executed_precision"]`` is
what the plugin reports. Creating and dropping a plugin goes through ``kept_signal_stack`` (the plugin
swaps the thread's alternate signal stack; see ``signal_stack``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Session, import_runtime
from .signal_stack import kept_signal_stack


class OpenVinoSession(Session):
    def __init__(self, path: Path | object, threads: int, precision_hint: str | None = None, device: str = "CPU"):
        """``path``: an IR file, or an in-memory ``ov.Model`` (the distill stage's teacher, never saved)."""
        ov = import_runtime("openvino")
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        if precision_hint:
            config["INFERENCE_PRECISION_HINT"] = precision_hint
        with kept_signal_stack():
            self._c = ov.Core().compile_model(str(path) if isinstance(path, (str, Path)) else path, device, config)
        self._r = self._c.create_infer_request()
        self._out = self._c.output(0)
        batch = self._c.input(0).get_partial_shape()[0]
        self.max_batch = batch.get_length() if batch.is_static else None  # a model converted for a fixed batch
        executed = self._c.get_property("INFERENCE_PRECISION_HINT")
        self.info = {"runtime_version": ov.__version__, "device": device, "threads": threads,
                     "executed_precision": executed.get_type_name() if hasattr(executed, "get_type_name")
                     else str(executed)}

    @classmethod
    def from_artifact(cls, art: dict, root: Path, threads: int, **_) -> "OpenVinoSession":
        meta = art.get("meta") or {}
        return cls(root / art["path"], threads, meta.get("inference_precision_hint"), meta.get("device", "CPU"))

    def run(self, inputs: np.ndarray) -> np.ndarray:
        out = self._r.infer({0: np.ascontiguousarray(inputs, dtype=np.float32)})
        return np.asarray(out[self._out])

    def close(self) -> None:
        with kept_signal_stack():
            self._r = self._out = self._c = None
