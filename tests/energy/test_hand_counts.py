"""Hand-computed counts for every counted operation type (torch-hook counter)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from energy.torch_counter import OpCounter, count_model
from neurall_neuro.errors import UnsupportedModuleError
from neurall_neuro.models.neurons import LIFLayer
from neurall_neuro.models.registry import get_model
from neurall_neuro.models.se_block import ChannelGate, SEBlock
from neurall_neuro.models.se_cnn import ResidualSEStage


class OverTime(nn.Module):
    """``[B, ...]`` -> ``module`` on ``[T, B, ...]`` (the input repeated ``T`` times)."""

    def __init__(self, module: nn.Module, steps: int):
        super().__init__()
        self.module = module
        self.steps = steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.unsqueeze(0).expand(self.steps, *x.shape).contiguous())


class TimeMajor(nn.Module):
    """``[B, T, ...]`` -> ``module`` on ``[T, B, ...]``."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.transpose(0, 1).contiguous())


class FixedGate(nn.Module):
    """Features times a fixed per-channel gate, through ChannelGate."""

    def __init__(self, gate: torch.Tensor):
        super().__init__()
        self.register_buffer("gate_value", gate.reshape(1, -1, 1, 1))
        self.gate = ChannelGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(x, self.gate_value.expand(x.shape[0], -1, -1, -1))


def test_conv_synops_by_hand() -> None:
    """3x3 conv, padding 1, on 3x3 spikes: corner -> 4 positions, edge -> 6, centre -> 9 (x 2 channels)."""
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    x = torch.zeros(2, 1, 3, 3)
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = 1  # corner + centre: 2 * (4 + 9) = 26
    x[1, 0, 0, 1] = 1  # edge: 2 * 6 = 12
    row = count_model(nn.Sequential(conv), x).layer("0")
    assert (row.op, row.input_binary) == ("AC", True)
    assert row.synops == 38
    assert row.synops_dense == 2 * 2 * (4 * 4 + 4 * 6 + 9)
    assert row.input_events == 3 and row.bias_adds == 0 and row.macs == 0


def test_linear_acs_macs_and_bias_by_hand() -> None:
    linear = nn.Linear(3, 2)
    with torch.no_grad():
        linear.bias.fill_(0.5)
    spikes = count_model(nn.Sequential(linear), torch.tensor([[1.0, 0.0, 1.0]])).layer("0")
    assert (spikes.synops, spikes.synops_dense, spikes.bias_adds, spikes.macs) == (4, 6, 2, 0)
    analog = count_model(nn.Sequential(linear), torch.tensor([[0.5, 0.0, 2.0]])).layer("0")
    assert (analog.op, analog.macs, analog.macs_dense, analog.synops) == ("MAC", 4, 6, 0)
    with torch.no_grad():
        linear.bias.zero_()  # an all-zero bias costs nothing (as in NIR)
    assert count_model(nn.Sequential(linear), torch.ones(1, 3)).layer("0").bias_adds == 0


def _pool_conv() -> nn.Sequential:
    return nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(1, 1, 3, padding=1, bias=False))


def _three_spikes() -> torch.Tensor:
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = x[0, 0, 0, 1] = x[0, 0, 3, 3] = 1  # two in one pooling window
    return x


def test_avgpool_folds_into_the_next_conv() -> None:
    """Hardware view: each of the 3 spikes drives the folded conv's 4 outputs; no pool row."""
    counts = count_model(_pool_conv(), _three_spikes())
    assert [layer.name for layer in counts.layers] == ["1"]
    row = counts.layer("1")
    assert (row.folded, row.op, row.synops, row.synops_dense, row.input_events) == (
        "0",
        "AC",
        12,
        64,
        3,
    )


def test_neurobench_view_counts_the_pool_and_macs() -> None:
    """NeuroBench view: pool adds/mults, then MACs on the 2 non-zero pooled values."""
    counts = count_model(_pool_conv(), _three_spikes(), fold_pooling=False)
    pool, conv = counts.layer("0"), counts.layer("1")
    assert (pool.kind, pool.adds, pool.mults) == ("avgpool", 4 * 3, 4)
    assert (conv.op, conv.macs, conv.macs_dense, conv.synops) == ("MAC", 8, 16, 0)


def test_global_pool_and_linear_fold_into_one_dense_layer() -> None:
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    with torch.no_grad():
        head[2].bias.fill_(1.0)
    x = torch.zeros(1, 2, 2, 2)
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = x[0, 1, 0, 1] = x[0, 1, 1, 0] = x[0, 1, 1, 1] = 1
    counts = count_model(head, x)
    assert [layer.name for layer in counts.layers] == ["2"]
    row = counts.layer("2")
    assert (row.folded, row.synops, row.synops_dense, row.bias_adds) == ("0", 15, 24, 3)


