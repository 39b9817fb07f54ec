"""NIR graphs from other frameworks on the Loihi path (loihi-emu, lava-sim, netx).

Event input into the Input node, CubaLIF (du from tau_syn, biases into the current through
a bias source), recurrent edges, LI/CubaLI/I voltage readouts, IF and SumPool2d; graphs
built with ``nir`` directly, exported from Norse through ``conversion.nir_export.to_nir``
and by snnTorch 1.0.0's ``export_to_nir``. For each graph: float (the ``torch`` target /
NIR runtime) vs fixed point (``loihi-emu``) agreement, and (marked ``lava``) loihi-emu ==
lava-sim spike for spike and voltage for voltage on every layer.

Float vs fixed (32 samples of random events, seeds fixed). Measured, per model: spike
totals per layer fixed/float and the correlation r of the per-sample counts, prediction
agreement, largest score error relative to the largest float score:

==================  =====================================================  =====  =======
model               layers: total fixed/float (r)                          agree  rel.err
==================  =====================================================  =====  =======
nir-cuba-conv-li    lif 27964/27967 (0.997)                                100 %  0.030
nir-if-sumpool      if1 15676/15621 (0.997), if2 6266/6229 (0.967)         100 %  0.107
nir-recurrent       lif 1988/2000 (0.993)                                  100 %  0.122
norse-cuba-conv-li  1 4276/4266 (0.997)                                    100 %  0.038
norse-iaf-box       1 4142/4129 (0.995), 5 82/81 (0.950)                   100 %  0.124
norse-recurrent     0 504/508 (0.993)                                      100 %  0.109
snntorch-conv       1 8312/8285 (0.997), 5 130/129 (0.966), 7 26/27 (0.990)  output spikes 99.9 %
==================  =====================================================  =====  =======

Thresholds asserted (margin for other torch builds): totals within 5 % (+2 spikes),
r >= 0.9, predictions >= 90 %, score error <= 20 % of the largest float score, output
spikes >= 95 % equal. The score error is dominated by the few spikes that flip when a
membrane lands within a quantisation step of the threshold.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
from collections.abc import Callable
from typing import Any

import nir
import numpy as np
import pytest
import torch

from conversion.nir_runtime import load_nir
from hw_targets.loihi.mapping import analyse_graph, check_graph, decay_to_du, neuron_spec
from hw_targets.loihi.netx import read_netx, write_netx
from hw_targets.loihi.quantize import BIAS_SOURCE_SUFFIX, quantize_graph
from hw_targets.registry import get_target
from neurall_neuro.errors import ConversionError, UnsupportedNodeError

HAVE_LAVA = (
    importlib.util.find_spec("lava") is not None
    and importlib.util.find_spec("lava.magma") is not None
)
DT = 1e-3

# ----------------------------------------------------------------------------- graphs (nir)


def _meta(graph: nir.NIRGraph, steps: int) -> nir.NIRGraph:
    graph.metadata = {"dt": DT, "timesteps": steps, "input_encoding": "per_step"}
    return graph


def _sum_pool() -> nir.SumPool2d:
    return nir.SumPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0]))


def nir_cuba_conv_li(steps: int = 8) -> nir.NIRGraph:
    """Events (2, 8, 8) -> Conv2d -> CubaLIF -> SumPool2d -> Flatten -> Affine -> CubaLI."""
    rng = np.random.default_rng(0)
    s = (4, 8, 8)
    nodes = {
        "input": nir.Input(np.array([2, 8, 8])),
        "conv": nir.Conv2d(
            np.array([8, 8]), rng.normal(0, 1.0, (4, 2, 3, 3)), 1, 1, 1, 1, rng.normal(0.2, 0.1, 4)
        ),
        "lif": nir.CubaLIF(
            tau_syn=np.full(s, 2e-3),
            tau_mem=np.full(s, 4e-3),
            r=np.full(s, 4.0),
            v_leak=np.zeros(s),
            v_threshold=np.ones(s),
            w_in=np.full(s, 2.0),
        ),
        "pool": _sum_pool(),
        "flat": nir.Flatten({"input": np.array([4, 4, 4])}, 0, -1),
        "fc": nir.Affine(rng.normal(0, 0.5, (3, 64)), rng.normal(0, 0.1, 3)),
        "li": nir.CubaLI(
            tau_syn=np.full(3, 2e-3),
            tau_mem=np.full(3, 5e-3),
            r=np.full(3, 5.0),
            v_leak=np.zeros(3),
            w_in=np.full(3, 2.0),
        ),
        "output": nir.Output(np.array([3])),
    }
    chain = ["input", "conv", "lif", "pool", "flat", "fc", "li", "output"]
    return _meta(nir.NIRGraph(nodes, list(zip(chain, chain[1:], strict=False))), steps)


def nir_if_sumpool(steps: int = 8) -> nir.NIRGraph:
    """Events -> Conv2d -> IF -> SumPool2d -> Conv2d -> IF -> SumPool2d -> Flatten -> Affine."""
    rng = np.random.default_rng(1)
    s1, s2 = (4, 8, 8), (4, 4, 4)
    nodes = {
        "input": nir.Input(np.array([2, 8, 8])),
        "c1": nir.Conv2d(
            np.array([8, 8]), rng.normal(0.1, 0.5, (4, 2, 3, 3)), 1, 1, 1, 1, np.zeros(4)
        ),
        "if1": nir.IF(r=np.full(s1, 1 / DT), v_threshold=np.ones(s1)),
        "p1": _sum_pool(),
        "c2": nir.Conv2d(
            np.array([4, 4]), rng.normal(0.05, 0.3, (4, 4, 3, 3)), 1, 1, 1, 1, rng.normal(0, 0.1, 4)
        ),
        "if2": nir.IF(r=np.full(s2, 1 / DT), v_threshold=np.ones(s2)),
        "p2": _sum_pool(),
        "flat": nir.Flatten({"input": np.array([4, 2, 2])}, 0, -1),
        "fc": nir.Affine(rng.normal(0, 0.5, (3, 16)), rng.normal(0, 0.1, 3)),
        "output": nir.Output(np.array([3])),
    }
    chain = ["input", "c1", "if1", "p1", "c2", "if2", "p2", "flat", "fc", "output"]
    graph = _meta(nir.NIRGraph(nodes, list(zip(chain, chain[1:], strict=False))), steps)
    graph.metadata["readout"] = "mean_over_time"
    return graph


def nir_recurrent(steps: int = 10) -> nir.NIRGraph:
    """Events (10,) -> Affine -> CubaLIF <-> Linear (recurrent) ; CubaLIF -> Linear -> LI."""
    rng = np.random.default_rng(2)
    n = 12
    w_rec = rng.normal(0, 0.4, (n, n))
    np.fill_diagonal(w_rec, 0)
    nodes = {
        "input": nir.Input(np.array([10])),
        "w_in": nir.Affine(rng.normal(0.2, 0.6, (n, 10)), rng.normal(0.1, 0.1, n)),
        "lif": nir.CubaLIF(
            tau_syn=np.full(n, 3e-3),
            tau_mem=np.full(n, 5e-3),
            r=np.full(n, 5.0),
            v_leak=np.zeros(n),
            v_threshold=np.ones(n),
            w_in=np.full(n, 3.0),
        ),
        "w_rec": nir.Linear(w_rec),
        "fc": nir.Linear(rng.normal(0, 0.5, (3, n))),
        "li": nir.LI(tau=np.full(3, 4e-3), r=np.ones(3), v_leak=np.zeros(3)),
        "output": nir.Output(np.array([3])),
    }
    edges = [
        ("input", "w_in"),
        ("w_in", "lif"),
        ("lif", "w_rec"),
        ("w_rec", "lif"),
        ("lif", "fc"),
        ("fc", "li"),
        ("li", "output"),
    ]
    return _meta(nir.NIRGraph(nodes, edges), steps)


# ----------------------------------------------------------------------------- graphs (Norse, snnTorch)


def _norse_graph(build: Callable[[], Any], example: torch.Tensor) -> nir.NIRGraph:
    from conversion.nir_export import to_nir

    return to_nir(build(), example_input=example)


def norse_cuba_conv(steps: int = 8) -> nir.NIRGraph:
    """LIFCell -> CubaLIF, LICell -> CubaLI (a CUBA conv SNN with an LI readout)."""
    norse = pytest.importorskip("norse.torch")

    def build() -> Any:
        torch.manual_seed(0)
        net = norse.SequentialState(
            torch.nn.Conv2d(2, 4, 3, padding=1),
            norse.LIFCell(),
            torch.nn.AvgPool2d(2),
            torch.nn.Flatten(),
            torch.nn.Linear(64, 3),
            norse.LICell(),
        )
        with torch.no_grad():
            net[0].weight.mul_(8.0)
        return net

    return _norse_graph(build, torch.zeros(1, 2, 8, 8))


def norse_iaf_box(steps: int = 8) -> nir.NIRGraph:
    """IAFCell -> IF, LIFBoxCell -> LIF, LIBoxCell -> LI."""
    norse = pytest.importorskip("norse.torch")

    def build() -> Any:
        torch.manual_seed(1)
        net = norse.SequentialState(
            torch.nn.Conv2d(2, 4, 3, padding=1),
            norse.IAFCell(),
            torch.nn.AvgPool2d(2),
            torch.nn.Flatten(),
            torch.nn.Linear(64, 12),
            norse.LIFBoxCell(),
            torch.nn.Linear(12, 3),
            norse.LIBoxCell(),
        )
        with torch.no_grad():
            net[4].weight.mul_(30.0)
        return net

    return _norse_graph(build, torch.zeros(1, 2, 8, 8))


def norse_recurrent(steps: int = 10) -> nir.NIRGraph:
    """LIFRecurrentCell -> Linear -> CubaLIF <-> Linear (recurrent); LICell -> CubaLI."""
    norse = pytest.importorskip("norse.torch")

    def build() -> Any:
        torch.manual_seed(2)
        net = norse.SequentialState(
            norse.LIFRecurrentCell(10, 12), torch.nn.Linear(12, 3), norse.LICell()
        )
        with torch.no_grad():
            net[0].input_weights.mul_(3.0)
            net[0].recurrent_weights.mul_(2.0)
        return net

    return _norse_graph(build, torch.zeros(1, 10))


def snntorch_conv(steps: int = 10) -> nir.NIRGraph:
    """snnTorch 1.0.0 ``export_to_nir`` of Conv2d -> Leaky -> AvgPool -> Linear -> Leaky
    (``Leaky`` is written as LIF with ``r = tau / dt``; snnTorch's dt is 1e-4)."""
    snn = pytest.importorskip("snntorch")
    from snntorch.export_nir import export_to_nir

    def leaky(shape: tuple[int, ...], beta: float) -> Any:
        return snn.Leaky(
            beta=torch.full(shape, beta),
            threshold=torch.ones(shape),
            init_hidden=True,
            reset_mechanism="zero",
            reset_delay=False,
        )

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1),
        leaky((4, 8, 8), 0.8),
        torch.nn.AvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 5),
        leaky((5,), 0.7),
        torch.nn.Linear(5, 3),
        leaky((3,), 0.9),
    )
    with torch.no_grad():
        net[0].weight.mul_(2)
        net[4].weight.mul_(6)
        net[6].weight.mul_(6)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints
        graph = export_to_nir(net, torch.randn(1, 2, 8, 8), ignore_dims=[0])
    graph.metadata = {"dt": 1e-4}  # snnTorch's convention: its graphs store no dt
    return graph


