"""Named dt conventions (:mod:`conversion.dt_conventions`): the registry, its claims against
the installed frameworks, the one resolution function and every reader that uses it."""

from __future__ import annotations

import inspect
import math

import nir
import numpy as np
import pytest
import torch

from conversion.dt_conventions import (
    DT_CONVENTIONS,
    DtConvention,
    apply_dt,
    get_dt_convention,
    list_dt_conventions,
    parse_dt,
    resolve_graph_dt,
)
from conversion.nir_io import graph_metadata, read_nir, write_nir
from conversion.nir_runtime import load_nir
from neurall_neuro.errors import (
    ConfigError,
    ConversionError,
    DuplicateNameError,
    GraphFileError,
    UnknownNameError,
)
from neurall_neuro.models.neurons import DEFAULT_DT

BUILT_IN = ["lava-dl", "neurall", "norse", "rockpool", "sinabs", "snntorch"]


def if_graph(metadata: dict | None = None, weight: float = 0.05) -> nir.NIRGraph:
    """Input (3, 4, 4) -> Flatten -> Affine (48 -> 5) -> IF (r = 1, v_th = 1) -> Output:
    sinabs's way of writing an integrate-and-fire layer (``v += r I`` per step)."""
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3, 4, 4])}),
        "flat": nir.Flatten(input_type={"input": np.array([3, 4, 4])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(
            weight=np.full((5, 48), weight, dtype=np.float32), bias=np.zeros(5, dtype=np.float32)
        ),
        "if": nir.IF(r=np.ones(5), v_threshold=np.ones(5)),
        "output": nir.Output(output_type={"output": np.array([5])}),
    }
    edges = [("input", "flat"), ("flat", "fc"), ("fc", "if"), ("if", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(metadata or {}))


def cuba_graph(tau_mem: np.ndarray, r: np.ndarray) -> nir.NIRGraph:
    """Input (2) -> Linear -> CubaLIF -> Output, rockpool's export of a LIFTorch layer."""
    n = tau_mem.size
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2])}),
        "w": nir.Linear(weight=np.ones((n, 2), dtype=np.float32)),
        "lif": nir.CubaLIF(
            tau_syn=np.full(n, 0.01),
            tau_mem=tau_mem,
            r=r,
            v_leak=np.zeros(n),
            v_threshold=np.ones(n),
        ),
        "output": nir.Output(output_type={"output": np.array([n])}),
    }
    return nir.NIRGraph(nodes=nodes, edges=[("input", "w"), ("w", "lif"), ("lif", "output")])


# ----------------------------------------------------------------------------- registry


def test_the_built_in_conventions_are_registered_and_documented() -> None:
    assert list_dt_conventions() == BUILT_IN
    for name in BUILT_IN:
        convention = get_dt_convention(name.upper())
        assert convention.name == name
        for text in (
            convention.summary,
            convention.lif_step,
            convention.if_step,
            convention.source,
        ):
            assert text.strip(), f"{name}: empty documentation"
    fixed = {name: get_dt_convention(name).dt for name in BUILT_IN}
    assert fixed == {
        "lava-dl": 1e-4,
        "neurall": None,  # the graph's own dt
        "norse": 1e-3,
        "rockpool": None,  # read back from the graph
        "sinabs": 1.0,
        "snntorch": 1e-4,
    }


def test_unknown_and_duplicate_names() -> None:
    with pytest.raises(UnknownNameError, match="valid options: lava-dl, neurall, norse"):
        get_dt_convention("brian2")
    with pytest.raises(DuplicateNameError):
        DT_CONVENTIONS.register("norse", get_dt_convention("norse"))
    with pytest.raises(ConfigError, match="exactly one of dt and rule"):
        DtConvention("x", "x", "x", "x", "x", "x")


def test_norse_default_dt_is_the_installed_one() -> None:
    from norse.torch.functional.lif_box import lif_box_feed_forward_step
    from norse.torch.utils.import_nir import from_nir

    for function in (from_nir, lif_box_feed_forward_step):
        assert inspect.signature(function).parameters["dt"].default == get_dt_convention("norse").dt


def test_snntorch_writes_and_reads_nir_at_1e_4() -> None:
    """snnTorch 1.0.0's exporter writes ``tau = dt / (1 - beta)``, ``r = tau / dt`` with its
    hard-coded dt: ``tau / r`` is that dt; its importer hard-codes the same value."""
    snntorch = pytest.importorskip("snntorch")
    from snntorch import export_nir, import_nir

    leaky = snntorch.Leaky(beta=torch.tensor([0.5, 0.8]), threshold=torch.ones(2))
    node = export_nir._extract_snntorch_module(leaky)
    np.testing.assert_allclose(node.tau / node.r, get_dt_convention("snntorch").dt)
    assert "dt = 1e-4" in inspect.getsource(import_nir._nir_to_snntorch_module)


