"""Registry of hardware targets: ``list_targets()``, ``get_target(name)``.

Targets register themselves with the :func:`register_target` class decorator when their
module is imported. The built-in target modules are imported on the first lookup, so
importing this module stays cheap and never imports Lava (the Lava target imports Lava
only when it compiles). A new built-in target (e.g. the floating-point ``torch`` target)
adds its module to :data:`BUILTIN_TARGET_MODULES`; third-party targets just import
their module before the lookup.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from hw_targets.base import Target
from neurall_neuro.registry import Registry

TARGETS: Registry[type[Target]] = Registry("hardware target")

#: Modules that define the built-in targets (imported lazily by the lookups below).
BUILTIN_TARGET_MODULES: tuple[str, ...] = (
    "hw_targets.torch_target",
    "hw_targets.loihi_emu",
    "hw_targets.lava_sim",
)

T = TypeVar("T", bound=type[Target])


def register_target(name: str) -> Callable[[T], T]:
    """Class decorator: register a :class:`Target` subclass under ``name`` (sets ``cls.name``)."""

    def add(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, Target)):
            raise TypeError(f"register_target expects a Target subclass, got {cls!r}")
        cls.name = name
        TARGETS.register(name, cls)
        return cls

    return add


def _load_builtins() -> None:
    for module in BUILTIN_TARGET_MODULES:
        importlib.import_module(module)  # registers on first import; cached afterwards


def list_targets() -> list[str]:
    """Names of all registered targets (sorted)."""
    _load_builtins()
    return TARGETS.names()


def get_target(name: str, **kwargs: Any) -> Target:
    """A new instance of the target ``name`` (UnknownNameError lists the valid names)."""
    _load_builtins()
    return TARGETS.get(name)(**kwargs)
