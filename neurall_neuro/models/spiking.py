"""What the layer-major SNN and its fast inference path share.

:class:`SNNRun` is the result of running an SNN on a batch, and :class:`LayerMajorSNN` the
structure the fast inference path (:mod:`neurall_neuro.models.inference`) needs from a
model. Both live here so that the model (:mod:`neurall_neuro.models.neurallnet`) depends
on the inference path and not the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@dataclass
class SNNRun:
    """Result of running the SE-SNN on a batch.

    ``logits``: ``[B, K]`` class scores (mean over time of ``step_logits``);
    ``step_logits``: ``[T, B, K]``; ``spikes``: per spiking layer ``[T, B, ...]`` (only
    when recorded).
    """

    logits: torch.Tensor
    step_logits: torch.Tensor
    spikes: dict[str, torch.Tensor] = field(default_factory=dict)


@runtime_checkable
class LayerMajorSNN(Protocol):
    """A feed-forward SNN run layer by layer over ``T`` steps.

    ``encode(images)`` gives the static first-layer current ``[B, ...]``; ``body`` holds the
    layers in order (stateless ones act on ``[T*B, ...]``, stateful ones on ``[T, B, ...]``);
    ``readout`` maps the last layer's ``[T, B, K]`` output to ``[B, K]`` scores; ``config``
    has ``timesteps``.
    """

    config: Any
    body: nn.Sequential
    readout: nn.Module

    def encode(self, images: torch.Tensor) -> torch.Tensor: ...
