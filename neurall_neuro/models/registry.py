"""Model registry: ``get_model(name, **config)`` and ``list_models()``.

Adding a model: write its module with a frozen config dataclass and an ``nn.Module``
taking that config, then register a :class:`ModelSpec` here with ``MODELS.register``.
Ablations are registered as named presets of the same builder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from neurall_neuro.models.config import config_from_dict, config_to_dict
from neurall_neuro.models.neurallnet import NeurAllNet, NeurAllNetConfig
from neurall_neuro.models.se_cnn import SECNN, SECNNConfig
from neurall_neuro.registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    """How to build one registered model: its config class, builder, and preset overrides."""

    name: str
    description: str
    config_cls: type
    builder: Callable[[Any], nn.Module]
    spiking: bool
    preset: dict[str, Any] = field(default_factory=dict)

    def make_config(self, **overrides: Any) -> Any:
        return config_from_dict(self.config_cls, {**self.preset, **overrides})


MODELS: Registry[ModelSpec] = Registry("model")

for _spec in (
    ModelSpec(
        "neurallnet",
        "SE-SNN (Norse): conv LIF stages with spiking SE attention, direct encoding, mean-over-time readout",
        NeurAllNetConfig,
        NeurAllNet,
        spiking=True,
    ),
    ModelSpec(
        "neurallnet-nose",
        "SE-SNN ablation without SE attention",
        NeurAllNetConfig,
        NeurAllNet,
        spiking=True,
        preset={"se_mode": "none"},
    ),
    ModelSpec(
        "se-cnn",
        "Residual SE-CNN baseline (32/64/128/256, BN, max-pool, SE, GAP, dropout 0.5)",
        SECNNConfig,
        SECNN,
        spiking=False,
    ),
    ModelSpec(
        "se-cnn-nose",
        "Residual CNN ablation without SE attention",
        SECNNConfig,
        SECNN,
        spiking=False,
        preset={"se": False},
    ),
):
    MODELS.register(_spec.name, _spec)


def list_models() -> list[str]:
    return MODELS.names()


def get_model_spec(name: str) -> ModelSpec:
    return MODELS.get(name)


def get_model(name: str, **config: Any) -> nn.Module:
    """Build a registered model; ``config`` overrides the fields of its config dataclass.

    The returned module carries ``registry_name`` (the name it was built under) and
    ``config`` (the resolved config dataclass).
    """
    spec = MODELS.get(name)
    model = spec.builder(spec.make_config(**config))
    model.registry_name = name
    return model


def model_config_dict(model: nn.Module) -> dict[str, Any]:
    """The full config of a model built by :func:`get_model`, as plain Python values."""
    return config_to_dict(model.config)
