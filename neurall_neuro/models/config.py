"""Shared helpers for model configuration dataclasses (validation, dict round trip)."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from neurall_neuro.errors import ConfigError

C = TypeVar("C")


def config_from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Build config dataclass ``cls`` from ``values``; unknown keys raise ConfigError listing valid ones.

    Lists are turned back into tuples where the field default is a tuple, so configs
    survive JSON / YAML / checkpoint round trips unchanged.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for {cls.__name__}; "
            f"valid options: {', '.join(sorted(fields))}"
        )
    converted: dict[str, Any] = {}
    for key, value in values.items():
        default = fields[key].default
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        converted[key] = value
    return cls(**converted)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain-Python dict (tuples become lists) suitable for JSON, YAML and ``weights_only`` checkpoints."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise ConfigError(
            f"{name}={value!r} is invalid; valid options: {', '.join(map(str, choices))}"
        )


def check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")
