"""The fixed-point network IR: validation messages, structure queries, the host encoder."""

from __future__ import annotations

import numpy as np
import pytest

from hw_targets.loihi.network import HostEncoder, LoihiNetwork, NeuronGroup, Synapse
from neurall_neuro.errors import ConversionError, QuantizationError


def small_net(**syn_kw) -> LoihiNetwork:
    groups = [
        NeuronGroup("in", (2, 4, 4), vth=10),
        NeuronGroup("mid", (3, 2, 2), vth=5),
        NeuronGroup("out", (4,)),
    ]
    syns = [
        Synapse("c", "in", "mid", "conv", np.full((3, 2, 3, 3), 2), stride=2, padding=1, **syn_kw),
        Synapse("d", "mid", "out", "dense", np.zeros((4, 12), dtype=int)),
    ]
    return LoihiNetwork(groups, syns, "in", "out")


@pytest.mark.parametrize(
    ("make", "field", "value", "valid"),
    [
        (lambda: NeuronGroup("g", (4,), du=5000), "du", "5000", "-1..4095"),
        (lambda: NeuronGroup("g", (4,), dv=-1), "dv", "-1", "0..4096"),
        (lambda: NeuronGroup("g", (4,), vth=200000), "vth", "200000", "0..131072"),
        (
            lambda: NeuronGroup("g", (4,), bias_mant=[0, 1, 5000, 2]),
            "bias_mant",
            "5000",
            "-4096..4095",
        ),
        (lambda: NeuronGroup("g", (4,), bias_exp=8), "bias_exp", "8", "0..7"),
        (lambda: Synapse("s", "a", "b", "dense", [[300]]), "weight", "300", "-256..254"),
        (lambda: Synapse("s", "a", "b", "dense", [[-258]]), "weight", "-258", "-256..254"),
        (lambda: Synapse("s", "a", "b", "dense", [[2]], weight_exp=9), "weight_exp", "9", "-8..7"),
        (lambda: Synapse("s", "a", "b", "dense", [[2]], delay=0), "delay", "0", "1..64"),
    ],
)
def test_out_of_range_values_name_field_value_and_range(make, field, value, valid):
    with pytest.raises(QuantizationError) as info:
        make()
    msg = str(info.value)
    assert field in msg and value in msg and valid in msg, msg


def test_odd_weight_mantissas_are_rejected():
    with pytest.raises(QuantizationError, match="odd.*even"):
        Synapse("s", "a", "b", "dense", [[3]])


def test_bias_broadcast_per_channel_and_effective_bias():
    g = NeuronGroup("g", (2, 2, 2), bias_mant=[1, -3], bias_exp=6)
    assert g.bias_mant.shape == (2, 2, 2)
    assert np.all(g.effective_bias[0] == 64) and np.all(g.effective_bias[1] == -192)
    with pytest.raises(ConversionError, match="shape"):
        NeuronGroup("g", (2, 2, 2), bias_mant=[1, 2, 3])


def test_network_structure_queries():
    net = small_net(delay=3)
    assert net.depths() == {"in": 0, "mid": 3, "out": 4}
    assert net.chain_order() == ["in", "mid", "out"] and net.is_chain()
    assert [s.name for s in net.incoming("mid")] == ["c"]
    assert "mid" in net.summary()


def test_network_validation_errors():
    with pytest.raises(ConversionError, match="differs from the target group"):
        small_net(dilation=2)
    groups = [NeuronGroup("in", (4,)), NeuronGroup("out", (4,))]
    with pytest.raises(ConversionError, match="unknown group 'nope'"):
        LoihiNetwork(
            groups, [Synapse("s", "nope", "out", "dense", np.zeros((4, 4), int))], "in", "out"
        )
    with pytest.raises(ConversionError, match="driven by its bias"):
        LoihiNetwork(
            groups, [Synapse("s", "out", "in", "dense", np.zeros((4, 4), int))], "in", "out"
        )
    with pytest.raises(ConversionError, match="duplicate neuron group"):
        LoihiNetwork([NeuronGroup("in", (4,)), NeuronGroup("in", (4,))], [], "in", "in")
    with pytest.raises(ConversionError, match=r"dense weight shape \(4, 3\)"):
        LoihiNetwork(
            groups, [Synapse("s", "in", "out", "dense", np.zeros((4, 3), int))], "in", "out"
        )


