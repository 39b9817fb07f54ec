r"""Counting the operations of a NIR graph from per-node spike counts (any framework, any target).

Input: a ``nir.NIRGraph`` and, for every spiking node whose spikes drive synapses, its
spike counts summed over ``T`` timesteps and ``samples`` samples, as an array of the
node's (batch-free) output shape: per-neuron counts give exact SynOps. Leading extra
dimensions (time, batch) are summed. A scalar total is accepted too; SynOps are then
approximated with the mean fan-out (noted in the result).

Rules (the same equations as the torch-hook counter, :mod:`energy.rules`):

* **Synaptic nodes** (``Conv2d``, ``Affine``, ``Linear``): walking back from the node
  through pass-through nodes (``Flatten``, ``Delay``, nested ``Input``/``Output``) and,
  with ``fold_pooling``, non-overlapping pools (kernel = stride, no padding), to the
  population that drives it. A spiking population (``LIF``, ``IF``, ``CubaLIF``,
  ``Threshold``) gives ACs: :math:`\sum_i n_i F_i` with the exact (folded) fan-out.
  Anything else (the image, ``LI`` outputs, ``Scale``) gives MACs, dense (a graph run
  reports no analog sparsity): :math:`N \sum_i F_i`.
* **Identity edges** between populations (e.g. the SE feature spikes into the AND
  neurons): fan-out 1, one synaptic event per spike.
* **Recurrence** (cycles): an edge that closes a cycle delivers the previous step's
  value, and a spike into a recurrent synaptic node costs its exact fan-out like any
  other. A dense node that feeds a population back to itself (``LIF -> Linear -> LIF``,
  the same population) is a *self-recurrent* matrix, counted as kind ``recurrent``:
  its diagonal entries are autapses (neuron ``j`` onto itself), absent when
  ``node.metadata["autapses"]`` is false or, without that key, when the whole diagonal
  is zero (as Norse's ``LIFRecurrentCell(autapses=False)`` stores it): spike ``j`` then
  reaches :math:`H - 1` neurons, as the torch counter counts that cell.
* **Populations** (``LIF``, ``CubaLIF``, ``IF``, ``Threshold``; ``LI``, ``CubaLI``, ``I``
  never spike): one neuron update per neuron per step, whatever the number of state
  variables (``CubaLIF``: current and voltage); spikes as given. Kinds: ``lif``
  (``LIF``, ``Threshold``), ``cubalif``, ``if``, and the type name of analog ones.
* **Pools** not folded: adds (and a multiply per output for averages);
  ``Scale``: one multiply per element; biases: one add per output element and frame
  (counted when the bias has a non-zero entry).
* **Static input** (``metadata["input_encoding"] == "static"``, direct encoding): nodes
  fed only by the input through stateless nodes are computed once per sample.
* **Readout** (``metadata["readout"] == "mean_over_time"``): the mean over ``T`` of the
  output is a non-leaking integrator population, one update per output per step (as the
  torch counter counts the SE-SNN readout).

:func:`spike_counts_from_runtime` runs a graph on the torch NIR runtime
(:mod:`conversion.nir_runtime`) and returns exactly the counts this module needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from math import prod
from typing import Any

import nir
import numpy as np
import torch

from conversion import nir_types
from conversion.nir_builder import structural_groups
from conversion.nir_graph import GraphInfo, validate_graph
from conversion.nir_io import graph_metadata
from energy.counts import LayerCounts, ModelCounts
from energy.fanout import ConvGeometry, conv2d_fanout, identity_fanout, linear_fanout, pooled_fanout
from energy.pooling import pool_window_sizes
from energy.rules import pooling_ops, synaptic_ops
from neurall_neuro.errors import ConfigError, UnsupportedNodeError
from neurall_neuro.int_tuples import int_tuple

SpikeCounts = Mapping[str, Any]


def _conv_geometry(node: nir.Conv2d, in_channels: int) -> ConvGeometry:
    weight = np.asarray(node.weight)
    padding = node.padding.decode() if isinstance(node.padding, bytes) else node.padding
    if not isinstance(padding, str):
        padding = int_tuple(padding, 2, "padding")
    return ConvGeometry.create(
        in_channels,
        int(weight.shape[0]),
        tuple(int(k) for k in weight.shape[2:]),
        int_tuple(node.stride, 2, "stride"),
        padding,
        int_tuple(node.dilation, 2, "dilation"),
        structural_groups(weight, int(np.asarray(node.groups))),  # dense per-channel maps
    )


def _fold_kernel(node: nir.NIRNode) -> tuple[int, int] | None:
    kernel = int_tuple(node.kernel_size, 2, "kernel_size")
    stride = int_tuple(node.stride, 2, "stride")
    padding = int_tuple(node.padding, 2, "padding")
    if kernel != stride or padding != (0, 0):
        return None
    return (kernel[0], kernel[1])


#: Kind of a population's row by node type (others: ``lif`` when spiking, else the type name).
_POPULATION_KINDS: dict[type, str] = {nir.CubaLIF: "cubalif", nir.IF: "if"}


@dataclass
class _Counts:
    """Spike counts of one node: per-neuron map (exact) or a total (approximate)."""

    per_neuron: torch.Tensor | None
    total: int


def _spike_counts(name: str, value: Any, shape: tuple[int, ...]) -> _Counts:
    if isinstance(value, int | float | np.integer | np.floating):
        return _Counts(None, int(round(float(value))))
    tensor = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    tensor = tensor.detach().to("cpu")
    if tensor.dim() == 0:
        return _Counts(None, int(round(float(tensor))))
    if tuple(tensor.shape[tensor.dim() - len(shape) :]) != shape or tensor.dim() < len(shape):
        raise ConfigError(
            f"spike counts of node {name!r} have shape {tuple(tensor.shape)}; expected the node's "
            f"output shape {shape} (optionally with leading time/batch dimensions) or a scalar total"
        )
    if tensor.dim() > len(shape):
        tensor = tensor.sum(dim=tuple(range(tensor.dim() - len(shape))))
    counts = tensor.round().to(torch.int64)
    if (counts < 0).any():
        raise ConfigError(f"spike counts of node {name!r} contain negative values")
    return _Counts(counts, int(counts.sum()))


class _GraphCounter:
    def __init__(
        self,
        graph: nir.NIRGraph,
        spike_counts: SpikeCounts,
        timesteps: int,
        samples: int,
        static_input: bool,
        input_spikes: bool,
        fold_pooling: bool,
    ):
        self.info: GraphInfo = validate_graph(graph)
        self.nodes = self.info.flat.nodes
        self.metadata = graph_metadata(graph)
        self.timesteps = timesteps
        self.samples = samples
        self.static_input = static_input
        self.input_spikes = input_spikes
        self.fold_pooling = fold_pooling
        self.raw_counts = dict(spike_counts)
        unknown = sorted(set(self.raw_counts) - set(self.nodes))
        if unknown:
            raise ConfigError(
                f"spike counts given for unknown node(s) {unknown}; nodes: {', '.join(self.info.order)}"
            )
        self.preds = {name: self.info.flat.predecessors(name) for name in self.info.order}
        self.succs: dict[str, list[str]] = {name: [] for name in self.info.order}
        for src, dst in self.info.flat.edges:
            self.succs.setdefault(src, []).append(dst)
        self.static = self._static_nodes()
        self.folded: dict[str, list[bool]] = {}
        self.notes: list[str] = []
        self._cache: dict[str, _Counts] = {}

    # -- graph helpers --------------------------------------------------------------------

    def in_shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.info.shapes[name][0])

    def out_shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.info.shapes[name][1])

    def _static_nodes(self) -> set[str]:
        """Nodes computed once per sample: the input and stateless nodes fed only by static nodes."""
        if not self.static_input:
            return set()
        static: set[str] = set()
        stateless = (
            nir_types.SYNAPTIC + nir_types.POOLS + (nir.Flatten, nir.Scale, nir.Input, nir.Output)
        )
        for name in self.info.order:
            preds = self.preds[name]
            fed_statically = (
                isinstance(self.nodes[name], stateless)
                and preds
                and all(p in static for p in preds)
            )
            if name in self.info.flat.inputs or fed_statically:
                static.add(name)
        return static

    def frames(self, name: str) -> int:
        """Frames per sample of node ``name`` (1 when computed once per sample)."""
        return 1 if name in self.static else self.timesteps

    def is_spiking_source(self, name: str) -> bool:
        node = self.nodes[name]
        if isinstance(node, nir_types.SPIKE_EMITTING):
            return True
        return name in self.info.flat.inputs and self.input_spikes

    def counts(self, name: str) -> _Counts:
        if name not in self._cache:
            if name not in self.raw_counts:
                raise ConfigError(
                    f"no spike counts for node {name!r}, whose spikes drive synapses; give counts for "
                    f"every spiking node ({', '.join(n for n in self.info.order if self.is_spiking_source(n))})"
                )
            self._cache[name] = _spike_counts(name, self.raw_counts[name], self.out_shape(name))
        return self._cache[name]

    def _walk_back(self, start: str) -> tuple[str, list[str]]:
        """From ``start`` back through pass-through and foldable pool nodes with one input."""
        chain: list[str] = []
        current = start
        while current not in chain:  # a cycle of pass-through nodes ends the walk
            node = self.nodes[current]
            foldable_pool = (
                self.fold_pooling and isinstance(node, nir_types.POOLS) and _fold_kernel(node)
            )
            passing = (
                isinstance(node, nir_types.PASS_THROUGH) and current not in self.info.flat.inputs
            )
            if not (passing or foldable_pool) or len(self.preds[current]) != 1:
                return current, chain
            chain.append(current)
            current = self.preds[current][0]
        raise UnsupportedNodeError(
            f"nodes {', '.join(chain)} form a cycle of pass-through nodes with no population "
            "in it; a recurrent loop needs a neuron or synaptic node"
        )

    def _unfold(self, fanout: torch.Tensor, chain: list[str]) -> torch.Tensor:
        """Carry a fan-out map from the synaptic node's input back through ``chain``."""
        for name in chain:  # chain runs from the synaptic node's input back to the source
            node = self.nodes[name]
            shape = self.in_shape(name)
            if isinstance(node, nir_types.POOLS):
                kernel = _fold_kernel(node)
                assert kernel is not None
                fanout = pooled_fanout(
                    fanout.reshape(self.out_shape(name)), kernel, shape[1], shape[2]
                )
            else:
                fanout = fanout.reshape(shape)
        return fanout

    def _fanout(self, name: str, autapse_free: bool = False) -> torch.Tensor:
        node = self.nodes[name]
        shape = self.in_shape(name)
        if isinstance(node, nir.Conv2d):
            return conv2d_fanout(_conv_geometry(node, shape[0]), shape[1], shape[2])
        weight = np.asarray(node.weight)
        fanout = linear_fanout(shape, int(weight.shape[0]))
        return fanout - 1 if autapse_free else fanout  # every input loses its own neuron

    def _walk_forward(self, name: str) -> str | None:
        """The one node ``name`` drives, through pass-through nodes (``None`` if it fans out)."""
        current, seen = name, {name}
        while True:
            succs = self.succs[current]
            if len(succs) != 1:
                return None
            current = succs[0]
            node = self.nodes[current]
            if current in seen or not isinstance(node, nir_types.PASS_THROUGH):
                return current
            seen.add(current)

    def self_recurrent(self, name: str, source: str) -> bool:
        """Whether dense node ``name`` feeds population ``source`` back to itself."""
        node = self.nodes[name]
        return (
            isinstance(node, nir_types.AFFINE)
            and isinstance(self.nodes[source], nir_types.NEURONS + (nir.Threshold,))
            and self._walk_forward(name) == source
        )

    def autapse_free(self, name: str) -> bool:
        """Whether the self-recurrent matrix ``name`` has no autapses (see module docstring)."""
        node = self.nodes[name]
        metadata = getattr(node, "metadata", None) or {}
        if "autapses" in metadata:
            return not bool(metadata["autapses"])
        weight = np.asarray(node.weight)
        square = weight.ndim == 2 and weight.shape[0] == weight.shape[1]
        return square and not np.any(np.diagonal(weight))

    # -- counting -------------------------------------------------------------------------

    def synaptic(self, name: str) -> list[LayerCounts]:
        node = self.nodes[name]
        rows: list[LayerCounts] = []
        base = self._fanout(name)
        out_per_frame = prod(self.out_shape(name))
        frames = self.frames(name)
        bias = getattr(node, "bias", None)
        has_bias = bias is not None and bool(np.any(np.asarray(bias) != 0))
        kind = "conv" if isinstance(node, nir.Conv2d) else "linear"
        for pred in self.preds[name]:
            source, chain = self._walk_back(pred)
            if self.is_spiking_source(source):
                recurrent = self.self_recurrent(name, source)
                own = self._fanout(name, True) if recurrent and self.autapse_free(name) else base
                fanout = self._unfold(own, chain)
                counts = self.counts(source)
                dense = self.samples * frames * int(fanout.sum())
                if counts.per_neuron is not None:
                    effective, _ = synaptic_ops(counts.per_neuron, fanout, frames)
                else:
                    effective = round(counts.total * float(fanout.double().mean()))
                    self.notes.append(f"{name}: SynOps from a total spike count (mean fan-out)")
                pools = [c for c in chain if isinstance(self.nodes[c], nir_types.POOLS)]
                for pool in pools:
                    self.folded.setdefault(pool, []).append(True)
                rows.append(
                    LayerCounts(
                        name=name if len(self.preds[name]) == 1 else f"{source}->{name}",
                        kind="recurrent" if recurrent else kind,
                        steps=frames,
                        input_binary=True,
                        folded=",".join(pools),
                        synops=effective,
                        synops_dense=dense,
                        input_elements=self.samples * frames * int(fanout.numel()),
                        input_events=counts.total,
                    )
                )
            else:
                if isinstance(self.nodes[pred], nir_types.POOLS):
                    self.folded.setdefault(pred, []).append(False)
                dense = self.samples * frames * int(base.sum())
                rows.append(
                    LayerCounts(
                        name=name if len(self.preds[name]) == 1 else f"{pred}->{name}",
                        kind=kind,
                        steps=frames,
                        input_binary=False,
                        macs=dense,
                        macs_dense=dense,
                        input_elements=self.samples * frames * int(base.numel()),
                        input_events=self.samples * frames * int(base.numel()),
                        note="analog input: dense MACs (a graph run reports no analog sparsity)",
                    )
                )
        out_elements = self.samples * frames * out_per_frame
        rows[-1].output_elements = out_elements
        rows[-1].bias_adds = out_elements if has_bias else 0
        return rows

    def population(self, name: str) -> list[LayerCounts]:
        node = self.nodes[name]
        shape = self.out_shape(name)
        neurons = prod(shape)
        updates = self.samples * self.timesteps * neurons
        rows: list[LayerCounts] = []
        for pred in self.preds[name]:  # one-to-one edges from another population or the input
            source = pred
            while (
                isinstance(self.nodes[source], nir_types.PASS_THROUGH)
                and source not in self.info.flat.inputs
                and len(self.preds[source]) == 1
            ):
                source = self.preds[source][0]
            if (
                isinstance(self.nodes[source], nir_types.SPIKE_EMITTING + nir_types.ANALOG_NEURONS)
                or source in self.info.flat.inputs
            ):
                rows.append(self.identity_edge(source, name))
        spiking = isinstance(node, nir_types.SPIKE_EMITTING)
        spikes = 0
        if spiking and name in self.raw_counts:
            spikes = self.counts(name).total
        elif spiking:
            self.notes.append(f"{name}: no spike counts given; its spikes are reported as 0")
        kind = _POPULATION_KINDS.get(type(node), "lif" if spiking else type(node).__name__.lower())
        rows.append(
            LayerCounts(
                name=name,
                kind=kind,
                steps=self.timesteps,
                neurons=neurons,
                neuron_updates=updates,
                spikes=spikes,
                input_elements=updates,
                output_elements=updates,
            )
        )
        return rows

    def identity_edge(self, src: str, dst: str) -> LayerCounts:
        shape = self.out_shape(src)
        frames = self.frames(src) if src in self.info.flat.inputs else self.timesteps
        elements = self.samples * frames * prod(shape)
        if self.is_spiking_source(src):
            counts = self.counts(src)
            return LayerCounts(
                name=f"{src}->{dst}",
                kind="identity",
                steps=frames,
                input_binary=True,
                synops=counts.total,
                synops_dense=self.samples * frames * int(identity_fanout(shape).sum()),
                input_elements=elements,
                input_events=counts.total,
            )
        return LayerCounts(
            name=f"{src}->{dst}",
            kind="identity",
            steps=frames,
            input_binary=False,
            adds=elements,
            input_elements=elements,
            output_elements=elements,
            note="analog one-to-one edge: one add per element",
        )

    def pool(self, name: str) -> LayerCounts | None:
        decisions = self.folded.get(name)
        if decisions and all(decisions):
            return None
        node = self.nodes[name]
        shape_in, shape_out = self.in_shape(name), self.out_shape(name)
        windows = pool_window_sizes(
            (shape_in[1], shape_in[2]),
            int_tuple(node.kernel_size, 2, "kernel_size"),
            int_tuple(node.stride, 2, "stride"),
            int_tuple(node.padding, 2, "padding"),
            (1, 1),
            (shape_out[1], shape_out[2]),
        )
        frames = self.samples * self.frames(name)
        adds, outputs = pooling_ops(windows, shape_in[0], frames)
        average = isinstance(node, nir.AvgPool2d)
        return LayerCounts(
            name=name,
            kind="avgpool" if average else "sumpool",
            steps=self.frames(name),
            adds=adds,
            mults=frames * shape_in[0] * int((windows > 1).sum()) if average else 0,
            input_elements=frames * prod(shape_in),
            output_elements=outputs,
        )

    def scale(self, name: str) -> LayerCounts:
        elements = self.samples * self.frames(name) * prod(self.out_shape(name))
        return LayerCounts(
            name=name,
            kind="scale",
            steps=self.frames(name),
            mults=elements,
            input_elements=elements,
            output_elements=elements,
        )

    def readout(self) -> list[LayerCounts]:
        if self.metadata.get("readout") != "mean_over_time":
            return []
        rows = []
        for out in self.info.flat.outputs:
            classes = prod(self.out_shape(out))
            updates = self.samples * self.timesteps * classes
            rows.append(
                LayerCounts(
                    name="readout" if len(self.info.flat.outputs) == 1 else f"readout.{out}",
                    kind="readout",
                    steps=self.timesteps,
                    neurons=classes,
                    neuron_updates=updates,
                    input_elements=updates,
                    output_elements=self.samples * classes,
                    note="mean over T of the output = non-leaking integrator, one update per output per step",
                )
            )
        return rows

    def run(self) -> list[LayerCounts]:
        rows: list[LayerCounts] = []
        pending_pools: list[tuple[int, str]] = []
        for name in self.info.order:
            node = self.nodes[name]
            if isinstance(node, nir_types.SYNAPTIC):
                rows.extend(self.synaptic(name))
            elif isinstance(node, nir_types.SPIKE_EMITTING + nir_types.ANALOG_NEURONS):
                rows.extend(self.population(name))
            elif isinstance(node, nir_types.POOLS):
                pending_pools.append((len(rows), name))
            elif isinstance(node, nir.Scale):
                rows.append(self.scale(name))
            elif isinstance(node, nir_types.PASS_THROUGH):
                continue
            else:
                raise UnsupportedNodeError(
                    f"node {name!r} has type {type(node).__name__}, which the energy counter does not "
                    f"count; supported: {', '.join(t.__name__ for t in nir_types.SYNAPTIC + nir_types.SPIKE_EMITTING + nir_types.ANALOG_NEURONS + nir_types.POOLS + nir_types.PASS_THROUGH + (nir.Scale,))}"
                )
        for offset, (index, name) in enumerate(pending_pools):
            row = self.pool(name)
            if row is not None:
                rows.insert(index + offset, row)
        return rows + self.readout()