#: name -> (graph builder, timesteps, input shape)
GRAPHS: dict[str, tuple[Callable[..., nir.NIRGraph], int, tuple[int, ...]]] = {
    "nir-cuba-conv-li": (nir_cuba_conv_li, 8, (2, 8, 8)),
    "nir-if-sumpool": (nir_if_sumpool, 8, (2, 8, 8)),
    "nir-recurrent": (nir_recurrent, 10, (10,)),
    "norse-cuba-conv-li": (norse_cuba_conv, 8, (2, 8, 8)),
    "norse-iaf-box": (norse_iaf_box, 8, (2, 8, 8)),
    "norse-recurrent": (norse_recurrent, 10, (10,)),
    "snntorch-conv": (snntorch_conv, 10, (2, 8, 8)),
}


def events(steps: int, batch: int, shape: tuple[int, ...], seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((steps, batch, *shape)) < 0.3).astype(np.float32)


def _emu(graph: nir.NIRGraph, steps: int, **options: Any) -> Any:
    return get_target("loihi-emu").compile(graph, timesteps=steps, input_mode="events", **options)


# ----------------------------------------------------------------------------- float vs fixed


@pytest.mark.parametrize("name", list(GRAPHS))
def test_float_and_fixed_agree(name: str) -> None:
    build, steps, shape = GRAPHS[name]
    graph = build(steps)
    x = events(steps, 32, shape)
    fixed = _emu(graph, steps).run(x)
    float_run = load_nir(graph).run(torch.as_tensor(x), count_spikes=True)
    float_counts = {k: v.numpy() for k, v in float_run.spike_counts.items()}
    for layer, counts in float_counts.items():
        got = fixed.spike_counts[layer]
        assert abs(int(got.sum()) - counts.sum()) <= 0.05 * counts.sum() + 2, layer
        if counts.std() > 0 and got.std() > 0:
            assert np.corrcoef(got, counts)[0, 1] >= 0.9, layer
    if fixed.scores is not None:  # a readout: compare the scores and the predictions
        float_scores = float_run.output.mean(0).reshape(x.shape[1], -1).numpy()
        assert np.mean(fixed.scores.argmax(1) == float_scores.argmax(1)) >= 0.9
        err = np.abs(fixed.scores - float_scores).max()
        assert err <= 0.2 * np.abs(float_scores).max()
    else:  # spiking output: the output spikes agree
        want = float_run.output.numpy().reshape(fixed.output_spikes.shape)
        assert np.mean(fixed.output_spikes == want) >= 0.95


