"""Writing a bundle atomically: everything goes into a hidden sibling temp dir, which is renamed
into place only when complete, so an interrupted or failed run never leaves a half bundle.

No user data is lost on the way: ``--out`` is locked for the run (a second run on it fails at once), an
existing non-empty ``--out`` is refused unless ``force``, and ``force`` replaces only an edgekit bundle
(a folder with its ``manifest.json``), never any other folder. ``--out`` is checked writable before work."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from edgekit.errors import EdgekitError
from edgekit.locks import FileLock

MANIFEST = "manifest.json"
_HELD: dict[Path, FileLock] = {}   # --out folders this process has locked (resolved path -> lock)


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse an ``--out`` that cannot or must not be written, then lock it for this process until
    ``atomic_bundle`` finishes (or ``release_out_dir``). Called before any work, so nothing is trained for
    a bundle that cannot be written."""
    from edgekit.training.distributed import is_main  # here: only a run that trains imports torch

    _check_replaceable(out, force)
    _check_writable(out)
    key = out.resolve()
    if key in _HELD or not is_main():  # under torchrun rank 0 writes the bundle; the others never do
        return
    lock = FileLock(out.parent / f".{out.name}.lock")
    if not lock.acquire(wait=False):
        raise EdgekitError(f"--out {out} is being written by another edgekit run",
                           "wait for that run to finish, or choose another --out")
    _HELD[key] = lock


@atexit.register
def _release_all() -> None:
    """A run that failed between ``check_out_dir`` and its bundle leaves no lock file behind."""
    for key in list(_HELD):
        release_out_dir(key)


def release_out_dir(out: Path) -> None:
    """Give up this process's lock on ``out`` (a run that stopped before writing its bundle)."""
    lock = _HELD.pop(out.resolve(), None)
    if lock is not None:
        lock.release()


@contextmanager
def reserved_out_dir(out: Path, force: bool) -> Iterator[None]:
    """``check_out_dir`` for the block, released however the block ends: wrap a whole run in it."""
    check_out_dir(out, force)
    try:
        yield
    finally:
        release_out_dir(out)


def _check_replaceable(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise EdgekitError(f"--out {out} exists and is a file", "choose another path")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise EdgekitError(f"--out {out} exists and is not empty", "choose another path or pass --force to replace it")
        if not (out / MANIFEST).is_file():
            raise EdgekitError(f"--out {out} is not an edgekit bundle (no {MANIFEST}), so --force will not replace it",
                               "choose another path, or empty that folder yourself")


def _check_writable(out: Path) -> None:
    """The parent exists (made here) and takes a new file: the temp bundle and the rename need both."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        blocker = next((p for p in out.parents if p.exists()), None)
        why = (f"{blocker} is a file" if blocker is not None and not blocker.is_dir()
               else err.strerror or type(err).__name__)
        raise EdgekitError(f"--out {out} cannot be written: {why}", "choose a folder you can write to") from None


@contextmanager
def atomic_bundle(out: Path, force: bool) -> Iterator[Path]:
    """Yields a temp dir to fill; on success it replaces ``out``. On any error it is removed. The lock on
    ``out`` is released either way."""
    try:
        check_out_dir(out, force)
        tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            yield tmp
            _check_replaceable(out, force)   # again: something may have been put there during the run
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
    finally:
        release_out_dir(out)


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
