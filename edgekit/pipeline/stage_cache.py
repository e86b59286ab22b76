"""The stage cache: a stage's output model and metrics, kept under a key of everything that computes them, so a
rerun resumes instead of retraining and an edit of anything that matters recomputes."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import torch

from edgekit._version import __version__
from edgekit.models import LoadedModel, load_checkpoint, save_checkpoint
from edgekit.models.checkpoint import file_sha256
from edgekit.models.loaded import state_hash
from edgekit.resources import cache_dir

# Libraries whose version can change what a stage produces (weights, pruning choices, data decoding).
STAGE_LIBRARIES = ("torch", "torchvision", "numpy", "torch-pruning", "timm", "pillow")
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=None)
def code_fingerprint(root: Path | None = None) -> str:
    """A hash of the edgekit source (every .py file under ``root``, by path and content): the code that computed
    a cached stage output. Why: ``__version__`` is not bumped on every change, so a key holding only it would
    serve stage outputs, and their metrics, that older code computed, after an edit or an upgrade from git.
    About 150 files: milliseconds, once per process."""
    root = root or PACKAGE_ROOT
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def stage_cache_key(model: LoadedModel, teacher_hash: str, index: int, stage: str, params: dict,
                    data_fingerprint: str, seed: int) -> str:
    """What a stage's output depends on: its input model (weights and arch) and the pipeline's input model
    (distillation's default teacher), its position (it is seeded with seed + index), its settings and the
    files they name (a teacher checkpoint replaced under the same path), the data's content, and the
    edgekit code and library versions that compute it."""
    import importlib.metadata as md

    versions = {"edgekit": __version__, "edgekit_code": code_fingerprint()}
    for package in STAGE_LIBRARIES:
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            pass
    versions["torch"] = str(torch.__version__)  # the running torch (a source build has no metadata)
    named_files = {value: file_sha256(Path(value)) for value in _strings(params)
                   if len(value) < 4096 and Path(value).is_file()}
    blob = json.dumps({"model": state_hash(model.module), "arch": model.arch, "teacher": teacher_hash,
                       "index": index, "stage": stage, "params": params, "files": named_files,
                       "data": data_fingerprint, "seed": seed, "versions": versions},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []


def cache_get(key: str) -> tuple[LoadedModel | None, dict | None]:
    """(model, metrics) of a cached stage; (None, metrics) for a stage that left the model unchanged;
    (None, None) when nothing is cached."""
    folder = cache_dir("stages")
    meta = folder / f"{key}.json"
    if not meta.exists():
        return None, None
    ckpt = folder / f"{key}.pt"
    metrics = json.loads(meta.read_text())
    return (load_checkpoint(ckpt) if ckpt.exists() else None), metrics


def cache_put(key: str, model: LoadedModel | None, metrics: dict) -> None:
    """Keeps a stage's output; a model that cannot be rebuilt from its arch (TorchScript, a module handed in
    from Python) is not cached, so that stage reruns."""
    folder = cache_dir("stages")
    if model is not None:
        if model.arch is None:
            return
        save_checkpoint(model, folder / f"{key}.pt")
    # The metrics file says "cached": written whole under a temp name and renamed, so a run stopped mid-write
    # (or a second run reading it) never sees half a file.
    meta = folder / f"{key}.json"
    tmp = meta.with_name(f".{meta.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(metrics, default=str))
    os.replace(tmp, meta)
