"""Build a real Lava process graph for one sample of a :class:`LoihiNetwork`, and say
what a backend cannot build (:func:`lava_problems`).

Two backends:

* **process** (:func:`build_process_graph`): one Lava ``LIF`` per neuron group, and per
  synapse a ``Dense`` (delay 1), ``DelayDense`` (delay > 1, ``delays = delay - 1``) or
  ``Conv`` process. Several synapses into one group all connect to its ``a_in`` port;
  Lava's ``PyInPortVectorDense.recv`` sums them. Lava's fixed-point ``Conv`` model
  ignores ``weight_exp``, so its weights carry the exponent
  (:func:`~hw_targets.loihi.fixed_point.conv_weights_for_lava`); a conv layer whose
  exponent cannot be folded exactly is unrolled into a ``Dense``. A conv synapse with
  delay ``d > 1`` is realised by ``d - 1`` relay LIF groups (identity 1x1 conv, weight 2,
  threshold 1, no decay: each relay fires exactly when its input fired one step before).
  Dense weights are permuted to Lava's (W, H, C) layout, conv weights flipped and
  transposed for Lava's true convolution.
* **netx** (:func:`build_netx_graph`): ``lava.lib.dl.netx.hdf5.Network`` loads the file
  itself (chain networks; fixed point only).

Both attach :mod:`hw_targets.loihi.lava_procs.recorders` to every group (spikes) and to the
voltages asked for, and return the bias schedule: ``(step, LIF process, bias)`` to set
between ``RunSteps`` chunks so that group ``g`` gets its bias from ``bias_start_step`` on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hw_targets.loihi.fixed_point import conv_weights_for_lava
from hw_targets.loihi.network import (
    LoihiNetwork,
    NeuronGroup,
    Synapse,
    flat_index_perm_torch_to_lava,
    to_lava_layout,
)
from hw_targets.loihi.options import Precision
from hw_targets.loihi.spec import (
    DELAY_EXTRA_MAX,
    DU_MEMORYLESS,
    LAVA_CONV_MAX_GROUPS,
    MAX_UNROLLED_ENTRIES,
    WEIGHT_BITS,
    WEIGHT_MANT_STEP,
)
from neurall_neuro.errors import ConfigError, TargetError

#: ``backend`` values of the lava-sim target.
BACKENDS = ("auto", "process", "netx")


def lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Lava's (W, H, C) order of a torch (C, H, W) shape."""
    return tuple(reversed(shape))


@dataclass
class LavaGraph:
    """Processes of one sample; ``root`` is the process to run and stop."""

    root: Any
    spike_files: dict[str, tuple[Path, tuple[int, ...], str]] = field(default_factory=dict)
    voltage_files: dict[str, tuple[Path, tuple[int, ...], str]] = field(default_factory=dict)
    schedule: list[tuple[int, Any, np.ndarray]] = field(default_factory=list)
    #: groups asked for voltages that have none (a spike source): ``{name: shape}``
    zero_voltages: dict[str, tuple[int, ...]] = field(default_factory=dict)


def conv_problem(network: LoihiNetwork, syn: Synapse) -> str | None:
    """Why the process backend cannot realise ``syn`` (None if it can)."""
    if syn.kind != "conv" or conv_weights_for_lava(syn.weight, syn.weight_exp) is not None:
        return None
    entries = network.group(syn.src).size * network.group(syn.dst).size
    if entries > MAX_UNROLLED_ENTRIES:
        return (
            f"synapse {syn.name!r}: Lava's Conv ignores weight_exp and exponent {syn.weight_exp} cannot be "
            f"folded into its weights exactly; the unrolled Dense would need {entries} weights "
            f"(limit {MAX_UNROLLED_ENTRIES})"
        )
    return None


