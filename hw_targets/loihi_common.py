"""Shared by the ``loihi-emu`` and ``lava-sim`` targets: resolving a graph to a
:class:`~conversion.loihi_network.LoihiNetwork`, preparing inputs, the raw per-step
trace both simulators produce, and turning it into a :class:`~hw_targets.base.RunResult`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from conversion.loihi_network import LoihiNetwork
from hw_targets.base import RunResult
from neurall_neuro.errors import (
    ConfigError,
    ConversionError,
    GraphFileError,
    NeurallError,
    TargetError,
)

Precision = Literal["fixed", "float"]
InputMode = Literal["auto", "image", "bias", "spikes"]

#: Options of the NIR -> LoihiNetwork quantisation that ``compile(..., quantization={...})``
#: passes on (see :func:`conversion.loihi_quantize.quantize_graph`).
QUANT_OPTION_HELP = "dict of options for conversion.loihi_quantize.quantize_graph (NIR graphs only)"


@dataclass
class ResolvedGraph:
    """A graph argument turned into a LoihiNetwork (``netx_path`` set for netx files)."""

    network: LoihiNetwork
    source: Literal["network", "nir", "netx"]
    netx_path: Path | None = None


def file_kind(path: str | os.PathLike[str]) -> Literal["netx", "nir"]:
    """``"netx"`` for an HDF5 file with a ``layer`` group, ``"nir"`` for one with ``node``."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise GraphFileError(f"graph file not found: {p}")
    if not h5py.is_hdf5(p):
        raise GraphFileError(f"{p} is not an HDF5 file (NIR graphs and netx networks are HDF5)")
    try:
        with h5py.File(p, "r") as f:
            keys = set(f.keys())
    except OSError as exc:
        raise GraphFileError(f"cannot open {p}: {exc} (truncated or corrupt file?)") from exc
    if "layer" in keys:
        return "netx"
    if "node" in keys:
        return "nir"
    raise GraphFileError(
        f"{p} is HDF5 but neither a netx network (no 'layer' group) nor a NIR graph (no 'node' group)"
    )


def resolve_graph(
    graph: Any, timesteps: int | None = None, quantization: Mapping[str, Any] | None = None
) -> ResolvedGraph:
    """LoihiNetwork for ``graph`` (LoihiNetwork, nir.NIRGraph, or a NIR / netx file path)."""
    import nir

    from conversion.loihi_quantize import quantize_graph

    qopts = dict(quantization or {})
    if timesteps is not None:
        qopts.setdefault("timesteps", timesteps)
    if isinstance(graph, LoihiNetwork):
        return ResolvedGraph(graph, "network")
    if isinstance(graph, nir.NIRGraph):
        return ResolvedGraph(quantize_graph(graph, **qopts), "nir")
    if isinstance(graph, (str, os.PathLike)):
        kind = file_kind(graph)
        if kind == "netx":
            from conversion.netx import read_netx

            return ResolvedGraph(read_netx(graph), "netx", Path(graph))
        from conversion.nir_io import read_nir

        return ResolvedGraph(quantize_graph(read_nir(graph), **qopts), "nir")
    raise ConfigError(
        "graph must be a nir.NIRGraph, a LoihiNetwork, or a path to a NIR or netx file; "
        f"got {type(graph).__name__}"
    )


BIAS_SCHEDULES = ("network", "depth", "none")
BIAS_SCHEDULE_HELP = (
    "'network' (each group's bias_start_step), 'depth' (every bias starts at its group's synaptic "
    "depth: what lava-dl's zero-delay training assumes) or 'none' (every bias from step 0)"
)


def apply_bias_schedule(network: LoihiNetwork, mode: str) -> LoihiNetwork:
    """``network`` with its groups' ``bias_start_step`` set per ``mode`` (a copy unless 'network')."""
    import dataclasses

    if mode not in BIAS_SCHEDULES:
        raise ConfigError(f"bias_schedule must be one of {', '.join(BIAS_SCHEDULES)}; got {mode!r}")
    if mode == "network":
        return network
    depth = network.depths() if mode == "depth" else {g.name: 0 for g in network.groups}
    groups = [dataclasses.replace(g, bias_start_step=depth[g.name]) for g in network.groups]
    return dataclasses.replace(network, groups=groups)


def check_graph_common(graph: Any) -> tuple[ResolvedGraph | None, list[str]]:
    """Structural problems that stop any Loihi target (as messages), plus the resolved
    network if there were none. For NIR graphs only the node checks run (no quantisation)."""
    import nir

    from conversion.loihi_quantize import check_graph

    try:
        if isinstance(graph, (str, os.PathLike)) and file_kind(graph) == "nir":
            from conversion.nir_io import read_nir

            graph = read_nir(graph)
        if isinstance(graph, nir.NIRGraph):
            problems = check_graph(graph)
            if problems:
                return None, problems
        return resolve_graph(graph), []
    except NeurallError as exc:
        return None, [str(exc)]


