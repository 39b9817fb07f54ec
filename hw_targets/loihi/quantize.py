r"""NIR graph (our conventions) -> fixed-point :class:`~hw_targets.loihi.network.LoihiNetwork`.

:func:`quantize_graph` composes small steps:

1. :func:`quant_options` validates the options;
2. :mod:`hw_targets.loihi.mapping` analyses the graph, folds the linear nodes between
   neurons into float synapse layers (:func:`~hw_targets.loihi.mapping.fold_synapses`)
   and computes every group's depth (:func:`~hw_targets.loihi.mapping.compute_depths`);
3. :func:`quantize_input_group` quantises the bias-driven input group and its host
   encoder, :func:`quantize_group` every other group with its incoming synapses (and
   the readout integrator);
4. the parts are joined into one :class:`~hw_targets.loihi.network.LoihiNetwork`.

Quantisation
------------
Per group a scale ``lambda`` (a_in units per float unit) is chosen
(:func:`choose_scale`) as the largest value that maps the incoming weights into the
8-bit mantissa range at exponent 0 (``254 / max|W'|``) and keeps the threshold
(17 bits), the bias (13-bit mantissa, exponent <= 7), the per-step input (24-bit
state) and, for the readout, ``T`` steps of integration in range:

.. math::
    \lambda = \min\Bigl(\frac{254}{q_p(|W'|)},\ \frac{131071}{\theta},\
        \frac{4095 \cdot 2^{e_b}}{64 \max|b'|},\ \frac{2^{17} - 1}{\max_i \sum_j |W'_{ij}|},\
        \frac{0.99 \cdot 131071}{T (\max_i \sum_j |W'_{ij}| + \max|b'|)}\Bigr)

(each term only where its denominator is positive, the last for the readout only;
``lambda = 1`` if none applies), with ``W' = alpha W``, ``b' = alpha b``, ``q_p`` the
``weight_percentile``-th percentile and ``e_b`` the forced or largest bias exponent.
Each synapse layer then gets the smallest weight exponent that fits its ``lambda W'``
into [-256, 254] (or, with ``weight_percentile < 100``, that fits that percentile of
``|lambda W'|``, clipping the outliers for finer resolution); mantissas are rounded to
even values (:func:`quantize_synapse`). Convolution synapses never get a negative
exponent: Lava's Conv process ignores ``weight_exp`` (a positive one can be folded into
the mantissas exactly, a negative one cannot), so a conv whose weights are small in
``lambda`` units keeps fewer significant bits instead of becoming impossible to run in
Lava. Thresholds (``round(lambda theta)``) and biases (``round(64 lambda b' / 2^e)``,
the smallest exponent ``e`` that fits 13 bits) use the same ``lambda``. Every layer's
scale, exponent, clipped fraction and largest absolute error (in the NIR's own units)
is in ``network.report``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np

from conversion.nir_io import graph_metadata
from hw_targets.loihi.mapping import (
    FloatSynapse,
    GraphAnalysis,
    NeuronSpec,
    analyse_graph,
    compute_depths,
    conv_params,
    decay_to_du,
    decay_to_dv,
    fold_readout,
    fold_synapses,
    neuron_spec,
    synapse_delay,
)
from hw_targets.loihi.network import (
    HostEncoder,
    LayerReport,
    LoihiNetwork,
    NeuronGroup,
    Synapse,
)
from hw_targets.loihi.spec import (
    A_IN_UNIT,
    BIAS_EXP_RANGE,
    BIAS_MANT_RANGE,
    DELAY_RANGE,
    DU_MEMORYLESS,
    INPUT_MAX_AIN,
    NETX_BIAS_EXP,
    VTH_HW_MAX,
    WEIGHT_EXP_RANGE,
    WEIGHT_MANT_STEP,
    WEIGHT_RANGE,
)
from neurall_neuro.errors import ConfigError, ConversionError, QuantizationError

#: The readout integrator's threshold: the largest one, which it must never reach.
READOUT_VTH = VTH_HW_MAX
#: Fraction of READOUT_VTH that ``T`` steps of readout integration may use at most.
READOUT_MARGIN = 0.99
#: Threshold of the readout in Lava's floating-point models ("never fires").
FLOAT_READOUT_VTH = 1e30
#: How a voltage readout (LI/CubaLI/I feeding Output) becomes scores: the mean of its
#: voltage over the T steps (what the float runtime's mean-over-time readout computes)
#: or its voltage at the last step.
READOUT_REDUCTIONS = {"mean": "voltage_mean", "last": "voltage_last"}
#: Suffix of the always-spiking one-neuron group that feeds a current-based group's
#: bias into its current (see :func:`bias_source`).
BIAS_SOURCE_SUFFIX = ".bias_source"

# ----------------------------------------------------------------------------- options


@dataclass(frozen=True)
class QuantOptions:
    """Validated options of :func:`quantize_graph`.

    ``weight_percentile``: the percentile of ``|W'|`` mapped to the top of the 8-bit
    range; ``bias_exp``: one forced bias exponent (None: the smallest that fits, per
    group); ``min_weight_exp``: the smallest weight exponent a dense layer may get
    (conv layers never get a negative one).
    """

    weight_percentile: float = 100.0
    bias_exp: int | None = None
    min_weight_exp: int = WEIGHT_EXP_RANGE[0]


def quant_options(
    weight_percentile: float, bias_exp: int | None, netx_compatible: bool
) -> QuantOptions:
    """Check the options (QuantizationError naming the valid range) and resolve
    ``netx_compatible`` (bias exponent 6 and weight exponents >= 0, as netx files need)."""
    if not 0 < weight_percentile <= 100:
        raise QuantizationError(
            f"weight_percentile = {weight_percentile} is out of range; valid range is (0, 100]"
        )
    if netx_compatible:
        bias_exp = NETX_BIAS_EXP
    if bias_exp is not None and not BIAS_EXP_RANGE[0] <= bias_exp <= BIAS_EXP_RANGE[1]:
        raise QuantizationError(
            f"bias_exp = {bias_exp} is out of range; valid range is {BIAS_EXP_RANGE[0]}..{BIAS_EXP_RANGE[1]}"
        )
    min_exp = 0 if netx_compatible else WEIGHT_EXP_RANGE[0]
    return QuantOptions(weight_percentile, bias_exp, min_exp)


def readout_timesteps(graph: nir.NIRGraph, timesteps: int | None, has_readout: bool) -> int | None:
    """``timesteps``, else the graph's ``metadata["timesteps"]``; QuantizationError if the
    graph has a readout (whose integration range depends on T) and neither gives T >= 1."""
    meta = graph_metadata(graph)
    if timesteps is None and "timesteps" in meta:
        timesteps = int(meta["timesteps"])
    if has_readout and (timesteps is None or timesteps < 1):
        raise QuantizationError(
            "pass timesteps=T (>= 1): the readout integrator's range depends on T"
        )
    return timesteps


# ----------------------------------------------------------------------------- scale


def _ratio(limit: float, value: float) -> float:
    """``limit / value``, or infinity (no constraint) when ``value`` is not positive."""
    return limit / value if value > 0 else math.inf


def bias_capacity(forced_exp: int | None) -> float:
    """Largest bias (a_in units) a 13-bit mantissa holds at the forced exponent, or at
    the largest one: ``4095 * 2**e / 64``."""
    exp = forced_exp if forced_exp is not None else BIAS_EXP_RANGE[1]
    return (BIAS_MANT_RANGE[1] * 2.0**exp) / A_IN_UNIT


@dataclass(frozen=True)
class ScaleConstraints:
    """The float magnitudes (after ``alpha``) a group's scale must fit; 0 = no constraint.

    ``weight``: the ``weight_percentile``-th ``|W'|`` (mapped to 254 at exponent 0);
    ``threshold``: the firing threshold; ``bias``: the largest ``|b'|``, with
    ``bias_capacity`` the largest representable bias; ``input_row``: the largest per-step
    input ``max_i sum_j |W'_ij|``; ``readout_steps``: T for the readout integrator
    (None for spiking groups).
    """

    bias_capacity: float
    weight: float = 0.0
    threshold: float = 0.0
    bias: float = 0.0
    input_row: float = 0.0
    readout_steps: float | None = None


def choose_scale(constraints: ScaleConstraints) -> float:
    """The largest scale ``lambda`` that keeps every field in range (the module
    docstring's formula); 1.0 when nothing constrains it."""
    c = constraints
    candidates = [
        _ratio(WEIGHT_RANGE[1], c.weight),
        _ratio(VTH_HW_MAX, c.threshold),
        _ratio(c.bias_capacity, c.bias),
        _ratio(INPUT_MAX_AIN, c.input_row),
    ]
    if c.readout_steps is not None:
        per_step = c.input_row + c.bias
        candidates.append(_ratio(READOUT_MARGIN * READOUT_VTH, c.readout_steps * per_step))
    scale = min(candidates)
    return 1.0 if not math.isfinite(scale) else scale


# ----------------------------------------------------------------------------- integer fields


def round_even(x: np.ndarray) -> np.ndarray:
    """Round to the nearest even integer (Loihi's mixed-sign mantissas have no LSB)."""
    return WEIGHT_MANT_STEP * np.round(x / WEIGHT_MANT_STEP)


def weight_exponent(max_abs: float) -> int:
    """The smallest exponent ``E`` (within -8..7) with ``max_abs / 2**E <= 254``."""
    if max_abs <= 0:
        return 0
    exp = math.ceil(math.log2(max_abs / WEIGHT_RANGE[1]) - 1e-12)
    return int(min(max(exp, WEIGHT_EXP_RANGE[0]), WEIGHT_EXP_RANGE[1]))


def bias_exponent(max_abs_v: float, forced: int | None) -> int:
    """``forced``, else the smallest exponent with ``max_abs_v / 2**e <= 4095`` (``v`` units)."""
    if forced is not None:
        return forced
    for exp in range(BIAS_EXP_RANGE[0], BIAS_EXP_RANGE[1] + 1):
        if max_abs_v / 2**exp <= BIAS_MANT_RANGE[1]:
            return exp
    return BIAS_EXP_RANGE[1]


def threshold_mantissa(scale: float, threshold: float) -> int:
    """``round(lambda theta)``, capped at the 17-bit maximum."""
    return int(min(round(scale * threshold), VTH_HW_MAX))


def quantize_synapse(
    syn: FloatSynapse, scale: float, alpha: float, min_exp: int, percentile: float
) -> tuple[np.ndarray, int, np.ndarray, LayerReport]:
    """Mantissas, exponent, float weights (a_in units) and report of one synapse layer.

    ``W_s = lambda alpha W``; ``E = max(weight_exponent(q_p(|W_s|)), min_exp)``;
    ``M = clip(round_even(W_s / 2**E), -256, 254)``.
    """
    scaled = syn.weight * alpha * scale
    nz = np.abs(scaled[scaled != 0])
    top = float(np.percentile(nz, percentile)) if nz.size else 0.0
    exp = max(weight_exponent(top), min_exp)
    raw = round_even(scaled / 2.0**exp)
    mant = np.clip(raw, *WEIGHT_RANGE)
    clipped = float(np.mean(raw != mant)) if raw.size else 0.0
    err = (
        np.abs(mant * 2.0**exp / (alpha * scale) - syn.weight).max(initial=0.0)
        if alpha * scale > 0
        else 0.0
    )
    report = LayerReport(syn.name, "synapse", scale, exp, clipped, float(err))
    return mant.astype(np.int64), exp, scaled, report


# ----------------------------------------------------------------------------- groups


@dataclass
class QuantizedGroup:
    """One quantised neuron group, the synapses into it, their reports (synapses first,
    then the group's) and, for the input group, the host encoder."""

    group: NeuronGroup
    synapses: list[Synapse] = field(default_factory=list)
    reports: list[LayerReport] = field(default_factory=list)
    encoder: HostEncoder | None = None


def _encoder(a: GraphAnalysis, scale: float, float_scale: float) -> HostEncoder:
    p = conv_params(
        a.encoder_node, a.info.flat.nodes[a.encoder_node], a.info.shapes[a.encoder_node][0]
    )
    return HostEncoder(
        p["weight"],
        p["bias"],
        a.info.shapes[a.input_node][1],
        scale=scale,
        float_scale=float_scale,
        stride=p["stride"],
        padding=p["padding"],
        dilation=p["dilation"],
        groups=p["groups"],
    )


def encoder_bound(a: GraphAnalysis, calibration: Any, input_bound: float) -> tuple[float, str]:
    """The largest ``|conv(x) + b|`` of the encoder convolution, and how it was found:
    on the ``calibration`` images if given, else the worst case for pixels in
    ``[-input_bound, input_bound]`` (``max_c sum |W_c| input_bound + |b_c|``)."""
    if calibration is not None:
        current = _encoder(a, 1.0, 1.0).current(calibration)
        return float(np.abs(current).max(initial=0.0)), f"calibrated on {current.shape[0]} images"
    p = conv_params(
        a.encoder_node, a.info.flat.nodes[a.encoder_node], a.info.shapes[a.encoder_node][0]
    )
    w = np.abs(p["weight"]).reshape(p["weight"].shape[0], -1).sum(axis=1)
    return float(
        (w * input_bound + np.abs(p["bias"])).max(initial=0.0)
    ), f"bound for |x| <= {input_bound}"


def quantize_input_group(
    a: GraphAnalysis,
    spec: NeuronSpec,
    calibration: Any,
    input_bound: float,
    options: QuantOptions,
) -> QuantizedGroup:
    """The input group (driven by its bias, no synapses) and its host encoder.

    Its bias is ``alpha (conv(x) + b)``, bounded by :func:`encoder_bound`; the scale fits
    that bias and the threshold; the encoder maps the float conv output to bias
    mantissas at the chosen exponent (``64 lambda alpha / 2**e``).
    """
    enc_max, enc_note = encoder_bound(a, calibration, input_bound)
    b_max = spec.alpha * enc_max
    scale = choose_scale(
        ScaleConstraints(bias_capacity(options.bias_exp), threshold=spec.threshold, bias=b_max)
    )
    exp = bias_exponent(A_IN_UNIT * scale * b_max, options.bias_exp)
    encoder = _encoder(a, A_IN_UNIT * scale * spec.alpha / 2**exp, scale * spec.alpha)
    group = NeuronGroup(
        a.input_group,
        a.info.shapes[a.input_group][1],
        du=DU_MEMORYLESS,
        dv=decay_to_dv(spec.decay),
        vth=threshold_mantissa(scale, spec.threshold),
        bias_mant=0,
        bias_exp=exp,
        bias_start_step=0,
        scale=scale,
        float_du=1.0,
        float_dv=spec.decay,
        float_vth=scale * spec.threshold,
    )
    report = LayerReport(
        a.input_group, "group", scale, None, 0.0, 0.0, f"input bias: {enc_note}, bias_exp={exp}"
    )
    return QuantizedGroup(group, [], [report], encoder)


def _checked_delay(syn: FloatSynapse, depth: dict[str, int]) -> int:
    delay = synapse_delay(syn, depth)
    if not DELAY_RANGE[0] <= delay <= DELAY_RANGE[1]:
        raise QuantizationError(
            f"synapse {syn.name!r}: delay = {delay} is out of range; valid range is "
            f"{DELAY_RANGE[0]}..{DELAY_RANGE[1]}"
        )
    return delay


def _group_constraints(
    ins: list[FloatSynapse],
    spec: NeuronSpec,
    bias_f: np.ndarray,
    options: QuantOptions,
    readout_steps: float | None,
) -> ScaleConstraints:
    """What the scale of a group fed by ``ins`` (weights times ``alpha``) must fit."""
    w_abs = np.concatenate([np.abs(s.weight * spec.alpha).reshape(-1) for s in ins])
    nz = w_abs[w_abs > 0]
    q = float(np.percentile(nz, options.weight_percentile)) if nz.size else 0.0
    row = sum(
        np.abs(s.weight * spec.alpha).reshape(s.weight.shape[0], -1).sum(axis=1).max() for s in ins
    )
    if spec.syn_decay < 1.0:  # the current u sums up to 1/syn_decay steps of input
        row = row / spec.syn_decay
    return ScaleConstraints(
        bias_capacity(options.bias_exp),
        weight=q,
        threshold=0.0 if readout_steps is not None else spec.threshold,
        bias=float(np.abs(bias_f).max(initial=0.0)),
        input_row=row,
        readout_steps=readout_steps,
    )


def quantize_group(
    name: str,
    shape: tuple[int, ...],
    ins: list[FloatSynapse],
    spec: NeuronSpec,
    depth: dict[str, int],
    options: QuantOptions,
    readout_steps: float | None = None,
) -> QuantizedGroup:
    """A group fed by the synapses ``ins``, quantised with one scale (:func:`choose_scale`).

    ``readout_steps``: for a voltage readout (the unreachable threshold
    :data:`READOUT_VTH`, ``readout="voltage"``) the factor by which its voltage can
    exceed one step's input (``T`` for the Affine readout's integrator with ``dv = 0``,
    see :func:`readout_gain`); None for a spiking group.
    Synapse delays are ``depth[dst] - depth[src]``; the bias starts at the group's depth.
    """
    readout = readout_steps is not None
    bias_f = spec.alpha * sum((s.bias for s in ins), np.zeros(shape))
    scale = choose_scale(_group_constraints(ins, spec, bias_f, options, readout_steps))
    synapses: list[Synapse] = []
    reports: list[LayerReport] = []
    for s in ins:
        min_exp = 0 if s.kind == "conv" else options.min_weight_exp
        mant, exp, scaled, rep = quantize_synapse(
            s, scale, spec.alpha, min_exp, options.weight_percentile
        )
        reports.append(rep)
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
                delay=_checked_delay(s, depth),
                float_weight=scaled,
            )
        )
    b_v = A_IN_UNIT * scale * bias_f
    e = bias_exponent(float(np.abs(b_v).max(initial=0.0)), options.bias_exp)
    raw = np.round(b_v / 2**e)
    mant_b = np.clip(raw, *BIAS_MANT_RANGE).astype(np.int64)
    b_err = float(np.abs(mant_b * 2.0**e / (A_IN_UNIT * scale) - bias_f).max(initial=0.0)) / max(
        spec.alpha, 1e-300
    )
    vth = READOUT_VTH if readout else threshold_mantissa(scale, spec.threshold)
    th_err = 0.0 if readout else abs(vth / scale - spec.threshold)
    note = f"bias_exp={e}, threshold error {th_err:.3g}, bias error {b_err:.3g}"
    if np.any(raw != mant_b):
        note += f", {float(np.mean(raw != mant_b)):.2%} of biases clipped"
    reports.append(
        LayerReport(name, "group", scale, None, float(np.mean(raw != mant_b)), b_err, note)
    )
    group = NeuronGroup(
        name,
        shape,
        du=decay_to_du(spec.syn_decay),
        dv=decay_to_dv(spec.decay),
        vth=vth,
        bias_mant=mant_b,
        bias_exp=e,
        bias_start_step=depth[name],
        readout="voltage" if readout else "spikes",
        scale=scale,
        float_du=spec.syn_decay,
        float_dv=spec.decay,
        float_vth=FLOAT_READOUT_VTH if readout else scale * spec.threshold,
        float_bias=scale * bias_f,
    )
    return QuantizedGroup(group, synapses, reports)


