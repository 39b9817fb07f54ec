"""Norse 1.1.0 models counted by the hook counter, checked against brute-force counts.

Every reference here is computed independently of the counter: the test records what each
layer received and emitted at every step with its own hooks, and counts by enumeration
(spikes x fan-out from :func:`conftest.brute_conv_fanout`, loops over recurrent synapses).
"""

from __future__ import annotations

from collections import defaultdict
from math import prod

import norse.torch as snn
import pytest
import torch
from torch import nn

from energy.fanout import ConvGeometry
from energy.input_modes import step_model
from energy.report import energy_report
from energy.torch_counter import count_model
from neurall_neuro.errors import ConfigError, UnknownNameError, UnsupportedModuleError

T = 4


class Recorder:
    """Inputs and outputs of every call of the watched modules (by name), in call order."""

    def __init__(self, model: nn.Module, types: tuple[type, ...]) -> None:
        self.inputs: dict[str, list[tuple]] = defaultdict(list)
        self.outputs: dict[str, list[torch.Tensor]] = defaultdict(list)
        self.handles = [
            module.register_forward_hook(self._hook(name), with_kwargs=True)
            for name, module in model.named_modules()
            if isinstance(module, types)
        ]

    def _hook(self, name: str):
        def hook(module, args, kwargs, output):
            self.inputs[name].append(tuple(args) + tuple(kwargs.values()))
            out = output[0] if isinstance(output, tuple) else output
            self.outputs[name].append(out.detach().clone())

        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def run_and_record(model, x, mode, types) -> Recorder:
    recorder = Recorder(model, types)
    with torch.no_grad():
        if mode == "static":
            step_model(model, [x] * T)
        elif mode == "sequence":
            step_model(model, list(x))
        else:
            model(x)
    recorder.close()
    return recorder


def brute_synaptic(layer: nn.Module, inputs: list[torch.Tensor], brute) -> tuple[int, int, bool]:
    """``(effective, dense, binary)``: sum over non-zero inputs of their enumerated fan-out
    (:func:`conftest.brute_conv_fanout` for convolutions, ``out_features`` for linears)."""
    effective = dense = 0
    binary = True
    for x in inputs:
        binary &= bool(((x == 0) | (x == 1)).all())
        if isinstance(layer, nn.Conv2d):
            geometry = ConvGeometry.from_module(layer)
            fanout = brute.conv_fanout(geometry, x.shape[2], x.shape[3])
        else:
            fanout = torch.full(x.shape[1:], layer.out_features, dtype=torch.int64)
        for sample in x:
            effective += int(fanout[sample != 0].sum())
            dense += int(fanout.sum())
    return effective, dense, binary


def check_synaptic(row, layer, inputs, brute) -> None:
    effective, dense, binary = brute_synaptic(layer, inputs, brute)
    assert row.input_binary == binary
    if binary:
        assert (row.synops, row.synops_dense, row.macs) == (effective, dense, 0), row.name
    else:
        assert (row.macs, row.macs_dense, row.synops) == (effective, dense, 0), row.name


def check_neurons(row, outputs, spiking: bool) -> None:
    updates = sum(o.numel() for o in outputs)
    spikes = int(sum(o.sum() for o in outputs)) if spiking else 0
    assert (row.neuron_updates, row.spikes, row.steps) == (updates, spikes, T), row.name
    assert row.neurons == prod(outputs[0].shape[1:])


