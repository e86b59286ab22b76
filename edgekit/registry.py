"""Name -> implementation registries (timm-style: one decorator, one name).

Stages, backends, builtin models and data sources all register here, so adding one is one new
module with one decorator; nothing else needs to be edited except the package's import list.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from edgekit.errors import EdgekitError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def register_class(self, name: str) -> Callable[[T], T]:
        """Like ``register``, and also sets ``cls.name`` (stages and backends know their own name)."""

        def decorator(cls: T) -> T:
            cls.name = name  # type: ignore[attr-defined]
            return self.register(name)(cls)

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise EdgekitError(f"unknown {self.kind} '{name}'", f"known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
