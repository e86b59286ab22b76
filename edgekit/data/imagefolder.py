"""An image-folder tree: ``root/<class>/*.jpg`` with a split ratio, or ``root/train``, ``root/val``
(and optionally ``root/test``) each holding class folders.

Upfront checking scales with the folder: every file's *header* is read (format, size, mode; Pillow
opens without decoding), in parallel threads, so a file that is not an image is reported by name before
any work starts; a file whose header is fine but whose data is broken (truncated) fails when it is
decoded - in a loader worker - with a one-line error naming it. A header scan costs about a tenth of a
serial verify + full decode + sha256 of every file (benchmarks/results/train_throughput.md): for 1.28M
ImageNet files, minutes instead of over an hour before any work starts.
``skip_broken`` (``--skip-broken-images``) decodes every file once, in parallel, and leaves out those
that fail (listed in ``DataSplits.skipped``, hence in the manifest), so a long run cannot stop half-way.

Decoding and augmentation run in the dataset's ``__getitem__``, i.e. in the DataLoader workers. Pillow
decodes: torchvision.io.decode_image was no faster here (3.5 vs 3.6 ms per 500x375 JPEG), and the eval
view must be Pillow's to equal the weights' own ``transforms()`` (which resize PIL images) bit for bit.
Photo models (a spec with ``resize``: the weights' transform) get the weights' eval transform (short side
+ centre crop, ``edgekit.runtime.preprocess`` - the very function the device runner uses) and, for
training, random-resized-crop + flip at the model's resolution; other models get the whole image
squashed to their input size, as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from edgekit.data.core import (BrokenImage, DataSplits, ImageDataset, default_workers, require_two_classes,
                               stratified_split)
from edgekit.data.sources import DATA_SOURCES, float_option, int_option
from edgekit import ui
from edgekit.errors import EdgekitError
from edgekit.runtime.preprocess import bit_depth, convert_mode, random_resized_crop, resize_crop, to_chw

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError)
SAMPLE_BYTES = 64 * 1024


class FolderDataset(ImageDataset):
    """Decodes lazily to uint8 (C, H, W) at the model's input size, so batches can be stacked.

    Items are ``ds[i]`` (evaluation view) or ``ds[(i, seed)]`` (a training view drawn from ``seed``:
    the loader draws one seed per item in the main process, see ``core.SeededSampler``)."""

    decodes_files = True

    def __init__(self, files: list[Path], labels: np.ndarray, size: tuple[int, int], mode: str,
                 file_digests: list[str], resize: int | None = None, interpolation: str = "bilinear",
                 augment: bool = False, flip: bool = True):
        self.files = files
        self.labels = np.asarray(labels, dtype=np.int64)
        self.size = size
        self.mode = mode
        self.file_digests = file_digests   # size + mtime_ns + sampled bytes of each file (file_digest)
        self.resize = resize
        self.interpolation = interpolation
        self.augment = augment
        self.flip = flip

    @property
    def per_item_seeds(self) -> bool:
        return self.augment

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item) -> tuple[torch.Tensor, int]:
        i, seed = item if isinstance(item, tuple) else (item, None)
        path = self.files[i]
        try:
            with Image.open(path) as im:
                im = convert_mode(im, self.mode)
                if self.augment and seed is not None:
                    im = random_resized_crop(im, self.size, random.Random(seed), self.interpolation, flip=self.flip)
                elif self.resize is None:  # squash (edgekit's small models), bilinear as always
                    im = im.resize((self.size[1], self.size[0]), Image.BILINEAR)
                else:
                    im = resize_crop(im, self.resize, self.size, self.interpolation)
                arr = to_chw(im)
        except DECODE_ERRORS as err:
            raise BrokenImage(f"cannot decode image {path}: {err}",
                              "remove or replace the file, or pass --skip-broken-images") from None
        return torch.from_numpy(arr), int(self.labels[i])

    def subset(self, indices: np.ndarray) -> "FolderDataset":
        return self._copy([self.files[i] for i in indices], self.labels[indices],
                          [self.file_digests[i] for i in indices])

    def augmented(self, flip: bool) -> "FolderDataset | None":
        """This split with per-item random-resized-crop + flip for training; None when the model squashes
        (the training loop then applies its batch-level crop/flip, as for in-memory sets)."""
        if self.resize is None:
            return None
        copy = self._copy(self.files, self.labels, self.file_digests)
        copy.augment, copy.flip = True, flip
        return copy

    def _copy(self, files, labels, digests) -> "FolderDataset":
        return FolderDataset(files, labels, self.size, self.mode, digests, self.resize, self.interpolation,
                             self.augment, self.flip)

    def content_digest(self) -> str:
        """File names, labels and each file's ``file_digest``, plus how files are decoded."""
        h = hashlib.sha256(json.dumps([list(self.size), self.mode, self.resize, self.interpolation,
                                       "deep-modes-scaled"]).encode())
        for path, digest, label in zip(self.files, self.file_digests, self.labels):
            h.update(f"{path.absolute()}\0{digest}\0{int(label)}\n".encode())
        return h.hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of the file's size, mtime_ns and sampled bytes (the first, middle and last 64 KiB).

    Not a full hash: once the upfront check stopped decoding every file, reading every byte only to hash
    it would cost a full pass over the folder (an ImageNet train split is ~140 GB) on every run. An edit
    changes the size or mtime; a same-size replacement with the mtime kept (``cp -p``, ``rsync -t``)
    changes the sampled bytes for any re-encoded image (JPEG entropy data differs from the first block,
    and a small file - a thumbnail, an uncompressed BMP under 192 KiB - is read whole). What is missed is
    an edit confined to unsampled bytes of a large file *and* a restored mtime; ``--no-cache`` covers it."""
    st = path.stat()
    h = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}".encode())
    with open(path, "rb") as f:
        if st.st_size <= 3 * SAMPLE_BYTES:
            h.update(f.read())
        else:
            h.update(f.read(SAMPLE_BYTES))
            f.seek(st.st_size // 2)
            h.update(f.read(SAMPLE_BYTES))
            f.seek(-SAMPLE_BYTES, os.SEEK_END)
            h.update(f.read(SAMPLE_BYTES))
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


def _check(path: Path, full: bool) -> tuple[str | None, str | None, str]:
    """(mode, error, digest) of one file: its header (or, with ``full``, a complete decode)."""
    try:
        with Image.open(path) as im:
            mode = im.mode
            if full:
                im.load()
        return mode, None, file_digest(path)
    except DECODE_ERRORS as err:
        return None, f"{type(err).__name__}: {err}", ""


def check_files(files: list[Path], full: bool = False, workers: int | None = None
                ) -> tuple[dict[Path, str], dict[Path, str], dict[Path, str]]:
    """Check every file in parallel threads (Pillow releases the GIL while it reads and decodes):
    (mode of each good file, error of each bad one, digest of each good one)."""
    workers = workers or max(1, default_workers() + 1) * (4 if not full else 1)  # headers: I/O bound
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda f: _check(f, full), files, chunksize=64))
    modes, errors, digests = {}, {}, {}
    for f, (mode, error, digest) in zip(files, results):
        if error is None:
            modes[f], digests[f] = mode, digest
        else:
            errors[f] = error
    return modes, errors, digests


@DATA_SOURCES.register("imagefolder")
def load_imagefolder(location, options, image_size, resize: int | None = None, interpolation: str = "bilinear",
                     skip_broken: bool = False, **_) -> DataSplits:
    if not location:
        raise EdgekitError("imagefolder needs a path, e.g. imagefolder:./my-images")
    root = Path(location)
    if not root.is_dir():
        raise EdgekitError(f"image folder {root} does not exist or is not a directory")
    seed = int_option(options, "seed", 0)
    train_root = root / "train" if (root / "train").is_dir() else root
    whole_for_eval = _eval_option(options, flat=train_root is root)
    whole = None
    modes, errors, digests = check_files(_all_files(root), full=skip_broken)
    if errors and not skip_broken:
        bad, why = next(iter(errors.items()))
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise EdgekitError(f"broken image file {bad}: {why}{more}",
                           "remove or replace it, or pass --skip-broken-images to skip unreadable files")
    keep = lambda fs, ls: ([f for f in fs if f not in errors],  # noqa: E731
                           np.asarray([l for f, l in zip(fs, ls) if f not in errors], dtype=np.int64))
    if train_root is not root:
        found, found_labels, classes = _scan(train_root)
        train_files, train_labels = keep(found, found_labels)
        val_dir = next((root / n for n in ("val", "valid", "validation") if (root / n).is_dir()), None)
        if val_dir is None:
            rest, held = stratified_split(train_labels, float_option(options, "val", 0.2), seed)
            val_files, val_labels = [train_files[i] for i in held], train_labels[held]
            train_files, train_labels = [train_files[i] for i in rest], train_labels[rest]
        else:
            val_files, val_labels = keep(*_scan(val_dir, classes)[:2])
        test_files, test_labels = (keep(*_scan(root / "test", classes)[:2]) if (root / "test").is_dir()
                                   else (val_files, val_labels))
    else:
        files, labels, classes = _scan(root)
        files, labels = keep(files, labels)
        whole = (files, labels)
        rest, held = stratified_split(labels, float_option(options, "val", 0.2), seed)
        train_files, train_labels = [files[i] for i in rest], labels[rest]
        val_files, val_labels = [files[i] for i in held], labels[held]
        test_files, test_labels = val_files, val_labels
    if not train_files:
        raise EdgekitError(f"no readable training images in {root}")
    require_two_classes(train_labels, f"image folder {train_root}",
                        "put each class's images in a subfolder of their own: <root>/<class>/*.png")
    used = train_files + val_files + test_files
    grey = sum(modes[f] in ("L", "1", "LA") or bit_depth(modes[f]) > 8 for f in set(used))
    source_modes = _source_modes([modes[f] for f in set(used)], root)
    channels, mode = (1, "L") if grey == len(set(used)) else (3, "RGB")
    if image_size is None:
        with Image.open(train_files[0]) as im:
            image_size = (im.height, im.width)
    make = lambda fs, ls: FolderDataset(fs, ls, tuple(image_size), mode, [digests[f] for f in fs],  # noqa: E731
                                        resize, interpolation)
    skipped = sorted(str(f) for f in errors)
    return DataSplits(whole=make(*whole) if whole is not None else None, whole_for_eval=whole_for_eval,
                      source=f"imagefolder:{root.resolve()}", train=make(train_files, train_labels),
                      val=make(val_files, val_labels), test=make(test_files, test_labels),
                      num_classes=len(classes), class_names=classes, channels=channels,
                      image_size=tuple(image_size), skipped={f: errors[Path(f)] for f in skipped},
                      notes={"test_split": "test/" if (root / "test").is_dir() else "same as val",
                             "source_modes": source_modes,
                             "decode": (f"short side {resize} ({interpolation}) + centre crop; training: "
                                        "random-resized-crop + flip" if resize else "squash to the input size")})


def _eval_option(options: dict[str, str], flat: bool) -> bool | None:
    """``?eval=true``: the whole flat folder is the evaluation set (nothing trains); ``?val=F``: split it as
    asked; neither: edgekit's rule (whole folder when no stage trains and the classes are the model's)."""
    if "eval" not in options:
        return False if "val" in options else None
    value = options["eval"].strip().lower()
    if value not in ("true", "1", "yes", "false", "0", "no"):
        raise EdgekitError(f"data option eval={options['eval']!r} is not true or false")
    wanted = value in ("true", "1", "yes")
    if wanted and "val" in options:
        raise EdgekitError("data options eval=true and val= contradict each other",
                           "eval=true evaluates on the whole folder; val=F splits it for training")
    if wanted and not flat:
        raise EdgekitError("data option eval=true needs a flat folder (<root>/<class>/*.jpg)",
                           "a train/ + val/ tree already says which images are for evaluation")
    return wanted


def load_calibration_folder(location: str | Path, size: tuple[int, int], channels: int, resize: int | None,
                            interpolation: str) -> FolderDataset:
    """``--calibration DIR``: every image under ``DIR`` (any layout, recursive; no labels), decoded like the
    model's evaluation images (its spec's resize/crop) - unlabelled photos to fit INT8 ranges on."""
    root = Path(location)
    if not root.is_dir():
        raise EdgekitError(f"calibration folder {root} does not exist or is not a directory",
                           "give a folder of images (any layout) for --calibration")
    files = sorted(f for f in root.rglob("*") if f.suffix.lower() in EXTENSIONS and f.is_file()
                   and not any(part.startswith(".") for part in f.relative_to(root).parts))
    if not files:
        raise EdgekitError(f"no images found in calibration folder {root}",
                           f"expected image files ({', '.join(sorted(EXTENSIONS))}) anywhere under it")
    modes, errors, digests = check_files(files)
    if errors:
        bad, why = next(iter(errors.items()))
        raise EdgekitError(f"broken image file {bad} in the calibration folder: {why}", "remove or replace it")
    return FolderDataset(files, np.full(len(files), -1, dtype=np.int64), tuple(size), "L" if channels == 1 else "RGB",
                         [digests[f] for f in files], resize, interpolation)


def _source_modes(modes: list[str], root: Path) -> str:
    """The Pillow modes of the files, e.g. "I;16 (80 files)", for the manifest; a warning when a folder mixes
    bit depths (8-bit and 16-bit files of one class look alike only after scaling, which may not be meant)."""
    counts = Counter(modes)
    depths = sorted({bit_depth(m) for m in counts})
    if len(depths) > 1:
        ui.warn(f"{root} mixes bit depths ({', '.join(f'{d}-bit' for d in depths)}): each image is scaled by its "
                "own format's full range to the model's 0..255 input")
    return ", ".join(f"{m} ({n} files)" for m, n in sorted(counts.items()))


def _all_files(root: Path) -> list[Path]:
    dirs = ([root / n for n in ("train", "val", "valid", "validation", "test") if (root / n).is_dir()]
            if (root / "train").is_dir() else [root])
    return [f for d in dirs for f in _scan(d)[0]] if dirs else []