def test_conv_lif_cell_model_by_hand(norse, brute) -> None:
    """Conv2d, LIFCell, AvgPool2d, Conv2d, LIFCell, Flatten, Linear, LICell, static input."""
    model = norse.models()["conv"]
    x, _ = norse.inputs("conv", T)
    seen = run_and_record(model, x, "static", (nn.Conv2d, nn.Linear, snn.LIFCell, snn.LICell))
    counts = count_model(model, x, timesteps=T, fold_pooling=False)
    assert (counts.samples, counts.timesteps) == (3, T)
    for name in ("0", "3", "6"):
        layer, inputs = model[int(name)], [i[0] for i in seen.inputs[name]]
        check_synaptic(counts.layer(name), layer, inputs, brute)
    for name in ("1", "4"):
        check_neurons(counts.layer(name), seen.outputs[name], spiking=True)
        assert (
            counts.layer(name).kind == "cubalif" and "2 state variables" in counts.layer(name).note
        )
    readout = counts.layer("7")
    check_neurons(readout, seen.outputs["7"], spiking=False)
    assert readout.kind == "cubali" and readout.firing_rate is None
    assert counts.layer("0").macs and counts.layer("6").synops  # image: MACs, spikes: ACs
    assert counts.layer("3").macs  # NeuroBench view: averages of spikes are not spikes
    assert counts.layer("2").kind == "avgpool"  # NeuroBench view: the pool is its own layer
    assert counts.total("spikes") == counts.layer("1").spikes + counts.layer("4").spikes


def test_pool_folds_into_the_next_conv_for_norse_cells(norse, brute) -> None:
    """Hardware view: conv 3 is driven by LIF 1's spikes through the folded fan-out."""
    model = norse.models()["conv"]
    x, _ = norse.inputs("conv", T)
    seen = run_and_record(model, x, "static", (snn.LIFCell,))
    counts = count_model(model, x, timesteps=T)
    conv = model[3]
    fold = brute.pool_conv_fanout(2, ConvGeometry.from_module(conv), 6, 6)
    expected = sum(int(fold[s != 0].sum()) for z in seen.outputs["1"] for s in z)
    row = counts.layer("3")
    assert (row.synops, row.folded) == (expected, "2")
    assert "2" not in [layer.name for layer in counts.layers]


def test_lif_box_cells_on_event_input_by_hand(norse, brute) -> None:
    model = norse.models()["box"]
    x, mode = norse.inputs("box", T)
    seen = run_and_record(model, x, mode, (nn.Conv2d, nn.Linear, snn.LIFBoxCell))
    counts = count_model(model, x, input_mode="sequence", fold_pooling=False)
    assert counts.timesteps == T and counts.samples == 3
    check_synaptic(counts.layer("0"), model[0], [i[0] for i in seen.inputs["0"]], brute)
    assert counts.layer("0").synops  # event input: ACs from the first layer on
    check_synaptic(counts.layer("4"), model[4], [i[0] for i in seen.inputs["4"]], brute)
    for name in ("1", "5"):
        check_neurons(counts.layer(name), seen.outputs[name], spiking=True)
        assert counts.layer(name).kind == "lif"


def test_iaf_and_li_box_cells_by_hand(brute) -> None:
    torch.manual_seed(1)
    model = snn.SequentialState(nn.Linear(6, 5), snn.IAFCell(), nn.Linear(5, 2), snn.LIBoxCell())
    with torch.no_grad():
        model[0].weight.mul_(4)
    x = torch.rand(3, 6)
    seen = run_and_record(model, x, "static", (nn.Linear, snn.IAFCell, snn.LIBoxCell))
    counts = count_model(model, x, timesteps=T)
    check_synaptic(counts.layer("0"), model[0], [i[0] for i in seen.inputs["0"]], brute)
    check_synaptic(counts.layer("2"), model[2], [i[0] for i in seen.inputs["2"]], brute)
    check_neurons(counts.layer("1"), seen.outputs["1"], spiking=True)
    check_neurons(counts.layer("3"), seen.outputs["3"], spiking=False)
    assert counts.layer("1").spikes > 0
    assert (counts.layer("1").kind, counts.layer("3").kind) == ("if", "li")
    assert counts.firing_rate == counts.layer("1").spikes / counts.layer("1").neuron_updates


def brute_recurrent(cell: nn.Module, inputs: list[tuple], outputs: list[torch.Tensor]):
    """``(input ACs, recurrent ACs, recurrent dense)`` by enumerating synapses: every input
    event reaches the ``H`` neurons; every spike the cell emits reaches each neuron it has a
    synapse onto (all but itself without autapses), once."""
    hidden = cell.input_weights.shape[0]
    input_acs = recurrent_acs = recurrent_dense = 0
    for (x, *_), z in zip(inputs, outputs, strict=True):
        input_acs += int((x != 0).sum()) * hidden
        for b in range(z.shape[0]):
            for j in range(hidden):
                for o in range(hidden):
                    connected = cell.autapses or o != j
                    recurrent_dense += connected
                    recurrent_acs += connected and bool(z[b, j] != 0)
    return input_acs, recurrent_acs, recurrent_dense