# ----------------------------------------------------------------------------- lava == emu


@pytest.mark.lava
@pytest.mark.skipif(not HAVE_LAVA, reason="lava-nc is not installed")
@pytest.mark.parametrize("name", list(GRAPHS))
def test_lava_sim_equals_loihi_emu_spike_for_spike(name: str) -> None:
    build, steps, shape = GRAPHS[name]
    graph = build(steps)
    x = events(steps, 1, shape, seed=7)
    opts = {"record": "all", "record_voltage": "all"}
    emu = _emu(graph, steps, **opts).run(x)
    lava = (
        get_target("lava-sim").compile(graph, timesteps=steps, input_mode="events", **opts).run(x)
    )
    assert emu.spikes.keys() == lava.spikes.keys()
    for layer in emu.spikes:
        np.testing.assert_array_equal(emu.spikes[layer], lava.spikes[layer], err_msg=layer)
        np.testing.assert_array_equal(emu.voltages[layer], lava.voltages[layer], err_msg=layer)
    assert emu.spike_counts.keys() == lava.spike_counts.keys()
    for layer, counts in emu.spike_counts.items():
        np.testing.assert_array_equal(counts, lava.spike_counts[layer])
    if emu.scores is not None:
        np.testing.assert_array_equal(emu.scores, lava.scores)


