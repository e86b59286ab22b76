"""The runtime layer: one session class per runtime, one TensorRT builder and calibrator, and the
measurement helpers - used by the backends, profiling, training evaluation, pruning latency targets,
the benchmarks and the device runner.

A leaf package: it imports only the standard library, numpy and (inside functions) the runtimes,
never the rest of edgekit or torch, because ``edgekit bench`` ships these very files to devices
(``package_files``) and runs ``python3 -m edgekit_runtime.runner`` there and on this host alike.
Modules refer to each other relatively, so the package works under either name.

Runtime names are the ones artifacts record: ``onnxruntime``, ``openvino``, ``litert``, ``tensorrt``,
``executorch``.
"""

from __future__ import annotations

from pathlib import Path

from .base import EXIT_MISSING_RUNTIME, PREDICT_BATCH, RUNTIME_PACKAGES, MissingRuntime, RuntimeLayerError, Session, import_runtime
from .executorch_session import ExecuTorchSession
from .identity import device_identity
from .litert_session import LiteRTSession
from .measure import (accuracy_counts, alternating_latency, interleaved_latency, latency_stats, measure_latency, peak_memory_mb,
                      reset_peak_memory, rss_mb)
from .onnxruntime_session import OrtSession
from .openvino_session import OpenVinoSession
from .tensorrt_session import TensorRTSession

SESSIONS: dict[str, type[Session]] = {"onnxruntime": OrtSession, "openvino": OpenVinoSession,
                                      "litert": LiteRTSession, "tensorrt": TensorRTSession,
                                      "executorch": ExecuTorchSession}


def open_session(art: dict, root: Path, threads: int, engine_cache: str | Path | None = None) -> Session:
    """Load an artifact (its manifest entry as a dict; paths relative to ``root``) with its runtime."""
    cls = SESSIONS.get(art["runtime"])
    if cls is None:
        raise MissingRuntime(art["runtime"])
    return cls.from_artifact(art, Path(root), threads, engine_cache=engine_cache)


def package_files() -> list[Path]:
    """Every file of this package: what ``edgekit bench`` ships to run the runner."""
    return sorted(Path(__file__).resolve().parent.glob("*.py"))


__all__ = ["EXIT_MISSING_RUNTIME", "PREDICT_BATCH", "RUNTIME_PACKAGES", "SESSIONS", "ExecuTorchSession", "LiteRTSession", "MissingRuntime", "OpenVinoSession", "OrtSession",
           "RuntimeLayerError", "Session", "TensorRTSession", "accuracy_counts", "alternating_latency", "device_identity",
           "import_runtime", "interleaved_latency", "latency_stats", "measure_latency", "open_session",
           "package_files", "peak_memory_mb", "reset_peak_memory", "rss_mb"]
