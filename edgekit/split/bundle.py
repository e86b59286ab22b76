"""Reading a split bundle: its manifest's ``split`` section, artifacts and sessions, and the token."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from edgekit.backends import BACKENDS
from edgekit.backends.base import Artifact, Session
from edgekit.errors import EdgekitError
from edgekit.spec import ModelSpec

TOKEN_ENV = "EDGEKIT_SPLIT_TOKEN"


@dataclass
class SplitBundle:
    root: Path
    manifest: dict
    split: dict
    spec: ModelSpec

    @property
    def scale(self) -> float:
        return float(self.split["bottleneck"]["quantization"]["scale"])

    @property
    def zero_point(self) -> int:
        return int(self.split["bottleneck"]["quantization"]["zero_point"])

    @property
    def bottleneck_shape(self) -> tuple[int, int, int]:
        return tuple(self.split["bottleneck"]["shape"])

    def artifact(self, name: str) -> Artifact:
        for a in self.manifest["artifacts"]:
            if a["name"] == name:
                return Artifact(**a)
        raise EdgekitError(f"bundle {self.root} has no artifact '{name}'",
                           f"available: {', '.join(a['name'] for a in self.manifest['artifacts'])}")

    def head_artifact(self, backend: str | None = None) -> Artifact:
        """The head for ``backend`` (default: the first one that runs here, i.e. the target's preferred)."""
        for name in self.split["head"]["artifacts"]:
            a = self.artifact(name)
            if (backend is None and a.runnable_here) or a.backend == backend:
                return a
        raise EdgekitError(f"bundle {self.root} has no runnable head artifact"
                           + (f" for backend {backend}" if backend else ""),
                           f"heads: {', '.join(self.split['head']['artifacts'])}")

    def full_artifact(self, backend: str = "onnxruntime") -> Artifact:
        """The whole split model in one graph (for the local and full-offload baselines)."""
        for a in self.manifest["artifacts"]:
            if a["backend"] == backend and not a.get("meta", {}).get("split_part") and a["precision"] == "fp32":
                return Artifact(**a)
        raise EdgekitError(f"bundle {self.root} has no fp32 {backend} artifact of the whole model")

    def session(self, artifact: Artifact, threads: int) -> Session:
        return BACKENDS.get(artifact.backend)().load(artifact, self.root, threads)


def load_split_bundle(path: Path) -> SplitBundle:
    manifest_path = Path(path) / "manifest.json"
    if not manifest_path.is_file():
        raise EdgekitError(f"{path} is not an edgekit bundle (no manifest.json)", "give the directory compress wrote")
    manifest = json.loads(manifest_path.read_text())
    if "split" not in manifest:
        raise EdgekitError(f"bundle {path} holds no split model",
                           "compress with a recipe that has a bottleneck stage, e.g. -r split")
    split = manifest["split"]
    return SplitBundle(Path(path), manifest, split, ModelSpec(**split["spec"]))


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