def count_nir(
    graph: nir.NIRGraph,
    spike_counts: SpikeCounts,
    timesteps: int | None = None,
    samples: int = 1,
    *,
    static_input: bool | None = None,
    input_spikes: bool = False,
    fold_pooling: bool = True,
    name: str | None = None,
) -> ModelCounts:
    """Count the operations of ``graph`` given per-node spike counts.

    Args:
        graph: any NIR graph of supported primitives (nested graphs are inlined).
        spike_counts: node name -> spike counts summed over ``timesteps`` and ``samples``
            (per-neuron array of the node's output shape, or a scalar total).
        timesteps: steps per sample ``T`` (default: ``metadata["timesteps"]``).
        samples: number of samples the counts are summed over.
        static_input: the input is presented unchanged at every step (direct encoding);
            default: ``metadata["input_encoding"] == "static"``.
        input_spikes: the Input node carries spikes (event data), so its consumers do ACs.
        fold_pooling: hardware view (``True``) or NeuroBench view (``False``).
        name: model name in the result (default: ``metadata["model"]`` or ``"nir-graph"``).
    """
    metadata = graph_metadata(graph)
    if timesteps is None:
        if "timesteps" not in metadata:
            raise ConfigError("the graph's metadata has no 'timesteps'; pass timesteps=T")
        timesteps = int(metadata["timesteps"])
    if timesteps < 1 or samples < 1:
        raise ConfigError(f"timesteps and samples must be >= 1, got {timesteps} and {samples}")
    if static_input is None:
        static_input = metadata.get("input_encoding") == "static"
    counter = _GraphCounter(
        graph, spike_counts, timesteps, samples, static_input, input_spikes, fold_pooling
    )
    layers = counter.run()
    notes = list(dict.fromkeys(counter.notes))
    if static_input:
        notes.append("static input: nodes fed only by the input are computed once per sample")
    return ModelCounts(
        model=name or str(metadata.get("model", "nir-graph")),
        samples=samples,
        timesteps=timesteps,
        layers=layers,
        source="nir",
        view="hardware" if fold_pooling else "neurobench",
        notes=notes,
    )


