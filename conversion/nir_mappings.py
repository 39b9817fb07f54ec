"""Registry of torch module type -> NIR mapping function, and the model walker.

A mapping function ``(module, path, builder) -> None`` appends the NIR nodes that compute
``module`` (one timestep, batch-free shapes) to a :class:`~conversion.nir_builder.GraphBuilder`.
Mappings are looked up by the module's exact class (a subclass may change ``forward``):

====================  ==========================================================================
module                NIR
====================  ==========================================================================
Conv2d                ``Conv2d`` (absorbs a pending folded SE gate into its input weights)
BatchNorm2d           folded into the preceding ``Conv2d`` node; alone, a per-channel 1x1
                      grouped ``Conv2d``
BatchNorm1d           folded into the preceding ``Affine``/``Linear``; alone, a diagonal ``Affine``
AvgPool2d             ``AvgPool2d``
AdaptiveAvgPool2d     ``AvgPool2d`` with kernel = stride = input size / output size
Flatten               ``Flatten`` with ``start_dim``/``end_dim`` shifted to batch-free shapes
Linear                ``Affine`` (``Linear`` without bias; absorbs a pending SE gate)
LIFLayer              ``LIF`` (``tau = tau_mem``, ``r = 1``, ``v_leak = v_reset = 0``)
SEBlock               ``none``: nothing; ``spiking``: squeeze/excite/gate/AND subgraph;
                      ``analog``: calibrated gate folded into the next layer
Identity, Dropout     nothing (identity at inference)
Sequential            its children, in order
====================  ==========================================================================

Norse 1.1.0's neuron modules (``LIFCell``/``LIF`` -> ``CubaLIF``, ``LIFBoxCell`` -> ``LIF``,
``LICell``/``LI`` -> ``CubaLI``, ``LIBoxCell`` -> ``LI``, ``IAFCell``/``IAF`` -> ``IF``,
``LIFRecurrentCell``/``LIFRecurrent`` -> ``CubaLIF`` with a recurrent ``Linear`` edge, ``Lift``)
are mapped in :mod:`conversion.mappings.norse`, one of the built-in mapping modules
(:data:`BUILTIN_MAPPING_MODULES`) imported on the first lookup.

Besides the mapping function a class may register :class:`MappingTraits`: whether the
module consumes whole ``[T, B, ...]`` sequences (Norse's non-Cell modules) and how to read
the time step its dynamics use (the graph's ``dt`` must be the same for all of them).

Any other module raises :class:`~neurall_neuro.errors.UnsupportedModuleError` naming its
class, its path in the model and the supported set. Nothing is skipped silently.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import nir
import numpy as np
from torch import nn

from conversion.bn_folding import batchnorm_affine, fold_batchnorm
from conversion.nir_builder import GraphBuilder
from neurall_neuro.errors import ConversionError, UnsupportedModuleError
from neurall_neuro.int_tuples import int_pair
from neurall_neuro.models.blocks import MeanOverTime, ResidualAdd
from neurall_neuro.models.neurons import LIFLayer
from neurall_neuro.models.se_block import AND_THRESHOLD, SEBlock
from neurall_neuro.registry import Registry

ModuleMapping = Callable[[nn.Module, str, GraphBuilder], None]


@dataclass(frozen=True)
class MappingTraits:
    """What an exporter must know about a mapped module class besides its mapping.

    ``sequence``: the module takes a whole ``[T, B, ...]`` sequence (Norse's non-Cell
    modules, ``Lift``): a model containing one is driven with ``[T, B, ...]`` inputs, and
    torch dims count two leading dims instead of one. ``dt``: returns the time step (s)
    the module's dynamics use, or ``None`` when they use none (all such values in one
    model must agree: a graph has one ``dt``). ``returns_state``: whether a call returns
    ``(output, state)``; default: iff its ``forward`` takes a ``state`` argument (Norse's
    convention).
    """

    sequence: bool = False
    dt: Callable[[nn.Module], float | None] | None = None
    returns_state: Callable[[nn.Module], bool] | None = None


#: Module class (qualified name) -> mapping function.
MODULE_MAPPINGS: Registry[ModuleMapping] = Registry("NIR module mapping")
#: Module class (qualified name) -> its traits (classes without an entry: the defaults).
MAPPING_TRAITS: Registry[MappingTraits] = Registry("NIR mapping traits")
#: Module class (qualified name) -> why it has no mapping (added to the error message).
UNSUPPORTED_REASONS: Registry[str] = Registry("reason a module has no NIR mapping")
#: Containers from a package whose modules are otherwise leaves of a torch.fx trace (see
#: conversion.fx_trace.LEAF_PACKAGES) that are traced through: their forward only chains
#: their children (class qualified name -> class).
TRACED_CONTAINERS: Registry[type] = Registry("container traced through by torch.fx")

#: Modules that register more mappings (imported on the first lookup).
BUILTIN_MAPPING_MODULES: tuple[str, ...] = ("conversion.mappings.norse",)


def class_key(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_mapping(
    *classes: type, traits: MappingTraits | None = None
) -> Callable[[ModuleMapping], ModuleMapping]:
    """Decorator: register a mapping function (and optional traits) for module classes."""

    def decorator(fn: ModuleMapping) -> ModuleMapping:
        for cls in classes:
            MODULE_MAPPINGS.register(class_key(cls), fn)
            if traits is not None:
                MAPPING_TRAITS.register(class_key(cls), traits)
        return fn

    return decorator


def register_unsupported_reason(cls: type, reason: str) -> None:
    """Explain in the export error why modules of ``cls`` have no NIR mapping."""
    UNSUPPORTED_REASONS.register(class_key(cls), reason)


def register_traced_container(cls: type) -> None:
    """Let torch.fx trace through ``cls`` (see :data:`TRACED_CONTAINERS`)."""
    TRACED_CONTAINERS.register(class_key(cls), cls)


def is_traced_container(module: nn.Module) -> bool:
    load_builtin_mappings()
    return class_key(type(module)) in TRACED_CONTAINERS


def load_builtin_mappings() -> None:
    """Import :data:`BUILTIN_MAPPING_MODULES` (registers on first import; cached after)."""
    for name in BUILTIN_MAPPING_MODULES:
        importlib.import_module(name)


def find_mapping(module: nn.Module) -> ModuleMapping | None:
    load_builtin_mappings()
    key = class_key(type(module))
    return MODULE_MAPPINGS.get(key) if key in MODULE_MAPPINGS else None


def mapping_traits(module: nn.Module) -> MappingTraits:
    """The registered :class:`MappingTraits` of ``module``'s class (defaults if none)."""
    load_builtin_mappings()
    key = class_key(type(module))
    return MAPPING_TRAITS.get(key) if key in MAPPING_TRAITS else MappingTraits()


