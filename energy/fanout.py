r"""Exact fan-out maps: how many output neurons each input position drives.

The fan-out of input position :math:`i` of a linear layer :math:`y = W x` is the number
of output neurons it is structurally connected to,

.. math::
    F_i = \#\{\, o : W_{o,i} \text{ is a synapse} \,\}.

Every counted synaptic operation derives from it: a layer's dense operations are
:math:`\sum_i F_i` per frame, and the effective operations of an input with event counts
:math:`n_i` (non-zero values summed over frames) are :math:`\sum_i n_i F_i`.

Convolution
-----------
For a 2-D convolution the map is the transposed convolution of an all-ones output with an
all-ones kernel (the adjoint of "sum over the window"), which is exact at the borders and
for any stride, padding, dilation and group count:

.. math::
    F[c, h, w] = \frac{C_\text{out}}{G}\,
        \bigl(\mathrm{conv}^\top(\mathbf 1_{H_o \times W_o}, \mathbf 1_{k_h \times k_w})\bigr)[h, w]

(channel ``c`` reaches the ``C_out / G`` output channels of its group at every output
position whose window contains ``(h, w)``). The shortcut :math:`k^2 C_\text{out}/s^2`
overcounts at the borders. Padding is applied explicitly (so asymmetric ``'same'``
padding is exact too) and the padded border is cropped away.

Pooling folded into the next layer
----------------------------------
A non-overlapping average pool (kernel = stride = :math:`k`, no padding) followed by a
linear layer is one linear layer on the un-pooled input (for a convolution: kernel
:math:`k K`, stride :math:`k s`); input :math:`(h, w)` reaches exactly what pooled
position :math:`(\lfloor h/k \rfloor, \lfloor w/k \rfloor)` reaches:

.. math::
    F^\text{fold}[c, h, w] = F[c, \lfloor h/k_h \rfloor, \lfloor w/k_w \rfloor]
    \quad (0 \text{ for rows/columns the pool drops}).

Maps are computed once per layer shape (``functools.lru_cache``) and returned as
read-only-by-convention ``int64`` tensors; do not modify them in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from neurall_neuro.errors import ConfigError
from neurall_neuro.int_tuples import int_pair

Pair = tuple[int, int]
#: Padding as (top, bottom, left, right).
Padding4 = tuple[int, int, int, int]


@dataclass(frozen=True)
class ConvGeometry:
    """Shape parameters of a 2-D convolution (everything the fan-out depends on).

    ``padding`` is ``(top, bottom, left, right)``; build from torch or NIR values with
    :meth:`create`, which also resolves ``'same'`` and ``'valid'``.
    """

    in_channels: int
    out_channels: int
    kernel: Pair
    stride: Pair = (1, 1)
    padding: Padding4 = (0, 0, 0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1

    @classmethod
    def create(
        cls,
        in_channels: int,
        out_channels: int,
        kernel: int | tuple[int, ...],
        stride: int | tuple[int, ...] = 1,
        padding: int | tuple[int, ...] | str = 0,
        dilation: int | tuple[int, ...] = 1,
        groups: int = 1,
    ) -> ConvGeometry:
        """Normalise torch/NIR-style arguments (ints, pairs, ``'same'``, ``'valid'``)."""
        k = int_pair(kernel, "kernel")
        s = int_pair(stride, "stride")
        d = int_pair(dilation, "dilation")
        if isinstance(padding, str):
            if padding == "valid":
                pad: Padding4 = (0, 0, 0, 0)
            elif padding == "same":
                # torch: total = d (k - 1); the extra element (odd totals) goes at the end.
                th, tw = d[0] * (k[0] - 1), d[1] * (k[1] - 1)
                pad = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
            else:
                raise ConfigError(
                    f"padding {padding!r} is invalid; valid options: 'same', 'valid', int, pair"
                )
        else:
            ph, pw = int_pair(padding, "padding")
            pad = (ph, ph, pw, pw)
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ConfigError(
                f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}"
            )
        if min(*k, *s, *d) < 1 or min(pad) < 0:
            raise ConfigError(
                f"invalid convolution geometry kernel={k} stride={s} dilation={d} padding={pad}"
            )
        return cls(in_channels, out_channels, k, s, pad, d, groups)

    @classmethod
    def from_module(cls, conv: torch.nn.Conv2d) -> ConvGeometry:
        """Geometry of a ``torch.nn.Conv2d`` (zero padding modes only)."""
        if conv.padding_mode != "zeros":
            raise ConfigError(
                f"padding_mode={conv.padding_mode!r} is not supported by the fan-out counter; use 'zeros'"
            )
        return cls.create(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,  # type: ignore[arg-type]
            conv.dilation,
            conv.groups,
        )

    def output_size(self, height: int, width: int) -> Pair:
        """Output spatial size for an ``height x width`` input (torch's formula)."""
        top, bottom, left, right = self.padding
        out_h = (
            height + top + bottom - self.dilation[0] * (self.kernel[0] - 1) - 1
        ) // self.stride[0] + 1
        out_w = (width + left + right - self.dilation[1] * (self.kernel[1] - 1) - 1) // self.stride[
            1
        ] + 1
        if out_h < 1 or out_w < 1:
            raise ConfigError(
                f"input {height}x{width} is smaller than the convolution window {self}"
            )
        return out_h, out_w


