r"""Which NIR structures become which Loihi neuron groups and synapse layers (float).

This is the first half of :func:`hw_targets.loihi.quantize.quantize_graph`: it reads a
NIR graph of our conventions (see :mod:`conversion.nir_conventions` for the float
semantics) and yields float synapse layers, neuron parameters and depths; the
quantiser then chooses scales and integer fields.

* **Neurons.** Every ``LIF`` / ``IF`` / ``CubaLIF`` node becomes a neuron group
  (``CubaLIF``: ``du = round(4096 dt/tau_syn) - 1``, ``dv = round(4096 dt/tau_mem)``,
  weights times ``(dt/tau_mem) r (dt/tau_syn) w_in``; see :func:`neuron_spec` and
  ``docs/hardware.md``, "NIR graphs from other frameworks"). A LIF with step
  ``alpha = dt / tau`` computes ``v <- (1 - alpha) v + alpha (r I)``; on Loihi
  ``du = 4095`` (no current memory), ``dv = round(4096 alpha)`` and the incoming
  weights and biases are multiplied by ``alpha r`` before quantisation. ``tau = dt``
  (memoryless) needs ``dv = 4096``, which 12 bits cannot hold: it becomes ``dv = 4095``,
  i.e. ``v`` keeps ``|v| >> 12`` (1/4096 of itself, rounded toward zero) into the next
  step: at most 1/4096 of the previous value, zero for ``|v| < 4096`` (64 a_in units).
  ``IF`` (``v <- v + dt r I``): ``dv = 0``, weights times ``dt r`` (:func:`neuron_spec`).
* **Synapse layers.** The linear nodes between two neurons become one synapse layer
  (:func:`fold_path`): ``Conv2d``; ``AvgPool2d``/``SumPool2d(k, stride k)`` + ``Conv2d``
  folded into one strided conv (kernel ``k k'``, stride ``k s'``, padding ``k p``,
  weights ``W / k^2`` replicated over each ``k x k`` block; exact); ``[pool +] Flatten +
  Affine`` folded into one dense layer (a global pool + flatten + affine is the common
  case); ``Affine`` / ``Linear``; a direct neuron -> neuron edge becomes an identity
  synapse (a 1x1 depthwise conv of weight 1). Biases go to the target group's bias.
* **Input.** ``Input -> Conv2d -> LIF``: the conv runs on the host in float
  (:class:`~hw_targets.loihi.network.HostEncoder`) and its output is the input group's
  bias ("direct encoding"), constant over time. Event input (``input_encoding``
  ``"events"``, the default for ``per_step`` graphs and other structures): the Input
  node is a spike source group and its paths are ordinary synapse layers.
* **Readout.** The ``Affine`` feeding ``Output`` becomes a non-spiking integrator group
  (``du = 4095``, ``dv = 0``, ``vth = 131071`` that it cannot reach): its final voltage
  divided by ``64 scale T`` is the mean over time of the Affine's output. An ``LI`` /
  ``CubaLI`` / ``I`` feeding ``Output`` is a voltage readout (the same decays as
  LIF/CubaLIF/IF, the unreachable threshold), read as ``v / (64 scale)``.
* **Recurrent edges** (an edge closing a cycle, delivering the previous step's spikes):
  a synapse with delay ``d(dst) - d(src) + 1``: 1 for a population fed back into
  itself; depths ignore them (:func:`compute_depths`).
* **Delays.** Loihi delays every synapse layer by one step. Each group gets the depth
  ``d(g) = max(d(src) + 1)`` (:func:`compute_depths`) and every synapse the delay
  ``d(dst) - d(src)``, so all paths into a group (e.g. the SE gate path and the direct
  feature edge into the AND neuron) arrive together; ``bias_start_step = d(g)``. The
  Loihi run then equals the float run shifted by each group's depth.

:func:`check_graph` lists what stops the mapping, without quantising anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import nir
import numpy as np

from conversion import nir_types
from conversion.nir_conventions import INPUT_PER_STEP, INPUT_STATIC
from conversion.nir_graph import GraphInfo, validate_graph
from conversion.nir_io import graph_metadata
from conversion.nir_nodes import as_array, int_tuple
from conversion.nir_runtime import resolve_dt
from hw_targets.loihi.spec import DECAY_MAX, DECAY_UNITY, DU_OFFSET, VTH_HW_MAX
from neurall_neuro.errors import (
    ConfigError,
    ConversionError,
    GraphFileError,
    QuantizationError,
    UnsupportedNodeError,
)

#: The spiking NIR neuron types (a Loihi CUBA neuron: du = 4095 for LIF/IF, du < 4095
#: for CubaLIF's synaptic current).
SPIKING_TYPES = (nir.LIF, nir.IF, nir.CubaLIF)
#: The non-spiking NIR neurons, mapped as voltage readouts (a Loihi neuron whose
#: threshold it never reaches, read by its voltage); only as the node feeding Output.
VOLTAGE_TYPES = (nir.LI, nir.CubaLI, nir.I)
#: Every NIR node type that becomes a Loihi neuron group.
NEURON_TYPES = (*SPIKING_TYPES, *VOLTAGE_TYPES)
POOL_TYPES = nir_types.POOLS
AFFINE_TYPES = nir_types.AFFINE
#: Linear maps folded into synapses.
LINEAR_TYPES = (nir.Conv2d, *POOL_TYPES, nir.Flatten, *AFFINE_TYPES)
SUPPORTED_TYPES = (nir.Input, nir.Output, *LINEAR_TYPES, *NEURON_TYPES)
#: Node type names the Loihi targets map (shown in error messages).
SUPPORTED_NAMES = tuple(t.__name__ for t in SUPPORTED_TYPES)

#: Why a node type is not mapped (shown in check messages).
_WHY_NOT = MappingProxyType(
    {
        "Threshold": "a stateless threshold has no Loihi neuron equivalent (use a LIF with tau = dt)",
        "Scale": "an elementwise scale between layers cannot be folded into Loihi synapses here",
        "Delay": "explicit delay nodes are not mapped (delays are derived from the graph structure)",
        "Conv1d": "only 2-D convolutions are mapped",
    }
)


def _walk_types(graph: nir.NIRGraph, prefix: str = "") -> Iterable[tuple[str, nir.NIRNode]]:
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            yield from _walk_types(node, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", node


def unsupported_nodes(graph: nir.NIRGraph) -> list[str]:
    """One message per node the Loihi targets cannot map (name, type, reason, supported set)."""
    problems = []
    for name, node in _walk_types(graph):
        if isinstance(node, SUPPORTED_TYPES) or type(node).__name__ == "Identity":
            continue
        kind = type(node).__name__
        why = _WHY_NOT.get(
            kind,
            "a custom node (NIR has no max pooling or multiplication primitive: an analog SE block "
            "that multiplies features by a gate, or a max pool, cannot run on these targets)",
        )
        problems.append(
            f"node {name!r} ({kind}) is not supported: {why}; supported: {', '.join(SUPPORTED_NAMES)}"
        )
    return problems


def check_graph(graph: nir.NIRGraph, input_encoding: str = "auto") -> list[str]:
    """Everything that stops :func:`hw_targets.loihi.quantize.quantize_graph`
    structurally, as messages ([] if none), without quantising.

    Checked: node types (one message per unsupported node), the graph structure
    (:func:`analyse_graph`), that every path folds into one synapse layer and every
    neuron is reached from the input, and, when the graph stores ``dt``, the neuron
    parameters a Loihi group must share or hold. Not checked: what depends on the
    quantisation options (``timesteps`` of the readout, scales, ranges).
    """
    problems = unsupported_nodes(graph)
    if problems:
        return problems
    try:
        a = analyse_graph(graph, dt=None, require_dt=False, input_encoding=input_encoding)
        compute_depths(a, fold_synapses(a), fold_readout(a))
        if a.dt is not None:
            for name in a.neurons:
                neuron_spec(name, a.info.flat.nodes[name], a.dt)
    except (ConversionError, GraphFileError, ConfigError) as exc:
        problems.append(str(exc))
    return problems


# ----------------------------------------------------------------------------- structure


@dataclass
class LinearPath:
    """A chain of linear nodes ``ops`` from a neuron (or the Input) ``src`` into a neuron
    (or, for the readout, the Affine feeding Output) ``dst``. ``recurrent``: the path
    closes a cycle (it delivers ``src``'s spikes of the previous step)."""

    src: str
    ops: list[str]
    dst: str
    recurrent: bool = False


@dataclass
class FloatSynapse:
    """One synapse layer in float (NIR units, before the neuron's ``alpha``): a linear
    path folded into one dense or conv layer, and the bias it adds to ``dst``."""

    name: str
    src: str
    dst: str
    kind: str
    weight: np.ndarray  # NIR units (before alpha)
    bias: np.ndarray  # per dst neuron (NIR units), zeros if none
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    recurrent: bool = False


#: ``input_encoding`` values of :func:`analyse_graph` (and ``quantize_graph``).
INPUT_ENCODINGS = ("auto", "direct", "events")


@dataclass
class GraphAnalysis:
    """The structure of a mappable graph: its neuron nodes (in topological order), the
    linear paths between them, how the input enters, and the readout.

    ``input_encoding``: ``"direct"`` (``Input -> Conv2d -> LIF``: the conv runs on the
    host, ``encoder_node``, and drives ``input_group``'s bias) or ``"events"`` (the Input
    node itself is ``input_group``: a spike source whose synapses are ordinary paths).
    ``readout``: the Affine readout path (None if a neuron feeds Output);
    ``voltage_readout``: the non-spiking neuron (LI/CubaLI/I) feeding Output, if any;
    ``output_group``: the spiking group whose spikes are the output spikes.
    """

    info: GraphInfo
    dt: float | None
    neurons: list[str]
    paths: list[LinearPath]
    input_node: str
    input_group: str
    encoder_node: str | None
    readout: LinearPath | None
    output_group: str
    input_encoding: str = "direct"
    voltage_readout: str | None = None


def _single_pred(info: GraphInfo, name: str) -> str:
    preds = info.flat.predecessors(name)
    if len(preds) != 1:
        node = info.flat.nodes[name]
        raise ConversionError(
            f"node {name!r} ({type(node).__name__}) sums {len(preds)} inputs ({', '.join(preds)}); on Loihi "
            "only neuron groups sum their inputs, so every linear node needs exactly one input"
        )
    return preds[0]


def _trace_back(info: GraphInfo, start: str, dst: str) -> LinearPath:
    ops: list[str] = []
    cur = start
    while True:
        node = info.flat.nodes[cur]
        if isinstance(node, NEURON_TYPES) or (
            isinstance(node, nir.Input) and cur in info.flat.inputs
        ):
            order = info.order
            recurrent = cur == dst or (
                cur in order and dst in order and order.index(cur) > order.index(dst)
            )
            return LinearPath(cur, ops, dst, recurrent)
        if not isinstance(node, LINEAR_TYPES):
            raise UnsupportedNodeError(
                f"node {cur!r} ({type(node).__name__}) cannot sit between neurons; supported: "
                f"{', '.join(t.__name__ for t in LINEAR_TYPES)}"
            )
        if cur in ops:
            raise ConversionError(
                f"the linear nodes {ops} form a cycle without a neuron; on Loihi every cycle must pass "
                "through a neuron group"
            )
        ops.insert(0, cur)
        cur = _single_pred(info, cur)


def _direct_encoding(info: GraphInfo, paths: list[LinearPath], input_node: str) -> str | None:
    """Why the graph is not ``Input -> Conv2d -> LIF/IF`` (direct encoding), or None."""
    flat = info.flat
    from_input = [p for p in paths if p.src == input_node]
    if (
        len(from_input) != 1
        or len(from_input[0].ops) != 1
        or not isinstance(flat.nodes[from_input[0].ops[0]], nir.Conv2d)
    ):
        return (
            "direct encoding needs Input -> Conv2d -> LIF: the Input must reach exactly one neuron node, "
            f"through exactly one Conv2d (found paths {[(p.ops, p.dst) for p in from_input]})"
        )
    enc = from_input[0]
    if not isinstance(flat.nodes[enc.dst], (nir.LIF, nir.IF)):
        return (
            f"direct encoding needs a LIF/IF input neuron (its bias is the conv output); {enc.dst!r} is "
            f"{type(flat.nodes[enc.dst]).__name__}"
        )
    if len([p for p in paths if p.dst == enc.dst]) != 1:
        return (
            f"the input neuron {enc.dst!r} must receive only the encoder convolution {enc.ops[0]!r}"
        )
    for user in [
        n for n, node in flat.nodes.items() if enc.ops[0] in flat.predecessors(n) and n != enc.dst
    ]:
        return f"the encoder convolution {enc.ops[0]!r} may only feed {enc.dst!r}, it also feeds {user!r}"
    return None


def _choose_encoding(graph: nir.NIRGraph, requested: str, direct_problem: str | None) -> str:
    """``"direct"`` or ``"events"`` for ``input_encoding=requested`` (see
    :func:`analyse_graph`)."""
    if requested not in INPUT_ENCODINGS:
        raise ConfigError(
            f"input_encoding must be one of {', '.join(INPUT_ENCODINGS)}; got {requested!r}"
        )
    if requested == "auto":
        stored = graph_metadata(graph).get("input_encoding")
        if stored == INPUT_PER_STEP:
            return "events"
        if stored == INPUT_STATIC or direct_problem is None:
            requested = "direct"
        else:
            return "events"
    if requested == "direct" and direct_problem is not None:
        raise ConversionError(direct_problem + " (or use input_encoding='events')")
    return requested


def analyse_graph(
    graph: nir.NIRGraph, dt: float | None, require_dt: bool = True, input_encoding: str = "auto"
) -> GraphAnalysis:
    """The structure of ``graph`` (see the module docstring); UnsupportedNodeError /
    ConversionError for what cannot be mapped, GraphFileError for invalid graphs.

    ``input_encoding``: ``"direct"`` (``Input -> Conv2d -> LIF/IF`` with the conv on the
    host), ``"events"`` (the Input is a spike source on the chip) or ``"auto"``: the
    graph's ``metadata["input_encoding"]`` (``"per_step"`` -> events, ``"static"`` ->
    direct), else direct when the structure allows it, else events.
    """
    problems = unsupported_nodes(graph)
    if problems:
        raise UnsupportedNodeError("; ".join(problems))
    info = validate_graph(graph)
    dt = resolve_dt(graph, info, dt)
    if dt is None and require_dt:
        raise ConversionError(
            "the graph stores no dt (metadata['dt'] of the graph or its neuron nodes); pass dt=... "
            "(neurall-neuro's convention is 1e-4 s)"
        )
    flat = info.flat
    if len(flat.inputs) != 1 or len(flat.outputs) != 1:
        raise ConversionError(
            f"the Loihi mapping needs exactly one Input and one Output node; found inputs {flat.inputs}, "
            f"outputs {flat.outputs}"
        )
    neurons = [n for n in info.order if isinstance(flat.nodes[n], NEURON_TYPES)]
    if not any(isinstance(flat.nodes[n], SPIKING_TYPES) for n in neurons):
        raise ConversionError("the graph has no spiking neurons (LIF, IF or CubaLIF)")
    paths = [_trace_back(info, pred, n) for n in neurons for pred in flat.predecessors(n)]
    input_node = flat.inputs[0]
    out_pred = _single_pred(info, flat.outputs[0])
    for p in paths:
        if isinstance(flat.nodes[p.src], VOLTAGE_TYPES):
            raise ConversionError(
                f"the non-spiking node {p.src!r} ({type(flat.nodes[p.src]).__name__}) feeds {p.dst!r}; on Loihi a "
                "non-spiking neuron is a voltage readout and can only feed Output"
            )
    encoding = _choose_encoding(graph, input_encoding, _direct_encoding(info, paths, input_node))
    if encoding == "direct":
        enc = next(p for p in paths if p.src == input_node)
        paths = [p for p in paths if p is not enc]
        input_group, encoder = enc.dst, enc.ops[0]
    else:
        in_shape = info.shapes[input_node][1]
        if len(in_shape) not in (1, 3):
            raise ConversionError(
                f"event input {input_node!r} has shape {in_shape}; a Loihi spike source is (N,) or (C, H, W)"
            )
        input_group, encoder = input_node, None
    readout: LinearPath | None = None
    voltage_readout: str | None = None
    out_node = flat.nodes[out_pred]
    if isinstance(out_node, SPIKING_TYPES):
        output_group = out_pred
    elif isinstance(out_node, VOLTAGE_TYPES):
        voltage_readout = out_pred
        srcs = [p.src for p in paths if p.dst == out_pred and p.src != input_node]
        if not srcs:
            raise ConversionError(f"the readout {out_pred!r} must be fed by spiking neurons")
        output_group = srcs[0]
        users = [n for n in flat.nodes if out_pred in flat.predecessors(n) and n != flat.outputs[0]]
        if users:
            raise ConversionError(
                f"the readout {out_pred!r} ({type(out_node).__name__}) also feeds {users}; a Loihi voltage "
                "readout can only feed Output"
            )
    else:
        readout = _trace_back(info, out_pred, out_pred)
        if not readout.ops or not isinstance(flat.nodes[readout.ops[-1]], AFFINE_TYPES):
            raise ConversionError(
                f"the node feeding Output ({out_pred!r}, {type(flat.nodes[out_pred]).__name__}) must be a neuron "
                "or an Affine/Linear readout"
            )
        if readout.src == input_node:
            raise ConversionError("the readout Affine must be fed by neurons, not by the Input")
        readout.dst = out_pred
        readout.recurrent = False
        output_group = readout.src
    return GraphAnalysis(
        info,
        dt,
        neurons,
        paths,
        input_node,
        input_group,
        encoder,
        readout,
        output_group,
        encoding,
        voltage_readout,
    )


# ----------------------------------------------------------------------------- folding


def conv_params(name: str, node: nir.Conv2d, in_shape: tuple[int, ...]) -> dict[str, Any]:
    """Weight, per-channel bias, stride, padding (``"same"``/``"valid"`` resolved),
    dilation and groups of a ``Conv2d`` node, as float64 arrays and int pairs."""
    weight = as_array(name, "weight", node.weight).astype(np.float64)
    stride = int_tuple(name, "stride", node.stride, 2)
    dilation = int_tuple(name, "dilation", node.dilation, 2)
    padding = node.padding.decode() if isinstance(node.padding, bytes) else node.padding
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            eff = [dilation[i] * (weight.shape[2 + i] - 1) for i in range(2)]
            if stride != (1, 1) or any(e % 2 for e in eff):
                raise ConversionError(
                    f"node {name!r}: padding='same' needs stride 1 and odd kernels"
                )
            padding = (eff[0] // 2, eff[1] // 2)
        else:
            raise ConversionError(f"node {name!r}: unknown padding {padding!r}")
    else:
        padding = int_tuple(name, "padding", padding, 2)
    bias = node.bias if getattr(node, "bias", None) is not None else np.zeros(weight.shape[0])
    bias = np.broadcast_to(
        as_array(name, "bias", bias).astype(np.float64).reshape(-1), (weight.shape[0],)
    )
    return {
        "weight": weight,
        "bias": bias.copy(),
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": int(as_array(name, "groups", node.groups)),
    }


def _pool(name: str, node: nir.NIRNode) -> tuple[tuple[int, int], float]:
    kernel = int_tuple(name, "kernel_size", node.kernel_size, 2)
    stride = int_tuple(name, "stride", node.stride, 2)
    padding = int_tuple(name, "padding", node.padding, 2)
    if stride != kernel or padding != (0, 0):
        raise ConversionError(
            f"node {name!r}: only pooling with stride == kernel and no padding can be folded "
            f"(kernel {kernel}, stride {stride}, padding {padding})"
        )
    return kernel, (1.0 / (kernel[0] * kernel[1]) if isinstance(node, nir.AvgPool2d) else 1.0)


def fold_path(a: GraphAnalysis, path: LinearPath, name: str) -> FloatSynapse:
    """The one float synapse layer that computes ``path`` (see the module docstring)."""
    nodes, shapes = a.info.flat.nodes, a.info.shapes
    src_shape = shapes[path.src][1]
    # a readout path ends at its own Affine node: its output shape is the readout's
    dst_shape = (
        shapes[path.dst][1] if path.ops and path.ops[-1] == path.dst else shapes[path.dst][0]
    )
    types = [type(nodes[o]) for o in path.ops]
    chain = " -> ".join(
        [path.src, *(f"{o} ({type(nodes[o]).__name__})" for o in path.ops), path.dst]
    )
    zeros = np.zeros(dst_shape)
    if not path.ops:
        if len(src_shape) == 3:
            c = src_shape[0]
            return FloatSynapse(
                name, path.src, path.dst, "conv", np.ones((c, 1, 1, 1)), zeros, groups=c
            )
        return FloatSynapse(
            name, path.src, path.dst, "dense", np.eye(int(np.prod(src_shape))), zeros
        )
    if types == [nir.Conv2d]:
        p = conv_params(path.ops[0], nodes[path.ops[0]], src_shape)
        bias = np.broadcast_to(p.pop("bias")[:, None, None], dst_shape).copy()
        return FloatSynapse(name, path.src, path.dst, "conv", p.pop("weight"), bias, **p)
    if len(types) == 2 and types[0] in POOL_TYPES and types[1] is nir.Conv2d:
        (kh, kw), factor = _pool(path.ops[0], nodes[path.ops[0]])
        p = conv_params(path.ops[1], nodes[path.ops[1]], shapes[path.ops[1]][0])
        if p["dilation"] != (1, 1):
            raise ConversionError(f"{chain}: a dilated conv after a pool cannot be folded")
        if p["padding"] != (0, 0) and (src_shape[1] % kh or src_shape[2] % kw):
            raise ConversionError(
                f"{chain}: pooling {src_shape} by {(kh, kw)} drops border rows and the conv pads; folding "
                "would not be exact (make the input divisible by the pool kernel)"
            )
        w = np.repeat(np.repeat(p["weight"], kh, axis=2), kw, axis=3) * factor
        bias = np.broadcast_to(p["bias"][:, None, None], dst_shape).copy()
        return FloatSynapse(
            name,
            path.src,
            path.dst,
            "conv",
            w,
            bias,
            stride=(kh * p["stride"][0], kw * p["stride"][1]),
            padding=(kh * p["padding"][0], kw * p["padding"][1]),
            groups=p["groups"],
        )
    dense_ok = (
        types
        and types[-1] in AFFINE_TYPES
        and all(t is nir.Flatten or (t in POOL_TYPES and i == 0) for i, t in enumerate(types[:-1]))
    )
    if dense_ok:
        aff = nodes[path.ops[-1]]
        weight = as_array(path.ops[-1], "weight", aff.weight).astype(np.float64)
        bias = (
            as_array(path.ops[-1], "bias", aff.bias).astype(np.float64).reshape(-1)
            if isinstance(aff, nir.Affine)
            else np.zeros(weight.shape[0])
        )
        if types[0] in POOL_TYPES:
            (kh, kw), factor = _pool(path.ops[0], nodes[path.ops[0]])
            c, h, w_ = src_shape
            ph, pw = h // kh, w_ // kw
            hh, ww = np.meshgrid(np.arange(h), np.arange(w_), indexing="ij")
            inside = (hh < ph * kh) & (ww < pw * kw)
            pooled_idx = (np.minimum(hh // kh, ph - 1) * pw + np.minimum(ww // kw, pw - 1))[
                None
            ] + (np.arange(c)[:, None, None] * ph * pw)
            dense = (
                weight[:, pooled_idx.reshape(-1)]
                * factor
                * inside.reshape(1, -1).repeat(c, 0).reshape(1, -1)
            )
            weight = dense
        if weight.shape[1] != int(np.prod(src_shape)):
            raise ConversionError(
                f"{chain}: weight {weight.shape} does not match the source size {src_shape}"
            )
        return FloatSynapse(name, path.src, path.dst, "dense", weight, bias.reshape(dst_shape))
    if types and types[0] in POOL_TYPES:
        raise ConversionError(
            f"{chain}: a pool must be followed by a Conv2d, or by Flatten + Affine (it is folded into them; "
            "Loihi has no pooling layer)"
        )
    raise ConversionError(
        f"cannot map {chain} to one Loihi synapse layer; supported: Conv2d, pool(k, stride k) + Conv2d, "
        "[pool(k, stride k) +] Flatten + Affine/Linear, Affine/Linear, or a direct neuron -> neuron edge"
    )


# ----------------------------------------------------------------------------- neurons


@dataclass
class NeuronSpec:
    r"""A neuron node in the quantiser's terms (uniform over the group).

    ``alpha``: the factor folded into the incoming weights and biases; ``decay``: the
    voltage decay fraction per step (``dv / 4096``); ``syn_decay``: the current decay
    fraction per step (``(du + 1) / 4096``; 1 = no current memory, ``du = 4095``);
    ``readout``: a non-spiking neuron, read by its voltage.
    """

    alpha: float
    decay: float
    threshold: float
    syn_decay: float = 1.0
    readout: bool = False


def _uniform(name: str, field: str, value: Any) -> float:
    arr = as_array(name, field, value).astype(np.float64)
    if arr.size == 0:
        raise GraphFileError(f"node {name!r}: field {field!r} is empty")
    if np.any(arr != arr.reshape(-1)[0]):
        raise QuantizationError(
            f"node {name!r}: {field} differs across neurons ({arr.min():g}..{arr.max():g}); a Loihi group "
            f"shares one {field}"
        )
    return float(arr.reshape(-1)[0])


def _step_fraction(name: str, field: str, value: Any, dt: float) -> float:
    """``dt / tau`` of a time constant field, in (0, 1] (QuantizationError if tau < dt)."""
    tau = _uniform(name, field, value)
    if tau <= 0:
        raise GraphFileError(f"node {name!r}: {field} must be > 0, got {tau}")
    frac = dt / tau
    if frac > 1 + 1e-9:
        what = "dv" if field in ("tau", "tau_mem") else "du + 1"
        raise QuantizationError(
            f"node {name!r}: dt/{field} = {frac:.4g} > 1 ({field} < dt) cannot be represented: "
            f"{what} = 4096*dt/{field} must be at most 4096"
        )
    return min(frac, 1.0)


def _zero_field(name: str, node: nir.NIRNode, field: str, why: str) -> None:
    value = getattr(node, field, None)
    if value is not None and np.any(as_array(name, field, value) != 0):
        raise UnsupportedNodeError(f"node {name!r}: {field} must be 0 ({why})")


def neuron_spec(name: str, node: nir.NIRNode, dt: float) -> NeuronSpec:
    r"""``alpha``, decays and threshold of a neuron node at step ``dt``; errors for what
    a Loihi group cannot share or represent.

    With ``a_m = dt/tau_mem`` (``dt/tau`` for LIF/LI), ``a_s = dt/tau_syn``:

    * ``LIF``: ``alpha = a_m r``, ``decay = a_m``; ``IF``: ``alpha = dt r``, ``decay = 0``;
    * ``CubaLIF``: ``alpha = a_m r a_s w_in``, ``decay = a_m``, ``syn_decay = a_s``;
    * ``LI`` / ``CubaLI`` / ``I``: as LIF / CubaLIF / IF, never spiking (``readout``).
    """
    readout = isinstance(node, VOLTAGE_TYPES)
    if not readout:
        _zero_field(name, node, "v_reset", "Loihi resets the voltage to 0")
    r = _uniform(name, "r", node.r)
    threshold = 0.0 if readout else _uniform(name, "v_threshold", node.v_threshold)
    if threshold < 0:
        raise QuantizationError(
            f"node {name!r}: v_threshold = {threshold} < 0; Loihi thresholds are 0..{VTH_HW_MAX}"
        )
    if isinstance(node, (nir.IF, nir.I)):
        return NeuronSpec(dt * r, 0.0, threshold, readout=readout)
    _zero_field(name, node, "v_leak", "our convention; Loihi neurons leak toward 0")
    if isinstance(node, (nir.LIF, nir.LI)):
        a_m = _step_fraction(name, "tau", node.tau, dt)
        return NeuronSpec(a_m * r, a_m, threshold, readout=readout)
    a_m = _step_fraction(name, "tau_mem", node.tau_mem, dt)
    a_s = _step_fraction(name, "tau_syn", node.tau_syn, dt)
    w_in = _uniform(name, "w_in", node.w_in)
    return NeuronSpec(a_m * r * a_s * w_in, a_m, threshold, a_s, readout)


def decay_to_dv(decay: float) -> int:
    """``dv = round(4096 decay)``, capped at the 12-bit field's 4095."""
    return int(min(round(DECAY_UNITY * decay), DECAY_MAX))


def decay_to_du(syn_decay: float) -> int:
    """``du = round(4096 syn_decay) - 1`` (Lava decays ``u`` by ``(du + 1) / 4096``):
    4095 (no current memory) for ``syn_decay = 1``."""
    return int(min(max(round(DECAY_UNITY * syn_decay) - DU_OFFSET, 0), DECAY_MAX))


# ----------------------------------------------------------------------------- layers and depths


def fold_synapses(a: GraphAnalysis) -> list[FloatSynapse]:
    """Every path between neurons folded into a synapse layer, in path order.

    A layer is named after its last linear node (``src->dst`` for a direct edge); a name
    used twice gets ``->dst`` appended. Recurrent paths keep ``recurrent=True``.
    """
    synapses: list[FloatSynapse] = []
    used: set[str] = set()
    for path in a.paths:
        base = path.ops[-1] if path.ops else f"{path.src}->{path.dst}"
        name = base if base not in used else f"{base}->{path.dst}"
        used.add(name)
        syn = fold_path(a, path, name)
        syn.recurrent = path.recurrent
        synapses.append(syn)
    return synapses


def fold_readout(a: GraphAnalysis) -> FloatSynapse | None:
    """The readout path folded into the synapse layer of the readout group (named after
    its Affine node), or None if the graph has no readout."""
    return None if a.readout is None else fold_path(a, a.readout, a.readout.dst)


def compute_depths(
    a: GraphAnalysis, synapses: list[FloatSynapse], readout: FloatSynapse | None
) -> dict[str, int]:
    """Synaptic depth of every group: ``d(input) = 0``, ``d(g) = max over the
    feed-forward synapses into g of d(src) + 1`` (one step of Loihi delay per layer), the
    readout one deeper than its source. A recurrent synapse (it delivers the previous
    step's spikes) gets the delay ``d(dst) - d(src) + 1``, which must be >= 1: exact for
    a population fed back into itself (delay 1). ConversionError for a neuron the input
    does not reach or a recurrent edge that would need a delay below 1."""
    depth: dict[str, int] = {a.input_group: 0}
    for name in a.neurons:
        if name == a.input_group:
            continue
        ins = [s for s in synapses if s.dst == name and not s.recurrent]
        missing = [s.src for s in ins if s.src not in depth]
        if missing or not ins:
            raise ConversionError(
                f"neuron {name!r} is not reachable from the input (sources {missing or 'none'})"
            )
        depth[name] = max(depth[s.src] + 1 for s in ins)
    for s in synapses:
        if s.recurrent and depth[s.dst] - depth[s.src] + 1 < 1:
            raise ConversionError(
                f"recurrent edge {s.name!r} ({s.src} -> {s.dst}) would need a delay of "
                f"{depth[s.dst] - depth[s.src] + 1} steps on Loihi (every synapse layer delays by one step, "
                f"{s.src!r} runs {depth[s.src] - depth[s.dst]} layers after {s.dst!r}); only recurrent edges "
                "into the same population (or one at least as deep) are mapped"
            )
    if readout is not None:
        depth[readout.dst] = depth[readout.src] + 1
    return depth


def synapse_delay(syn: FloatSynapse, depth: dict[str, int]) -> int:
    """``d(dst) - d(src)``, plus one for a recurrent synapse (previous step's spikes)."""
    return depth[syn.dst] - depth[syn.src] + (1 if syn.recurrent else 0)
