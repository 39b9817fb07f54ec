r"""A fixed-point network IR for Loihi-style targets (``loihi-emu`` and ``lava-sim``).

A :class:`LoihiNetwork` is a set of LIF :class:`NeuronGroup` s joined by
:class:`Synapse` layers (dense or convolutional), one of which is the *input group*:
a group without synapses that is driven by its bias (on the host, an optional float
:class:`HostEncoder` turns an image into that bias: "direct encoding").

Arithmetic (lava-nc 0.10.0 ``PyLifModelBitAcc``, ``PyDenseModelBitAcc``,
``PyConvModelFixed``; checked bit-exact against Lava and lava-dl's ground truth)
---------------------------------------------------------------------------------
All state is integer. With ``decay(x, k) = sign(x k) * (|x k| >> 12)`` (rounds toward
zero) one step ``t`` of a group is

.. math::
    a[t] &= \sum_{s \to g} \mathrm{shift}\Bigl(\sum_j M_s[i, j]\, z_{src}[t - d_s, j],\;
            E_s\Bigr) \\
    u[t] &= \mathrm{wrap}_{24}\bigl(\mathrm{decay}(u[t-1], 4096 - du - 1) + (a[t] \ll 6)\bigr) \\
    v[t] &= \mathrm{clip}_{\pm(2^{23}-1)}\bigl(\mathrm{decay}(v[t-1], 4096 - dv) + u[t]
            + b[t]\bigr) \\
    z[t] &= [v[t] > v_{th} \ll 6], \qquad v[t] \leftarrow 0 \text{ where } z[t] = 1

where ``shift(x, E)`` is ``x << E`` for ``E >= 0`` and the floor ``x >> -E`` otherwise,
``d_s >= 1`` is the synapse's delay in steps (1 is Loihi's native one-step delay: every
synapse layer sends the sum it accumulated in the previous step), ``M_s`` are the
weight mantissas, and the bias is ``b[t] = bias_mant << bias_exp`` from step
``bias_start_step`` on and 0 before it. Note the different alignments: synaptic input
and threshold are shifted left by 6 bits, the bias is not. In *a_in units* (``v / 64``)
the update reads ``v' = v'(1 - dv/4096) + a + bias_mant 2^{bias\_exp} / 64``.

The ``float_*`` fields optionally hold the unquantised parameters in the same a_in
units (weights ``lambda W'``, bias, threshold, decays as fractions); Lava's
``floating_pt`` models run with them, so a float run reproduces the float NIR model up
to the per-group scale ``lambda`` (``scale``).

Shapes are in torch order: ``(C, H, W)`` for convolutional groups, ``(N,)`` otherwise.
Dense weights are ``[N_dst, N_src]`` over the C-order flattening of those shapes;
convolution weights are ``[C_out, C_in / groups, kH, kW]`` (correlation, like
``torch.nn.functional.conv2d``), stride/padding/dilation are ``(h, w)``.

Every field is range-checked on construction against :mod:`hw_targets.loihi.spec`
(a ``QuantizationError`` names the field, the value and the valid range).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from hw_targets.loihi.spec import (
    A_IN_UNIT,
    BIAS_EXP_RANGE,
    BIAS_MANT_RANGE,
    DECAY_UNITY,
    DELAY_RANGE,
    DU_MEMORYLESS,
    DU_OFFSET,
    DU_RANGE,
    DV_OFFSET,
    DV_RANGE,
    VTH_RANGE,
    WEIGHT_EXP_RANGE,
    WEIGHT_MANT_STEP,
    WEIGHT_RANGE,
)
from neurall_neuro.errors import ConversionError, QuantizationError
from neurall_neuro.int_tuples import int_pair

#: Last step a bias may start at (the int32 range of a step counter).
_MAX_STEP = 2**31 - 1

Kind = Literal["dense", "conv"]
Readout = Literal["spikes", "voltage"]


def _check_range(what: str, value: Any, valid: tuple[int, int]) -> None:
    """Raise QuantizationError if (every element of) ``value`` is outside ``valid``."""
    arr = np.asarray(value)
    if arr.size == 0:
        return
    lo, hi = int(arr.min()), int(arr.max())
    if lo < valid[0] or hi > valid[1]:
        bad = lo if lo < valid[0] else hi
        raise QuantizationError(
            f"{what} = {bad} is out of range; valid range is {valid[0]}..{valid[1]}"
        )


def _as_int_array(what: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise QuantizationError(f"{what} must hold integers, got non-integer values")
    elif arr.dtype.kind not in "iub":
        raise QuantizationError(f"{what} must be an integer array, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _int_field(what: str, value: Any, valid: tuple[int, int]) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise QuantizationError(f"{what} must be an integer, got {value!r}")
    _check_range(what, int(value), valid)
    return int(value)


def conv_output_shape(
    in_shape: Sequence[int],
    out_channels: int,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
) -> tuple[int, int, int]:
    """``(C_out, H_out, W_out)`` of a convolution of a ``(C, H, W)`` input (torch formula)."""
    spatial = tuple(
        (int(in_shape[1 + i]) + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
        for i in range(2)
    )
    return (int(out_channels), spatial[0], spatial[1])


# ----------------------------------------------------------------------------- groups


@dataclass
class NeuronGroup:
    """A population of Loihi LIF neurons sharing ``du``, ``dv``, ``vth`` and ``bias_exp``.

    ``bias_mant`` is per neuron (given as a scalar, per channel ``(C,)`` for 3-D groups,
    or the full shape; stored as the full shape). ``bias_start_step``: the bias is 0
    before this step (the group's synaptic depth, so that the Loihi run equals the float
    run shifted by that depth). ``readout``: ``"spikes"``, or ``"voltage"`` for a
    non-spiking integrator whose final voltage gives class scores; ``scale`` is the
    quantisation scale (a_in units per float unit) used to turn voltages into floats.
    """

    name: str
    shape: tuple[int, ...]
    du: int = DU_MEMORYLESS
    dv: int = 0
    vth: int = 1
    bias_mant: Any = 0
    bias_exp: int = 0
    bias_start_step: int = 0
    readout: Readout = "spikes"
    scale: float | None = None
    float_du: float | None = None
    float_dv: float | None = None
    float_vth: float | None = None
    float_bias: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConversionError(
                f"neuron group name must be a non-empty string, got {self.name!r}"
            )
        shape = tuple(int(s) for s in np.asarray(self.shape).reshape(-1))
        if len(shape) not in (1, 3) or min(shape) < 1:
            raise ConversionError(
                f"group {self.name!r}: shape must be (N,) or (C, H, W) with positive sizes, "
                f"got {self.shape!r}"
            )
        self.shape = shape
        where = f"group {self.name!r}"
        self.du = _int_field(f"{where}: du", self.du, DU_RANGE)
        self.dv = _int_field(f"{where}: dv", self.dv, DV_RANGE)
        self.vth = _int_field(f"{where}: vth", self.vth, VTH_RANGE)
        self.bias_exp = _int_field(f"{where}: bias_exp", self.bias_exp, BIAS_EXP_RANGE)
        self.bias_start_step = _int_field(
            f"{where}: bias_start_step", self.bias_start_step, (0, _MAX_STEP)
        )
        self.bias_mant = self._full(
            f"{where}: bias_mant", _as_int_array(f"{where}: bias_mant", self.bias_mant)
        )
        _check_range(f"{where}: bias_mant", self.bias_mant, BIAS_MANT_RANGE)
        if self.readout not in ("spikes", "voltage"):
            raise ConversionError(
                f"{where}: readout must be 'spikes' or 'voltage', got {self.readout!r}"
            )
        if self.scale is not None and not (math.isfinite(self.scale) and self.scale > 0):
            raise QuantizationError(
                f"{where}: scale must be a positive finite number, got {self.scale!r}"
            )
        if self.float_bias is not None:
            self.float_bias = self._full(
                f"{where}: float_bias", np.asarray(self.float_bias, dtype=np.float64)
            )

    def _full(self, what: str, arr: np.ndarray) -> np.ndarray:
        if arr.ndim == 0:
            return np.full(self.shape, arr.item(), dtype=arr.dtype)
        if arr.shape == self.shape:
            return arr
        if len(self.shape) == 3 and arr.shape == (self.shape[0],):
            return np.broadcast_to(arr[:, None, None], self.shape).copy()
        raise ConversionError(
            f"{what} has shape {arr.shape}; expected a scalar, per-channel ({self.shape[0]},) "
            f"or the group shape {self.shape}"
        )

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def effective_bias(self) -> np.ndarray:
        """``bias_mant << bias_exp`` (added to ``v`` every step from ``bias_start_step``)."""
        return self.bias_mant << self.bias_exp

    def float_params(self) -> dict[str, Any]:
        """Parameters for Lava's ``floating_pt`` LIF (a_in units): du, dv as fractions,
        vth and bias; the ``float_*`` fields where set, else derived from the fixed ones."""
        return {
            "du": self.float_du
            if self.float_du is not None
            else (self.du + DU_OFFSET) / DECAY_UNITY,
            "dv": self.float_dv
            if self.float_dv is not None
            else (self.dv + DV_OFFSET) / DECAY_UNITY,
            "vth": self.float_vth if self.float_vth is not None else float(self.vth),
            "bias": (
                self.float_bias
                if self.float_bias is not None
                else self.effective_bias.astype(np.float64) / A_IN_UNIT
            ),
        }


# ----------------------------------------------------------------------------- synapses


@dataclass
class Synapse:
    """A synapse layer ``src -> dst``: 8-bit weight mantissas, one weight exponent, a delay.

    ``kind="dense"``: ``weight[N_dst, N_src]``; ``kind="conv"``: a 2-D convolution with
    ``weight[C_out, C_in/groups, kH, kW]`` from a ``(C_in, H, W)`` group to a
    ``(C_out, H', W')`` group. Its contribution to ``dst``'s input at step ``t`` is
    ``shift(sum_j M[i, j] z_src[t - delay, j], weight_exp)``.
    """

    name: str
    src: str
    dst: str
    kind: Kind
    weight: Any
    weight_exp: int = 0
    stride: Any = (1, 1)
    padding: Any = (0, 0)
    dilation: Any = (1, 1)
    groups: int = 1
    delay: int = 1
    float_weight: Any = None

    def __post_init__(self) -> None:
        where = f"synapse {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ConversionError(f"synapse name must be a non-empty string, got {self.name!r}")
        if self.kind not in ("dense", "conv"):
            raise ConversionError(f"{where}: kind must be 'dense' or 'conv', got {self.kind!r}")
        self.weight = _as_int_array(f"{where}: weight", self.weight)
        _check_range(f"{where}: weight", self.weight, WEIGHT_RANGE)
        if np.any(self.weight % WEIGHT_MANT_STEP):
            odd = int(self.weight[self.weight % WEIGHT_MANT_STEP != 0].reshape(-1)[0])
            raise QuantizationError(
                f"{where}: weight = {odd} is odd; Loihi's 8-bit mixed-sign weights are even "
                f"integers in {WEIGHT_RANGE[0]}..{WEIGHT_RANGE[1]} (use weight_exp to scale)"
            )
        self.weight_exp = _int_field(f"{where}: weight_exp", self.weight_exp, WEIGHT_EXP_RANGE)
        self.delay = _int_field(f"{where}: delay", self.delay, DELAY_RANGE)
        if self.kind == "dense":
            if self.weight.ndim != 2:
                raise ConversionError(
                    f"{where}: dense weight must be 2-D [N_dst, N_src], got {self.weight.shape}"
                )
        else:
            if self.weight.ndim != 4:
                raise ConversionError(
                    f"{where}: conv weight must be 4-D [C_out, C_in/groups, kH, kW], got {self.weight.shape}"
                )
            self.stride = int_pair(
                self.stride, f"{where}: stride", minimum=1, error=ConversionError
            )
            self.padding = int_pair(
                self.padding, f"{where}: padding", minimum=0, error=ConversionError
            )
            self.dilation = int_pair(
                self.dilation, f"{where}: dilation", minimum=1, error=ConversionError
            )
            self.groups = int(self.groups)
            if self.groups < 1 or self.weight.shape[0] % self.groups:
                raise ConversionError(
                    f"{where}: groups={self.groups} must be >= 1 and divide C_out={self.weight.shape[0]}"
                )
        if self.float_weight is not None:
            self.float_weight = np.asarray(self.float_weight, dtype=np.float64)
            if self.float_weight.shape != self.weight.shape:
                raise ConversionError(
                    f"{where}: float_weight shape {self.float_weight.shape} differs from weight {self.weight.shape}"
                )

    @property
    def effective_weight(self) -> np.ndarray:
        """``M * 2**weight_exp`` as floats (the weight in a_in units)."""
        return self.weight.astype(np.float64) * 2.0**self.weight_exp

    def float_weights(self) -> np.ndarray:
        """Weights for Lava's ``floating_pt`` models (``float_weight`` or the effective weight)."""
        return self.float_weight if self.float_weight is not None else self.effective_weight

    @property
    def kernel(self) -> tuple[int, int]:
        return (int(self.weight.shape[2]), int(self.weight.shape[3]))

    def dense_mantissas(self, src_shape: Sequence[int]) -> np.ndarray:
        """The ``[N_dst, N_src]`` mantissa matrix of this synapse (a conv unrolled; exact).

        Column ``i`` is the convolution of the ``i``-th input basis vector; equivalently,
        row ``j`` is the transposed convolution of the ``j``-th output basis vector. The
        smaller side is enumerated, so the work and memory stay ``O(N_dst * N_src)``
        (an SE squeeze over 128 x 16 x 16 inputs into 16 outputs enumerates 16 outputs,
        not a 32,768 x 32,768 identity). Float64 sums of integers: exact.
        """
        if self.kind == "dense":
            return self.weight
        import torch
        import torch.nn.functional as F

        src_shape = tuple(int(d) for d in src_shape)
        dst_shape = conv_output_shape(
            src_shape, self.weight.shape[0], self.weight.shape[2:], self.stride, self.padding,
            self.dilation,
        )  # fmt: skip
        n_src, n_dst = int(np.prod(src_shape)), int(np.prod(dst_shape))
        weight = torch.as_tensor(self.weight, dtype=torch.float64)
        geometry = {"stride": self.stride, "padding": self.padding, "dilation": self.dilation}
        if n_dst < n_src:
            basis = torch.eye(n_dst, dtype=torch.float64).reshape(n_dst, *dst_shape)
            # output_padding restores the input size lost to the stride's floor division
            extra = [
                src_shape[1 + i]
                - ((dst_shape[1 + i] - 1) * self.stride[i] - 2 * self.padding[i]
                   + self.dilation[i] * (self.weight.shape[2 + i] - 1) + 1)
                for i in range(2)
            ]  # fmt: skip
            rows = F.conv_transpose2d(
                basis, weight, output_padding=tuple(extra), groups=self.groups, **geometry
            )
            matrix = rows.reshape(n_dst, n_src)
        else:
            basis = torch.eye(n_src, dtype=torch.float64).reshape(n_src, *src_shape)
            cols = F.conv2d(basis, weight, groups=self.groups, **geometry)
            matrix = cols.reshape(n_src, n_dst).T
        return np.rint(matrix.numpy()).astype(np.int64)


