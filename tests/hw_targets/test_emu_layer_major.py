"""loihi-emu's layer-major schedule against the step-major reference loop, and its parts
(the exact decay, the windowed LIF recurrence, the synapse kernels) against their
definitions: every spike, count and voltage of every step must be identical."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from conversion.nir_nodes import regroup
from hw_targets.loihi import emulator
from hw_targets.loihi.emulator import (
    SYNAPSE_KERNELS,
    LoihiEmulator,
    _plan_synapse,
    pooled_form,
)
from hw_targets.loihi.fixed_point import (
    Decay,
    current_sequence,
    decay,
    lif_step,
    lif_window,
    trunc_shift,
    wrap_signed,
)
from hw_targets.loihi.network import LoihiNetwork, NeuronGroup, Synapse
from hw_targets.loihi.netx import _as_ir_weights, _lava_dense_effective, read_netx
from hw_targets.loihi.quantize import quantize_graph
from hw_targets.loihi.spec import LAVA_INT_BITS
from hw_targets.registry import get_target
from neurall_neuro.errors import ConfigError

# ----------------------------------------------------------------------------- helpers


def reference_decay(x: np.ndarray, factor: int) -> np.ndarray:
    """Lava's ``sign(x k) * (|x k| >> 12)`` in numpy int64."""
    p = x.astype(np.int64) * factor
    return np.sign(p) * (np.abs(p) >> 12)


def assert_same_trace(a, b, steps: int | None = None) -> None:  # noqa: ANN001 - RawTraces
    """Counts, spikes and voltages equal (over all steps, or the first ``steps``)."""
    cut = slice(None) if steps is None else slice(0, steps)
    assert sorted(a.counts) == sorted(b.counts)
    for what in ("counts", "spikes", "voltages"):
        x, y = getattr(a, what), getattr(b, what)
        assert sorted(x) == sorted(y), what
        for name in x:
            assert x[name].shape == y[name].shape, (what, name)
            diff = np.argwhere(x[name][cut] != y[name][cut])
            assert diff.size == 0, f"{what} of {name!r} differ first at {tuple(diff[0])}"


def both_schedules(net: LoihiNetwork, steps: int, **kw):  # noqa: ANN003, ANN201
    layer = LoihiEmulator(net, schedule="layer")
    assert layer.schedule == "layer"
    step = LoihiEmulator(net, schedule="step")
    kw = {"record": "all", "record_voltage": "all", **kw}
    return layer.simulate(steps, **kw), step.simulate(steps, **kw)