def unsupported_reason(module: nn.Module) -> str | None:
    """Why ``module``'s class has no mapping, when a reason is registered."""
    load_builtin_mappings()
    key = class_key(type(module))
    return UNSUPPORTED_REASONS.get(key) if key in UNSUPPORTED_REASONS else None


def supported_modules() -> list[str]:
    """Class names with a NIR mapping (plus ``Sequential`` and traced containers)."""
    load_builtin_mappings()
    names = {key.rsplit(".", 1)[-1] for key in (*MODULE_MAPPINGS.names(), *TRACED_CONTAINERS)}
    return sorted(names | {"Sequential"})


for _cls, _reason in (
    (nn.ReLU, "NIR has no ReLU: it describes spiking/linear dynamics, not rate activations"),
    (nn.MaxPool2d, "NIR has no max pooling (only AvgPool2d and SumPool2d)"),
    (nn.Sigmoid, "a sigmoid gate needs a product of two signals; fold it (SE analog mode)"),
    (ResidualAdd, "a sum of two branches; the module walker maps chains of layers only"),
    (
        MeanOverTime,
        "a mean over time is a graph's readout convention (metadata readout = "
        "mean_over_time), written by a whole-model exporter, not a node",
    ),
):
    register_unsupported_reason(_cls, _reason)