# ----------------------------------------------------------------------------- mapping details


def test_event_input_is_the_natural_mode_of_per_step_graphs() -> None:
    graph = nir_cuba_conv_li()
    net = quantize_graph(graph)
    assert net.input == "input" and net.encoder is None
    assert net.metadata["input_encoding"] == "events"
    assert net.group("input").shape == (2, 8, 8)
    assert [s.name for s in net.outgoing("input")] == ["conv"]
    x = events(8, 2, (2, 8, 8))
    auto = get_target("loihi-emu").compile(graph, timesteps=8).run(x)  # input_mode="auto"
    explicit = _emu(graph, 8).run(x)
    np.testing.assert_array_equal(auto.scores, explicit.scores)
    # the torch target takes the same [T, B, ...] events
    assert get_target("torch").compile(graph, timesteps=8).run(x).spike_counts["lif"].shape == (2,)
    # an unannotated graph that fits direct encoding stays direct unless asked for events
    graph.metadata.pop("input_encoding")
    assert analyse_graph(graph, DT).input_encoding == "events"  # CubaLIF: not direct
    snn = snntorch_conv() if importlib.util.find_spec("snntorch") else None
    if snn is not None:
        assert analyse_graph(snn, None).input_encoding == "direct"
        assert analyse_graph(snn, None, input_encoding="events").input_encoding == "events"