def test_branching_network_is_not_a_chain_and_cycles_are_detected():
    groups = [NeuronGroup(n, (4,)) for n in ("in", "a", "b")]
    w = np.zeros((4, 4), int)
    branch = LoihiNetwork(
        groups,
        [
            Synapse("1", "in", "a", "dense", w),
            Synapse("2", "in", "b", "dense", w),
            Synapse("3", "a", "b", "dense", w),
        ],
        "in",
        "b",
    )
    assert branch.chain_order() is None
    assert branch.depths()["b"] == 2
    cyc = LoihiNetwork(groups[:2] + [NeuronGroup("b", (4,))], [Synapse("1", "in", "a", "dense", w),
                       Synapse("2", "a", "b", "dense", w), Synapse("3", "b", "a", "dense", w)], "in", "b")  # fmt: skip
    with pytest.raises(ConversionError, match="cycle"):
        cyc.depths()


def test_host_encoder_rounds_and_clips_in_float64():
    enc = HostEncoder(np.ones((1, 1, 1, 1)), [0.0], (1, 2, 2), scale=10.0, float_scale=0.5)
    images = np.array([[[[0.25, 0.35], [-1000.0, 1000.0]]]])
    assert enc.encode(images).tolist() == [[[[2, 4], [-4096, 4095]]]]  # round half to even, clipped
    assert enc.encode_float(images)[0, 0, 0, 0] == pytest.approx(0.125)
    with pytest.raises(ConversionError, match=r"images must be \[B, 1, 2, 2\]"):
        enc.encode(np.zeros((1, 3, 2, 2)))


@pytest.mark.parametrize(
    "c_in,c_out,groups,k,stride,pad,dil,h",
    [
        (2, 4, 1, 3, 1, 1, 1, 5),  # more outputs than inputs: enumerate inputs
        (4, 2, 2, 3, 2, 1, 1, 7),  # fewer outputs, odd size lost to the stride's floor
        (4, 4, 4, 2, 3, 2, 2, 6),  # depthwise, dilated, stride 3
        (3, 1, 1, 5, 1, 0, 1, 5),  # a global "squeeze": one output
    ],
)
def test_unrolled_conv_matrix_equals_torch_conv(c_in, c_out, groups, k, stride, pad, dil, h):
    import torch

    rng = np.random.default_rng(c_in * 100 + k)
    w = 2 * rng.integers(-60, 60, (c_out, c_in // groups, k, k))
    syn = Synapse("s", "a", "b", "conv", w, 0, stride, pad, dilation=dil, groups=groups)
    matrix = syn.dense_mantissas((c_in, h, h))
    for _ in range(3):
        x = rng.integers(0, 2, (c_in, h, h)).astype(np.float64)
        ref = torch.nn.functional.conv2d(
            torch.tensor(x)[None], torch.tensor(w, dtype=torch.float64),
            stride=stride, padding=pad, dilation=dil, groups=groups,
        )  # fmt: skip
        np.testing.assert_array_equal(matrix @ x.ravel(), ref.numpy().ravel())


def test_unrolling_a_wide_squeeze_does_not_build_an_input_identity():
    """128 x 16 x 16 inputs into 16 outputs: 0.5 M entries, not a 32,768^2 identity (8 GB)."""
    import resource

    w = 2 * np.random.default_rng(0).integers(-60, 60, (16, 128, 16, 16))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    matrix = Synapse("squeeze", "a", "b", "conv", w).dense_mantissas((128, 16, 16))
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert matrix.shape == (16, 128 * 16 * 16)
    np.testing.assert_array_equal(matrix, w.reshape(16, -1))  # one output = the whole kernel
    assert grown_mib < 1024
