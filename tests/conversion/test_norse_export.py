"""Norse 1.1.0 models -> NIR -> our runtime, checked against Norse's own forward.

The reference is always the Norse model itself, run the way a researcher runs it (Cells:
one ``model(x[t], state)`` call per step, threading the state; sequence modules: one
call on ``[T, B, ...]``), with forward hooks recording every module's output. The
exported graph is written with ``write_nir``, read back with stock ``nir.read`` (nir
1.0.8, type-checked: the files are portable) and run by the ``torch`` target /
``load_nir``; spikes must match spike for spike, readout voltages to float32 rounding.
Every test checks that the compared layers actually fire.
"""

from __future__ import annotations

import nir
import norse.torch as snn
import numpy as np
import pytest
import torch
from norse.torch.functional.reset import reset_subtract
from torch import nn

from conversion.nir_export import export_nir, graph_summary, to_nir
from conversion.nir_runtime import load_nir
from neurall_neuro.errors import ConversionError, UnsupportedModuleError

T, B = 8, 3


def binary(*shape: int, p: float = 0.5, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=generator) < p).float()


def boost(model: nn.Module, factor: float, bias: float | None = None) -> nn.Module:
    """Scale every weight (and set every bias to ``bias`` plus noise) so that untrained
    layers fire."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "weight" in name:
                parameter.mul_(factor)
            elif bias is not None and name.endswith("bias"):
                parameter.uniform_(bias - 0.5, bias + 0.5)
    return model


def norse_reference(
    model: nn.Module, x: torch.Tensor, sequence: bool = False
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Norse's own forward: the output ``[T, B, ...]`` and every submodule's output."""
    records: dict[str, list[torch.Tensor]] = {}

    def hook(name: str):
        def record(module, inputs, output):
            value = output[0] if isinstance(output, tuple) else output
            records.setdefault(name, []).append(value.detach().clone())

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            if sequence:
                out = model(x)
                out = out[0] if isinstance(out, tuple) else out
            else:
                state, steps = None, []
                for x_t in x:
                    y = model(x_t, state)
                    y, state = y if isinstance(y, tuple) else (y, None)
                    steps.append(y)
                out = torch.stack(steps)
    finally:
        for handle in handles:
            handle.remove()
    stack = (lambda v: v[0]) if sequence else torch.stack
    return out, {name: stack(values) for name, values in records.items()}


def export_and_run(model: nn.Module, x: torch.Tensor, example: torch.Tensor, tmp_path):
    """Export to a file, read it back with stock nir.read, run it on the torch target."""
    from hw_targets.registry import get_target

    path = tmp_path / "model.nir"
    graph = export_nir(model, path, example_input=example)
    back = nir.read(path)  # stock reader, type-checked
    assert sorted(back.nodes) == sorted(graph.nodes)
    run = load_nir(path).run(x, record=True)
    spiking = load_nir(back).spiking_nodes()
    target = get_target("torch").compile(back, timesteps=x.shape[0], record=spiking).run(x)
    for name in spiking:  # the torch target runs the file read by nir.read the same way
        assert np.array_equal(target.spikes[name], run.recorded[name].numpy()), name
    return graph, run


def assert_spikes_equal(run, reference: dict[str, torch.Tensor], layers: list[str], least=8):
    for layer in layers:
        ours, theirs = run.recorded[layer], reference[layer]
        assert ours.shape == theirs.shape, layer
        assert theirs.sum() >= least, f"{layer} fires too little to test: {theirs.sum()}"
        mismatches = int((ours != theirs).sum())
        assert mismatches == 0, f"{layer}: {mismatches} of {theirs.numel()} spikes differ"


# ------------------------------------------------------------------ the researcher's models


def test_conv_lif_cells_with_li_readout(tmp_path):
    torch.manual_seed(0)
    model = boost(
        snn.SequentialState(
            nn.Conv2d(1, 4, 3, padding=1),
            snn.LIFCell(),
            nn.AvgPool2d(2),
            nn.Conv2d(4, 6, 3, padding=1),
            snn.LIFCell(),
            nn.Flatten(),
            nn.Linear(6 * 4 * 4, 5),
            snn.LICell(),
        ),
        6.0,
    )
    boost(model[3], 4.0)  # the pooled spikes are small currents
    x = binary(T, B, 1, 8, 8)
    want, layers = norse_reference(model, x)
    graph, run = export_and_run(model, x, x[0], tmp_path)
    types = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert types["1"] == types["4"] == "CubaLIF" and types["7"] == "CubaLI"
    assert graph_summary(graph)["dt"] == 1e-3  # Norse's dt, taken from the modules
    assert (
        graph.nodes["1"].metadata["dt"] == 1e-3 and graph.nodes["1"].metadata["norse"] == "LIFCell"
    )
    np.testing.assert_allclose(graph.nodes["1"].w_in, graph.nodes["1"].tau_syn / 1e-3)
    assert_spikes_equal(run, layers, ["1", "4"])
    torch.testing.assert_close(run.output, want, rtol=1e-5, atol=1e-5)
    assert want.abs().max() > 0.1


