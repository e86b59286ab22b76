"""Parsing of ``--data`` sources and the registry of source loaders."""

from __future__ import annotations

from pathlib import Path
from typing import Callable
from urllib.parse import parse_qsl

from edgekit.data.core import DataSplits
from edgekit.errors import EdgekitError
from edgekit.registry import Registry

# A loader takes (location or None, options, image_size for decoding files or None, **decode settings:
# resize, interpolation, skip_broken - file sources use them, in-memory ones ignore them) -> DataSplits.
DataLoaderFn = Callable[[str | None, dict[str, str], tuple[int, int] | None], DataSplits]
DATA_SOURCES: Registry[DataLoaderFn] = Registry("data source")


def parse_source(source: str) -> tuple[str, str | None, dict[str, str]]:
    """``scheme:location?k=v`` -> (scheme, location, options). A bare path is an image folder."""
    source, _, query = source.partition("?")
    options = dict(parse_qsl(query))
    scheme, sep, location = source.partition(":")
    if sep and scheme in DATA_SOURCES:
        return scheme, location or None, options
    if source in DATA_SOURCES:
        return source, None, options
    return "imagefolder", source, options


def load_data(source: str, image_size: tuple[int, int] | None = None, resize: int | None = None,
              interpolation: str = "bilinear", skip_broken: bool = False) -> DataSplits:
    """``resize``/``interpolation``: how files are decoded for the model (its spec's transform);
    ``skip_broken``: leave unreadable files out (listed in ``DataSplits.skipped``) instead of failing."""
    scheme, location, options = parse_source(source)
    if scheme == "imagefolder" and location and not Path(location).exists():
        raise EdgekitError(f"data source '{source}' not found: no such directory",
                           f"give an image folder path or one of: {', '.join(DATA_SOURCES.names())}")
    return DATA_SOURCES.get(scheme)(location, options, image_size, resize=resize, interpolation=interpolation,
                                    skip_broken=skip_broken)


def load_data_for(source: str, spec, skip_broken: bool = False) -> DataSplits:
    """The data decoded the way ``spec`` (a ModelSpec) expects: its input size, resize and interpolation."""
    return load_data(source, image_size=spec.hw, resize=spec.resize, interpolation=spec.interpolation,
                     skip_broken=skip_broken)


def int_option(options: dict[str, str], key: str, default: int) -> int:
    try:
        return int(options.get(key, default))
    except ValueError:
        raise EdgekitError(f"data option {key}={options[key]!r} is not an integer") from None


def float_option(options: dict[str, str], key: str, default: float) -> float:
    try:
        value = float(options.get(key, default))
    except ValueError:
        raise EdgekitError(f"data option {key}={options[key]!r} is not a number") from None
    if not 0 < value < 1:
        raise EdgekitError(f"data option {key}={value} must be between 0 and 1")
    return value
