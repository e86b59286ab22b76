"""scikit-learn's bundled 8x8 handwritten digits (1,797 images): offline, tiny, used by the quickstart
and the fast tests. Split 70/15/15 (train/val/test), stratified, fixed seed."""

from __future__ import annotations

import numpy as np
import torch

from edgekit.data.core import DataSplits, TensorImageDataset, stratified_split
from edgekit.data.sources import DATA_SOURCES, int_option


@DATA_SOURCES.register("digits")
def load_digits(location, options, image_size, **_) -> DataSplits:
    from sklearn.datasets import load_digits as sk_load

    seed = int_option(options, "seed", 0)
    bunch = sk_load()
    images = torch.from_numpy((bunch.images * (255.0 / 16.0)).round().astype(np.uint8)).unsqueeze(1)
    full = TensorImageDataset(images, bunch.target)
    rest, test = stratified_split(full.labels, 0.15, seed)
    train_idx, val_idx = stratified_split(full.labels[rest], 0.15 / 0.85, seed + 1)
    train_idx, val_idx = rest[train_idx], rest[val_idx]
    return DataSplits(source="digits", mirror_invariant=False, train=full.subset(train_idx), val=full.subset(val_idx),
                      test=full.subset(test), num_classes=10, class_names=[str(i) for i in range(10)],
                      channels=1, image_size=(8, 8), notes={"test_split": "15% held out (seeded)"})
