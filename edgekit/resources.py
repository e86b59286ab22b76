"""Where shipped data (targets/, recipes/, calibration/) and the user cache live.

In a source checkout (editable install) they are the top-level folders; a wheel carries copies
under ``edgekit/_data`` (see pyproject's force-include).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

_PKG = Path(__file__).resolve().parent


def shipped_dir(name: str) -> Path:
    """Folder of shipped YAML/data files, e.g. ``shipped_dir("targets")``."""
    for candidate in (_PKG / "_data" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"edgekit installation lacks its '{name}' folder")


def cache_dir(*parts: str) -> Path:
    """User cache (``$EDGEKIT_CACHE`` or the platform cache dir), created on demand."""
    root = Path(os.environ.get("EDGEKIT_CACHE") or platformdirs.user_cache_dir("edgekit"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
