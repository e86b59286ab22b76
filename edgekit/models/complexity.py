"""Parameter and MAC counts, via PyTorch's own FLOP counter (``torch.utils.flop_counter``), not by hand.

MACs = FLOPs / 2 for the matmul/conv ops the counter tracks (element-wise ops are not counted, the
same convention as fvcore/thop).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from edgekit.spec import ModelSpec


def layer_io_shapes(module: nn.Module, spec: ModelSpec, types: tuple[type[nn.Module], ...]
                    ) -> dict[str, tuple[list[torch.Size], torch.Size | None]]:
    """{module path: (input tensor shapes, output shape)} of every ``types`` module in one batch-1 eval
    forward pass (forward hooks); the module's train/eval mode is restored. Shared by the latency
    estimator (activation bytes per layer) and the low-rank stage (where a factorization pays off)."""
    shapes: dict[str, tuple[list[torch.Size], torch.Size | None]] = {}

    def record(name: str, inputs, output) -> None:
        shapes[name] = ([t.shape for t in inputs if isinstance(t, torch.Tensor)],
                        output.shape if isinstance(output, torch.Tensor) else None)

    hooks = [m.register_forward_hook(lambda m, i, o, n=n: record(n, i, o))
             for n, m in module.named_modules() if isinstance(m, types)]
    was_training = module.training
    try:
        with torch.no_grad():
            module.eval()(torch.zeros(1, *spec.input_shape))
    finally:
        module.train(was_training)
        for h in hooks:
            h.remove()
    return shapes


class _OpRecorder(TorchDispatchMode):
    """Records (aten op, input elements, output elements) for every call of an op in ``names``."""

    def __init__(self, names: frozenset[str]):
        super().__init__()
        self.names, self.calls = names, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__.rstrip("_")     # in-place hardswish_ / add_ are the same op
        if name in self.names and isinstance(out, torch.Tensor):
            inputs = sum(a.numel() for a in args if isinstance(a, torch.Tensor))
            self.calls.append((name, inputs, out.numel()))
        return out


@torch.no_grad()
def op_calls(module: nn.Module, spec: ModelSpec, names: frozenset[str]) -> list[tuple[str, int, int]]:
    """Every call of the aten ops ``names`` (e.g. ``hardswish``, ``mul``) in one batch-1 eval forward pass,
    as (op, input elements, output elements), in call order. Functional ops (the residual ``+``, the
    squeeze-excitation ``scale * x``) have no module to hook, so this watches torch's dispatcher instead."""
    was_training = module.training
    recorder = _OpRecorder(names)
    try:
        module.eval()
        with recorder:
            module(torch.zeros(1, *spec.input_shape))
    finally:
        module.train(was_training)
    return recorder.calls


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


_POOL_OPS = frozenset({"avg_pool2d", "max_pool2d", "max_pool2d_with_indices", "adaptive_avg_pool2d",
                       "_adaptive_avg_pool2d", "adaptive_max_pool2d"})


class _ComputeRecorder(TorchDispatchMode):
    """Records every convolution, matrix product and pooling at the aten level as (kind, MACs, weights, input +
    output elements): the layers of a model whose compute is not in ``nn.Conv2d``/``nn.Linear`` modules (a
    ``torch.export`` program's module calls aten ops directly, so module hooks see nothing)."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, int, int, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name == "convolution" and isinstance(out, torch.Tensor):
            x, w, groups = args[0], args[1], int(args[8])
            kind = "depthwise" if groups > 1 and groups == x.shape[1] else "dense"
            macs = out.numel() * w.shape[1] * w[0, 0].numel()
            self.calls.append((kind, int(macs), w.numel(), x.numel() + out.numel()))
        elif name in _POOL_OPS and isinstance(out, torch.Tensor):
            self.calls.append(("pool", 0, 0, args[0].numel() + out.numel()))
        elif name in ("addmm", "mm") and isinstance(out, torch.Tensor):
            a, b = (args[1], args[2]) if name == "addmm" else (args[0], args[1])
            self.calls.append(("linear", int(a.shape[0] * a.shape[1] * b.shape[1]), b.numel(), a.numel() + out.numel()))
        return out


def compute_calls(module: nn.Module, spec: ModelSpec) -> list[tuple[str, int, int, int]]:
    """Every convolution / matrix product / pooling of one batch-1 eval forward pass, in call order."""
    was_training = module.training
    recorder = _ComputeRecorder()
    try:
        with torch.no_grad(), recorder:
            module.eval()(torch.zeros(1, *spec.input_shape))
    finally:
        module.train(was_training)
    return recorder.calls


@torch.no_grad()
def count_macs(module: nn.Module, spec: ModelSpec, per_layer: bool = False) -> int | tuple[int, dict[str, int]]:
    """Total MACs for one image; with ``per_layer`` also {module path: MACs} for leaf-ish modules.

    Parameters are counted with ``requires_grad`` off: the counter's module tracker hooks the autograd
    graph of every module input that requires grad, and a view of a parameter made under ``no_grad``
    (CaiT's ``cls_token.expand(...)`` passed to its class-attention blocks) requires grad yet has no
    graph, which fails inside torch ("Expected gradient function to be set")."""
    was_training = module.training
    module.eval()
    counter = FlopCounterMode(display=False, depth=None)
    frozen = [p for p in module.parameters() if p.requires_grad]
    try:
        for p in frozen:
            p.requires_grad_(False)
        with counter:
            module(torch.zeros(1, *spec.input_shape))
    finally:
        for p in frozen:
            p.requires_grad_(True)
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
