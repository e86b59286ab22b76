"""Architecture schemes: what the ``scheme:`` prefix of a model source or of a checkpoint's ``arch``
string means. ``builtin:``, ``torchvision:`` and ``timm:`` register in ``edgekit.models.sources``;
``split:`` registers in ``edgekit.split.model`` when that is imported (``edgekit.stages`` and
``edgekit.split`` import it).

Why a registry: rebuilding a checkpoint must not make ``models`` import the packages that define
new architectures (the split model sits above training and stages); they register here instead,
the way stages and backends do, and ``models`` never imports them, not even inside a function.
"""

from __future__ import annotations

from typing import Callable, ClassVar, TypeVar

import torch.nn as nn

from edgekit.errors import EdgekitError
from edgekit.models.loaded import LoadedModel
from edgekit.registry import Registry


class Scheme:
    """Subclass, implement ``rebuild`` (and ``load`` if ``scheme:name`` is a model source users type)."""

    name: ClassVar[str]
    is_source: ClassVar[bool] = True   # False: only ever an ``arch`` string inside a checkpoint

    def load(self, name: str, options: dict[str, object], num_classes: int | None) -> LoadedModel:
        """``scheme:name?options`` as a model source (pretrained weights where the scheme has them)."""
        raise NotImplementedError

    def rebuild(self, arch: str, num_classes: int, in_channels: int) -> nn.Module:
        """The untrained architecture of a checkpoint's ``arch`` string (its weights are loaded after)."""
        raise NotImplementedError


SCHEMES: Registry[Scheme] = Registry("architecture scheme")

S = TypeVar("S", bound=type[Scheme])


def register_scheme(name: str) -> Callable[[S], S]:
    """Class decorator: registers one instance of the scheme under ``name``."""

    def decorator(cls: S) -> S:
        cls.name = name
        SCHEMES.register(name)(cls())
        return cls

    return decorator


def source_scheme(source: str) -> Scheme | None:
    """The scheme of a model source such as ``builtin:resnet8``; None for a file path."""
    scheme = source.partition(":")[0]
    if scheme in SCHEMES and SCHEMES.get(scheme).is_source:
        return SCHEMES.get(scheme)
    return None


def rebuild_architecture(arch: str, num_classes: int, in_channels: int) -> nn.Module:
    """Rebuild an architecture (no pretrained weights) from a checkpoint's ``arch`` string."""
    scheme = arch.partition(":")[0]
    if scheme not in SCHEMES:
        raise EdgekitError(f"cannot rebuild architecture '{arch[:80]}': no '{scheme}' scheme is registered",
                           f"known: {', '.join(SCHEMES.names())}; the package that defines it must be imported "
                           "first (split models: import edgekit.split)")
    return SCHEMES.get(scheme).rebuild(arch, num_classes, in_channels)