def test_snntorch_convention_turns_our_lif_into_its_leaky() -> None:
    """A LIF written the snnTorch way (tau = dt/(1-beta), r = tau/dt), run at
    dt="snntorch", is snnTorch's ``mem = beta mem + I`` (reset to zero)."""
    beta, dt = 0.75, 1e-4
    tau = dt / (1 - beta)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3])}),
        "lif": nir.LIF(
            tau=np.full(3, tau),
            r=np.full(3, tau / dt),
            v_leak=np.zeros(3),
            v_threshold=np.ones(3),
            v_reset=np.zeros(3),
        ),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    graph = nir.NIRGraph(nodes=nodes, edges=[("input", "lif"), ("lif", "output")])
    x = torch.rand(12, 2, 3)
    ours = load_nir(graph, dt="snntorch").run(x).output
    mem, expected = torch.zeros(2, 3), []
    for i_t in x:
        mem = beta * mem + i_t
        z = (mem > 1).float()
        mem = mem * (1 - z)
        expected.append(z)
    assert torch.equal(ours, torch.stack(expected)) and ours.any()


# ----------------------------------------------------------------------------- parse_dt


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1e-3, 1e-3), (1, 1.0), ("1e-4", 1e-4), (" 0.5 ", 0.5), ("SinAbs", "sinabs"), (None, None)],
)
def test_parse_dt(value, expected) -> None:
    assert parse_dt(value) == expected


@pytest.mark.parametrize("value", [0, -1e-4, "0", "nan", float("inf")])
def test_parse_dt_refuses_non_positive_seconds(value) -> None:
    with pytest.raises(ConversionError, match="dt must be > 0"):
        parse_dt(value)


@pytest.mark.parametrize("value", ["brian", True, [1e-4]])
def test_parse_dt_refuses_other_values_listing_the_conventions(value) -> None:
    with pytest.raises(ConfigError, match="seconds|convention"):
        parse_dt(value)
    with pytest.raises(ConfigError, match="snntorch"):
        parse_dt("brian")


# ----------------------------------------------------------------------------- resolution


def test_graph_metadata_wins_unless_the_user_overrides() -> None:
    graph = if_graph({"dt": 1e-4})
    assert resolve_graph_dt(graph).dt == 1e-4
    assert "metadata" in resolve_graph_dt(graph).source
    assert resolve_graph_dt(graph, dt=2e-3).dt == 2e-3
    assert resolve_graph_dt(graph, dt="sinabs").dt == 1.0
    assert resolve_graph_dt(graph, dt_convention="norse").dt == 1e-3
    assert resolve_graph_dt(graph, dt="neurall").dt == 1e-4  # the graph's own


def test_node_metadata_is_used_when_the_graph_has_none() -> None:
    graph = if_graph()
    assert resolve_graph_dt(graph).dt is None
    graph.nodes["if"].metadata = {"dt": 0.25}
    assert resolve_graph_dt(graph).dt == 0.25
    assert resolve_graph_dt(graph, dt="neurall").dt == 0.25


def test_neurall_convention_falls_back_to_the_project_default() -> None:
    assert resolve_graph_dt(if_graph(), dt="neurall").dt == DEFAULT_DT


def test_conflicting_user_values_name_both() -> None:
    graph = if_graph({"dt": 1e-4})
    with pytest.raises(ConfigError, match=r"dt=0\.001.*dt_convention='sinabs'"):
        resolve_graph_dt(graph, dt=1e-3, dt_convention="sinabs")
    with pytest.raises(ConfigError, match="dt='norse'.*dt_convention='snntorch'"):
        resolve_graph_dt(graph, dt="norse", dt_convention="snntorch")
    # agreeing values are fine
    assert resolve_graph_dt(graph, dt=1e-4, dt_convention="snntorch").dt == 1e-4
    with pytest.raises(ConfigError, match="dt_convention must be a convention name"):
        resolve_graph_dt(graph, dt_convention="1e-3")


def test_nodes_that_disagree_on_dt_are_a_graph_error() -> None:
    graph = cuba_graph(np.full(2, 0.02), np.full(2, 1.0))
    graph.nodes["lif"].metadata = {"dt": 1e-3}
    graph.nodes["w"].metadata = {}
    extra = nir.LIF(
        tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2), metadata={"dt": 1}
    )
    graph.nodes["lif2"] = extra
    graph.edges = [("input", "w"), ("w", "lif"), ("lif", "lif2"), ("lif2", "output")]
    with pytest.raises(GraphFileError, match="disagree on dt"):
        resolve_graph_dt(graph)


