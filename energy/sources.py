"""What an energy report counts: a torch model (forward hooks) or a NIR graph run on a target.

:func:`energy.report.energy_report` takes either kind for the SNN (and a torch model for
the CNN) and turns it into a :class:`ModelSource`:

* :class:`TorchModel`: a torch / Norse module, counted with :func:`energy.torch_counter.count_model`
  (hooks on the real forward pass);
* :class:`NIRModel`: a ``nir.NIRGraph`` compiled on a hardware target (``torch``,
  ``loihi-emu``, ``lava-sim``, ...) for its per-neuron spike counts
  (:func:`energy.targets.spike_counts_on_target`), then counted with
  :func:`energy.nir_counter.count_nir`.

A source may carry its own images (e.g. each checkpoint with its own preprocessing and
input size, as the CLI does); otherwise the report's ``images`` are used. Before anything
is counted, :func:`check_role` refuses a non-spiking model given as the SNN and a spiking
one given as the CNN (the SNN is priced in SynOps, the CNN in MACs: swapping them gives
meaningless numbers).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import nir
import torch
from torch import nn

from conversion import nir_types
from energy.counts import ModelCounts
from energy.nir_counter import count_nir
from energy.targets import spike_counts_on_target
from energy.torch_counter import (
    count_model,
    has_spiking_neurons,
    refuse_foreign_neurons,
    resolve_input_mode,
)
from neurall_neuro.errors import ConfigError

#: Images as the counters take them: a tensor ``[N, C, H, W]`` or an iterable of batches.
Images = torch.Tensor | Iterable[Any]

#: Report role -> (what the role needs, the CLI flag, the Python argument).
ROLES: dict[str, tuple[str, str, str]] = {
    "snn": ("spiking", "--snn", "snn="),
    "cnn": ("non-spiking", "--cnn", "cnn="),
}


@dataclass
class CountedModel:
    """A source after counting: its counts, the module (for parameters and footprint,
    ``None`` for a graph) and notes for the report."""

    counts: ModelCounts
    module: nn.Module | None
    notes: list[str] = field(default_factory=list)


@dataclass
class CountOptions:
    """How to count (shared by both roles of one report)."""

    batch_size: int = 32
    fold_pooling: bool = True
    device: torch.device | str | None = None
    progress: bool = False


class ModelSource(ABC):
    """A model to count. ``images``: its own images (``None``: the report's); ``name``:
    its name in the report; ``label``: where it came from (a file), for error messages."""

    images: Images | None
    name: str | None
    label: str

    @abstractmethod
    def model_name(self) -> str:
        """The model's name, for messages (``name`` or one derived from the model)."""

    @abstractmethod
    def is_spiking(self) -> bool:
        """Whether the model computes with spiking neurons (an SNN)."""

    @abstractmethod
    def count(self, images: Images, options: CountOptions) -> CountedModel:
        """Operation counts of the model on ``images``."""


def _registered_spiking(name: str | None) -> bool | None:
    """``ModelSpec.spiking`` of a registered model name, ``None`` when not registered."""
    from neurall_neuro.models.registry import MODELS

    if name is not None and name in MODELS:
        return MODELS.get(name).spiking
    return None


@dataclass
class TorchModel(ModelSource):
    """A torch / Norse module counted with forward hooks.

    ``timesteps`` and ``input_mode`` say how each batch drives the model
    (:func:`energy.torch_counter.count_model`, :mod:`energy.input_modes`): by default one
    call per batch (the model loops over time itself, as the SE-SNN does); with
    ``timesteps`` the model is stepped ``T`` times (a researcher's Norse model). A
    registered neurall-neuro model runs its own ``T`` and is never stepped: ``timesteps``
    must then equal its own.
    """

    module: nn.Module
    images: Images | None = None
    name: str | None = None
    label: str = ""
    timesteps: int | None = None
    input_mode: str | None = None

    def drive(self) -> tuple[str, int | None]:
        """``(input mode, timesteps)`` the model is counted with."""
        registered = any(
            _registered_spiking(candidate) is not None
            for candidate in (self.name, getattr(self.module, "model_name", None))
        )
        if self.input_mode is None and self.timesteps is not None and registered:
            own = getattr(self.module, "timesteps", None)
            if own is not None and int(own) != int(self.timesteps):
                raise ConfigError(
                    f"{self.model_name()!r} runs its own T = {own} timesteps; timesteps="
                    f"{self.timesteps} cannot change it (build the model with timesteps="
                    f"{self.timesteps}, or leave timesteps unset)"
                )
            return "batch", None
        return resolve_input_mode(self.input_mode, self.timesteps), self.timesteps

    def model_name(self) -> str:
        return (
            self.name
            or getattr(self.module, "registry_name", None)
            or getattr(self.module, "model_name", None)
            or type(self.module).__name__
        )

    def is_spiking(self) -> bool:
        """The registry's ``spiking`` flag for the model's name (the checkpoint's or the
        module's ``model_name``); for unregistered models, whether a module's counting rule
        is a spiking neuron population (LIF layers, Norse's spiking cells)."""
        for candidate in (self.name, getattr(self.module, "model_name", None)):
            registered = _registered_spiking(candidate)
            if registered is not None:
                return registered
        refuse_foreign_neurons(self.module)
        return has_spiking_neurons(self.module)

    def count(self, images: Images, options: CountOptions) -> CountedModel:
        mode, timesteps = self.drive()
        counts = count_model(
            self.module,
            images,
            batch_size=options.batch_size,
            fold_pooling=options.fold_pooling,
            device=options.device,
            name=self.name,
            progress=options.progress,
            timesteps=timesteps,
            input_mode=mode,
        )
        return CountedModel(counts, self.module)


@dataclass
class NIRModel(ModelSource):
    """A NIR graph run on ``target`` for its spike counts, then counted node by node.

    ``timesteps``: ``T`` (default: the graph's ``metadata["timesteps"]``). ``dt``: the
    step, seconds or a convention name (:mod:`conversion.dt_conventions`; default: the
    graph's ``metadata["dt"]``).
    """

    graph: nir.NIRGraph
    images: Images | None = None
    target: str = "torch"
    timesteps: int | None = None
    name: str | None = None
    label: str = ""
    dt: float | str | None = None
    #: the images are binary event streams ``[T, N, *input_shape]`` into the Input node
    #: (``None``: detected from a tensor's shape, :func:`event_input`).
    events: bool | None = None

    def model_name(self) -> str:
        from conversion.nir_io import graph_metadata

        return self.name or str(graph_metadata(self.graph).get("model", "nir-graph"))

    def is_spiking(self) -> bool:
        """Whether the graph has a spiking node (``LIF``, ``IF``, ``CubaLIF``, ``Threshold``)."""
        from conversion.nir_graph import validate_graph

        nodes = validate_graph(self.graph).flat.nodes.values()
        return any(isinstance(node, nir_types.SPIKE_EMITTING) for node in nodes)

    def count(self, images: Images, options: CountOptions) -> CountedModel:
        from conversion.dt_conventions import apply_dt

        device = "cpu" if options.device is None else str(options.device)
        graph = apply_dt(self.graph, self.dt)
        events = self.events if self.events is not None else event_input(graph, images)
        spikes, samples, notes = spike_counts_on_target(
            graph, images, self.target, self.timesteps, options.batch_size, device, events
        )
        counts = count_nir(
            graph,
            spikes,
            self.timesteps,
            samples,
            static_input=False if events else None,
            input_spikes=events,
            fold_pooling=options.fold_pooling,
            name=self.name,
        )
        if events:
            notes.append("event input: the Input node's binary events drive its consumers (ACs)")
        return CountedModel(counts, None, list(notes))


def event_input(graph: nir.NIRGraph, images: Any) -> bool:
    """Whether ``images`` (a tensor) are event streams ``[T, N, *input_shape]`` for the
    graph's single Input node rather than images ``[N, *input_shape]``."""
    from conversion.nir_graph import validate_graph

    info = validate_graph(graph)
    if not isinstance(images, torch.Tensor) or len(info.flat.inputs) != 1:
        return False
    shape = tuple(int(d) for d in info.shapes[info.flat.inputs[0]][1])
    return images.dim() == len(shape) + 2 and tuple(images.shape[2:]) == shape


def nir_input_shape(graph: nir.NIRGraph) -> tuple[int, int, int]:
    """The ``(C, H, W)`` image input of ``graph``; ConfigError unless it has exactly one."""
    from conversion.nir_graph import validate_graph

    info = validate_graph(graph)
    if len(info.flat.inputs) != 1:
        raise ConfigError(
            f"the NIR graph has {len(info.flat.inputs)} inputs; energy reports need one image input"
        )
    shape = tuple(int(d) for d in info.shapes[info.flat.inputs[0]][1])
    if len(shape) != 3:
        raise ConfigError(f"the NIR graph's input shape {shape} is not an image (C, H, W)")
    return shape  # type: ignore[return-value]


def _from_module(model: Any, target: str, timesteps: int | None) -> ModelSource:
    return TorchModel(model, timesteps=timesteps)


def _from_graph(model: Any, target: str, timesteps: int | None) -> ModelSource:
    return NIRModel(model, target=target, timesteps=timesteps)


def _from_file(model: Any, target: str, timesteps: int | None) -> ModelSource:
    from conversion.nir_io import read_nir

    return NIRModel(
        read_nir(model), target=target, timesteps=timesteps, name=Path(model).name, label=str(model)
    )


#: What :func:`as_source` accepts: type -> factory ``(model, target, timesteps)``.
SOURCE_FACTORIES: dict[type, Callable[[Any, str, int | None], ModelSource]] = {
    nn.Module: _from_module,
    nir.NIRGraph: _from_graph,
    str: _from_file,
    Path: _from_file,
}


def as_source(model: Any, target: str = "torch", timesteps: int | None = None) -> ModelSource:
    """``model`` as a :class:`ModelSource`: a source as is, a torch module as a
    :class:`TorchModel`, a ``nir.NIRGraph`` or a path to a NIR file as a :class:`NIRModel`
    run on ``target`` for ``timesteps`` steps."""
    if isinstance(model, ModelSource):
        return model
    for kind, factory in SOURCE_FACTORIES.items():
        if isinstance(model, kind):
            return factory(model, target, timesteps)
    accepted = ", ".join(["ModelSource"] + [kind.__name__ for kind in SOURCE_FACTORIES])
    raise ConfigError(
        f"cannot count a {type(model).__name__}; give one of: {accepted} (a NIR file path)"
    )


def with_input_mode(source: ModelSource, input_mode: str | None) -> ModelSource:
    """``source`` driven with ``input_mode`` (a copy; a source's own mode is kept); only a
    torch module has input modes (a NIR graph is run by its target)."""
    if input_mode is None:
        return source
    if not isinstance(source, TorchModel):
        raise ConfigError(
            f"input_mode={input_mode!r} drives a torch module; {source.model_name()!r} is a "
            f"{type(source).__name__}, run by its target"
        )
    if source.input_mode is not None:
        return source
    return replace(source, input_mode=input_mode)


def check_role(source: ModelSource, role: str) -> None:
    """ConfigError if ``source`` cannot play ``role``: the SNN must be spiking, the CNN not.

    The message names the model, where it came from and the flag / argument to use.
    """
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}; valid options: {', '.join(ROLES)}")
    spiking = source.is_spiking()
    if spiking == (role == "snn"):
        return
    other = "cnn" if role == "snn" else "snn"
    kind, _, _ = ROLES[role]
    _, flag, argument = ROLES[other]
    where = f"{source.label}: " if source.label else ""
    actual = "spiking" if spiking else "non-spiking"
    raise ConfigError(
        f"{where}{source.model_name()!r} is a {actual} model, but the {role.upper()} must be "
        f"{kind}; give it as the {other.upper()} ({flag} on the CLI, {argument} in energy_report)"
    )
