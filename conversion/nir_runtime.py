"""A generic NIR runtime: any nir 1.0.8 graph as a torch module over ``T`` timesteps.

>>> module = load_nir("model.nir")                 # doctest: +SKIP
>>> out = module(images)                           # static [B, C, H, W] -> [T, B, K]
>>> run = module.run(spikes_tbchw, record=True)    # [T, B, ...] input, all node outputs

Semantics
---------
* Discrete time with the graph's ``dt`` (``metadata["dt"]``, else the unique ``dt`` in
  the neuron nodes' metadata; passing ``dt`` (seconds or a convention name of
  :mod:`conversion.dt_conventions`) or ``dt_convention`` overrides the graph). Each node type's update is documented in :mod:`conversion.nir_nodes`.
* All edges into a node are summed (in edge order). Within a step, nodes run in
  topological order, so a feed-forward chain has no delay: the output at step ``t``
  depends on the input at step ``t`` (Norse and snnTorch semantics).
* Edges that close a cycle (recurrent connections) deliver the source's value from the
  *previous* step. Before ``t = 0`` every input and stateful node outputs 0 and stateless
  nodes their response to that, so at ``t = 0`` a recurrent ``Affine`` delivers its bias
  (snnTorch's ``RLeaky`` semantics: ``mem = beta * mem + input + W z[t-1] + b``).
* Inputs are ``[T, B, *shape]``, or a static ``[B, *shape]`` tensor presented unchanged
  at every step (then ``timesteps`` comes from the argument or ``metadata["timesteps"]``).

Execution
---------
Acyclic graphs run node by node over all timesteps at once: stateless nodes (conv, pool,
affine, flatten, scale, threshold) process ``[T * B, ...]`` in one call (time folded
into the batch), and a node whose inputs are all static runs once per sample, not ``T``
times (direct encoding); only neuron (and delay) recurrences loop over time. Graphs with
cycles fall back to step-by-step execution of the whole graph.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import nir
import torch
from torch import nn

from conversion.dt_conventions import resolve_graph_dt
from conversion.nir_graph import GraphInfo, validate_graph
from conversion.nir_io import graph_metadata, read_nir
from conversion.nir_nodes import NodeOp, build_op
from neurall_neuro.errors import ConversionError

Signal = tuple[torch.Tensor, bool]  # (tensor, is_static)


@dataclass
class NIRRun:
    """Result of :meth:`NIRModule.run`.

    ``outputs``: per Output node ``[T, B, *shape]``; ``recorded``: per recorded node its
    output ``[T, B, *shape]``; ``states``: per neuron node its state variables over time
    (``{"v": [T, B, ...]}``, plus ``"i"`` for Cuba neurons) when ``record_states``;
    ``spike_counts``: per spiking node the number of spikes per sample ``[B]`` (summed
    over time and neurons) when ``count_spikes``.
    """

    outputs: dict[str, torch.Tensor]
    recorded: dict[str, torch.Tensor] = field(default_factory=dict)
    states: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    spike_counts: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def output(self) -> torch.Tensor:
        """The single output ``[T, B, ...]`` (error for graphs with several outputs)."""
        if len(self.outputs) != 1:
            raise ConversionError(
                f"graph has {len(self.outputs)} outputs ({', '.join(self.outputs)}); use .outputs[name]"
            )
        return next(iter(self.outputs.values()))


def resolve_dt(
    graph: nir.NIRGraph,
    info: GraphInfo,
    dt: float | str | None,
    dt_convention: str | None = None,
) -> float | None:
    """The graph's step in seconds: ``dt`` (seconds or a convention name of
    :mod:`conversion.dt_conventions`) or ``dt_convention`` when given (ConfigError if they
    disagree), else graph ``metadata["dt"]``, else the neuron nodes' common
    ``metadata["dt"]``; ``None`` when no source gives one. Delegates to
    :func:`conversion.dt_conventions.resolve_graph_dt`."""
    return resolve_graph_dt(graph, info, dt, dt_convention).dt


class NIRModule(nn.Module):
    """A NIR graph as a torch module (see the module docstring for the semantics)."""

    def __init__(
        self,
        graph: nir.NIRGraph,
        dt: float | str | None = None,
        dt_convention: str | None = None,
    ):
        super().__init__()
        info = validate_graph(graph)
        self.info = info
        self.dt = resolve_dt(graph, info, dt, dt_convention)
        self.metadata = graph_metadata(graph)
        timesteps = self.metadata.get("timesteps")
        self.default_timesteps: int | None = int(timesteps) if timesteps is not None else None
        self.order = info.order
        self.inputs = list(info.flat.inputs)
        self.outputs = list(info.flat.outputs)
        self.input_shapes = {name: info.shapes[name][1] for name in self.inputs}
        self.output_shapes = {name: info.shapes[name][0] for name in self.outputs}
        self.ops = nn.ModuleList(
            build_op(name, info.flat.nodes[name], self.dt) for name in self.order
        )
        self._index = {name: i for i, name in enumerate(self.order)}
        back = set(info.back_edges)
        self._forward_preds = {
            name: [s for s in info.flat.predecessors(name) if (s, name) not in back]
            for name in self.order
        }
        self._back_preds = {
            name: [s for s in info.flat.predecessors(name) if (s, name) in back]
            for name in self.order
        }
        self.recurrent = info.recurrent

    # ------------------------------------------------------------------ public API

    def op(self, name: str) -> NodeOp:
        """The torch op of node ``name``."""
        if name not in self._index:
            raise ConversionError(f"no node {name!r}; nodes: {', '.join(self.order)}")
        return self.ops[self._index[name]]

    @property
    def node_names(self) -> list[str]:
        return list(self.order)

    def spiking_nodes(self) -> list[str]:
        """Nodes whose output is binary spikes (LIF, IF, CubaLIF, Threshold)."""
        return [name for name, op in zip(self.order, self.ops, strict=True) if op.spiking]

    def forward(
        self, inputs: torch.Tensor | dict[str, torch.Tensor], timesteps: int | None = None
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Output ``[T, B, ...]`` (a dict per Output node when there are several)."""
        run = self.run(inputs, timesteps=timesteps)
        return run.output if len(run.outputs) == 1 else run.outputs

    @torch.no_grad()
    def run(
        self,
        inputs: torch.Tensor | dict[str, torch.Tensor],
        timesteps: int | None = None,
        record: bool | list[str] = False,
        record_states: bool = False,
        count_spikes: bool = False,
    ) -> NIRRun:
        """Run the graph. ``record``: True for every node's output, or a list of names."""
        signals, steps = self._prepare_inputs(inputs, timesteps)
        wanted = set(self.order) if record is True else set(record or [])
        unknown = wanted - set(self.order)
        if unknown:
            raise ConversionError(f"cannot record unknown node(s) {sorted(unknown)}")
        if self.recurrent:
            return self._run_stepwise(signals, steps, wanted, record_states, count_spikes)
        return self._run_layerwise(signals, steps, wanted, record_states, count_spikes)

    # ------------------------------------------------------------------ internals

    def _device(self) -> torch.device:
        for buffer in self.buffers():
            return buffer.device
        return torch.device("cpu")

    def _prepare_inputs(
        self, inputs: torch.Tensor | dict[str, torch.Tensor], timesteps: int | None
    ) -> tuple[dict[str, Signal], int]:
        if isinstance(inputs, torch.Tensor):
            if len(self.inputs) != 1:
                raise ConversionError(
                    f"graph has {len(self.inputs)} inputs ({', '.join(self.inputs)}); pass a dict"
                )
            inputs = {self.inputs[0]: inputs}
        missing = set(self.inputs) - set(inputs)
        extra = set(inputs) - set(self.inputs)
        if missing or extra:
            raise ConversionError(
                f"inputs must be given for exactly the Input nodes {self.inputs}; "
                f"missing {sorted(missing)}, unknown {sorted(extra)}"
            )
        device = self._device()
        signals: dict[str, Signal] = {}
        steps: int | None = None
        for name, tensor in inputs.items():
            shape = self.input_shapes[name]
            tensor = torch.as_tensor(tensor).to(device=device, dtype=torch.float32)
            if tuple(tensor.shape[-len(shape) :] if shape else ()) != shape or tensor.dim() not in (
                len(shape) + 1,
                len(shape) + 2,
            ):
                raise ConversionError(
                    f"input {name!r} must be [B, {', '.join(map(str, shape))}] (static, repeated "
                    f"every step) or [T, B, {', '.join(map(str, shape))}]; got {tuple(tensor.shape)}"
                )
            static = tensor.dim() == len(shape) + 1
            if not static:
                if steps is not None and steps != tensor.shape[0]:
                    raise ConversionError("time-varying inputs disagree on the number of steps")
                steps = tensor.shape[0]
            signals[name] = (tensor, static)
        if steps is not None:
            if timesteps is not None and timesteps != steps:
                raise ConversionError(f"timesteps={timesteps} but the input has {steps} steps")
        else:
            steps = timesteps or self.default_timesteps
            if steps is None:
                raise ConversionError(
                    "static input needs the number of timesteps: pass timesteps=... "
                    "(the graph's metadata has no 'timesteps')"
                )
        if steps < 1:
            raise ConversionError(f"timesteps must be >= 1, got {steps}")
        return signals, int(steps)

    @staticmethod
    def _materialize(signal: Signal, steps: int) -> torch.Tensor:
        tensor, static = signal
        return tensor.unsqueeze(0).expand(steps, *tensor.shape) if static else tensor

    def _count(self, op: NodeOp, y: torch.Tensor, static: bool, steps: int) -> torch.Tensor:
        per_step = y.flatten(1 if static else 2).sum(-1)
        return per_step * steps if static else per_step.sum(0)

    def _run_layerwise(
        self,
        signals: dict[str, Signal],
        steps: int,
        wanted: set[str],
        record_states: bool,
        count_spikes: bool,
    ) -> NIRRun:
        values: dict[str, Signal] = {}
        run = NIRRun(outputs={})
        remaining_uses = {name: 0 for name in self.order}
        for name in self.order:
            for src in self._forward_preds[name]:
                remaining_uses[src] += 1
        for name, op in zip(self.order, self.ops, strict=True):
            if name in signals:
                value = signals[name]
            else:
                preds = self._forward_preds[name]
                total, static = values[preds[0]]
                for src in preds[1:]:
                    other, other_static = values[src]
                    total = total + other
                    static = static and other_static
                states: dict[str, list] | None = {} if record_states and op.stateful else None
                value = op.forward_seq(total, static, steps, states)
                if states:
                    run.states[name] = {k: torch.stack(v) for k, v in states.items()}
                for src in preds:  # free intermediate results as soon as possible
                    remaining_uses[src] -= 1
                    if remaining_uses[src] == 0 and src not in wanted and src not in self.outputs:
                        values.pop(src, None)
            values[name] = value
            if name in wanted:
                run.recorded[name] = self._materialize(value, steps)
            if count_spikes and op.spiking:
                run.spike_counts[name] = self._count(op, value[0], value[1], steps)
        run.outputs = {name: self._materialize(values[name], steps) for name in self.outputs}
        return run

    def _values_before_start(self, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
        """Node outputs at step ``t = -1``: inputs and stateful nodes give 0, stateless nodes
        their response to that (e.g. an Affine its bias). Back edges deliver these at t = 0."""
        values: dict[str, torch.Tensor] = {}
        for name, op in zip(self.order, self.ops, strict=True):
            in_shape, out_shape = self.info.shapes[name]
            if name in self.inputs or op.stateful:
                values[name] = torch.zeros(batch, *out_shape, device=device)
            else:
                preds = self._forward_preds[name] + self._back_preds[name]
                x = torch.zeros(batch, *in_shape, device=device)
                for src in preds:
                    if src in values:
                        x = x + values[src]
                values[name] = op.apply(x)
        return values

    def _run_stepwise(
        self,
        signals: dict[str, Signal],
        steps: int,
        wanted: set[str],
        record_states: bool,
        count_spikes: bool,
    ) -> NIRRun:
        states: dict[str, Any] = {}
        previous: dict[str, torch.Tensor] = {}
        history: dict[str, list[torch.Tensor]] = {name: [] for name in wanted | set(self.outputs)}
        state_history: dict[str, dict[str, list[torch.Tensor]]] = {}
        counts: dict[str, torch.Tensor] = {}
        batch = next(iter(signals.values()))
        batch_size = batch[0].shape[0] if batch[1] else batch[0].shape[1]
        device = batch[0].device
        previous = self._values_before_start(batch_size, device)
        for t in range(steps):
            current: dict[str, torch.Tensor] = {}
            for name, op in zip(self.order, self.ops, strict=True):
                if name in signals:
                    tensor, static = signals[name]
                    y = tensor if static else tensor[t]
                else:
                    parts = [current[s] for s in self._forward_preds[name]]
                    parts += [previous[s] for s in self._back_preds[name]]
                    x = parts[0]
                    for part in parts[1:]:
                        x = x + part
                    if name not in states:
                        states[name] = op.init_state(x)
                    y, states[name] = op.step(x, states[name])
                    if record_states and op.stateful:
                        for key, value in op.state_values(states[name]).items():
                            state_history.setdefault(name, {}).setdefault(key, []).append(value)
                current[name] = y
                if name in history:
                    history[name].append(y)
                if count_spikes and op.spiking:
                    total = y.flatten(1).sum(-1)
                    counts[name] = counts[name] + total if name in counts else total
            previous = current
        run = NIRRun(outputs={name: torch.stack(history[name]) for name in self.outputs})
        run.recorded = {name: torch.stack(history[name]) for name in wanted}
        run.states = {
            name: {k: torch.stack(v) for k, v in values.items()}
            for name, values in state_history.items()
        }
        run.spike_counts = counts
        return run


def load_nir(
    graph_or_path: nir.NIRGraph | str | os.PathLike[str],
    dt: float | str | None = None,
    dt_convention: str | None = None,
) -> NIRModule:
    """Load a NIR graph (object or file) into a :class:`NIRModule` (see module docstring).

    ``dt``: seconds per step or a convention name (``"snntorch"``, ``"sinabs"``, ...;
    :mod:`conversion.dt_conventions`); ``dt_convention``: a convention name. Given, they
    override the graph's own ``metadata["dt"]``.
    """
    graph = graph_or_path if isinstance(graph_or_path, nir.NIRGraph) else read_nir(graph_or_path)
    return NIRModule(graph, dt=dt, dt_convention=dt_convention)
