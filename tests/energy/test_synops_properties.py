"""Properties of SynOps counting (hypothesis): zero spikes, all ones, linearity in spikes."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from energy.fanout import ConvGeometry, conv2d_fanout
from energy.torch_counter import count_model


def _layer(draw: st.DrawFn) -> tuple[nn.Module, tuple[int, ...]]:
    if draw(st.booleans()):
        return nn.Linear(draw(st.integers(1, 6)), draw(st.integers(1, 5))), ()
    groups = draw(st.sampled_from([1, 2]))
    conv = nn.Conv2d(
        2 * groups,
        groups * draw(st.integers(1, 2)),
        draw(st.integers(1, 3)),
        stride=draw(st.integers(1, 2)),
        padding=draw(st.integers(0, 1)),
        dilation=draw(st.integers(1, 2)),
        groups=groups,
    )
    size = draw(st.integers(5, 8))
    return conv, (size, size)


@st.composite
def layers(draw: st.DrawFn) -> tuple[nn.Module, tuple[int, ...]]:
    layer, spatial = _layer(draw)
    in_shape = (
        (layer.in_features,) if isinstance(layer, nn.Linear) else (layer.in_channels, *spatial)
    )
    return layer, in_shape


def _synops(layer: nn.Module, x: torch.Tensor) -> int:
    counts = count_model(nn.Sequential(layer), x)
    row = counts.layer("0")
    assert row.input_binary is True
    return row.synops


@settings(deadline=None, max_examples=15)
@given(layers(), st.integers(1, 3))
def test_zero_spikes_give_zero_synops(case, frames) -> None:
    layer, in_shape = case
    counts = count_model(nn.Sequential(layer), torch.zeros(frames, *in_shape))
    row = counts.layer("0")
    assert row.synops == 0 and row.macs == 0
    assert row.synops_dense > 0  # the dense figure still counts every possible event


@settings(deadline=None, max_examples=15)
@given(layers(), st.integers(1, 3))
def test_all_ones_input_gives_the_dense_macs(brute, case, frames) -> None:
    """Every input spiking: effective SynOps = the layer's dense MACs (brute-force count)."""
    layer, in_shape = case
    row = count_model(nn.Sequential(layer), torch.ones(frames, *in_shape)).layer("0")
    dense = frames * brute.dense_ops(layer, in_shape)
    assert row.synops == dense == row.synops_dense


@settings(deadline=None, max_examples=15)
@given(layers(), st.data())
def test_synops_are_linear_in_spikes(case, data) -> None:
    """Disjoint spike sets add up; adding one spike adds exactly its fan-out."""
    layer, in_shape = case
    generator = torch.Generator().manual_seed(data.draw(st.integers(0, 10_000)))
    a = (torch.rand(2, *in_shape, generator=generator) < 0.3).float()
    b = (torch.rand(2, *in_shape, generator=generator) < 0.3).float() * (1 - a)
    assert _synops(layer, a + b) == _synops(layer, a) + _synops(layer, b)

    index = data.draw(st.integers(0, a[0].numel() - 1))
    flat = torch.zeros(a[0].numel())
    flat[index] = 1
    one = flat.reshape(1, *in_shape)
    if isinstance(layer, nn.Linear):
        fanout = layer.out_features
    else:
        geometry = ConvGeometry.from_module(layer)
        fanout = int(conv2d_fanout(geometry, in_shape[1], in_shape[2]).reshape(-1)[index])
    base = (a[:1] * (1 - one)).clone()
    assert _synops(layer, base + one) == _synops(layer, base) + fanout