# A residual join is a plain sum: the torch.fx trace goes through it (edges summed).
register_traced_container(ResidualAdd)


def unsupported_module_error(module: nn.Module, path: str) -> UnsupportedModuleError:
    """The error for ``module`` at ``path``; for a container with its own ``forward``
    (e.g. a residual block) it names the unmappable modules inside as well."""
    where = path or "<model root>"
    inner = [
        (f"{path}.{sub}" if path else sub, child)
        for sub, child in module.named_modules()
        if sub and not list(child.children()) and find_mapping(child) is None
    ]
    if not inner:
        return UnsupportedModuleError(
            type(module), where, supported_modules(), unsupported_reason(module)
        )
    first_path, first = inner[0]
    detail = (
        f"it sits inside {type(module).__name__} at {where!r}, whose own forward() (e.g. "
        "residual adds) cannot be expressed as a NIR graph either"
    )
    if len(inner) > 1:
        others = ", ".join(f"{type(m).__name__} at {p!r}" for p, m in inner[1:6])
        detail = f"also unmappable: {others}{', ...' if len(inner) > 6 else ''}; {detail}"
    return UnsupportedModuleError(
        type(first), first_path, supported_modules(), unsupported_reason(first), detail=detail
    )


def walk(module: nn.Module, path: str, builder: GraphBuilder) -> None:
    """Append the NIR nodes of ``module`` (at ``path``) to ``builder``."""
    mapping = find_mapping(module)
    if mapping is not None:
        mapping(module, path, builder)
    elif type(module) is nn.Sequential:
        for name, child in module.named_children():
            walk(child, f"{path}.{name}" if path else name, builder)
    else:
        raise unsupported_module_error(module, path)


# ------------------------------------------------------------------------------ helpers


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float32)


def _unsupported_option(module: nn.Module, path: str, option: str) -> UnsupportedModuleError:
    """The error for an option of a supported module that NIR cannot express."""
    return UnsupportedModuleError(
        type(module), path, supported_modules(), option, problem="cannot be expressed in NIR"
    )


def conv_input_shape(builder: GraphBuilder, groups: int) -> tuple[int, ...] | None:
    """``input_shape`` for a ``nir.Conv2d``: ``None`` for grouped convolutions, because
    nir 1.0.8 derives a convolution's input channels as ``weight.shape[1]`` (ignoring
    ``groups``); with ``None`` its type inference takes the shape from the incoming edge."""
    return None if groups > 1 else tuple(builder.shape[1:])


def lif_node(tau: float, v_th: float, shape: tuple[int, ...], dt: float, **metadata) -> nir.LIF:
    """A LIF node of the project's convention (``r = 1``, ``v_leak = v_reset = 0``).

    Time constants and thresholds are float64 arrays of the node's shape, so ``dt / tau``
    is exact for the configured values."""
    return nir.LIF(
        tau=np.full(shape, tau, dtype=np.float64),
        r=np.ones(shape, dtype=np.float64),
        v_leak=np.zeros(shape, dtype=np.float64),
        v_threshold=np.full(shape, v_th, dtype=np.float64),
        v_reset=np.zeros(shape, dtype=np.float64),
        metadata={"dt": float(dt), **metadata},
    )


# ------------------------------------------------------------------------------ mappings


