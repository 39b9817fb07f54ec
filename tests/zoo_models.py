"""The reference zoo of issue 15 (point 6): eight tiny models and one measurement per column.

Shared by ``tests/zoo/test_zoo.py`` (asserts) and ``scripts/zoo_table.py`` (prints the
table). Builders are reused from the existing tests (loaded by path: the suite runs with
``--import-mode=importlib``): the Norse models of ``tests/energy/conftest.py``, the
IF/SumPool graph of ``tests/hw_targets/test_loihi_any_graph.py``, the firing tiny SE-SNNs
of :func:`tiny` (also used by ``tests/conversion/test_nir_portable.py``) and Norse's
stepped forward of ``tests/conversion/test_norse_export.py``. Every reference is
independent of the runtime it checks: Norse's / snnTorch's own forward, an explicit IF
loop, ``model.run``, snnTorch's importer, the brute-force fan-out enumeration of
``tests/energy/conftest.py``.

The snnTorch helpers (:data:`SNNTORCH_NODES`, :func:`snntorch_scores`) are shared with
``tests/conversion/test_nir_portable.py`` and ``tests/conversion/test_nir_snntorch.py``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

TESTS = Path(__file__).resolve().parent


def _load(name: str, relative: str) -> ModuleType:
    """Import a test helper file by path, once per process."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TESTS / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


energy_helpers = _load("zoo_energy_conftest", "energy/conftest.py")
norse_export = _load("zoo_norse_export", "conversion/test_norse_export.py")
any_graph = _load("zoo_loihi_any_graph", "hw_targets/test_loihi_any_graph.py")

#: Timesteps of the tiny SE-SNNs (:func:`tiny`).
TINY_T = 4
#: Node types snnTorch 1.0.0's import_from_nir maps (checked with nir 1.0.8).
SNNTORCH_NODES = {"Input", "Output", "Conv2d", "LIF", "AvgPool2d", "SumPool2d", "Flatten", "Affine"}


def tiny(name: str, overrides: dict, timesteps: int = TINY_T) -> nn.Module:
    """A tiny zoo model with realistic activity (BN statistics from data, biases that fire)."""
    from neurall_neuro.models.registry import get_model

    torch.manual_seed(0)
    model = get_model(name, input_size=16, channels=[4, 8, 8, 8], timesteps=timesteps, **overrides)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    model.train()
    with torch.no_grad():
        model.run(torch.randn(16, 3, 16, 16))
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.8, 2.0)
                module.bias.uniform_(0.0, 1.0)
        model.body.head_fc.weight.normal_(0.0, 1.0)
    return model.eval()