# ----------------------------------------------------------------------------- inputs


@dataclass
class PreparedInputs:
    """Per-sample drive of the input group: ``bias`` ``[B, *shape]`` (int64 mantissas in
    fixed point, float a_in units in floating point) or ``spikes`` ``[S, B, *shape]``."""

    batch: int
    bias: np.ndarray | None = None
    spikes: np.ndarray | None = None


def prepare_inputs(
    network: LoihiNetwork, inputs: Any, mode: InputMode, precision: Precision, steps: int
) -> PreparedInputs:
    """Validate ``inputs`` and turn them into the input group's drive.

    ``image``: images ``[B, C, H, W]`` through the host encoder; ``bias``: bias
    mantissas ``[B, *shape]`` of the input group (integers); ``spikes``: spike trains
    ``[S, B, *shape]`` replacing the input group's own dynamics (zero-padded to the run
    length). ``auto``: ``image`` if the network has an encoder, else ``bias``.
    """
    group = network.group(network.input)
    if isinstance(inputs, Mapping):
        raise ConfigError(
            "inputs must be one array (images, input biases or input spikes), not a dict"
        )
    try:
        import torch

        if isinstance(inputs, torch.Tensor):
            inputs = inputs.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    arr = np.asarray(inputs)
    if mode == "auto":
        mode = "image" if network.encoder is not None else "bias"
    if mode == "image":
        if network.encoder is None:
            raise ConfigError(
                "input_mode='image' needs a network with a host encoder (a NIR graph Input -> Conv2d -> LIF)"
            )
        shape = network.encoder.input_shape
        if arr.ndim == len(shape):
            arr = arr[None]
        if arr.shape[1:] != shape:
            raise ConfigError(f"images must be [B, {', '.join(map(str, shape))}], got {arr.shape}")
        bias = (
            network.encoder.encode(arr)
            if precision == "fixed"
            else network.encoder.encode_float(arr)
        )
        return PreparedInputs(arr.shape[0], bias=bias)
    if mode == "bias":
        if arr.ndim == len(group.shape):
            arr = arr[None]
        if arr.shape[1:] != group.shape:
            raise ConfigError(
                f"input biases must be [B, {', '.join(map(str, group.shape))}] (the input group "
                f"{group.name!r}), got {arr.shape}"
            )
        if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
            raise ConfigError("input bias mantissas must be integers")
        mant = arr.astype(np.int64)
        lo, hi = int(mant.min()), int(mant.max())
        if lo < -4096 or hi > 4095:
            raise ConfigError(
                f"input bias mantissa {lo if lo < -4096 else hi} is outside -4096..4095"
            )
        bias = mant if precision == "fixed" else (mant << group.bias_exp).astype(np.float64) / 64.0
        return PreparedInputs(arr.shape[0], bias=bias)
    if mode == "spikes":
        if arr.ndim != len(group.shape) + 2 or arr.shape[2:] != group.shape:
            raise ConfigError(
                f"input spikes must be [S, B, {', '.join(map(str, group.shape))}], got {arr.shape}"
            )
        spikes = (arr != 0).astype(np.uint8)
        if spikes.shape[0] < steps:
            pad = np.zeros((steps - spikes.shape[0], *spikes.shape[1:]), dtype=np.uint8)
            spikes = np.concatenate([spikes, pad], axis=0)
        return PreparedInputs(arr.shape[1], spikes=spikes[:steps])
    raise ConfigError(f"input_mode must be one of auto, image, bias, spikes; got {mode!r}")


# ----------------------------------------------------------------------------- traces


@dataclass
class RawTrace:
    """What a simulator returns for ``steps`` hardware steps and a batch of ``B``.

    ``counts``: per spiking group the spikes per step and sample ``[steps, B]``;
    ``spikes``/``voltages``: per recorded group ``[steps, B, *shape]``; voltages are raw
    ``v`` (fixed point: 64 per a_in unit) or floats (a_in units) per ``precision``.
    """

    steps: int
    precision: Precision
    counts: dict[str, np.ndarray]
    spikes: dict[str, np.ndarray] = field(default_factory=dict)
    voltages: dict[str, np.ndarray] = field(default_factory=dict)

    @staticmethod
    def concat(parts: list[RawTrace]) -> RawTrace:
        """Join traces of consecutive batch chunks along the batch axis."""
        first = parts[0]
        return RawTrace(
            first.steps,
            first.precision,
            {k: np.concatenate([p.counts[k] for p in parts], axis=1) for k in first.counts},
            {k: np.concatenate([p.spikes[k] for p in parts], axis=1) for k in first.spikes},
            {k: np.concatenate([p.voltages[k] for p in parts], axis=1) for k in first.voltages},
        )


