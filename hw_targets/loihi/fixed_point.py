r"""Bit-exact fixed-point primitives of lava-nc 0.10.0, as pure torch functions.

Each function reproduces one piece of Lava's Python process models, including their
integer quirks (checked in ``tests/hw_targets``):

* ``PyLifModelBitAcc`` (:func:`lif_step`): with ``decay(x, k) = sign(x k)(|x k| >> 12)``

  .. math::
      u &\leftarrow \mathrm{wrap}\bigl(\mathrm{int32}(\mathrm{decay}(u, 4096 - du - 1)
            + \mathrm{int32}(a_{in} \ll 6))\bigr) \\
      v &\leftarrow \mathrm{clip}(\mathrm{decay}(v, 4096 - dv) + u + b,\; -2^{23}+1,\; 2^{23}-1)
            \\
      z &= v > (v_{th} \ll 6), \qquad v \leftarrow 0 \text{ where } z

  where ``wrap`` maps values ``> 2^23`` to ``x - 2^24`` and ``<= -2^23`` to
  ``x + 2^24`` once (Lava's two ``np.where``; ``u = 2^23`` itself is kept), the sums
  are int32 (wrapping) as in numpy, and ``b = bias_mant << bias_exp`` (not shifted by 6).
* ``PyDenseModelBitAcc`` (:func:`shift`, :func:`wrap_signed`): ``a = shift(W z, weight_exp)``
  with a floor right shift for negative exponents, sent one step later through an int32
  port (the emulator computes ``W z``, see :mod:`hw_targets.loihi.emulator`).
* ``PyConvModelFixed``: a true convolution (we use the equivalent correlation with
  torch-layout weights), wrapped to signed 24 bits (:func:`output_wrap_bits`). Lava's Python Conv
  model ignores ``weight_exp``; the lava-sim target folds the exponent into the
  weights (exact, see :func:`conv_weights_for_lava`).

:func:`lif_step` (one step, the step-major reference) keeps its state in int64 holding
int32 values (the products of the decay stay exact; the decay is the shift form of
:func:`trunc_shift`, no division). :func:`current_sequence` and :func:`lif_window` run
a group over a window of steps at once (the layer-major schedule) in the narrowest
exact format: float32 where every value is an integer below ``2**24``, else int32 or
int64 (:class:`Decay`); tests check them against :func:`lif_step` and Lava. The limits,
widths and shifts are those of :mod:`hw_targets.loihi.spec`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hw_targets.loihi.spec import (
    A_IN_UNIT,
    ACT_SHIFT,
    CONV_OUT_BITS,
    DECAY_SHIFT,
    DECAY_UNITY,
    DENSE_OUT_BITS,
    DU_OFFSET,
    DV_OFFSET,
    LAVA_INT_BITS,
    STATE_BITS,
    UV_LIMIT,
    V_MAX,
    VTH_SHIFT,
)

#: float32 holds every integer of magnitude up to 2**(mantissa bits + 1) exactly.
FLOAT32_EXACT_LIMIT = 2 ** (np.finfo(np.float32).nmant + 1)


def wrap_signed(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's complement wrap of integers to ``bits`` bits (numpy int overflow behaviour)."""
    half = 1 << (bits - 1)
    return torch.remainder(x + half, 1 << bits) - half


def trunc_shift(x: torch.Tensor, shift_bits: int) -> torch.Tensor:
    """``trunc(x / 2**shift_bits)`` (rounding toward zero) of an integer tensor, exactly.

    The shift-based form ``(x + ((x >> (w - 1)) & (2**s - 1))) >> s`` (``w`` the width of
    the dtype): ``x >> (w - 1)`` is -1 for negative ``x`` and 0 otherwise, so negative
    values get ``2**s - 1`` added before the floor shift, which turns it into a
    truncation. No division, no overflow for ``|x| < 2**(w - 1) - 2**s``.
    """
    if shift_bits == 0:
        return x
    width = torch.iinfo(x.dtype).bits
    return (x + ((x >> (width - 1)) & ((1 << shift_bits) - 1))) >> shift_bits


