"""The session interface, the runtime-name table and the errors of the runtime layer.

This package is shipped as-is to devices (``edgekit bench --host``), so it imports only the standard
library, numpy and - inside functions - the runtimes themselves. Errors here are plain exceptions
carrying a problem and a hint; edgekit turns them into one-line ``EdgekitError`` at its edges.
"""

from __future__ import annotations

import importlib

import numpy as np

EXIT_MISSING_RUNTIME = 4
PREDICT_BATCH = 64         # the batch size artifacts are scored with (profiling.artifacts.session_logits)   # the runner's exit code when no artifact of the job found its runtime

# runtime name (as artifacts record it) -> (modules to try, pip name, how to install it on a device)
RUNTIME_PACKAGES = {
    "onnxruntime": (("onnxruntime",), "onnxruntime",
                    "onnxruntime (pip install onnxruntime; onnxruntime-gpu on a Jetson)"),
    "openvino": (("openvino",), "openvino", "openvino (pip install openvino)"),
    "litert": (("ai_edge_litert.interpreter", "tflite_runtime.interpreter"), "ai-edge-litert",
               "ai-edge-litert or tflite-runtime (pip install ai-edge-litert)"),
    "tensorrt": (("tensorrt",), "tensorrt", "tensorrt (ships with JetPack: sudo apt install python3-libnvinfer)"),
    "executorch": (("executorch.runtime",), "executorch", "executorch and torch (pip install executorch torch; on a Pi, torch from download.pytorch.org/whl/cpu)"),
}


class RuntimeLayerError(Exception):
    """Something the user can fix (bad file, failed build): ``problem`` and ``hint``, one line each."""

    def __init__(self, problem: str, hint: str | None = None):
        self.problem = " ".join(problem.split())
        self.hint = " ".join(hint.split()) if hint else None
        super().__init__(self.problem + (f" — {self.hint}" if self.hint else ""))


class MissingRuntime(RuntimeLayerError):
    """The runtime an artifact needs is not importable on this machine."""

    def __init__(self, runtime: str):
        self.runtime = runtime
        _, self.pip, self.package = RUNTIME_PACKAGES.get(runtime, ((runtime,), runtime, runtime))
        super().__init__(f"runtime '{runtime}' is not installed", f"install {self.package}")


def import_runtime(runtime: str):
    """The runtime's Python module (the first importable of its candidates), or ``MissingRuntime``."""
    modules = RUNTIME_PACKAGES.get(runtime, ((runtime,), runtime, runtime))[0]
    for name in modules:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise MissingRuntime(runtime)


class Session:
    """A loaded artifact: ``run(float32 NCHW batch) -> float32 logits``, any batch size up to
    ``max_batch`` (None: no limit); ``info`` says what ran it (runtime version, threads, ...)."""

    info: dict
    max_batch: int | None = None

    def run(self, inputs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, images, batch_size: int = PREDICT_BATCH) -> np.ndarray:
        """Logits of model-ready images (float32 N x C x H x W, or one C x H x W image; numpy or a CPU torch
        tensor), run in batches of ``batch_size`` (at most ``max_batch``): the batches profiling scores with,
        so the logits are the ones the manifest's accuracy was computed from."""
        x = np.asarray(images, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4:
            raise RuntimeLayerError(f"predict takes N x C x H x W images, got shape {x.shape}")
        step = max(1, min(batch_size, self.max_batch or batch_size))
        return np.concatenate([self.run(np.ascontiguousarray(x[i:i + step])) for i in range(0, len(x), step)])

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
