"""Spike activation maps: a hand-computed case, non-negativity, silence."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from neurall_neuro.errors import ConfigError
from neurall_neuro.explain import sam, spike_activation_map
from neurall_neuro.models.registry import get_model


def test_sam_hand_computed_single_neuron() -> None:
    # One neuron (1 channel, 1x1) spiking at t = 0, 1, 3 over T = 4, gamma = 1.
    spikes = torch.tensor([1.0, 1.0, 0.0, 1.0]).view(4, 1, 1, 1, 1)
    maps = spike_activation_map(spikes, gamma=1.0).flatten()
    e = math.exp
    expected = [
        0.0,  # t=0: no previous spike
        e(-1),  # t=1: previous spike at 0
        0.0,  # t=2: silent now
        e(-3) + e(-2),  # t=3: previous spikes at 0 and 1
    ]
    assert maps.tolist() == pytest.approx(expected)


def test_sam_sums_channels_and_is_non_negative() -> None:
    torch.manual_seed(0)
    spikes = (torch.rand(5, 2, 6, 4, 4) < 0.4).float()
    maps = spike_activation_map(spikes, gamma=0.5)
    assert maps.shape == (5, 2, 4, 4)
    assert float(maps.min()) >= 0.0
    per_channel = sum(spike_activation_map(spikes[:, :, c : c + 1], 0.5) for c in range(6))
    assert torch.allclose(maps, per_channel)


def test_sam_is_zero_for_a_silent_network() -> None:
    model = get_model("neurallnet", input_size=16, channels=[4, 8, 8, 8], timesteps=3)
    exp = sam(model, torch.zeros(2, 3, 16, 16))  # no input current: no spike anywhere
    assert exp.method == "sam" and exp.layer == "lif4"
    assert float(exp.raw.abs().sum()) == 0.0 and float(exp.maps.sum()) == 0.0
    assert exp.step_maps is not None and exp.step_maps.shape == (3, 2, 16, 16)


def test_sam_localises_the_active_quadrant() -> None:
    torch.manual_seed(0)
    model = get_model(
        "neurallnet", input_size=64, channels=[4, 4, 4, 4], timesteps=4, se_mode="none"
    )
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.abs_()
    images = torch.zeros(1, 3, 64, 64)
    images[:, :, 32:, 32:] = 1.0  # bottom-right quadrant
    exp = sam(model.eval(), images, layer="lif3")
    assert float(exp.maps.min()) >= 0.0
    assert float(exp.maps[0, 32:, 32:].sum() / exp.maps[0].sum()) > 0.9


def test_sam_rejects_cnns_and_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="spiking models only"):
        sam(get_model("se-cnn", input_size=16, channels=[4, 8, 8, 8]), torch.rand(1, 3, 16, 16))
    with pytest.raises(ConfigError, match=r"\[T, B, C, H, W\]"):
        spike_activation_map(torch.zeros(3, 4, 4))
