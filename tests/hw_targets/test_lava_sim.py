"""lava-sim against loihi-emu: bit-exact (every neuron, every step) in fixed point on
lava-dl's ground truth, our SE-SNN and random chains; float semantics; process cleanup."""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw_targets.loihi.network import LoihiNetwork, NeuronGroup, Synapse, conv_output_shape
from hw_targets.loihi.netx import _as_ir_weights, _lava_dense_effective
from hw_targets.registry import get_target

pytestmark = [
    pytest.mark.lava,
    pytest.mark.skipif(
        importlib.util.find_spec("lava") is None,
        reason="lava-nc is not installed (Python 3.10 env)",
    ),
]
EXAMPLES = int(os.environ.get("NEURALL_HYPOTHESIS_EXAMPLES", "4"))


def both(graph, inputs, same_traces, **options):
    """Run on loihi-emu and lava-sim (fixed point) and require identical spikes and voltages."""
    emu = get_target("loihi-emu").compile(graph, record="all", **options).run(inputs)
    lava = get_target("lava-sim").compile(graph, record="all", **options).run(inputs)
    same_traces(emu.spikes, lava.spikes)
    same_traces(emu.voltages, lava.voltages, "voltages")
    for name, counts in emu.spike_counts.items():
        np.testing.assert_array_equal(
            counts, lava.spike_counts[name], err_msg=f"spike counts of {name}"
        )
    if emu.scores is not None:
        np.testing.assert_array_equal(emu.scores, lava.scores)
    return emu, lava


def test_tinynet_netx_backend_bit_exact_and_ground_truth(gt_dir, same_traces):
    """Lava loads tiny.net itself (netx.hdf5.Network); biases start at each layer's depth."""
    path = gt_dir / "tiny.net"
    bias = np.load(gt_dir / "gts/tinynet/input_bias.npy").transpose(2, 1, 0)[None].astype(int)
    kw = {
        "timesteps": 17,
        "align": False,
        "record": "all",
        "record_voltage": "all",
        "bias_schedule": "depth",
    }
    emu = get_target("loihi-emu").compile(path, **kw).run(bias)
    res = get_target("lava-sim").compile(path, backend="netx", **kw).run(bias)
    same_traces(emu.spikes, res.spikes)
    same_traces(emu.voltages, res.voltages, "voltages")
    gt = np.load(gt_dir / "gts/tinynet/output.npy")[0].transpose(3, 0, 1, 2)
    np.testing.assert_array_equal(res.spikes["layer2"][2:17, 0], gt[1:])


def test_dense_ground_truth_with_spike_input(gt_dir, same_traces):
    """gts/dense on the process backend (RingBuffer spike source -> Dense -> LIF)."""
    weight = np.load(gt_dir / "gts/dense/weight.npy")
    mant, exp = _as_ir_weights(_lava_dense_effective(weight, 8), 0, "gts/dense")
    net = LoihiNetwork(
        [NeuronGroup("in", (200,)), NeuronGroup("out", (256,), du=4095, dv=415, vth=6, bias_exp=6)],
        [Synapse("syn", "in", "out", "dense", mant, exp)],
        "in",
        "out",
    )
    spikes = np.load(gt_dir / "gts/dense/in.npy").T[:, None, :]
    emu, lava = both(net, spikes, same_traces, timesteps=2000, align=False, input_mode="spikes")
    np.testing.assert_array_equal(lava.spikes["out"][:, 0], np.load(gt_dir / "gts/dense/out.npy").T)


def test_pilotnet_lif_netx_backend_bit_exact(gt_dir, same_traces):
    """PilotNet (10 layers, 158k neurons), 16 steps: about 8 s in Lava here."""
    path = gt_dir / "gts/pilotnet_lif/network.net"
    image = np.load(gt_dir / "gts/pilotnet_lif/image.npy").transpose(2, 1, 0)[None]
    emu = get_target("loihi-emu").compile(path, timesteps=16, align=False, record="all").run(image)
    lava = (
        get_target("lava-sim")
        .compile(path, timesteps=16, align=False, record="all", backend="netx")
        .run(image)
    )
    same_traces(emu.spikes, lava.spikes)


