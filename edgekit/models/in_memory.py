"""A module built in Python (a notebook's ``nn.Module``) as a pipeline model.

Such a module carries no preprocessing, so its spec is either given by the caller or the identity: the module
sees the data's images as they come (uint8 scaled to [0, 1], float as is) at the data's size — what it saw when
the user trained it on the same Dataset.
"""

from __future__ import annotations

import copy

import torch.nn as nn

from edgekit.errors import EdgekitError
from edgekit.models.loaded import LoadedModel, state_hash
from edgekit.models.sources import check_forward
from edgekit.spec import ModelSpec


def identity_spec(channels: int, image_size: tuple[int, int], num_classes: int) -> ModelSpec:
    """No normalisation, no resize: the model's input is the data's image, scaled to [0, 1] when it is uint8."""
    return ModelSpec(input_shape=(channels, *image_size), channel_order="L" if channels == 1 else "RGB",
                     mean=(0.0,), std=(1.0,), num_classes=num_classes, transform_from="identity (a Python module)")


def module_model(module: nn.Module, spec: ModelSpec | None, channels: int, image_size: tuple[int, int]) -> LoadedModel:
    """A deep copy of ``module`` (stages prune and train in place; the caller's object stays as it was) with
    ``spec`` or the identity spec at the data's size. Its output count comes from a probe forward."""
    if not isinstance(module, nn.Module):
        raise EdgekitError(f"model is a {type(module).__name__}, not an nn.Module or a model source string",
                           "pass an nn.Module, or a source such as 'builtin:resnet8' or 'torchvision:resnet18'")
    copied = copy.deepcopy(module).cpu().eval()
    name = type(module).__name__
    loaded = LoadedModel(copied, spec or identity_spec(channels, image_size, num_classes=1),
                         source=f"python:{name}", arch=None, sha256=None,
                         notes={"format": f"Python module {name}",
                                **({} if spec else {"spec": "identity: the data's images as given, [0, 1]"})})
    check_forward(loaded)   # also reads the number of outputs into the spec
    loaded.sha256 = state_hash(copied, name, length=64)
    return loaded