def require_binary_events(batch: torch.Tensor) -> None:
    """Event input is counted as ACs of its events: it must hold 0/1 spikes only."""
    if not bool(((batch == 0) | (batch == 1)).all()):
        raise ConfigError(
            "event input must be binary (0/1 spikes [T, B, *input_shape]); got other values. "
            "Give images [B, C, H, W] for a graph that takes static input"
        )


def spike_counts_from_runtime(
    graph: nir.NIRGraph,
    images: torch.Tensor | Iterable[Any],
    timesteps: int | None = None,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    events: bool = False,
) -> tuple[dict[str, torch.Tensor], int]:
    """Run ``graph`` on the torch NIR runtime; per-neuron spike counts of every spiking node
    (``events``: ``images`` are event streams ``[T, N, ...]``, split along ``N``; the Input
    node's events are counted too).

    Returns ``(counts, samples)``: counts summed over time and samples, shaped like each
    node's output.
    """
    from conversion.nir_runtime import load_nir

    module = load_nir(graph).to(device)
    spiking = module.spiking_nodes()
    input_name = validate_graph(graph).flat.inputs[0] if events else None
    totals: dict[str, torch.Tensor] = {}
    samples = 0
    batches = (
        images.split(batch_size, dim=1 if events else 0)
        if isinstance(images, torch.Tensor)
        else images
    )
    for batch in batches:
        batch = batch[0] if isinstance(batch, tuple | list) else batch
        run = module.run(batch.to(device), timesteps=timesteps, record=spiking)
        recorded = {node: run.recorded[node] for node in spiking}
        if input_name is not None:
            require_binary_events(batch)
            recorded[input_name] = batch
        for node, trace in recorded.items():
            summed = trace.sum(dim=(0, 1)).to(torch.int64).cpu()
            totals[node] = totals[node] + summed if node in totals else summed
        samples += batch.shape[1 if events else 0]
    return totals, samples
