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
* ``PyDenseModelBitAcc`` (:func:`dense_output`): ``a = shift(W z, weight_exp)`` with a
  floor right shift for negative exponents, sent one step later through an int32 port.
* ``PyConvModelFixed`` (:func:`conv_output`): a true convolution (we use the equivalent
  correlation with torch-layout weights), wrapped to signed 24 bits. Lava's Python Conv
  model ignores ``weight_exp``; the lava-sim target folds the exponent into the
  weights (exact, see :func:`conv_weights_for_lava`).

State tensors are int64 holding int32 values (CUDA has no int32 matmul and int64
keeps the products of the decay exact).
"""

from __future__ import annotations

import numpy as np
import torch

#: 2**23: u and v are 24-bit signed.
UV_LIMIT = 1 << 23
#: Threshold and synaptic input are MSB-aligned by 6 bits.
ACT_SHIFT = 6
DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT


def wrap_signed(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's complement wrap of integers to ``bits`` bits (numpy int overflow behaviour)."""
    half = 1 << (bits - 1)
    return torch.remainder(x + half, 1 << bits) - half


def decay(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``sign(x * factor) * (|x * factor| >> 12)``: multiply by ``factor / 4096`` rounding
    toward zero (Lava's decay of u and v); ``x`` is int64."""
    factor = int(factor)
    if factor == DECAY_UNITY:
        return x
    if factor == 0:
        return torch.zeros_like(x)
    return torch.div(x * factor, DECAY_UNITY, rounding_mode="trunc")


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
    cur = decay(u, DECAY_UNITY - (du + 1)) + (act if int32_safe else wrap_signed(act, 32))
    if not int32_safe:
        cur = wrap_signed(cur, 32)
    cur = torch.where(cur > UV_LIMIT, cur - 2 * UV_LIMIT, cur)
    cur = torch.where(cur <= -UV_LIMIT, cur + 2 * UV_LIMIT, cur)
    volt = decay(v, DECAY_UNITY - dv) + cur + bias
    if not int32_safe:
        volt = wrap_signed(volt, 32)
    volt = volt.clamp_(-UV_LIMIT + 1, UV_LIMIT - 1)
    spikes = volt > (int(vth) << ACT_SHIFT)
    volt = volt.masked_fill_(spikes, 0)
    return spikes, cur, volt


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
    return torch.float32 if bound < 2**24 else torch.float64


def conv_weights_for_lava(weight: np.ndarray, weight_exp: int) -> np.ndarray | None:
    """Integer weights for Lava's Conv process (which ignores ``weight_exp``) that give
    exactly ``shift(conv(M), weight_exp)``, or None if no such integer weights exist.

    ``exp >= 0``: ``M << exp`` (``sum(M << e) = sum(M) << e``). ``exp < 0``: ``M >> -exp``
    when every ``M`` is a multiple of ``2**-exp`` (then the floor shift of the sum is
    exact). Otherwise the target must realise the layer as a Dense (floor shift of the
    sum), see ``hw_targets.lava_build``.
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
