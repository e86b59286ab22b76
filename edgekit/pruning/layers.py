"""Which layers a pruner may touch, and the per-layer channel table the report shows."""

from __future__ import annotations

import torch.nn as nn

from edgekit.errors import EdgekitError


def classifier_name(module: nn.Module) -> str | None:
    """The last Linear layer (the classifier head), or the last Conv2d when there is no Linear."""
    linears = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    if linears:
        return linears[-1]
    convs = [n for n, m in module.named_modules() if isinstance(m, nn.Conv2d)]
    return convs[-1] if convs else None


def protected_layers(module: nn.Module, ignore: list[str]) -> dict[str, nn.Module]:
    """Layers whose output channels are never pruned: the classifier plus the recipe's ``ignore`` list.

    An ``ignore`` entry names a module path (``layer1.0.conv1``) or a prefix of one (``layer1``: every
    layer inside it). The input stem's *input* channels are the model input and are never pruned.
    """
    names = dict(module.named_modules())
    protected: dict[str, nn.Module] = {}
    head = classifier_name(module)
    if head is not None:
        protected[head] = names[head]
    for entry in ignore:
        if entry not in names:
            close = [n for n in names if n and entry.split(".")[-1] in n][:3]
            raise EdgekitError(f"prune: no layer named '{entry}' in the model",
                               f"use module paths as in `edgekit inspect` (e.g. {', '.join(close) or 'layer1.0.conv1'})")
        for name, m in names.items():
            if (name == entry or name.startswith(entry + ".")) and isinstance(m, (nn.Conv2d, nn.Linear)):
                protected[name] = m
    return protected


def channel_table(module: nn.Module) -> dict[str, tuple[int, int]]:
    """{layer: (in, out)} for every Conv2d and Linear (in/out channels or features)."""
    table = {}
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d):
            table[name] = (m.in_channels, m.out_channels)
        elif isinstance(m, nn.Linear):
            table[name] = (m.in_features, m.out_features)
    return table


def widest_layer(module: nn.Module) -> int | None:
    """The most output channels (features) of any Conv2d or Linear but the classifier: what pruning can shrink."""
    head = classifier_name(module)
    widths = [out for name, (_, out) in channel_table(module).items() if name != head]
    return max(widths) if widths else None


def channel_changes(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[dict]:
    """Rows for the report: every layer with channels before -> after."""
    return [{"layer": name, "in_before": b[0], "in_after": after.get(name, b)[0],
             "out_before": b[1], "out_after": after.get(name, b)[1]} for name, b in before.items()]