def test_cuba_lif_maps_tau_syn_to_du_and_tau_mem_to_dv() -> None:
    graph = nir_cuba_conv_li()
    spec = neuron_spec("lif", graph.nodes["lif"], DT)
    a_s, a_m = DT / 2e-3, DT / 4e-3
    assert spec.syn_decay == pytest.approx(a_s) and spec.decay == pytest.approx(a_m)
    assert spec.alpha == pytest.approx(a_m * 4.0 * a_s * 2.0)  # a_m r a_s w_in
    net = quantize_graph(graph)
    lif = net.group("lif")
    assert lif.du == decay_to_du(a_s) == round(4096 * a_s) - 1 and lif.dv == round(4096 * a_m)
    # the conv bias enters the current through an always-spiking bias source, one
    # layer above the group: from the group's first step on, never before
    source = net.group("lif" + BIAS_SOURCE_SUFFIX)
    assert source.shape == (1,) and source.bias_start_step == net.metadata["depths"]["lif"] - 1
    assert not np.any(lif.bias_mant)
    trace = (
        get_target("loihi-emu")
        .compile(graph, timesteps=8, record="all")
        .run(np.zeros((8, 1, 2, 8, 8), np.float32))
    )
    assert trace.spike_counts["lif" + BIAS_SOURCE_SUFFIX].item() == 8


def test_bias_into_the_current_is_exact_up_to_quantisation() -> None:
    """A CubaLIF driven by its bias only: Loihi's voltage follows the float model's
    (a bias added to v instead would overshoot by the current's transient)."""
    n = 4
    graph = nir.NIRGraph(
        {
            "input": nir.Input(np.array([2])),
            "fc": nir.Affine(np.zeros((n, 2)), np.array([0.5, 1.0, 1.5, 2.0])),
            "lif": nir.CubaLIF(
                tau_syn=np.full(n, 4e-3),
                tau_mem=np.full(n, 8e-3),
                r=np.ones(n),
                v_leak=np.zeros(n),
                v_threshold=np.full(n, 100.0),
                w_in=np.ones(n),
            ),
            "output": nir.Output(np.array([n])),
        },
        [("input", "fc"), ("fc", "lif"), ("lif", "output")],
    )
    _meta(graph, 12)
    x = np.zeros((12, 1, 2), np.float32)
    fixed = _emu(graph, 12, record_voltage=["lif"]).run(x)
    net = quantize_graph(graph)
    v_fixed = fixed.voltages["lif"][:, 0] / 64 / net.group("lif").scale
    v_float = load_nir(graph).run(torch.as_tensor(x), record_states=True).states["lif"]["v"]
    v_float = v_float[:, 0].numpy()
    assert np.abs(v_fixed - v_float).max() <= 0.02 * np.abs(v_float).max()


def test_recurrent_edges_map_to_a_self_connection_with_delay_one() -> None:
    net = quantize_graph(nir_recurrent())
    (rec,) = net.recurrent_synapses()
    assert rec.src == rec.dst == "lif" and rec.delay == 1
    assert net.depths()["li"] == 2  # the self-connection does not change the depths
    emu = _emu(nir_recurrent(), 10)
    assert emu.emulator.schedule == "step"