def snntorch_scores(
    graph_or_path: nir.NIRGraph | str | Path, x: torch.Tensor, steps: int | None = None
) -> torch.Tensor:
    """Mean over time of the output of snnTorch 1.0.0's importer, per sample ``[N, K]``.

    ``x``: images ``[N, ...]`` presented at each of ``steps`` steps, or (``steps=None``)
    events ``[T, N, ...]``, step ``t`` on ``x[t]``. One sample at a time (its ``Flatten``
    counts the batch: see ``tests/conversion/test_nir_snntorch.py``), states reset between
    samples with ``reset_mem``.
    """
    from snntorch.import_nir import import_from_nir

    graph = nir.read(graph_or_path) if isinstance(graph_or_path, str | Path) else graph_or_path
    with contextlib.redirect_stdout(io.StringIO()):  # the importer prints every parameter
        net = import_from_nir(graph)
    sequences = x if steps is None else x.unsqueeze(0).expand(steps, *x.shape)
    scores = []
    with torch.no_grad():
        for n in range(sequences.shape[1]):
            for module in net.modules():
                if hasattr(module, "reset_mem"):
                    module.reset_mem()
            outputs = [net(x_t[n].unsqueeze(0))[0] for x_t in sequences]  # batch 1
            scores.append(torch.stack(outputs).mean(0).reshape(-1))
    return torch.stack(scores)


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry: ``kind`` is ``norse``, ``snntorch``, ``nir`` or ``neurall``; inputs are
    events ``[T, B, *shape]`` except for ``neurall`` (images ``[B, 3, 16, 16]``)."""

    name: str
    kind: str
    build: Callable[[], Any]
    timesteps: int
    shape: tuple[int, ...]
    batch: int = 6

    def inputs(self, seed: int = 3, batch: int | None = None) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        b = batch or self.batch
        if self.kind == "neurall":
            return torch.rand(b, *self.shape, generator=g)
        return (torch.rand(self.timesteps, b, *self.shape, generator=g) < 0.35).float()


def _norse(name: str) -> Callable[[], nn.Module]:
    return lambda: energy_helpers.norse_models()[name]


def norse_box_firing() -> nn.Module:
    """The box-LIF model of ``tests/energy/conftest.py`` with its readout bias raised by 5:
    as built, its ``Linear -> LIFBoxCell`` readout never fires on these inputs (negative
    drive), which would make every output comparison trivial; with the bias each readout
    neuron fires 1-3 times in 6 steps."""
    model = energy_helpers.norse_models()["box"]
    with torch.no_grad():
        model[4].bias.add_(5.0)
    return model


def snntorch_net() -> nn.Module:
    """Conv2d -> Leaky -> AvgPool -> Flatten -> Linear -> Leaky (reset to zero, per-neuron
    beta/threshold as ``export_to_nir`` needs: DESIGN.md "Interop facts")."""
    import snntorch

    def leaky(shape: tuple[int, ...], beta: float) -> nn.Module:
        return snntorch.Leaky(
            beta=torch.full(shape, beta), threshold=torch.full(shape, 0.5), init_hidden=True,
            reset_mechanism="zero", reset_delay=False,
        )  # fmt: skip

    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), leaky((4, 8, 8), 0.75), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(64, 4), leaky((4,), 0.85),
    )  # fmt: skip
    with torch.no_grad():
        net[0].weight.mul_(3)
        net[4].weight.mul_(8)
    return net


def neurall(name: str) -> Callable[[], nn.Module]:
    return lambda: tiny(name, {})


ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in (
        ZooModel("norse-cuba-conv-li", "norse", _norse("conv"), 6, (1, 8, 8)),
        ZooModel("norse-box-lif", "norse", norse_box_firing, 6, (1, 8, 8)),
        ZooModel("norse-residual", "norse", _norse("residual"), 6, (2, 6, 6)),
        ZooModel("norse-recurrent", "norse", _norse("recurrent"), 8, (12,)),
        ZooModel("nir-if-sumpool", "nir", lambda: any_graph.nir_if_sumpool(6), 6, (2, 8, 8)),
        ZooModel("snntorch-conv", "snntorch", snntorch_net, 6, (1, 8, 8)),
        ZooModel("neurallnet", "neurall", neurall("neurallnet"), TINY_T, (3, 16, 16)),
        ZooModel("neurallnet-nose", "neurall", neurall("neurallnet-nose"), TINY_T, (3, 16, 16)),
    )
}


# ----------------------------------------------------------------------------- columns


def export(entry: ZooModel, model: Any, directory: Path) -> Path:
    """Write the entry's NIR file: ``export_nir`` (ours), snnTorch's ``export_to_nir`` or the
    hand-built graph, each through ``nir.write``."""
    from conversion.nir_export import export_nir

    path = directory / f"{entry.name}.nir"
    if entry.kind == "nir":
        nir.write(path, model)
    elif entry.kind == "snntorch":
        from snntorch.export_nir import export_to_nir

        with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints
            graph = export_to_nir(model, torch.zeros(1, *entry.shape), ignore_dims=[0])
        graph.metadata = {"dt": 1e-4}  # snnTorch's dt (its graphs store none)
        nir.write(path, graph)
    elif entry.kind == "norse":
        export_nir(model, path, example_input=entry.inputs()[0])
    else:
        export_nir(model, path)
    return path


def compile_run(target: str, graph: nir.NIRGraph, entry: ZooModel, x: torch.Tensor, **opts: Any):
    """Run ``x`` on a target (event input except for our image models), every layer recorded."""
    from hw_targets.registry import get_target

    if entry.kind != "neurall" and target != "torch":  # torch takes [T, B, ...] as events
        opts["input_mode"] = "events"
    deployed = get_target(target).compile(graph, timesteps=entry.timesteps, record="all", **opts)
    return deployed.run(x.numpy())


def if_reference(graph: nir.NIRGraph, x: torch.Tensor) -> dict[str, np.ndarray]:
    """The IF/SumPool graph by hand: ``v += r dt I``; spike and reset to 0 when ``v > th``;
    sum pool = 4 x average pool (2 x 2)."""
    dt, n = graph.metadata["dt"], graph.nodes
    import torch.nn.functional as F  # noqa: N812

    def conv(node: nir.Conv2d, s: torch.Tensor) -> torch.Tensor:
        w, b = torch.as_tensor(node.weight).float(), torch.as_tensor(node.bias).float()
        return F.conv2d(s, w, b, stride=1, padding=1)

    v1 = v2 = 0.0
    out: dict[str, list[torch.Tensor]] = {"if1": [], "if2": []}
    for x_t in x:
        v1 = v1 + torch.as_tensor(n["if1"].r * dt).float() * conv(n["c1"], x_t)
        z1 = (v1 > torch.as_tensor(n["if1"].v_threshold).float()).float()
        v1 = v1 * (1 - z1)
        p1 = F.avg_pool2d(z1, 2) * 4
        v2 = v2 + torch.as_tensor(n["if2"].r * dt).float() * conv(n["c2"], p1)
        z2 = (v2 > torch.as_tensor(n["if2"].v_threshold).float()).float()
        v2 = v2 * (1 - z2)
        out["if1"].append(z1)
        out["if2"].append(z2)
    return {k: torch.stack(v).numpy() for k, v in out.items()}


def snntorch_reference(net: nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    """snnTorch's own forward stepped over ``T`` (hidden states reset first), every ``Leaky``
    recorded by a hook under its module name (the NIR node name ``export_to_nir`` gives)."""
    import snntorch
    from snntorch import utils

    records: dict[str, list[torch.Tensor]] = {}
    handles = [
        m.register_forward_hook(lambda m, i, o, n=name: records.setdefault(n, []).append(o))
        for name, m in net.named_modules()
        if isinstance(m, snntorch.Leaky)
    ]
    utils.reset(net)
    with torch.no_grad():
        for x_t in x:
            net(x_t)
    for handle in handles:
        handle.remove()
    return {k: torch.stack(v).numpy() for k, v in records.items()}


def reference_spikes(entry: ZooModel, model: Any, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Per spiking layer ``[T, B, *shape]`` from the model's own forward (NIR node names)."""
    if entry.kind == "norse":
        _, layers = norse_export.norse_reference(model, x)
        return {k: v.numpy() for k, v in layers.items()}
    if entry.kind == "snntorch":
        return snntorch_reference(model, x)
    if entry.kind == "nir":
        return if_reference(model, x)
    from hw_targets.parity import reference_layer_names

    with torch.no_grad():
        run = model.run(x, timesteps=entry.timesteps, record=True)
    names = reference_layer_names(list(run.spikes))
    return {names[k]: v.numpy() for k, v in run.spikes.items()}


