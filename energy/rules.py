r"""Counting rules shared by the torch-hook counter and the NIR-graph counter.

Each rule turns tensors of per-position event counts (non-zero inputs summed over all
frames) and per-shape constants into exact integer operation counts. The equations:

Synaptic layer (conv / linear, fan-out map :math:`F`, :mod:`energy.fanout`) over
:math:`N` frames with per-position event counts :math:`n_i`:

.. math::
    \text{effective} = \sum_i n_i F_i, \qquad \text{dense} = N \sum_i F_i

(ACs when the input is binary, MACs otherwise).

Spiking SE gate (AND neurons :math:`y = \Theta(s + g - 1.5)` over a ``C x H x W`` map,
gate spikes :math:`g \in \{0,1\}^C` broadcast to the ``H W`` AND neurons of their
channel, feature spikes :math:`s` on an identity edge):

.. math::
    \text{synops} = HW \sum g + \sum s, \qquad
    \text{dense} = 2\,N\,C H W, \qquad
    \text{neuron updates} = N\,C H W

Pooling counted as its own layer (window of :math:`n_o` valid inputs, ``C`` channels):
:math:`\text{adds} = N C \sum_o (n_o - 1)` (comparisons for max pooling) and, for an
average, one multiply (the :math:`1/n_o` scale) per output with :math:`n_o > 1`.

Sum of :math:`k` branches with :math:`n` elements each (the residual join
``y + shortcut(x)``: :math:`k = 2`): :math:`\text{adds} = (k - 1)\, n`.

Readout integrator (the mean over :math:`T` steps of a :math:`K`-unit layer over
:math:`B` samples): :math:`K` non-leaking integrator neurons, one update per neuron per
step, :math:`\text{updates} = T B K`.
"""

from __future__ import annotations

import torch


def effective_ops(events: torch.Tensor, fanout: torch.Tensor) -> torch.Tensor:
    """``sum_i n_i F_i`` as a 0-dim ``int64`` tensor on the maps' device (no synchronisation)."""
    if events.shape != fanout.shape:
        raise ValueError(
            f"event map {tuple(events.shape)} does not match fan-out map {tuple(fanout.shape)}"
        )
    return (events.to(torch.int64) * fanout).sum()


def synaptic_ops(events: torch.Tensor, fanout: torch.Tensor, frames: int) -> tuple[int, int]:
    """``(effective, dense)`` operations of a synaptic layer.

    Args:
        events: ``int64`` non-zero input counts per input position, summed over frames
            (same shape as ``fanout``).
        fanout: exact fan-out per input position.
        frames: number of frames the counts were summed over.
    """
    effective = int(effective_ops(events, fanout))
    dense = int(frames) * int(fanout.sum())
    return effective, dense


def and_gate_ops(
    gate_spikes: int, feature_spikes: int, frames: int, channels: int, height: int, width: int
) -> tuple[int, int, int]:
    """``(synops, synops_dense, neuron_updates)`` of the spiking SE gate (AND neurons)."""
    neurons = channels * height * width
    synops = gate_spikes * height * width + feature_spikes
    return synops, 2 * frames * neurons, frames * neurons


def pooling_ops(window_sizes: torch.Tensor, channels: int, frames: int) -> tuple[int, int]:
    """``(reductions, outputs)``: adds (or comparisons) and output values of a pooling layer."""
    per_map = int((window_sizes - 1).clamp(min=0).sum())
    outputs = int(window_sizes.numel())
    return frames * channels * per_map, frames * channels * outputs


def sum_ops(terms: int, elements: int) -> int:
    """Adds of an element-wise sum of ``terms`` tensors with ``elements`` values each."""
    if terms < 1:
        raise ValueError(f"a sum needs at least one term, got {terms}")
    return (terms - 1) * elements