def test_lif_box_conv_net(tmp_path):
    torch.manual_seed(1)
    model = boost(
        snn.SequentialState(
            nn.Conv2d(1, 4, 3, padding=1),
            snn.LIFBoxCell(),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * 4 * 4, 6),
            snn.LIFBoxCell(),
        ),
        8.0,
    )
    boost(model[4], 2.0, bias=1.5)
    x = binary(T, B, 1, 8, 8, seed=1)
    want, layers = norse_reference(model, x)
    graph, run = export_and_run(model, x, x[0], tmp_path)
    assert isinstance(graph.nodes["1"], nir.LIF) and isinstance(graph.nodes["5"], nir.LIF)
    assert_spikes_equal(run, layers, ["1", "5"])
    assert torch.equal(run.output, want)


class ResidualBlock(nn.Module):
    """conv -> LIFBoxCell -> conv + skip -> LIFBoxCell, threading its states."""

    def __init__(self, channels: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.lif1 = snn.LIFBoxCell()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.lif2 = snn.LIFBoxCell()

    def forward(self, x, state=None):
        s1, s2 = state if state is not None else (None, None)
        z1, s1 = self.lif1(self.conv1(x), s1)
        z2, s2 = self.lif2(self.conv2(z1) + x, s2)
        return z2, (s1, s2)


def test_residual_add_becomes_two_edges_into_the_neuron(tmp_path):
    torch.manual_seed(2)
    model = boost(ResidualBlock(), 4.0, bias=0.5)
    x = binary(T, B, 2, 8, 8, seed=2) * 2
    want, layers = norse_reference(model, x)
    graph, run = export_and_run(model, x, x[0], tmp_path)
    assert ("conv2", "lif2") in graph.edges and ("input", "lif2") in graph.edges
    assert_spikes_equal(run, layers, ["lif1", "lif2"])
    assert torch.equal(run.output, want)


def test_recurrent_lif_cell_linear_li(tmp_path):
    torch.manual_seed(3)
    model = snn.SequentialState(snn.LIFRecurrentCell(12, 24), nn.Linear(24, 4), snn.LICell())
    boost(model, 3.0)
    x = binary(10, B, 12, seed=3)
    want, layers = norse_reference(model, x)
    graph, run = export_and_run(model, x, x[0], tmp_path)
    assert ("0", "0.recurrent") in graph.edges and ("0.recurrent", "0") in graph.edges
    assert graph_summary(graph)["recurrent"]
    assert graph.nodes["0.recurrent"].metadata["autapses"] is False
    assert_spikes_equal(run, layers, ["0"])
    # The recurrence matters: without it the spikes differ.
    graph.nodes["0.recurrent"].weight = np.zeros_like(graph.nodes["0.recurrent"].weight)
    assert not torch.equal(load_nir(graph).run(x, record=True).recorded["0"], layers["0"])
    torch.testing.assert_close(run.output, want, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ the other cells


def test_iaf_cell_and_li_box_readout(tmp_path):
    torch.manual_seed(4)
    model = snn.SequentialState(
        nn.Linear(10, 16),
        snn.IAFCell(snn.IAFParameters(v_th=torch.tensor(1.5), v_reset=torch.tensor(0.25))),
        nn.Linear(16, 3),
        snn.LIBoxCell(),
    )
    boost(model, 2.0)
    x = binary(T, B, 10, seed=4)
    want, layers = norse_reference(model, x)
    graph, run = export_and_run(model, x, x[0], tmp_path)
    assert isinstance(graph.nodes["1"], nir.IF) and isinstance(graph.nodes["3"], nir.LI)
    np.testing.assert_allclose(graph.nodes["1"].v_threshold, 1.25)  # shifted by v_reset
    assert_spikes_equal(run, layers, ["1"])
    assert torch.equal(run.output, want)  # LIBoxCell: the same float operations as Norse


def test_lif_refrac_cell_without_refractory_period_is_a_lif_cell(tmp_path):
    torch.manual_seed(5)
    p = snn.LIFRefracParameters(snn.LIFParameters(), rho_reset=torch.tensor(0.0))
    model = boost(snn.SequentialState(nn.Linear(6, 8), snn.LIFRefracCell(p)), 12.0)
    x = binary(T, B, 6, seed=5)
    _, layers = norse_reference(model, x)
    graph, run = export_and_run(model, x, x[0], tmp_path)
    assert isinstance(graph.nodes["1"], nir.CubaLIF)
    assert_spikes_equal(run, layers, ["1"])


def test_per_neuron_parameters_and_nonzero_leak(tmp_path):
    torch.manual_seed(6)
    shape = (3, 6, 6)
    lif_p = snn.LIFParameters(
        tau_syn_inv=torch.empty(shape).uniform_(100, 400),
        tau_mem_inv=torch.empty(3, 1, 1).uniform_(50, 200),  # per channel, broadcast
        v_leak=torch.empty(shape).uniform_(-0.3, 0.3),
        v_th=torch.empty(shape).uniform_(0.6, 1.2),
        v_reset=torch.empty(shape).uniform_(-0.5, 0.1),
    )
    box_p = snn.LIFBoxParameters(
        tau_mem_inv=torch.empty(4).uniform_(100, 500),
        v_leak=torch.tensor(0.2),
        v_th=torch.empty(4).uniform_(0.5, 1.0),
    )
    model = snn.SequentialState(
        nn.Conv2d(1, 3, 3, padding=1),
        snn.LIFCell(lif_p),
        nn.Flatten(),
        nn.Linear(3 * 6 * 6, 4),
        snn.LIFBoxCell(box_p),
    )
    boost(model, 6.0)
    x = binary(12, B, 1, 6, 6, seed=6)
    want, layers = norse_reference(model, x)
    graph, run = export_and_run(model, x, x[0], tmp_path)
    lif = graph.nodes["1"]
    assert lif.tau_mem.shape == shape and np.all(lif.v_leak == 0)  # shifted by v_leak
    np.testing.assert_allclose(
        lif.v_threshold, (lif_p.v_th - lif_p.v_leak).double().numpy(), rtol=1e-6
    )
    assert_spikes_equal(run, layers, ["1", "4"])
    assert torch.equal(run.output, want)


def test_sequence_modules_take_time_major_input(tmp_path):
    """Norse's non-Cell modules (LIF, LI, Lift) consume [T, B, ...] in one call."""
    torch.manual_seed(7)
    model = snn.SequentialState(
        snn.Lift(nn.Conv2d(1, 4, 3, padding=1)),
        snn.LIF(),
        snn.Lift(nn.AvgPool2d(2)),
        nn.Flatten(2),  # dims count time and batch
        nn.Linear(4 * 4 * 4, 3),
        snn.LI(),
    )
    boost(model, 6.0)
    x = binary(T, B, 1, 8, 8, seed=7)
    want, layers = norse_reference(model, x, sequence=True)
    graph, run = export_and_run(model, x, x, tmp_path)
    assert graph.metadata["model_input"] == "[T, B, ...] sequence"
    assert isinstance(graph.nodes["1"], nir.CubaLIF) and isinstance(graph.nodes["0"], nir.Conv2d)
    assert_spikes_equal(run, layers, ["1"])
    torch.testing.assert_close(run.output, want, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ graphs: branches


class Branches(nn.Module):
    """Two branches from the input joined by a sum and by a channel concatenation."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 3, 3, padding=1)
        self.b = nn.Sequential(nn.Conv2d(1, 3, 1), nn.AvgPool2d(1))
        self.lif_a = snn.LIFBoxCell()
        self.lif_b = snn.LIFBoxCell()
        self.join = nn.Conv2d(3, 2, 1)
        self.lif_sum = snn.LIFBoxCell(snn.LIFBoxParameters(tau_mem_inv=torch.tensor(500.0)))
        self.lif_cat = snn.LIFCell(snn.LIFParameters(tau_mem_inv=torch.tensor(500.0)))

    def forward(self, x, state=None):
        s = state if state is not None else [None] * 4
        za, s0 = self.lif_a(self.a(x), s[0])
        zb, s1 = self.lif_b(self.b(x), s[1])
        z_sum, s2 = self.lif_sum(self.join(za + zb) - 0.5 * self.join(zb), s[2])
        z_cat, s3 = self.lif_cat(torch.cat([za, 2 * zb], dim=1), s[3])
        return torch.cat([z_sum, z_cat], 1), [s0, s1, s2, s3]


def test_branches_joining_by_sum_difference_and_concatenation(tmp_path):
    torch.manual_seed(8)
    model = boost(Branches(), 4.0, bias=1.0)
    with torch.no_grad():
        model.b[0].weight.abs_()
        model.join.bias.fill_(1.5)
    x = binary(T, B, 1, 6, 6, seed=8)
    want, layers = norse_reference(model, x)
    graph, run = export_and_run(model, x, x[0], tmp_path)
    assert len([e for e in graph.edges if e[1] == "lif_sum"]) == 2  # join + scaled join@1
    assert "join@1" in graph.nodes  # a module called twice: two nodes
    assert_spikes_equal(run, layers, ["lif_a", "lif_b", "lif_sum", "lif_cat"])
    assert torch.equal(run.output, want)


# ------------------------------------------------------------------ refusals


class Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.lif = snn.LIFBoxCell()

    def forward(self, x, state=None):
        z, state = self.lif(self.fc(x), state)
        return torch.mul(z, x), state


def test_product_of_two_signals_is_refused_naming_the_op():
    with pytest.raises(UnsupportedModuleError) as info:
        to_nir(Gated(), example_input=torch.zeros(1, 4))
    error = info.value
    assert error.module_class == "torch.mul" and error.path == "<model root>"
    assert "product of two signals" in str(error) and "a + b" in str(error)
    assert "LIFBoxCell" in error.supported and "SequentialState" in error.supported

    class Viewed(Gated):
        def forward(self, x, state=None):
            z, state = self.lif(self.fc(x), state)
            return z.view(z.shape[0], 2, 2), state

    with pytest.raises(UnsupportedModuleError, match=r"Tensor\.view at '<model root>'.*reshape"):
        to_nir(Viewed(), example_input=torch.zeros(1, 4))

    class Stacked(Gated):
        def forward(self, x, state=None):
            z, state = self.lif(self.fc(x), state)
            return torch.cat([z, x], dim=0), state

    with pytest.raises(UnsupportedModuleError, match=r"torch\.cat.*dim 0 is the batch"):
        to_nir(Stacked(), example_input=torch.zeros(1, 4))


def test_unsupported_modules_and_options_are_named():
    model = snn.SequentialState(nn.Linear(4, 4), nn.ReLU(), snn.LSNNCell())
    with pytest.raises(UnsupportedModuleError, match=r"ReLU at '1'.*also unsupported: LSNNCell"):
        to_nir(model, example_input=torch.zeros(1, 4))
    with pytest.raises(UnsupportedModuleError, match=r"LSNNCell at '0'.*adaptive threshold"):
        to_nir(snn.SequentialState(snn.LSNNCell()), example_input=torch.zeros(1, 4))
    refrac = snn.LIFRefracCell(snn.LIFRefracParameters(rho_reset=torch.tensor(3.0)))
    with pytest.raises(UnsupportedModuleError, match=r"LIFRefracCell at '0'.*refractory"):
        to_nir(snn.SequentialState(refrac), example_input=torch.zeros(1, 4))
    subtract = snn.LIFBoxCell(snn.LIFBoxParameters(reset_method=reset_subtract))
    with pytest.raises(UnsupportedModuleError, match=r"reset_subtract"):
        to_nir(snn.SequentialState(subtract), example_input=torch.zeros(1, 4))
    leaky = snn.LICell(snn.LIParameters(v_leak=torch.tensor(0.5)))
    with pytest.raises(UnsupportedModuleError, match=r"LICell at '1'.*v_leak"):
        to_nir(snn.SequentialState(nn.Linear(4, 2), leaky), example_input=torch.zeros(1, 4))
    mixed = snn.SequentialState(snn.LIFCell(dt=1e-3), snn.LIFBoxCell(dt=1e-4))
    with pytest.raises(ConversionError, match=r"different dt"):
        to_nir(mixed, example_input=torch.zeros(1, 4))


def test_a_forward_that_drops_a_cell_state_or_an_output_is_refused():
    class Forgetful(Gated):
        def forward(self, x):
            z, _ = self.lif(self.fc(x))  # Norse restarts the cell at every call
            return z

    with pytest.raises(ConversionError, match=r"LIFBoxCell at 'lif'.*restarts the cell"):
        to_nir(Forgetful(), example_input=torch.zeros(1, 4))

    class Dropping(Gated):
        def forward(self, x, state=None):
            z, _ = self.lif(self.fc(x), state)
            return z, None

    with pytest.raises(ConversionError, match=r"LIFBoxCell at 'lif' returns a state.*discards"):
        to_nir(Dropping(), example_input=torch.zeros(1, 4))
    with pytest.raises(ConversionError, match=r"LIFBoxCell at '1' is a Norse Cell"):
        to_nir(nn.Sequential(nn.Linear(4, 4), snn.LIFBoxCell()), example_input=torch.zeros(1, 4))

    class TwoOutputs(Gated):
        def forward(self, x, state=None):
            z, state = self.lif(self.fc(x), state)
            return z, self.fc(x), state

    with pytest.raises(ConversionError, match="several signals"):
        to_nir(TwoOutputs(), example_input=torch.zeros(1, 4))


def test_a_time_loop_in_forward_is_refused_with_advice():
    class Looping(nn.Module):
        def __init__(self):
            super().__init__()
            self.lif = snn.LIFBoxCell()

        def forward(self, x):
            state, out = None, []
            for x_t in x:
                z, state = self.lif(x_t, state)
                out.append(z)
            return torch.stack(out)

    with pytest.raises(ConversionError, match="per-step model"):
        to_nir(Looping(), example_input=torch.zeros(2, 1, 4))
