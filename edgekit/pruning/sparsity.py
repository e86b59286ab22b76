"""Unstructured magnitude pruning and 2:4 semi-structured sparsity: weights are zeroed in place.

Neither makes a model faster on a dense runtime (ONNX Runtime, OpenVINO CPU, TFLite): the zeros are
still stored and multiplied. 2:4 pays off only with sparse tensor cores (TensorRT on Ampere or
newer, with sparsity enabled); unstructured sparsity helps compression (zip) and sparse kernels.
The reports say so next to the numbers.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from edgekit.errors import EdgekitError

NO_DENSE_SPEEDUP = ("no dense-runtime speedup expected: zeros are still stored and computed by dense "
                    "runtimes (ONNX Runtime, OpenVINO CPU, TFLite)")
SPEEDUP_2_4 = "2:4 sparsity can be accelerated only by TensorRT sparse kernels on NVIDIA Ampere or newer"


def _prunable(module: nn.Module, protected: set[str]) -> dict[str, nn.Module]:
    return {n: m for n, m in module.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and n not in protected}


@torch.no_grad()
def unstructured_magnitude(module: nn.Module, sparsity: float, protected: set[str],
                           scope: str = "global") -> dict:
    """Zero the ``sparsity`` fraction of smallest-magnitude weights (globally or per layer)."""
    if not 0 < sparsity < 1:
        raise EdgekitError(f"prune: unstructured ratio must be in (0, 1), got {sparsity}")
    layers = _prunable(module, protected)
    if scope == "global":
        magnitudes = torch.cat([m.weight.abs().flatten() for m in layers.values()])
        k = max(1, int(sparsity * magnitudes.numel()))
        threshold = magnitudes.kthvalue(k).values
        for m in layers.values():
            m.weight.mul_(m.weight.abs() > threshold)
    else:
        for m in layers.values():
            flat = m.weight.abs().flatten()
            k = max(1, int(sparsity * flat.numel()))
            m.weight.mul_(m.weight.abs() > flat.kthvalue(k).values)
    return {"sparsity": _sparsity(layers), "layers": {n: round(_zero_fraction(m.weight), 4)
                                                     for n, m in layers.items()},
            "speedup_note": NO_DENSE_SPEEDUP}


def _groups_of_four(weight: torch.Tensor) -> torch.Tensor | None:
    """A view of the weight as rows of 4 consecutive input channels (the GEMM reduction dim), the
    layout NVIDIA's 2:4 kernels expect; None when input channels are not a multiple of 4."""
    if weight.ndim == 4:  # (out, in, kh, kw) -> (out, kh, kw, in)
        w = weight.permute(0, 2, 3, 1)
    else:
        w = weight
    if w.shape[-1] % 4:
        return None
    return w


@torch.no_grad()
def semi_structured_2_4(module: nn.Module, protected: set[str]) -> dict:
    """In every group of 4 consecutive input-channel weights, keep the 2 largest and zero the others."""
    layers = _prunable(module, protected)
    done, skipped = {}, {}
    for name, m in layers.items():
        if isinstance(m, nn.Conv2d) and m.groups > 1:
            skipped[name] = "grouped/depthwise convolution"
            continue
        w = _groups_of_four(m.weight)
        if w is None:
            skipped[name] = f"{m.weight.shape[1]} input channels is not a multiple of 4"
            continue
        rows = w.reshape(-1, 4)
        drop = rows.abs().argsort(dim=1)[:, :2]
        mask = torch.ones_like(rows).scatter_(1, drop, 0.0)
        masked = (rows * mask).reshape(w.shape)
        m.weight.copy_(masked.permute(0, 3, 1, 2) if m.weight.ndim == 4 else masked)
        done[name] = round(_zero_fraction(m.weight), 4)
    if not done:
        raise EdgekitError("prune: no layer fits 2:4 sparsity (input channels must be multiples of 4)")
    return {"sparsity": _sparsity({n: layers[n] for n in done}), "layers": done, "skipped": skipped,
            "speedup_note": f"{NO_DENSE_SPEEDUP}; {SPEEDUP_2_4}"}


def is_2_4_sparse(weight: torch.Tensor) -> bool:
    """True when every group of 4 consecutive input-channel weights has at most 2 non-zeros."""
    w = _groups_of_four(weight)
    return w is not None and bool(((w.reshape(-1, 4) != 0).sum(1) <= 2).all())


def _zero_fraction(t: torch.Tensor) -> float:
    return float((t == 0).sum()) / t.numel()


def _sparsity(layers: dict[str, nn.Module]) -> float:
    zeros = sum(int((m.weight == 0).sum()) for m in layers.values())
    total = sum(m.weight.numel() for m in layers.values())
    return round(zeros / max(total, 1), 4)
