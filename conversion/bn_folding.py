r"""Folding BatchNorm into the preceding convolution or affine layer (exact in eval mode).

In eval mode BatchNorm is a per-channel affine map of its input :math:`u`:

.. math::
    \mathrm{BN}(u)_c = \gamma_c \frac{u_c - \mu_c}{\sqrt{\sigma^2_c + \epsilon}} + \beta_c
                     = s_c\, u_c + (\beta_c - s_c \mu_c), \qquad
    s_c = \frac{\gamma_c}{\sqrt{\sigma^2_c + \epsilon}}

so for :math:`u = W * x + b` the pair equals one layer with weights :math:`s_c W_c` and
bias :math:`s_c (b_c - \mu_c) + \beta_c` (:math:`c` = output channel). The folded
parameters are computed in float64 and rounded once to float32; the result matches the
unfolded pair to float32 rounding (not bit-for-bit: the products are rounded in a
different order).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from neurall_neuro.errors import UnsupportedModuleError


def batchnorm_affine(
    bn: nn.modules.batchnorm._BatchNorm, path: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """``(scale, shift)`` per channel (float64) of a BatchNorm in eval mode."""
    if bn.running_mean is None or bn.running_var is None:
        raise UnsupportedModuleError(
            type(bn),
            path,
            reason="track_running_stats=False; only eval-mode BatchNorm folds into a NIR graph",
            problem="has no running statistics",
        )
    mean = bn.running_mean.detach().cpu().double().numpy()
    var = bn.running_var.detach().cpu().double().numpy()
    gamma = (
        bn.weight.detach().cpu().double().numpy() if bn.weight is not None else np.ones_like(mean)
    )
    beta = bn.bias.detach().cpu().double().numpy() if bn.bias is not None else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.eps)
    return scale, beta - scale * mean


def fold_batchnorm(
    weight: np.ndarray, bias: np.ndarray, bn: nn.modules.batchnorm._BatchNorm, path: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """Fold ``bn`` into a layer with ``weight`` (output channels first) and ``bias``.

    Returns float32 ``(weight', bias')`` with ``weight'[c] = s_c weight[c]`` and
    ``bias'[c] = s_c bias[c] + shift_c`` (see the module docstring).
    """
    scale, shift = batchnorm_affine(bn, path)
    if weight.shape[0] != scale.shape[0]:
        raise UnsupportedModuleError(
            type(bn),
            path,
            problem=f"has {scale.shape[0]} channels but the preceding layer has "
            f"{weight.shape[0]} outputs",
        )
    broadcast = scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    folded_weight = weight.astype(np.float64) * broadcast
    folded_bias = bias.astype(np.float64) * scale + shift
    return folded_weight.astype(np.float32), folded_bias.astype(np.float32)
