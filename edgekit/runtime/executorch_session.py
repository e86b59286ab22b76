"""ExecuTorch session: a ``.pte`` program run by ``executorch.runtime`` (XNNPACK-delegated where lowered,
ExecuTorch's portable kernels elsewhere).

ExecuTorch's Python runtime passes tensors as ``torch.Tensor`` and loads libtorch itself, so on a device it
needs the ``executorch`` wheel and the ``torch`` wheel it pulls in (aarch64 wheels of both exist). This session
never imports torch: it uses the module the runtime loaded (``sys.modules``). That is the lightest honest
way: the alternative, ExecuTorch's C++ ``executor_runner``, has no published binaries to ship.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .base import RuntimeLayerError, Session, import_runtime


class ExecuTorchSession(Session):
    def __init__(self, path: Path, threads: int):
        module = import_runtime("executorch")
        torch = sys.modules.get("torch")
        if torch is None:   # executorch.runtime imports it: a newer one that does not gets an honest error
            raise RuntimeLayerError("ExecuTorch's runtime did not load torch, which this session passes tensors as",
                                    "pip install torch next to executorch")
        self._from_numpy = torch.from_numpy
        threads_set = _set_threads(threads)
        try:
            program = module.Runtime.get().load_program(Path(path))
            self._method = program.load_method("forward")
        except Exception as err:  # noqa: BLE001 - a bad or foreign file: one line
            raise RuntimeLayerError(f"ExecuTorch cannot load {Path(path).name}: {str(err).strip()[:200]}",
                                    "rebuild the bundle with edgekit compress") from None
        shape = tuple(int(v) for v in self._method.metadata.input_tensor_meta(0).sizes())
        self._batch = shape[0]
        self.info = {"runtime_version": executorch_version(), "module": "executorch.runtime",
                     "threads": threads_set, "delegate": "XNNPACK (where lowered), portable kernels elsewhere",
                     "input_shape": list(shape)}

    @classmethod
    def from_artifact(cls, art: dict, root: Path, threads: int, **_) -> "ExecuTorchSession":
        return cls(root / art["path"], threads)

    def run(self, inputs: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(inputs, dtype=np.float32)
        if x.shape[0] != self._batch:   # exported with a static batch (1): run image by image
            return np.concatenate([self.run(x[i:i + self._batch]) for i in range(0, x.shape[0], self._batch)])
        out = self._method.execute([self._from_numpy(x)])[0]
        return np.array(out.detach().numpy() if hasattr(out, "detach") else out, dtype=np.float32)


def _set_threads(threads: int) -> int | None:
    """XNNPACK's thread pool size (process-wide in ExecuTorch); None where this version cannot set it."""
    try:
        from executorch.extension.pybindings import portable_lib
    except ImportError:
        return None
    reset = getattr(portable_lib, "_unsafe_reset_threadpool", None)
    if reset is None:
        return None
    reset(int(threads))
    return int(portable_lib._threadpool_get_thread_count())


def executorch_version() -> str:
    try:
        from executorch.version import __version__
    except ImportError:
        return "?"
    return str(__version__)