def decay(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``sign(x * factor) * (|x * factor| >> 12)``: multiply by ``factor / 4096`` rounding
    toward zero (Lava's decay of u and v); ``x`` is int64 holding 24-bit state.

    Equals ``trunc(x * factor / 4096)`` for ``factor >= 0``, computed with
    :func:`trunc_shift` (``|x * factor| < 2**36``: no int64 overflow).
    """
    factor = int(factor)
    if factor == DECAY_UNITY:
        return x
    if factor == 0:
        return torch.zeros_like(x)
    return trunc_shift(x * factor, DECAY_SHIFT)


@dataclass(frozen=True)
class Decay:
    r"""The in-place decay ``x <- decay(x, factor)`` of a 24-bit state, in the narrowest
    exact integer dtype (:attr:`dtype`).

    With ``factor = k 2^m`` (``k`` odd), ``decay(x, factor) = trunc(x k / 2^{12 - m})``.
    ``|x| < 2^{23}`` (the state is clipped or wrapped to 24 bits), so ``x k`` fits int32
    whenever ``k < 2^{31 - 23}``: the state is then held in int32 and decayed by one
    multiplication (skipped for ``k = 1``) and one truncating division by a power of two
    (``torch.div(..., rounding_mode="trunc")``, exact on integers and a single pass over
    int32; the shift form of :func:`trunc_shift` takes four passes). Other factors use
    int64 and :func:`decay`.
    """

    factor: int

    @property
    def odd_part(self) -> int:
        """``k``: the factor without its trailing zero bits (0 for factor 0)."""
        f = int(self.factor)
        return f >> ((f & -f).bit_length() - 1) if f else 0

    @property
    def dtype(self) -> torch.dtype:
        """int32 when ``x * odd_part`` cannot overflow it, else int64."""
        return torch.int32 if self.odd_part < 1 << (LAVA_INT_BITS - STATE_BITS) else torch.int64

    def apply_(self, x: torch.Tensor) -> torch.Tensor:
        """Decay ``x`` in place (returns ``x``)."""
        factor = int(self.factor)
        if factor == DECAY_UNITY:
            return x
        if factor == 0:
            return x.zero_()
        if x.dtype == torch.int32:
            k = self.odd_part
            if k != 1:
                x.mul_(k)
            return torch.div(x, DECAY_UNITY // (factor // k), rounding_mode="trunc", out=x)
        return x.copy_(decay(x, factor))

    def bound(self, limit: int) -> int:
        """Largest ``|decay(x)|`` over ``|x| <= limit``."""
        return (int(limit) * int(self.factor)) >> DECAY_SHIFT


def shift(x: torch.Tensor, exp: int) -> torch.Tensor:
    """``x << exp`` for ``exp >= 0``, else the arithmetic (floor) shift ``x >> -exp``."""
    if exp == 0:
        return x
    return x << exp if exp > 0 else x >> (-exp)


def lif_step(
    u: torch.Tensor,
    v: torch.Tensor,
    a_in: torch.Tensor,
    bias: torch.Tensor | int,
    du: int,
    dv: int,
    vth: int,
    int32_safe: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One ``PyLifModelBitAcc`` step; returns ``(spikes (bool), u, v)`` (int64 tensors).

    ``bias`` is the effective bias ``bias_mant << bias_exp`` (0 before the group's
    ``bias_start_step``); ``a_in`` the int32 sum of the synaptic inputs.
    ``int32_safe``: the caller guarantees ``|a_in| << 6`` plus the 24-bit state fits in
    int32, so the int32 wraps are no-ops and are skipped (pure speed-up).
    """
    act = a_in << ACT_SHIFT
    cur = decay(u, DECAY_UNITY - (du + DU_OFFSET)) + (
        act if int32_safe else wrap_signed(act, LAVA_INT_BITS)
    )
    if not int32_safe:
        cur = wrap_signed(cur, LAVA_INT_BITS)
    cur = torch.where(cur > UV_LIMIT, cur - 2 * UV_LIMIT, cur)
    cur = torch.where(cur <= -UV_LIMIT, cur + 2 * UV_LIMIT, cur)
    volt = decay(v, DECAY_UNITY - (dv + DV_OFFSET)) + cur + bias
    if not int32_safe:
        volt = wrap_signed(volt, LAVA_INT_BITS)
    volt = volt.clamp_(-V_MAX, V_MAX)
    spikes = volt > (int(vth) << VTH_SHIFT)
    volt = volt.masked_fill_(spikes, 0)
    return spikes, cur, volt


def wrap_state(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Lava's one-time wrap of ``u`` into the 24-bit range: values ``> 2^23`` lose
    ``2^24``, values ``<= -2^23`` gain it (the two ``np.where`` of ``PyLifModelBitAcc``;
    a value above ``2^23`` never ends at or below ``-2^23``, so both test the input).
    Returns the wrapped tensor (``x`` itself when nothing is out of range: one min/max
    pass) and a bound of its absolute values."""
    low, high = (int(v) for v in torch.aminmax(x))
    if high <= UV_LIMIT and low > -UV_LIMIT:
        return x, max(-low, high)
    x = torch.where(x > UV_LIMIT, x - 2 * UV_LIMIT, x)
    return torch.where(x <= -UV_LIMIT, x + 2 * UV_LIMIT, x), UV_LIMIT


def current_sequence(a_in: torch.Tensor, du: int, int32_safe: bool) -> tuple[torch.Tensor, int]:
    r"""The current ``u[t]`` of ``PyLifModelBitAcc`` for the inputs ``a_in[t]`` of ``S``
    consecutive steps (``[S, B, N]``), starting from ``u = 0``, and a bound of ``|u|``.

    .. math::
        u[t] = \mathrm{wrap}_{24}\bigl(\mathrm{int32}(\mathrm{decay}(u[t-1], 4096 - du - 1)
               + \mathrm{int32}(a_{in}[t] \ll 6))\bigr)

    exactly as :func:`lif_step`. For ``du = 4095`` (decay factor 0, our quantiser's
    choice) ``u[t]`` depends on ``a_in[t]`` alone and all steps are computed at once;
    other ``du`` loop over the steps. ``int32_safe``: ``|a_in| << 6`` plus the 24-bit
    state provably fits int32 (then ``a_in`` may be int32, the wraps are no-ops, and
    ``a_in`` is used up: shifted in place). ``a_in`` may also be float32 holding integers
    with ``|a_in| << 6 < 2^24`` (then every value below is an exactly represented
    integer: ``<< 6`` is a multiplication by 64). Returns ``a_in``'s dtype when
    ``int32_safe`` and the decay factor is 0, else int64.
    """
    factor = DECAY_UNITY - (int(du) + DU_OFFSET)
    if a_in.is_floating_point():
        if not int32_safe or factor != 0:
            a_in = a_in.to(torch.int64)
        else:
            return wrap_state(a_in.mul_(A_IN_UNIT))
    if int32_safe:
        act = a_in.bitwise_left_shift_(ACT_SHIFT)
    else:
        act = wrap_signed(
            wrap_signed(a_in.to(torch.int64), LAVA_INT_BITS) << ACT_SHIFT, LAVA_INT_BITS
        )
    if factor == 0:  # cur = wrap32(0 + act) = act: no recurrence
        return wrap_state(act)
    act = act.to(torch.int64)
    out = torch.empty_like(act)
    u = torch.zeros_like(act[0])
    for t in range(act.shape[0]):
        cur = decay(u, factor) + act[t]
        if not int32_safe:
            cur = wrap_signed(cur, LAVA_INT_BITS)
        cur = torch.where(cur > UV_LIMIT, cur - 2 * UV_LIMIT, cur)
        u = torch.where(cur <= -UV_LIMIT, cur + 2 * UV_LIMIT, cur)
        out[t] = u
    return out, UV_LIMIT


def lif_window(
    drive: torch.Tensor | None,
    bias: torch.Tensor | None,
    bias_from: int,
    shape: tuple[int, int],
    steps: int,
    dv: int,
    vth: int,
    record_voltage: bool = False,
    drive_bound: int | None = None,
    bias_bound: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""The voltage recurrence of ``PyLifModelBitAcc`` over ``steps`` consecutive steps
    of a ``[B, N] = shape`` population starting from ``v = 0``, given the current
    ``u[t]`` of every step (``drive``, ``[S, B, N]`` from :func:`current_sequence`, used
    up: it may be modified in place; None: no synaptic input; ``drive_bound``: a bound
    of ``|drive|`` if known) and the effective bias ``b`` (broadcastable to ``[B, N]``;
    None: none; ``bias_bound``: ``max|b|`` if known) added from step ``bias_from`` of the
    window on:

    .. math::
        v[t] = \mathrm{clip}_{\pm(2^{23}-1)}\bigl(\mathrm{decay}(v[t-1], 4096 - dv) + u[t]
               + b[t]\bigr), \quad z[t] = [v[t] > v_{th} \ll 6], \quad v[t] \leftarrow 0
               \text{ where } z[t]

    bit for bit as :func:`lif_step` (whose int32 wrap of ``v`` is a no-op: ``|decay(v)|
    < 2^{23}``, ``|u| <= 2^{23}``, ``|b| < 2^{19}``). The clip is skipped when
    ``max|decay(v)| + max|u + b| <= 2^{23} - 1`` proves it a no-op (by induction over the
    steps, as ``|v| <= 2^{23} - 1`` after every step).

    State dtype: for decay factors ``0`` and ``2^m`` (every ``dv`` of the form
    ``4096 - 2^m``, and ``dv = 4096``) float32, which holds every integer up to ``2^{24}``:
    ``decay`` is a division by ``2^{12 - m}`` and a truncation (both exact), the
    sum ``decay(v) + u + b`` is exact whenever ``|.| <= 2^{24}`` and otherwise far beyond
    the clip, which a monotone rounding cannot cross, and the reset ``v - v z`` is exact.
    Other factors use :class:`Decay`'s integer state. Returns the spikes ``[S, B, N]`` as
    float32 0/1 and, with ``record_voltage``, ``v`` after the reset of every step (int32).
    """
    rule = Decay(DECAY_UNITY - (int(dv) + DV_OFFSET))
    in_float = rule.odd_part <= 1
    dtype = torch.float32 if in_float else rule.dtype
    device = drive.device if drive is not None else bias.device if bias is not None else None
    bias_max = int(bias.abs().max()) if bias is not None and bias_bound is None else bias_bound
    if bias is None or bias_from >= steps or not bias_max:
        bias, bias_max = None, 0
    if drive is None and bias is None:  # nothing ever drives v: it stays 0, no spikes
        spikes = torch.zeros((steps, *shape), dtype=torch.float32, device=device)
        return spikes, torch.zeros_like(spikes, dtype=torch.int32) if record_voltage else None
    spikes = torch.empty((steps, *shape), dtype=torch.float32, device=device)  # all written
    volts = (
        torch.empty((steps, *shape), dtype=torch.int32, device=device) if record_voltage else None
    )
    if drive is not None:
        if bias is not None:
            drive[bias_from:] += bias.to(drive.dtype)
        if drive_bound is None:
            low, high = torch.aminmax(drive)
            drive_max = max(-int(low), int(high))
        else:
            drive_max = drive_bound + bias_max
        drive = drive.to(dtype)
    else:
        drive_max = bias_max
        bias = bias.to(dtype)  # type: ignore[union-attr]
    clip = rule.bound(V_MAX) + drive_max > V_MAX
    threshold = int(vth) << VTH_SHIFT
    factor = int(rule.factor)
    v = torch.zeros(shape, dtype=dtype, device=device)
    keep = None if in_float else torch.empty(shape, dtype=torch.bool, device=device)
    divisor = DECAY_UNITY // factor if factor else 0  # 2^(12 - m) for factor 2^m
    for t in range(steps):
        if t and factor != DECAY_UNITY:
            if factor == 0:
                v.zero_()
            elif in_float:
                # (one pass; a multiplication and trunc_ take two, and trunc_ is slow)
                torch.div(v, divisor, rounding_mode="trunc", out=v)
            else:
                rule.apply_(v)
        if drive is not None:
            v += drive[t]
        elif t >= bias_from:
            v += bias  # type: ignore[operator]
        if clip:
            v.clamp_(-V_MAX, V_MAX)
        if keep is None:
            torch.gt(v, threshold, out=spikes[t])
            v.addcmul_(v, spikes[t], value=-1)  # v - v z: exactly 0 where z = 1
        else:
            torch.le(v, threshold, out=keep)
            v.mul_(keep)
            torch.logical_not(keep, out=keep)
            spikes[t] = keep
        if volts is not None:
            volts[t] = v
    return spikes, volts


def input_bound(weight: np.ndarray, weight_exp: int) -> int:
    """Upper bound of ``|shift(sum_j M[i, j] z_j, exp)|`` over all binary ``z``."""
    w = np.abs(weight.astype(np.int64))
    total = int(w.reshape(w.shape[0], -1).sum(axis=1).max()) if w.size else 0
    return total << weight_exp if weight_exp >= 0 else (total >> -weight_exp) + 1


def effective_bias(bias_mant: np.ndarray | torch.Tensor, bias_exp: int) -> torch.Tensor:
    """``bias_mant << bias_exp`` as int64 (Lava's ``scale_bias``)."""
    t = torch.as_tensor(
        np.asarray(bias_mant) if not isinstance(bias_mant, torch.Tensor) else bias_mant
    )
    return t.to(torch.int64) << int(bias_exp)


def exact_float_dtype(weight: np.ndarray, device: torch.device) -> torch.dtype:
    """A float dtype in which ``weight @ spikes`` is exact.

    float32 is exact when every partial sum of integers stays below 2**24 (bounded by
    the largest per-output sum of ``|weight|``); float64 otherwise and always on CUDA,
    where cuDNN may pick Winograd/FFT algorithms or TF32 that are inexact in float32.
    """
    if device.type != "cpu":
        return torch.float64
    w = np.abs(weight.astype(np.float64))
    bound = w.reshape(w.shape[0], -1).sum(axis=1).max() if w.size else 0.0
    return torch.float32 if bound < FLOAT32_EXACT_LIMIT else torch.float64


def conv_weights_for_lava(weight: np.ndarray, weight_exp: int) -> np.ndarray | None:
    """Integer weights for Lava's Conv process (which ignores ``weight_exp``) that give
    exactly ``shift(conv(M), weight_exp)``, or None if no such integer weights exist.

    ``exp >= 0``: ``M << exp`` (``sum(M << e) = sum(M) << e``). ``exp < 0``: ``M >> -exp``
    when every ``M`` is a multiple of ``2**-exp`` (then the floor shift of the sum is
    exact). Otherwise the target must realise the layer as a Dense (floor shift of the
    sum), see :mod:`hw_targets.loihi.lava`.
    """
    w = weight.astype(np.int64)
    if weight_exp >= 0:
        return w << weight_exp
    k = -weight_exp
    if np.all(w % (1 << k) == 0):
        return w >> k
    return None


def conv_realisation(weight: np.ndarray, weight_exp: int) -> str:
    """How lava-sim realises a conv synapse: ``"conv"`` (Lava Conv, 24-bit wrap) or
    ``"dense"`` (unrolled Lava Dense, int32 wrap); the emulator mirrors the wrap."""
    return "conv" if conv_weights_for_lava(weight, weight_exp) is not None else "dense"


def output_wrap_bits(kind: str, weight: np.ndarray, weight_exp: int) -> int:
    """Bits to which the Lava process realising a synapse wraps its output sums:
    :data:`~hw_targets.loihi.spec.DENSE_OUT_BITS` for a Dense (also an unrolled conv),
    :data:`~hw_targets.loihi.spec.CONV_OUT_BITS` for a Conv."""
    if kind == "dense" or conv_realisation(weight, weight_exp) == "dense":
        return DENSE_OUT_BITS
    return CONV_OUT_BITS