def test_readouts_and_reductions() -> None:
    graph = nir_recurrent()
    x = events(10, 4, (10,))
    mean = _emu(graph, 10).run(x)
    last = _emu(graph, 10, quantization={"readout_reduce": "last"}).run(x)
    li = quantize_graph(graph).group("li")
    assert li.readout == "voltage" and li.dv == round(4096 * DT / 4e-3) and li.du == 4095
    # scores in the float model's units: v / 64 / scale, averaged over the T steps or the last
    v = mean.voltages["li"].astype(np.float64) / 64 / li.scale
    np.testing.assert_allclose(mean.scores, v.mean(0), rtol=1e-12)
    np.testing.assert_allclose(last.scores, v[-1], rtol=1e-12)
    float_v = load_nir(graph).run(torch.as_tensor(x)).output.numpy()
    scale = np.abs(float_v).max()
    # (a sample whose hidden spikes flip differs more: the median error is the mapping's)
    assert np.median(np.abs(mean.scores - float_v.mean(0))) <= 0.05 * scale
    assert np.median(np.abs(last.scores - float_v[-1])) <= 0.05 * scale


def test_what_cannot_be_mapped_is_named() -> None:
    graph = nir_recurrent()
    graph.nodes["th"] = nir.Threshold(np.ones(3))
    graph.edges = [e for e in graph.edges if e != ("li", "output")] + [
        ("li", "th"),
        ("th", "output"),
    ]
    (problem,) = check_graph(graph)
    assert "'th' (Threshold)" in problem and "supported: Input, Output" in problem
    assert "CubaLIF" in problem and "SumPool2d" in problem
    with pytest.raises(UnsupportedNodeError, match="Threshold"):
        quantize_graph(graph)
    # a recurrent edge from a later layer back into an earlier one needs a delay < 1
    rng = np.random.default_rng(0)
    nodes = {k: v for k, v in nir_recurrent().nodes.items() if k != "w_rec"}
    nodes["lif2"] = nir.LIF(
        tau=np.full(12, 2e-3), r=np.ones(12), v_leak=np.zeros(12), v_threshold=np.ones(12)
    )
    nodes["fwd"] = nir.Linear(rng.normal(0, 1, (12, 12)))
    nodes["back"] = nir.Linear(rng.normal(0, 1, (12, 12)))
    back = nir.NIRGraph(
        nodes,
        [
            ("input", "w_in"),
            ("w_in", "lif"),
            ("lif", "fwd"),
            ("fwd", "lif2"),
            ("lif2", "back"),
            ("back", "lif"),
            ("lif2", "fc"),
            ("fc", "li"),
            ("li", "output"),
        ],
    )
    _meta(back, 8)
    with pytest.raises(ConversionError, match="recurrent edge 'back'.*delay of 0 steps"):
        quantize_graph(back)
    # a non-spiking neuron feeding another neuron
    li_mid = nir_recurrent()
    li_mid.nodes["li2"] = nir.LI(tau=np.full(12, 4e-3), r=np.ones(12), v_leak=np.zeros(12))
    li_mid.edges = [("lif", "li2") if e == ("lif", "fc") else e for e in li_mid.edges]
    li_mid.edges.append(("li2", "fc"))
    with pytest.raises(ConversionError, match="non-spiking node 'li2'"):
        quantize_graph(li_mid)


