"""Pricing by hand: counts x energies, host execution, the memory model, break-even."""

from __future__ import annotations

import pytest

from energy.breakeven import break_even
from energy.counts import LayerCounts, ModelCounts
from energy.memory import layer_traffic
from energy.pricing import price
from energy.profiles import load_profiles


def _snn() -> ModelCounts:
    """Two samples: a host stem (MACs), a spiking conv (ACs), a LIF population."""
    return ModelCounts(
        model="snn",
        samples=2,
        timesteps=4,
        layers=[
            LayerCounts("stem", "conv", steps=1, input_binary=False, macs=100, macs_dense=120,
                        input_elements=20, input_events=18, output_elements=40, bias_adds=40),
            LayerCounts("conv2", "conv", steps=4, input_binary=True, synops=60, synops_dense=600,
                        input_elements=200, input_events=10, output_elements=80),
            LayerCounts("lif2", "lif", steps=4, neurons=10, neuron_updates=80, spikes=20,
                        input_elements=80, output_elements=80),
        ],
    )  # fmt: skip


def _cnn() -> ModelCounts:
    return ModelCounts(
        model="cnn",
        samples=2,
        timesteps=1,
        layers=[
            LayerCounts(
                "conv", "conv", macs=300, macs_dense=400, input_elements=50, output_elements=60
            ),
            LayerCounts("relu", "relu", comparisons=60, input_elements=60, output_elements=60),
        ],
    )


def test_memory_traffic_by_hand() -> None:
    snn = _snn()
    stem, conv, lif = (layer_traffic(layer) for layer in snn.layers)
    assert (stem.weight_reads, stem.input_reads, stem.output_writes) == (120 + 40, 120, 40)
    assert (conv.weight_reads, conv.state_reads, conv.state_writes, conv.input_reads) == (
        60,
        60,
        60,
        10,
    )
    assert (lif.state_reads, lif.state_writes, lif.output_writes) == (80, 80, 20)
    relu = layer_traffic(_cnn().layers[1])
    assert (relu.input_reads, relu.output_writes, relu.weight_reads) == (60, 60, 0)
    assert layer_traffic(snn.layers[1], spike_scale=0.5).weight_reads == 30


def test_digital_pricing_by_hand() -> None:
    catalog = load_profiles()
    energy = price(_snn(), catalog.get("45nm-fp32"), catalog, role="snn")
    arithmetic = (120 * 4.6 + 40 * 0.9 + 60 * 0.9 + 80 * 5.5 + 20 * 0.0) / 2
    assert energy.arithmetic_pj == pytest.approx(arithmetic)
    reads = (160 + 120) + (60 + 60 + 10) + 80
    writes = 40 + 60 + (80 + 20)
    assert energy.memory_pj == pytest.approx((reads + writes) * 5.0 / 2)
    assert energy.total_pj == pytest.approx(energy.arithmetic_pj + energy.memory_pj)
    assert energy.host_pj == 0.0


def test_neuromorphic_pricing_runs_mac_layers_on_the_host() -> None:
    catalog = load_profiles()
    energy = price(_snn(), catalog.get("loihi"), catalog, role="snn")
    stem, conv, lif = energy.layers
    assert stem.executor == "45nm-fp32" and conv.executor == lif.executor == "loihi"
    assert stem.arithmetic_pj == pytest.approx((120 * 4.6 + 40 * 0.9) / 2)
    assert stem.memory_pj == pytest.approx(((160 + 120) + 40) * 5.0 / 2)
    assert conv.arithmetic_pj == pytest.approx(60 * 23.6 / 2) and conv.memory_pj == 0.0
    assert lif.arithmetic_pj == pytest.approx((80 * 81.0 + 20 * 1.7) / 2)
    assert energy.host_pj == pytest.approx(stem.total_pj)


def test_break_even_solves_the_energy_equation() -> None:
    catalog = load_profiles()
    snn, profile = _snn(), catalog.get("45nm-fp32")
    cnn_energy = price(_cnn(), profile, catalog).total_pj
    result = break_even(snn, cnn_energy, profile, catalog, "45nm-fp32", with_memory=True)
    assert result.status in ("saves_below", "always_saves")
    at_break_even = price(snn, profile, catalog, spike_scale=result.scale).total_pj
    assert at_break_even == pytest.approx(cnn_energy)
    assert result.rate == pytest.approx(result.scale * 20 / 80)
    never = break_even(snn, 1.0, profile, catalog, "45nm-fp32", with_memory=False)
    assert (never.status, never.rate) == ("never_saves", None)
    silent = ModelCounts("s", 1, 4, [LayerCounts("lif", "lif", neuron_updates=4)])
    assert break_even(silent, 1e9, profile, catalog, "x", with_memory=False).status == "no_spikes"