def spiking_nodes(graph: nir.NIRGraph) -> list[str]:
    """Names of the spike-emitting nodes (LIF, CubaLIF, IF)."""
    kinds = (nir.LIF, nir.CubaLIF, nir.IF)
    return sorted(n for n, node in graph.nodes.items() if isinstance(node, kinds))


def torch_vs_reference(entry: ZooModel, model: Any, graph: nir.NIRGraph) -> dict[str, int]:
    """Mismatching spikes per spiking layer: torch target on the file vs the model's forward."""
    x = entry.inputs()
    ref = reference_spikes(entry, model, x)
    run = compile_run("torch", graph, entry, x)
    return {
        k: int((ref[k].reshape(run.spikes[k].shape) != run.spikes[k]).sum())
        for k in spiking_nodes(graph)
        if k in ref  # the SE-SNN's model.run records its main layers and the SE AND neurons
    }


def float_vs_fixed(entry: ZooModel, graph: nir.NIRGraph) -> dict[str, float]:
    """torch target (float) vs loihi-emu (fixed point): per spiking layer the correlation of
    the per-sample spike counts (``corr:<layer>``), and the prediction agreement (or the
    fraction of equal output spikes) as ``agreement``."""
    x = entry.inputs(seed=9, batch=16)
    flt, fix = compile_run("torch", graph, entry, x), compile_run("loihi-emu", graph, entry, x)
    out: dict[str, float] = {}
    for layer in spiking_nodes(graph):
        a, b = flt.spike_counts[layer], fix.spike_counts[layer]
        same = np.array_equal(a, b) or (a.std() == 0 and b.std() == 0)
        out[f"corr:{layer}"] = 1.0 if same else float(np.corrcoef(a, b)[0, 1])
    if fix.scores is not None and flt.scores is not None:
        out["agreement"] = float(np.mean(fix.predictions() == flt.predictions()))
    else:
        out["agreement"] = float(np.mean(fix.output_spikes == flt.output_spikes))
    return out


@dataclass(frozen=True)
class KnownFailure:
    """A failure of another framework on a zoo file (asserted: strict, so a fix is noticed)."""

    error: type[Exception]
    match: str
    reason: str