def even(rng: np.random.Generator, low: int, high: int, shape) -> np.ndarray:  # noqa: ANN001
    return 2 * rng.integers(low // 2, high // 2, shape)


def random_network(seed: int, heavy: bool = False) -> LoihiNetwork:
    """Branches of unequal depth joined again, a pooled (block-replicated) strided conv,
    a depthwise 1x1 and a broadcast synapse, a dense voltage readout; random decays
    (int32 and int64 state paths), thresholds, delays and bias starts. ``heavy``: large
    weights and exponents, so that sums wrap (int64 path) and voltages clip."""
    rng = np.random.default_rng(seed)
    c, h = 3, 8
    dus = [4095, 4095, -1, int(rng.integers(0, 4095))]
    dvs = [0, 2048, 4096, 4093, int(rng.integers(1, 4096)), 1024 * 3]

    def group(name: str, shape: tuple[int, ...], **kw) -> NeuronGroup:  # noqa: ANN003
        return NeuronGroup(
            name,
            shape,
            du=kw.pop("du", int(rng.choice(dus))),
            dv=kw.pop("dv", int(rng.choice(dvs))),
            vth=kw.pop("vth", int(rng.integers(0, 400 if not heavy else 4000))),
            bias_mant=kw.pop("bias_mant", rng.integers(-300, 1200, shape[0])),
            bias_exp=int(rng.integers(0, 8)),
            bias_start_step=int(rng.integers(0, 4)),
            **kw,
        )

    block = even(rng, -120, 200, (6, c, 3, 3))
    pooled = np.repeat(np.repeat(block, 2, axis=2), 2, axis=3)  # 6x6 kernel of 2x2 blocks
    exp = (lambda: int(rng.integers(4, 8))) if heavy else (lambda: int(rng.integers(-2, 2)))
    if seed % 2:  # the SE broadcast as a depthwise conv ...
        broadcast = Synapse(
            "gate->and", "gate", "and", "conv", np.full((6, 1, 4, 4), 60), 0, padding=3, groups=6
        )
    else:  # ... or written as a dense conv whose off-diagonal channels are zero
        dense = np.zeros((6, 6, 4, 4), dtype=np.int64)
        dense[np.arange(6), np.arange(6)] = even(rng, 2, 100, (6, 4, 4))
        broadcast = Synapse("gate->and", "gate", "and", "conv", dense, 0, padding=3)
    groups = [
        group("in", (c, h, h), bias_mant=rng.integers(0, 2000, (c, h, h)), vth=40),
        group("a", (6, 4, 4), du=4095),
        group("b", (6, 4, 4)),
        group("gate", (6, 1, 1)),
        group("and", (6, 4, 4), bias_mant=0),
        group("late", (c, h, h)),
        group("out", (5,), readout="voltage", dv=0, vth=131071),
    ]
    syns = [
        Synapse("in->a", "in", "a", "conv", pooled, exp(), stride=2, padding=2, delay=1),
        Synapse("a->b", "a", "b", "conv", even(rng, -100, 200, (6, 6, 3, 3)), exp(), padding=1),
        Synapse(
            "in->b",
            "in",
            "b",
            "conv",
            even(rng, -60, 120, (6, c, 2, 2)),
            exp(),
            stride=2,
            delay=int(rng.integers(1, 5)),
        ),  # fmt: skip
        Synapse(
            "b->gate", "b", "gate", "conv", even(rng, -50, 120, (6, 6, 4, 4)), exp(), stride=4
        ),  # fmt: skip
        broadcast,
        Synapse(
            "b->and", "b", "and", "conv", even(rng, 2, 120, (6, 1, 1, 1)), 0, groups=6, delay=2
        ),  # fmt: skip
        Synapse(
            "in->late",
            "in",
            "late",
            "conv",
            even(rng, -40, 90, (c, 1, 3, 3)),
            exp(),
            padding=1,
            groups=c,
            delay=int(rng.integers(1, 7)),
        ),  # fmt: skip
        Synapse("and->out", "and", "out", "dense", even(rng, -100, 100, (5, 96)), exp()),
        Synapse(
            "late->out",
            "late",
            "out",
            "dense",
            even(rng, -100, 100, (5, c * h * h)),
            exp(),
            delay=3,
        ),  # fmt: skip
    ]
    return LoihiNetwork(groups, syns, "in", "gate" if seed % 2 else "and")


# ----------------------------------------------------------------------------- fixed point


@settings(max_examples=60, deadline=None)
@given(
    x=st.lists(st.integers(-(2**23), 2**23), min_size=1, max_size=40),
    factor=st.one_of(
        st.sampled_from([0, 1, 2, 255, 256, 1024, 2048, 3 * 512, 4095, 4096]),
        st.integers(0, 4096),
    ),
)
def test_decay_forms_equal_lavas_definition(x, factor):
    arr = np.array(x, dtype=np.int64)
    want = reference_decay(arr, factor)
    assert decay(torch.tensor(arr), factor).tolist() == want.tolist()
    rule = Decay(factor)
    state = torch.tensor(arr, dtype=rule.dtype)
    assert rule.apply_(state).tolist() == want.tolist()
    assert np.all(np.abs(want) <= rule.bound(int(np.abs(arr).max())))


def test_decay_state_dtype():
    assert Decay(2048).dtype == torch.int32 and Decay(4096).dtype == torch.int32
    assert Decay(3 * 1024).dtype == torch.int32 and Decay(255).dtype == torch.int32
    assert Decay(4093).dtype == torch.int64 and Decay(257).dtype == torch.int64


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_trunc_shift_rounds_toward_zero(dtype):
    x = torch.arange(-70, 71, dtype=dtype)
    for s in range(0, 7):
        assert trunc_shift(x, s).tolist() == torch.div(x, 2**s, rounding_mode="trunc").tolist()


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    du=st.sampled_from([4095, -1, 0, 100, 4000]),
    dv=st.sampled_from([0, 2048, 4096, 4095, 4093, 17, 3072]),
    large=st.booleans(),
    bias_from=st.integers(0, 6),
    known_bound=st.booleans(),
    with_input=st.booleans(),
)
def test_lif_window_equals_lif_step_loop(seed, du, dv, large, bias_from, known_bound, with_input):
    """The windowed recurrence (all steps' currents at once, float32 or int32 state where
    exact) equals :func:`lif_step` applied step by step, wraps and clips included."""
    rng = np.random.default_rng(seed)
    S, B, N = 5, 2, 7
    high = 2**30 if large else 3000
    a = torch.tensor(rng.integers(-high, high, (S, B, N)) * with_input, dtype=torch.int64)
    bias = torch.tensor(rng.integers(-4096, 4096, (1, N)) << int(rng.integers(0, 8)))
    vth = int(rng.integers(0, 131072 if large else 200))
    safe = not large
    drive, bound = (None, 0)
    if with_input:
        drive, bound = current_sequence(a.to(torch.int32) if safe else a.clone(), du, safe)
    spikes, volts = lif_window(
        drive, bias, bias_from, (B, N), S, dv, vth, True, bound if known_bound else None
    )
    assert spikes.dtype == torch.float32
    u = torch.zeros((B, N), dtype=torch.int64)
    v = torch.zeros((B, N), dtype=torch.int64)
    for t in range(S):
        x = a[t] if safe else wrap_signed(a[t], LAVA_INT_BITS)
        z, u, v = lif_step(u, v, x, bias if t >= bias_from else 0, du, dv, vth, safe)
        assert spikes[t].bool().tolist() == z.tolist(), t
        assert volts[t].tolist() == v.tolist(), t


