"""Counting any NIR graph from a target's spike counts: CubaLIF, IF, LI, SumPool2d and a
recurrent cycle, built with ``nir`` directly and checked by brute force; the same counts
through ``energy_report`` and ``neurall energy --nir``; and the same recurrent fan-out rule
as the torch counter on Norse's ``LIFRecurrentCell``."""

from __future__ import annotations

import json

import nir
import norse.torch as snn
import numpy as np
import pytest
import torch
from torch import nn

from energy.fanout import ConvGeometry
from energy.nir_counter import count_nir, spike_counts_from_runtime
from energy.report import energy_report
from energy.torch_counter import count_model

T, HIDDEN = 6, 5


def _full(shape, value: float) -> np.ndarray:
    return np.full(shape, float(value))


def mixed_graph(autapses: bool | None = None) -> nir.NIRGraph:
    """input (1, 4, 4) -> conv 3x3 pad 1 (2 ch) -> IF -> sumpool 2 -> flatten -> affine (8 -> 5)
    -> CubaLIF (5) <-> linear 5x5 (zero diagonal: a recurrent cycle) ; CubaLIF -> affine
    (5 -> 3) -> LI -> output."""
    rng = np.random.default_rng(0)
    recurrent = nir.Linear(weight=rng.uniform(0, 1, (HIDDEN, HIDDEN)) * (1 - np.eye(HIDDEN)))
    if autapses is not None:
        recurrent.metadata = {"autapses": autapses}
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
        "conv": nir.Conv2d(
            input_shape=(4, 4), weight=rng.uniform(0, 3, (2, 1, 3, 3)), stride=1, padding=1,
            dilation=1, groups=1, bias=np.zeros(2),
        ),
        "if1": nir.IF(r=_full((2, 4, 4), 1), v_threshold=_full((2, 4, 4), 0.02)),
        "pool": nir.SumPool2d(
            kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
        ),
        "flat": nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=0),
        "fc_in": nir.Affine(weight=rng.uniform(0, 20, (HIDDEN, 8)), bias=np.full(HIDDEN, 0.1)),
        "cuba": nir.CubaLIF(
            tau_syn=_full(HIDDEN, 2e-3), tau_mem=_full(HIDDEN, 2e-3), r=_full(HIDDEN, 1),
            v_leak=_full(HIDDEN, 0), v_threshold=_full(HIDDEN, 0.05), w_in=_full(HIDDEN, 1),
        ),
        "rec": recurrent,
        "fc_out": nir.Affine(weight=rng.uniform(0, 1, (3, HIDDEN)), bias=np.zeros(3)),
        "li": nir.LI(tau=_full(3, 2e-3), r=_full(3, 1), v_leak=_full(3, 0)),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }  # fmt: skip
    edges = [
        ("input", "conv"), ("conv", "if1"), ("if1", "pool"), ("pool", "flat"),
        ("flat", "fc_in"), ("fc_in", "cuba"), ("cuba", "rec"), ("rec", "cuba"),
        ("cuba", "fc_out"), ("fc_out", "li"), ("li", "output"),
    ]  # fmt: skip
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"timesteps": T, "dt": 1e-3})


@pytest.fixture
def spikes() -> tuple[dict[str, torch.Tensor], int]:
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    counts, samples = spike_counts_from_runtime(mixed_graph(), x, timesteps=T)
    assert counts["if1"].sum() > 0 and counts["cuba"].sum() > 0  # both populations spike
    return counts, samples


def test_mixed_graph_by_brute_force(spikes, brute) -> None:
    counts, samples = spikes
    result = count_nir(mixed_graph(), counts, T, samples)
    if1, cuba = counts["if1"], counts["cuba"]
    frames = samples * T
    # conv on the analog image: dense MACs; its bias is zero (no bias adds)
    conv_dense = frames * int(
        brute.conv_fanout(ConvGeometry.create(1, 2, 3, padding=1), 4, 4).sum()
    )
    assert (result.layer("conv").macs, result.layer("conv").bias_adds) == (conv_dense, 0)
    # IF spikes through the sum pool folded into fc_in: every spike reaches all 5 neurons
    fc_in = result.layer("fc_in")
    assert (fc_in.synops, fc_in.folded, fc_in.kind) == (int(if1.sum()) * HIDDEN, "pool", "linear")
    assert fc_in.bias_adds == frames * HIDDEN
    # the recurrent cycle: spike j reaches the 4 other neurons (zero diagonal: no autapses)
    rec = result.layer("rec")
    brute_rec = sum(int(cuba[j]) * sum(o != j for o in range(HIDDEN)) for j in range(HIDDEN))
    assert (rec.kind, rec.synops) == ("recurrent", brute_rec)
    assert rec.synops_dense == frames * HIDDEN * (HIDDEN - 1)
    assert result.layer("fc_out").synops == int(cuba.sum()) * 3
    # populations: one update per neuron per step; LI never spikes
    kinds = {name: result.layer(name).kind for name in ("if1", "cuba", "li")}
    assert kinds == {"if1": "if", "cuba": "cubalif", "li": "li"}
    assert result.layer("if1").neuron_updates == frames * 32
    assert result.layer("cuba").spikes == int(cuba.sum())
    assert (result.layer("li").neuron_updates, result.layer("li").spikes) == (frames * 3, 0)
    assert result.layer("li").firing_rate is None


