r"""NIR mappings of Norse 1.1.0's neuron modules (registered in
:data:`conversion.nir_mappings.MODULE_MAPPINGS` on the first mapping lookup).

Norse's own ``to_nir`` is not used (it writes wrong time constants and drops layers, see
DESIGN.md). Every mapping here writes standard nir 1.0.8 primitives whose run by our
runtime (:mod:`conversion.nir_nodes`, forward Euler with the graph's ``dt``) reproduces
Norse's forward step: the same equations, spike for spike (bit for bit where the two use
the same floating-point operations, see each mapping).

==========================================  ============================================
Norse module (parameters)                   NIR
==========================================  ============================================
``LIFBoxCell`` (``LIFBoxParameters``)       ``LIF``
``LIFCell``, ``LIF`` (``LIFParameters``)    ``CubaLIF``
``LIFRecurrentCell``, ``LIFRecurrent``      ``Linear`` (input weights) -> ``CubaLIF``, plus
                                            ``Linear`` (recurrent weights) from the neuron
                                            back to it: a cycle (one step late)
``LIFRefracCell``, ``LIFRefracRecurrent*``  as ``LIFCell``/``LIFRecurrentCell`` when
(``LIFRefracParameters``)                   ``rho_reset == 0``; else refused (see below)
``LICell``, ``LI`` (``LIParameters``)       ``CubaLI``
``LILinearCell``                            ``Linear`` -> ``CubaLI``
``LIBoxCell`` (``LIBoxParameters``)         ``LI``
``IAFCell``, ``IAF`` (``IAFParameters``)    ``IF``
``Lift(module)``                            the mapping of ``module`` (one step)
==========================================  ============================================

*Cells* take one step ``[B, ...]`` per call; the non-Cell modules (``LIF``, ``LI``, ``IAF``,
``LIFRecurrent``, ``Lift``) take a whole ``[T, B, ...]`` sequence (their
:class:`~conversion.nir_mappings.MappingTraits` say so: a model containing one is exported
as a sequence model, ``example_input`` ``[T, B, ...]``). Both become the same per-step
graph, which the runtime drives with ``[T, B, ...]`` inputs.

**dt.** The graph's ``dt`` is the modules' ``dt`` (Norse's default ``1e-3`` s; all
time-dependent modules of one model must agree; ``IAF`` ignores ``dt`` in Norse and does
not constrain it). It is stored in the graph's and every neuron node's ``metadata["dt"]``,
next to ``metadata["norse"]`` (the module class) and ``metadata["discretisation"]``.

**Parameters** are read from the module's parameter object (``module.p``); tensors may be
per neuron (any shape that broadcasts to the batch-free neuron shape) and are written as
float64 arrays of the node's shape; time constants as ``tau = 1 / tau_inv``. Norse starts
``v`` at ``v_leak`` (``IAF``: at ``v_reset``), our runtime every state at 0, so spiking
neurons are exported in the shifted voltage ``v' = v - v_leak`` (``v_leak' = 0``,
``v_threshold = v_th - v_leak``, ``v_reset' = v_reset - v_leak``): the same dynamics and
spikes. A non-spiking readout (``LI*``) outputs ``v`` itself, so it must have
``v_leak = 0``.

Refused, with the reason in the error: ``LIFBoxParameters(reset_method=reset_subtract)``
(NIR neurons reset to a value), ``LIFRefrac*`` with ``rho_reset > 0`` (NIR 1.0.8 has no
refractory period: holding ``v`` and masking spikes for ``rho`` steps needs a product of
signals), and Norse neuron models without a NIR primitive (LSNN, AdEx, ExpIF,
Izhikevich, conductance-based, multi-compartment, encoders, ``RecurrentSequential``).
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
import torch
from norse.torch.functional.reset import reset_value
from norse.torch.module import (
    coba_lif,
    encode,
    iaf,
    izhikevich,
    leaky_integrator,
    leaky_integrator_box,
    lif,
    lif_adex,
    lif_adex_refrac,
    lif_box,
    lif_ex,
    lif_mc,
    lif_mc_refrac,
    lif_refrac,
    lift,
    lsnn,
    sequential,
)
from torch import nn

from conversion.nir_builder import GraphBuilder
from conversion.nir_mappings import (
    MappingTraits,
    register_mapping,
    register_traced_container,
    register_unsupported_reason,
    supported_modules,
    walk,
)
from neurall_neuro.errors import ConversionError, UnsupportedModuleError

Shape = tuple[int, ...]


def _module_dt(module: nn.Module) -> float:
    return float(module.dt)


#: A Cell: one step per call, with its own dt.
STEP = MappingTraits(dt=_module_dt)
#: A non-Cell module: a whole [T, B, ...] sequence per call.
SEQUENCE = MappingTraits(sequence=True, dt=_module_dt)
#: IAF ignores dt in Norse (v += input): it does not constrain the graph's dt.
IAF_STEP = MappingTraits()
IAF_SEQUENCE = MappingTraits(sequence=True)

LIF_BOX = (
    "Norse lif_box_feed_forward_step: v[t] = v[t-1] + (dt*tau_mem_inv)*((x[t] + v_leak) - v[t-1]); "
    "z[t] = [v[t] - v_th > 0]; v[t] = v_reset where z[t]; v[-1] = v_leak. NIR LIF with "
    "tau = 1/tau_mem_inv, r = 1, in the shifted voltage v - v_leak (v_leak = 0, "
    "v_threshold = v_th - v_leak, v_reset = v_reset - v_leak); the runtime starts it at 0"
)
LIF_CUBA = (
    "Norse lif_feed_forward_step: j[t] = i[t-1] + x[t] (input jumps into the current "
    "first); v[t] = v[t-1] + (dt*tau_mem_inv)*((v_leak - v[t-1]) + j[t]); "
    "i[t] = j[t] - (dt*tau_syn_inv)*j[t]; spike/reset as LIF; v[-1] = v_leak, i[-1] = 0. "
    "NIR CubaLIF with tau_syn = 1/tau_syn_inv, tau_mem = 1/tau_mem_inv, r = 1, "
    "w_in = tau_syn/dt: the runtime's current i[t] = i[t-1] + (dt/tau_syn)(w_in x[t] - i[t-1]) "
    "= (1 - dt/tau_syn) i[t-1] + x[t] is Norse's j[t], and the membrane integrates it in the "
    "same step, as Norse; voltage shifted by v_leak as for LIF"
)
LI_CUBA = (
    "Norse li_feed_forward_step: j[t] = i[t-1] + x[t]; v[t] = v[t-1] + "
    "(dt*tau_mem_inv)*((v_leak - v[t-1]) + j[t]); i[t] = j[t] - (dt*tau_syn_inv)*j[t]; "
    "output v; v[-1] = v_leak = 0. NIR CubaLI with tau_syn = 1/tau_syn_inv, "
    "tau_mem = 1/tau_mem_inv, r = 1, w_in = tau_syn/dt (the runtime's current is Norse's j)"
)
LI_BOX = (
    "Norse li_box_feed_forward_step: v[t] = v[t-1] + (dt*tau_mem_inv)*((v_leak - v[t-1]) + "
    "x[t]); output v; v[-1] = v_leak = 0. NIR LI with tau = 1/tau_mem_inv, r = 1, v_leak = 0"
)
IAF_STEP_EQ = (
    "Norse iaf_feed_forward_step: v[t] = v[t-1] + x[t]; z[t] = [v[t] - v_th > 0]; "
    "v[t] = v_reset where z[t]; v[-1] = v_reset. NIR IF (dv/dt = r I) with r = 1/dt, so the "
    "runtime's v += dt*(r*x) adds x once per step; voltage shifted by v_reset "
    "(v_threshold = v_th - v_reset, v_reset' = 0)"
)


# ------------------------------------------------------------------------------ helpers


def _refuse(module: nn.Module, path: str, reason: str, problem: str) -> UnsupportedModuleError:
    return UnsupportedModuleError(type(module), path, supported_modules(), reason, problem=problem)


def _array(module: nn.Module, path: str, name: str, value: Any, shape: Shape) -> np.ndarray:
    """A Norse parameter as a float64 array of the neuron ``shape`` (broadcast)."""
    array = torch.as_tensor(value).detach().cpu().to(torch.float64).numpy()
    while array.ndim > len(shape) and array.shape[0] == 1:
        array = array[0]  # a leading batch dimension of 1 broadcasts in Norse too
    try:
        out = np.array(np.broadcast_to(array, shape), dtype=np.float64)
    except ValueError:
        raise ConversionError(
            f"{type(module).__name__} at {path!r}: parameter {name} of shape "
            f"{tuple(array.shape)} does not broadcast to the neuron shape {shape} (per-neuron "
            "parameters must broadcast to the batch-free shape of the layer's input)"
        ) from None
    if not np.all(np.isfinite(out)):
        raise ConversionError(f"{type(module).__name__} at {path!r}: {name} is not finite")
    return out


def _tau(module: nn.Module, path: str, name: str, value: Any, shape: Shape) -> np.ndarray:
    """``1 / tau_inv`` for an inverse time constant ``tau_inv > 0``."""
    inverse = _array(module, path, name, value, shape)
    if np.any(inverse <= 0):
        raise ConversionError(
            f"{type(module).__name__} at {path!r}: {name} must be > 0 (a NIR time constant "
            f"is 1/{name}), got min {inverse.min()!r}"
        )
    return 1.0 / inverse


def _check_dt(module: nn.Module, path: str, builder: GraphBuilder) -> None:
    dt = float(module.dt)
    if abs(dt - builder.dt) > 1e-12 * builder.dt:
        raise ConversionError(
            f"{type(module).__name__} at {path!r} uses dt={dt}, the graph dt={builder.dt}; "
            "one graph has one dt (give every Norse module the same dt)"
        )


def _metadata(module: nn.Module, path: str, builder: GraphBuilder, equations: str) -> dict:
    return {
        "module": path,
        "norse": type(module).__name__,
        "dt": builder.dt,
        "discretisation": equations,
    }


def _no_subtract_reset(module: nn.Module, path: str, p: Any) -> None:
    method = getattr(p, "reset_method", reset_value)
    if method is not reset_value:
        raise _refuse(
            module,
            path,
            f"reset_method={getattr(method, '__name__', method)}: NIR neurons reset to "
            "v_reset (reset_value); a subtractive reset has no NIR form",
            "cannot be expressed in NIR",
        )


def _shifted(module: nn.Module, path: str, p: Any, shape: Shape) -> dict[str, np.ndarray]:
    """Threshold and reset in the voltage ``v - v_leak`` (Norse starts ``v`` at ``v_leak``)."""
    v_leak = _array(module, path, "v_leak", p.v_leak, shape)
    return {
        "v_leak": np.zeros(shape, dtype=np.float64),
        "v_threshold": _array(module, path, "v_th", p.v_th, shape) - v_leak,
        "v_reset": _array(module, path, "v_reset", p.v_reset, shape) - v_leak,
    }


def _zero_leak(module: nn.Module, path: str, p: Any, shape: Shape) -> np.ndarray:
    """A leaky-integrator readout outputs ``v`` itself: it cannot be shifted."""
    v_leak = _array(module, path, "v_leak", p.v_leak, shape)
    if np.any(v_leak != 0):
        raise _refuse(
            module,
            path,
            "v_leak != 0: Norse starts the integrator at v = v_leak, every NIR state starts "
            "at 0, and the output is v itself (a spiking neuron is exported shifted by v_leak; "
            "a readout cannot be). Use v_leak = 0, or add the constant after the readout",
            "cannot be expressed in NIR",
        )
    return v_leak


def _cuba_lif(
    module: nn.Module, path: str, builder: GraphBuilder, p: Any, shape: Shape
) -> nir.CubaLIF:
    tau_syn = _tau(module, path, "tau_syn_inv", p.tau_syn_inv, shape)
    return nir.CubaLIF(
        tau_syn=tau_syn,
        tau_mem=_tau(module, path, "tau_mem_inv", p.tau_mem_inv, shape),
        r=np.ones(shape, dtype=np.float64),
        w_in=tau_syn / builder.dt,
        **_shifted(module, path, p, shape),
    )


def _cuba_li(
    module: nn.Module, path: str, builder: GraphBuilder, p: Any, shape: Shape
) -> nir.CubaLI:
    tau_syn = _tau(module, path, "tau_syn_inv", p.tau_syn_inv, shape)
    return nir.CubaLI(
        tau_syn=tau_syn,
        tau_mem=_tau(module, path, "tau_mem_inv", p.tau_mem_inv, shape),
        r=np.ones(shape, dtype=np.float64),
        v_leak=_zero_leak(module, path, p, shape),
        w_in=tau_syn / builder.dt,
    )


def _flat_input(module: nn.Module, path: str, builder: GraphBuilder, size: int) -> None:
    if builder.shape != (size,):
        raise ConversionError(
            f"{type(module).__name__} at {path!r} has input_size {size} and acts on the last "
            f"dimension; it needs a flat ({size},) input, got {builder.shape} (add a Flatten)"
        )


def _recurrent_lif(
    module: nn.Module, path: str, builder: GraphBuilder, p: Any, equations: str
) -> None:
    r"""``Linear(W_in) -> CubaLIF`` with a ``Linear(W_rec)`` edge from the neuron back.

    Norse's ``lif_step``: :math:`j[t] = i[t-1] + W_\text{in} x[t] + W_\text{rec} z[t-1]`,
    then the ``LIFCell`` update. Our runtime sums the edges into the neuron, and the edge
    closing the cycle delivers the previous step's spikes (0 at ``t = 0``), so the neuron
    receives :math:`W_\text{in} x[t] + W_\text{rec} z[t-1]`, as Norse.
    """
    _check_dt(module, path, builder)
    weight_in = module.input_weights.detach().cpu().numpy().astype(np.float32)
    weight_rec = module.recurrent_weights.detach().cpu().numpy().astype(np.float32)
    _flat_input(module, path, builder, weight_in.shape[1])
    hidden = (int(weight_in.shape[0]),)
    meta = _metadata(module, path, builder, equations)
    builder.add(
        f"{path}.input", nir.Linear(weight=weight_in), metadata={"module": path, "role": "input"}
    )
    builder.add(path, _cuba_lif(module, path, builder, p, hidden), shape=hidden, metadata=meta)
    recurrent = f"{path}.recurrent"
    builder.add(
        recurrent,
        nir.Linear(weight=weight_rec),
        inputs=[path],
        metadata={"module": path, "role": "recurrent", "autapses": bool(module.autapses)},
    )
    builder.add_edge(recurrent, path)
    builder.set_signal([path], hidden)


# ------------------------------------------------------------------------------ mappings


@register_mapping(lif_box.LIFBoxCell, traits=STEP)
def map_lif_box(module: nn.Module, path: str, builder: GraphBuilder) -> None:
    r"""``LIFBoxCell`` -> NIR ``LIF`` (bit-identical to Norse when ``v_leak = 0``).

    Norse (``lif_box_feed_forward_step``, forward Euler, ``v[-1] = v_leak``):

    .. math::
        v[t] = v[t-1] + dt\,\tau_\text{mem}^{-1}\bigl((x[t] + v_\text{leak}) - v[t-1]\bigr),
        \quad z[t] = [v[t] - v_\text{th} > 0],\quad v[t] \leftarrow v_\text{reset}

    NIR: :math:`\tau\,\dot v = (v_\text{leak} - v) + r I` with ``tau = 1/tau_mem_inv``,
    ``r = 1``; the runtime's Euler step is the same expression, operation for operation.
    Written in ``v - v_leak`` (threshold and reset shifted) because the runtime starts at 0.
    """
    p = module.p
    _check_dt(module, path, builder)
    _no_subtract_reset(module, path, p)
    shape = builder.shape
    node = nir.LIF(
        tau=_tau(module, path, "tau_mem_inv", p.tau_mem_inv, shape),
        r=np.ones(shape, dtype=np.float64),
        **_shifted(module, path, p, shape),
    )
    builder.add(path, node, shape=shape, metadata=_metadata(module, path, builder, LIF_BOX))


@register_mapping(lif.LIFCell, traits=STEP)
@register_mapping(lif.LIF, traits=SEQUENCE)
def map_lif(module: nn.Module, path: str, builder: GraphBuilder) -> None:
    r"""``LIFCell``/``LIF`` -> NIR ``CubaLIF``.

    Norse (``lif_feed_forward_step``; the input jumps into the current *before* the
    voltage update, which integrates the jumped current; ``v[-1] = v_leak``, ``i[-1] = 0``):

    .. math::
        j[t] = i[t-1] + x[t],\quad
        v[t] = v[t-1] + dt\,\tau_\text{mem}^{-1}\bigl((v_\text{leak} - v[t-1]) + j[t]\bigr),\quad
        i[t] = j[t] - dt\,\tau_\text{syn}^{-1}\,j[t]

    then spike and reset of ``v`` as ``LIFBoxCell``. NIR's continuous form:
    :math:`\tau_\text{syn}\dot I = -I + w_\text{in} x`,
    :math:`\tau_\text{mem}\dot v = (v_\text{leak} - v) + r I`. The runtime (current first,
    then the voltage with the new current) computes
    :math:`I[t] = (1 - dt/\tau_\text{syn}) I[t-1] + (dt/\tau_\text{syn}) w_\text{in} x[t]`;
    with ``w_in = tau_syn / dt`` this is :math:`(1 - dt\,\tau_\text{syn}^{-1}) I[t-1] + x[t]`,
    which is Norse's :math:`j[t]` (:math:`j[t] = (1 - dt\,\tau_\text{syn}^{-1})\,j[t-1] + x[t]`),
    and ``v`` integrates it in the same step: the same spikes (equal up to float32
    rounding of the current update). ``tau_syn = 1/tau_syn_inv``, ``tau_mem =
    1/tau_mem_inv``, ``r = 1``, voltage shifted by ``v_leak``.
    """
    p = module.p
    _check_dt(module, path, builder)
    shape = builder.shape
    node = _cuba_lif(module, path, builder, p, shape)
    builder.add(path, node, shape=shape, metadata=_metadata(module, path, builder, LIF_CUBA))


@register_mapping(lif.LIFRecurrentCell, traits=STEP)
@register_mapping(lif.LIFRecurrent, traits=SEQUENCE)
def map_lif_recurrent(module: nn.Module, path: str, builder: GraphBuilder) -> None:
    """``LIFRecurrentCell``/``LIFRecurrent`` -> ``Linear`` -> ``CubaLIF`` with a recurrent
    ``Linear`` from the neuron back to itself (see :func:`_recurrent_lif` and
    :func:`map_lif` for the neuron)."""
    _recurrent_lif(module, path, builder, module.p, LIF_CUBA)


def _refractory_free(module: nn.Module, path: str, shape: Shape) -> Any:
    """The ``LIFParameters`` of a ``LIFRefrac*`` module, if its refractory period is 0."""
    rho = _array(module, path, "rho_reset", module.p.rho_reset, shape)
    if np.any(rho != 0):
        raise _refuse(
            module,
            path,
            f"an absolute refractory period (rho_reset up to {rho.max():g} steps): NIR 1.0.8 "
            "has no refractory primitive, and holding v and masking spikes for rho steps "
            "needs a product of signals. Use LIFCell, or rho_reset = 0",
            "cannot be expressed in NIR",
        )
    return module.p.lif


@register_mapping(lif_refrac.LIFRefracCell, traits=STEP)
def map_lif_refrac(module: nn.Module, path: str, builder: GraphBuilder) -> None:
    """``LIFRefracCell`` with ``rho_reset = 0`` is a ``LIFCell``: NIR ``CubaLIF``."""
    _check_dt(module, path, builder)
    shape = builder.shape
    p = _refractory_free(module, path, shape)
    node = _cuba_lif(module, path, builder, p, shape)
    builder.add(path, node, shape=shape, metadata=_metadata(module, path, builder, LIF_CUBA))


@register_mapping(lif_refrac.LIFRefracRecurrentCell, traits=STEP)
@register_mapping(lif_refrac.LIFRefracRecurrent, traits=SEQUENCE)
def map_lif_refrac_recurrent(module: nn.Module, path: str, builder: GraphBuilder) -> None:
    """``LIFRefracRecurrent*`` with ``rho_reset = 0``: as ``LIFRecurrentCell``."""
    hidden = (int(module.recurrent_weights.shape[0]),)
    _recurrent_lif(module, path, builder, _refractory_free(module, path, hidden), LIF_CUBA)


@register_mapping(leaky_integrator.LICell, traits=STEP)
@register_mapping(leaky_integrator.LI, traits=SEQUENCE)
def map_li(module: nn.Module, path: str, builder: GraphBuilder) -> None:
    r"""``LICell``/``LI`` -> NIR ``CubaLI`` (output: the voltage).

    Norse (``li_feed_forward_step``): :math:`j[t] = i[t-1] + x[t]`,
    :math:`v[t] = v[t-1] + dt\,\tau_\text{mem}^{-1}((v_\text{leak} - v[t-1]) + j[t])`,
    :math:`i[t] = j[t] - dt\,\tau_\text{syn}^{-1} j[t]`; as ``LIFCell`` without the spike,
    so the same parameters (``w_in = tau_syn / dt``, ``r = 1``); ``v_leak`` must be 0.
    """
    _check_dt(module, path, builder)
    shape = builder.shape
    node = _cuba_li(module, path, builder, module.p, shape)
    builder.add(path, node, shape=shape, metadata=_metadata(module, path, builder, LI_CUBA))


@register_mapping(leaky_integrator.LILinearCell, traits=STEP)
def map_li_linear(module: nn.Module, path: str, builder: GraphBuilder) -> None:
    """``LILinearCell`` (Norse ``li_step``: ``j = i + W x``) -> ``Linear`` -> ``CubaLI``."""
    _check_dt(module, path, builder)
    weight = module.input_weights.detach().cpu().numpy().astype(np.float32)
    _flat_input(module, path, builder, weight.shape[1])
    hidden = (int(weight.shape[0]),)
    builder.add(
        f"{path}.input", nir.Linear(weight=weight), metadata={"module": path, "role": "input"}
    )
    node = _cuba_li(module, path, builder, module.p, hidden)
    builder.add(path, node, shape=hidden, metadata=_metadata(module, path, builder, LI_CUBA))


@register_mapping(leaky_integrator_box.LIBoxCell, traits=STEP)
def map_li_box(module: nn.Module, path: str, builder: GraphBuilder) -> None:
    r"""``LIBoxCell`` -> NIR ``LI`` (bit-identical to Norse).

    Norse (``li_box_feed_forward_step``):
    :math:`v[t] = v[t-1] + dt\,\tau_\text{mem}^{-1}((v_\text{leak} - v[t-1]) + x[t])`,
    output ``v``. NIR ``LI`` (:math:`\tau\dot v = (v_\text{leak} - v) + r I`) with
    ``tau = 1/tau_mem_inv``, ``r = 1``; ``v_leak`` must be 0 (Norse starts at ``v_leak``,
    the runtime at 0).
    """
    _check_dt(module, path, builder)
    p, shape = module.p, builder.shape
    node = nir.LI(
        tau=_tau(module, path, "tau_mem_inv", p.tau_mem_inv, shape),
        r=np.ones(shape, dtype=np.float64),
        v_leak=_zero_leak(module, path, p, shape),
    )
    builder.add(path, node, shape=shape, metadata=_metadata(module, path, builder, LI_BOX))


@register_mapping(iaf.IAFCell, traits=IAF_STEP)
@register_mapping(iaf.IAF, traits=IAF_SEQUENCE)
def map_iaf(module: nn.Module, path: str, builder: GraphBuilder) -> None:
    r"""``IAFCell``/``IAF`` -> NIR ``IF``.

    Norse (``iaf_feed_forward_step``, no time constant, ``dt`` unused, ``v[-1] = v_reset``):
    :math:`v[t] = v[t-1] + x[t]`, :math:`z[t] = [v[t] - v_\text{th} > 0]`, then
    :math:`v[t] = v_\text{reset}`. NIR ``IF`` is :math:`\dot v = r I`; its Euler step
    :math:`v \mathrel{+}= dt\,r\,x` adds ``x`` once per step with ``r = 1/dt`` (the graph's
    ``dt``; equal to Norse up to the float32 rounding of ``dt * (r * x)``). Written in
    ``v - v_reset`` (threshold ``v_th - v_reset``, reset 0).
    """
    p, shape = module.p, builder.shape
    v_reset = _array(module, path, "v_reset", p.v_reset, shape)
    node = nir.IF(
        r=np.full(shape, 1.0 / builder.dt, dtype=np.float64),
        v_threshold=_array(module, path, "v_th", p.v_th, shape) - v_reset,
        v_reset=np.zeros(shape, dtype=np.float64),
    )
    builder.add(path, node, shape=shape, metadata=_metadata(module, path, builder, IAF_STEP_EQ))


def lift_returns_state(module: nn.Module) -> bool:
    """``Lift`` returns ``(outputs, state)`` iff the lifted module is stateful."""
    return bool(getattr(module, "is_stateful", False))


@register_mapping(lift.Lift, traits=MappingTraits(sequence=True, returns_state=lift_returns_state))
def map_lift(module: nn.Module, path: str, builder: GraphBuilder) -> None:
    """``Lift(m)`` applies ``m`` at every step of a ``[T, B, ...]`` sequence: in a per-step
    graph it is ``m`` itself (its torch dims count one leading dim, the batch)."""
    leading = builder.leading_dims
    builder.leading_dims = 1
    try:
        walk(module.lifted_module, path, builder)
    finally:
        builder.leading_dims = leading


# SequentialState's forward only chains its children: torch.fx traces through it (every
# other Norse module is a leaf of the trace: mapped or refused by name).
register_traced_container(sequential.SequentialState)


def _reasons() -> list[tuple[type, str]]:
    no_primitive = "NIR 1.0.8 has no primitive for {what}"
    groups: list[tuple[tuple[type, ...], str]] = [
        (
            (lsnn.LSNNCell, lsnn.LSNNRecurrentCell, lsnn.LSNN, lsnn.LSNNRecurrent),
            no_primitive.format(what="an adaptive threshold (LSNN)"),
        ),
        (
            (
                lif_adex.LIFAdExCell,
                lif_adex.LIFAdExRecurrentCell,
                lif_adex.LIFAdEx,
                lif_adex.LIFAdExRecurrent,
                lif_adex_refrac.LIFAdExRefracCell,
                lif_adex_refrac.LIFAdExRefracRecurrentCell,
                lif_adex_refrac.LIFAdExRefracRecurrent,
            ),
            no_primitive.format(what="adaptive exponential dynamics (AdEx)"),
        ),
        (
            (lif_ex.LIFExCell, lif_ex.LIFExRecurrentCell, lif_ex.LIFEx, lif_ex.LIFExRecurrent),
            no_primitive.format(what="the exponential term of an ExpIF neuron"),
        ),
        (
            (
                izhikevich.IzhikevichCell,
                izhikevich.IzhikevichRecurrentCell,
                izhikevich.Izhikevich,
                izhikevich.IzhikevichRecurrent,
            ),
            no_primitive.format(what="Izhikevich's quadratic dynamics"),
        ),
        (
            (coba_lif.CobaLIFCell,),
            no_primitive.format(what="conductance-based synapses (input times voltage)"),
        ),
        (
            (lif_mc.LIFMCRecurrentCell, lif_mc_refrac.LIFMCRefracRecurrentCell),
            no_primitive.format(what="multi-compartment neurons"),
        ),
        (
            (
                encode.PoissonEncoder,
                encode.PoissonEncoderStep,
                encode.SignedPoissonEncoder,
                encode.SignedPoissonEncoderStep,
            ),
            "random spike encoders have no NIR form; encode the input before the graph",
        ),
        (
            (
                encode.ConstantCurrentLIFEncoder,
                encode.SpikeLatencyLIFEncoder,
                encode.SpikeLatencyEncoder,
                encode.PopulationEncoder,
            ),
            "an input encoder that generates time steps itself; encode the input before the "
            "graph, or use Lift(Linear) + LIFCell",
        ),
        (
            (sequential.RecurrentSequential,),
            "it feeds its outputs back as the next step's input through its state, which a "
            "single traced step does not show; write the recurrence with LIFRecurrentCell",
        ),
    ]
    return [(cls, reason) for classes, reason in groups for cls in classes]


for _cls, _reason in _reasons():
    register_unsupported_reason(_cls, _reason)