# ----------------------------------------------------------------------------- kernels


def _reference_sums(syn: Synapse, x: torch.Tensor) -> torch.Tensor:
    """``M z`` with the synapse's own weights and geometry (float64 conv2d / matmul)."""
    w = torch.as_tensor(syn.weight, dtype=torch.float64)
    if syn.kind == "dense":
        return x.reshape(x.shape[0], -1) @ w.T
    y = F.conv2d(x, w, stride=syn.stride, padding=syn.padding, dilation=syn.dilation,
                 groups=syn.groups)  # fmt: skip
    return y.reshape(x.shape[0], -1)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (emulator.UNROLL_LIMIT, {"sum-pool+matmul", "channel-scale", "matmul"}),
        (20000, {"grouped-matmul"}),
        (100, {"grouped-broadcast"}),
        (0, {"sum-pool+conv2d", "conv2d", "channel-scale", "matmul"}),
    ],
)
def test_every_kernel_gives_the_exact_integer_sums(seed, limit, expected, monkeypatch):
    """Every synapse of the random networks through its chosen kernel (and through every
    other kernel that fits it) equals the float64 convolution of the original weights;
    ``limit`` (the unrolling limit) steers which kernels are chosen."""
    monkeypatch.setattr(emulator, "UNROLL_LIMIT", limit)
    net = random_network(seed)
    rng = np.random.default_rng(seed)
    device = torch.device("cpu")
    seen = set()
    for syn in net.synapses:
        src = net.group(syn.src)
        x = torch.as_tensor(rng.random((6, *src.shape)) < 0.4, dtype=torch.float64)
        want = _reference_sums(syn, x)
        op = _plan_synapse(net, syn, device)
        xk = x.to(op.kernel.dtype)
        got = op.kernel(F.avg_pool2d(xk, op.pool, op.pool, divisor_override=1) if op.pool else xk)
        assert torch.equal(got.to(torch.float64), want), syn.name
        seen.add(("sum-pool+" if op.pool else "") + op.kernel.name)
        if syn.name == "gate->and":  # the dense-written broadcast is regrouped
            assert op.kernel.syn.groups == 6
        for kernel in SYNAPSE_KERNELS:
            if kernel.fits(syn, src.shape, net.group(syn.dst).size):
                k = kernel(syn, src.shape, torch.float64, device)
                y = k(x.to(k.dtype)).to(torch.float64)
                assert torch.equal(y, want), (syn.name, kernel.name)
    assert expected <= seen


def test_regroup_finds_block_diagonal_weights():
    rng = np.random.default_rng(0)
    dense = np.zeros((6, 4, 3, 3))
    dense[:3, :2] = rng.normal(size=(3, 2, 3, 3))
    dense[3:, 2:] = rng.normal(size=(3, 2, 3, 3))
    groups, weight = regroup(dense)
    assert groups == 2 and weight.shape == (6, 2, 3, 3)
    np.testing.assert_array_equal(weight[:3], dense[:3, :2])
    np.testing.assert_array_equal(weight[3:], dense[3:, 2:])
    x = torch.rand(2, 4, 5, 5, dtype=torch.float64)
    want = F.conv2d(x, torch.as_tensor(dense), padding=1)
    got = F.conv2d(x, torch.as_tensor(weight), padding=1, groups=2)
    torch.testing.assert_close(got, want)
    full = rng.normal(size=(6, 4, 3, 3))
    assert regroup(full)[0] == 1
    assert regroup(weight, 2)[0] == 2  # already as grouped as it gets


