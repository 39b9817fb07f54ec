"""The NIR runtime's fast paths against their definitions, bit for bit: the in-place
multi-step LIF against its per-step update (static and time-varying inputs, uniform and
per-neuron parameters, non-zero resets, non-finite values), and the point broadcast of a
1x1 map against ``conv2d`` (depthwise, and written as a dense block-diagonal conv)."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conversion.nir_nodes import ConvOp, LIFOp, StatefulOp

DT = 1e-4


def _node(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> nir.LIF:
    def field(uniform: float, low: float, high: float) -> np.ndarray:
        if kind == "uniform":
            return np.full(shape, uniform)
        return rng.uniform(low, high, shape)

    return nir.LIF(
        tau=field(2e-4, 1e-4, 1e-3),
        r=field(1.0, 0.5, 2.0),
        v_leak=field(0.0, -0.2, 0.2),
        v_threshold=field(1.0, 0.5, 1.5),
        v_reset=field(0.0, -0.5, 0.3) if kind != "negative-zero" else np.full(shape, -0.0),
    )


def _reference(op: LIFOp, x: torch.Tensor, static: bool, steps: int):  # noqa: ANN202
    states: dict[str, list] = {}
    out, _ = StatefulOp.forward_seq(op, x, static, steps, states)
    return out, torch.stack(states["v"])


@pytest.mark.parametrize("kind", ["uniform", "per-neuron", "negative-zero"])
@pytest.mark.parametrize("static", [False, True])
def test_multi_step_lif_equals_the_step_loop(kind, static):
    rng = np.random.default_rng(0)
    shape = (3, 5, 5)
    op = LIFOp("lif", _node(rng, shape, kind), DT)
    steps = 6
    x = torch.tensor(
        rng.normal(1.0, 1.5, ((2,) if static else (steps, 2)) + shape), dtype=torch.float32
    )
    want, want_v = _reference(op, x, static, steps)
    states: dict[str, list] = {}
    got, got_static = op.forward_seq(x, static, steps, states)
    assert not got_static
    assert torch.equal(got, want) and want.sum() > 0
    got_v = torch.stack(states["v"])
    assert torch.equal(got_v, want_v)
    assert torch.equal(torch.signbit(got_v), torch.signbit(want_v))


def test_infinite_membrane_that_spikes_falls_back_to_the_exact_reset():
    """``v = +inf`` spiking resets to 0 in the definition; ``v - v z`` would give NaN."""
    op = LIFOp("lif", _node(np.random.default_rng(1), (4,), "uniform"), DT)
    x = torch.tensor([[[1.0, float("inf"), -float("inf"), float("nan")]]] * 3)
    want, want_v = _reference(op, x, False, 3)
    states: dict[str, list] = {}
    got, _ = op.forward_seq(x, False, 3, states)
    assert torch.equal(got, want)
    assert torch.equal(torch.stack(states["v"]).nan_to_num(7.0), want_v.nan_to_num(7.0))


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("unit_taps", [False, True])
def test_point_broadcast_equals_conv2d(dense, unit_taps):
    """The SE gate's broadcast of ``C`` values over ``C`` maps (kernel ``H x W``, padding
    ``H - 1``), depthwise or as a dense ``C x C`` conv that is zero off the diagonal: one
    product per output, so equal to ``conv2d`` when that product is exact (unit taps, the
    SE case, any bias) or nothing is added to it (zero bias)."""
    rng = np.random.default_rng(0)
    c, h = 5, 6
    taps = np.ones((c, 1, h, h)) if unit_taps else rng.normal(size=(c, 1, h, h))
    if dense:
        weight = np.zeros((c, c, h, h))
        weight[np.arange(c), np.arange(c)] = taps[:, 0]
    else:
        weight = taps
    groups = 1 if dense else c
    node = nir.Conv2d(
        input_shape=(1, 1),
        weight=weight.astype(np.float32),
        stride=1,
        padding=h - 1,
        dilation=1,
        groups=groups,
        bias=(rng.normal(size=c) if unit_taps else np.zeros(c)).astype(np.float32),
    )
    op = ConvOp("bcast", node, 2)
    x = torch.tensor(rng.normal(size=(7, c, 1, 1)), dtype=torch.float32)
    assert op._is_point_broadcast(x)
    want = F.conv2d(x, op.weight, op.bias, padding=h - 1, groups=groups)
    assert torch.equal(op.apply(x), want)
