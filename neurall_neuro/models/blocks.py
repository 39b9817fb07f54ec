r"""Parameterless functional operations as modules, so that forward hooks see them.

A bare ``y + s`` or ``x.mean(0)`` inside a ``forward`` is invisible to module hooks (the
energy counter, activation recorders) and to module walkers (NIR export). Wrapping each in
a module without parameters or buffers makes it a leaf like any other layer, while adding
no ``state_dict`` keys and computing exactly the same floating-point operations:

* :class:`ResidualAdd`: the join of a residual block, :math:`y + s` (element-wise);
* :class:`MeanOverTime`: the readout of a layer-major SNN, the mean over the leading time
  axis, :math:`\bar x = \frac{1}{T}\sum_{t=1}^{T} x[t]`: a population of non-leaking
  integrators (one per output unit, one update per step) read out after ``T`` steps.

:class:`~neurall_neuro.models.se_block.ChannelGate` (the SE gate's product) follows the
same idea.
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualAdd(nn.Module):
    """``residual + shortcut``: the join of a residual block (same shapes, no broadcasting)."""

    def forward(self, residual: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        return residual + shortcut


class MeanOverTime(nn.Module):
    """Readout of a ``[T, B, ...]`` tensor: its mean over the ``T`` timesteps, ``[B, ...]``.

    Equivalent to a non-leaking integrator per output unit that adds its input at every
    step and is read (divided by ``T``) at the end: it decodes rate codes with no time
    constant to tune.
    """

    def forward(self, steps: torch.Tensor) -> torch.Tensor:
        return steps.mean(0)