@register_mapping(nn.Conv2d)
def map_conv2d(module: nn.Conv2d, path: str, builder: GraphBuilder) -> None:
    if module.padding_mode != "zeros":
        raise _unsupported_option(module, path, f"padding_mode={module.padding_mode!r}")
    weight = _numpy(module.weight)
    bias = _numpy(module.bias) if module.bias is not None else np.zeros(weight.shape[0], np.float32)
    metadata = {"module": path}
    taken = builder.take_input_scale(module.in_channels, per_channel=True)
    if taken is not None:
        gate, source = taken
        groups = module.groups
        per_group = gate.reshape(groups, -1)  # [groups, in/groups]
        rows = per_group[np.arange(weight.shape[0]) // (weight.shape[0] // groups)]
        weight = (weight.astype(np.float64) * rows[:, :, None, None]).astype(np.float32)
        metadata["folded_se_gate"] = source
    padding = (
        module.padding
        if isinstance(module.padding, str)
        else int_pair(module.padding, f"{path}: padding", error=ConversionError)
    )
    node = nir.Conv2d(
        input_shape=conv_input_shape(builder, module.groups),
        weight=weight,
        stride=int_pair(module.stride, f"{path}: stride", error=ConversionError),
        padding=padding,
        dilation=int_pair(module.dilation, f"{path}: dilation", error=ConversionError),
        groups=int(module.groups),
        bias=bias,
    )
    builder.add(path, node, metadata=metadata)


@register_mapping(nn.BatchNorm2d)
def map_batchnorm2d(module: nn.BatchNorm2d, path: str, builder: GraphBuilder) -> None:
    tail = builder.nodes.get(builder.tail) if builder.tail else None
    if isinstance(tail, nir.Conv2d) and builder.last_added == builder.tail:
        weight, bias = fold_batchnorm(np.asarray(tail.weight), np.asarray(tail.bias), module, path)
        tail.weight, tail.bias = weight, bias
        tail.metadata = {**tail.metadata, "folded_batchnorm": path}
        return
    # A BatchNorm without a preceding convolution: a per-channel affine map, i.e. a 1x1
    # convolution with one group per channel ("grouped"), or the same map as a groups=1
    # convolution with a diagonal channel matrix ("dense", portable; exact: the other
    # products are zeros).
    scale, shift = batchnorm_affine(module, path)
    channels = scale.shape[0]
    if builder.se_broadcast == "grouped":
        weight = scale.astype(np.float32).reshape(channels, 1, 1, 1)
        groups = channels
    else:
        weight = np.zeros((channels, channels, 1, 1), dtype=np.float32)
        weight[np.arange(channels), np.arange(channels), 0, 0] = scale.astype(np.float32)
        groups = 1
    node = nir.Conv2d(
        input_shape=conv_input_shape(builder, groups),
        weight=weight,
        stride=1,
        padding=0,
        dilation=1,
        groups=groups,
        bias=shift.astype(np.float32),
    )
    builder.add(path, node, metadata={"module": path})


@register_mapping(nn.BatchNorm1d)
def map_batchnorm1d(module: nn.BatchNorm1d, path: str, builder: GraphBuilder) -> None:
    tail = builder.nodes.get(builder.tail) if builder.tail else None
    if isinstance(tail, (nir.Affine, nir.Linear)) and builder.last_added == builder.tail:
        weight = np.asarray(tail.weight)
        bias = np.asarray(tail.bias) if isinstance(tail, nir.Affine) else np.zeros(weight.shape[0])
        weight, bias = fold_batchnorm(weight, bias, module, path)
        folded = nir.Affine(
            weight=weight, bias=bias, metadata={**tail.metadata, "folded_batchnorm": path}
        )
        builder.nodes[builder.tail] = folded  # a Linear gains the BatchNorm's bias
        return
    if len(builder.shape) != 1:
        raise _unsupported_option(
            module, path, f"a BatchNorm1d on a {builder.shape} signal without a preceding Linear"
        )
    scale, shift = batchnorm_affine(module, path)
    node = nir.Affine(weight=np.diag(scale).astype(np.float32), bias=shift.astype(np.float32))
    builder.add(path, node, metadata={"module": path})


def _carry_scale_through_pool(builder: GraphBuilder, path: str) -> None:
    if builder.pending is None:
        return
    values = np.broadcast_to(builder.pending.values, builder.shape)
    flat = values.reshape(values.shape[0], -1)
    if not np.all(flat == flat[:, :1]):
        raise ConversionError(f"a folded SE gate varying over space cannot pass the pool {path!r}")
    builder.pending.values = flat[:, :1].reshape(-1, 1, 1)


def _add_avgpool(builder: GraphBuilder, path: str, kernel, stride, padding) -> None:
    _carry_scale_through_pool(builder, path)
    node = nir.AvgPool2d(
        kernel_size=np.array(kernel, dtype=np.int64),
        stride=np.array(stride, dtype=np.int64),
        padding=np.array(padding, dtype=np.int64),
    )
    builder.add(path, node, metadata={"module": path})


@register_mapping(nn.AvgPool2d)
def map_avgpool2d(module: nn.AvgPool2d, path: str, builder: GraphBuilder) -> None:
    kernel = int_pair(module.kernel_size, f"{path}: kernel_size", error=ConversionError)
    stride = int_pair(
        module.stride if module.stride is not None else module.kernel_size,
        f"{path}: stride",
        error=ConversionError,
    )
    padding = int_pair(module.padding, f"{path}: padding", error=ConversionError)
    if module.ceil_mode:
        raise _unsupported_option(module, path, "ceil_mode=True")
    if module.divisor_override is not None:
        raise _unsupported_option(module, path, "divisor_override")
    if not module.count_include_pad and max(padding) > 0:
        raise _unsupported_option(module, path, "count_include_pad=False with padding")
    _add_avgpool(builder, path, kernel, stride, padding)


@register_mapping(nn.AdaptiveAvgPool2d)
def map_adaptive_avgpool2d(module: nn.AdaptiveAvgPool2d, path: str, builder: GraphBuilder) -> None:
    if len(builder.shape) != 3:
        raise ConversionError(
            f"{path!r}: AdaptiveAvgPool2d needs a (C, H, W) input, got {builder.shape}"
        )
    height, width = builder.shape[1:]
    out = module.output_size
    out_h, out_w = (out, out) if isinstance(out, int) else out
    out_h, out_w = out_h or height, out_w or width
    if height % out_h or width % out_w:
        raise _unsupported_option(
            module, path, f"output size {(out_h, out_w)} not dividing the input {(height, width)}"
        )
    kernel = (height // out_h, width // out_w)
    _add_avgpool(builder, path, kernel, kernel, (0, 0))


@register_mapping(nn.Flatten)
def map_flatten(module: nn.Flatten, path: str, builder: GraphBuilder) -> None:
    # torch dims count the batch (and time, for a [T, B, ...] sequence model); NIR shapes
    # have neither: dim d >= lead becomes d - lead, negative dims stay.
    start, end = module.start_dim, module.end_dim
    lead = builder.leading_dims
    if 0 <= start < lead or 0 <= end < lead:
        what = "batch dimension" if lead == 1 else "time or batch dimension"
        raise _unsupported_option(module, path, f"flattening the {what}")
    nir_start = start - lead if start >= 0 else start
    nir_end = end - lead if end >= 0 else end
    old_shape = builder.shape
    node = nir.Flatten(
        input_type={"input": np.array(old_shape)}, start_dim=nir_start, end_dim=nir_end
    )
    pending = builder.pending
    builder.pending = None
    builder.add(path, node, metadata={"module": path})
    if pending is not None:
        values = np.broadcast_to(pending.values, old_shape).reshape(builder.shape)
        builder.pending = type(pending)(np.array(values), pending.source)


@register_mapping(nn.Linear)
def map_linear(module: nn.Linear, path: str, builder: GraphBuilder) -> None:
    weight = _numpy(module.weight)
    metadata = {"module": path}
    taken = builder.take_input_scale(module.in_features, per_channel=False)
    if taken is not None:
        gate, source = taken
        weight = (weight.astype(np.float64) * gate[None, :]).astype(np.float32)
        metadata["folded_se_gate"] = source
    if module.bias is None:
        node: nir.NIRNode = nir.Linear(weight=weight)
    else:
        node = nir.Affine(weight=weight, bias=_numpy(module.bias))
    builder.add(path, node, metadata=metadata)


@register_mapping(nn.Identity, nn.Dropout)
def map_identity(module: nn.Module, path: str, builder: GraphBuilder) -> None:
    """Identity at inference: no node."""


@register_mapping(LIFLayer, traits=MappingTraits(dt=lambda m: float(m.dt)))
def map_lif(module: LIFLayer, path: str, builder: GraphBuilder, role: str = "feature") -> None:
    builder.require_no_pending(f"the neuron layer {path!r}")
    if abs(module.dt - builder.dt) > 1e-12 * builder.dt:
        raise ConversionError(
            f"LIF layer {path!r} uses dt={module.dt}, the graph dt={builder.dt}; one graph has one dt"
        )
    node = lif_node(module.tau_mem, module.v_th, builder.shape, builder.dt, module=path, role=role)
    builder.add(path, node, shape=builder.shape)


@register_mapping(SEBlock)
def map_se_block(module: SEBlock, path: str, builder: GraphBuilder) -> None:
    if module.mode == "none":
        return
    if module.mode == "analog":
        gates = builder.se_gates
        if path not in gates:
            raise ConversionError(
                f"SE block {path!r} is in 'analog' mode: its sigmoid gate multiplies two signals, "
                "which NIR cannot express. Pass calibration images, to_nir(model, "
                "calibration=images), so the gate is replaced by its expectation and folded "
                "into the next layer"
            )
        gate = np.asarray(gates[path], dtype=np.float64)
        builder.push_scale(gate.reshape(-1, 1, 1), path)
        return
    map_spiking_se(module, path, builder)


def map_spiking_se(module: SEBlock, path: str, builder: GraphBuilder) -> None:
    r"""The spiking SE block as standard primitives (feature shape ``(C, H, W)``)::

        features ─┬─ AvgPool2d(H, W) ─ Conv2d 1x1 (fc1) ─ LIF (act1) ─ Conv2d 1x1 (fc2)
                  │      ─ LIF tau=dt (act2: the gate) ─ Conv2d groups=C, kernel (H, W),
                  │        padding (H-1, W-1), weights 1 (broadcast) ─┐
                  └──────────────────────────────────────────────────┴─ LIF tau=dt,
                                                                         v_th=1.5 (and)

    The AND neuron sums the feature spike ``s`` and the broadcast gate spike ``g``; with
    ``tau = dt`` its voltage is ``s + g`` (exact for these integers), so it spikes iff
    ``s = g = 1``: the product ``s * g`` of the model.
    """
    builder.require_no_pending(f"the SE block {path!r}")
    builder.materialize_sum(f"{path}.sum", metadata={"module": path})
    features = builder.tail
    channels, height, width = builder.shape
    walk(module.squeeze, f"{path}.squeeze", builder)
    walk(module.fc1, f"{path}.fc1", builder)
    map_lif(module.act1, f"{path}.act1", builder, role="se_hidden")
    walk(module.fc2, f"{path}.fc2", builder)
    map_lif(module.act2, f"{path}.act2", builder, role="se_gate")
    if builder.se_broadcast == "grouped":
        weight = np.ones((channels, 1, height, width), dtype=np.float32)
        groups = channels
    else:  # "dense": the same map as a groups=1 convolution with a diagonal channel matrix
        weight = np.zeros((channels, channels, height, width), dtype=np.float32)
        weight[np.arange(channels), np.arange(channels)] = 1.0
        groups = 1
    broadcast = nir.Conv2d(
        input_shape=None if groups > 1 else (1, 1),
        weight=weight,
        stride=(1, 1),
        padding=(height - 1, width - 1),
        dilation=(1, 1),
        groups=groups,
        bias=np.zeros(channels, dtype=np.float32),
    )
    builder.add(
        f"{path}.broadcast", broadcast, metadata={"module": f"{path}.gate", "role": "se_broadcast"}
    )
    and_node = lif_node(
        builder.dt,
        AND_THRESHOLD,
        (channels, height, width),
        builder.dt,
        module=f"{path}.gate",
        role="se_and",
    )
    builder.add(
        f"{path}.and", and_node, inputs=[features, builder.tail], shape=(channels, height, width)
    )