# ----------------------------------------------------------------------------- encoder


@dataclass
class HostEncoder:
    """The first convolution, evaluated in float64 on the host ("direct encoding").

    For an image ``x`` (``input_shape = (C, H, W)``) the input group's bias mantissa is
    ``clip(round(scale * (conv(x, weight) + bias)), -4096, 4095)`` (the 13-bit mantissa) (round half to even),
    constant over time; ``float_scale`` maps the conv output to a_in units for
    ``floating_pt`` runs. It is computed on the CPU in float64 so that every target
    sees identical biases.
    """

    weight: Any
    bias: Any
    input_shape: tuple[int, int, int]
    scale: float
    float_scale: float
    stride: Any = (1, 1)
    padding: Any = (0, 0)
    dilation: Any = (1, 1)
    groups: int = 1

    def __post_init__(self) -> None:
        self.weight = np.asarray(self.weight, dtype=np.float64)
        if self.weight.ndim != 4:
            raise ConversionError(f"encoder weight must be 4-D, got {self.weight.shape}")
        self.bias = np.broadcast_to(
            np.asarray(0.0 if self.bias is None else self.bias, dtype=np.float64),
            (self.weight.shape[0],),
        ).copy()
        self.input_shape = tuple(int(s) for s in self.input_shape)  # type: ignore[assignment]
        if len(self.input_shape) != 3:
            raise ConversionError(f"encoder input_shape must be (C, H, W), got {self.input_shape}")
        self.stride = int_pair(self.stride, "encoder stride", minimum=1, error=ConversionError)
        self.padding = int_pair(self.padding, "encoder padding", minimum=0, error=ConversionError)
        self.dilation = int_pair(
            self.dilation, "encoder dilation", minimum=1, error=ConversionError
        )
        self.groups = int(self.groups)
        for what, value in (("scale", self.scale), ("float_scale", self.float_scale)):
            if not (math.isfinite(value) and value > 0):
                raise QuantizationError(
                    f"encoder {what} must be a positive finite number, got {value!r}"
                )
        if self.input_shape[0] != self.weight.shape[1] * self.groups:
            raise ConversionError(
                f"encoder weight {self.weight.shape} (groups={self.groups}) does not take "
                f"{self.input_shape[0]} input channels"
            )

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return conv_output_shape(
            self.input_shape,
            self.weight.shape[0],
            self.weight.shape[2:],
            self.stride,
            self.padding,
            self.dilation,
        )

    def current(self, images: Any) -> np.ndarray:
        """``conv(x) + bias`` in float64 for images ``[B, C, H, W]`` (or one ``[C, H, W]``)."""
        import torch

        x = torch.as_tensor(np.asarray(images), dtype=torch.float64)
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ConversionError(
                f"images must be [B, {', '.join(map(str, self.input_shape))}], got {tuple(x.shape)}"
            )
        y = torch.nn.functional.conv2d(
            x,
            torch.as_tensor(self.weight),
            torch.as_tensor(self.bias),
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
        )
        return y.numpy()

    def encode(self, images: Any) -> np.ndarray:
        """Bias mantissas ``[B, C, H, W]`` (int64) of the input group for ``images``."""
        mant = np.round(self.current(images) * self.scale)
        return np.clip(mant, *BIAS_MANT_RANGE).astype(np.int64)

    def encode_float(self, images: Any) -> np.ndarray:
        """Float biases ``[B, C, H, W]`` (a_in units) for ``floating_pt`` runs."""
        return self.current(images) * self.float_scale