def test_rockpool_reads_dt_back_from_r() -> None:
    """rockpool writes r = tau exp(-dt/tau) / dt and reads dt = min(tau / (1 + r))."""
    dt = 1e-3
    tau = np.array([0.02, 0.05, 0.1])
    graph = cuba_graph(tau, tau * np.exp(-dt / tau) / dt)
    found = resolve_graph_dt(graph, dt="rockpool").dt
    assert found == pytest.approx(float(np.min(tau / (1 + tau * np.exp(-dt / tau) / dt))))
    assert math.isclose(found, dt, rel_tol=0.03)
    # no LI/LIF/Cuba node to read it from: LIFTorch's default step
    assert resolve_graph_dt(if_graph(), dt="rockpool").dt == 1e-3


# ----------------------------------------------------------------------------- the readers


def test_load_nir_with_a_convention_name_makes_an_if_graph_fire() -> None:
    """An IF graph written for dt = 1 (sinabs): our default step (1e-4) adds a ten-thousandth
    of the input per step and never fires; the sinabs convention fires."""
    graph = if_graph({"dt": 1e-4})
    x = torch.rand(2, 3, 4, 4)
    silent = load_nir(graph).run(x, timesteps=6, count_spikes=True)
    firing = load_nir(graph, dt="sinabs").run(x, timesteps=6, count_spikes=True)
    assert silent.spike_counts["if"].sum() == 0
    assert firing.spike_counts["if"].sum() > 0
    same = load_nir(graph, dt_convention="sinabs").run(x, timesteps=6).output
    assert torch.equal(same, firing.output)
    with pytest.raises(ConfigError, match="conflicting time steps"):
        load_nir(graph, dt=1e-3, dt_convention="sinabs")


def test_a_graph_without_dt_asks_for_one() -> None:
    with pytest.raises(GraphFileError, match=r"load_nir\(graph, dt=\.\.\.\)"):
        load_nir(if_graph())
    assert load_nir(if_graph(), dt="sinabs").dt == 1.0


def test_torch_target_takes_dt_and_dt_convention() -> None:
    from hw_targets.registry import get_target

    target = get_target("torch")
    assert "dt_convention" in target.valid_options()
    graph = if_graph({"dt": 1e-4})
    x = torch.rand(2, 3, 4, 4)
    silent = target.compile(graph, timesteps=4).run(x)
    firing = target.compile(graph, timesteps=4, dt="sinabs").run(x)
    also = target.compile(graph, timesteps=4, dt_convention="sinabs").run(x)
    assert silent.spike_counts["if"].sum() == 0 < firing.spike_counts["if"].sum()
    assert np.array_equal(firing.output_spikes, also.output_spikes)
    assert target.check(if_graph()) and not target.check(if_graph({"dt": 1.0}))


def test_the_loihi_mapping_resolves_names_through_the_same_function() -> None:
    from hw_targets.loihi.mapping import neuron_spec

    graph = if_graph({"dt": 1e-4})
    dt = resolve_graph_dt(graph, dt="sinabs").dt
    assert neuron_spec("if", graph.nodes["if"], dt).alpha == 1.0  # weights times dt r


def test_apply_dt_stamps_a_copy(tmp_path) -> None:
    graph = if_graph({"dt": 1e-4})
    assert apply_dt(graph) is graph
    stamped = apply_dt(graph, "sinabs")
    assert graph.metadata["dt"] == 1e-4 and not graph.nodes["if"].metadata
    assert stamped.metadata["dt"] == 1.0 and stamped.nodes["if"].metadata["dt"] == 1.0
    assert "sinabs" in stamped.metadata["dt_source"]
    write_nir(stamped, tmp_path / "g.nir")
    back = read_nir(tmp_path / "g.nir")
    assert graph_metadata(back)["dt"] == 1.0 and load_nir(back).dt == 1.0


def test_energy_counts_a_graph_at_the_stated_dt() -> None:
    from energy.report import energy_report
    from energy.sources import NIRModel

    graph = if_graph({"dt": 1e-4})
    images = torch.rand(2, 3, 4, 4)
    spikes = {
        dt: energy_report(
            NIRModel(graph, images=images, timesteps=4, dt=dt), profiles="loihi"
        ).snn.totals["spikes"]
        for dt in (None, "sinabs")
    }
    assert spikes[None] == 0 and spikes["sinabs"] > 0


def test_the_cli_help_lists_every_convention() -> None:
    from neurall_neuro.cli.model_options import DT_CONVENTION_HELP, DT_HELP

    assert [name for name, _ in DT_CONVENTION_HELP] == [
        "neurall",
        "norse",
        "snntorch",
        "sinabs",
        "rockpool",
        "lava-dl",
    ]
    assert sorted(name for name, _ in DT_CONVENTION_HELP) == list_dt_conventions()
    assert all(name in DT_HELP for name in list_dt_conventions())