def test_se_snn_bit_exact(se_graph, same_traces):
    """Our conventions: SE branch with an AND neuron, equalised delays (relay neurons),
    folded pools, a readout integrator; two samples (each rebuilt)."""
    images = np.random.default_rng(7).uniform(0, 1, (2, 3, 8, 8))
    emu, _ = both(
        se_graph(),
        images,
        same_traces,
        timesteps=6,
        quantization={"calibration": images},
        record_voltage="all",
    )
    assert all(c.min() > 0 for c in emu.spike_counts.values()), emu.spike_counts
    assert emu.scores[0].tolist() != emu.scores[1].tolist()


def test_se_snn_float_matches_the_float_nir_model(se_graph):
    """Lava floating_pt with the unquantised parameters vs the float NIR runtime."""
    from conversion.nir_runtime import NIRModule

    images = np.random.default_rng(8).uniform(0, 1, (2, 3, 8, 8))
    graph = se_graph()
    res = (
        get_target("lava-sim")
        .compile(
            graph,
            timesteps=6,
            quantization={"calibration": images},
            precision="float",
            record="all",
        )
        .run(images)
    )
    ref = NIRModule(graph).run(
        torch.tensor(images, dtype=torch.float32), timesteps=6, record=True, count_spikes=True
    )
    for name, spikes in res.spikes.items():
        if name == "fc":
            continue
        theirs = ref.recorded[name].numpy().reshape(spikes.shape)
        assert np.mean(spikes == theirs) > 0.995, name
    np.testing.assert_allclose(
        res.scores, ref.outputs["output"].mean(0).numpy(), rtol=1e-2, atol=1e-3
    )


def test_more_than_127_channel_groups_bit_exact(se_graph, same_traces):
    """Lava's Conv keeps ``groups`` in int8 (160 -> -96); the SE broadcast conv with 130
    groups must still run, bit-exact with the emulator."""
    images = np.random.default_rng(3).uniform(0, 1, (1, 3, 4, 4))
    emu, _ = both(
        se_graph(h=4, c2=130, T=4),
        images,
        same_traces,
        timesteps=4,
        quantization={"calibration": images},
    )
    assert emu.spike_counts["se_and"].sum() > 0, emu.spike_counts


