"""torch ``Dataset`` objects (a notebook's data) as ``DataSplits``.

Items are ``(image, label)`` with the image a CxHxW or HxW tensor, an HxWxC numpy array or a PIL image;
uint8 images stay uint8, float images are kept as float32 (the model's spec scales and normalises either).
The items are read once into memory: the stage cache keys on their content, and training reads them in
random order many times.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from edgekit.data.core import DataSplits, TensorImageDataset, require_two_classes, stratified_split
from edgekit.errors import EdgekitError

HELD_OUT = 0.15   # of one Dataset given alone: the val and the test share, each (as for the digits)


def from_datasets(data: Dataset | Sequence[Dataset], class_names: list[str] | None = None,
                  seed: int = 0) -> DataSplits:
    """``data`` is one Dataset (split 70/15/15, stratified and seeded) or a (train, val[, test]) tuple
    (a missing test split is the val split, and the manifest says so)."""
    splits = list(data) if isinstance(data, (tuple, list)) else [data]
    if not 1 <= len(splits) <= 3:
        raise EdgekitError(f"data is a sequence of {len(splits)} datasets", "give one Dataset or (train, val[, test])")
    sets = [_materialise(ds, role) for ds, role in zip(splits, ("train", "val", "test"))]
    names = class_names or _class_names(splits[0])
    labels = np.concatenate([s.labels for s in sets])
    num_classes = len(names) if names else int(labels.max()) + 1
    if labels.min() < 0 or labels.max() >= num_classes:
        raise EdgekitError(f"labels run from {labels.min()} to {labels.max()}, outside 0..{num_classes - 1}",
                           "labels must be class indices; give class_names= with one name per class")
    require_two_classes(sets[0].labels, "the training data", "give a Dataset whose labels hold two classes or more")
    if len(sets) == 1:
        rest, test = stratified_split(sets[0].labels, HELD_OUT, seed)
        train, val = stratified_split(sets[0].labels[rest], HELD_OUT / (1 - HELD_OUT), seed + 1)
        sets = [sets[0].subset(rest[train]), sets[0].subset(rest[val]), sets[0].subset(test)]
        note = f"{HELD_OUT:.0%} held out (seeded)"
    elif len(sets) == 2:
        sets.append(sets[1])
        note = "same as val"
    else:
        note = "given"
    shapes = {tuple(s.images.shape[1:]) for s in sets}
    if len(shapes) != 1:
        raise EdgekitError(f"the splits hold images of different shapes {sorted(shapes)}",
                           "resize them to one size in your Dataset's transform")
    channels, h, w = shapes.pop()
    return DataSplits(source=f"python:{type(splits[0]).__name__}", train=sets[0], val=sets[1], test=sets[2],
                      num_classes=num_classes, class_names=names or [str(i) for i in range(num_classes)],
                      channels=channels, image_size=(h, w), notes={"test_split": note})


def _class_names(ds: Dataset) -> list[str] | None:
    """torchvision's convention (``classes``), also through a ``Subset``."""
    while ds is not None:
        classes = getattr(ds, "classes", None)
        if classes is not None:
            return [str(c) for c in classes]
        ds = getattr(ds, "dataset", None)
    return None


def _materialise(ds: Dataset, role: str) -> TensorImageDataset:
    try:
        n = len(ds)
    except TypeError:
        raise EdgekitError(f"the {role} data has no length", "give a map-style torch Dataset") from None
    if n == 0:
        raise EdgekitError(f"the {role} data is empty")
    images, labels = [], []
    for i in range(n):
        item = ds[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise EdgekitError(f"{role} item {i} is a {type(item).__name__}, not (image, label)")
        images.append(_image_tensor(item[0], role, i))
        labels.append(int(item[1]))
    shapes = {tuple(x.shape) for x in images}
    if len(shapes) != 1:
        raise EdgekitError(f"the {role} images differ in shape ({len(shapes)} shapes, e.g. {sorted(shapes)[:2]})",
                           "resize them to one size in your Dataset's transform")
    floats = any(x.dtype != torch.uint8 for x in images)
    stacked = torch.stack([x.float() if floats else x for x in images])
    return TensorImageDataset(stacked, np.asarray(labels, dtype=np.int64))


def _image_tensor(image, role: str, index: int) -> torch.Tensor:
    if not isinstance(image, (torch.Tensor, np.ndarray)):
        try:
            image = np.asarray(image)           # PIL
        except Exception:  # noqa: BLE001 - anything that is not an array is the user's type error below
            image = None
        if image is None or image.dtype == object:
            raise EdgekitError(f"{role} item {index}'s image is not a tensor, array or PIL image")
        image = image if image.ndim == 2 else image.transpose(2, 0, 1)   # PIL arrays are HxWxC
    x = torch.as_tensor(image)
    if x.ndim == 2:
        x = x.unsqueeze(0)
    if x.ndim != 3:
        raise EdgekitError(f"{role} item {index}'s image has shape {tuple(x.shape)}", "give CxHxW or HxW images")
    if x.dtype != torch.uint8:
        x = x.float()
    return x.contiguous()
