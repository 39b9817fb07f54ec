r"""Pooling: window sizes (for counting pooling as its own layer) and foldability.

Counted as its own layer, a pooling output with :math:`n` valid inputs in its window costs

* average pool: :math:`n - 1` adds and 1 multiply when :math:`n > 1` (the scale by
  :math:`1/n`);
* sum pool: :math:`n - 1` adds;
* max pool: :math:`n - 1` comparisons.

Padded positions are not inputs (max pooling pads with :math:`-\infty`; an average pool
with ``count_include_pad`` adds zeros, which we do not count as adds).

Folding (the hardware view, :mod:`energy.fanout`): a non-overlapping average or sum pool
(kernel = stride, no padding, no divisor override) followed by a synaptic layer is one
synaptic layer on the un-pooled input, so the pool costs nothing and its input spikes
drive the folded layer. :func:`fold_kernel` says whether a pool qualifies.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from energy.fanout import Pair
from neurall_neuro.int_tuples import int_pair


@lru_cache(maxsize=256)
def pool_window_sizes(
    in_size: Pair,
    kernel: Pair,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    out_size: Pair,
) -> torch.Tensor:
    """Number of valid (non-padding) inputs in each pooling window, ``int64 [H_o, W_o]``.

    Exact for any stride, padding, dilation and ``ceil_mode`` (pass the actual output size).
    """
    height, width = in_size
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    out_h, out_w = out_size
    need_h = (out_h - 1) * sh + dh * (kh - 1) + 1
    need_w = (out_w - 1) * sw + dw * (kw - 1) + 1
    extra_h = max(0, need_h - (height + 2 * ph))
    extra_w = max(0, need_w - (width + 2 * pw))
    ones = torch.ones(1, 1, height, width, dtype=torch.float64)
    padded = F.pad(ones, (pw, pw + extra_w, ph, ph + extra_h))
    window = torch.ones(1, 1, kh, kw, dtype=torch.float64)
    counts = F.conv2d(padded, window, stride=(sh, sw), dilation=(dh, dw))
    return counts[0, 0, :out_h, :out_w].round().to(torch.int64)


def _adaptive_sizes(size: int, out: int) -> torch.Tensor:
    starts = [(i * size) // out for i in range(out)]
    ends = [-((-(i + 1) * size) // out) for i in range(out)]
    return torch.tensor([e - s for s, e in zip(starts, ends, strict=True)], dtype=torch.int64)


@lru_cache(maxsize=256)
def adaptive_window_sizes(in_size: Pair, out_size: Pair) -> torch.Tensor:
    """Window sizes ``int64 [H_o, W_o]`` of an adaptive pool (torch's start/end rule)."""
    rows = _adaptive_sizes(in_size[0], out_size[0])
    cols = _adaptive_sizes(in_size[1], out_size[1])
    return rows[:, None] * cols[None, :]


def module_window_sizes(module: nn.Module, in_size: Pair, out_size: Pair) -> torch.Tensor:
    """Window sizes of a torch pooling module (AvgPool2d, MaxPool2d or an adaptive pool)."""
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return adaptive_window_sizes(in_size, out_size)
    if isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)):
        kernel = int_pair(module.kernel_size, "kernel_size")
        stride = int_pair(
            module.stride if module.stride is not None else module.kernel_size, "stride"
        )
        padding = int_pair(module.padding, "padding")
        dilation = int_pair(getattr(module, "dilation", 1), "dilation")
        return pool_window_sizes(in_size, kernel, stride, padding, dilation, out_size)
    raise TypeError(f"not a pooling module: {type(module).__name__}")


def fold_kernel(module: nn.Module, in_size: Pair) -> Pair | None:
    """Kernel ``(k_h, k_w)`` if ``module`` is a non-overlapping average pool that folds
    exactly into the next synaptic layer, else ``None``."""
    if isinstance(module, nn.AvgPool2d):
        kernel = int_pair(module.kernel_size, "kernel_size")
        stride = int_pair(
            module.stride if module.stride is not None else module.kernel_size, "stride"
        )
        padding = int_pair(module.padding, "padding")
        if kernel != stride or padding != (0, 0) or module.divisor_override is not None:
            return None
        if module.ceil_mode and (in_size[0] % kernel[0] or in_size[1] % kernel[1]):
            return None  # a partial last window averages fewer inputs: not one folded kernel
        return kernel
    if isinstance(module, nn.AdaptiveAvgPool2d):
        size = module.output_size
        if isinstance(size, int):
            out = (size, size)
        else:
            out = (
                in_size[0] if size[0] is None else int(size[0]),
                in_size[1] if size[1] is None else int(size[1]),
            )
        if in_size[0] % out[0] or in_size[1] % out[1]:
            return None
        return (in_size[0] // out[0], in_size[1] // out[1])
    return None