@lru_cache(maxsize=256)
def _conv_spatial_fanout(geometry: ConvGeometry, height: int, width: int) -> torch.Tensor:
    """Number of output positions whose window contains each input position ``[H, W]``."""
    top, bottom, left, right = geometry.padding
    out_h, out_w = geometry.output_size(height, width)
    padded_h, padded_w = height + top + bottom, width + left + right
    kh, kw = geometry.kernel
    # Size a transposed convolution (no padding) produces, and the rows/cols it misses
    # (inputs past the last window): output_padding adds them (they get zeros or the
    # partial sums of the windows reaching them, exactly as the adjoint requires).
    base_h = (out_h - 1) * geometry.stride[0] + geometry.dilation[0] * (kh - 1) + 1
    base_w = (out_w - 1) * geometry.stride[1] + geometry.dilation[1] * (kw - 1) + 1
    extra_h, extra_w = padded_h - base_h, padded_w - base_w
    ones_out = torch.ones(1, 1, out_h, out_w, dtype=torch.float64)
    ones_kernel = torch.ones(1, 1, kh, kw, dtype=torch.float64)
    if extra_h < max(geometry.stride[0], geometry.dilation[0]) and extra_w < max(
        geometry.stride[1], geometry.dilation[1]
    ):
        padded = F.conv_transpose2d(
            ones_out,
            ones_kernel,
            stride=geometry.stride,
            dilation=geometry.dilation,
            output_padding=(extra_h, extra_w),
        )
    else:  # output_padding cannot be that large: compute the base map and pad with zeros
        padded = F.conv_transpose2d(
            ones_out, ones_kernel, stride=geometry.stride, dilation=geometry.dilation
        )
        padded = F.pad(padded, (0, extra_w, 0, extra_h))
    spatial = padded[0, 0, top : top + height, left : left + width]
    return spatial.round().to(torch.int64)


@lru_cache(maxsize=256)
def _conv2d_fanout(geometry: ConvGeometry, height: int, width: int, device: str) -> torch.Tensor:
    spatial = _conv_spatial_fanout(geometry, height, width)
    per_channel = geometry.out_channels // geometry.groups
    full = (spatial * per_channel).unsqueeze(0).expand(geometry.in_channels, height, width)
    return full.contiguous().to(device)


def conv2d_fanout(
    geometry: ConvGeometry, height: int, width: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Exact fan-out ``[C_in, H, W]`` (``int64``) of a convolution on an ``H x W`` input."""
    return _conv2d_fanout(geometry, int(height), int(width), str(torch.device(device)))


def linear_fanout(
    in_shape: tuple[int, ...], out_features: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Fan-out of a dense (fully connected) layer: every input drives ``out_features`` outputs.

    ``in_shape`` is the per-frame input shape (the last dimension is ``in_features``;
    leading dimensions are independent rows, each with the same fan-out).
    """
    return _full(tuple(int(s) for s in in_shape), int(out_features), str(torch.device(device)))


def identity_fanout(shape: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
    """Fan-out of a one-to-one connection (weight-1 identity synapse): 1 everywhere."""
    return _full(tuple(int(s) for s in shape), 1, str(torch.device(device)))


@lru_cache(maxsize=256)
def _full(shape: tuple[int, ...], value: int, device: str) -> torch.Tensor:
    return torch.full(shape, value, dtype=torch.int64, device=device)


def pooled_fanout(fanout: torch.Tensor, kernel: Pair, height: int, width: int) -> torch.Tensor:
    """Fan-out ``[C, H, W]`` of a non-overlapping average/sum pool folded into the next layer.

    ``fanout`` is the next layer's map ``[C, H_p, W_p]`` on the pooled grid; ``kernel`` is
    the pool's kernel (= stride). Rows and columns the pool drops get fan-out 0.
    """
    kh, kw = kernel
    channels, pooled_h, pooled_w = fanout.shape
    if pooled_h * kh > height or pooled_w * kw > width:
        raise ConfigError(
            f"pooled map {pooled_h}x{pooled_w} with kernel {kernel} does not fit an input of {height}x{width}"
        )
    out = fanout.repeat_interleave(kh, dim=1).repeat_interleave(kw, dim=2)
    if out.shape[1] != height or out.shape[2] != width:
        out = F.pad(out, (0, width - out.shape[2], 0, height - out.shape[1]))
    return out


@lru_cache(maxsize=256)
def _folded_conv2d_fanout(
    geometry: ConvGeometry, kernel: Pair, height: int, width: int, device: str
) -> torch.Tensor:
    pooled_h, pooled_w = height // kernel[0], width // kernel[1]
    return pooled_fanout(conv2d_fanout(geometry, pooled_h, pooled_w, device), kernel, height, width)


def folded_conv2d_fanout(
    geometry: ConvGeometry,
    kernel: Pair,
    height: int,
    width: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Fan-out ``[C, H, W]`` of ``AvgPool(kernel)`` followed by the convolution, on the
    un-pooled ``H x W`` input (cached per shape and device)."""
    return _folded_conv2d_fanout(
        geometry, kernel, int(height), int(width), str(torch.device(device))
    )


@lru_cache(maxsize=256)
def _folded_linear_fanout(
    channels: int, out_features: int, kernel: Pair, height: int, width: int, device: str
) -> torch.Tensor:
    pooled = (channels, height // kernel[0], width // kernel[1])
    per_pooled = linear_fanout((channels * pooled[1] * pooled[2],), out_features, device)
    return pooled_fanout(per_pooled.reshape(pooled), kernel, height, width)


def folded_linear_fanout(
    channels: int,
    out_features: int,
    kernel: Pair,
    height: int,
    width: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Fan-out ``[C, H, W]`` of ``AvgPool(kernel)`` + flatten + a dense layer, on the
    un-pooled input (cached per shape and device)."""
    return _folded_linear_fanout(
        channels, out_features, kernel, int(height), int(width), str(torch.device(device))
    )


@lru_cache(maxsize=512)
def conv2d_fanout_total(geometry: ConvGeometry, height: int, width: int) -> int:
    """``sum_i F_i`` of a convolution on an ``H x W`` input: its dense operations per frame."""
    return int(conv2d_fanout(geometry, height, width).sum())
