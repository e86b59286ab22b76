"""Fashion-MNIST from the official idx files (Debian's ``dataset-fashion-mnist`` installs them under
/usr/share/datasets/fashion-mnist). 60k train (5k of it held out as val), 10k official test."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from edgekit.data.core import DataSplits, TensorImageDataset, stratified_split
from edgekit.data.sources import DATA_SOURCES, int_option
from edgekit.errors import EdgekitError

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]


def read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (optionally gzipped): magic 0x00 0x00 dtype ndim, big-endian dims, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise EdgekitError(f"{path} is not an unsigned-byte idx file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise EdgekitError(f"{path} is truncated: expected {int(np.prod(dims))} bytes of data, found {data.size}")
    return data.reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    raise EdgekitError(f"Fashion-MNIST file {stem}[.gz] not found in {root}",
                       "install Debian's dataset-fashion-mnist or pass fashion-mnist:/path/to/idx-files")


@DATA_SOURCES.register("fashion-mnist")
def load_fashion_mnist(location, options, image_size, **_) -> DataSplits:
    root = Path(location) if location else DEFAULT_DIR
    if not root.is_dir():
        raise EdgekitError(f"Fashion-MNIST directory {root} does not exist",
                           "apt-get install dataset-fashion-mnist, or pass fashion-mnist:/path/to/idx-files")
    seed = int_option(options, "seed", 0)
    x_train = read_idx(_find(root, "train-images-idx3-ubyte"))
    y_train = read_idx(_find(root, "train-labels-idx1-ubyte"))
    x_test = read_idx(_find(root, "t10k-images-idx3-ubyte"))
    y_test = read_idx(_find(root, "t10k-labels-idx1-ubyte"))
    train = TensorImageDataset(torch.from_numpy(x_train.copy()).unsqueeze(1), y_train)
    test = TensorImageDataset(torch.from_numpy(x_test.copy()).unsqueeze(1), y_test)
    train_idx, val_idx = stratified_split(train.labels, 5000 / 60000, seed)
    splits = {"train": train.subset(train_idx), "val": train.subset(val_idx), "test": test}
    notes = {"test_split": "official 10k test set"}
    # ?train=N&val=N&test=N: the first N of a split (smoke tests and benchmarks' quick modes)
    for name in ("train", "val", "test"):
        if name in options:
            n = int_option(options, name, 0)
            splits[name] = splits[name].subset(np.arange(min(max(n, 1), len(splits[name]))))
            notes["test_split" if name == "test" else f"{name}_split"] = f"first {len(splits[name])} images only"
    suffix = "".join(f"?{k}={options[k]}" if i == 0 else f"&{k}={options[k]}"
                     for i, k in enumerate(k for k in ("train", "val", "test") if k in options))
    return DataSplits(source=f"fashion-mnist:{root}{suffix}", train=splits["train"], val=splits["val"],
                      test=splits["test"], num_classes=10, class_names=CLASSES, channels=1, image_size=(28, 28),
                      notes=notes)
