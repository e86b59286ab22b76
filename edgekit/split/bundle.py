"""Reading a split bundle: its manifest's ``split`` section, artifacts and sessions, and the token."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgekit.backends import BACKENDS
from edgekit.backends.base import Artifact, Session
from edgekit.errors import EdgekitError
from edgekit.manifest import Manifest, SplitSection, read_manifest
from edgekit.spec import ModelSpec
from edgekit.vocab import Part, Precision

TOKEN_ENV = "EDGEKIT_SPLIT_TOKEN"


@dataclass
class SplitBundle:
    root: Path
    manifest: Manifest
    split: SplitSection
    spec: ModelSpec

    @property
    def quantization(self) -> dict:
        return self.split.bottleneck.quantization

    @property
    def scale(self) -> float:
        return float(self.quantization["scale"])

    @property
    def zero_point(self) -> int:
        return int(self.quantization["zero_point"])

    @property
    def bottleneck_shape(self) -> tuple[int, int, int]:
        return tuple(self.split.bottleneck.shape)

    def artifact(self, name: str) -> Artifact:
        return self.manifest.artifact(name)

    def head_artifact(self, backend: str | None = None) -> Artifact:
        """The head for ``backend`` (default: the first one that runs here, i.e. the target's preferred)."""
        for name in self.split.head.artifacts:
            a = self.artifact(name)
            if (backend is None and a.runnable_here) or a.backend == backend:
                return a
        raise EdgekitError(f"bundle {self.root} has no runnable head artifact"
                           + (f" for backend {backend}" if backend else ""),
                           f"heads: {', '.join(self.split.head.artifacts)}")

    def tail_artifact(self) -> Artifact:
        """The tail the server runs (chosen at compress time)."""
        if not self.split.tail.artifact:
            raise EdgekitError(f"bundle {self.root} has no tail that runs on the server")
        return self.artifact(self.split.tail.artifact)

    def full_artifact(self, backend: str = "onnxruntime") -> Artifact:
        """The whole split model in one graph (for the local and full-offload baselines)."""
        for a in self.manifest.artifacts:
            if a.backend == backend and a.part == Part.WHOLE and a.precision == Precision.FP32:
                return a
        raise EdgekitError(f"bundle {self.root} has no fp32 {backend} artifact of the whole model")

    def session(self, artifact: Artifact, threads: int) -> Session:
        return BACKENDS.get(artifact.backend)().load(artifact, self.root, threads)


def load_split_bundle(path: Path) -> SplitBundle:
    manifest = read_manifest(Path(path))
    if manifest.split is None:
        raise EdgekitError(f"bundle {path} holds no split model",
                           "compress with a recipe that has a bottleneck stage, e.g. -r split")
    return SplitBundle(Path(path), manifest, manifest.split, manifest.split.spec)


def read_token(token_file: Path | None) -> str:
    """The shared secret: from ``--token-file`` or the EDGEKIT_SPLIT_TOKEN environment variable."""
    if token_file is not None:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as err:
            raise EdgekitError(f"cannot read token file {token_file}: {err.strerror}") from None
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if len(token) < 16:
        raise EdgekitError("no shared-secret token (or shorter than 16 characters)",
                           f"set {TOKEN_ENV} or pass --token-file; make one with: "
                           "python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return token