def test_pooled_form_needs_equal_blocks():
    rng = np.random.default_rng(0)
    w = np.repeat(np.repeat(even(rng, -50, 50, (2, 1, 3, 3)), 2, 2), 2, 3)
    syn = Synapse("s", "a", "b", "conv", w, 0, stride=2, padding=2)
    reduced, pool = pooled_form(syn, (1, 8, 8))
    assert pool == (2, 2) and reduced.weight.shape == (2, 1, 3, 3) and reduced.padding == (1, 1)
    w2 = w.copy()
    w2[0, 0, 0, 1] += 2
    assert (
        pooled_form(Synapse("s", "a", "b", "conv", w2, 0, stride=2, padding=2), (1, 8, 8)) is None
    )
    assert pooled_form(syn, (1, 7, 8)) is None  # input not a multiple of the stride
    odd_pad = Synapse("s", "a", "b", "conv", w, 0, stride=2, padding=1)
    assert pooled_form(odd_pad, (1, 8, 8)) is None


# ----------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("heavy", [False, True])
def test_layer_major_equals_step_major_on_random_networks(seed, heavy):
    net = random_network(seed, heavy)
    bias = np.random.default_rng(seed).integers(-200, 2000, (3, 3, 8, 8))
    layer, step = both_schedules(net, 14, bias=bias)
    assert_same_trace(layer, step)
    assert sum(int(c.sum()) for c in step.counts.values()) > 0


def test_layer_major_equals_step_major_with_input_spikes():
    net = random_network(7)
    rng = np.random.default_rng(7)
    spikes = (rng.random((12, 2, 3, 8, 8)) < 0.3).astype(np.uint8)
    spikes[:3] = 0  # the replayed input starts late: its window starts at step 3
    layer, step = both_schedules(net, 12, input_spikes=spikes)
    assert_same_trace(layer, step)


def _tiny_snn(se_mode: str) -> torch.nn.Module:
    from neurall_neuro.models.registry import get_model

    torch.manual_seed(0)
    model = get_model(
        "neurallnet", input_size=16, channels=[4, 8, 8, 8], timesteps=3, se_mode=se_mode
    )
    with torch.no_grad():  # make the untrained network fire in every layer
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d) and module.kernel_size == (3, 3):
                module.weight.mul_(4.0)
            if isinstance(module, torch.nn.BatchNorm2d):
                module.bias.fill_(0.5)
    return model.eval()


@pytest.mark.parametrize("se_mode", ["spiking", "none"])
def test_layer_major_equals_step_major_on_the_tiny_se_snn(se_mode):
    from conversion.nir_export import to_nir

    images = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    net = quantize_graph(to_nir(_tiny_snn(se_mode)), timesteps=3, calibration=images)
    steps = 3 + max(net.depths().values())
    layer, step = both_schedules(net, steps + 2, bias=net.encoder.encode(images.numpy()))
    assert_same_trace(layer, step)
    # through the target: every result the aligned windows give
    kw = {"timesteps": 3, "record": "all", "record_voltage": "all"}
    res = {
        s: get_target("loihi-emu").compile(net, schedule=s, **kw).run(images)
        for s in ("layer", "step")
    }
    a, b = res["layer"], res["step"]
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.output_spikes, b.output_spikes)
    for name in b.spike_counts:
        np.testing.assert_array_equal(a.spike_counts[name], b.spike_counts[name])
    for name in b.spikes:
        np.testing.assert_array_equal(a.spikes[name], b.spikes[name])
    for name in b.voltages:
        np.testing.assert_array_equal(a.voltages[name], b.voltages[name])
    assert a.extra["readout_saturated"] == b.extra["readout_saturated"]


def test_layer_major_equals_step_major_on_the_se_graph(se_graph):
    images = np.random.default_rng(2).uniform(0, 1, (4, 3, 8, 8))
    net = quantize_graph(se_graph(), timesteps=6, calibration=images)
    layer, step = both_schedules(net, 14, bias=net.encoder.encode(images))
    assert_same_trace(layer, step)


