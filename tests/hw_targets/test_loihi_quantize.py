"""NIR (our conventions) -> LoihiNetwork: folding, neuron mapping, delays, quantisation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hw_targets.loihi.mapping import check_graph
from hw_targets.loihi.quantize import quantize_graph
from neurall_neuro.errors import ConversionError, QuantizationError, UnsupportedNodeError

_spec = importlib.util.spec_from_file_location(
    "hw_helpers", Path(__file__).parents[1] / "hw_targets" / "conftest.py"
)
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
DT = _helpers.DT
lif, conv = _helpers._lif, _helpers._conv


def graph_of(nodes: dict, edges: list, **meta) -> nir.NIRGraph:
    return nir.NIRGraph(
        nodes=nodes, edges=edges, metadata={"dt": DT, "timesteps": 4, **meta}, type_check=False
    )


def pool_conv_graph(pool=nir.AvgPool2d, k=2, h=8, pad=1, out_c=3) -> nir.NIRGraph:
    rng = np.random.default_rng(0)
    o = h // k + 2 * pad - 2
    return graph_of(
        {
            "input": nir.Input(input_type={"input": np.array([1, h, h])}),
            "enc": conv(rng.normal(size=(2, 1, 1, 1)), np.zeros(2), (h, h)),
            "l0": lif((2, h, h), 2, 1.0),
            "pool": pool(
                kernel_size=np.array([k, k]), stride=np.array([k, k]), padding=np.array([0, 0])
            ),
            "c": conv(
                rng.normal(size=(out_c, 2, 3, 3)),
                rng.normal(size=out_c),
                (h // k, h // k),
                padding=pad,
            ),
            "l1": lif((out_c, o, o), 1, 1.0),
            "output": nir.Output(output_type={"output": np.array([out_c, o, o])}),
        },
        [
            ("input", "enc"),
            ("enc", "l0"),
            ("l0", "pool"),
            ("pool", "c"),
            ("c", "l1"),
            ("l1", "output"),
        ],
    )


@pytest.mark.parametrize("pool", [nir.AvgPool2d, nir.SumPool2d])
@pytest.mark.parametrize(("k", "h", "pad"), [(2, 8, 1), (2, 9, 0), (3, 9, 1)])
def test_pool_then_conv_folds_into_one_exact_strided_conv(pool, k, h, pad):
    graph = pool_conv_graph(pool, k, h, pad)
    net = quantize_graph(graph)
    (syn,) = net.synapses
    assert (syn.kind, syn.stride, syn.padding, syn.kernel) == (
        "conv",
        (k, k),
        (k * pad, k * pad),
        (3 * k, 3 * k),
    )
    group = net.group("l1")
    folded = syn.float_weight / group.scale  # alpha = 1 (tau = dt)
    x = torch.rand(2, 2, h, h, dtype=torch.float64)
    node_w = torch.as_tensor(graph.nodes["c"].weight)
    pooled = F.avg_pool2d(x, k) if pool is nir.AvgPool2d else F.avg_pool2d(x, k) * k * k
    expect = F.conv2d(pooled, node_w, padding=pad)
    got = F.conv2d(x, torch.as_tensor(folded), stride=k, padding=k * pad)
    torch.testing.assert_close(got, expect)


def test_pool_fold_refuses_inexact_borders():
    with pytest.raises(ConversionError, match="not be exact"):
        quantize_graph(pool_conv_graph(k=2, h=9, pad=1))


def readout_graph(pool_k: int | None, h: int = 4, c: int = 3, k_out: int = 2) -> nir.NIRGraph:
    rng = np.random.default_rng(1)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1, h, h])}),
        "enc": conv(rng.normal(size=(c, 1, 1, 1)), np.zeros(c), (h, h)),
        "l0": lif((c, h, h), 2, 1.0),
        "flat": nir.Flatten(input_type={"input": np.array([c, 1, 1])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(
            weight=rng.normal(size=(k_out, c if pool_k else c * h * h)), bias=rng.normal(size=k_out)
        ),
        "output": nir.Output(output_type={"output": np.array([k_out])}),
    }
    edges = [("input", "enc"), ("enc", "l0"), ("flat", "fc"), ("fc", "output")]
    if pool_k:
        nodes["gap"] = nir.AvgPool2d(
            kernel_size=np.array([pool_k, pool_k]),
            stride=np.array([pool_k, pool_k]),
            padding=np.array([0, 0]),
        )
        edges += [("l0", "gap"), ("gap", "flat")]
    else:
        nodes["flat"] = nir.Flatten(
            input_type={"input": np.array([c, h, h])}, start_dim=0, end_dim=-1
        )
        edges.append(("l0", "flat"))
    return graph_of(nodes, edges)


@pytest.mark.parametrize("pool_k", [4, None])
def test_global_pool_flatten_affine_folds_into_a_dense_readout(pool_k):
    graph = readout_graph(pool_k)
    net = quantize_graph(graph, timesteps=4)
    readout = net.readout_group
    assert readout is not None and readout.name == "fc" and readout.shape == (2,)
    assert (readout.du, readout.dv, readout.vth, readout.readout) == (4095, 0, 131071, "voltage")
    (syn,) = net.incoming("fc")
    assert syn.kind == "dense" and syn.weight.shape == (2, 48) and syn.delay == 1
    x = torch.rand(5, 3, 4, 4, dtype=torch.float64)
    w = torch.as_tensor(graph.nodes["fc"].weight)
    expect = (F.avg_pool2d(x, pool_k).flatten(1) if pool_k else x.flatten(1)) @ w.T
    got = x.flatten(1) @ torch.as_tensor(syn.float_weight / readout.scale).T
    torch.testing.assert_close(got, expect)
    assert net.output == "l0"


def test_pool_not_followed_by_conv_or_affine_is_an_error():
    graph = pool_conv_graph()
    graph.nodes["c"] = nir.Flatten(
        input_type={"input": np.array([2, 4, 4])}, start_dim=0, end_dim=-1
    )
    graph.nodes["l1"] = lif((32,), 1, 1.0)
    graph.nodes["output"] = nir.Output(output_type={"output": np.array([32])})
    with pytest.raises(
        ConversionError, match="a pool must be followed by a Conv2d, or by Flatten \\+ Affine"
    ):
        quantize_graph(graph)


def test_neuron_mapping_dv_and_memoryless_lif():
    net = quantize_graph(_helpers.make_se_graph(), timesteps=6)
    assert net.group("lif1").dv == 2048  # tau = 2 dt
    assert net.group("se_gate").dv == 4095  # tau = dt: 4096 does not fit 12 bits
    assert net.group("se_and").vth == round(1.5 * net.group("se_and").scale)
    assert all(g.du == 4095 for g in net.groups)
    graph = _helpers.make_se_graph()
    graph.nodes["lif1"] = lif((6, 8, 8), 0.5, 1.0)
    with pytest.raises(QuantizationError, match=r"dt/tau = 2 > 1"):
        quantize_graph(graph, timesteps=6)


def test_se_branch_delays_are_equalised():
    net = quantize_graph(_helpers.make_se_graph(), timesteps=6)
    depth = net.depths()
    assert depth == {
        "lif0": 0,
        "lif1": 1,
        "se_lif1": 2,
        "se_gate": 3,
        "se_and": 4,
        "lif2": 5,
        "fc": 6,
    }
    delays = {s.name: s.delay for s in net.synapses}
    assert delays["lif1->se_and"] == 3 and delays["se_bcast"] == 1 and delays["se_fc1"] == 1
    for g in net.groups:
        assert g.bias_start_step == depth[g.name]
        assert (
            len({depth[s.src] + s.delay for s in net.incoming(g.name)}) <= 1
        )  # all paths arrive together
    ident = next(s for s in net.synapses if s.name == "lif1->se_and")
    assert ident.kind == "conv" and ident.groups == 6 and ident.kernel == (1, 1)


def test_quantisation_report_and_ranges():
    images = np.random.default_rng(0).uniform(0, 1, (4, 3, 8, 8))
    net = quantize_graph(_helpers.make_se_graph(), timesteps=6, calibration=images)
    by_name = {(r.kind, r.name): r for r in net.report}
    for syn in net.synapses:
        r = by_name[("synapse", syn.name)]
        assert r.weight_exp == syn.weight_exp and r.clipped_fraction == 0.0 and r.scale > 0
        assert np.abs(syn.weight).max() >= 128 or syn.weight_exp == -8  # uses the 8-bit range
        assert r.max_abs_error <= 2.0**syn.weight_exp / r.scale / 1e-9  # finite, reported
    assert ("group", "lif0") in by_name and "calibrated on 4 images" in by_name[
        ("group", "lif0")
    ].note
    clipped = quantize_graph(_helpers.make_se_graph(), timesteps=6, weight_percentile=50)
    assert max(r.clipped_fraction for r in clipped.report if r.kind == "synapse") > 0.2
    with pytest.raises(
        QuantizationError,
        match="weight_percentile = 0 is out of range; valid range is \\(0, 100\\]",
    ):
        quantize_graph(_helpers.make_se_graph(), weight_percentile=0)
    with pytest.raises(
        QuantizationError, match="bias_exp = 9 is out of range; valid range is 0..7"
    ):
        quantize_graph(_helpers.make_se_graph(), bias_exp=9)
    netx = quantize_graph(_helpers.make_se_graph(), timesteps=6, netx_compatible=True)
    assert all(g.bias_exp == 6 for g in netx.groups) and all(
        s.weight_exp >= 0 for s in netx.synapses
    )


def test_readout_scale_keeps_integrator_below_threshold():
    net = quantize_graph(_helpers.make_se_graph(), timesteps=50)
    r = net.readout_group
    (syn,) = net.incoming(r.name)
    per_step = np.abs(syn.effective_weight).sum(axis=1).max() + np.abs(r.effective_bias).max() / 64
    assert 50 * per_step < r.vth


def test_unsupported_nodes_are_listed_with_names():
    graph = _helpers.make_se_graph()
    graph.nodes["se_gate"] = nir.Threshold(threshold=np.full((6, 1, 1), 0.5))
    # (CubaLIF is mapped since the any-graph work: a Delay node is the second unsupported one)
    graph.nodes["delay2"] = nir.Delay(delay=np.full((6, 4, 4), 2e-4))
    problems = check_graph(graph)
    assert len(problems) == 2
    assert "'se_gate' (Threshold)" in problems[0] and "supported: Input, Output" in problems[0]
    assert "'delay2' (Delay)" in problems[1] and "delay nodes" in problems[1]
    with pytest.raises(UnsupportedNodeError, match="se_gate"):
        quantize_graph(graph)


def test_structural_errors_are_reported():
    graph = _helpers.make_se_graph()
    graph.metadata.pop("dt")
    for node in graph.nodes.values():
        node.metadata.pop("dt", None)
    with pytest.raises(ConversionError, match="stores no dt"):
        quantize_graph(graph)
    assert quantize_graph(graph, dt=DT, timesteps=6).metadata["dt"] == DT
    rng = np.random.default_rng(0)
    summing = readout_graph(None)
    summing.nodes["enc2"] = conv(rng.normal(size=(3, 1, 1, 1)), np.zeros(3), (4, 4))
    summing.edges += [("input", "enc2"), ("enc2", "flat")]
    assert any("sums 2 inputs" in p for p in check_graph(summing))
    no_t = readout_graph(4)
    no_t.metadata.pop("timesteps")
    with pytest.raises(QuantizationError, match="pass timesteps"):
        quantize_graph(no_t)
