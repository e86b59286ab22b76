"""BatchNorm statistics that describe the current weights, before a model is judged in eval mode.

A BatchNorm layer's running statistics average roughly the last 1/momentum steps. torchvision's MobileNetV3
and EfficientNet keep a momentum of 0.01, so after a short training (or while the weights still move fast)
the statistics describe earlier weights: a ``builtin:mobilenetv3s_32`` trained 300 steps on Fashion-MNIST
read 10% in eval mode (76% with batch statistics), and 76.2% once its statistics were re-estimated on 50
training batches. A weight-averaged model (a soup) has no statistics of its own at all.

Written here rather than with ``torch.optim.swa_utils.update_bn``: that helper runs the whole model in train
mode, so dropout (MobileNetV3's classifier has it) would be on while the statistics are gathered.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from edgekit.data.core import make_loader
from edgekit.spec import ModelSpec

SLOW_MOMENTUM = 0.1   # PyTorch's default: layers at it (ResNets, most timm models) track the weights closely


def batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def has_batchnorm(module: nn.Module) -> bool:
    return bool(batchnorms(module))


def needs_recalibration(model: nn.Module) -> bool:
    """Whether any BatchNorm layer averages more slowly than PyTorch's default (or cumulatively)."""
    return any(m.track_running_stats and (m.momentum is None or m.momentum < SLOW_MOMENTUM) for m in batchnorms(model))


def recalibrate(module: nn.Module, spec: ModelSpec, train: Dataset, batches: int | None, seed: int,
                device: torch.device | None = None, channels_last: bool = False, batch_size: int = 256) -> int:
    """Reset every BatchNorm layer's running statistics and re-estimate them (cumulative average) over
    ``batches`` unaugmented training batches (all of them when None; the same images for the same seed).
    Only the BatchNorm layers run in train mode; the module is left in eval mode. Returns the images seen."""
    bns = batchnorms(module)
    momenta = [m.momentum for m in bns]
    module.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    seen = 0
    with torch.no_grad():
        for images, _ in itertools.islice(make_loader(train, batch_size, shuffle=True, seed=seed), batches):
            x = spec.prepare(images.to(device) if device is not None else images)
            module(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
            seen += len(images)
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    module.eval()
    return seen
