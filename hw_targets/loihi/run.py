"""One run of a Loihi simulator, from inputs to a :class:`~hw_targets.base.RunResult`.

Shared by ``loihi-emu`` and ``lava-sim``: :func:`prepare_inputs` turns images, bias
mantissas or spike trains into the input group's drive; :func:`plan_run` decides how
many hardware steps to simulate and where each group's window of ``T`` steps starts
(Loihi delays every synapse layer by one step); a simulator returns a :class:`RawTrace`
of all hardware steps; :func:`assemble_result` cuts the windows out of it and turns the
readout voltage into scores (``v / 64 / scale / T``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hw_targets.base import RunResult
from hw_targets.loihi.network import LoihiNetwork
from hw_targets.loihi.options import InputMode, Precision
from hw_targets.loihi.spec import A_IN_UNIT, BIAS_MANT_RANGE, V_MAX
from neurall_neuro.errors import ConfigError, ConversionError

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
    length); ``events``: the same for a network whose input group is the NIR graph's
    Input node (event input, ``metadata["input_encoding"] == "events"``): the events
    ``[T, B, *input_shape]`` drive the first synapses directly, as Lava's ``RingBuffer``
    or netx's input layer (nonzero entries are spikes: Loihi spikes are binary).
    ``auto``: ``events`` for an event-input network, ``image`` if the network has an
    encoder, else ``bias``.
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
        if network.metadata.get("input_encoding") == "events":
            mode = "events"
        else:
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
        low, high = BIAS_MANT_RANGE
        if lo < low or hi > high:
            raise ConfigError(
                f"input bias mantissa {lo if lo < low else hi} is outside {low}..{high}"
            )
        bias = (
            mant
            if precision == "fixed"
            else (mant << group.bias_exp).astype(np.float64) / A_IN_UNIT
        )
        return PreparedInputs(arr.shape[0], bias=bias)
    if mode in ("spikes", "events"):
        if arr.ndim != len(group.shape) + 2 or arr.shape[2:] != group.shape:
            what = "input spikes" if mode == "spikes" else "input events"
            raise ConfigError(
                f"{what} must be [S, B, {', '.join(map(str, group.shape))}], got {arr.shape}"
            )
        spikes = (arr != 0).astype(np.uint8)
        if spikes.shape[0] < steps:
            pad = np.zeros((steps - spikes.shape[0], *spikes.shape[1:]), dtype=np.uint8)
            spikes = np.concatenate([spikes, pad], axis=0)
        return PreparedInputs(arr.shape[1], spikes=spikes[:steps])
    raise ConfigError(
        f"input_mode must be one of auto, image, bias, spikes; got {mode!r} (or 'events': "
        "[T, B, *input_shape] spikes into the NIR Input node)"
    )


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
        kind = network.metadata.get("readout")
        if kind == "voltage_mean":  # the mean of a leaky readout's voltage over the window
            v_read = v[start : last + 1].reshape(n, v.shape[1], -1).astype(np.float64).mean(axis=0)
        else:
            v_read = v[last].reshape(v.shape[1], -1).astype(np.float64)
        if trace.precision == "fixed":
            extra["readout_saturated"] = bool(np.any(np.abs(v[: last + 1]) >= V_MAX))
            v_read = v_read / A_IN_UNIT
        # an integrator's final voltage over T is the mean over time of its input
        per_step = n if kind not in ("voltage_mean", "voltage_last") else 1
        scores = v_read / (readout.scale or 1.0) / per_step
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
