"""The model as it travels through the pipeline: module + spec + how to rebuild it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
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


def state_hash(module: torch.nn.Module, *extra: str, length: int = 16) -> str:
    """SHA-256 of a module's state (names, shapes, bytes) and ``extra`` strings: the identity of a model's
    weights for the stage cache and the ONNX export memo."""
    h = hashlib.sha256()
    for text in extra:
        h.update(text.encode())
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                 if tensor.numel() else b"")
    return h.hexdigest()[:length]


def fx_graphs(module: nn.Module) -> list[torch.fx.Graph]:
    """The torch.fx graphs ``module`` runs: a ``GraphModule``'s, or each submodule's of an unflattened
    ``torch.export`` program (its ``InterpreterModule``s; their ``graph_module`` holds the same graph)."""
    return [m.graph for m in module.modules() if isinstance(getattr(m, "graph", None), torch.fx.Graph)]
