"""Image file -> model input with numpy + Pillow only: what the weights expect, on the host and on devices.

One implementation of "resize the short side (PIL, antialiased, the weights' interpolation), centre-crop,
scale to [0, 1], normalise by mean/std" - torchvision's ``ImageClassification`` eval transform - so the
host's data path (``edgekit.data.imagefolder``), calibration, ``eval.npz`` and the device runner agree by
construction. No torch here: this file is shipped to devices with the rest of the runtime package.

A transform is a plain dict (``ModelSpec.transform()``)::

    {"resize": 232 | None, "crop": [224, 224], "interpolation": "bilinear", "mode": "RGB",
     "channel_order": "RGB", "mean": [...], "std": [...]}

``resize: None`` squashes the whole image to ``crop`` (edgekit's own small models).
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np

FILTERS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


def pil_filter(name: str):
    from PIL import Image

    if name not in FILTERS:
        raise ValueError(f"unknown interpolation {name!r} (one of {', '.join(FILTERS)})")
    return getattr(Image.Resampling, name.upper())


def short_side_size(height: int, width: int, short: int) -> tuple[int, int]:
    """(H, W) after resizing the short side to ``short``; the long side rounds down (torchvision's rule)."""
    if width <= height:
        return int(short * height / width), short
    return short, int(short * width / height)


def crop_box(height: int, width: int, crop_h: int, crop_w: int) -> tuple[int, int]:
    """(top, left) of a centred crop, rounded as torchvision's ``center_crop`` does."""
    return int(round((height - crop_h) / 2.0)), int(round((width - crop_w) / 2.0))


def resize_crop(image, resize: int | None, crop: tuple[int, int], interpolation: str = "bilinear"):
    """PIL image -> PIL image of size ``crop`` (H, W): short side to ``resize`` then centre crop, or a
    squash to ``crop`` when ``resize`` is None. Crops larger than the image are zero-padded (torchvision)."""
    crop_h, crop_w = int(crop[0]), int(crop[1])
    flt = pil_filter(interpolation)
    if resize is None:
        return image.resize((crop_w, crop_h), flt) if image.size != (crop_w, crop_h) else image
    h, w = short_side_size(image.height, image.width, int(resize))
    if (h, w) != (image.height, image.width):
        image = image.resize((w, h), flt)
    if crop_h > h or crop_w > w:
        from PIL import Image

        padded = Image.new(image.mode, (max(w, crop_w), max(h, crop_h)))
        padded.paste(image, ((max(w, crop_w) - w) // 2, (max(h, crop_h) - h) // 2))
        image, h, w = padded, max(h, crop_h), max(w, crop_w)
    top, left = crop_box(h, w, crop_h, crop_w)
    return image.crop((left, top, left + crop_w, top + crop_h))


def random_resized_crop(image, size: tuple[int, int], rng: random.Random, interpolation: str = "bilinear",
                        scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                        flip: bool = True):
    """Training view: a random area/aspect crop resized to ``size`` (Inception-style, torchvision's
    ``RandomResizedCrop`` parameters) and a random left-right flip, drawn from ``rng`` (seeded per item by
    the loader, so epochs are reproducible whatever the number of workers)."""
    from PIL import Image

    width, height = image.size
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    box = None
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top, left = rng.randint(0, height - h), rng.randint(0, width - w)
            box = (left, top, left + w, top + h)
            break
    if box is None:  # fallback: the central crop at the nearest allowed aspect ratio
        in_ratio = width / height
        w, h = ((width, int(round(width / ratio[0]))) if in_ratio < ratio[0] else
                (int(round(height * ratio[1])), height) if in_ratio > ratio[1] else (width, height))
        top, left = (height - h) // 2, (width - w) // 2
        box = (left, top, left + w, top + h)
    out = image.resize((int(size[1]), int(size[0])), pil_filter(interpolation), box=box)
    if flip and rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return out


def to_chw(image) -> np.ndarray:
    """PIL image -> uint8 (C, H, W)."""
    arr = np.asarray(image, dtype=np.uint8)
    return np.ascontiguousarray(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))


def normalize(chw: np.ndarray, mean, std, channel_order: str = "RGB") -> np.ndarray:
    """uint8 (C, H, W) -> float32 (x / 255 - mean) / std, in float32 as torchvision computes it."""
    x = chw.astype(np.float32) / np.float32(255.0)
    if channel_order == "BGR":
        x = x[::-1]
    c = x.shape[0]
    m = np.asarray(mean * c if len(mean) == 1 else mean, dtype=np.float32).reshape(-1, 1, 1)
    s = np.asarray(std * c if len(std) == 1 else std, dtype=np.float32).reshape(-1, 1, 1)
    return np.ascontiguousarray((x - m) / s, dtype=np.float32)


# Full scale of the high-bit-depth modes Pillow decodes: 16-bit PNG/TIFF as I;16* (or I with 16-bit data),
# float TIFF as F (taken as 0..1). Pillow's own ``convert`` clips these to 255 instead of scaling, so 300,
# 1000 and 65535 all became the same white pixel.
DEEP_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0, "I": 65535.0, "F": 1.0}


def bit_depth(mode: str) -> int:
    """Bits per sample of a Pillow mode: 8 for the usual modes, 16 for I;16* and I, 32 for F."""
    return 32 if mode == "F" else 16 if mode in DEEP_MODES else 8


def convert_mode(image, mode: str):
    """``image.convert(mode)``, with 16-bit and float images scaled by their full range to 8 bits first
    (what the models' 0..255 input range means), keeping the most significant bits instead of clipping."""
    from PIL import Image

    full = DEEP_MODES.get(image.mode)
    if full is None:
        return image.convert(mode)
    arr = np.asarray(image, dtype=np.float64)
    if image.mode == "I" and arr.size and arr.max() > 65535:   # true 32-bit integer data
        full = float(2 ** 31 - 1)
    scaled = np.clip(np.rint(arr * (255.0 / full)), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, "L").convert(mode)


def open_image(path: str | Path, mode: str = "RGB"):
    from PIL import Image

    with Image.open(path) as im:
        return convert_mode(im, mode)


def preprocess_file(path: str | Path, transform: dict) -> np.ndarray:
    """One image file -> float32 (C, H, W) model input, per ``transform``."""
    image = resize_crop(open_image(path, transform.get("mode", "RGB")), transform.get("resize"),
                        tuple(transform["crop"]), transform.get("interpolation", "bilinear"))
    return normalize(to_chw(image), transform["mean"], transform["std"], transform.get("channel_order", "RGB"))


def preprocess_files(paths, transform: dict) -> np.ndarray:
    """Image files -> float32 (N, C, H, W)."""
    return np.stack([preprocess_file(p, transform) for p in paths])
