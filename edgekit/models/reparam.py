"""Re-parameterizable blocks (RepVGG, MobileOne, FastViT, RepViT...): train-time branches fused into
one convolution with timm's ``reparameterize_model``. The fused form computes the same function,
is what ships, and is what structured pruning can prune consistently (parallel branches with
separate BatchNorms cannot be pruned as one layer)."""

from __future__ import annotations

import torch.nn as nn

NOTE = "reparameterized"  # LoadedModel.notes key: checkpoints rebuild the fused form


def has_reparam_blocks(module: nn.Module) -> bool:
    return any(callable(getattr(m, a, None)) for m in module.modules() if m is not module
               for a in ("reparameterize", "switch_to_deploy"))


def reparameterize(module: nn.Module) -> bool:
    """Fuse ``module`` in place (children are replaced, the root object stays); True if it changed."""
    if not has_reparam_blocks(module):
        return False
    try:
        from timm.utils.model import reparameterize_model
    except ImportError:
        return False
    module.eval()
    reparameterize_model(module, inplace=True)
    return True