def test_lif_updates_and_spikes_by_hand() -> None:
    """v <- v/2 + I/2 (tau = 2 dt): I = 3 spikes every step, I = 1.5 every second step."""
    model = OverTime(LIFLayer(tau_mem=2e-4, dt=1e-4), steps=4)
    row = count_model(model, torch.tensor([[3.0, 1.5]])).layer("module")
    assert (row.kind, row.steps, row.neurons) == ("lif", 4, 2)
    assert (row.neuron_updates, row.spikes) == (8, 6)
    assert row.firing_rate == pytest.approx(0.75)


def test_spiking_gate_and_neurons_by_hand() -> None:
    """Gate (1, 0) over 2x2 maps: gate spike -> 4 AND neurons, feature spike -> 1."""
    x = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 1.0]]]])
    row = count_model(FixedGate(torch.tensor([1.0, 0.0])), x).layer("gate")
    assert row.kind == "and-gate"
    assert (row.synops, row.synops_dense, row.neuron_updates, row.spikes) == (1 * 4 + 4, 16, 8, 3)


def test_analog_gate_counts_multiplies() -> None:
    x = torch.ones(2, 2, 3, 3)
    row = count_model(FixedGate(torch.tensor([0.3, 0.9])), x).layer("gate")
    assert (row.kind, row.mults, row.synops, row.neuron_updates) == ("gate-mult", 36, 0, 0)


def _se_input(batch: int = 2, steps: int = 3, channels: int = 4, size: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(batch, steps, channels, size, size, generator=generator) < 0.5).float()


def test_spiking_se_block_by_hand() -> None:
    torch.manual_seed(0)
    se = SEBlock(4, mode="spiking", reduction=8)
    with torch.no_grad():
        se.fc1.weight.fill_(3.0)
        se.fc2.weight.normal_(0.0, 2.0)
    x = _se_input()
    batch, steps, channels, height, width = x.shape
    hidden = se.hidden
    spikes = x.transpose(0, 1)
    # Reference values straight from the block's own computations.
    with torch.no_grad():
        q = se.squeeze(spikes.flatten(0, 1))
        act1 = se.act1(se.fc1(q).unflatten(0, (steps, batch)))
        gate = se.gate_values(spikes)
    feature_spikes = int(x.sum())
    frames = steps * batch
    counts = count_model(TimeMajor(se), x)
    fc1, a1, fc2 = (
        counts.layer("module.fc1"),
        counts.layer("module.act1"),
        counts.layer("module.fc2"),
    )
    a2, and_gate = counts.layer("module.act2"), counts.layer("module.gate")
    assert (fc1.folded, fc1.synops, fc1.synops_dense) == (
        "module.squeeze",
        feature_spikes * hidden,
        frames * channels * height * width * hidden,
    )
    assert (a1.neuron_updates, a1.spikes) == (frames * hidden, int(act1.sum()))
    assert (fc2.op, fc2.synops, fc2.synops_dense) == (
        "AC",
        int(act1.sum()) * channels,
        frames * hidden * channels,
    )
    assert (a2.neuron_updates, a2.spikes) == (frames * channels, int(gate.sum()))
    assert and_gate.synops == int(gate.sum()) * height * width + feature_spikes
    assert and_gate.synops_dense == 2 * frames * channels * height * width
    assert and_gate.neuron_updates == frames * channels * height * width
    assert and_gate.spikes == int((spikes * gate).sum())
    assert fc1.bias_adds == frames * hidden and fc2.bias_adds == frames * channels


def test_analog_se_block_by_hand() -> None:
    torch.manual_seed(0)
    se = SEBlock(4, mode="analog", reduction=8)
    x = _se_input()
    batch, steps, channels, height, width = x.shape
    frames, hidden = steps * batch, se.hidden
    with torch.no_grad():
        relu = se.act1(se.fc1(se.squeeze(x.transpose(0, 1).flatten(0, 1))))
    counts = count_model(TimeMajor(se), x)
    fc1, fc2 = counts.layer("module.fc1"), counts.layer("module.fc2")
    assert (fc1.op, fc1.synops) == (
        "AC",
        int(x.sum()) * hidden,
    )  # squeeze folded: inputs are spikes
    assert counts.layer("module.act1").comparisons == frames * hidden
    assert (fc2.op, fc2.macs, fc2.macs_dense) == (
        "MAC",
        int((relu != 0).sum()) * channels,
        frames * hidden * channels,
    )
    assert counts.layer("module.act2").nonlinear == frames * channels
    assert counts.layer("module.gate").mults == frames * channels * height * width


