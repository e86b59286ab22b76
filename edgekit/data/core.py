"""Dataset containers and loaders shared by every data source."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from edgekit import ui
from edgekit.errors import EdgekitError
from edgekit.spec import ModelSpec

MAX_WORKERS = 8


class BrokenImage(EdgekitError):
    """An image that fails to decode. Raised in a DataLoader worker, it reaches the main process rebuilt
    from a message holding the worker's traceback; that message is cut back to the original line here,
    so the user still sees one line naming the file."""

    def __init__(self, problem: str, hint: str | None = None):
        if "Traceback" in problem and "BrokenImage: " in problem:
            problem = problem.rsplit("BrokenImage: ", 1)[1].strip().splitlines()[0]
            problem, _, tail = problem.partition(" — ")
            hint = hint or tail or None
        super().__init__(problem, hint)


def default_workers() -> int:
    """DataLoader worker processes: the cores this process may use minus one (the training loop's), shared
    among the ranks of this node under torchrun, capped at ``MAX_WORKERS``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    per_rank = cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(per_rank - 1, MAX_WORKERS))


class SeededSampler(Sampler):
    """Yields ``(index, seed)``: the seed of each item's random augmentation is drawn here, in the main
    process, from ``generator`` (checkpointed with the training state), so an epoch's augmentations are the
    same for any number of workers and after a resume (worker RNGs are neither)."""

    def __init__(self, inner: Sampler, generator: torch.Generator):
        self.inner = inner
        self.generator = generator

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self):
        indices = list(self.inner)
        seeds = torch.randint(0, 2**62, (len(indices),), generator=self.generator).tolist()
        return iter(zip(indices, seeds))

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)


class ImageDataset(Dataset):
    """Yields ``(uint8 CxHxW tensor, int label)``; ``labels`` exposes all labels without decoding."""

    labels: np.ndarray

    def content_digest(self) -> str:
        """sha256 of what a model sees: every image's pixels and every label. Stage caches key on it, so
        replacing images under the same names invalidates them. Subclasses give a cheaper exact digest;
        this fallback decodes every item."""
        h = hashlib.sha256(b"items")
        for i in range(len(self)):
            image, label = self[i]
            h.update(str(tuple(image.shape)).encode())
            h.update(image.contiguous().numpy().tobytes())
            h.update(int(label).to_bytes(8, "little", signed=True))
        return h.hexdigest()


class TensorImageDataset(ImageDataset):
    """An in-memory dataset (digits, Fashion-MNIST, a Python ``Dataset``): images (N, C, H, W), uint8 or
    float32 (what ``ModelSpec.prepare`` takes)."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray):
        assert images.dtype in (torch.uint8, torch.float32) and images.ndim == 4
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])

    def subset(self, indices: np.ndarray) -> "TensorImageDataset":
        return TensorImageDataset(self.images[indices], self.labels[indices])

    def content_digest(self) -> str:
        """Every pixel, in full: the arrays are in memory already (Fashion-MNIST's 55 MB hash in ~0.1 s)."""
        h = hashlib.sha256(str(tuple(self.images.shape)).encode())
        h.update(self.images.contiguous().numpy().tobytes())
        h.update(self.labels.tobytes())
        return h.hexdigest()


@dataclass
class DataSplits:
    source: str
    train: ImageDataset
    val: ImageDataset
    test: ImageDataset
    num_classes: int
    class_names: list[str]
    channels: int
    image_size: tuple[int, int]
    notes: dict[str, str] = field(default_factory=dict)
    # Whether a left-right flip keeps the label (true for photos and clothes, false for digits or text):
    # training stages flip only when this is true unless the recipe sets hflip itself.
    mirror_invariant: bool = True
    skipped: dict[str, str] = field(default_factory=dict)   # unreadable files left out (--skip-broken-images)
    # Unlabelled images to calibrate INT8 with (``--calibration DIR``), decoded through the model's spec;
    # None: the train split (or, without one, the evaluation images - with a warning).
    calibration: ImageDataset | None = None
    # Every labelled image of a source that was split into train/val by a ratio it chose itself (a flat image
    # folder without ``?val=``): a run that trains nothing evaluates on all of it (``as_evaluation``).
    # ``whole_for_eval``: the user's say (``?eval=true`` True, ``?val=F`` False, None: edgekit's rule).
    whole: ImageDataset | None = None
    whole_for_eval: bool | None = None

    @property
    def fingerprint(self) -> str:
        """Identifies the data for stage caching: source, decoded size and the content (pixels and labels)
        of each split, so new images under the same file names give a new fingerprint."""
        h = hashlib.sha256(json.dumps([self.source, list(self.image_size), self.channels]).encode())
        for split in (self.train, self.val, self.test) + ((self.calibration,) if self.calibration else ()):
            h.update(split.content_digest().encode())
        return h.hexdigest()[:16]

    def summary(self) -> dict:
        return {"source": self.source, "train": len(self.train), "val": len(self.val),
                "test": len(self.test), "num_classes": self.num_classes, "channels": self.channels,
                "image_size": list(self.image_size), "fingerprint": self.fingerprint, **self.notes,
                **({"skipped_images": {"count": len(self.skipped), "files": self.skipped}} if self.skipped else {})}

    def calibration_source(self) -> tuple[ImageDataset, str]:
        """(images to calibrate INT8 on, their split name: calibration | train | test): ``--calibration``'s, else the train split, else the
        evaluation images themselves, which is said: ranges fitted on the images that are then scored make
        the INT8 accuracy look better than on unseen images."""
        if self.calibration is not None:
            return self.calibration, "calibration"
        if len(self.train):
            return self.train, "train"
        ui.warn("no training split and no --calibration folder: INT8 is calibrated on the evaluation images "
                "themselves, which flatters its accuracy (give --calibration DIR with other images)")
        return self.test, "test"

    def remapped(self, to_model: list[int], model_names: list[str]) -> "DataSplits":
        """These splits with label i relabelled ``to_model[i]``: the data's classes mapped onto a model's
        outputs by name (``edgekit.models.classes``), so top-1 is read over all of the model's outputs."""
        table = np.asarray(to_model, dtype=np.int64)

        def relabel(ds: ImageDataset | None) -> ImageDataset | None:
            if ds is None:
                return None
            new = copy.copy(ds)
            new.labels = table[np.asarray(ds.labels, dtype=np.int64)]
            return new

        return dataclasses.replace(self, train=relabel(self.train), val=relabel(self.val), test=relabel(self.test),
                                   whole=relabel(self.whole), num_classes=len(model_names),
                                   class_names=list(model_names))

    def as_evaluation(self, why: str) -> "DataSplits":
        """Every labelled image as the val and test split, none for training (``whole``; the caller checks
        that nothing trains): 20 labelled photos of a pretrained model are 20 test images, not 4."""
        assert self.whole is not None
        empty = self.whole.subset(np.zeros(0, dtype=np.int64))
        notes = {**self.notes, "test_split": f"the whole folder ({len(self.whole)} images): {why}"}
        return dataclasses.replace(self, train=empty, val=self.whole, test=self.whole, notes=notes)


def require_two_classes(labels: np.ndarray, where: str, hint: str) -> None:
    """A classifier trained on one class scores 100% top-1 on a test split of that class and has learnt nothing:
    every data source refuses it before any training."""
    found = np.unique(labels)
    if len(found) < 2:
        raise EdgekitError(f"{where} holds {len(found)} class{'es' if len(found) != 1 else ''}: a classifier "
                           "needs at least two", hint)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, held_out) with ``fraction`` of each class held out; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    rest, held = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = max(1, int(round(len(idx) * fraction))) if len(idx) > 1 else 0
        held.append(idx[:k])
        rest.append(idx[k:])
    return np.sort(np.concatenate(rest)), np.sort(np.concatenate(held))


