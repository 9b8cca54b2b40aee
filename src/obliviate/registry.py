"""One typed registry class; one instance per family (methods, metrics, suites), filled at definition sites."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from obliviate.errors import unknown_name_error

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects. ``@REG.register("name")`` at the definition site; ``REG.get(name)`` to look up.

    Lookups of unknown names raise :class:`~obliviate.errors.ObliviateError` with did-you-mean suggestions.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered to {self._items[name]!r}")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise unknown_name_error(self.kind, name, self._items) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
