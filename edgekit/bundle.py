"""Writing a bundle atomically: everything goes into a hidden sibling temp dir, which is renamed
into place only when complete, so an interrupted or failed run never leaves a half bundle.
An existing non-empty ``--out`` is refused unless ``force``."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from edgekit.errors import EdgekitError


def check_out_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise EdgekitError(f"--out {out} exists and is a file", "choose another path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise EdgekitError(f"--out {out} exists and is not empty", "choose another path or pass --force to replace it")


@contextmanager
def atomic_bundle(out: Path, force: bool) -> Iterator[Path]:
    """Yields a temp dir to fill; on success it replaces ``out``. On any error it is removed."""
    check_out_dir(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def bundle_file(bundle: Path, rel: str, what: str) -> Path:
    """``bundle / rel`` for a path read from a manifest, refused unless it stays inside the bundle: no absolute
    path, no ``..``, no symbolic link anywhere on the way (a link could point at any file of the host, and
    both the runtimes and ``sftp.put`` follow links)."""
    parts = Path(rel.replace("\\", "/")).parts
    if not parts or Path(rel).is_absolute() or rel.startswith(("/", "\\")) or ".." in parts:
        raise EdgekitError(f"{what}: path {rel!r} in the manifest leaves the bundle", "the bundle is corrupt or tampered with")
    path = bundle
    for part in parts:
        path = path / part
        if path.is_symlink():
            raise EdgekitError(f"{what}: {rel} in the bundle is a symbolic link", "the bundle is corrupt or tampered with")
    if not path.is_file():
        raise EdgekitError(f"{what}: bundle file {rel} is missing", "rebuild the bundle with edgekit compress")
    if not path.resolve().is_relative_to(bundle.resolve()):
        raise EdgekitError(f"{what}: {rel} resolves outside the bundle", "the bundle is corrupt or tampered with")
    return path


def verified_file(bundle: Path, rel: str, sha256: str | None, what: str) -> Path:
    """``bundle_file`` whose content also matches the manifest's sha256 (a file changed since compress, or
    a manifest edited to name another file, is never run or uploaded)."""
    from edgekit.models.checkpoint import file_sha256  # here: the CLI imports this module before torch is needed

    path = bundle_file(bundle, rel, what)
    if not sha256:
        raise EdgekitError(f"{what}: the manifest has no sha256 for {rel}", "the bundle is corrupt or tampered with")
    if file_sha256(path) != sha256:
        raise EdgekitError(f"{what}: {rel} does not match its sha256 in the manifest",
                           "the file changed since edgekit compress wrote it; rebuild the bundle")
    return path


def verify_artifact(bundle: Path, artifact) -> list[Path]:
    """Every file of ``artifact`` (a manifest ``ArtifactRecord``) inside the bundle and matching its sha256;
    its main ``path`` must be one of its files. Returns the files' paths."""
    what = f"artifact {artifact.name}"
    files = list(artifact.files or [artifact.path])
    if artifact.path not in files:
        raise EdgekitError(f"{what}: its path {artifact.path!r} is not one of its files", "the bundle is corrupt")
    return [verified_file(bundle, rel, artifact.sha256.get(rel), what) for rel in files]
