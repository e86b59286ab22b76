"""The backend interface: Artifact (what was written), Backend (how to write it, and open it through
the runtime layer's Session)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, Field

from edgekit.errors import EdgekitError, MissingDependency
from edgekit.models.loaded import LoadedModel
from edgekit.registry import Registry
from edgekit.runtime import MissingRuntime, RuntimeLayerError, Session, open_session
from edgekit.target import Target
from edgekit.vocab import Part, Precision, Runtime

__all__ = ["BACKENDS", "Artifact", "Backend", "CompileRequest", "Session", "describe_files", "register_backend"]


class Artifact(BaseModel):
    """A compiled model in the bundle. Paths are relative to the bundle root (bundles move)."""

    name: str                                   # e.g. "openvino-fp32"
    backend: str
    precision: Precision                        # what was asked for (meta.executed_precision: what runs)
    path: str                                   # main file, relative to the bundle root
    files: list[str]                            # every file that belongs to the artifact
    runtime: Runtime
    runtime_version: str
    input_shape: list[int]                      # C, H, W
    layout: str = "NCHW"
    meta: dict[str, Any] = Field(default_factory=dict)   # opset, precision actually used, quant settings...
    bytes: int = 0
    sha256: dict[str, str] = Field(default_factory=dict)
    runnable_here: bool = True                  # False for TensorRT inputs that build on the device
    metrics: dict[str, Any] = Field(default_factory=dict)  # accuracy, latency (filled by profiling)

    @property
    def part(self) -> Part:
        """What it was compiled from: a split model's parts live under artifacts/<part>/ (``meta.split_part``)."""
        return Part(self.meta.get("split_part", Part.WHOLE))


@dataclass
class CompileRequest:
    """Everything a backend may need besides the model: where to write, for which target, with which
    calibration images (model-ready float32, N x C x H x W) and recipe options."""

    out_dir: Path                     # the bundle's root (artifacts/ lives under it)
    target: Target
    calibration: np.ndarray | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # Where under artifacts/ the files go: "" for the whole model, "head" / "tail" for a split model's
    # parts (artifacts/head/...), so parts compile with the same backends into their own folders.
    subdir: str = ""
    # Labelled model-ready data (inputs, labels) for accuracy-aware quantization, and its bound in
    # percentage points (the recipe's compile.max_accuracy_drop).
    validation: tuple[np.ndarray, np.ndarray] | None = None
    max_accuracy_drop: float | None = None
    # Mixed precision (``Precision.MIXED``): the user's torch module paths (``features.3.conv``) kept in float;
    # each backend maps them to its own node names (``edgekit.models.layer_names``).
    float_layers: tuple[str, ...] = ()

    @property
    def artifacts_dir(self) -> Path:
        return self.out_dir / "artifacts" / self.subdir if self.subdir else self.out_dir / "artifacts"


class Backend:
    name: ClassVar[str]
    runtime_module: ClassVar[str]     # importable module providing the runtime
    package: ClassVar[str]            # pip package to install it
    extra: ClassVar[str]              # edgekit extra that pulls it in
    precisions: ClassVar[tuple[Precision, ...]] = (Precision.FP32,)
    # Builds Precision.MIXED: INT8 with CompileRequest.float_layers kept in float (``edgekit.mixed_precision``).
    # Not in ``precisions``: a recipe never asks for it; precision: auto makes one when INT8 disagrees too often.
    mixed: ClassVar[bool] = False

    @classmethod
    def runtime(cls, why: str | None = None):
        """Import the runtime, or fail with the pip command that fixes it."""
        try:
            return importlib.import_module(cls.runtime_module)
        except ImportError:
            raise MissingDependency(cls.package, cls.extra, why or f"the {cls.name} backend") from None

    @classmethod
    def available(cls) -> bool:
        try:
            cls.runtime()
            return True
        except MissingDependency:
            return False

    def compile(self, model: LoadedModel, precision: Precision, request: CompileRequest) -> Artifact:
        raise NotImplementedError

    def load(self, artifact: Artifact, bundle_root: Path, threads: int) -> Session:
        """The artifact's runtime session (``edgekit.runtime``: the code the device runner runs too)."""
        try:
            return open_session(artifact.model_dump(), bundle_root, threads)
        except MissingRuntime as err:
            raise MissingDependency(err.pip, self.extra, f"running {artifact.name}") from None
        except RuntimeLayerError as err:
            raise EdgekitError(err.problem, err.hint) from None


BACKENDS: Registry[type[Backend]] = Registry("backend")


register_backend = BACKENDS.register_class


def describe_files(root: Path, files: list[Path]) -> tuple[list[str], int, dict[str, str]]:
    """Relative paths, total bytes and sha256 per file for an artifact's files."""
    from edgekit.models.checkpoint import file_sha256

    rel = [str(f.relative_to(root)) for f in files]
    return rel, sum(f.stat().st_size for f in files), {r: file_sha256(f) for r, f in zip(rel, files)}