# ----------------------------------------------------------------------------- network


@dataclass
class LayerReport:
    """Quantisation summary of one synapse layer or neuron group."""

    name: str
    kind: str
    scale: float
    weight_exp: int | None = None
    clipped_fraction: float = 0.0
    max_abs_error: float = 0.0
    note: str = ""

    def __str__(self) -> str:
        exp = "" if self.weight_exp is None else f" weight_exp={self.weight_exp:+d}"
        note = f" ({self.note})" if self.note else ""
        return (
            f"{self.kind:7s} {self.name}: scale={self.scale:.6g}{exp} "
            f"clipped={self.clipped_fraction:.2%} max_abs_error={self.max_abs_error:.3g}{note}"
        )


@dataclass
class LoihiNetwork:
    """Neuron groups, synapses, the input group (driven by bias) and the output group.

    ``output`` names the group whose spikes are the network's output spikes; a group with
    ``readout="voltage"`` (at most one) gives class scores. ``metadata`` holds
    provenance (dt, source file, ...); ``report`` the quantisation report, if any.
    """

    groups: list[NeuronGroup]
    synapses: list[Synapse]
    input: str
    output: str
    encoder: HostEncoder | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    report: list[LayerReport] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.groups = list(self.groups)
        self.synapses = list(self.synapses)
        self._by_name: dict[str, NeuronGroup] = {}
        for group in self.groups:
            if not isinstance(group, NeuronGroup):
                raise ConversionError(
                    f"groups must be NeuronGroup objects, got {type(group).__name__}"
                )
            if group.name in self._by_name:
                raise ConversionError(f"duplicate neuron group name {group.name!r}")
            self._by_name[group.name] = group
        names = sorted(self._by_name)
        seen: set[str] = set()
        for syn in self.synapses:
            if not isinstance(syn, Synapse):
                raise ConversionError(f"synapses must be Synapse objects, got {type(syn).__name__}")
            if syn.name in seen:
                raise ConversionError(f"duplicate synapse name {syn.name!r}")
            seen.add(syn.name)
            for end in (syn.src, syn.dst):
                if end not in self._by_name:
                    raise ConversionError(
                        f"synapse {syn.name!r} refers to unknown group {end!r}; groups: {', '.join(names)}"
                    )
            self._check_shapes(syn)
        for role, name in (("input", self.input), ("output", self.output)):
            if name not in self._by_name:
                raise ConversionError(
                    f"{role} group {name!r} is not a group; groups: {', '.join(names)}"
                )
        into_input = [s.name for s in self.synapses if s.dst == self.input]
        if into_input:
            raise ConversionError(
                f"the input group {self.input!r} is driven by its bias and cannot receive "
                f"synapses (found {', '.join(into_input)})"
            )
        if len([g for g in self.groups if g.readout == "voltage"]) > 1:
            raise ConversionError("at most one group can have readout='voltage'")
        if self.encoder is not None and self.encoder.output_shape != self.group(self.input).shape:
            raise ConversionError(
                f"encoder output shape {self.encoder.output_shape} differs from the input group "
                f"shape {self.group(self.input).shape}"
            )

    def _check_shapes(self, syn: Synapse) -> None:
        src, dst = self._by_name[syn.src], self._by_name[syn.dst]
        where = f"synapse {syn.name!r} ({syn.src} -> {syn.dst})"
        if syn.kind == "dense":
            if syn.weight.shape != (dst.size, src.size):
                raise ConversionError(
                    f"{where}: dense weight shape {syn.weight.shape} must be (N_dst, N_src) = "
                    f"({dst.size}, {src.size})"
                )
            return
        if len(src.shape) != 3 or len(dst.shape) != 3:
            raise ConversionError(f"{where}: a conv synapse needs (C, H, W) groups at both ends")
        if src.shape[0] != syn.weight.shape[1] * syn.groups:
            raise ConversionError(
                f"{where}: weight {syn.weight.shape} with groups={syn.groups} expects "
                f"{syn.weight.shape[1] * syn.groups} input channels, source has {src.shape[0]}"
            )
        out = conv_output_shape(
            src.shape, syn.weight.shape[0], syn.kernel, syn.stride, syn.padding, syn.dilation
        )
        if out != dst.shape:
            raise ConversionError(
                f"{where}: convolution output shape {out} differs from the target group {dst.shape}"
            )

    # ------------------------------------------------------------------ queries

    def group(self, name: str) -> NeuronGroup:
        try:
            return self._by_name[name]
        except KeyError:
            raise ConversionError(
                f"no group {name!r}; groups: {', '.join(sorted(self._by_name))}"
            ) from None

    def incoming(self, name: str) -> list[Synapse]:
        return [s for s in self.synapses if s.dst == name]

    def outgoing(self, name: str) -> list[Synapse]:
        return [s for s in self.synapses if s.src == name]

    @property
    def readout_group(self) -> NeuronGroup | None:
        """The voltage readout group, if any."""
        for group in self.groups:
            if group.readout == "voltage":
                return group
        return None

    def topological_order(self) -> list[str]:
        """Group names so that every synapse goes forward; ConversionError on a cycle."""
        indeg = {g.name: 0 for g in self.groups}
        for syn in self.synapses:
            indeg[syn.dst] += 1
        ready = [g.name for g in self.groups if indeg[g.name] == 0]
        order: list[str] = []
        while ready:
            name = ready.pop(0)
            order.append(name)
            for syn in self.outgoing(name):
                indeg[syn.dst] -= 1
                if indeg[syn.dst] == 0:
                    ready.append(syn.dst)
        if len(order) != len(self.groups):
            cyclic = sorted(n for n, d in indeg.items() if d > 0)
            raise ConversionError(f"the network has a cycle through groups {', '.join(cyclic)}")
        return order

    def recurrent_synapses(self) -> list[Synapse]:
        """The self-connections (``src == dst``: a population's spikes fed back into
        itself, one step later), which the depths of the groups do not depend on."""
        return [s for s in self.synapses if s.src == s.dst]

    def depths(self) -> dict[str, int]:
        """Synaptic depth of each group: the step at which its latest input path first
        delivers (longest path of delays from the bias-driven groups). Self-connections
        (:meth:`recurrent_synapses`) are ignored; ConversionError for any other cycle."""
        depth = {name: 0 for name in self._by_name}
        for name in self._order_ignoring_self_loops():
            for syn in self.incoming(name):
                if syn.src != syn.dst:
                    depth[name] = max(depth[name], depth[syn.src] + syn.delay)
        return depth

    def _order_ignoring_self_loops(self) -> list[str]:
        if not self.recurrent_synapses():
            return self.topological_order()
        forward = [s for s in self.synapses if s.src != s.dst]
        return LoihiNetwork(
            self.groups, forward, self.input, self.output, None, {}, []
        ).topological_order()

    def is_chain(self) -> bool:
        """True for input -> g1 -> g2 -> ... with exactly one synapse into each group."""
        return self.chain_order() is not None

    def chain_order(self) -> list[str] | None:
        """Groups in chain order, or None if the network is not a chain."""
        order = [self.input]
        used = 0
        while True:
            out = self.outgoing(order[-1])
            if not out:
                break
            if len(out) != 1 or len(self.incoming(out[0].dst)) != 1 or out[0].dst in order:
                return None
            order.append(out[0].dst)
            used += 1
        if used != len(self.synapses) or len(order) != len(self.groups):
            return None
        return order

    @property
    def num_neurons(self) -> int:
        return sum(g.size for g in self.groups)

    def summary(self) -> str:
        """One line per group and synapse."""
        try:
            depth: dict[str, int] = self.depths()
        except ConversionError:
            depth = {}
        lines = [
            f"LoihiNetwork: {len(self.groups)} groups, {len(self.synapses)} synapses, input={self.input!r}, output={self.output!r}"
        ]
        for g in self.groups:
            lines.append(
                f"  group {g.name}: shape={g.shape} du={g.du} dv={g.dv} vth={g.vth} bias_exp={g.bias_exp} "
                f"bias_start={g.bias_start_step} depth={depth.get(g.name, '?')} readout={g.readout}"
            )
        for s in self.synapses:
            extra = (
                f" stride={s.stride} pad={s.padding} groups={s.groups}" if s.kind == "conv" else ""
            )
            lines.append(
                f"  synapse {s.name}: {s.src} -> {s.dst} {s.kind} {tuple(s.weight.shape)} "
                f"exp={s.weight_exp:+d} delay={s.delay}{extra}"
            )
        return "\n".join(lines)


def flat_index_perm_torch_to_lava(shape: Iterable[int]) -> np.ndarray:
    """``perm`` with ``lava_flat = torch_flat[perm]``: Lava stores (C, H, W) groups as
    (W, H, C) and flattens that in C order."""
    shape = tuple(shape)
    idx = np.arange(int(np.prod(shape))).reshape(shape)
    return idx.transpose(tuple(range(len(shape)))[::-1]).reshape(-1)


def to_lava_layout(array: np.ndarray, ndim: int) -> np.ndarray:
    """Reverse the last ``ndim`` axes of a torch-layout array (``(C, H, W) -> (W, H, C)``)."""
    lead = array.ndim - ndim
    return np.transpose(array, tuple(range(lead)) + tuple(range(array.ndim - 1, lead - 1, -1)))
