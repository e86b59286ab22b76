"""What torch-pruning must be told about an architecture, and the attributes it cannot update itself.

torch-pruning's dependency graph removes channels from every coupled weight, but some models keep
shapes in plain Python attributes that their ``forward`` reads (``num_heads``/``head_dim`` in timm's
attention, ``splits`` in MixNet's mixed-kernel convolution, ``hidden_dim`` in torchvision's ViT). This
module gathers, before pruning:

- ``num_heads``: each attention's qkv projection and its head count, so heads stay whole (head-dim
  pruning removes the same dims from q, k and v of every head; head pruning removes whole heads);
- ``out_channel_groups``: ``nn.MultiheadAttention`` prunes its embedding in ``num_heads`` groups;
- ``unwrapped_parameters``: position embeddings and class/distillation tokens (their last dim is
  the embedding);
- the classifier head(s) to keep (timm ``get_classifier``, distillation heads included);
- attention modules of a form it does not know: every layer inside them is ignored (reported);

and after each pruning step ``sync_attributes`` writes the new sizes back into those attributes.
Re-parameterizable models (RepVGG, MobileOne, FastViT) are fused first (``models.reparam``). A
ShuffleNet channel shuffle (a reshape-transpose-reshape torch-pruning cannot map) is traced as an
opaque op, and the layers whose channels pass through it are kept whole.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn as nn


@dataclass
class ArchitectureHints:
    num_heads: dict[nn.Module, int] = field(default_factory=dict)
    out_channel_groups: dict[nn.Module, int] = field(default_factory=dict)
    unwrapped_parameters: list[tuple[nn.Parameter, int]] = field(default_factory=list)
    heads: list[nn.Module] = field(default_factory=list)                 # classifier layers: never pruned
    ignored: dict[str, str] = field(default_factory=dict)                 # module path -> why
    attention: dict[str, nn.Module] = field(default_factory=dict)         # path -> qkv-style attention
    notes: list[str] = field(default_factory=list)


def _qkv_layers(m: nn.Module) -> list[nn.Module]:
    qkv = getattr(m, "qkv", None)
    if isinstance(qkv, (nn.Linear, nn.Conv2d)):
        return [qkv]
    return []


def _is_timm_attention(m: nn.Module) -> bool:
    """timm's ``Attention`` form: ``qkv`` Linear, ``num_heads`` and ``head_dim`` read by forward."""
    return (isinstance(getattr(m, "num_heads", None), int) and isinstance(getattr(m, "head_dim", None), int)
            and isinstance(getattr(m, "qkv", None), nn.Linear) and isinstance(getattr(m, "proj", None), nn.Linear)
            and m.qkv.out_features == 3 * m.num_heads * m.head_dim)


def collect_hints(module: nn.Module, example: torch.Tensor) -> ArchitectureHints:
    """Everything above for ``module`` (see the module docstring)."""
    hints = ArchitectureHints()
    hints.heads = _classifier_layers(module, example)
    for name, m in module.named_modules():
        if isinstance(m, nn.MultiheadAttention):
            hints.out_channel_groups[m] = m.num_heads
        elif _is_timm_attention(m):
            hints.num_heads[m.qkv] = m.num_heads
            hints.attention[name] = m
        elif _looks_like_attention(m) and not any(name.startswith(a + ".") for a in hints.attention):
            if not any(name.startswith(p + ".") or name == p for p in hints.ignored):
                hints.ignored[name] = f"{type(m).__name__}: attention whose head layout torch-pruning is not told"
    for name, m in module.named_modules():
        if type(m).__name__ == "InvertedResidual" and type(m).__module__.endswith("shufflenetv2"):
            for branch in ("branch1", "branch2"):
                convs = [n for n, c in getattr(m, branch).named_modules() if isinstance(c, nn.Conv2d)]
                if convs:
                    hints.ignored[f"{name}.{branch}.{convs[-1]}"] = "its channels pass a channel shuffle"
    for pname, p in module.named_parameters():
        owner = pname.rpartition(".")[0]
        if isinstance(module.get_submodule(owner) if owner else module, _STANDARD):
            continue
        leaf = pname.rsplit(".", 1)[-1]
        if p.ndim >= 2 and any(k in leaf for k in ("pos", "token")):  # (1, N, C) / (1, 1, C): C is pruned
            hints.unwrapped_parameters.append((p, p.ndim - 1))
    return hints


_STANDARD = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm,
             nn.PReLU, nn.Embedding, nn.MultiheadAttention)