#: snnTorch 1.0.0 cannot import its own export of an ``nn.AvgPool2d``.
SNNTORCH_IMPORT_FAILS: dict[str, KnownFailure] = {
    "snntorch-conv": KnownFailure(
        TypeError,
        "not iterable",
        "snnTorch 1.0.0 export_to_nir writes AvgPool2d kernel_size/stride as ints, and its "
        "import_from_nir calls tuple(node.kernel_size) (snntorch/import_nir.py, "
        "_nir_to_snntorch_module): it cannot re-import its own file",
    )
}


def unsupported_by_snntorch(graph: nir.NIRGraph) -> list[str]:
    """Node types of ``graph`` that snnTorch 1.0.0's importer does not map (sorted)."""
    return sorted({type(node).__name__ for node in graph.nodes.values()} - SNNTORCH_NODES)


def retimed_for_snntorch(graph: nir.NIRGraph) -> nir.NIRGraph:
    """``graph`` with every ``LIF`` time constant scaled by ``dt_snntorch / dt`` so that
    snnTorch, which ignores the graph's dt and steps with ``dt_snntorch = 1e-4`` s, takes the
    same Euler step ``dt / tau`` as our runtime at the graph's own ``dt`` (Norse exports
    store 1e-3 s; ours and snnTorch's 1e-4 s, left unchanged)."""
    import dataclasses

    from conversion.dt_conventions import get_dt_convention, resolve_graph_dt

    factor = get_dt_convention("snntorch").dt / resolve_graph_dt(graph).dt
    if np.isclose(factor, 1.0):
        return graph
    nodes = {
        name: dataclasses.replace(node, tau=np.asarray(node.tau) * factor)
        if isinstance(node, nir.LIF)
        else node
        for name, node in graph.nodes.items()
    }
    return nir.NIRGraph(nodes, graph.edges, metadata=dict(graph.metadata))


def snntorch_vs_runtime(entry: ZooModel, graph: nir.NIRGraph) -> tuple[float, float]:
    """``(agreement, mean output)``: the fraction of samples whose mean-over-time output
    (class scores, or output spike rates) from snnTorch's importer (on
    :func:`retimed_for_snntorch` of the graph) equals our torch target's (on the graph)
    within 1e-4 in every element, and the mean of our output (non-zero: the comparison is
    not between two silent networks)."""
    x = entry.inputs()
    run = compile_run("torch", graph, entry, x)
    ours = run.scores if run.scores is not None else run.output_spikes.mean(0)
    ours = torch.as_tensor(np.asarray(ours, dtype=np.float32)).reshape(entry.batch, -1)
    steps = entry.timesteps if entry.kind == "neurall" else None  # images, or events
    theirs = snntorch_scores(retimed_for_snntorch(graph), x, steps)
    agreement = float(((ours - theirs).abs() <= 1e-4).all(1).float().mean())
    return agreement, float(ours.abs().mean())


def lava_vs_emu(entry: ZooModel, graph: nir.NIRGraph) -> dict[str, tuple[int, int]]:
    """Per layer ``(mismatching spikes, spikes)``: loihi-emu vs lava-sim (Lava's bit-accurate
    process models) on one sample, every layer recorded; KeyError-free by construction (a
    layer recorded by one target only counts all its spikes as mismatches)."""
    x = entry.inputs(batch=1)
    emu = compile_run("loihi-emu", graph, entry, x)
    lava = compile_run("lava-sim", graph, entry, x)
    out: dict[str, tuple[int, int]] = {}
    for layer in sorted(set(emu.spikes) | set(lava.spikes)):
        a, b = emu.spikes.get(layer), lava.spikes.get(layer)
        if a is None or b is None or a.shape != b.shape:
            present = a if a is not None else b
            out[layer] = (int(np.size(present)), int(np.sum(present)))
        else:
            out[layer] = (int((a != b).sum()), int(a.sum()))
    return out


# ----------------------------------------------------------------------------- energy


@dataclass(frozen=True)
class FirstSpikeDriven:
    """The first synaptic layer driven by spikes (counted as ACs) of a report: its row name,
    where its input spikes come from (``None``: the input events ``x``; else the reference
    spiking layer of :func:`reference_spikes`) and the pooling folded in front of it."""

    row: str
    spikes: str | None = None
    pool: int = 1


