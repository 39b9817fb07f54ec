"""Spike counts made once by the emitting layer and shared with its consumers.

The counter counts a spike tensor in the hook of the layer that emits it and lets every
consumer of the same storage reuse those counts. These tests check that the shared counts
equal a direct count of what each consumer actually received, including when an operation
no hook sees changes the spikes in place, and under ``torch.inference_mode``.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

from energy.torch_counter import OpCounter, count_model
from neurall_neuro.models.neurons import LIFLayer

STEPS = 4


class SpikesIntoTwoLayers(nn.Module):
    """LIF over ``STEPS`` steps -> time folded into the batch -> two linear layers.

    ``scale`` multiplies the spikes in place before the linear layers (a functional op that
    no hook sees), so the layers receive graded values, not the spikes the LIF emitted.
    """

    def __init__(self, scale: float | None = None):
        super().__init__()
        self.lif = LIFLayer(tau_mem=2e-4, dt=1e-4)
        self.wide = nn.Linear(3, 4, bias=False)
        self.narrow = nn.Linear(3, 1, bias=False)
        self.scale = scale

    def spikes(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif(x.unsqueeze(0).expand(STEPS, *x.shape).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = self.spikes(x).reshape(-1, x.shape[-1])
        if self.scale is not None:
            flat.mul_(self.scale)
        return self.wide(flat) + self.narrow(flat)


def _currents() -> torch.Tensor:
    return torch.tensor([[3.0, 1.5, 0.2], [0.0, 2.5, 1.0]])


def _direct_spike_count(model: SpikesIntoTwoLayers, x: torch.Tensor) -> int:
    with torch.no_grad():
        return int(torch.count_nonzero(model.spikes(x)))


def test_consumers_of_one_spike_tensor_count_its_spikes() -> None:
    model = SpikesIntoTwoLayers()
    x = _currents()
    spikes = _direct_spike_count(model, x)
    assert 0 < spikes < STEPS * x.numel()  # some, not all: the counts can tell
    counts = count_model(model, x)
    lif, wide, narrow = counts.layer("lif"), counts.layer("wide"), counts.layer("narrow")
    assert lif.spikes == spikes
    assert (wide.op, wide.input_events, wide.synops) == ("AC", spikes, 4 * spikes)
    assert (narrow.op, narrow.input_events, narrow.synops) == ("AC", spikes, spikes)


def test_spikes_changed_in_place_are_counted_as_received() -> None:
    """Halved spikes are graded inputs: MACs, not the emitter's binary counts."""
    model = SpikesIntoTwoLayers(scale=0.5)
    x = _currents()
    spikes = _direct_spike_count(model, x)
    counts = count_model(model, x)
    assert counts.layer("lif").spikes == spikes  # what the LIF emitted
    wide, narrow = counts.layer("wide"), counts.layer("narrow")
    assert (wide.op, wide.input_binary, wide.input_events) == ("MAC", False, spikes)
    assert (wide.macs, wide.synops, narrow.macs) == (4 * spikes, 0, spikes)


@pytest.mark.parametrize("scale", [None, 0.5])
def test_counting_under_inference_mode_gives_the_same_counts(scale: float | None) -> None:
    model, x = SpikesIntoTwoLayers(scale=scale), _currents()
    expected = count_model(model, x)
    with torch.inference_mode():
        counts = count_model(model, x)
    assert counts.layers == expected.layers


def test_forward_passes_outside_run_are_neither_counted_nor_kept() -> None:
    """Hooks stay attached inside ``with``, but only run() counts; direct calls keep nothing."""
    model, x = SpikesIntoTwoLayers(), _currents()
    emitted: list[weakref.ref] = []
    model.lif.register_forward_hook(lambda m, i, out: emitted.append(weakref.ref(out)))
    with OpCounter(model) as counter:
        with torch.no_grad():
            model(x * 2)  # not a counting pass
        counter.run(x)
        with torch.no_grad():
            model(x * 2)
        gc.collect()
        assert emitted[0]() is None and emitted[2]() is None  # the spikes were not held
    counts = counter.result()
    assert counts.samples == x.shape[0]
    assert counts.layer("lif").spikes == _direct_spike_count(model, x)