# ----------------------------------------------------------------------------- event input, bias sources, readouts


def event_input_group(a: GraphAnalysis, options: QuantOptions) -> QuantizedGroup:
    """The Input node as a spike source (``input_encoding="events"``): a group of the
    input's shape without synapses or bias whose spikes are given per step (Lava's
    ``RingBuffer``); its own dynamics never run on a target (``vth = 0``, no bias)."""
    shape = a.info.shapes[a.input_node][1]
    group = NeuronGroup(
        a.input_group,
        shape,
        du=DU_MEMORYLESS,
        dv=0,
        vth=0,
        bias_mant=0,
        bias_exp=options.bias_exp if options.bias_exp is not None else 0,
        bias_start_step=0,
        float_du=1.0,
        float_dv=0.0,
        float_vth=0.0,
    )
    report = LayerReport(a.input_group, "group", 1.0, None, 0.0, 0.0, "event input: spike source")
    return QuantizedGroup(group, [], [report])


def bias_source(dst: str, depth: int) -> NeuronGroup:
    r"""A one-neuron group that spikes at every step from ``depth - 1`` on (``vth = 0``,
    bias ``1``: ``v = 1 > 0``, reset to 0, every step), so that a dense synapse from it
    into ``dst`` delivers a constant input into ``dst``'s *current* from step
    ``depth`` on: how a bias of a current-based neuron (CubaLIF/CubaLI, ``du < 4095``)
    enters ``u`` exactly as the float model's ``i[t] = (1 - a_s) i[t-1] + a_s w_in (W x + b)``,
    where Loihi's own bias would be added to ``v`` instead."""
    return NeuronGroup(
        dst + BIAS_SOURCE_SUFFIX,
        (1,),
        du=DU_MEMORYLESS,
        dv=0,
        vth=0,
        bias_mant=1,
        bias_exp=0,
        bias_start_step=max(depth - 1, 0),
        float_du=1.0,
        float_dv=0.0,
        float_vth=0.0,
    )


