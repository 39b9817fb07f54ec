"""``torch``: run a NIR graph in floating point with the generic NIR runtime, on CPU or CUDA.

>>> target = get_target("torch")                                   # doctest: +SKIP
>>> deployed = target.compile("model.nir", timesteps=4, device="cuda")
>>> result = deployed.run(images)                                 # [B, C, H, W] or [T, B, ...]
>>> result.scores, result.spike_counts["body.lif1"]               # [B, K], [B]

The graph runs exactly as :mod:`conversion.nir_runtime` defines (our LIF arithmetic is
Norse's, so spikes equal the Norse model's). Layers are named by their NIR node names.
``spike_counts`` holds every spiking node (LIF, IF, CubaLIF, Threshold). ``scores`` are
the mean over time of the output when the graph's metadata says
``readout == "mean_over_time"`` (our exports) or the output is a voltage readout (fed by
LI, CubaLI or I neurons only), else ``None``. ``output_spikes`` are the
spikes of the output node if it spikes, else of the last spiking node feeding it (for
our SE-SNN: the last feature layer before the readout); the raw output ``[T, B, ...]``
and that layer's name are in ``extra["output"]`` and ``extra["output_layer"]``.
No synaptic delays: ``hardware_steps == timesteps``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch

from conversion import nir_types
from conversion.nir_conventions import READOUT_MEAN_OVER_TIME
from conversion.nir_graph import validate_graph
from conversion.nir_io import read_nir
from conversion.nir_nodes import BUILDERS, supported_node_types
from conversion.nir_runtime import NIRModule, resolve_dt
from hw_targets.base import Deployed, RunResult, Stopwatch, Target
from hw_targets.registry import register_target
from neurall_neuro.errors import ConfigError, NeurallError, TargetError


def _load_graph(graph: Any) -> nir.NIRGraph:
    if isinstance(graph, nir.NIRGraph):
        return graph
    if isinstance(graph, (str, os.PathLike)):
        return read_nir(Path(graph))
    raise TypeError(
        f"the torch target runs NIR graphs (nir.NIRGraph or a path to a .nir file), "
        f"got {type(graph).__name__}"
    )


def _unsupported_nodes(graph: nir.NIRGraph, prefix: str = "") -> list[str]:
    problems = []
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            problems += _unsupported_nodes(node, f"{prefix}{name}.")
        elif type(node) not in BUILDERS:
            problems.append(
                f"node {prefix}{name!r}: type {type(node).__name__} is not supported "
                f"(supported: {', '.join(supported_node_types())})"
            )
    return problems


def _resolve_device(device: str | torch.device) -> torch.device:
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"invalid device {device!r}: use 'cpu', 'cuda' or 'cuda:N'") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise TargetError(
            "device 'cuda' requested but no CUDA GPU is available (torch.cuda.is_available() is False)"
        )
    if resolved.type not in ("cpu", "cuda"):
        raise ConfigError(
            f"device {device!r} is not supported by the torch target: use 'cpu' or 'cuda'"
        )
    return resolved


class TorchDeployed(Deployed):
    """A NIR graph loaded into :class:`~conversion.nir_runtime.NIRModule` on a device."""

    target_name = "torch"

    def __init__(self, module: NIRModule, options: Mapping[str, Any]):
        super().__init__(options["timesteps"], options)
        self.module = module
        self.device = _resolve_device(options["device"])
        self.module.to(self.device)
        self.readout = (
            self.module.metadata.get("readout") == READOUT_MEAN_OVER_TIME or self._voltage_readout()
        )
        self.output_layer = self._output_layer()
        nodes = set(self.module.node_names)
        self.record = self._names(options.get("record"), nodes, "record")
        self.record_voltage = self._names(options.get("record_voltage"), nodes, "record_voltage")
        for name in self.record_voltage:
            if not self.module.op(name).stateful:
                raise ConfigError(f"record_voltage: node {name!r} has no voltage (not a neuron)")

    def _names(self, value: Any, nodes: set[str], option: str) -> list[str]:
        if value is None:
            return []
        if value == "all":
            return (
                list(self.module.node_names)
                if option == "record"
                else [n for n in self.module.node_names if self.module.op(n).stateful]
            )
        names = [value] if isinstance(value, str) else list(value)
        unknown = sorted(set(names) - nodes)
        if unknown:
            raise ConfigError(
                f"{option}: unknown layer(s) {unknown}; layers: {', '.join(self.module.node_names)}"
            )
        return names

    def _voltage_readout(self) -> bool:
        """Whether every node feeding the (first) Output is a non-spiking neuron (LI, CubaLI,
        I): a voltage readout, whose mean over time is the class scores (as on the Loihi
        targets' default ``readout_reduce="mean"``)."""
        graph = self.module.info.flat
        feeding = graph.predecessors(self.module.outputs[0])
        return bool(feeding) and all(
            isinstance(graph.nodes[name], nir_types.ANALOG_NEURONS) for name in feeding
        )

    def _output_layer(self) -> str | None:
        """The spiking node nearest upstream of the (first) Output node."""
        preds = {name: self.module.info.flat.predecessors(name) for name in self.module.node_names}
        frontier = [self.module.outputs[0]]
        seen: set[str] = set()
        while frontier:
            name = frontier.pop(0)
            if name in seen:
                continue
            seen.add(name)
            if self.module.op(name).spiking:
                return name
            frontier.extend(preds[name])
        return None

    def _prepare(self, inputs: Any) -> torch.Tensor:
        tensor = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(np.asarray(inputs))
        shape = next(iter(self.module.input_shapes.values()))
        if tensor.dim() == len(shape) + 2 and tensor.shape[0] != self.timesteps:
            raise ConfigError(
                f"input has {tensor.shape[0]} timesteps but the target was compiled for {self.timesteps}"
            )
        return tensor.to(device=self.device, dtype=torch.float32)

    def run(self, inputs: Any) -> RunResult:
        """Run a batch: images ``[B, *shape]`` (static) or a ``[T, B, *shape]`` tensor."""
        if len(self.module.inputs) != 1:
            raise TargetError("the torch target runs graphs with one Input node")
        x = self._prepare(inputs)
        static = x.dim() == len(next(iter(self.module.input_shapes.values()))) + 1
        batch_axis = 0 if static else 1
        chunk = self.options.get("batch_size") or x.shape[batch_axis]
        wanted = sorted(set(self.record) | ({self.output_layer} if self.output_layer else set()))
        parts: list[Any] = []
        with Stopwatch() as watch:
            for start in range(0, x.shape[batch_axis], chunk):
                piece = x.narrow(batch_axis, start, min(chunk, x.shape[batch_axis] - start))
                try:
                    run = self.module.run(
                        piece,
                        timesteps=self.timesteps,
                        record=wanted,
                        record_states=bool(self.record_voltage),
                        count_spikes=True,
                    )
                except RuntimeError as exc:  # e.g. CUDA out of memory
                    raise TargetError(
                        f"torch target failed while running the graph: {exc}"
                    ) from exc
                parts.append(run)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)

        def cat(tensors: list[torch.Tensor], dim: int) -> np.ndarray:
            whole = tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim=dim)
            return whole.cpu().numpy()

        output = cat([p.output for p in parts], 1)
        scores = (
            output.mean(axis=0).reshape(output.shape[1], -1).astype(np.float64)
            if self.readout
            else None
        )
        spike_counts = {
            name: cat([p.spike_counts[name] for p in parts], 0).round().astype(np.int64)
            for name in parts[0].spike_counts
        }
        if self.output_layer is not None:
            output_spikes = cat([p.recorded[self.output_layer] for p in parts], 1).astype(np.uint8)
        else:
            output_spikes = np.zeros((self.timesteps, output.shape[1], 0), dtype=np.uint8)
        spikes = {}
        for name in self.record:
            trace = cat([p.recorded[name] for p in parts], 1)
            spikes[name] = trace.astype(np.uint8) if self.module.op(name).spiking else trace
        voltages = {
            name: cat([p.states[name]["v"] for p in parts], 1) for name in self.record_voltage
        }
        return RunResult(
            target="torch",
            timesteps=self.timesteps,
            scores=scores,
            output_spikes=output_spikes,
            spike_counts=spike_counts,
            wall_time_s=watch.seconds,
            hardware_steps=self.timesteps,
            spikes=spikes,
            voltages=voltages,
            extra={"output": output, "output_layer": self.output_layer, "device": str(self.device)},
        )


