"""Low-rank factorization of Conv2d / Linear layers: rank choice, MACs, and the decompositions.

- ``svd``: a Linear becomes two thinner Linears (W = U S V^T, split as sqrt(S) on each side); a
  k x k conv becomes a rank-r k x k conv with r outputs followed by a 1x1 (W reshaped to
  out x (in*k*k)); a 1x1 conv becomes a rank-r 1x1 pair.
- ``spatial_svd`` (Jaderberg et al. 2014, AIMET's spatial SVD): W reshaped to (in*kh) x (out*kw),
  so the conv becomes a kh x 1 conv with r channels then a 1 x kw conv.
- ``tucker``: Tucker-2 via HOSVD (truncated SVDs of the output- and input-channel unfoldings):
  1x1 (in -> r_in), k x k core (r_in -> r_out), 1x1 (r_out -> out). Plain ``torch.linalg``.

Linear layers are factorized by SVD whatever the method (spatial SVD and Tucker-2 are conv
decompositions). A layer whose factorized MACs would not be lower is left alone and reported.
At full rank every decomposition reproduces the layer exactly (up to float rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn as nn

from edgekit.models.factorized import build_factorized, replace_layer
from edgekit.errors import EdgekitError
from edgekit.spec import ModelSpec

Method = Literal["svd", "spatial_svd", "tucker"]


@dataclass
class Candidate:
    """One layer that could be factorized, with what ranks depend on."""

    path: str
    layer: nn.Module
    kind: str                       # "linear" | "conv"
    method: str                     # the decomposition this layer gets
    in_hw: tuple[int, int]          # input H, W (1, positions for Linear)
    out_hw: tuple[int, int]
    skip: str | None = None         # why it cannot be factorized at all

    @property
    def full_rank(self) -> int | tuple[int, int]:
        w = self.layer.weight
        if self.kind == "linear":
            return min(w.shape)
        o, i, kh, kw = w.shape
        if self.method == "svd":
            return min(o, i * kh * kw)
        if self.method == "spatial_svd":
            return min(i * kh, o * kw)
        return (min(i, o * kh * kw), min(o, i * kh * kw))   # ranks of the input/output-mode unfoldings

    def base_entry(self) -> dict[str, Any]:
        w = self.layer.weight
        entry = {"path": self.path, "kind": self.kind, "method": self.method,
                 "in": int(w.shape[1]), "out": int(w.shape[0]), "bias": self.layer.bias is not None}
        if self.kind == "conv":
            c: nn.Conv2d = self.layer
            entry.update(kernel=list(c.kernel_size), stride=list(c.stride), padding=list(c.padding),
                         dilation=list(c.dilation))
        return entry


def candidates(module: nn.Module, spec: ModelSpec, method: Method, ignore: list[str]) -> list[Candidate]:
    """Every Conv2d/Linear with the input/output sizes one forward pass shows."""
    shapes: dict[str, tuple] = {}
    handles = [m.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, (i[0].shape, o.shape)))
               for name, m in module.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = module.training
    with torch.no_grad():
        module.eval()(torch.zeros(1, *spec.input_shape))
    module.train(was_training)
    for h in handles:
        h.remove()
    protected = ignored_layers(module, ignore)
    found = []
    for name, m in module.named_modules():
        if name not in shapes:
            continue
        (ishape, oshape) = shapes[name]
        if isinstance(m, nn.Linear):
            positions = math.prod(ishape[1:-1]) if len(ishape) > 2 else 1
            cand = Candidate(name, m, "linear", "svd", (1, positions), (1, positions))
        else:
            kh, kw = m.kernel_size
            cand = Candidate(name, m, "conv", method, tuple(ishape[-2:]), tuple(oshape[-2:]))
            if m.groups != 1:
                cand.skip = "grouped/depthwise convolution"
            elif m.padding_mode != "zeros" or isinstance(m.padding, str):
                cand.skip = f"padding {m.padding_mode!r}/{m.padding!r} not supported"
            elif method == "spatial_svd" and kh == kw == 1:
                cand.skip = "1x1 conv: spatial SVD needs a k x k kernel"
            elif method == "tucker" and kh == kw == 1:
                cand.method = "svd"  # Tucker-2 of a 1x1 conv is a rank-r 1x1 pair with an extra 1x1
        if name in protected:
            cand.skip = "ignored (recipe)"
        found.append(cand)
    return found


def ignored_layers(module: nn.Module, ignore: list[str]) -> set[str]:
    """Module paths named in ``ignore``, or inside one of them (``layer1`` covers ``layer1.0.conv1``)."""
    names = [n for n, _ in module.named_modules() if n]
    out = set()
    for prefix in ignore:
        if prefix not in names:
            raise EdgekitError(f"lowrank: no layer named '{prefix}' in the model",
                               "use module paths as shown by `edgekit inspect`")
        out |= {n for n in names if n == prefix or n.startswith(prefix + ".")}
    return out


def layer_cost(c: Candidate, rank: int | tuple[int, int] | None) -> tuple[int, int]:
    """(MACs, params) of the layer for one image: original when ``rank`` is None, else factorized."""
    w = c.layer.weight
    bias = w.shape[0] if c.layer.bias is not None else 0
    (hi, wi), (ho, wo) = c.in_hw, c.out_hw
    if c.kind == "linear":
        o, i = w.shape
        pos = ho * wo
        if rank is None:
            return o * i * pos, o * i + bias
        return rank * (i + o) * pos, rank * (i + o) + bias
    o, ig, kh, kw = w.shape
    if rank is None:
        return o * ig * kh * kw * ho * wo, w.numel() + bias
    if c.method == "svd":
        return rank * ig * kh * kw * ho * wo + o * rank * ho * wo, rank * ig * kh * kw + o * rank + bias
    if c.method == "spatial_svd":
        # the kh x 1 conv keeps the input width (stride/padding in width belong to the 1 x kw conv)
        return (rank * ig * kh * ho * wi + o * rank * kw * ho * wo), rank * ig * kh + o * rank * kw + bias
    r_in, r_out = rank
    return (r_in * ig * hi * wi + r_out * r_in * kh * kw * ho * wo + o * r_out * ho * wo,
            r_in * ig + r_out * r_in * kh * kw + o * r_out + bias)


def _matrices(c: Candidate) -> list[torch.Tensor]:
    """The matrices whose singular values set the rank(s): one, or two for Tucker-2."""
    w = c.layer.weight.detach().float()
    if c.kind == "linear":
        return [w]
    o, i, kh, kw = w.shape
    if c.method == "svd":
        return [w.reshape(o, -1)]
    if c.method == "spatial_svd":
        return [w.permute(1, 2, 0, 3).reshape(i * kh, o * kw)]
    return [w.permute(1, 0, 2, 3).reshape(i, -1), w.reshape(o, -1)]   # (input mode, output mode)


def rank_for(c: Candidate, rank_ratio: float | None = None, energy: float | None = None,
             round_to: int | None = None) -> int | tuple[int, int]:
    """Rank(s) keeping ``rank_ratio`` of the full rank, or the fewest singular values holding
    ``energy`` of the squared spectrum; rounded up to a multiple of ``round_to`` (channel counts
    that suit the runtimes' vectorised kernels), never above the full rank."""
    ranks = _ranks(c, rank_ratio, energy)
    if round_to:
        full = c.full_rank
        fulls = list(full) if isinstance(full, tuple) else [full]
        listed = list(ranks) if isinstance(ranks, tuple) else [ranks]
        listed = [min(f, round_to * math.ceil(r / round_to)) for r, f in zip(listed, fulls)]
        ranks = tuple(listed) if isinstance(full, tuple) else listed[0]
    return ranks


def _ranks(c: Candidate, rank_ratio: float | None, energy: float | None) -> int | tuple[int, int]:
    full = c.full_rank
    fulls = list(full) if isinstance(full, tuple) else [full]
    if rank_ratio is not None:
        ranks = [max(1, math.ceil(rank_ratio * f)) for f in fulls]
    else:
        ranks = []
        for matrix, f in zip(_matrices(c), fulls):
            s2 = torch.linalg.svdvals(matrix).double() ** 2
            cum = torch.cumsum(s2, 0) / s2.sum().clamp_min(1e-30)
            ranks.append(min(f, int(torch.searchsorted(cum, torch.tensor(energy, dtype=cum.dtype)).item()) + 1))
    return tuple(ranks) if isinstance(full, tuple) else ranks[0]


def worthwhile(c: Candidate, rank) -> bool:
    return layer_cost(c, rank)[0] < layer_cost(c, None)[0]


def choose_ratio_for_macs(cands: list[Candidate], total_macs: int, fraction: float,
                          iterations: int = 30, round_to: int | None = None) -> tuple[float, bool]:
    """One global rank ratio (bisection) whose factorized model has <= ``fraction`` of ``total_macs``.
    Returns (ratio, reached); when even rank 1 everywhere is not enough, the smallest ratio."""
    usable = [c for c in cands if c.skip is None]
    fixed = total_macs - sum(layer_cost(c, None)[0] for c in usable)

    def macs_at(ratio: float) -> int:
        total = fixed
        for c in usable:
            rank = rank_for(c, rank_ratio=ratio, round_to=round_to)
            total += min(layer_cost(c, rank)[0], layer_cost(c, None)[0])
        return total

    goal = fraction * total_macs
    lo, hi = 1e-6, 1.0
    if macs_at(lo) > goal:
        return lo, False
    for _ in range(iterations):   # invariant: macs_at(lo) <= goal
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if macs_at(mid) <= goal else (lo, mid)
    return lo, True


@torch.no_grad()
def factorize_layer(c: Candidate, rank) -> tuple[nn.Sequential, dict[str, Any]]:
    """The factorized replacement of ``c.layer`` with weights, and its plan entry."""
    entry = {**c.base_entry(), "rank": list(rank) if isinstance(rank, tuple) else int(rank)}
    new = build_factorized(entry)
    w = c.layer.weight.detach().float()
    if c.kind == "linear" or c.method == "svd":
        o = w.shape[0]
        u, s, vh = torch.linalg.svd(w.reshape(o, -1), full_matrices=False)
        root = s[:rank].sqrt()
        first = root[:, None] * vh[:rank]
        second = u[:, :rank] * root[None, :]
        new[0].weight.copy_(first.reshape(new[0].weight.shape))
        new[1].weight.copy_(second.reshape(new[1].weight.shape))
    elif c.method == "spatial_svd":
        o, i, kh, kw = w.shape
        u, s, vh = torch.linalg.svd(w.permute(1, 2, 0, 3).reshape(i * kh, o * kw), full_matrices=False)
        root = s[:rank].sqrt()
        v1 = (u[:, :rank] * root[None, :]).reshape(i, kh, rank)          # [(c, y), r]
        v2 = (root[:, None] * vh[:rank]).reshape(rank, o, kw)              # [r, (o, x)]
        new[0].weight.copy_(v1.permute(2, 0, 1).unsqueeze(-1))              # (r, i, kh, 1)
        new[1].weight.copy_(v2.permute(1, 0, 2).unsqueeze(2))               # (o, r, 1, kw)
    else:  # Tucker-2 by HOSVD
        o, i, kh, kw = w.shape
        r_in, r_out = rank
        u_in = torch.linalg.svd(w.permute(1, 0, 2, 3).reshape(i, -1), full_matrices=False)[0][:, :r_in]
        u_out = torch.linalg.svd(w.reshape(o, -1), full_matrices=False)[0][:, :r_out]
        core = torch.einsum("oikl,or,is->rskl", w, u_out, u_in)             # (r_out, r_in, kh, kw)
        new[0].weight.copy_(u_in.t()[:, :, None, None])
        new[1].weight.copy_(core)
        new[2].weight.copy_(u_out[:, :, None, None])
    if c.layer.bias is not None:
        new[-1].bias.copy_(c.layer.bias.detach())
    new.to(dtype=c.layer.weight.dtype, device=c.layer.weight.device)
    return new, entry


def factorize_model(module: nn.Module, cands: list[Candidate], rank_ratio: float | None = None,
                    energy: float | None = None, round_to: int | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Factorize in place; returns (plan entries, per-layer report rows)."""
    entries, rows = [], []
    for c in cands:
        macs0, params0 = layer_cost(c, None)
        row = {"layer": c.path, "kind": c.kind, "method": c.method, "full_rank": c.full_rank,
               "macs_before": macs0, "params_before": params0}
        if c.skip is not None:
            rows.append({**row, "rank": None, "macs_after": macs0, "params_after": params0, "status": c.skip})
            continue
        rank = rank_for(c, rank_ratio, energy, round_to)
        macs1, params1 = layer_cost(c, rank)
        if macs1 >= macs0:
            rows.append({**row, "rank": rank, "macs_after": macs0, "params_after": params0,
                         "status": "left alone: factorized MACs not lower"})
            continue
        new, entry = factorize_layer(c, rank)
        replace_layer(module, c.path, new)
        entries.append(entry)
        rows.append({**row, "rank": rank, "macs_after": macs1, "params_after": params1, "status": "factorized"})
    return entries, rows