@pytest.mark.parametrize("autapses", [False, True])
def test_recurrent_cell_by_hand(norse, brute, autapses: bool) -> None:
    """LIFRecurrentCell(12, 24) -> Linear -> LICell: input, recurrent synapses, neurons."""
    model = norse.models()["recurrent"]
    if autapses:
        torch.manual_seed(2)
        cell = snn.LIFRecurrentCell(12, 24, autapses=True)
        with torch.no_grad():
            cell.input_weights.mul_(6)
            cell.recurrent_weights.mul_(6)
        model = snn.SequentialState(cell, model[1], model[2])
    x, _ = norse.inputs("recurrent", T)
    seen = run_and_record(model, x, "sequence", (snn.LIFRecurrentCell, nn.Linear, snn.LICell))
    counts = count_model(model, x, input_mode="sequence")
    input_acs, recurrent_acs, recurrent_dense = brute_recurrent(
        model[0], seen.inputs["0"], seen.outputs["0"]
    )
    batch, hidden = 3, 24
    row_in, row_rec = counts.layer("0.input_weights"), counts.layer("0.recurrent_weights")
    assert (row_in.synops, row_in.synops_dense) == (input_acs, T * batch * 12 * hidden)
    assert (row_rec.kind, row_rec.synops, row_rec.synops_dense) == (
        "recurrent",
        recurrent_acs,
        recurrent_dense,
    )
    assert recurrent_acs > 0 and recurrent_dense == T * batch * hidden * (hidden - (not autapses))
    check_neurons(counts.layer("0"), seen.outputs["0"], spiking=True)
    check_synaptic(counts.layer("1"), model[1], [i[0] for i in seen.inputs["1"]], brute)
    check_neurons(counts.layer("2"), seen.outputs["2"], spiking=False)


def test_recurrent_cell_called_with_a_keyword_state() -> None:
    """A cell called as cell(x, state=state) is counted like a positional call."""
    torch.manual_seed(3)

    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = snn.LIFRecurrentCell(4, 6)
            with torch.no_grad():
                self.cell.input_weights.mul_(10)
                self.cell.recurrent_weights.mul_(10)

        def forward(self, x, state=None):
            return self.cell(x, state=state)

    model = Wrapper()
    x = (torch.rand(T, 2, 4) < 0.6).float()
    seen = run_and_record(model, x, "sequence", (snn.LIFRecurrentCell,))
    counts = count_model(model, x, input_mode="sequence")
    _, recurrent_acs, _ = brute_recurrent(model.cell, seen.inputs["cell"], seen.outputs["cell"])
    assert recurrent_acs > 0
    assert counts.layer("cell.recurrent_weights").synops == recurrent_acs


def test_sequence_modules_count_like_their_cells() -> None:
    """LIF / LI / IAF / LIFRecurrent on [T, B, ...] give the counts of the stepped cells."""
    torch.manual_seed(4)
    linear = nn.Linear(5, 6)
    recurrent = snn.LIFRecurrentCell(6, 4)
    with torch.no_grad():
        linear.weight.mul_(20)
        recurrent.input_weights.mul_(10)
    sequence = snn.SequentialState(
        snn.Lift(linear), snn.LIF(), snn.IAF(), snn.LIFRecurrent(
            6, 4, input_weights=recurrent.input_weights, recurrent_weights=recurrent.recurrent_weights
        ), snn.Lift(nn.Linear(4, 3)), snn.LI(),
    )  # fmt: skip
    cells = snn.SequentialState(
        linear, snn.LIFCell(), snn.IAFCell(), recurrent, sequence[4].lifted_module, snn.LICell()
    )
    x = torch.rand(T, 3, 5)
    whole = count_model(sequence, x, input_mode="time-major")
    stepped = count_model(cells, x, input_mode="sequence")
    assert whole.timesteps == stepped.timesteps == T
    names = {"0.lifted_module": "0", "4.lifted_module": "4"}
    for row in whole.layers:
        other = stepped.layer(names.get(row.name, row.name))
        for field in ("synops", "synops_dense", "macs", "macs_dense", "neuron_updates", "spikes"):
            assert getattr(row, field) == getattr(other, field), (row.name, field)
        assert (row.kind, row.steps) == (other.kind, other.steps)
    assert whole.layer("1").spikes > 0 and whole.layer("3.recurrent_weights").synops_dense


