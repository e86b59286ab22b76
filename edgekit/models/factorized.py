"""Low-rank factorized layers as ordinary modules, and how a checkpoint rebuilds them.

A factorized layer is an ``nn.Sequential`` of plain ``Conv2d``/``Linear`` layers, so it exports to
ONNX, quantizes and compiles like any other layer. Its structure is fully described by a small
*entry* (kind, method, ranks, in/out sizes, kernel, stride, ...); the model's ``arch`` string
records the base architecture plus the entries (``lowrank:{json}``), and a checkpoint replays
them on the rebuilt base before loading the state dict (``torch.load(weights_only=True)`` keeps
working: no module is pickled). The decomposition maths lives in ``edgekit.pruning.lowrank``.
"""

from __future__ import annotations

import json
from typing import Any

import torch.nn as nn

from edgekit.models.schemes import Scheme, rebuild_architecture, register_scheme

ARCH_PREFIX = "lowrank:"


def build_factorized(entry: dict[str, Any]) -> nn.Sequential:
    """The (uninitialised) factorized replacement of one layer, from its plan entry."""
    bias = bool(entry["bias"])
    if entry["kind"] == "linear":
        r = int(entry["rank"])
        return nn.Sequential(nn.Linear(entry["in"], r, bias=False), nn.Linear(r, entry["out"], bias=bias))
    cin, cout = entry["in"], entry["out"]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = entry["kernel"], entry["stride"], entry["padding"], entry["dilation"]
    method = entry["method"]
    if method == "svd":  # rank-r kxk conv (r outputs) then a 1x1 back to cout
        r = int(entry["rank"])
        return nn.Sequential(nn.Conv2d(cin, r, (kh, kw), (sh, sw), (ph, pw), (dh, dw), bias=False),
                             nn.Conv2d(r, cout, 1, bias=bias))
    if method == "spatial_svd":  # Jaderberg: kx1 (r channels) then 1xk
        r = int(entry["rank"])
        return nn.Sequential(nn.Conv2d(cin, r, (kh, 1), (sh, 1), (ph, 0), (dh, 1), bias=False),
                             nn.Conv2d(r, cout, (1, kw), (1, sw), (0, pw), (1, dw), bias=bias))
    if method == "tucker":  # Tucker-2: 1x1 (cin -> r_in), kxk core (r_in -> r_out), 1x1 (r_out -> cout)
        r_in, r_out = (int(v) for v in entry["rank"])
        return nn.Sequential(nn.Conv2d(cin, r_in, 1, bias=False),
                             nn.Conv2d(r_in, r_out, (kh, kw), (sh, sw), (ph, pw), (dh, dw), bias=False),
                             nn.Conv2d(r_out, cout, 1, bias=bias))
    raise ValueError(f"unknown factorization method {method}")


def replace_layer(module: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    setattr(module.get_submodule(parent_path) if parent_path else module, child, new)


def apply_plan(module: nn.Module, entries: list[dict[str, Any]]) -> nn.Module:
    """Replace every planned layer by its factorized structure, in plan order (entries may refer to
    layers inside earlier factorizations when a model was factorized twice)."""
    for entry in entries:
        replace_layer(module, entry["path"], build_factorized(entry))
    return module


def factorized_arch(base_arch: str, entries: list[dict[str, Any]]) -> str:
    """``arch`` string of ``base_arch`` with ``entries`` applied (appended when already factorized)."""
    if base_arch.startswith(ARCH_PREFIX):
        data = json.loads(base_arch[len(ARCH_PREFIX):])
        base_arch, entries = data["base"], data["layers"] + entries
    return ARCH_PREFIX + json.dumps({"base": base_arch, "layers": entries}, sort_keys=True)


@register_scheme("lowrank")
class LowRankScheme(Scheme):
    """``lowrank:{json}`` arch strings (never a model source): the base architecture with the factorized
    layers in place, weights empty (the checkpoint's state dict is loaded after)."""

    is_source = False

    def rebuild(self, arch: str, num_classes: int, in_channels: int) -> nn.Module:
        data = json.loads(arch[len(ARCH_PREFIX):])
        return apply_plan(rebuild_architecture(data["base"], num_classes, in_channels), data["layers"])
