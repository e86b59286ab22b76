"""edgekit: take a pretrained image classifier to an edge device in one reproducible call.

    import edgekit
    result = edgekit.compress("torchvision:resnet18", "./my-images", target="rpi5")
    print(result.deployed)                     # name, top-1, p50 and how it was measured
    logits = result.deployed.load().predict(images)

The public API is ``__all__``; names load on first use, so ``import edgekit`` (and the CLI) stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgekit._version import __version__

if TYPE_CHECKING:
    from edgekit.api import Artifact, Result, bench, compress, debug, inspect, load_bundle, recipes, targets
    from edgekit.data import from_datasets
    from edgekit.errors import EdgekitError
    from edgekit.manifest import Manifest
    from edgekit.spec import ModelSpec

# public name -> the module that defines it
_EXPORTS = {
    "compress": "edgekit.api", "load_bundle": "edgekit.api", "bench": "edgekit.api", "debug": "edgekit.api", "targets": "edgekit.api", "inspect": "edgekit.api",
    "recipes": "edgekit.api", "Result": "edgekit.api", "Artifact": "edgekit.api",
    "Manifest": "edgekit.manifest", "ModelSpec": "edgekit.spec", "EdgekitError": "edgekit.errors",
    "from_datasets": "edgekit.data",
}

__all__ = ["Artifact", "EdgekitError", "Manifest", "ModelSpec", "Result", "__version__", "bench", "compress",
           "debug", "from_datasets", "inspect", "load_bundle", "recipes", "targets"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'edgekit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
