r"""Exact per-tensor statistics for the torch-hook counter (:mod:`energy.torch_counter`).

A hook counts a tensor with vectorised torch reductions only and keeps the results on the
tensor's device; after the pass :func:`_read_back` turns every 0-dim count into an int with
one device-to-host transfer per device.

* :class:`_Counts`: non-zero values (events) and values equal to 1 of one tensor; the
  tensor is binary iff ``#(x == 1) == #(x != 0)``.
* :class:`_InputStats`: non-zero counts per input position, summed over frames
  (:math:`n_i`, the input of the effective-operation rule
  :math:`\mathrm{ops} = \sum_i n_i F_i` of :mod:`energy.rules`), with the input's
  :class:`_Counts`.
* :func:`_key`, :func:`_keys`, :func:`_version`: a tensor's storage identity (matching a
  consumer to its producer) and in-place version counter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from energy.functional_ops import tensors_in

_Key = tuple[int, int, torch.dtype, torch.device]


def _key(tensor: torch.Tensor) -> _Key:
    return (tensor.data_ptr(), tensor.numel(), tensor.dtype, tensor.device)


def _version(tensor: torch.Tensor) -> int | None:
    """The in-place modification counter (shared by views), ``None`` for inference tensors."""
    try:
        return tensor._version
    except RuntimeError:  # tensors created under torch.inference_mode() have none
        return None


#: Frames up to which a float32 sum of 0/1 values over frames is exact (2^24).
_EXACT_FLOAT_SUM = 2**24


@dataclass
class _Counts:
    """Exact counts of one tensor: non-zero values (events) and values equal to 1.

    The tensor is binary iff ``#(x == 1) == #(x != 0)``. On the CPU the counts are ints at
    once; on an accelerator they stay 0-dim device tensors (the hook does not synchronise)
    and are read back together after the forward pass (:func:`_read_back`). A spike tensor
    is counted once, by the hook of the layer that emits it, and every consumer of the same
    storage reuses these counts
    (:meth:`energy.torch_counter.OpCounter._record`).
    """

    events: torch.Tensor | int
    ones: torch.Tensor | int

    @classmethod
    def of(cls, x: torch.Tensor) -> _Counts:
        events, ones = torch.count_nonzero(x), torch.count_nonzero(x == 1)
        if x.device.type == "cpu":
            return cls(events=int(events), ones=int(ones))
        return cls(events=events, ones=ones)

    def known_binary(self) -> bool | None:
        """Whether all non-zero values equal 1, or ``None`` while the counts are on a device."""
        if isinstance(self.events, torch.Tensor) or isinstance(self.ones, torch.Tensor):
            return None
        return self.events == self.ones

    def resolve(self) -> tuple[int, bool]:
        """``(events, binary)``: total non-zero values and whether all of them equal 1."""
        events, ones = int(self.events), int(self.ones)
        return events, ones == events


@dataclass
class _InputStats:
    """Non-zero counts per input position (summed over frames) and the input's :class:`_Counts`.

    When the input is known to be binary (CPU counts) the per-position counts take the fast
    contiguous reduction ``x.sum(0)`` (exact: sums of 0/1 over fewer than 2^24 frames);
    otherwise ``(x != 0).sum(0)``.
    """

    nonzero: torch.Tensor
    counts: _Counts

    @classmethod
    def of(cls, x: torch.Tensor, counts: _Counts | None = None) -> _InputStats:
        """Statistics of ``x``, reusing ``counts`` of the same tensor if its producer made them."""
        if counts is None and x.device.type != "cpu":
            nonzero = (x != 0).sum(0)  # events from the per-position counts: one pass fewer
            return cls(nonzero, _Counts(events=nonzero.sum(), ones=torch.count_nonzero(x == 1)))
        if counts is None:
            counts = _Counts.of(x)
        if counts.known_binary() and x.shape[0] < _EXACT_FLOAT_SUM and x.is_floating_point():
            nonzero = x.sum(0, dtype=torch.float32).to(torch.int64)
        else:
            nonzero = (x != 0).sum(0)
        return cls(nonzero=nonzero, counts=counts)

    def resolve(self) -> tuple[int, bool]:
        """``(events, binary)``: total non-zero inputs and whether all of them equal 1."""
        return self.counts.resolve()


def _read_back(slots: list[tuple[Any, str]]) -> None:
    """Replace the 0-dim tensors at ``slots`` (object attribute or dict key) by ints, with
    one device-to-host transfer per device instead of one synchronisation per value."""

    def get(owner: Any, key: str) -> Any:
        return owner[key] if isinstance(owner, dict) else getattr(owner, key)

    groups: dict[torch.device, list[tuple[Any, str]]] = {}
    for owner, key in slots:
        value = get(owner, key)
        if isinstance(value, torch.Tensor):
            groups.setdefault(value.device, []).append((owner, key))
    for group in groups.values():
        values = [get(o, k) for o, k in group]
        if any(v.dtype != torch.int64 or v.dim() for v in values):
            values = [v.reshape(()).to(torch.int64) for v in values]
        stacked = torch.stack(values)
        for (owner, key), value in zip(group, stacked.tolist(), strict=True):
            if isinstance(owner, dict):
                owner[key] = int(value)
            else:
                setattr(owner, key, int(value))


def _keys(values: Any) -> set[_Key]:
    """Storage keys of the tensors in ``values`` (see :func:`energy.functional_ops.tensors_in`)."""
    return {_key(t) for t in tensors_in(values)}