def bias_into_current(
    name: str, ins: list[FloatSynapse], shape: tuple[int, ...]
) -> tuple[list[FloatSynapse], FloatSynapse | None]:
    """``ins`` without their biases plus one dense synapse ``[N, 1]`` carrying their sum
    from the bias source of ``name`` (None if every bias is 0)."""
    total = sum((s.bias for s in ins), np.zeros(shape))
    if not np.any(total):
        return ins, None
    stripped = [dataclasses.replace(s, bias=np.zeros_like(s.bias)) for s in ins]
    syn = FloatSynapse(
        f"{name}.bias",
        name + BIAS_SOURCE_SUFFIX,
        name,
        "dense",
        total.reshape(-1, 1),
        np.zeros(shape),
    )
    return stripped, syn


def readout_gain(spec: NeuronSpec, timesteps: int | None, name: str) -> float:
    r"""How many times one step's (alpha-scaled) input a voltage readout's ``v`` can
    reach within ``T`` steps: ``min(T, 1 / decay)`` (the current's ``1/syn_decay`` is
    already in the input bound). ``T`` for the Affine readout's leak-free integrator."""
    steps = math.inf if timesteps is None else float(timesteps)
    gain = min(steps, 1.0 / spec.decay) if spec.decay > 0 else steps
    if not math.isfinite(gain):
        raise QuantizationError(
            f"pass timesteps=T (>= 1): the range of the leak-free readout {name!r} depends on T"
        )
    return gain


