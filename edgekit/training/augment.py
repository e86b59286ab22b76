"""Batch-level augmentation on model-ready tensors (cheap on CPU: no per-image PIL work)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, pad: int = 2, flip: bool = True, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
    """Random crop after reflect-padding by ``pad`` pixels, and random horizontal flip, per image. Reflection needs
    a pad smaller than the image, so a tiny input is padded by less (by nothing at 1 pixel)."""
    n, _, h, w = x.shape
    pad = min(pad, h - 1, w - 1)
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        # offsets drawn on the CPU generator (same numbers on any device), then moved to the batch's device
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device)[None])[:, None, :, None].expand(n, x.shape[1], h, w + 2 * pad)
        x = padded.gather(2, rows)
        cols = (dx[:, None] + torch.arange(w, device=x.device)[None])[:, None, None, :].expand(n, x.shape[1], h, w)
        x = x.gather(3, cols)
    if flip:
        mask = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x
