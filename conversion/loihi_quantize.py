r"""NIR graph (our conventions) -> fixed-point :class:`~conversion.loihi_network.LoihiNetwork`.

What is mapped (see :mod:`conversion.nir_conventions` for the float semantics)
-------------------------------------------------------------------------------
* **Neurons.** Every ``LIF`` / ``IF`` node becomes a neuron group. A LIF with step
  ``alpha = dt / tau`` computes ``v <- (1 - alpha) v + alpha (r I)``; on Loihi
  ``du = 4095`` (no current memory), ``dv = round(4096 alpha)`` and the incoming
  weights and biases are multiplied by ``alpha r`` before quantisation. ``tau = dt``
  (memoryless) needs ``dv = 4096``, which 12 bits cannot hold: it becomes ``dv = 4095``,
  i.e. ``v`` keeps ``|v| >> 12`` (1/4096 of itself, rounded toward zero) into the next
  step: at most 1/4096 of the previous value, zero for ``|v| < 4096`` (64 a_in units).
  ``IF`` (``v <- v + dt r I``): ``dv = 0``, weights times ``dt r``.
* **Synapse layers.** The linear nodes between two neurons become one synapse layer:
  ``Conv2d``; ``AvgPool2d``/``SumPool2d(k, stride k)`` + ``Conv2d`` folded into one
  strided conv (kernel ``k k'``, stride ``k s'``, padding ``k p``, weights ``W / k^2``
  replicated over each ``k x k`` block; exact); ``[pool +] Flatten + Affine`` folded into
  one dense layer (a global pool + flatten + affine is the common case); ``Affine`` /
  ``Linear``; a direct neuron -> neuron edge becomes an identity synapse (a 1x1
  depthwise conv of weight 1). Biases go to the target group's bias.
* **Input.** ``Input -> Conv2d -> LIF``: the conv runs on the host in float
  (:class:`~conversion.loihi_network.HostEncoder`) and its output is the input group's
  bias ("direct encoding"), constant over time.
* **Readout.** The ``Affine`` feeding ``Output`` becomes a non-spiking integrator group
  (``du = 4095``, ``dv = 0``, ``vth = 131071`` that it cannot reach): its final voltage
  divided by ``64 scale T`` is the mean over time of the Affine's output.
* **Delays.** Loihi delays every synapse layer by one step. Each group gets the depth
  ``d(g) = max(d(src) + 1)`` and every synapse the delay ``d(dst) - d(src)``, so all
  paths into a group (e.g. the SE gate path and the direct feature edge into the AND
  neuron) arrive together; ``bias_start_step = d(g)``. The Loihi run then equals the
  float run shifted by each group's depth.

Quantisation
------------
Per group a scale ``lambda`` (a_in units per float unit) is chosen as the largest value
that maps the incoming weights into the 8-bit mantissa range at exponent 0
(``254 / max|W'|``) and keeps the threshold (17 bits), the bias (13-bit mantissa,
exponent <= 7), the per-step input (24-bit state) and, for the readout, ``T`` steps of
integration in range. Each synapse layer then gets the smallest weight exponent that
fits its ``lambda W'`` into [-256, 254] (or, with ``weight_percentile < 100``, that fits
that percentile of ``|lambda W'|``, clipping the outliers for finer resolution);
mantissas are rounded to even values. Convolution synapses never get a negative
exponent: Lava's Conv process ignores ``weight_exp`` (a positive one can be folded into
the mantissas exactly, a negative one cannot), so a conv whose weights are small in
``lambda`` units keeps fewer significant bits instead of becoming impossible to run in
Lava. Thresholds and biases use the same
``lambda``. Every layer's scale, exponent, clipped fraction and largest absolute error
(in the NIR's own units) is in ``network.report``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from conversion.loihi_network import (
    BIAS_EXP_RANGE,
    BIAS_MANT_RANGE,
    DELAY_RANGE,
    VTH_HW_MAX,
    WEIGHT_EXP_RANGE,
    WEIGHT_RANGE,
    HostEncoder,
    LayerReport,
    LoihiNetwork,
    NeuronGroup,
    Synapse,
)
from conversion.nir_graph import GraphInfo, validate_graph
from conversion.nir_io import graph_metadata
from conversion.nir_nodes import as_array, int_tuple
from conversion.nir_runtime import resolve_dt
from neurall_neuro.errors import (
    ConversionError,
    GraphFileError,
    QuantizationError,
    UnsupportedNodeError,
)

NEURON_TYPES = (nir.LIF, nir.IF)
POOL_TYPES = (nir.AvgPool2d, nir.SumPool2d)
AFFINE_TYPES = (nir.Affine, nir.Linear)
LINEAR_TYPES = (nir.Conv2d, *POOL_TYPES, nir.Flatten, *AFFINE_TYPES)
SUPPORTED_TYPES = (nir.Input, nir.Output, *LINEAR_TYPES, *NEURON_TYPES)
#: Node type names the Loihi targets map (shown in error messages).
SUPPORTED_NAMES = tuple(t.__name__ for t in SUPPORTED_TYPES)

_WHY_NOT = {
    "CubaLIF": "its synaptic current (tau_syn) would need du < 4095 and biases that enter the current, "
    "which Loihi adds to the voltage instead",
    "CubaLI": "non-spiking current-based integrators other than the final Affine readout are not mapped",
    "LI": "non-spiking leaky integrators are not mapped (the readout is the Affine feeding Output)",
    "I": "non-spiking integrators are not mapped (the readout is the Affine feeding Output)",
    "Threshold": "a stateless threshold has no Loihi neuron equivalent (use a LIF with tau = dt)",
    "Scale": "an elementwise scale between layers cannot be folded into Loihi synapses here",
    "Delay": "explicit delay nodes are not mapped (delays are derived from the graph structure)",
    "Conv1d": "only 2-D convolutions are mapped",
}

#: Largest bias (a_in units) a 13-bit mantissa with exponent <= 7 can hold.
_BIAS_MAX_AIN = BIAS_MANT_RANGE[1] * 2 ** BIAS_EXP_RANGE[1] / 64.0
#: Largest per-step synaptic input (a_in units) that stays inside the 24-bit state.
_INPUT_MAX_AIN = (1 << 17) - 1
#: The readout's unreachable threshold and the voltage it must stay below.
_READOUT_VTH = VTH_HW_MAX


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


def check_graph(graph: nir.NIRGraph) -> list[str]:
    """Everything that stops :func:`quantize_graph` structurally, as messages ([] if none)."""
    problems = unsupported_nodes(graph)
    if problems:
        return problems
    try:
        _analyse(graph, dt=None, require_dt=False)
    except (ConversionError, GraphFileError) as exc:
        problems.append(str(exc))
    return problems


# ----------------------------------------------------------------------------- structure


@dataclass
class _Path:
    """A chain of linear nodes from a neuron (or the Input) into a neuron (or Output)."""

    src: str
    ops: list[str]
    dst: str


@dataclass
class _FloatSyn:
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


@dataclass
class _Analysis:
    info: GraphInfo
    dt: float | None
    neurons: list[str]
    paths: list[_Path]
    input_node: str
    input_group: str
    encoder_node: str
    readout: _Path | None
    output_group: str


def _single_pred(info: GraphInfo, name: str) -> str:
    preds = info.flat.predecessors(name)
    if len(preds) != 1:
        node = info.flat.nodes[name]
        raise ConversionError(
            f"node {name!r} ({type(node).__name__}) sums {len(preds)} inputs ({', '.join(preds)}); on Loihi "
            "only neuron groups sum their inputs, so every linear node needs exactly one input"
        )
    return preds[0]


def _trace_back(info: GraphInfo, start: str, dst: str) -> _Path:
    ops: list[str] = []
    cur = start
    while True:
        node = info.flat.nodes[cur]
        if isinstance(node, NEURON_TYPES) or (
            isinstance(node, nir.Input) and cur in info.flat.inputs
        ):
            return _Path(cur, ops, dst)
        if not isinstance(node, LINEAR_TYPES):
            raise UnsupportedNodeError(
                f"node {cur!r} ({type(node).__name__}) cannot sit between neurons; supported: "
                f"{', '.join(t.__name__ for t in LINEAR_TYPES)}"
            )
        ops.insert(0, cur)
        cur = _single_pred(info, cur)


def _analyse(graph: nir.NIRGraph, dt: float | None, require_dt: bool = True) -> _Analysis:
    problems = unsupported_nodes(graph)
    if problems:
        raise UnsupportedNodeError("; ".join(problems))
    info = validate_graph(graph)
    if info.back_edges:
        raise ConversionError(
            f"recurrent edges {info.back_edges} are not supported by the Loihi mapping (feed-forward graphs only)"
        )
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
    if not neurons:
        raise ConversionError("the graph has no LIF/IF neurons")
    paths = [_trace_back(info, pred, n) for n in neurons for pred in flat.predecessors(n)]
    input_node = flat.inputs[0]
    from_input = [p for p in paths if p.src == input_node]
    if (
        len(from_input) != 1
        or len(from_input[0].ops) != 1
        or not isinstance(flat.nodes[from_input[0].ops[0]], nir.Conv2d)
    ):
        raise ConversionError(
            "direct encoding needs Input -> Conv2d -> LIF: the Input must reach exactly one neuron node, "
            f"through exactly one Conv2d (found paths {[(p.ops, p.dst) for p in from_input]})"
        )
    enc = from_input[0]
    if len([p for p in paths if p.dst == enc.dst]) != 1:
        raise ConversionError(
            f"the input neuron {enc.dst!r} must receive only the encoder convolution {enc.ops[0]!r}"
        )
    for user in [
        n for n, node in flat.nodes.items() if enc.ops[0] in flat.predecessors(n) and n != enc.dst
    ]:
        raise ConversionError(
            f"the encoder convolution {enc.ops[0]!r} may only feed {enc.dst!r}, it also feeds {user!r}"
        )
    paths = [p for p in paths if p is not enc]
    out_pred = _single_pred(info, flat.outputs[0])
    readout: _Path | None = None
    if isinstance(flat.nodes[out_pred], NEURON_TYPES):
        output_group = out_pred
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
        output_group = readout.src
    return _Analysis(
        info, dt, neurons, paths, input_node, enc.dst, enc.ops[0], readout, output_group
    )


# ----------------------------------------------------------------------------- folding


def _conv_params(name: str, node: nir.Conv2d, in_shape: tuple[int, ...]) -> dict[str, Any]:
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


def _fold(a: _Analysis, path: _Path, name: str) -> _FloatSyn:
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
            return _FloatSyn(
                name, path.src, path.dst, "conv", np.ones((c, 1, 1, 1)), zeros, groups=c
            )
        return _FloatSyn(name, path.src, path.dst, "dense", np.eye(int(np.prod(src_shape))), zeros)
    if types == [nir.Conv2d]:
        p = _conv_params(path.ops[0], nodes[path.ops[0]], src_shape)
        bias = np.broadcast_to(p.pop("bias")[:, None, None], dst_shape).copy()
        return _FloatSyn(name, path.src, path.dst, "conv", p.pop("weight"), bias, **p)
    if len(types) == 2 and types[0] in POOL_TYPES and types[1] is nir.Conv2d:
        (kh, kw), factor = _pool(path.ops[0], nodes[path.ops[0]])
        p = _conv_params(path.ops[1], nodes[path.ops[1]], shapes[path.ops[1]][0])
        if p["dilation"] != (1, 1):
            raise ConversionError(f"{chain}: a dilated conv after a pool cannot be folded")
        if p["padding"] != (0, 0) and (src_shape[1] % kh or src_shape[2] % kw):
            raise ConversionError(
                f"{chain}: pooling {src_shape} by {(kh, kw)} drops border rows and the conv pads; folding "
                "would not be exact (make the input divisible by the pool kernel)"
            )
        w = np.repeat(np.repeat(p["weight"], kh, axis=2), kw, axis=3) * factor
        bias = np.broadcast_to(p["bias"][:, None, None], dst_shape).copy()
        return _FloatSyn(
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
        return _FloatSyn(name, path.src, path.dst, "dense", weight, bias.reshape(dst_shape))
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
class _NeuronSpec:
    alpha: float  # weight factor (dt/tau * r for LIF, dt * r for IF)
    decay: float  # voltage decay fraction per step (dt/tau for LIF, 0 for IF)
    threshold: float


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


def _neuron_spec(name: str, node: nir.NIRNode, dt: float) -> _NeuronSpec:
    if node.v_reset is not None and np.any(as_array(name, "v_reset", node.v_reset) != 0):
        raise UnsupportedNodeError(
            f"node {name!r}: v_reset must be 0 (Loihi resets the voltage to 0)"
        )
    r = _uniform(name, "r", node.r)
    threshold = _uniform(name, "v_threshold", node.v_threshold)
    if threshold < 0:
        raise QuantizationError(
            f"node {name!r}: v_threshold = {threshold} < 0; Loihi thresholds are 0..{VTH_HW_MAX}"
        )
    if isinstance(node, nir.IF):
        return _NeuronSpec(dt * r, 0.0, threshold)
    if np.any(as_array(name, "v_leak", node.v_leak) != 0):
        raise UnsupportedNodeError(
            f"node {name!r}: v_leak must be 0 (our convention; Loihi LIFs leak toward 0)"
        )
    tau = _uniform(name, "tau", node.tau)
    if tau <= 0:
        raise GraphFileError(f"node {name!r}: tau must be > 0, got {tau}")
    alpha = dt / tau
    if alpha > 1 + 1e-9:
        raise QuantizationError(
            f"node {name!r}: dt/tau = {alpha:.4g} > 1 (tau < dt) cannot be represented: dv = 4096*dt/tau "
            "must be in 0..4095"
        )
    return _NeuronSpec(min(alpha, 1.0) * r, min(alpha, 1.0), threshold)


def _dv(decay: float) -> int:
    return int(min(round(4096 * decay), 4095))


# ----------------------------------------------------------------------------- quantisation


def _round_even(x: np.ndarray) -> np.ndarray:
    return 2.0 * np.round(x / 2.0)


def _weight_exp(max_abs: float) -> int:
    if max_abs <= 0:
        return 0
    exp = math.ceil(math.log2(max_abs / WEIGHT_RANGE[1]) - 1e-12)
    return int(min(max(exp, WEIGHT_EXP_RANGE[0]), WEIGHT_EXP_RANGE[1]))


def _quantize_weights(
    syn: _FloatSyn, scale: float, alpha: float, min_exp: int, percentile: float
) -> tuple[np.ndarray, int, np.ndarray, LayerReport]:
    scaled = syn.weight * alpha * scale
    nz = np.abs(scaled[scaled != 0])
    top = float(np.percentile(nz, percentile)) if nz.size else 0.0
    exp = max(_weight_exp(top), min_exp)
    raw = _round_even(scaled / 2.0**exp)
    mant = np.clip(raw, *WEIGHT_RANGE)
    clipped = float(np.mean(raw != mant)) if raw.size else 0.0
    err = (
        np.abs(mant * 2.0**exp / (alpha * scale) - syn.weight).max(initial=0.0)
        if alpha * scale > 0
        else 0.0
    )
    report = LayerReport(syn.name, "synapse", scale, exp, clipped, float(err))
    return mant.astype(np.int64), exp, scaled, report


def _bias_exp(max_abs_v: float, forced: int | None) -> int:
    if forced is not None:
        return forced
    for exp in range(BIAS_EXP_RANGE[0], BIAS_EXP_RANGE[1] + 1):
        if max_abs_v / 2**exp <= BIAS_MANT_RANGE[1]:
            return exp
    return BIAS_EXP_RANGE[1]


def _encoder_bound(a: _Analysis, calibration: Any, input_bound: float) -> tuple[float, str]:
    node = a.info.flat.nodes[a.encoder_node]
    p = _conv_params(a.encoder_node, node, a.info.shapes[a.encoder_node][0])
    if calibration is not None:
        enc = HostEncoder(
            p["weight"],
            p["bias"],
            a.info.shapes[a.input_node][1],
            1.0,
            1.0,
            stride=p["stride"],
            padding=p["padding"],
            dilation=p["dilation"],
            groups=p["groups"],
        )
        current = enc.current(calibration)
        return float(np.abs(current).max(initial=0.0)), f"calibrated on {current.shape[0]} images"
    w = np.abs(p["weight"]).reshape(p["weight"].shape[0], -1).sum(axis=1)
    return float(
        (w * input_bound + np.abs(p["bias"])).max(initial=0.0)
    ), f"bound for |x| <= {input_bound}"


def quantize_graph(
    graph: nir.NIRGraph,
    *,
    timesteps: int | None = None,
    dt: float | None = None,
    calibration: Any = None,
    input_bound: float = 1.0,
    weight_percentile: float = 100.0,
    bias_exp: int | None = None,
    netx_compatible: bool = False,
) -> LoihiNetwork:
    """Map and quantise a NIR graph (our conventions) to a :class:`LoihiNetwork`.

    ``timesteps``: T (default ``metadata["timesteps"]``), needed to size the readout
    integrator. ``calibration``: images ``[N, C, H, W]`` to size the input group's bias
    range (else the worst case for pixels in ``[-input_bound, input_bound]``).
    ``weight_percentile``: map this percentile of ``|W'|`` (not the maximum) to the top of
    the 8-bit range, clipping the rest. ``bias_exp``: force one bias exponent.
    ``netx_compatible``: bias exponent 6 and weight exponents >= 0, as netx files need.
    """
    if not 0 < weight_percentile <= 100:
        raise QuantizationError(
            f"weight_percentile = {weight_percentile} is out of range; valid range is (0, 100]"
        )
    if netx_compatible:
        bias_exp = 6
    if bias_exp is not None and not BIAS_EXP_RANGE[0] <= bias_exp <= BIAS_EXP_RANGE[1]:
        raise QuantizationError(
            f"bias_exp = {bias_exp} is out of range; valid range is {BIAS_EXP_RANGE[0]}..{BIAS_EXP_RANGE[1]}"
        )
    min_exp = 0 if netx_compatible else WEIGHT_EXP_RANGE[0]
    a = _analyse(graph, dt)
    if a.dt is None:  # pragma: no cover - _analyse(require_dt=True) raises first
        raise ConversionError("the graph stores no dt; pass dt=...")
    meta = graph_metadata(graph)
    if timesteps is None and "timesteps" in meta:
        timesteps = int(meta["timesteps"])
    if a.readout is not None and (timesteps is None or timesteps < 1):
        raise QuantizationError(
            "pass timesteps=T (>= 1): the readout integrator's range depends on T"
        )
    nodes, shapes = a.info.flat.nodes, a.info.shapes

    # synapse layers (float), with unique names
    syns: list[_FloatSyn] = []
    used: set[str] = set()
    for path in a.paths:
        base = path.ops[-1] if path.ops else f"{path.src}->{path.dst}"
        name = base if base not in used else f"{base}->{path.dst}"
        used.add(name)
        syns.append(_fold(a, path, name))
    readout_syn = None
    if a.readout is not None:
        readout_syn = _fold(a, a.readout, a.readout.dst)
    # depths and delays
    order = [n for n in a.neurons]
    depth: dict[str, int] = {a.input_group: 0}
    for n in order:
        if n == a.input_group:
            continue
        ins = [s for s in syns if s.dst == n]
        missing = [s.src for s in ins if s.src not in depth]
        if missing or not ins:
            raise ConversionError(
                f"neuron {n!r} is not reachable from the input (sources {missing or 'none'})"
            )
        depth[n] = max(depth[s.src] + 1 for s in ins)
    if readout_syn is not None:
        depth[readout_syn.dst] = depth[readout_syn.src] + 1

    groups: list[NeuronGroup] = []
    synapses: list[Synapse] = []
    report: list[LayerReport] = []
    specs = {n: _neuron_spec(n, nodes[n], a.dt) for n in order}

    # the input group (driven by the host encoder)
    spec = specs[a.input_group]
    enc_max, enc_note = _encoder_bound(a, calibration, input_bound)
    b_max = spec.alpha * enc_max
    cands = [VTH_HW_MAX / spec.threshold if spec.threshold > 0 else math.inf]
    b_cap = (
        BIAS_MANT_RANGE[1] * 2.0 ** (bias_exp if bias_exp is not None else BIAS_EXP_RANGE[1])
    ) / 64.0
    cands.append(b_cap / b_max if b_max > 0 else math.inf)
    scale_in = min(cands)
    scale_in = 1.0 if not math.isfinite(scale_in) else scale_in
    e_in = _bias_exp(64 * scale_in * b_max, bias_exp)
    enc_p = _conv_params(a.encoder_node, nodes[a.encoder_node], shapes[a.encoder_node][0])
    encoder = HostEncoder(
        enc_p["weight"],
        enc_p["bias"],
        shapes[a.input_node][1],
        scale=64 * scale_in * spec.alpha / 2**e_in,
        float_scale=scale_in * spec.alpha,
        stride=enc_p["stride"],
        padding=enc_p["padding"],
        dilation=enc_p["dilation"],
        groups=enc_p["groups"],
    )
    groups.append(
        NeuronGroup(
            a.input_group,
            shapes[a.input_group][1],
            du=4095,
            dv=_dv(spec.decay),
            vth=int(min(round(scale_in * spec.threshold), VTH_HW_MAX)),
            bias_mant=0,
            bias_exp=e_in,
            bias_start_step=0,
            scale=scale_in,
            float_du=1.0,
            float_dv=spec.decay,
            float_vth=scale_in * spec.threshold,
        )
    )
    report.append(
        LayerReport(
            a.input_group,
            "group",
            scale_in,
            None,
            0.0,
            0.0,
            f"input bias: {enc_note}, bias_exp={e_in}",
        )
    )

    def make_group(
        name: str, shape: tuple[int, ...], ins: list[_FloatSyn], spec: _NeuronSpec, readout: bool
    ) -> None:
        bias_f = spec.alpha * sum((s.bias for s in ins), np.zeros(shape))
        w_abs = np.concatenate([np.abs(s.weight * spec.alpha).reshape(-1) for s in ins])
        nz = w_abs[w_abs > 0]
        q = float(np.percentile(nz, weight_percentile)) if nz.size else 0.0
        cands = [WEIGHT_RANGE[1] / q if q > 0 else math.inf]
        if not readout:
            cands.append(VTH_HW_MAX / spec.threshold if spec.threshold > 0 else math.inf)
        b_max = float(np.abs(bias_f).max(initial=0.0))
        b_cap = (
            BIAS_MANT_RANGE[1] * 2.0 ** (bias_exp if bias_exp is not None else BIAS_EXP_RANGE[1])
        ) / 64.0
        cands.append(b_cap / b_max if b_max > 0 else math.inf)
        row = sum(
            np.abs(s.weight * spec.alpha).reshape(s.weight.shape[0], -1).sum(axis=1).max()
            for s in ins
        )
        cands.append(_INPUT_MAX_AIN / row if row > 0 else math.inf)
        if readout:
            steps = int(timesteps or 1)
            per_step = row + b_max
            cands.append(0.99 * _READOUT_VTH / (steps * per_step) if per_step > 0 else math.inf)
        scale = min(cands)
        scale = 1.0 if not math.isfinite(scale) else scale
        for s in ins:
            mant, exp, scaled, rep = _quantize_weights(
                s, scale, spec.alpha, 0 if s.kind == "conv" else min_exp, weight_percentile
            )
            report.append(rep)
            synapses.append(
                Synapse(
                    s.name,
                    s.src,
                    s.dst,
                    s.kind,  # type: ignore[arg-type]
                    mant,
                    exp,
                    s.stride,
                    s.padding,
                    s.dilation,
                    s.groups,
                    delay=depth[name] - depth[s.src],
                    float_weight=scaled,
                )
            )
            if not DELAY_RANGE[0] <= depth[name] - depth[s.src] <= DELAY_RANGE[1]:
                raise QuantizationError(
                    f"synapse {s.name!r}: delay = {depth[name] - depth[s.src]} is out of range; valid range is "
                    f"{DELAY_RANGE[0]}..{DELAY_RANGE[1]}"
                )
        b_v = 64 * scale * bias_f
        e = _bias_exp(float(np.abs(b_v).max(initial=0.0)), bias_exp)
        raw = np.round(b_v / 2**e)
        mant_b = np.clip(raw, *BIAS_MANT_RANGE).astype(np.int64)
        b_err = float(np.abs(mant_b * 2.0**e / (64 * scale) - bias_f).max(initial=0.0)) / max(
            spec.alpha, 1e-300
        )
        vth = _READOUT_VTH if readout else int(min(round(scale * spec.threshold), VTH_HW_MAX))
        th_err = 0.0 if readout else abs(vth / scale - spec.threshold)
        note = f"bias_exp={e}, threshold error {th_err:.3g}, bias error {b_err:.3g}"
        if np.any(raw != mant_b):
            note += f", {float(np.mean(raw != mant_b)):.2%} of biases clipped"
        report.append(
            LayerReport(name, "group", scale, None, float(np.mean(raw != mant_b)), b_err, note)
        )
        groups.append(
            NeuronGroup(
                name,
                shape,
                du=4095,
                dv=0 if readout else _dv(spec.decay),
                vth=vth,
                bias_mant=mant_b,
                bias_exp=e,
                bias_start_step=depth[name],
                readout="voltage" if readout else "spikes",
                scale=scale,
                float_du=1.0,
                float_dv=0.0 if readout else spec.decay,
                float_vth=1e30 if readout else scale * spec.threshold,
                float_bias=scale * bias_f,
            )
        )

    for n in order:
        if n == a.input_group:
            continue
        make_group(n, shapes[n][1], [s for s in syns if s.dst == n], specs[n], readout=False)
    if readout_syn is not None:
        make_group(
            readout_syn.dst,
            shapes[readout_syn.dst][1],
            [readout_syn],
            _NeuronSpec(1.0, 0.0, 0.0),
            readout=True,
        )
    metadata = {
        "source": "nir",
        "dt": a.dt,
        "timesteps": timesteps,
        "depths": dict(depth),
        "encoder_node": a.encoder_node,
        "readout": "mean_over_time" if readout_syn is not None else None,
    }
    return LoihiNetwork(groups, synapses, a.input_group, a.output_group, encoder, metadata, report)
