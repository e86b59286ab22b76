"""The model as it travels through the pipeline: module + spec + how to rebuild it."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as nn

from edgekit.spec import ModelSpec


@dataclass
class LoadedModel:
    module: nn.Module
    spec: ModelSpec
    source: str
    # How to rebuild the (unpruned) architecture: a model source string understood by
    # ``load_model`` with weights disabled, or None when the module cannot be rebuilt (TorchScript).
    arch: str | None
    sha256: str | None = None
    notes: dict[str, str] = field(default_factory=dict)
