"""loihi-emu: bit-exactness against Lava's arithmetic and lava-dl's recorded ground truth,
CPU/CUDA agreement, batching, and agreement with the float NIR model."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hw_targets.loihi.emulator import LoihiEmulator
from hw_targets.loihi.fixed_point import lif_step
from hw_targets.loihi.network import LoihiNetwork, NeuronGroup, Synapse
from hw_targets.loihi.netx import _as_ir_weights, _lava_dense_effective, read_netx
from hw_targets.loihi.quantize import quantize_graph
from hw_targets.registry import get_target

HAVE_LAVA = importlib.util.find_spec("lava") is not None
EXAMPLES = int(os.environ.get("NEURALL_HYPOTHESIS_EXAMPLES", "60"))


def with_bias_schedule(net: LoihiNetwork) -> LoihiNetwork:
    """Biases start at each layer's depth: what lava-dl's ground truth (slayer, no
    synaptic delay; Lava tests reset each layer until its input arrives) corresponds to."""
    depth = net.depths()
    for g in net.groups:
        g.bias_start_step = depth[g.name]
    return net


@pytest.mark.lava
@pytest.mark.skipif(not HAVE_LAVA, reason="lava-nc is not installed")
@settings(max_examples=EXAMPLES, deadline=None)
@given(
    u=st.lists(st.integers(-(2**23), 2**23), min_size=6, max_size=6),
    v=st.lists(st.integers(-(2**23) + 1, 2**23 - 1), min_size=6, max_size=6),
    a=st.lists(
        st.one_of(st.integers(-3000, 3000), st.integers(-(2**26), 2**26)), min_size=6, max_size=6
    ),
    bias=st.lists(st.integers(-4096, 4095), min_size=6, max_size=6),
    bias_exp=st.integers(0, 7),
    du=st.integers(-1, 4095),
    dv=st.integers(0, 4096),
    vth=st.integers(0, 131072),
)
def test_lif_step_equals_lavas_bit_accurate_model(u, v, a, bias, bias_exp, du, dv, vth):
    """One step of ``lif_step`` vs ``PyLifModelBitAcc``'s own code, wraps and clips included."""
    from lava.magma.core.process.process import ProcessParameters
    from lava.proc.lif.models import PyLifModelBitAcc

    model = PyLifModelBitAcc(ProcessParameters({}))
    model.u = np.array(u, dtype=np.int32)
    model.v = np.array(v, dtype=np.int32)
    model.du, model.dv, model.vth = du, dv, vth
    model.bias_mant = np.array(bias, dtype=np.int16)
    model.bias_exp = np.full(6, bias_exp, dtype=np.int16)
    model.scale_bias()
    model.scale_threshold()
    model.subthr_dynamics(np.array(a, dtype=np.int32))
    spikes = model.spiking_activation()
    model.reset_voltage(spikes)
    to = lambda x: torch.tensor(x, dtype=torch.int64)  # noqa: E731
    s, u2, v2 = lif_step(to(u), to(v), to(a), to(bias) << bias_exp, du, dv, vth)
    assert s.tolist() == spikes.tolist()
    assert u2.tolist() == model.u.tolist()
    assert v2.tolist() == model.v.tolist()


def test_emulator_reproduces_tinynet_ground_truth(gt_dir):
    """tiny.net + gts/tinynet, compared as lava-dl's test_tinynet does (output[2:17] vs gt[1:])."""
    net = with_bias_schedule(read_netx(gt_dir / "tiny.net"))
    bias = np.load(gt_dir / "gts/tinynet/input_bias.npy").transpose(2, 1, 0)[None].astype(int)
    trace = LoihiEmulator(net).simulate(20, bias=bias, record="all")
    gt_in = np.load(gt_dir / "gts/tinynet/input.npy")[0].transpose(3, 0, 1, 2)  # [T, C, H, W]
    gt_l1 = np.load(gt_dir / "gts/tinynet/layer1.npy")[0].transpose(3, 0, 1, 2)
    gt_out = np.load(gt_dir / "gts/tinynet/output.npy")[0].transpose(3, 0, 1, 2)
    np.testing.assert_array_equal(trace.spikes["layer0"][:15, 0], gt_in[1:])
    np.testing.assert_array_equal(trace.spikes["layer1"][:16, 0], gt_l1)
    np.testing.assert_array_equal(trace.spikes["layer2"][2:17, 0], gt_out[1:])
    assert gt_out.sum() > 50