@register_target("torch")
class TorchTarget(Target):
    """Floating-point NIR runtime in torch (CPU or CUDA); spikes equal the Norse model's."""

    description = "floating-point NIR runtime in torch (CPU/CUDA), Norse-identical LIF arithmetic"
    extra_options = {
        "dt": "time step: seconds or a dt convention name (neurall, norse, snntorch, sinabs, "
        "rockpool, lava-dl; conversion.dt_conventions); default: the graph's metadata['dt']",
        "dt_convention": "a dt convention name (as dt; both given must agree)",
    }

    def check(self, graph: Any) -> list[str]:
        """Unsupported nodes and structural problems of ``graph`` ([] if it can run)."""
        if not isinstance(graph, (nir.NIRGraph, str, os.PathLike)):
            raise TypeError(f"expected a nir.NIRGraph or a path, got {type(graph).__name__}")
        try:
            loaded = _load_graph(graph)
        except NeurallError as exc:
            return [str(exc)]
        problems = _unsupported_nodes(loaded)
        if problems:
            return problems
        try:
            info = validate_graph(loaded)
            needs_dt = any(isinstance(n, nir_types.TIMED) for n in info.flat.nodes.values())
            if needs_dt and resolve_dt(loaded, info, None) is None:
                problems.append("the graph stores no dt (metadata['dt']); compile it with dt=...")
        except NeurallError as exc:
            problems.append(str(exc))
        return problems

    def compile(self, graph: Any, **options: Any) -> TorchDeployed:
        opts = self.parse_options(
            options,
            {
                "dt": None,
                "dt_convention": None,
            },
        )
        module = NIRModule(_load_graph(graph), dt=opts["dt"], dt_convention=opts["dt_convention"])
        return TorchDeployed(module, opts)
