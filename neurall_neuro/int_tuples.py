"""One parser for the ``int | (int, int) | array`` geometry fields (kernel, stride, padding,
dilation) that torch modules, NIR nodes and netx files write in different forms."""

from __future__ import annotations

from typing import Any

import numpy as np

from neurall_neuro.errors import ConfigError, NeurallError


def int_tuple(
    value: Any,
    n: int,
    what: str,
    *,
    minimum: int | None = None,
    error: type[NeurallError] = ConfigError,
) -> tuple[int, ...]:
    """``value`` (an int, a sequence or an array of ints) as a tuple of ``n`` ints.

    A single value is repeated ``n`` times. Anything else (wrong length, non-integral or
    non-numeric values, values below ``minimum``) raises ``error`` naming ``what``.
    """
    try:
        array = np.asarray(value).reshape(-1)
        numeric = array.dtype.kind in "iufb"
    except (TypeError, ValueError):
        numeric = False
    if not numeric:
        raise error(f"{what} must be {n} integer(s), got {value!r}")
    if array.size == 1:
        array = np.repeat(array, n)
    if array.size != n or not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
        raise error(f"{what} must be an int or {n} integer(s), got {value!r}")
    values = tuple(int(v) for v in array)
    if minimum is not None and min(values) < minimum:
        raise error(f"{what} must be >= {minimum}, got {values}")
    return values


def int_pair(
    value: Any,
    what: str,
    *,
    minimum: int | None = None,
    error: type[NeurallError] = ConfigError,
) -> tuple[int, int]:
    """:func:`int_tuple` with ``n = 2`` (a 2-D kernel, stride, padding or dilation)."""
    first, second = int_tuple(value, 2, what, minimum=minimum, error=error)
    return first, second
