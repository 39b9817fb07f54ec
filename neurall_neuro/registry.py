"""A small name -> object registry used for models, NIR mappings, targets and energy profiles.

Modelled on torchvision's ``register_model``: registration is a decorator, duplicate
names are rejected, and a lookup of an unknown name lists the valid ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from neurall_neuro.errors import DuplicateNameError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects of one kind (e.g. model builders).

    >>> reg: Registry[int] = Registry("number")
    >>> _ = reg.register("one", 1)
    >>> reg.get("one")
    1
    >>> reg.get("two")
    Traceback (most recent call last):
    ...
    neurall_neuro.errors.UnknownNameError: unknown number 'two'; valid options: one
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; without ``obj`` return a decorator."""

        def add(item: T) -> T:
            if name in self._items:
                raise DuplicateNameError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            return item

        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._items) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