def test_until_skips_only_steps_nobody_needs(se_graph):
    """With each group's aligned window as ``until`` the layer schedule computes fewer
    steps; every step inside the windows (and before them) is still identical."""
    images = np.random.default_rng(3).uniform(0, 1, (3, 3, 8, 8))
    net = quantize_graph(se_graph(), timesteps=6, calibration=images)
    depth = net.depths()
    until = {name: d + 6 for name, d in depth.items()}
    bias = net.encoder.encode(images)
    steps = 6 + max(depth.values())
    full = LoihiEmulator(net, schedule="step").simulate(
        steps, bias=bias, record="all", record_voltage="all"
    )
    cut = LoihiEmulator(net, schedule="layer").simulate(
        steps, bias=bias, record="all", record_voltage="all", until=until
    )
    for name, stop in until.items():
        for what in ("spikes", "voltages"):
            np.testing.assert_array_equal(
                getattr(cut, what)[name][:stop], getattr(full, what)[name][:stop]
            )
        if name in full.counts:
            np.testing.assert_array_equal(cut.counts[name][:stop], full.counts[name][:stop])
    skipped = [n for n, stop in until.items() if stop < steps and full.counts.get(n, [0]).any()]
    assert any(not cut.spikes[n][until[n] :].any() for n in skipped)


def test_layer_major_equals_step_major_on_lava_dl_ground_truth_nets(gt_dir):
    for path, steps in ((gt_dir / "tiny.net", 20), (gt_dir / "gts/pilotnet_lif/network.net", 16)):
        net = read_netx(path)
        shape = net.group(net.input).shape
        bias = np.random.default_rng(0).integers(-50, 200, (2, *shape))
        if path.name == "tiny.net":
            bias = np.load(gt_dir / "gts/tinynet/input_bias.npy").transpose(2, 1, 0)[None]
        layer, step = both_schedules(net, steps, bias=bias.astype(int))
        assert_same_trace(layer, step)
    weight = np.load(gt_dir / "gts/dense/weight.npy")
    mant, exp = _as_ir_weights(_lava_dense_effective(weight, 8), 0, "gts/dense")
    net = LoihiNetwork(
        [NeuronGroup("in", (200,)), NeuronGroup("out", (256,), du=4095, dv=415, vth=6, bias_exp=6)],
        [Synapse("syn", "in", "out", "dense", mant, exp)],
        "in",
        "out",
    )
    spikes_in = np.load(gt_dir / "gts/dense/in.npy").T[:, None, :]
    layer, step = both_schedules(net, 400, input_spikes=spikes_in)
    assert_same_trace(layer, step)


def test_recurrent_networks_run_step_by_step():
    net = LoihiNetwork(
        [
            NeuronGroup("in", (4,), vth=10, bias_mant=900, bias_exp=3),
            NeuronGroup("r", (4,), vth=20),
        ],
        [
            Synapse("in->r", "in", "r", "dense", np.full((4, 4), 40)),
            Synapse("r->r", "r", "r", "dense", np.full((4, 4), -20)),
        ],
        "in",
        "r",
    )
    assert LoihiEmulator(net).schedule == "step"
    with pytest.raises(ConfigError, match="acyclic"):
        LoihiEmulator(net, schedule="layer")
    with pytest.raises(ConfigError, match="schedule must be one of"):
        LoihiEmulator(net, schedule="fast")  # type: ignore[arg-type]
    trace = LoihiEmulator(net).simulate(10, record="all")
    assert trace.counts["r"].sum() > 0


def test_automatic_chunks_do_not_change_results(se_graph):
    images = np.random.default_rng(4).uniform(0, 1, (5, 3, 8, 8))
    net = quantize_graph(se_graph(), timesteps=6, calibration=images)
    whole = get_target("loihi-emu").compile(net, timesteps=6, record="all", batch_size=5)
    deployed = get_target("loihi-emu").compile(net, timesteps=6, record="all")
    deployed.emulator.auto_batch_size = lambda steps: 2  # type: ignore[method-assign]
    a, b = whole.run(images), deployed.run(images)
    for name in a.spikes:
        np.testing.assert_array_equal(a.spikes[name], b.spikes[name])
    np.testing.assert_array_equal(a.scores, b.scores)
