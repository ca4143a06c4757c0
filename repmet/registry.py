"""A small name -> factory registry, used for data sets, models, losses and search spaces."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from repmet.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (usually factories) and fails with the list of choices on a miss.

    Args:
        kind: what the registry holds, used in error messages ("data set", "loss", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``; a name can be registered once."""

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        """Registers ``obj`` under ``name`` without a decorator."""
        self.register(name)(obj)

    def get(self, name: str) -> T:
        """The entry for ``name``; :class:`UnknownNameError` listing the choices if none."""
        try:
            return self._entries[name]
        except KeyError:
            choices = ", ".join(sorted(self._entries))
            message = f"unknown {self.kind} {name!r}; choose one of: {choices}"
            raise UnknownNameError(message) from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def in_order(self) -> list[str]:
        """The registered names in the order they were registered."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