def test_se_block_none_costs_nothing() -> None:
    counts = count_model(TimeMajor(SEBlock(4, mode="none")), _se_input())
    assert counts.layers == []


def test_residual_se_stage_by_hand() -> None:
    """One stage 2 -> 4 channels on 4x4: every functional op of the residual block."""
    torch.manual_seed(0)
    stage = ResidualSEStage(2, 4, se=True, reduction=16).eval()
    counts = count_model(stage, torch.rand(1, 2, 4, 4) + 0.1)
    spatial = 4 * 4 + 8 * 6 + 4 * 9  # 3x3 / pad 1 fan-outs on 4x4: corners, edges, inside
    assert counts.layer("conv1").macs_dense == 2 * 4 * spatial
    assert counts.layer("conv2").macs_dense == 4 * 4 * spatial
    assert counts.layer("shortcut.conv").macs_dense == 2 * 4 * 16
    residual = counts.layer("residual")
    assert (residual.kind, residual.adds) == ("residual", 4 * 4 * 4)
    assert counts.layer("relu1").comparisons == counts.layer("relu2").comparisons == 64
    assert counts.layer("pool").comparisons == 4 * 2 * 2 * 3
    squeeze = counts.layer("se.squeeze")
    assert (squeeze.adds, squeeze.mults) == (4 * 15, 4)
    assert counts.layer("se.fc1").macs_dense == 4 * 4 and counts.layer("se.fc2").macs_dense == 4 * 4
    assert counts.layer("se.act2").nonlinear == 4
    assert counts.layer("se.gate").mults == 64


def test_batchnorm_folded_and_unfolded() -> None:
    bn = nn.BatchNorm2d(2).eval()
    x = torch.rand(3, 2, 2, 2)
    assert count_model(nn.Sequential(bn), x).layer("0").bias_adds == 0  # identity BN: no shift
    with torch.no_grad():
        bn.running_mean.fill_(0.5)
    assert count_model(nn.Sequential(bn), x).layer("0").bias_adds == 24
    unfolded = count_model(nn.Sequential(bn), x, fold_batchnorm=False).layer("0")
    assert (unfolded.mults, unfolded.adds, unfolded.bias_adds) == (24, 24, 0)


def test_maxpool_with_padding_by_hand() -> None:
    """3x3 / stride 2 / pad 1 on 5x5: windows of 4 (corners), 6 (edges), 9 (centre) inputs."""
    row = count_model(nn.Sequential(nn.MaxPool2d(3, 2, 1)), torch.rand(1, 2, 5, 5)).layer("0")
    assert row.comparisons == 2 * (4 * 3 + 4 * 5 + 8)


def test_stem_counted_once_per_image_and_readout() -> None:
    """The direct-encoding conv costs the same for T = 2 and T = 4; LIF updates scale with T."""
    images = torch.rand(2, 3, 16, 16)
    per_t = {}
    for steps in (2, 4):
        torch.manual_seed(0)
        model = get_model("neurallnet", input_size=16, channels=[4, 8, 8, 8], timesteps=steps)
        per_t[steps] = count_model(model, images)
    stem_macs = 3 * 4 * (2 + 2 + 14 * 3) ** 2  # fan-outs per row: 2 at the borders, 3 inside
    for steps, counts in per_t.items():
        assert counts.timesteps == steps
        stem = counts.layer("stem.conv")
        assert (stem.op, stem.steps, stem.macs_dense) == ("MAC", 1, 2 * stem_macs)
        assert counts.layer("body.lif1").neuron_updates == 2 * steps * 4 * 16 * 16
        readout = counts.layer("readout")
        assert (readout.neuron_updates, readout.firing_rate) == (2 * steps * 4, None)


def test_unknown_module_is_rejected_before_running() -> None:
    with pytest.raises(UnsupportedModuleError, match=r"1 \(Tanh\)"):
        OpCounter(nn.Sequential(nn.Conv2d(1, 1, 1), nn.Tanh()))


def test_counts_accumulate_over_batches() -> None:
    conv = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, bias=False))
    x = (torch.rand(6, 1, 5, 5) < 0.4).float()
    whole = count_model(conv, x).layer("0")
    split = count_model(conv, x, batch_size=4)
    assert split.samples == 6 and split.layer("0").synops == whole.synops
    assert split.per_sample("synops") == pytest.approx(whole.synops / 6)
