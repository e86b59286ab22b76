"""Parameter and MAC counts, via PyTorch's own FLOP counter (``torch.utils.flop_counter``), not by hand.

MACs = FLOPs / 2 for the matmul/conv ops the counter tracks (element-wise ops are not counted, the
same convention as fvcore/thop).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from edgekit.spec import ModelSpec


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def count_macs(module: nn.Module, spec: ModelSpec, per_layer: bool = False) -> int | tuple[int, dict[str, int]]:
    """Total MACs for one image; with ``per_layer`` also {module path: MACs} for leaf-ish modules."""
    was_training = module.training
    module.eval()
    counter = FlopCounterMode(display=False, depth=None)
    with counter:
        module(torch.zeros(1, *spec.input_shape))
    module.train(was_training)
    total = counter.get_total_flops() // 2
    if not per_layer:
        return total
    counts = counter.get_flop_counts()
    layers = {}
    for name, _ in module.named_modules():
        key = f"{type(module).__name__}.{name}" if name else None
        if key and key in counts:
            layers[name] = sum(counts[key].values()) // 2
    return total, layers


def layer_table(module: nn.Module, spec: ModelSpec) -> list[dict]:
    """Per-layer summary of leaf modules with parameters or MACs: name, type, shape info, params, MACs."""
    _, macs = count_macs(module, spec, per_layer=True)
    shapes: dict[str, tuple] = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, tuple(o.shape)))
             for n, m in module.named_modules() if n and not list(m.children())]
    with torch.no_grad():
        module.eval()(torch.zeros(1, *spec.input_shape))
    for h in hooks:
        h.remove()
    rows = []
    for name, m in module.named_modules():
        if not name or list(m.children()):
            continue
        params = sum(p.numel() for p in m.parameters(recurse=False))
        if params == 0 and macs.get(name, 0) == 0:
            continue
        rows.append({"name": name, "type": type(m).__name__, "output": list(shapes.get(name, ())),
                     "params": params, "macs": macs.get(name, 0)})
    return rows