def test_emulator_reproduces_dense_ground_truth(gt_dir):
    """gts/dense: 200 input spike trains -> Dense -> LIF(du=4095, dv=415, vth=6), 2000 steps."""
    weight = np.load(gt_dir / "gts/dense/weight.npy")
    mant, exp = _as_ir_weights(_lava_dense_effective(weight, 8), 0, "gts/dense")
    net = LoihiNetwork(
        [NeuronGroup("in", (200,)), NeuronGroup("out", (256,), du=4095, dv=415, vth=6, bias_exp=6)],
        [Synapse("syn", "in", "out", "dense", mant, exp)],
        "in",
        "out",
    )
    spikes_in = np.load(gt_dir / "gts/dense/in.npy").T[:, None, :]
    trace = LoihiEmulator(net).simulate(2000, input_spikes=spikes_in, record="out")
    gt = np.load(gt_dir / "gts/dense/out.npy").T
    np.testing.assert_array_equal(trace.spikes["out"][:, 0], gt)
    assert gt.sum() > 1000


def test_emulator_reproduces_pilotnet_lif_ground_truth(gt_dir):
    """gts/pilotnet_lif (10 layers, 200x66x3 input): every spiking layer's spikes over its
    window [depth, 16) (the ground truth resets every 16 steps) and its voltages where it
    did not spike (the recording holds v before the reset). The integrator fc-3's
    recording does not follow fc-2's recorded spikes under any one-step synapse and is
    not compared."""
    root = gt_dir / "gts/pilotnet_lif"
    net = with_bias_schedule(read_netx(root / "network.net"))
    image = np.load(root / "image.npy").transpose(2, 1, 0)[None]
    trace = LoihiEmulator(net).simulate(16, bias=image, record="all", record_voltage="all")
    depth = net.depths()
    names = ["input"] + [f"conv-{i}" for i in range(5)] + [f"fc-{i}" for i in range(3)]
    for group, gt_name in zip(net.groups[:9], names, strict=True):
        gt = np.load(root / f"{gt_name}.npy")
        gt = np.moveaxis(gt.transpose(2, 1, 0, 3) if gt.ndim == 4 else gt, -1, 0)
        d = depth[group.name]
        ours = trace.spikes[group.name][d:16, 0]
        np.testing.assert_array_equal(ours, gt[d:16], err_msg=f"spikes of {group.name} ({gt_name})")
        if gt_name != "input":
            v_gt = np.load(root / f"{gt_name}-v.npy")
            v_gt = np.moveaxis(v_gt.transpose(2, 1, 0, 3) if v_gt.ndim == 4 else v_gt, -1, 0)[d:16]
            quiet = ours == 0
            np.testing.assert_array_equal(trace.voltages[group.name][d:16, 0][quiet], v_gt[quiet])


def test_batch_runs_each_sample_independently(se_graph):
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 1, (4, 3, 8, 8))
    target = get_target("loihi-emu")
    dep = target.compile(
        se_graph(), timesteps=6, quantization={"calibration": images}, record="all"
    )
    whole = dep.run(images)
    chunked = target.compile(
        se_graph(), timesteps=6, quantization={"calibration": images}, batch_size=3
    ).run(images)
    single = dep.run(images[2:3])
    for name, counts in whole.spike_counts.items():
        assert counts[2] == single.spike_counts[name][0]
        np.testing.assert_array_equal(counts, chunked.spike_counts[name])
    np.testing.assert_allclose(whole.scores[2], single.scores[0])


def test_run_result_alignment_and_shapes(se_graph):
    images = np.random.default_rng(0).uniform(0, 1, (2, 3, 8, 8))
    net = quantize_graph(se_graph(), timesteps=6, calibration=images)
    dep = get_target("loihi-emu").compile(
        net, timesteps=6, record=["lif1"], record_voltage=["se_and"]
    )
    res = dep.run(images)
    depth = net.depths()
    assert res.hardware_steps == 6 + max(depth.values()) == 12
    assert res.output_spikes.shape == (6, 2, 6, 4, 4)  # lif2 feeds the readout
    assert res.scores.shape == (2, 4) and res.predictions().shape == (2,)
    assert set(res.spike_counts) == {"lif0", "lif1", "se_lif1", "se_gate", "se_and", "lif2"}
    assert res.spikes["lif1"].shape == (6, 2, 6, 8, 8) and res.voltages["se_and"].shape == (
        6,
        2,
        6,
        8,
        8,
    )
    raw = LoihiEmulator(net).simulate(12, bias=net.encoder.encode(images), record=["lif1"])
    np.testing.assert_array_equal(
        res.spikes["lif1"], raw.spikes["lif1"][1:7]
    )  # window [depth, depth + T)
    assert res.extra["readout_saturated"] is False


