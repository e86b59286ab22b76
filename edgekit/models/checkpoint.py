"""edgekit's own model file: architecture source + spec + state dict, readable with
``torch.load(weights_only=True)`` (no arbitrary pickles, ever).

Models whose shapes changed (pruning) carry per-parameter shapes; on load the rebuilt
architecture's layers are resized to match before the weights go in (see ``reshape_to``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import torch.nn as nn

from edgekit.errors import EdgekitError
from edgekit.models.loaded import LoadedModel
from edgekit.models.reparam import NOTE as REPARAM_NOTE, reparameterize
from edgekit.models.schemes import rebuild_architecture
from edgekit.spec import ModelSpec

FORMAT = "edgekit-checkpoint/1"


def save_checkpoint(model: LoadedModel, path: Path) -> str:
    """Write the checkpoint atomically; returns its sha256."""
    if model.arch is None:
        raise EdgekitError(f"model from {model.source} cannot be rebuilt from source, so it cannot be checkpointed")
    payload = {
        "format": FORMAT,
        "arch": model.arch,
        "source": model.source,
        "spec": model.spec.model_dump(mode="json"),
        "state_dict": model.module.state_dict(),
        "notes": dict(model.notes),
        "attrs": shape_attributes(model.module),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")  # two processes writing one cache entry never share it
    torch.save(payload, tmp)
    tmp.replace(path)
    return file_sha256(path)


def is_checkpoint(obj: object) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def load_checkpoint(path: Path, payload: dict | None = None) -> LoadedModel:
    payload = payload if payload is not None else torch.load(path, map_location="cpu", weights_only=True)
    if not is_checkpoint(payload):
        raise EdgekitError(f"{path} is not an edgekit checkpoint")
    spec = ModelSpec(**payload["spec"])
    module = rebuild_architecture(payload["arch"], spec.num_classes, spec.channels)
    if payload.get("notes", {}).get(REPARAM_NOTE):
        reparameterize(module)
    state = payload["state_dict"]
    reshape_to(module, state)
    apply_shape_attributes(module, payload.get("attrs", {}))
    module.load_state_dict(state)
    module.eval()
    return LoadedModel(module, spec, source=payload.get("source", str(path)), arch=payload["arch"],
                       sha256=file_sha256(path), notes=payload.get("notes", {}))


def reshape_to(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Resize parameters/buffers (and layer attributes) of ``module`` to the shapes in ``state``.

    Structured pruning only shrinks channel dimensions, so replacing each tensor by an empty one of
    the stored shape and fixing the layers' size attributes reproduces the pruned architecture.
    Depthwise convolutions (groups == in == out channels) stay depthwise: their ``groups`` follows
    the new channel count; other grouped convolutions keep their number of groups (torch-pruning
    prunes within groups).
    """
    changed: dict[str, nn.Module] = {}
    depthwise = {name for name, m in module.named_modules()
                 if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels}
    for name, tensor in list(module.state_dict().items()):
        if name in state and state[name].shape != tensor.shape:
            owner_name, _, attr = name.rpartition(".")
            owner = module.get_submodule(owner_name)
            new = torch.empty_like(state[name])
            if isinstance(getattr(owner, attr), nn.Parameter):
                setattr(owner, attr, nn.Parameter(new))
            else:
                owner.register_buffer(attr, new)
            changed[owner_name] = owner
    for owner_name, owner in changed.items():
        _fix_layer_attrs(owner, owner_name in depthwise)


def _fix_layer_attrs(layer: nn.Module, depthwise: bool = False) -> None:
    if isinstance(layer, nn.Conv2d):
        layer.out_channels = layer.weight.shape[0]
        if depthwise:
            layer.groups = layer.out_channels
        layer.in_channels = layer.weight.shape[1] * layer.groups
    elif isinstance(layer, nn.Linear):
        layer.out_features, layer.in_features = layer.weight.shape
    elif isinstance(layer, nn.modules.batchnorm._BatchNorm):
        layer.num_features = layer.weight.shape[0] if layer.weight is not None else layer.running_mean.shape[0]
    elif isinstance(layer, nn.LayerNorm) and layer.weight is not None:
        layer.normalized_shape = tuple(layer.weight.shape)
    elif isinstance(layer, nn.GroupNorm) and layer.weight is not None:
        layer.num_channels = layer.weight.shape[0]


# Size attributes that a forward reads besides the tensors' shapes (attention heads, mixed-kernel
# splits, ViT widths); pruning changes them, so the checkpoint stores them.
SHAPE_ATTRS = ("num_heads", "head_dim", "attn_dim", "splits", "hidden_dim", "embed_dim", "kdim", "vdim",
               "key_dim", "val_dim", "dim", "num_features", "head_hidden_size", "embed_dim_per_head")


def shape_attributes(module: nn.Module) -> dict[str, dict]:
    """{module path: {attr: int or list of ints}} for ``SHAPE_ATTRS`` found on the modules."""
    out: dict[str, dict] = {}
    for name, m in module.named_modules():
        found = {}
        for attr in SHAPE_ATTRS:
            value = m.__dict__.get(attr)
            if isinstance(value, bool):
                continue
            if isinstance(value, int) or (isinstance(value, (list, tuple)) and value
                                          and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
                found[attr] = list(value) if isinstance(value, (list, tuple)) else value
        if found:
            out[name] = found
    return out


def apply_shape_attributes(module: nn.Module, attrs: dict[str, dict]) -> None:
    names = dict(module.named_modules())
    for name, values in attrs.items():
        m = names.get(name)
        if m is None:
            continue
        for attr, value in values.items():
            old = m.__dict__.get(attr)
            setattr(m, attr, type(old)(value) if isinstance(old, (list, tuple)) else value)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