def test_autapses_from_metadata_and_neurobench_view(spikes) -> None:
    counts, samples = spikes
    with_autapses = count_nir(mixed_graph(autapses=True), counts, T, samples)
    assert with_autapses.layer("rec").synops == int(counts["cuba"].sum()) * HIDDEN
    neurobench = count_nir(mixed_graph(), counts, T, samples, fold_pooling=False)
    pool = neurobench.layer("pool")
    assert (pool.kind, pool.adds, pool.mults) == ("sumpool", samples * T * 2 * 4 * 3, 0)
    assert neurobench.layer("fc_in").macs == samples * T * 8 * HIDDEN  # pooled: dense MACs


def test_any_graph_through_the_report_and_the_cli(tmp_path, spikes) -> None:
    from conversion.nir_io import write_nir
    from neurall_neuro.cli.main import main

    path = tmp_path / "mixed.nir"
    write_nir(mixed_graph(), path)
    images = torch.rand(2, 1, 4, 4)
    report = energy_report(str(path), images=images, target="torch", profiles="loihi")
    rows = {row.name: row for row in report.snn.layers}
    assert rows["rec"].kind == "recurrent" and rows["li"].spikes == 0
    assert report.snn.timesteps == T
    out = tmp_path / "report.json"
    code = main(
        ["energy", "--nir", str(path), "--random", "2", "--profiles", "loihi",
         "--format", "json", "--output", str(out)]
    )  # fmt: skip
    assert code == 0
    layers = {row["name"]: row for row in json.loads(out.read_text())["snn"]["layers"]}
    assert {"conv", "if1", "fc_in", "cuba", "rec", "fc_out", "li"} <= set(layers)
    assert layers["rec"]["kind"] == "recurrent"


def test_recurrent_fanout_agrees_with_the_torch_counter() -> None:
    """A Norse LIFRecurrentCell counted with hooks, and its hand-built NIR graph counted with
    the cell's own spike counts: the same SynOps for input, recurrent and readout synapses."""
    torch.manual_seed(6)
    cell = snn.LIFRecurrentCell(4, HIDDEN)
    readout = nn.Linear(HIDDEN, 2, bias=False)
    with torch.no_grad():
        cell.input_weights.mul_(8)
        cell.recurrent_weights.mul_(8)
    model = snn.SequentialState(cell, readout, snn.LICell())
    x = (torch.rand(T, 3, 4) < 0.5).float()
    recorded: list[torch.Tensor] = []
    handle = cell.register_forward_hook(lambda m, i, o: recorded.append(o[0].clone()))
    hooks = count_model(model, x, input_mode="sequence")
    handle.remove()
    cell_spikes = torch.stack(recorded).sum((0, 1))
    assert cell_spikes.sum() > 0
    w_in, w_rec = cell.input_weights.detach().numpy(), cell.recurrent_weights.detach().numpy()
    ones = _full(HIDDEN, 1)
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([4])}),
            "w_in": nir.Linear(weight=w_in),
            "cell": nir.CubaLIF(
                tau_syn=_full(HIDDEN, 5e-3), tau_mem=_full(HIDDEN, 1e-2), r=ones,
                v_leak=0 * ones, v_threshold=ones, w_in=ones,
            ),
            "w_rec": nir.Linear(weight=w_rec),
            "fc": nir.Linear(weight=readout.weight.detach().numpy()),
            "li": nir.CubaLI(tau_syn=_full(2, 5e-3), tau_mem=_full(2, 1e-2), r=_full(2, 1),
                             v_leak=_full(2, 0), w_in=_full(2, 1)),
            "output": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[("input", "w_in"), ("w_in", "cell"), ("cell", "w_rec"), ("w_rec", "cell"),
               ("cell", "fc"), ("fc", "li"), ("li", "output")],
    )  # fmt: skip
    from_graph = count_nir(
        graph, {"input": x.sum(1).sum(0), "cell": cell_spikes}, T, 3, input_spikes=True
    )
    pairs = {"0.input_weights": "w_in", "0.recurrent_weights": "w_rec", "1": "fc", "0": "cell"}
    for ours, theirs in pairs.items():
        for field in ("synops", "synops_dense", "neuron_updates"):
            assert getattr(hooks.layer(ours), field) == getattr(from_graph.layer(theirs), field), (
                ours,
                field,
            )
    assert hooks.layer("0.recurrent_weights").kind == from_graph.layer("w_rec").kind