def make_loader(ds: Dataset, batch_size: int, shuffle: bool = False, seed: int = 0,
                sampler=None, drop_last: bool = False, workers: int | None = None,
                pin_memory: bool = False, persistent: bool = False) -> DataLoader:
    """One DataLoader for every split. Datasets that decode files (``decodes_files``) get worker processes
    (``default_workers()`` unless ``workers`` says otherwise) with prefetching; in-memory sets stay in
    the main process, where a batch is a slice and workers would only add start-up and copies. Datasets
    with per-item augmentation (``per_item_seeds``) get their seeds from a ``SeededSampler``."""
    g = torch.Generator()
    g.manual_seed(seed)
    if workers is None:
        workers = default_workers() if getattr(ds, "decodes_files", False) else 0
    # With workers, the DataLoader draws their base seed from ``generator`` when an iterator starts: once per
    # run with persistent workers, so a resumed run would shift any order drawn from that generator. The
    # order (and the per-item seeds, for any number of workers) come from a generator of their own, which
    # ``train`` checkpoints; in-memory sets in the main process keep the loader's generator.
    order = torch.Generator().manual_seed(seed + 1)
    if getattr(ds, "per_item_seeds", False):
        inner = sampler or (RandomSampler(ds, generator=order) if shuffle else SequentialSampler(ds))
        sampler, shuffle = SeededSampler(inner, order), False
    elif shuffle and sampler is None and workers > 0:
        sampler, shuffle = RandomSampler(ds, generator=order), False
    extra = {"prefetch_factor": 4, "persistent_workers": persistent} if workers > 0 else {}
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      generator=g, num_workers=workers, drop_last=drop_last, pin_memory=pin_memory, **extra)


def prepared_batches(ds: Dataset, spec: ModelSpec, batch_size: int = 256, limit: int | None = None,
                     device: torch.device | str | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Model-ready ``(inputs, labels)`` batches in dataset order, through ``spec.prepare`` - on ``device``
    when given (the uint8 batch is moved, then prepared there: a quarter of the float copy)."""
    seen = 0
    device = torch.device(device) if device is not None else None
    cuda = device is not None and device.type == "cuda"
    for images, labels in make_loader(ds, batch_size, pin_memory=cuda):
        if limit is not None and seen >= limit:
            break
        if limit is not None:
            images, labels = images[: limit - seen], labels[: limit - seen]
        seen += len(labels)
        if device is not None:
            images = images.to(device, non_blocking=cuda)
        yield spec.prepare(images), labels
