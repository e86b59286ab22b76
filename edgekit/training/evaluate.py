"""Accuracy of a PyTorch module on a split (the reference every artifact is compared with)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from edgekit.data.core import prepared_batches
from edgekit.runtime import accuracy_counts  # noqa: F401 - one implementation, shared with devices
from edgekit.spec import ModelSpec
from edgekit.training.device import on_device


@torch.no_grad()
def module_logits(module: nn.Module, spec: ModelSpec, ds: Dataset, batch_size: int = 256,
                  limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels on ``ds``, computed on the current device (the module returns where it was)."""
    module.eval()
    outs, labels = [], []
    with on_device(module) as device:
        for x, y in prepared_batches(ds, spec, batch_size, limit, device=device):
            outs.append(module(x).float().cpu().numpy())
            labels.append(y.numpy())
    return np.concatenate(outs), np.concatenate(labels)


def evaluate_module(module: nn.Module, spec: ModelSpec, ds: Dataset, batch_size: int = 256,
                    limit: int | None = None) -> dict[str, float]:
    logits, labels = module_logits(module, spec, ds, batch_size, limit)
    return {**accuracy_counts(logits, labels), "samples": int(len(labels))}