def test_emulator_agrees_with_the_float_nir_model(se_graph):
    """Quantised run vs the float NIR runtime (shifted by depth): the same spike at >= 95 %
    of (neuron, step) pairs in every layer (8-bit weights; deviations grow with depth),
    counts within 5 %, scores within 10 % of their range."""
    from conversion.nir_runtime import NIRModule

    images = np.random.default_rng(1).uniform(0, 1, (3, 3, 8, 8))
    graph = se_graph()
    res = (
        get_target("loihi-emu")
        .compile(graph, timesteps=6, quantization={"calibration": images}, record="all")
        .run(images)
    )
    ref = NIRModule(graph).run(
        torch.tensor(images, dtype=torch.float32), timesteps=6, record=True, count_spikes=True
    )
    for name, counts in res.spike_counts.items():
        ref_counts = ref.spike_counts[name].numpy()
        assert np.all(np.abs(counts - ref_counts) <= 0.05 * ref_counts + 2), (
            name,
            counts,
            ref_counts,
        )
        agree = np.mean(
            res.spikes[name] == ref.recorded[name].numpy().reshape(res.spikes[name].shape)
        )
        assert agree > 0.95, (name, agree)
    scores_ref = ref.outputs["output"].mean(0).numpy()
    np.testing.assert_allclose(res.scores, scores_ref, atol=0.1 * np.abs(scores_ref).max())


def big_conv_network(seed: int = 0) -> LoihiNetwork:
    """A network with layers too large to unroll (the emulator's conv2d path)."""
    rng = np.random.default_rng(seed)
    groups = [
        NeuronGroup("in", (4, 40, 40), dv=1024, vth=30, bias_exp=6),
        NeuronGroup(
            "c1", (8, 38, 38), dv=512, vth=60, bias_mant=rng.integers(-20, 40, 8), bias_exp=6
        ),
        NeuronGroup("c2", (8, 19, 19), dv=0, vth=90, bias_start_step=2),
        NeuronGroup("fc", (10,), dv=100, vth=50),
    ]
    syns = [
        Synapse("s1", "in", "c1", "conv", 2 * rng.integers(-40, 60, (8, 4, 3, 3)), -1),
        Synapse(
            "s2",
            "c1",
            "c2",
            "conv",
            2 * rng.integers(-40, 60, (8, 8, 3, 3)),
            0,
            stride=2,
            padding=1,
            delay=2,
        ),
        Synapse("s3", "c2", "fc", "dense", 2 * rng.integers(-10, 20, (10, 8 * 19 * 19)), -2),
    ]
    return LoihiNetwork(groups, syns, "in", "fc")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_cuda_equals_cpu(se_graph, same_traces):
    images = np.random.default_rng(2).uniform(0, 1, (5, 3, 8, 8))
    kw = {
        "timesteps": 6,
        "quantization": {"calibration": images},
        "record": "all",
        "record_voltage": "all",
    }
    cpu = get_target("loihi-emu").compile(se_graph(), device="cpu", **kw).run(images)
    gpu = get_target("loihi-emu").compile(se_graph(), device="cuda", **kw).run(images)
    same_traces(cpu.spikes, gpu.spikes)
    same_traces(cpu.voltages, gpu.voltages, "voltages")
    np.testing.assert_array_equal(cpu.scores, gpu.scores)
    net = big_conv_network()
    bias = np.random.default_rng(3).integers(0, 60, (3, 4, 40, 40))
    a = LoihiEmulator(net, "cpu").simulate(10, bias=bias, record="all", record_voltage="all")
    b = LoihiEmulator(net, "cuda").simulate(10, bias=bias, record="all", record_voltage="all")
    same_traces(a.spikes, b.spikes)
    same_traces(a.voltages, b.voltages, "voltages")
    assert all(c.sum() > 0 for c in a.counts.values())
