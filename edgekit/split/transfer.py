"""What goes over the wire: bytes per image for the bottleneck, the raw image and its JPEG."""

from __future__ import annotations

import io
import math

import numpy as np
import torch


def transfer_sizes(cfg, ds, samples: int = 256) -> dict:
    """Bytes per image on the wire: the 8-bit bottleneck vs the raw image and its JPEG (quality 95)."""
    bottleneck = math.prod(cfg.bottleneck_shape)
    n = min(samples, len(ds))
    raw, jpeg = [], []
    for i in range(n):
        image = ds[i][0]
        raw.append(image.numel())
        jpeg.append(len(encode_jpeg(image)))
    raw_bytes, jpeg_bytes = float(np.mean(raw)), float(np.mean(jpeg))
    return {"bottleneck_bytes": bottleneck, "input_bytes_raw": raw_bytes, "input_bytes_jpeg95": jpeg_bytes,
            "bottleneck_ratio_raw": bottleneck / raw_bytes, "bottleneck_ratio_jpeg95": bottleneck / jpeg_bytes}


def encode_jpeg(image: torch.Tensor, quality: int = 95) -> bytes:
    """uint8 (C, H, W) -> JPEG bytes (grey or RGB), as a device would send it for full offload."""
    from PIL import Image

    array = image.numpy()
    pil = Image.fromarray(array[0]) if array.shape[0] == 1 else Image.fromarray(np.moveaxis(array, 0, -1))
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
