"""Exact fan-out maps against brute-force enumeration (random shapes, hypothesis)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from energy.fanout import ConvGeometry, conv2d_fanout, linear_fanout, pooled_fanout
from energy.pooling import adaptive_window_sizes, fold_kernel, pool_window_sizes
from neurall_neuro.errors import ConfigError


@st.composite
def conv_cases(draw: st.DrawFn) -> tuple[ConvGeometry, int, int]:
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    in_channels = groups * draw(st.integers(1, 2))
    out_channels = groups * draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    same = draw(st.booleans()) and draw(st.booleans())
    stride = (1, 1) if same else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = "same" if same else (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    min_h = dilation[0] * (kernel[0] - 1) + 1
    min_w = dilation[1] * (kernel[1] - 1) + 1
    low_h = 1 if same else max(1, min_h - 2 * padding[0])
    low_w = 1 if same else max(1, min_w - 2 * padding[1])
    height = draw(st.integers(low_h, low_h + 6))
    width = draw(st.integers(low_w, low_w + 6))
    geometry = ConvGeometry.create(
        in_channels, out_channels, kernel, stride, padding, dilation, groups
    )
    return geometry, height, width


@settings(deadline=None, max_examples=40)
@given(conv_cases())
def test_conv_fanout_equals_brute_force(brute, case: tuple[ConvGeometry, int, int]) -> None:
    geometry, height, width = case
    assert torch.equal(
        conv2d_fanout(geometry, height, width), brute.conv_fanout(geometry, height, width)
    )


def test_conv_fanout_borders_by_hand() -> None:
    """3x3 kernel, padding 1, 3x3 input: corners reach 4 outputs, edges 6, the centre 9."""
    geometry = ConvGeometry.create(1, 2, 3, padding=1)
    expected = torch.tensor([[4, 6, 4], [6, 9, 6], [4, 6, 4]]) * 2
    assert torch.equal(conv2d_fanout(geometry, 3, 3)[0], expected)
    # The k^2 C_out / s^2 shortcut (18 per input) overcounts at the borders.
    assert int(conv2d_fanout(geometry, 3, 3).sum()) < 9 * 18


def test_conv_fanout_matches_torch_module(brute) -> None:
    conv = torch.nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    geometry = ConvGeometry.from_module(conv)
    assert torch.equal(conv2d_fanout(geometry, 7, 6), brute.conv_fanout(geometry, 7, 6))


@settings(deadline=None, max_examples=25)
@given(
    pool=st.integers(1, 3),
    pooled=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    extra=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    kernel=st.integers(1, 3),
    padding=st.integers(0, 1),
    stride=st.integers(1, 2),
)
def test_folded_pool_conv_fanout_equals_brute_force(
    pool, pooled, extra, kernel, padding, stride, brute
) -> None:
    """AvgPool(k) then conv == one conv on the un-pooled input, with dropped rows/cols at 0."""
    height = pooled[0] * pool + min(extra[0], pool - 1)
    width = pooled[1] * pool + min(extra[1], pool - 1)
    if pooled[0] + 2 * padding < kernel or pooled[1] + 2 * padding < kernel:
        return
    geometry = ConvGeometry.create(2, 3, kernel, stride, padding)
    folded = pooled_fanout(conv2d_fanout(geometry, *pooled), (pool, pool), height, width)
    assert torch.equal(folded, brute.pool_conv_fanout(pool, geometry, height, width))


def test_linear_fanout() -> None:
    assert torch.equal(linear_fanout((2, 5), 3), torch.full((2, 5), 3))


def test_invalid_geometry_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="groups"):
        ConvGeometry.create(3, 4, 3, groups=2)
    with pytest.raises(ConfigError, match="smaller than the convolution window"):
        ConvGeometry.create(1, 1, 5).output_size(3, 3)


@settings(deadline=None, max_examples=25)
@given(
    size=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 1), st.integers(0, 1)),
    ceil=st.booleans(),
)
def test_pool_window_sizes_equal_brute_force(size, kernel, stride, padding, ceil) -> None:
    if padding[0] * 2 > kernel[0] or padding[1] * 2 > kernel[1]:
        return  # torch requires padding <= kernel / 2
    if size[0] + 2 * padding[0] < kernel[0] or size[1] + 2 * padding[1] < kernel[1]:
        return
    pool = torch.nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil)
    out_h, out_w = pool(torch.zeros(1, 1, *size)).shape[-2:]
    got = pool_window_sizes(size, kernel, stride, padding, (1, 1), (out_h, out_w))
    expected = torch.zeros(out_h, out_w, dtype=torch.int64)
    for oh in range(out_h):
        for ow in range(out_w):
            for a in range(kernel[0]):
                for b in range(kernel[1]):
                    h, w = oh * stride[0] - padding[0] + a, ow * stride[1] - padding[1] + b
                    expected[oh, ow] += int(0 <= h < size[0] and 0 <= w < size[1])
    assert torch.equal(got, expected)


def test_adaptive_window_sizes() -> None:
    assert torch.equal(adaptive_window_sizes((5, 4), (2, 1)), torch.tensor([[12], [12]]))
    assert torch.equal(adaptive_window_sizes((4, 4), (1, 1)), torch.tensor([[16]]))


def test_fold_kernel_rules() -> None:
    assert fold_kernel(torch.nn.AvgPool2d(2), (8, 8)) == (2, 2)
    assert fold_kernel(torch.nn.AvgPool2d(3, stride=2), (8, 8)) is None  # overlapping
    assert fold_kernel(torch.nn.AvgPool2d(2, padding=1), (8, 8)) is None
    assert fold_kernel(torch.nn.AdaptiveAvgPool2d(1), (4, 6)) == (4, 6)
    assert fold_kernel(torch.nn.AdaptiveAvgPool2d(3), (4, 4)) is None  # uneven windows
    assert fold_kernel(torch.nn.MaxPool2d(2), (8, 8)) is None
