"""The energy report: one dataclass with exactly what the CLI prints (table, JSON, CSV, Markdown).

Build it from counts (:func:`build_report`) or straight from models and images
(:func:`energy_report`: torch modules counted with hooks, or a NIR graph run on a
hardware target for its spike counts; see :mod:`energy.sources`). ``neurall energy`` is
a thin wrapper around :func:`energy_report`: it loads the checkpoints, the graph and the
images, and prints the report. Everything is per inference (per sample); the SNN's ``T``
is stated in its summary.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nir
import torch
from torch import nn

from energy.breakeven import BreakEven, break_even
from energy.counts import COUNT_FIELDS, ModelCounts
from energy.pricing import ModelEnergy, price
from energy.profiles import EnergyProfile, ProfileCatalog, load_profiles
from energy.sources import CountOptions, ModelSource, as_source, check_role, with_input_mode
from neurall_neuro.errors import ConfigError
from neurall_neuro.models.summary import model_size

#: Stated with every report (docs/energy.md explains each).
ASSUMPTIONS: tuple[str, ...] = (
    "Counts are per inference (per sample); the SNN runs T timesteps (stated with the model).",
    "SynOps = sum over input spikes of each input's exact fan-out (transposed convolution of ones: "
    "borders, stride, padding, dilation, groups exact); bias is not a synaptic operation (as NeuroBench).",
    "A layer whose input is not binary (the direct-encoding convolution, after an analog SE gate or a "
    "residual sum) performs MACs; the direct-encoding convolution runs once per image, not T times.",
    "Hardware view: AvgPool2d on spikes followed by a convolution is one strided convolution driven by "
    "the original spikes (exact fold); the SE squeeze folds into fc1 and global pooling + linear into "
    "one dense layer. NeuroBench would count the pooled, non-binary input as MACs (view 'neurobench').",
    "MACs are priced dense (a MAC engine does not skip zeros); ACs are priced effective (event-driven). "
    "On digital-accelerator profiles an AC is priced as an add of that precision.",
    "On neuromorphic profiles, layers with operations the chip lacks (the direct-encoding MACs) run on "
    "the profile's host (45 nm fp32 unless the profile says otherwise), memory included.",
    "With-memory figures add weight, state, input and output accesses (Lemaire et al. 2022 style, no "
    "on-chip reuse); neuromorphic per-operation figures already include on-chip memory.",
    "Break-even firing rate: all SNN spike counts scaled by one factor (distribution kept); neuron "
    "updates, host MACs and biases fixed.",
)


@dataclass
class LayerRow:
    """One layer of a model summary, per sample."""

    name: str
    kind: str
    op: str
    steps: int
    input_binary: bool | None
    folded: str
    neurons: int
    firing_rate: float | None
    synops: float
    synops_dense: float
    macs: float
    macs_dense: float
    adds: float
    mults: float
    comparisons: float
    nonlinear: float
    bias_adds: float
    neuron_updates: float
    spikes: float
    note: str = ""


@dataclass
class ModelSummary:
    """Parameters, footprint and per-layer counts of one model."""

    role: str
    model: str
    parameters: int | None
    fp32_bytes: int | None
    int8_bytes: int | None
    timesteps: int
    samples: int
    source: str
    view: str
    firing_rate: float | None
    totals: dict[str, float]
    layers: list[LayerRow]
    notes: list[str] = field(default_factory=list)

    @property
    def fp32_megabytes(self) -> float | None:
        return None if self.fp32_bytes is None else self.fp32_bytes / 1e6


@dataclass
class ProfileInfo:
    """A profile as listed in the report: its per-operation energies and citations."""

    name: str
    description: str
    kind: str
    host: str | None
    memory_included: bool
    word_bits: int
    ops_pj: dict[str, float]
    read_pj: float
    write_pj: float
    sources: dict[str, str]


@dataclass
class EnergyRatio:
    """SNN energy over CNN energy (below 1: the SNN saves energy)."""

    snn_profile: str
    cnn_profile: str
    arithmetic: float
    with_memory: float


@dataclass
class EnergyReport:
    """Everything the ``neurall energy`` command reports (all energies per inference, pJ)."""

    data: str
    snn: ModelSummary | None
    cnn: ModelSummary | None
    profiles: list[ProfileInfo]
    energies: list[ModelEnergy]
    ratios: list[EnergyRatio]
    break_even: list[BreakEven]
    assumptions: list[str] = field(default_factory=lambda: list(ASSUMPTIONS))
    notes: list[str] = field(default_factory=list)

    def energy(self, role: str, profile: str) -> ModelEnergy:
        for item in self.energies:
            if item.role == role and item.profile == profile:
                return item
        raise ConfigError(f"no {role} energy for profile {profile!r}")

    def ratio(self, snn_profile: str, cnn_profile: str) -> EnergyRatio:
        for item in self.ratios:
            if item.snn_profile == snn_profile and item.cnn_profile == cnn_profile:
                return item
        raise ConfigError(f"no ratio for SNN on {snn_profile!r} vs CNN on {cnn_profile!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "snn": asdict(self.snn) if self.snn else None,
            "cnn": asdict(self.cnn) if self.cnn else None,
            "profiles": [asdict(p) for p in self.profiles],
            "energies": [e.to_dict() for e in self.energies],
            "ratios": [asdict(r) for r in self.ratios],
            "break_even": [b.to_dict() for b in self.break_even],
            "assumptions": list(self.assumptions),
            "notes": list(self.notes),
        }


def summarize(counts: ModelCounts, role: str, module: nn.Module | None = None) -> ModelSummary:
    """Per-sample summary of ``counts`` (with parameters and footprint when ``module`` is given)."""
    size = model_size(module) if module is not None else None
    n = counts.samples
    layers = [
        LayerRow(
            name=layer.name,
            kind=layer.kind,
            op=layer.op,
            steps=layer.steps,
            input_binary=layer.input_binary,
            folded=layer.folded,
            neurons=layer.neurons,
            firing_rate=layer.firing_rate,
            synops=layer.synops / n,
            synops_dense=layer.synops_dense / n,
            macs=layer.macs / n,
            macs_dense=layer.macs_dense / n,
            adds=layer.adds / n,
            mults=layer.mults / n,
            comparisons=layer.comparisons / n,
            nonlinear=layer.nonlinear / n,
            bias_adds=layer.bias_adds / n,
            neuron_updates=layer.neuron_updates / n,
            spikes=layer.spikes / n,
            note=layer.note,
        )
        for layer in counts.layers
    ]
    return ModelSummary(
        role=role,
        model=counts.model,
        parameters=size.parameters if size else None,
        fp32_bytes=size.fp32_bytes if size else None,
        int8_bytes=size.int8_bytes if size else None,
        timesteps=counts.timesteps,
        samples=counts.samples,
        source=counts.source,
        view=counts.view,
        firing_rate=counts.firing_rate,
        totals={name: counts.per_sample(name) for name in COUNT_FIELDS},
        layers=layers,
        notes=list(counts.notes),
    )


def _profile_info(profile: EnergyProfile, catalog: ProfileCatalog) -> ProfileInfo:
    return ProfileInfo(
        name=profile.name,
        description=profile.description,
        kind=profile.kind,
        host=profile.host,
        memory_included=profile.memory_included,
        word_bits=profile.word_bits,
        ops_pj={op: figure.pj for op, figure in profile.ops.items()},
        read_pj=profile.read_pj,
        write_pj=profile.write_pj,
        sources={key: catalog.citation(key) for key in profile.sources()},
    )


def build_report(
    snn: ModelCounts | None,
    cnn: ModelCounts | None,
    catalog: ProfileCatalog | None = None,
    profiles: str | Sequence[str] = "all",
    snn_module: nn.Module | None = None,
    cnn_module: nn.Module | None = None,
    data: str = "",
) -> EnergyReport:
    """Price ``snn`` on every selected profile and ``cnn`` on the selected digital ones;
    ratios SNN/CNN and break-even rates for every (SNN profile, CNN profile) pair."""
    if snn is None and cnn is None:
        raise ConfigError("nothing to report: give an SNN, a CNN, or both")
    catalog = catalog or load_profiles()
    selected = catalog.select(profiles)
    snn_profiles = selected if snn is not None else []
    cnn_profiles = [p for p in selected if p.kind == "digital"] if cnn is not None else []
    notes: list[str] = []
    if cnn is not None and not cnn_profiles:
        notes.append("the CNN is priced on digital profiles only; none was selected")
    energies = [price(snn, p, catalog, role="snn") for p in snn_profiles]  # type: ignore[arg-type]
    energies += [price(cnn, p, catalog, role="cnn") for p in cnn_profiles]  # type: ignore[arg-type]
    by_key = {(e.role, e.profile): e for e in energies}
    ratios: list[EnergyRatio] = []
    breaks: list[BreakEven] = []
    for sp in snn_profiles:
        for cp in cnn_profiles:
            s, c = by_key[("snn", sp.name)], by_key[("cnn", cp.name)]
            ratios.append(
                EnergyRatio(
                    snn_profile=sp.name,
                    cnn_profile=cp.name,
                    arithmetic=s.arithmetic_pj / c.arithmetic_pj
                    if c.arithmetic_pj
                    else float("inf"),
                    with_memory=s.total_pj / c.total_pj if c.total_pj else float("inf"),
                )
            )
            for with_memory in (False, True):
                target = c.total_pj if with_memory else c.arithmetic_pj
                breaks.append(break_even(snn, target, sp, catalog, cp.name, with_memory))  # type: ignore[arg-type]
    return EnergyReport(
        data=data,
        snn=summarize(snn, "snn", snn_module) if snn is not None else None,
        cnn=summarize(cnn, "cnn", cnn_module) if cnn is not None else None,
        profiles=[_profile_info(p, catalog) for p in selected],
        energies=energies,
        ratios=ratios,
        break_even=breaks,
        notes=notes,
    )


def energy_report(
    snn: nn.Module | nir.NIRGraph | ModelSource | str | Path | None = None,
    cnn: nn.Module | ModelSource | None = None,
    images: torch.Tensor | Iterable[Any] | None = None,
    *,
    target: str = "torch",
    timesteps: int | None = None,
    input_mode: str | None = None,
    profiles: str | Sequence[str] = "all",
    profile_files: Sequence[str | Path] = (),
    catalog: ProfileCatalog | None = None,
    batch_size: int = 32,
    fold_pooling: bool = True,
    device: torch.device | str | None = None,
    progress: bool = False,
    data: str = "",
) -> EnergyReport:
    """Count ``snn`` and ``cnn`` on ``images`` and build the report (what ``neurall energy`` prints).

    ``snn``: a spiking torch module (counted with hooks), or a NIR graph (a
    ``nir.NIRGraph`` or a ``.nir`` path) run on ``target`` for ``timesteps`` steps (default:
    the graph's metadata) to get its spike counts, or any
    :class:`~energy.sources.ModelSource`. ``cnn``: a non-spiking torch module or a source.
    A non-spiking SNN or a spiking CNN raises ConfigError before anything is counted.

    A torch SNN that loops over time itself (the SE-SNN) is called once per batch. A
    researcher's Norse model is stepped: ``timesteps=T`` steps it ``T`` times on each batch
    of ``images`` (``input_mode='static'``, the default with ``timesteps``), and
    ``input_mode='sequence'`` steps it over ``[T, N, ...]`` event inputs (see
    :func:`energy.torch_counter.count_model`). ``timesteps`` and ``input_mode`` concern the
    SNN only; the CNN is always called once per batch.

    ``images``: a tensor ``[N, C, H, W]`` (split into ``batch_size`` chunks) or an iterable
    of batches (e.g. a DataLoader; tuples yield their first element), used for every model
    that has no images of its own (``ModelSource.images``). An iterable is consumed once
    per model, so pass a re-iterable one (a list or DataLoader). ``catalog``: the profiles
    (default: the shipped ones plus ``profile_files``).
    """
    sources = {
        role: as_source(model, target, timesteps if role == "snn" else None)
        for role, model in (("snn", snn), ("cnn", cnn))
        if model is not None
    }
    if "snn" in sources:
        sources["snn"] = with_input_mode(sources["snn"], input_mode)
    if not sources:
        raise ConfigError("nothing to report: give an SNN, a CNN, or both")
    for role, source in sources.items():
        check_role(source, role)
        if source.images is None and images is None:
            raise ConfigError("energy_report needs images to count spikes and activations on")
    catalog = catalog or load_profiles(profile_files)
    catalog.select(profiles)  # fail on unknown profile names before counting
    options = CountOptions(batch_size, fold_pooling, device, progress)
    counted = {
        role: source.count(images if source.images is None else source.images, options)
        for role, source in sources.items()
    }
    snn_counted, cnn_counted = counted.get("snn"), counted.get("cnn")
    report = build_report(
        snn_counted.counts if snn_counted else None,
        cnn_counted.counts if cnn_counted else None,
        catalog,
        profiles,
        snn_module=snn_counted.module if snn_counted else None,
        cnn_module=cnn_counted.module if cnn_counted else None,
        data=data,
    )
    report.notes += [note for item in counted.values() for note in item.notes]
    return report