def _looks_like_attention(m: nn.Module) -> bool:
    """A module holding a head count that is not timm's plain Attention (LeViT, EfficientViT, Swin's
    window attention, EdgeNeXt's cross-covariance attention...): its forward reshapes by heads."""
    if isinstance(m, nn.MultiheadAttention) or not isinstance(getattr(m, "num_heads", None), int):
        return False
    if not any(isinstance(c, (nn.Linear, nn.Conv2d, nn.Conv1d)) for c in m.modules() if c is not m):
        return False
    # containers (a Block or a Stage that passes num_heads down) are not the attention itself
    inner = [c for c in m.modules() if c is not m and isinstance(getattr(c, "num_heads", None), int)]
    return not inner


def _classifier_layers(module: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """timm's ``get_classifier`` (a pair for distillation heads), else every Linear / 1x1 conv that
    produces the model's output width as its last layers."""
    heads: list[nn.Module] = []
    get = getattr(module, "get_classifier", None)
    if callable(get):
        try:
            got = get()
            heads = [h for h in (got if isinstance(got, (tuple, list)) else [got])
                     if isinstance(h, nn.Module)]
            heads = [leaf for h in heads for leaf in h.modules() if isinstance(leaf, (nn.Linear, nn.Conv2d))]
        except Exception:  # noqa: BLE001 - some models' get_classifier needs arguments; fall back
            heads = []
    dist = getattr(module, "head_dist", None)
    if isinstance(dist, nn.Module):
        heads += [leaf for leaf in dist.modules() if isinstance(leaf, (nn.Linear, nn.Conv2d)) and leaf not in heads]
    with torch.no_grad():
        out = module.eval()(example)
    n = int(out.shape[-1])
    layers = [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    for m in reversed(layers):  # the trailing layers of the output width (SqueezeNet's 1x1 conv too)
        width = m.out_features if isinstance(m, nn.Linear) else m.out_channels
        if width != n:
            break
        if m not in heads:
            heads.append(m)
    return heads


def sync_attributes(module: nn.Module, hints: ArchitectureHints, pruner) -> None:
    """Write pruned sizes back into the attributes that forward reads."""
    for m in hints.attention.values():
        heads = pruner.num_heads.get(m.qkv, m.num_heads) if hasattr(pruner, "num_heads") else m.num_heads
        m.num_heads = int(heads)
        m.head_dim = m.qkv.out_features // (3 * m.num_heads)
        if hasattr(m, "attn_dim"):
            m.attn_dim = m.num_heads * m.head_dim
    for m in module.modules():
        splits = getattr(m, "splits", None)
        if isinstance(splits, list) and isinstance(m, nn.ModuleDict):  # timm MixedConv2d
            convs = list(m.values())
            if len(convs) == len(splits):
                m.splits = [int(c.in_channels) for c in convs]
                if hasattr(m, "in_channels"):
                    m.in_channels = sum(m.splits)
                if hasattr(m, "out_channels"):
                    m.out_channels = sum(int(c.out_channels) for c in convs)
        if isinstance(getattr(m, "hidden_dim", None), int) and isinstance(getattr(m, "conv_proj", None), nn.Conv2d):
            m.hidden_dim = m.conv_proj.out_channels  # torchvision VisionTransformer reshapes by it


class _OpaqueShuffle(torch.autograd.Function):
    """Channel shuffle as one autograd node: torch-pruning then sees a channel-preserving op."""

    @staticmethod
    def forward(ctx, x, groups):
        b, c, h, w = x.shape
        return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class _OpaqueSlice(torch.autograd.Function):
    """``x[:, start:end]`` as one autograd node (torch-pruning's chunk mapping fails on ShuffleNet)."""

    @staticmethod
    def forward(ctx, x, start, end):
        ctx.shape, ctx.start, ctx.end = x.shape, start, end
        return x[:, start:end].clone()

    @staticmethod
    def backward(ctx, grad):
        full = grad.new_zeros(ctx.shape)
        full[:, ctx.start:ctx.end] = grad
        return full, None, None


class _OpaqueTake(torch.autograd.Function):
    """The first ``n`` features of the last dim as one autograd node (a stand-in for attention)."""

    @staticmethod
    def forward(ctx, x, n):
        ctx.shape, ctx.n = x.shape, n
        return x[..., :n].clone()

    @staticmethod
    def backward(ctx, grad):
        full = grad.new_zeros(ctx.shape)
        full[..., :ctx.n] = grad
        return full, None


def _surrogate(m: nn.Module):
    """``proj(qkv(x)[..., :proj_in])``: the same layers and channel couplings as the attention, none of
    its window partitions, rolls and bias-table gathers (torch-pruning needed minutes and gigabytes on
    torchvision's Swin-T to trace those, for layers kept whole anyway)."""
    def forward(x, *args, **kwargs):
        return m.proj(_OpaqueTake.apply(m.qkv(x), m.proj.in_features))
    return forward


@contextlib.contextmanager
def tracing(module: nn.Module, hints: ArchitectureHints | None = None) -> Iterator[None]:
    """While torch-pruning traces ``module``: operations it cannot map made opaque (see above), and
    attention kept whole (Linear ``qkv`` and ``proj``) traced through a stand-in of the same layers."""
    names = dict(module.named_modules())
    stand_ins = [names[p] for p in (hints.ignored if hints else {}) if p in names
                 and isinstance(getattr(names[p], "qkv", None), nn.Linear)
                 and isinstance(getattr(names[p], "proj", None), nn.Linear)]
    for m in stand_ins:
        m.forward = _surrogate(m)
    try:
        with _shufflenet_tracing(module):
            yield
    finally:
        for m in stand_ins:
            del m.forward


@contextlib.contextmanager
def _shufflenet_tracing(module: nn.Module) -> Iterator[None]:
    import sys

    shufflenet = sys.modules.get("torchvision.models.shufflenetv2")
    if shufflenet is None or not any(type(m).__module__ == shufflenet.__name__ for m in module.modules()):
        yield
        return
    original, forward = shufflenet.channel_shuffle, shufflenet.InvertedResidual.forward

    def traced_forward(self, x):  # torchvision's forward, with the chunk as two opaque slices
        if self.stride == 1:
            half = x.shape[1] // 2
            x1, x2 = _OpaqueSlice.apply(x, 0, half), _OpaqueSlice.apply(x, half, x.shape[1])
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return shufflenet.channel_shuffle(out, 2)

    shufflenet.channel_shuffle = lambda x, groups: _OpaqueShuffle.apply(x, groups)
    shufflenet.InvertedResidual.forward = traced_forward
    try:
        yield
    finally:
        shufflenet.channel_shuffle, shufflenet.InvertedResidual.forward = original, forward


SLICED = ("its channels pass a channel slice x[:, a:b] whose bounds are Python numbers in forward "
          "(pruning cannot update them)")


def channel_slice_groups(pruner) -> dict[nn.Module, list[nn.Module]]:
    """{group root: the group's layers} for the groups whose channels pass a channel slice with fixed
    bounds (ReXNet's partial residual ``x[:, 0:self.in_channels] + shortcut``); the caller keeps them
    unpruned (reason: ``SLICED``).

    The bounds of ``x[:, a:b]`` are Python numbers in the model's ``forward``: after pruning the slice
    would still cut at ``a:b`` of the now narrower tensor, silently misaligning the channels (or
    failing at the next step). A slice over the whole channel dimension stays whole after pruning,
    and slices over other dimensions (tokens, space) map no channels: both are left to torch-pruning."""
    from torch_pruning import ops

    graph = pruner.DG
    partial = set()
    for node in graph.module2node.values():
        if node.type != ops.OPTYPE.SLICE:
            continue
        sizes = getattr(node.grad_fn, "_saved_self_sym_sizes", None)
        op = node.module
        if sizes is None:
            continue
        rank, dim = len(sizes), op.dim % len(sizes)
        if (rank == 4 and dim != 1) or (rank == 3 and dim != 2):
            continue  # torch-pruning maps no channels through it either
        if op.start != 0 or op.step != 1 or op.end < int(sizes[dim]):
            partial.add(node)
    if not partial:
        return {}
    kept: dict[nn.Module, list[nn.Module]] = {}
    for group in graph.get_all_groups(ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types):
        if any(dep.target in partial or dep.source in partial for dep, _ in group):
            kept[group[0].dep.target.module] = [
                dep.target.module for dep, _ in group if graph.is_out_channel_pruning_fn(dep.handler)
                and isinstance(dep.target.module, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    return kept


def clear_caches(module: nn.Module) -> None:
    """Drop tensors models cache from a forward (LeViT's attention biases): made under autograd they
    cannot be deep-copied, and after pruning they have stale shapes."""
    for m in module.modules():
        cache = getattr(m, "attention_bias_cache", None)
        if isinstance(cache, dict):
            cache.clear()
