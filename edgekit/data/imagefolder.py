"""An image-folder tree: ``root/<class>/*.jpg`` with a split ratio, or ``root/train``, ``root/val``
(and optionally ``root/test``) each holding class folders.

Every file is opened and verified before any work starts, so a broken image is reported by name
at once instead of crashing an epoch half-way.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from edgekit.data.core import DataSplits, ImageDataset, stratified_split
from edgekit.data.sources import DATA_SOURCES, float_option, int_option
from edgekit.errors import EdgekitError

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


class FolderDataset(ImageDataset):
    """Decodes lazily to uint8 (C, H, W) at a fixed size, so batches can be stacked."""

    def __init__(self, files: list[Path], labels: np.ndarray, size: tuple[int, int], mode: str,
                 file_digests: list[str]):
        self.files = files
        self.labels = np.asarray(labels, dtype=np.int64)
        self.size = size
        self.mode = mode
        self.file_digests = file_digests   # sha256 of each file's bytes, taken while verifying it

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path = self.files[i]
        try:
            with Image.open(path) as im:
                im = im.convert(self.mode).resize((self.size[1], self.size[0]), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
        except (OSError, UnidentifiedImageError, SyntaxError) as err:
            raise EdgekitError(f"cannot decode image {path}: {err}", "remove or replace the file") from None
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        return torch.from_numpy(arr.copy()), int(self.labels[i])

    def subset(self, indices: np.ndarray) -> "FolderDataset":
        return FolderDataset([self.files[i] for i in indices], self.labels[indices], self.size, self.mode,
                             [self.file_digests[i] for i in indices])

    def content_digest(self) -> str:
        """File names, labels and a full sha256 of each file's bytes (plus the decode size and mode).

        Full rather than sampled (size + mtime + first/last KiB): ``_verify`` reads and decodes every
        byte of every file at load anyway, so hashing those bytes as they pass costs a few percent of
        that, and a sample would miss a same-size edit in the middle of a file whose mtime was kept
        (rsync -t, tar, cp -p) — exactly the stale-cache case this digest exists for."""
        h = hashlib.sha256(json.dumps([list(self.size), self.mode]).encode())
        for path, digest, label in zip(self.files, self.file_digests, self.labels):
            h.update(f"{path.absolute()}\0{digest}\0{int(label)}\n".encode())
        return h.hexdigest()


def _scan(root: Path, classes: list[str] | None = None) -> tuple[list[Path], np.ndarray, list[str]]:
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    names = classes or [d.name for d in class_dirs]
    files, labels = [], []
    for d in class_dirs:
        if d.name not in names:
            raise EdgekitError(f"class folder '{d.name}' in {root} does not exist in the training split")
        for f in sorted(d.rglob("*")):
            if f.suffix.lower() in EXTENSIONS and f.is_file():
                files.append(f)
                labels.append(names.index(d.name))
    if not files:
        raise EdgekitError(f"no images found in {root}",
                           "expected <root>/<class>/*.jpg or <root>/train/<class>/*.jpg")
    return files, np.array(labels), names


def _verify(files: list[Path]) -> tuple[int, str, dict[Path, str]]:
    """Open and verify every image; returns (channels, mode) of the majority of images and the sha256 of
    each file's bytes (read once: decoded and hashed from the same buffer)."""
    grey = 0
    digests: dict[Path, str] = {}
    for f in files:
        try:
            raw = f.read_bytes()
            with Image.open(io.BytesIO(raw)) as im:
                im.verify()
            with Image.open(io.BytesIO(raw)) as im:
                im.load()  # verify() misses truncated data; a full decode does not
                grey += im.mode in ("L", "1", "I;16", "I")
        except (OSError, UnidentifiedImageError, SyntaxError) as err:
            raise EdgekitError(f"broken image file {f}: {err}", "remove or replace it, then rerun") from None
        digests[f] = hashlib.sha256(raw).hexdigest()
    return ((1, "L") if grey == len(files) else (3, "RGB")), digests


@DATA_SOURCES.register("imagefolder")
def load_imagefolder(location, options, image_size) -> DataSplits:
    if not location:
        raise EdgekitError("imagefolder needs a path, e.g. imagefolder:./my-images")
    root = Path(location)
    if not root.is_dir():
        raise EdgekitError(f"image folder {root} does not exist or is not a directory")
    seed = int_option(options, "seed", 0)
    if (root / "train").is_dir():
        train_files, train_labels, classes = _scan(root / "train")
        val_dir = next((root / n for n in ("val", "valid", "validation") if (root / n).is_dir()), None)
        if val_dir is None:
            rest, held = stratified_split(train_labels, float_option(options, "val", 0.2), seed)
            val_files, val_labels = [train_files[i] for i in held], train_labels[held]
            train_files, train_labels = [train_files[i] for i in rest], train_labels[rest]
        else:
            val_files, val_labels, _ = _scan(val_dir, classes)
        test_files, test_labels = ((_scan(root / "test", classes)[:2]) if (root / "test").is_dir()
                                   else (val_files, val_labels))
    else:
        files, labels, classes = _scan(root)
        rest, held = stratified_split(labels, float_option(options, "val", 0.2), seed)
        train_files, train_labels = [files[i] for i in rest], labels[rest]
        val_files, val_labels = [files[i] for i in held], labels[held]
        test_files, test_labels = val_files, val_labels
    all_files = train_files + val_files + [f for f in test_files if f not in set(val_files)]
    (channels, mode), digests = _verify(all_files)
    if image_size is None:
        with Image.open(train_files[0]) as im:
            image_size = (im.height, im.width)
    make = lambda fs, ls: FolderDataset(fs, ls, image_size, mode, [digests[f] for f in fs])  # noqa: E731
    return DataSplits(source=f"imagefolder:{root.resolve()}", train=make(train_files, train_labels),
                      val=make(val_files, val_labels), test=make(test_files, test_labels),
                      num_classes=len(classes), class_names=classes, channels=channels,
                      image_size=tuple(image_size),
                      notes={"test_split": "test/" if (root / "test").is_dir() else "same as val"})
