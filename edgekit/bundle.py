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