def choose_backend(backend: str, netx_path: Path | None, precision: Precision) -> str:
    """``backend`` checked; ``"auto"`` becomes ``"netx"`` for a netx file in fixed point,
    else ``"process"``."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend == "auto":
        return "netx" if netx_path is not None and precision == "fixed" else "process"
    return backend


def lava_problems(
    network: LoihiNetwork | None, backend: str, netx_path: Path | None, precision: Precision
) -> list[str]:
    """What the chosen backend cannot run (messages). With ``network=None`` (a NIR graph
    not quantised yet) only the backend's own requirements are checked; the synapses are
    checked again when the network is known."""
    problems: list[str] = []
    if backend == "netx":
        if netx_path is None:
            problems.append(
                "backend='netx' needs a netx file as the graph (it loads it with netx.hdf5.Network)"
            )
        if precision != "fixed":
            problems.append(
                "backend='netx' runs fixed point only (its neuron parameters are fixed-point values)"
            )
        return problems
    for syn in network.synapses if network is not None else []:
        problem = conv_problem(network, syn) if precision == "fixed" else None
        if problem:
            problems.append(problem)
        if syn.kind == "dense" and syn.delay - 1 > DELAY_EXTRA_MAX:
            problems.append(
                f"synapse {syn.name!r}: delay {syn.delay} exceeds Lava DelayDense's 64 steps"
            )
    return problems


def _lif(
    shape: tuple[int, ...],
    name: str,
    precision: Precision,
    group: NeuronGroup | None,
    bias: np.ndarray,
) -> Any:
    from lava.proc.lif.process import LIF

    if group is None:  # relay neuron
        if precision == "fixed":
            return LIF(
                shape=lava_shape(shape),
                du=DU_MEMORYLESS,
                dv=0,
                vth=1,
                bias_mant=0,
                bias_exp=0,
                name=name,
            )
        return LIF(
            shape=lava_shape(shape), du=1.0, dv=0.0, vth=1.0, bias_mant=0.0, bias_exp=0, name=name
        )
    if precision == "fixed":
        return LIF(
            shape=lava_shape(shape),
            du=group.du,
            dv=group.dv,
            vth=group.vth,
            bias_mant=to_lava_layout(bias.astype(np.int64), len(shape)),
            bias_exp=group.bias_exp,
            name=name,
        )
    fp = group.float_params()
    return LIF(
        shape=lava_shape(shape),
        du=float(fp["du"]),
        dv=float(fp["dv"]),
        vth=float(fp["vth"]),
        bias_mant=to_lava_layout(bias.astype(np.float64), len(shape)),
        bias_exp=0,
        name=name,
    )


def _dense(weights: np.ndarray, exp: int, delay: int, precision: Precision, name: str) -> Any:
    from lava.proc.dense.process import DelayDense, Dense
    from lava.utils.weightutils import SignMode

    kwargs: dict[str, Any] = {"name": name}
    if precision == "fixed":
        kwargs.update(weight_exp=int(exp), num_weight_bits=WEIGHT_BITS, sign_mode=SignMode.MIXED)
        weights = weights.astype(np.int32)
    else:
        weights = weights.astype(np.float64)
    if delay > 1:
        return DelayDense(weights=weights, delays=int(delay - 1), **kwargs)
    return Dense(weights=weights, **kwargs)


def ungroup_conv_weight(weight: np.ndarray, groups: int) -> np.ndarray:
    """The ``groups=1`` weight ``(O, I, kh, kw)`` of a grouped convolution (block diagonal).

    Output channel ``o`` of group ``g = o // (O / groups)`` reads input channels
    ``g * I_g ... (g + 1) * I_g - 1``; every other input channel gets weight 0, so the
    ungrouped convolution computes exactly the same sums.
    """
    out_c, in_per_group = weight.shape[:2]
    out_per_group = out_c // groups
    dense = np.zeros((out_c, in_per_group * groups, *weight.shape[2:]), dtype=weight.dtype)
    for o in range(out_c):
        g = o // out_per_group
        dense[o, g * in_per_group : (g + 1) * in_per_group] = weight[o]
    return dense


def _conv(weight: np.ndarray, syn: Synapse, src_shape: tuple[int, ...], name: str) -> Any:
    from lava.proc.conv.process import Conv

    groups = int(syn.groups)
    if groups > LAVA_CONV_MAX_GROUPS:  # an int8 Var in Lava: 160 groups would become -96
        weight, groups = ungroup_conv_weight(weight, groups), 1
    lava_w = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))
    return Conv(
        weight=lava_w,
        input_shape=lava_shape(src_shape),
        padding=tuple(syn.padding[::-1]),
        stride=tuple(syn.stride[::-1]),
        dilation=tuple(syn.dilation[::-1]),
        groups=groups,
        weight_exp=0,
        name=name,
    )


def _port_out(proc_port: Any, shape: tuple[int, ...]) -> Any:
    """A group's spike port as a flat vector in Lava's C order (dense synapse input)."""
    return proc_port.flatten() if len(shape) > 1 else proc_port


def _connect_to_group(a_out: Any, dst: Any, shape: tuple[int, ...]) -> None:
    port = a_out.reshape(lava_shape(shape)) if len(shape) > 1 else a_out
    port.connect(dst.a_in)


def _recorders(
    graph: LavaGraph,
    spike_ports: dict[str, tuple[Any, tuple[int, ...]]],
    voltage_vars: dict[str, tuple[Any, tuple[int, ...]]],
    steps: int,
    workdir: Path,
    precision: Precision,
) -> None:
    from hw_targets.loihi.lava_procs.recorders import SpikeRecorder, VarRecorder

    for i, (name, (port, shape)) in enumerate(spike_ports.items()):
        path = workdir / f"spikes_{i}.bin"
        np.memmap(path, dtype=np.uint8, mode="w+", shape=(steps, *lava_shape(shape))).flush()
        rec = SpikeRecorder(shape=lava_shape(shape), path=str(path), steps=steps, dtype="uint8")
        port.connect(rec.a_in)
        graph.spike_files[name] = (path, shape, "uint8")
    vdtype = "int32" if precision == "fixed" else "float64"
    for i, (name, (var, shape)) in enumerate(voltage_vars.items()):
        path = workdir / f"voltage_{i}.bin"
        np.memmap(path, dtype=vdtype, mode="w+", shape=(steps, *lava_shape(shape))).flush()
        VarRecorder(var=var, path=str(path), steps=steps, dtype=vdtype)
        graph.voltage_files[name] = (path, shape, vdtype)


def _bias_of(group: NeuronGroup, precision: Precision) -> np.ndarray:
    return (
        group.bias_mant
        if precision == "fixed"
        else np.asarray(group.float_params()["bias"], dtype=np.float64)
    )


def build_process_graph(
    network: LoihiNetwork,
    precision: Precision,
    steps: int,
    workdir: Path,
    input_bias: np.ndarray | None,
    input_spikes: np.ndarray | None,
    record_voltage: Iterable[str],
) -> LavaGraph:
    """Lava processes for one sample (``input_bias [*shape]`` or ``input_spikes [steps, *shape]``)."""
    from lava.proc.io.source import RingBuffer

    procs: dict[str, Any] = {}
    spike_ports: dict[str, tuple[Any, tuple[int, ...]]] = {}
    graph = LavaGraph(root=None)
    for group in network.groups:
        if group.name == network.input and input_spikes is not None:
            lava_data = np.moveaxis(
                to_lava_layout(np.asarray(input_spikes), len(group.shape)), 0, -1
            )
            src = RingBuffer(
                data=lava_data.astype(np.int32 if precision == "fixed" else np.float64)
            )
            procs[group.name] = src
            spike_ports[group.name] = (src.s_out, group.shape)
            continue
        bias = _bias_of(group, precision)
        if group.name == network.input and input_bias is not None:
            bias = np.asarray(input_bias)
        start = group.bias_start_step
        delayed = start > 0 and np.any(bias != 0)
        proc = _lif(
            group.shape, group.name, precision, group, np.zeros_like(bias) if delayed else bias
        )
        if delayed and start < steps:
            graph.schedule.append((start, proc, to_lava_layout(bias, len(group.shape))))
        procs[group.name] = proc
        spike_ports[group.name] = (proc.s_out, group.shape)
    for syn in network.synapses:
        src_g, dst_g = network.group(syn.src), network.group(syn.dst)
        src_port = spike_ports[syn.src][0]
        dst = procs[syn.dst]
        if syn.kind == "conv" and precision == "fixed":
            lava_w = conv_weights_for_lava(syn.weight, syn.weight_exp)
        elif syn.kind == "conv":
            lava_w = syn.float_weights()
        else:
            lava_w = None
        if syn.kind == "conv" and lava_w is not None:
            for k in range(syn.delay - 1):  # relay neurons for conv delays
                relay = _lif(
                    src_g.shape, f"{syn.name}.relay{k}", precision, None, np.zeros(src_g.shape)
                )
                c = src_g.shape[0]
                ident_syn = Synapse(  # the smallest mantissa: v = 2 << 6 > vth << 6 = 64
                    f"{syn.name}.relay{k}.syn",
                    syn.src,
                    syn.src,
                    "conv",
                    np.full((c, 1, 1, 1), WEIGHT_MANT_STEP),
                    groups=c,
                )
                ident_w = ident_syn.weight if precision == "fixed" else ident_syn.effective_weight
                ident = _conv(ident_w, ident_syn, src_g.shape, ident_syn.name)
                src_port.connect(ident.s_in)
                ident.a_out.connect(relay.a_in)
                src_port = relay.s_out
            proc = _conv(lava_w, syn, src_g.shape, syn.name)
            src_port.connect(proc.s_in)
            proc.a_out.connect(dst.a_in)
            continue
        if syn.kind == "conv":  # fixed point, exponent not foldable: unrolled Dense
            problem = conv_problem(network, syn)
            if problem:
                raise TargetError(problem)
            mant = syn.dense_mantissas(src_g.shape)
        else:
            mant = syn.weight if precision == "fixed" else syn.float_weights()
        perm_src = flat_index_perm_torch_to_lava(src_g.shape)
        perm_dst = flat_index_perm_torch_to_lava(dst_g.shape)
        weights = np.asarray(mant)[perm_dst][:, perm_src]
        proc = _dense(weights, syn.weight_exp, syn.delay, precision, syn.name)
        _port_out(src_port, src_g.shape).connect(proc.s_in)
        _connect_to_group(proc.a_out, dst, dst_g.shape)
    # a replayed spike source (RingBuffer) has no voltage: it reads as zeros
    # (read_recordings), as in the emulator
    voltage_vars = {
        name: (procs[name].v, network.group(name).shape)
        for name in record_voltage
        if hasattr(procs[name], "v")
    }
    _recorders(graph, spike_ports, voltage_vars, steps, workdir, precision)
    graph.zero_voltages = {
        name: network.group(name).shape for name in record_voltage if name not in voltage_vars
    }
    graph.root = procs[network.input]
    return graph


def build_netx_graph(
    path: Path,
    network: LoihiNetwork,
    steps: int,
    workdir: Path,
    input_bias: np.ndarray,
    record_voltage: Iterable[str],
) -> LavaGraph:
    """``netx.hdf5.Network(path)`` with recorders, the input bias and the bias schedule."""
    from lava.lib.dl import netx

    net = netx.hdf5.Network(net_config=str(path))
    if len(net.layers) != len(network.groups):
        raise TargetError(
            f"{path}: Lava built {len(net.layers)} layers, the network has {len(network.groups)} groups"
        )
    graph = LavaGraph(root=net)
    spike_ports: dict[str, tuple[Any, tuple[int, ...]]] = {}
    voltage_vars: dict[str, tuple[Any, tuple[int, ...]]] = {}
    wanted_v = set(record_voltage)
    for layer, group in zip(net.layers, network.groups, strict=True):
        if tuple(layer.shape) != lava_shape(group.shape):
            raise TargetError(
                f"{path}: layer {group.name!r} has Lava shape {layer.shape}, expected {lava_shape(group.shape)}"
            )
        bias = input_bias if group.name == network.input else group.bias_mant
        start = group.bias_start_step
        if group.name == network.input or (start > 0 and np.any(bias != 0)):
            delayed = start > 0 and np.any(bias != 0)
            lava_bias = to_lava_layout(np.asarray(bias, dtype=np.int64), len(group.shape))
            layer.neuron.bias_mant.init = np.zeros_like(lava_bias) if delayed else lava_bias
            if delayed and start < steps:
                graph.schedule.append((start, layer.neuron, lava_bias))
        spike_ports[group.name] = (layer.out, group.shape)
        if group.name in wanted_v:
            voltage_vars[group.name] = (layer.neuron.v, group.shape)
    _recorders(graph, spike_ports, voltage_vars, steps, workdir, "fixed")
    return graph


def read_recordings(graph: LavaGraph) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``({group: spikes [steps, *shape] uint8}, {group: v [steps, *shape]})`` in torch layout."""

    def load(path: Path, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        data = np.fromfile(path, dtype=dtype).reshape(-1, *lava_shape(shape))
        return np.ascontiguousarray(to_lava_layout(data, len(shape)))

    spikes = {name: load(*info) for name, info in graph.spike_files.items()}
    volts = {name: load(*info) for name, info in graph.voltage_files.items()}
    if graph.voltage_files or graph.zero_voltages:
        steps = next(iter(spikes.values())).shape[0]
        dtype = next(iter(graph.voltage_files.values()))[2] if graph.voltage_files else "int32"
        for name, shape in graph.zero_voltages.items():
            volts[name] = np.zeros((steps, *shape), dtype=dtype)
    return spikes, volts