def test_residual_add_is_counted_and_unhooked_ops_are_noted(norse) -> None:
    """The functional x + y of a block is counted exactly; an uncountable functional op is
    named in the notes; bookkeeping whose result the model ignores is not counted."""
    model = norse.models()["residual"]
    x, _ = norse.inputs("residual", T)
    counts = count_model(model, x, timesteps=T)
    add = counts.layer("0.add")
    assert (add.kind, add.adds, add.steps) == ("add", T * x.numel(), T)
    assert counts.layer("0.lif2").spikes > 0
    assert any("functional operations in forward methods" in note for note in counts.notes)

    class Noisy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lif = snn.LIFBoxCell()
            self.fc = nn.Linear(4, 2)

        def forward(self, x, state=None):
            z, state = self.lif(x * 3.0, state)
            self.spike_total = z.sum()  # bookkeeping: not part of the inference
            return self.fc(torch.nn.functional.softmax(z, dim=1)), state

    noisy = count_model(Noisy(), torch.rand(2, 4), timesteps=T)
    assert noisy.layer("mul").mults == T * 2 * 4
    assert "sum" not in [row.name for row in noisy.layers]
    assert any("NOT COUNTED: functional 'softmax'" in note for note in noisy.notes)
    assert any("'sum'" in note and "does not use" in note for note in noisy.notes)


def test_input_modes_fail_clearly() -> None:
    model = snn.SequentialState(nn.Linear(3, 2), snn.LIFCell())
    x = torch.rand(4, 3)
    with pytest.raises(ConfigError, match="input_mode='static'"):
        count_model(model, x, timesteps=2, input_mode="batch")
    with pytest.raises(ConfigError, match="timesteps=T"):
        count_model(model, x, input_mode="static")
    with pytest.raises(ConfigError, match="does not match"):
        count_model(model, torch.rand(3, 4, 3), input_mode="sequence", timesteps=5)
    with pytest.raises(ConfigError, match=r"\[T, N, \.\.\.\]"):
        count_model(model, x, input_mode="sequence")
    with pytest.raises(UnknownNameError, match="batch, sequence, static, time-major"):
        count_model(model, x, input_mode="steps")


def test_unsupported_norse_module_is_named() -> None:
    with pytest.raises(UnsupportedModuleError, match="LIFAdExCell"):
        count_model(
            snn.SequentialState(nn.Linear(3, 2), snn.LIFAdExCell()), torch.rand(2, 3), timesteps=2
        )


def test_energy_report_counts_a_norse_model(norse, tiny_snn, images) -> None:
    model = norse.models()["conv"]
    x, _ = norse.inputs("conv", T)
    report = energy_report(model, images=x, timesteps=T, profiles="loihi,45nm-int8")
    assert report.snn.timesteps == T and report.snn.samples == 3
    counts = count_model(model, x, timesteps=T)
    assert report.snn.totals["synops"] == counts.per_sample("synops") > 0
    assert any("stepped T = 4" in note for note in report.snn.notes)
    events, _ = norse.inputs("box", T)
    by_events = energy_report(norse.models()["box"], images=events, input_mode="sequence")
    assert by_events.snn.timesteps == T
    # the SE-SNN runs its own T: timesteps does not step it, and a different T is refused
    plain = energy_report(tiny_snn, images=images, profiles="loihi")
    same = energy_report(tiny_snn, images=images, profiles="loihi", timesteps=4)
    assert plain.snn.totals == same.snn.totals
    with pytest.raises(ConfigError, match="runs its own T = 4"):
        energy_report(tiny_snn, images=images, profiles="loihi", timesteps=3)
