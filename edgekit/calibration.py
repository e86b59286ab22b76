"""Calibration sets for post-training quantization: how they are drawn, stored and read back.

A calibration set is N model-ready images (default 300) drawn from the *training* split - or from the
unlabelled ``--calibration DIR`` when given, or, with neither, from the evaluation images with a warning
(``DataSplits.calibration_source``) - with a fixed seed, class-balanced when labels exist (round-robin over
classes, so every class is represented even when N is small), pushed through ``ModelSpec.prepare`` so every backend sees exactly the tensors the
model sees. It is stored as ``calibration.npz`` in the bundle (its sha256 goes into the manifest) so
a quantized artifact can be rebuilt bit-for-bit. See ``calibration/README.md``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from edgekit import ui
from edgekit.errors import EdgekitError
from edgekit.spec import ModelSpec

DEFAULT_SIZE = 300
# Below this many images activation ranges get noisy (NNCF's and ONNX Runtime's examples use 100-300).
RECOMMENDED_MIN = 100
FORMAT = "edgekit-calibration/1"


@dataclass
class CalibrationSet:
    inputs: np.ndarray                 # float32 N x C x H x W, model-ready
    labels: np.ndarray                 # int64 N (-1 when the data has no labels)
    indices: np.ndarray                # positions in the source split
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.inputs)

    def batches(self, batch_size: int = 1):
        for i in range(0, len(self.inputs), batch_size):
            yield self.inputs[i:i + batch_size]

    def class_counts(self) -> dict[int, int]:
        values, counts = np.unique(self.labels, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts)}


def balanced_indices(labels: np.ndarray | None, total: int, n: int, seed: int) -> np.ndarray:
    """``n`` distinct indices out of ``total``: round-robin over shuffled per-class pools when labels
    exist (classes differ by at most one image unless a class runs out), else a seeded sample."""
    rng = np.random.default_rng(seed)
    n = min(n, total)
    if labels is None or len(labels) != total:
        return np.sort(rng.permutation(total)[:n])
    labels = np.asarray(labels)
    pools = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        pools.append(list(idx))
    order = rng.permutation(len(pools))
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n:
        added = False
        for p in order:
            if depth < len(pools[p]) and len(chosen) < n:
                chosen.append(int(pools[p][depth]))
                added = True
        if not added:
            break
        depth += 1
    return np.sort(np.asarray(chosen, dtype=np.int64))


def draw_calibration(ds: Dataset, spec: ModelSpec, size: int = DEFAULT_SIZE, seed: int = 0,
                     source: str = "train", batch_size: int = 64) -> CalibrationSet:
    """Draw, prepare and return a calibration set from ``ds`` (normally the training split)."""
    total = len(ds)
    if size <= 0:
        raise EdgekitError(f"calibration size must be positive, got {size}", "set compile.calibration_size >= 1")
    if total == 0:
        raise EdgekitError(f"no images to calibrate with: the {source} split is empty",
                           "give a --data source with training images (quantization needs a calibration set)")
    labels = getattr(ds, "labels", None)
    if labels is not None and (np.asarray(labels) < 0).all():   # an unlabelled folder (--calibration DIR)
        labels = None
    idx = balanced_indices(None if labels is None else np.asarray(labels), total, size, seed)
    if len(idx) < min(size, RECOMMENDED_MIN):
        ui.warn(f"only {len(idx)} calibration images (asked for {size}; at least {RECOMMENDED_MIN} recommended): "
                "INT8 activation ranges may be poor")
    inputs, out_labels = [], []
    with ui.progress("calibration set", len(idx)) as bar:
        for start in range(0, len(idx), batch_size):
            chunk = idx[start:start + batch_size]
            items = [ds[int(i)] for i in chunk]
            images = torch.stack([it[0] for it in items])
            inputs.append(spec.prepare(images).numpy().astype(np.float32))
            out_labels.extend(int(it[1]) for it in items)
            bar.advance(len(chunk))
    arr = np.concatenate(inputs)
    lab = np.asarray(out_labels, dtype=np.int64)
    meta = {"format": FORMAT, "size": int(len(arr)), "requested": int(size), "seed": int(seed), "split": source,
            "balanced": labels is not None, "input_shape": list(arr.shape[1:]),
            "transform": spec.transform()}  # the images went through the spec's own file -> input recipe
    return CalibrationSet(arr, lab, idx, meta)


def save_calibration(cal: CalibrationSet, path: Path) -> str:
    """Write ``calibration.npz``; returns its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, inputs=cal.inputs, labels=cal.labels, indices=cal.indices,
                        meta=np.asarray(repr(sorted(cal.meta.items()))))
    tmp.replace(path)
    return _sha256(path)


def load_calibration(path: Path) -> CalibrationSet:
    """Read a ``calibration.npz`` written by ``save_calibration`` (or any npz with an ``inputs`` array)."""
    if not Path(path).is_file():
        raise EdgekitError(f"calibration file {path} not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            inputs = z["inputs"].astype(np.float32)
            labels = z["labels"] if "labels" in z else np.full(len(inputs), -1, dtype=np.int64)
            indices = z["indices"] if "indices" in z else np.arange(len(inputs))
    except (KeyError, ValueError, OSError) as err:
        raise EdgekitError(f"{path} is not a calibration set ({err})", "it needs an 'inputs' array N x C x H x W") from None
    if inputs.ndim != 4 or len(inputs) == 0:
        raise EdgekitError(f"{path} has no usable calibration images (inputs shape {inputs.shape})")
    return CalibrationSet(inputs, labels.astype(np.int64), indices.astype(np.int64),
                          {"format": FORMAT, "size": int(len(inputs)), "file": str(path)})


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    h.update(Path(path).read_bytes())
    return h.hexdigest()