#: Per zoo model and counted form (``torch`` module or ``nir`` graph). The NIR counter
#: counts a graph's input layer as MACs (it cannot know the input is binary), so its first
#: spike-driven layer is the one after the first spiking node.
FIRST_SPIKE_DRIVEN: dict[str, dict[str, FirstSpikeDriven]] = {
    "norse-cuba-conv-li": {"torch": FirstSpikeDriven("0")},
    "norse-box-lif": {"torch": FirstSpikeDriven("0")},
    "norse-residual": {"torch": FirstSpikeDriven("0.conv1")},
    "norse-recurrent": {"torch": FirstSpikeDriven("0.input_weights")},
    "nir-if-sumpool": {"nir": FirstSpikeDriven("c2", "if1", pool=2)},
    "snntorch-conv": {"nir": FirstSpikeDriven("4", "1", pool=2)},
    "neurallnet": {"torch": FirstSpikeDriven("body.conv2", "body.lif1", pool=2)},
    "neurallnet-nose": {"torch": FirstSpikeDriven("body.conv2", "body.lif1", pool=2)},
}


@dataclass(frozen=True)
class EnergyCheck:
    """One ``energy_report`` of a zoo model (per sample): totals and the first spike-driven
    layer's SynOps, counted and brute-forced."""

    form: str
    synops: float
    neuron_updates: float
    layer: str
    layer_synops: float
    brute_synops: float


def _synapse(model: Any, graph: nir.NIRGraph | None, row: str) -> Any:
    """The synapse of a report row: a ``ConvGeometry`` or the fan-out of a dense layer
    (every input reaches every output: ``out_features``, a recurrent cell's hidden size)."""
    from energy.fanout import ConvGeometry

    if graph is not None:
        node = graph.nodes[row]
        if isinstance(node, nir.Conv2d):
            w = np.asarray(node.weight)
            groups = int(node.groups)
            return ConvGeometry.create(
                w.shape[1] * groups, w.shape[0], w.shape[2:], tuple(node.stride),
                tuple(node.padding), tuple(node.dilation), groups,
            )  # fmt: skip
        return int(np.asarray(node.weight).shape[0])
    parent, _, leaf = row.rpartition(".")
    module = model.get_submodule(row) if not leaf.endswith("_weights") else None
    if isinstance(module, nn.Conv2d):
        return ConvGeometry.from_module(module)
    if isinstance(module, nn.Linear):
        return module.out_features
    return int(getattr(model.get_submodule(parent), leaf).shape[0])  # Norse W_in [H, I]


def brute_synops(synapse: Any, spikes: torch.Tensor, pool: int) -> float:
    """SynOps per sample by brute force: ``sum_(t,b,i) z_tbi F_i / B`` with ``F_i`` the
    enumerated fan-out of input ``i`` (through the folded ``pool`` x ``pool`` pooling:
    distinct outputs reached) and ``z`` the input spikes ``[T, B, *shape]``."""
    from energy.fanout import ConvGeometry

    shape = spikes.shape[2:]
    if isinstance(synapse, ConvGeometry):
        h, w = shape[-2:]
        fanout = (
            energy_helpers.brute_conv_fanout(synapse, h, w)
            if pool == 1
            else energy_helpers.brute_pool_conv_fanout(pool, synapse, h, w)
        )
    else:
        fanout = torch.full(shape, int(synapse), dtype=torch.int64)
    events = (spikes != 0).double().sum((0, 1))
    return float((events * fanout.reshape(shape)).sum()) / spikes.shape[1]


def energy_checks(entry: ZooModel, model: Any, path: Path) -> list[EnergyCheck]:
    """``energy_report`` on the torch model (Norse stepped over the event sequence) and on
    the NIR file where :data:`FIRST_SPIKE_DRIVEN` names a ``nir`` row, each with the brute
    count of its first spike-driven layer."""
    from energy.report import energy_report

    x = entry.inputs()
    checks = []
    for form, first in FIRST_SPIKE_DRIVEN[entry.name].items():
        graph = nir.read(path) if form == "nir" else None
        if form == "nir":
            report = energy_report(
                snn=path, images=x, target="torch", timesteps=entry.timesteps, profiles="loihi"
            )
        elif entry.kind == "norse":
            report = energy_report(
                model, images=x, timesteps=entry.timesteps, input_mode="sequence", profiles="loihi"
            )
        else:
            report = energy_report(model, images=x, profiles="loihi")
        row = next(r for r in report.snn.layers if r.name == first.row)
        if first.spikes is None:
            spikes = x
        else:
            ref = reference_spikes(entry, graph if entry.kind == "nir" else model, x)[first.spikes]
            spikes = torch.as_tensor(ref).reshape(entry.timesteps, entry.batch, *ref.shape[-3:])
        checks.append(
            EnergyCheck(
                form,
                report.snn.totals["synops"],
                report.snn.totals["neuron_updates"],
                first.row,
                row.synops,
                brute_synops(_synapse(model, graph, first.row), spikes, first.pool),
            )
        )
    return checks
