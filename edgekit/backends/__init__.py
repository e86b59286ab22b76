"""Backends: one module per runtime, each with ``compile`` (model -> artifact files) and ``load``
(artifact -> Session). Accuracy and latency are always measured through a Session, so every number
in a report belongs to a file we ship."""

from edgekit.backends.base import BACKENDS, Artifact, Backend, CompileRequest, Session, register_backend

# Importing registers them; each imports its runtime lazily, so a missing extra only matters when used.
from edgekit.backends import executorch, onnxruntime, openvino, tensorrt, tflite  # noqa: F401,E402

__all__ = ["BACKENDS", "Artifact", "Backend", "CompileRequest", "Session", "register_backend"]