def _readout_kind(reduce: str | None) -> str:
    if reduce is None:
        return READOUT_REDUCTIONS["mean"]
    if reduce not in READOUT_REDUCTIONS:
        raise ConfigError(
            f"readout_reduce must be one of {', '.join(READOUT_REDUCTIONS)}; got {reduce!r}"
        )
    return READOUT_REDUCTIONS[reduce]


# ----------------------------------------------------------------------------- the graph


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
    input_encoding: str = "auto",
    readout_reduce: str | None = None,
) -> LoihiNetwork:
    """Map and quantise a NIR graph (our conventions) to a :class:`LoihiNetwork`.

    ``timesteps``: T (default ``metadata["timesteps"]``), needed to size the readout
    integrator. ``calibration``: images ``[N, C, H, W]`` to size the input group's bias
    range (else the worst case for pixels in ``[-input_bound, input_bound]``).
    ``weight_percentile``: map this percentile of ``|W'|`` (not the maximum) to the top of
    the 8-bit range, clipping the rest. ``bias_exp``: force one bias exponent.
    ``netx_compatible``: bias exponent 6 and weight exponents >= 0, as netx files need.
    ``input_encoding``: ``"direct"``, ``"events"`` or ``"auto"``
    (:func:`~hw_targets.loihi.mapping.analyse_graph`). ``readout_reduce``: for a
    LI/CubaLI/I readout, ``"mean"`` (default: the mean of its voltage over the T steps,
    as the float runtime's readout) or ``"last"`` (its voltage at the last step).
    """
    options = quant_options(weight_percentile, bias_exp, netx_compatible)
    a = analyse_graph(graph, dt, input_encoding=input_encoding)
    if a.dt is None:  # pragma: no cover - analyse_graph(require_dt=True) raises first
        raise ConversionError("the graph stores no dt; pass dt=...")
    has_readout = a.readout is not None
    timesteps = readout_timesteps(graph, timesteps, has_readout)
    synapses = fold_synapses(a)
    readout = fold_readout(a)
    depth = compute_depths(a, synapses, readout)
    nodes, shapes = a.info.flat.nodes, a.info.shapes
    specs = {n: neuron_spec(n, nodes[n], a.dt) for n in a.neurons}

    if a.input_encoding == "direct":
        parts = [quantize_input_group(a, specs[a.input_group], calibration, input_bound, options)]
    else:
        parts = [event_input_group(a, options)]
    extra_groups: list[NeuronGroup] = []
    for n in a.neurons:
        if n == a.input_group:
            continue
        spec = specs[n]
        ins = [s for s in synapses if s.dst == n]
        if spec.syn_decay < 1.0:
            ins, bias_syn = bias_into_current(n, ins, shapes[n][1])
            if bias_syn is not None:
                extra_groups.append(bias_source(n, depth[n]))
                depth[bias_syn.src] = depth[n] - 1
                ins = [*ins, bias_syn]
        gain = readout_gain(spec, timesteps, n) if spec.readout else None
        parts.append(quantize_group(n, shapes[n][1], ins, spec, depth, options, gain))
    if readout is not None:
        spec = NeuronSpec(1.0, 0.0, 0.0)  # the Affine's output, integrated without leak
        steps = int(timesteps or 1)
        shape = shapes[readout.dst][1]
        parts.append(quantize_group(readout.dst, shape, [readout], spec, depth, options, steps))

    metadata = {
        "source": "nir",
        "dt": a.dt,
        "timesteps": timesteps,
        "depths": dict(depth),
        "encoder_node": a.encoder_node,
        "readout": "mean_over_time" if readout is not None else None,
    }
    if a.input_encoding == "events":
        metadata["input_encoding"] = "events"
    if a.voltage_readout is not None:
        metadata["readout"] = _readout_kind(readout_reduce)
    if extra_groups:
        metadata["bias_sources"] = [g.name for g in extra_groups]
    return LoihiNetwork(
        [p.group for p in parts] + extra_groups,
        [s for p in parts for s in p.synapses],
        a.input_group,
        a.output_group,
        parts[0].encoder,
        metadata,
        [r for p in parts for r in p.reports],
    )
