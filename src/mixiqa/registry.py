"""Name -> builder registries with "did you mean" errors, in the manner of timm."""

from __future__ import annotations

import difflib
from typing import Generic, Iterator, TypeVar

from mixiqa.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of builders (or facts).

    Example:
        >>> MAPPERS = Registry("mapper")
        >>> @MAPPERS.register("identity")
        ... def identity(): ...
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T | None = None):
        """Register ``item`` under ``name``; usable as a decorator when ``item`` is None."""
        def add(obj: T) -> T:
            key = name.lower()
            if key in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[key] = obj
            return obj
        return add if item is None else add(item)

    def get(self, name: str) -> T:
        key = str(name).lower()
        if key not in self._items:
            raise ConfigError(self.unknown_message(name))
        return self._items[key]

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(str(name).lower(), self._items, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return (f"Unknown {self.kind} '{name}'.{hint} Known: {', '.join(sorted(self._items))}.")

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return str(name).lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self):
        return sorted(self._items.items())
