"""Model sources -> (nn.Module, ModelSpec).

``builtin:<name>``, ``torchvision:<arch>``, ``timm:<name>``, or a file (.pt/.pth/.pt2/TorchScript).
Options follow ``?``: ``torchvision:resnet18?weights=none``, ``builtin:resnet8?width=32``.
"""

from edgekit.models.builtin import BUILTIN_MODELS, register_builtin
from edgekit.models.checkpoint import load_checkpoint, save_checkpoint
from edgekit.models import factorized  # noqa: F401 - registers the lowrank: scheme
from edgekit.models.loaded import LoadedModel
from edgekit.models.sources import load_model

__all__ = ["BUILTIN_MODELS", "LoadedModel", "load_checkpoint", "load_model", "register_builtin",
           "save_checkpoint"]