def test_ungrouped_conv_weight_matches_torch_grouped_conv():
    from hw_targets.loihi.lava import ungroup_conv_weight

    rng = np.random.default_rng(0)
    for groups, c_in, c_out in [(2, 4, 6), (3, 3, 3), (5, 10, 5)]:
        w = rng.normal(size=(c_out, c_in // groups, 3, 3))
        x = torch.tensor(rng.normal(size=(1, c_in, 5, 5)))
        grouped = torch.nn.functional.conv2d(x, torch.tensor(w), groups=groups, padding=1)
        dense = torch.nn.functional.conv2d(
            x, torch.tensor(ungroup_conv_weight(w, groups)), padding=1
        )
        torch.testing.assert_close(dense, grouped)


@st.composite
def random_chain(draw) -> tuple[LoihiNetwork, np.ndarray]:
    """Input (C, H, W) -> 1..3 conv/dense layers with random decays, thresholds, biases,
    weight exponents (incl. conv exponents Lava cannot fold), delays and bias starts."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    c, h = draw(st.integers(1, 3)), draw(st.integers(3, 6))
    shape: tuple[int, ...] = (c, h, h)

    def neuron(name, shape):
        return NeuronGroup(
            name,
            shape,
            du=draw(st.sampled_from([4095, 4095, 3000, 0])),
            dv=draw(st.sampled_from([0, 1024, 4095, 100])),
            vth=draw(st.integers(1, 400)),
            bias_mant=rng.integers(-60, 200, shape),
            bias_exp=draw(st.integers(0, 7)),
            bias_start_step=draw(st.integers(0, 3)),
        )

    groups = [neuron("g0", shape)]
    groups[0].bias_start_step = 0
    syns = []
    for i in range(1, draw(st.integers(2, 4))):
        kind = "dense" if len(shape) == 1 or draw(st.booleans()) and i > 1 else "conv"
        exp = draw(st.integers(-3, 2))
        delay = draw(st.sampled_from([1, 1, 2, 3]))
        if kind == "conv":
            k, stride = draw(st.integers(1, 3)), draw(st.integers(1, 2))
            pad = draw(st.integers(0, 1))
            out_c = draw(st.integers(1, 4))
            new = conv_output_shape(shape, out_c, (k, k), (stride, stride), (pad, pad), (1, 1))
            if min(new) < 1:
                k, pad, stride = 1, 0, 1
                new = conv_output_shape(shape, out_c, (1, 1), (1, 1), (0, 0), (1, 1))
            w = 2 * rng.integers(-40, 80, (out_c, shape[0], k, k))
            syn = Synapse(f"s{i}", f"g{i - 1}", f"g{i}", "conv", w, exp, stride, pad, delay=delay)
        else:
            new = (draw(st.integers(1, 12)),)
            w = 2 * rng.integers(-40, 80, (new[0], int(np.prod(shape))))
            syn = Synapse(f"s{i}", f"g{i - 1}", f"g{i}", "dense", w, exp, delay=delay)
        groups.append(neuron(f"g{i}", new))
        syns.append(syn)
        shape = new
    net = LoihiNetwork(groups, syns, "g0", groups[-1].name)
    bias = rng.integers(-100, 400, (1, *groups[0].shape))
    return net, bias


@settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(case=random_chain())
def test_random_chains_bit_exact(case, same_traces):
    net, bias = case
    both(net, bias, same_traces, timesteps=8, align=False, input_mode="bias", record_voltage="all")


def _lava_children() -> list:
    return [p for p in multiprocessing.active_children() if p.is_alive()]


def test_no_lava_process_outlives_a_run(chain_graph):
    images = np.random.default_rng(0).uniform(0, 1, (1, 2, 6, 6))
    dep = get_target("lava-sim").compile(
        chain_graph(), timesteps=3, quantization={"calibration": images}
    )
    before = len(_lava_children())
    dep.run(images)
    assert len(_lava_children()) == before


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_lava_is_stopped_on_errors_and_interrupts(chain_graph, monkeypatch, error):
    """An exception (or Ctrl-C) while Lava runs still stops every Lava process."""
    images = np.random.default_rng(0).uniform(0, 1, (1, 2, 6, 6))
    dep = get_target("lava-sim").compile(
        chain_graph(), timesteps=3, quantization={"calibration": images}
    )
    from lava.magma.core.run_conditions import RunSteps

    calls = {"n": 0}

    class FailingSteps(RunSteps):
        def __init__(self, num_steps: int, blocking: bool = True):
            calls["n"] += 1
            if calls["n"] == 2:  # the runtime is up after the first chunk
                assert _lava_children(), "expected running Lava processes"
                raise error("boom")
            super().__init__(num_steps=num_steps, blocking=blocking)

    import lava.magma.core.run_conditions as rc

    monkeypatch.setattr(rc, "RunSteps", FailingSteps)
    before = len(_lava_children())
    with pytest.raises(error, match="boom"):
        dep.run(images)
    deadline = time.monotonic() + 10
    while len(_lava_children()) > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(_lava_children()) == before


def test_a_failure_inside_lava_is_reported_and_cleaned_up(chain_graph, monkeypatch):
    """An exception inside a Lava process model (a child process) becomes one TargetError
    naming it, instead of a hang in ``stop()``; no Lava process is left behind."""
    import lava.proc.conv.utils as conv_utils

    from neurall_neuro.errors import TargetError

    def broken_conv(*args, **kwargs):
        raise ValueError("conv exploded")

    images = np.random.default_rng(0).uniform(0, 1, (1, 2, 6, 6))
    dep = get_target("lava-sim").compile(
        chain_graph(), timesteps=3, quantization={"calibration": images}
    )
    monkeypatch.setattr(conv_utils, "conv", broken_conv)  # inherited by the forked children
    before = len(_lava_children())
    with pytest.raises(TargetError, match="conv exploded"):
        dep.run(images)
    assert len(_lava_children()) == before


def _wait_for_no_children(before: int) -> None:
    deadline = time.monotonic() + 10
    while len(_lava_children()) > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(_lava_children()) == before


def test_sigint_is_ignored_by_lava_processes_and_stops_the_run(chain_graph, monkeypatch, capfd):
    """Ctrl-C reaches every process of the group: Lava's children ignore it (no
    tracebacks), the parent stops them and raises LavaInterrupted (a KeyboardInterrupt)."""
    import signal

    import lava.magma.core.run_conditions as rc
    from lava.magma.core.run_conditions import RunSteps

    from hw_targets.loihi.lava_runtime import LavaInterrupted

    images = np.random.default_rng(0).uniform(0, 1, (2, 2, 6, 6))
    dep = get_target("lava-sim").compile(
        chain_graph(), timesteps=3, quantization={"calibration": images}
    )
    calls = {"n": 0, "alive": None}

    class InterruptedSteps(RunSteps):
        def __init__(self, num_steps: int, blocking: bool = True):
            calls["n"] += 1
            if calls["n"] == 4:  # sample 2, after its first chunk: Lava's processes run
                children = _lava_children()
                for child in children:
                    os.kill(child.pid, signal.SIGINT)
                time.sleep(0.5)
                calls["alive"] = [child.is_alive() for child in children]
                os.kill(os.getpid(), signal.SIGINT)  # KeyboardInterrupt in this thread
            super().__init__(num_steps=num_steps, blocking=blocking)

    monkeypatch.setattr(rc, "RunSteps", InterruptedSteps)
    before = len(_lava_children())
    capfd.readouterr()
    with pytest.raises(LavaInterrupted, match="^lava-sim stopped after 1 of 2 samples$"):
        dep.run(images)
    assert calls["alive"] and all(calls["alive"]), calls  # the children ignored SIGINT
    _wait_for_no_children(before)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


def test_sigint_while_lava_starts_its_processes_is_deferred(chain_graph, monkeypatch, capfd):
    """SIGINT while Lava forks and starts its processes is held until the runtime is
    complete (an interrupt inside Lava's start-up would leave it waiting for children
    that never report), then stops the run cleanly."""
    import signal

    from lava.magma.runtime.runtime import Runtime

    from hw_targets.loihi.lava_runtime import LavaInterrupted

    images = np.random.default_rng(0).uniform(0, 1, (1, 2, 6, 6))
    dep = get_target("lava-sim").compile(
        chain_graph(), timesteps=3, quantization={"calibration": images}
    )
    build, start_ports = Runtime._build_processes, Runtime._start_ports
    started = []

    def build_then_interrupt(self):
        build(self)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # the handler runs here: only remembered

    def record_start(self):
        started.append(True)
        start_ports(self)

    monkeypatch.setattr(Runtime, "_build_processes", build_then_interrupt)
    monkeypatch.setattr(Runtime, "_start_ports", record_start)
    before = len(_lava_children())
    capfd.readouterr()
    with pytest.raises(LavaInterrupted, match="stopped after 0 of 1 samples"):
        dep.run(images)
    assert started == [True]  # Lava finished starting before the interrupt was raised
    _wait_for_no_children(before)
    assert "Traceback" not in capfd.readouterr().err


def _hanging_conv(monkeypatch, marker_dir, hangs: int):
    """Make Lava's conv (inside a forked process model) block forever on its first call in
    each of the first ``hangs`` Lava runs (a marker file per run, seen by later forks)."""
    import lava.proc.conv.utils as conv_utils

    real_conv = conv_utils.conv

    def conv(*args, **kwargs):
        runs = len(list(marker_dir.glob("hung-*")))
        if runs < hangs:
            (marker_dir / f"hung-{runs}").touch()
            time.sleep(3600)
        return real_conv(*args, **kwargs)

    monkeypatch.setattr(conv_utils, "conv", conv)  # inherited by the forked children


def test_a_hung_lava_run_is_stopped_and_reported(chain_graph, monkeypatch, tmp_path):
    """A Lava process that stops answering blocks ``run`` only until the call's time
    limit: then Lava is torn down and LavaHung names the phase; nothing is left behind."""
    from hw_targets.loihi.lava_runtime import LavaHung

    images = np.random.default_rng(0).uniform(0, 1, (1, 2, 6, 6))
    dep = get_target("lava-sim").compile(
        chain_graph(), timesteps=3, quantization={"calibration": images}, timeout_s=2, retries=0
    )
    _hanging_conv(monkeypatch, tmp_path, hangs=5)
    before = len(_lava_children())
    t0 = time.monotonic()
    with pytest.raises(LavaHung, match=r"did not return from run \(steps 1-1 of \d+\) within 2 s"):
        dep.run(images)
    assert time.monotonic() - t0 < 60
    assert len(list(tmp_path.glob("hung-*"))) == 1
    _wait_for_no_children(before)


def test_a_hung_sample_is_run_again_with_a_warning(chain_graph, monkeypatch, tmp_path):
    """With retries, a sample whose run hung is rebuilt and run again: the result equals
    loihi-emu's (bit-exact), and a RuntimeWarning says what happened."""
    images = np.random.default_rng(0).uniform(0, 1, (2, 2, 6, 6))
    options = {"timesteps": 3, "quantization": {"calibration": images}, "record": "all"}
    emu = get_target("loihi-emu").compile(chain_graph(), **options).run(images)
    dep = get_target("lava-sim").compile(chain_graph(), timeout_s=2, retries=1, **options)
    _hanging_conv(monkeypatch, tmp_path, hangs=1)
    with pytest.warns(RuntimeWarning, match=r"sample 1: Lava did not return .*\(attempt 2 of 2\)"):
        res = dep.run(images)
    assert len(list(tmp_path.glob("hung-*"))) == 1
    for name, spikes in emu.spikes.items():
        np.testing.assert_array_equal(res.spikes[name], spikes, err_msg=name)
    phases = res.extra["lava_phases_s"]
    assert set(phases) == {"build", "compile", "start", "run", "stop"}
    assert phases["run"] > 0 and phases["start"] > 0


@pytest.mark.parametrize(
    "option", [{"timeout_s": -1}, {"timeout_s": "soon"}, {"retries": -1}, {"retries": 1.5}]
)
def test_bad_time_limits_are_rejected(chain_graph, option):
    from neurall_neuro.errors import ConfigError

    with pytest.raises(ConfigError, match=next(iter(option))):
        get_target("lava-sim").compile(chain_graph(), timesteps=3, **option)


def test_progress_within_a_sample(chain_graph, monkeypatch, capfd):
    """A long sample reports its steps (here: a line after every run chunk) on stderr."""
    import functools

    import hw_targets.loihi.lava_runtime as lava_runtime
    from neurall_neuro.progress import StepReporter

    monkeypatch.delenv("NEURALL_NO_PROGRESS", raising=False)
    monkeypatch.setattr(lava_runtime, "StepReporter", functools.partial(StepReporter, every_s=0))
    images = np.random.default_rng(0).uniform(0, 1, (1, 2, 6, 6))
    dep = get_target("lava-sim").compile(
        chain_graph(), timesteps=3, quantization={"calibration": images}
    )
    capfd.readouterr()
    res = dep.run(images)
    err = capfd.readouterr().err
    steps = res.hardware_steps
    assert f"lava-sim (fixed) sample 1/1: {steps}/{steps} steps" in err, err
    assert "lava-sim (fixed) sample 1/1: 1/" in err, err


def test_a_dead_lava_process_is_reported_at_once(chain_graph, monkeypatch):
    """A Lava process killed mid-run (here SIGKILL inside the conv model) leaves Lava's
    parent waiting forever; the watchdog names it within seconds and cleans up."""
    import signal

    import lava.proc.conv.utils as conv_utils

    from hw_targets.loihi.lava_runtime import LavaProcessDied

    def killed_conv(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    images = np.random.default_rng(0).uniform(0, 1, (1, 2, 6, 6))
    dep = get_target("lava-sim").compile(
        chain_graph(), timesteps=3, quantization={"calibration": images}
    )
    monkeypatch.setattr(conv_utils, "conv", killed_conv)  # inherited by the forked children
    before = len(_lava_children())
    t0 = time.monotonic()
    with pytest.raises(LavaProcessDied, match=r"died during run .*killed by SIGKILL") as info:
        dep.run(images)
    assert time.monotonic() - t0 < 60
    assert all(code == -signal.SIGKILL for code in info.value.exitcodes.values())
    _wait_for_no_children(before)