@dataclass
class RunPlan:
    """How many hardware steps to run and where each group's window starts."""

    timesteps: int
    hardware_steps: int
    starts: dict[str, int]
    spike_groups: list[str]
    record: list[str]
    record_voltage: list[str]


def plan_run(
    network: LoihiNetwork,
    timesteps: int,
    align: bool,
    record: Iterable[str] | str | None,
    record_voltage: Iterable[str] | str | None,
) -> RunPlan:
    """Windows: with ``align`` every group is read over ``[depth, depth + T)`` and the run
    lasts ``T + max depth`` steps; otherwise every window is ``[0, T)``."""
    names = [g.name for g in network.groups]

    def pick(value: Iterable[str] | str | None, what: str) -> list[str]:
        if value is None:
            return []
        if value == "all":
            return list(names)
        if isinstance(value, str):
            value = [value]
        chosen = list(value)
        unknown = sorted(set(chosen) - set(names))
        if unknown:
            raise ConfigError(
                f"{what}: unknown layer(s) {', '.join(unknown)}; layers: {', '.join(names)}"
            )
        return chosen

    if align:
        try:
            depth = network.depths()
        except ConversionError as exc:
            raise ConfigError(
                f"align=True needs an acyclic network ({exc}); use align=False"
            ) from exc
        starts = dict(depth)
        steps = timesteps + max(depth.values(), default=0)
    else:
        starts = {n: 0 for n in names}
        steps = timesteps
    readout = network.readout_group
    rec_v = pick(record_voltage, "record_voltage")
    if readout is not None and readout.name not in rec_v:
        rec_v.append(readout.name)
    record_list = pick(record, "record")
    if network.output not in record_list:
        record_list.append(network.output)
    spike_groups = [g.name for g in network.groups if g.readout == "spikes"]
    return RunPlan(timesteps, steps, starts, spike_groups, record_list, rec_v)


def assemble_result(
    network: LoihiNetwork,
    plan: RunPlan,
    trace: RawTrace,
    target: str,
    wall_time_s: float,
    user_record: list[str],
) -> RunResult:
    """Cut each group's window out of the raw trace and compute counts and scores."""
    T = plan.timesteps

    def window(name: str, arr: np.ndarray) -> np.ndarray:
        start = plan.starts[name]
        out = arr[start : start + T]
        if out.shape[0] < T:  # unaligned run of a deep layer: pad with "no data yet" zeros
            pad = np.zeros((T - out.shape[0], *out.shape[1:]), dtype=out.dtype)
            out = np.concatenate([out, pad], axis=0)
        return out

    counts = {
        name: window(name, c).sum(axis=0).astype(np.int64) for name, c in trace.counts.items()
    }
    output_spikes = window(network.output, trace.spikes[network.output]).astype(np.uint8)
    scores = None
    extra: dict[str, Any] = {"starts": dict(plan.starts), "precision": trace.precision}
    readout = network.readout_group
    if readout is not None:
        v = trace.voltages[readout.name]
        start = plan.starts[readout.name]
        last = min(start + T, plan.hardware_steps) - 1
        n = max(last - start + 1, 1)
        v_last = v[last].reshape(v.shape[1], -1).astype(np.float64)
        if trace.precision == "fixed":
            limit = (1 << 23) - 1
            extra["readout_saturated"] = bool(np.any(np.abs(v[: last + 1]) >= limit))
            v_last = v_last / 64.0
        scores = v_last / (readout.scale or 1.0) / n
    spikes = {name: window(name, trace.spikes[name]).astype(np.uint8) for name in user_record}
    voltages = {name: window(name, trace.voltages[name]) for name in plan.record_voltage}
    return RunResult(
        target=target,
        timesteps=T,
        scores=scores,
        output_spikes=output_spikes,
        spike_counts=counts,
        wall_time_s=wall_time_s,
        hardware_steps=plan.hardware_steps,
        spikes=spikes,
        voltages=voltages,
        extra=extra,
    )


def parse_precision(value: Any) -> Precision:
    if value not in ("fixed", "float"):
        raise ConfigError(f"precision must be 'fixed' or 'float', got {value!r}")
    return value  # type: ignore[return-value]


def require_fixed(precision: Precision, target: str) -> None:
    if precision != "fixed":
        raise TargetError(
            f"target {target!r} is bit-exact fixed point only; precision='float' is not available"
        )