def direct_recurrent(steps: int = 8) -> nir.NIRGraph:
    """A direct-encoded recurrent SNN that netx can describe: Input -> Conv2d -> LIF ->
    Flatten -> Affine -> LIF <-> Linear (recurrent) -> Affine readout."""
    rng = np.random.default_rng(3)
    s1, n = (3, 6, 6), 10
    w_rec = rng.normal(0, 0.3, (n, n))
    np.fill_diagonal(w_rec, 0)

    def lif(shape: tuple[int, ...]) -> nir.LIF:
        return nir.LIF(
            tau=np.full(shape, 4e-3), r=np.ones(shape), v_leak=np.zeros(shape),
            v_threshold=np.full(shape, 0.3),
        )  # fmt: skip

    nodes = {
        "input": nir.Input(np.array([1, 6, 6])),
        "conv": nir.Conv2d(np.array([6, 6]), rng.normal(0.3, 0.5, (3, 1, 3, 3)), 1, 1, 1, 1, np.zeros(3)),
        "lif1": lif(s1),
        "flat": nir.Flatten({"input": np.array(s1)}, 0, -1),
        "fc": nir.Affine(rng.normal(0.05, 0.3, (n, 108)), np.full(n, 0.05)),
        "lif2": lif((n,)),
        "rec": nir.Linear(w_rec),
        "out": nir.Affine(rng.normal(0, 0.5, (3, n)), np.zeros(3)),
        "output": nir.Output(np.array([3])),
    }  # fmt: skip
    edges = [
        ("input", "conv"), ("conv", "lif1"), ("lif1", "flat"), ("flat", "fc"), ("fc", "lif2"),
        ("lif2", "rec"), ("rec", "lif2"), ("lif2", "out"), ("out", "output"),
    ]  # fmt: skip
    graph = nir.NIRGraph(nodes, edges)
    graph.metadata = {"dt": DT, "timesteps": steps, "input_encoding": "static"}
    return graph


def _netx_recurrent(tmp_path: Any) -> tuple[Any, Any, np.ndarray]:
    net = quantize_graph(
        direct_recurrent(), netx_compatible=True, calibration=np.ones((1, 1, 6, 6))
    )
    path = write_netx(net, tmp_path / "rec.net")
    images = np.random.default_rng(0).random((3, 1, 6, 6))
    return net, path, images


def test_netx_writes_recurrent_layers_as_dense_rec(tmp_path: Any) -> None:
    import h5py

    net, path, images = _netx_recurrent(tmp_path)
    with h5py.File(path, "r") as f:
        kinds = [f[f"layer/{i}/type"][()][0] for i in range(len(f["layer"]))]
    assert b"dense_rec" in kinds
    back = read_netx(path)
    (rec,) = back.recurrent_synapses()
    assert rec.name == "rec" and rec.src == rec.dst == "lif2" and rec.delay == 1
    opts = {"timesteps": 8, "record": "all"}
    want = get_target("loihi-emu").compile(net, **opts).run(images)
    got = get_target("loihi-emu").compile(path, **opts).run(images)
    assert want.spike_counts["lif2"].sum() > 0
    for layer in want.spikes:
        np.testing.assert_array_equal(want.spikes[layer], got.spikes[layer])
    np.testing.assert_array_equal(want.scores, got.scores)


@pytest.mark.lava
@pytest.mark.skipif(not HAVE_LAVA, reason="lava-nc is not installed")
def test_lava_dl_loads_dense_rec_and_equals_loihi_emu(tmp_path: Any) -> None:
    """lava-dl's own netx loader (RecurrentDense block) runs the file like loihi-emu."""
    net, path, images = _netx_recurrent(tmp_path)
    opts = {"timesteps": 8, "record": "all"}
    want = get_target("loihi-emu").compile(net, **opts).run(images[:1])
    got = get_target("lava-sim").compile(path, backend="netx", **opts).run(images[:1])
    for layer in want.spikes:
        np.testing.assert_array_equal(want.spikes[layer], got.spikes[layer], err_msg=layer)
    np.testing.assert_array_equal(want.scores, got.scores)


def test_netx_says_what_it_cannot_describe(tmp_path: Any) -> None:
    for build, match in (
        (nir_recurrent, "event input"),
        (nir_if_sumpool, "event input"),
        (nir_cuba_conv_li, "event input"),
    ):
        net = quantize_graph(build(), netx_compatible=True)
        with pytest.raises(ConversionError, match=match):
            write_netx(net, tmp_path / "x.net")
    net = quantize_graph(nir_cuba_conv_li(), netx_compatible=True)
    net.metadata.pop("input_encoding")
    with pytest.raises(ConversionError, match="bias sources lif.bias_source"):
        write_netx(net, tmp_path / "x.net")
