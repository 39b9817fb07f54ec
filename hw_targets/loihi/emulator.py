r"""A vectorised torch emulation of Lava's bit-accurate Loihi models (``loihi-emu``'s core).

Arithmetic (see :mod:`hw_targets.loihi.fixed_point` for the exact integer rules): at
hardware step ``t``

1. every group's synaptic input is the int32 sum of its synapses' outputs computed at
   step ``t - delay`` (zero before);
2. every group does one ``PyLifModelBitAcc`` step with the bias
   ``bias_mant << bias_exp`` from ``bias_start_step`` on (the input group's
   per-sample bias comes from the host encoder or is given); the input group may
   instead replay given spike trains (a ``RingBuffer`` source in Lava);
3. every synapse computes ``shift(M z_src[t], weight_exp)`` (in a float dtype in which
   the integer sums are exact, then rounded) and wraps it like the Lava process that
   lava-sim uses for it (int32 for Dense, 24 bits for Conv).

Results equal lava-sim ``fixed_pt`` bit for bit (every neuron, every step) and
reproduce lava-dl's recorded ground truth (``tests/hw_targets``).

Schedules
---------
``"step"`` (the reference): the whole batch advances one hardware step at a time through
every group (ring buffers of ``delay`` slots per synapse). It runs any network,
recurrent ones included.

``"layer"`` (default for acyclic networks): groups run one after the other in
topological order, each over its whole *window* of steps at once. A group's synapse
outputs are computed for all the window's steps in one call (time folded into the
batch: one ``conv2d``/matmul on ``[S * B, ...]``), only the voltage recurrence loops over
the steps (:func:`~hw_targets.loihi.fixed_point.lif_window`). The window of group ``g`` is
``[first(g), end(g))``:

* ``first(g)``: the earliest step at which its state can leave 0. Before it the group
  provably receives nothing (every source is still silent: ``first(src) + delay``) and
  has no bias yet (``bias_start_step``, or an all-zero bias), so ``u = v = 0`` and,
  since ``vth >= 0``, it does not spike; those steps are not computed.
* ``end(g)``: the steps anyone needs, ``max(until(g), end(dst) - delay)`` over its
  outgoing synapses, where ``until`` says up to which step each group's own results
  are wanted (default: all ``steps``; the ``loihi-emu`` target asks for each group's
  aligned window ``[depth, depth + T)`` only, so in a feed-forward network of per-layer
  delays each group runs ``T`` steps instead of ``T + depth``). Steps at or after
  ``end(g)`` are reported as zeros.

Both schedules do the same integer arithmetic, so they agree bit for bit on every step
both compute (``tests/hw_targets/test_emu_layer_major.py``).

Number formats of the layer schedule (all exact; the step schedule keeps int64): a
group's input stays in float32 from the synapse sums to ``u + b`` when every value
provably is an integer below ``2**24`` (exact float32 kernels, no output wrap,
``|a_in| << 6 < 2**24``, ``du = 4095``), else int32 where the sums fit it, else int64;
the voltage recurrence runs in float32 for decay factors ``0`` and ``2^m`` and in int32
or int64 otherwise (:func:`~hw_targets.loihi.fixed_point.lif_window`). Spikes are float32
0/1, ready for the next synapse.

Synapse kernels
---------------
Each synapse is computed by the first of :data:`SYNAPSE_KERNELS` that fits it (all give
the exact integer sums ``M z``; a block-diagonal weight is first regrouped into the
grouped convolution without its zero blocks, :func:`conversion.nir_nodes.regroup`): a
depthwise 1x1 convolution is a per-channel scale, a small layer one matmul with the
unrolled matrix, a grouped convolution with small per-group blocks a batched matmul (one
product per output for the SE gate's broadcast), anything else ``conv2d``. A
convolution whose kernel consists of ``s x s`` blocks of equal weights with stride ``s``
(an average pool folded into the next convolution, see ``docs/hardware.md``) is first
sum-pooled and then convolved with one weight per block: the same integer sums, ``s^2``
times fewer multiply-adds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

from conversion.nir_nodes import regroup
from hw_targets.loihi.fixed_point import (
    FLOAT32_EXACT_LIMIT,
    current_sequence,
    effective_bias,
    exact_float_dtype,
    input_bound,
    lif_step,
    lif_window,
    output_wrap_bits,
    shift,
    wrap_signed,
)
from hw_targets.loihi.network import LoihiNetwork, Synapse, conv_output_shape
from hw_targets.loihi.run import PreparedInputs, RawTrace, RunPlan
from hw_targets.loihi.spec import ACT_SHIFT, DU_MEMORYLESS, INT32_SAFE_INPUT, LAVA_INT_BITS
from neurall_neuro.errors import ConfigError, ConversionError, TargetError

#: Synapses with at most this many (N_dst * N_src) weights run as one matmul with the
#: unrolled matrix (faster than conv2d for the small layers; identical integer sums).
UNROLL_LIMIT = 1 << 20

#: ``batch_size=None`` runs the batch in chunks whose working set stays near this many
#: bytes (results do not depend on the chunking: samples are independent).
AUTO_CHUNK_BYTES = 1 << 30

Schedule = Literal["auto", "layer", "step"]
SCHEDULES: tuple[str, ...] = ("auto", "layer", "step")


# ----------------------------------------------------------------------------- kernels


def _geometry(syn: Synapse) -> dict[str, Any]:
    return {"stride": syn.stride, "padding": syn.padding, "dilation": syn.dilation}


class SynapseKernel(ABC):
    """One way of computing ``M z`` for a synapse: ``__call__`` maps float inputs
    ``[N, *src_shape]`` to the exact integer sums ``[N, N_dst]`` (as floats)."""

    name: ClassVar[str] = ""

    def __init__(
        self,
        syn: Synapse,
        src_shape: tuple[int, ...],
        dtype: torch.dtype,
        device: torch.device,
        input_max: int = 1,
    ):
        """``dtype``: a float dtype in which the sums are exact for inputs in
        ``[0, input_max]`` (a kernel may narrow it, see :attr:`dtype`)."""
        self.syn = syn
        self.src_shape = src_shape
        self.dtype = dtype

    @classmethod
    @abstractmethod
    def fits(cls, syn: Synapse, src_shape: tuple[int, ...], dst_size: int) -> bool:
        """Whether this kernel computes ``syn`` exactly and is worth it."""

    @abstractmethod
    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


class ChannelScale(SynapseKernel):
    """A depthwise 1x1 convolution (``groups == C_in == C_out``, stride 1, no padding):
    ``y[c] = w[c] x[c]``, one exact product per output."""

    name = "channel-scale"

    def __init__(
        self,
        syn: Synapse,
        src_shape: tuple[int, ...],
        dtype: torch.dtype,
        device: torch.device,
        input_max: int = 1,
    ):
        super().__init__(syn, src_shape, dtype, device, input_max)
        self.weight = torch.as_tensor(syn.weight.reshape(1, -1, 1, 1), dtype=dtype, device=device)

    @classmethod
    def fits(cls, syn: Synapse, src_shape: tuple[int, ...], dst_size: int) -> bool:
        return (
            syn.kind == "conv"
            and syn.kernel == (1, 1)
            and syn.stride == (1, 1)
            and syn.padding == (0, 0)
            and syn.groups == src_shape[0] == syn.weight.shape[0]
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight).reshape(x.shape[0], -1)


class Unrolled(SynapseKernel):
    """A dense layer, or a convolution with at most :data:`UNROLL_LIMIT` weights once
    unrolled: one matmul with the ``[N_src, N_dst]`` matrix."""

    name = "matmul"

    def __init__(
        self,
        syn: Synapse,
        src_shape: tuple[int, ...],
        dtype: torch.dtype,
        device: torch.device,
        input_max: int = 1,
    ):
        super().__init__(syn, src_shape, dtype, device, input_max)
        matrix = syn.dense_mantissas(src_shape)
        if input_max == 1:  # the matrix's row sums can be tighter than the kernel's
            self.dtype = exact_float_dtype(matrix, device)
        self.weight = torch.as_tensor(matrix.T.copy(), dtype=self.dtype, device=device)

    @classmethod
    def fits(cls, syn: Synapse, src_shape: tuple[int, ...], dst_size: int) -> bool:
        return syn.kind == "dense" or dst_size * int(np.prod(src_shape)) <= UNROLL_LIMIT

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1) @ self.weight


class GroupedUnrolled(SynapseKernel):
    """A grouped convolution whose per-group matrices hold at most :data:`UNROLL_LIMIT`
    weights in all: a batched matmul over the groups, or, with one source neuron per group
    (the SE gate's broadcast of ``C`` values over ``C`` maps), one elementwise product per
    output (``"grouped-broadcast"``)."""

    name = "grouped-matmul"

    def __init__(
        self,
        syn: Synapse,
        src_shape: tuple[int, ...],
        dtype: torch.dtype,
        device: torch.device,
        input_max: int = 1,
    ):
        super().__init__(syn, src_shape, dtype, device, input_max)
        groups = syn.groups
        c_out = syn.weight.shape[0] // groups
        sub_shape = (src_shape[0] // groups, *src_shape[1:])
        blocks = []
        for g in range(groups):
            part = Synapse(
                f"{syn.name}[{g}]",
                syn.src,
                syn.dst,
                "conv",
                syn.weight[g * c_out : (g + 1) * c_out],
                syn.weight_exp,
                **_geometry(syn),
            )
            blocks.append(part.dense_mantissas(sub_shape).T)
        self.groups = groups
        self.weight = torch.as_tensor(np.stack(blocks), dtype=dtype, device=device)
        self.broadcast = self.weight.shape[1] == 1  # [G, 1, n_dst / G]
        if self.broadcast:
            self.name = "grouped-broadcast"

    @classmethod
    def fits(cls, syn: Synapse, src_shape: tuple[int, ...], dst_size: int) -> bool:
        if syn.kind != "conv" or syn.groups == 1:
            return False
        n_src = int(np.prod(src_shape))
        return dst_size * n_src // syn.groups <= UNROLL_LIMIT

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if self.broadcast:  # y[n, g, j] = x[n, g] W[g, 0, j]: no transposes, no sums
            return (x.reshape(n, self.groups, 1) * self.weight.transpose(0, 1)).reshape(n, -1)
        xg = x.reshape(n, self.groups, -1).transpose(0, 1)  # [G, N, n_src / G]
        return torch.bmm(xg, self.weight).transpose(0, 1).reshape(n, -1)


class Convolution(SynapseKernel):
    """``torch.nn.functional.conv2d`` (correlation with torch-layout weights)."""

    name = "conv2d"

    def __init__(
        self,
        syn: Synapse,
        src_shape: tuple[int, ...],
        dtype: torch.dtype,
        device: torch.device,
        input_max: int = 1,
    ):
        super().__init__(syn, src_shape, dtype, device, input_max)
        self.weight = torch.as_tensor(syn.weight, dtype=dtype, device=device)

    @classmethod
    def fits(cls, syn: Synapse, src_shape: tuple[int, ...], dst_size: int) -> bool:
        return syn.kind == "conv"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(
            x.reshape(x.shape[0], *self.src_shape),
            self.weight,
            groups=self.syn.groups,
            **_geometry(self.syn),
        )
        return y.reshape(x.shape[0], -1)


#: Synapse kernels in order of preference: the first that ``fits`` computes the synapse.
SYNAPSE_KERNELS: tuple[type[SynapseKernel], ...] = (
    ChannelScale,
    Unrolled,
    GroupedUnrolled,
    Convolution,
)


def pooled_form(syn: Synapse, src_shape: Sequence[int]) -> tuple[Synapse, tuple[int, int]] | None:
    r"""A strided convolution whose kernel is made of ``s x s`` blocks of equal weights,
    as ``(synapse with one weight per block, (s_h, s_w))``, or None.

    With kernel ``W'[o, c, s_h i + a, s_w j + b] = W[o, c, i, j]``, stride ``s``, padding
    ``s p``, dilation 1 and an input whose size is a multiple of ``s``,

    .. math::
        \sum_{c,i,j,a,b} W'[o,c,s_h i+a,s_w j+b]\, x[c, s_h(y+i)+a, s_w(x+j)+b]
        = \sum_{c,i,j} W[o,c,i,j]\, P[c, y+i, x+j]

    where ``P`` is the ``s x s`` sum pool of ``x`` (zero-padded by ``p``): the same
    integers, computed as a sum pool and a stride-1 convolution with padding ``p``.
    """
    if syn.kind != "conv" or syn.dilation != (1, 1) or len(src_shape) != 3:
        return None
    sh, sw = syn.stride
    kh, kw = syn.kernel
    if (sh, sw) == (1, 1) or kh % sh or kw % sw:
        return None
    if syn.padding[0] % sh or syn.padding[1] % sw or src_shape[1] % sh or src_shape[2] % sw:
        return None
    w = syn.weight
    blocks = w.reshape(w.shape[0], w.shape[1], kh // sh, sh, kw // sw, sw)
    if not np.array_equal(blocks, np.broadcast_to(blocks[:, :, :, :1, :, :1], blocks.shape)):
        return None
    reduced = Synapse(
        f"{syn.name}/pooled",
        syn.src,
        syn.dst,
        "conv",
        np.ascontiguousarray(blocks[:, :, :, 0, :, 0]),
        syn.weight_exp,
        stride=1,
        padding=(syn.padding[0] // sh, syn.padding[1] // sw),
        groups=syn.groups,
        delay=syn.delay,
    )
    return reduced, (sh, sw)


@dataclass
class _SynOp:
    syn: Synapse
    kernel: SynapseKernel
    pool: tuple[int, int] | None  # sum pool applied before the kernel
    wrap_bits: int  # 0: the sum can never overflow, skip the wrap
    src_shape: tuple[int, ...]
    exact: bool  # the float accumulation is exact (no rounding needed)
    dst_size: int


def _plan_synapse(network: LoihiNetwork, syn: Synapse, device: torch.device) -> _SynOp:
    src_shape = tuple(network.group(syn.src).shape)
    dst_size = network.group(syn.dst).size
    # exact float dtype from the original kernel: pooling keeps the partial-sum bound
    dtype = exact_float_dtype(syn.weight, device)
    core, core_shape, pool = syn, src_shape, None
    if syn.kind == "conv":  # drop all-zero blocks (an SE broadcast exported as a dense conv)
        groups, weight = regroup(syn.weight, syn.groups)
        if groups != syn.groups:
            core = Synapse(
                f"{syn.name}/regrouped",
                syn.src,
                syn.dst,
                "conv",
                weight,
                syn.weight_exp,
                groups=groups,
                **_geometry(syn),
            )
    folded = pooled_form(core, src_shape)
    if folded is not None:
        core, pool = folded
        core_shape = (src_shape[0], src_shape[1] // pool[0], src_shape[2] // pool[1])
        out = conv_output_shape(
            core_shape, core.weight.shape[0], core.kernel, core.stride, core.padding, core.dilation
        )
        if int(np.prod(out)) != dst_size:  # pragma: no cover - guaranteed by the algebra
            raise ConversionError(f"synapse {syn.name!r}: pooled form changes the output shape")
    kernel_cls = next(k for k in SYNAPSE_KERNELS if k.fits(core, core_shape, dst_size))
    input_max = 1 if pool is None else pool[0] * pool[1]
    kernel = kernel_cls(core, core_shape, dtype, device, input_max)
    wrap = output_wrap_bits(syn.kind, syn.weight, syn.weight_exp)
    bound = input_bound(syn.weight, syn.weight_exp)
    return _SynOp(
        syn,
        kernel,
        pool,
        wrap if bound >= 1 << (wrap - 1) else 0,
        src_shape,
        exact=device.type == "cpu" and kernel.dtype == torch.float32,
        dst_size=dst_size,
    )


# ----------------------------------------------------------------------------- emulator


class _SpikeWindow:
    """A group's spikes over its window (``[S, B, N]`` float32 0/1), with copies in other
    float dtypes made once, the spikes per step and sample, and which steps hold any."""

    def __init__(self, spikes: torch.Tensor):
        self.spikes = spikes
        n = spikes.shape[2] if spikes.dim() == 3 else 0
        exact = n < FLOAT32_EXACT_LIMIT  # float32 sums of up to n ones are exact
        total = spikes.sum(dim=2) if exact else spikes.sum(dim=2, dtype=torch.float64)
        self.counts = total.to(torch.int64)
        self._active = self.counts.any(dim=1).tolist() if self.counts.numel() else []
        self._float: dict[torch.dtype, torch.Tensor] = {spikes.dtype: spikes}

    def any(self, start: int, stop: int) -> bool:
        """Whether steps ``[start, stop)`` of the window hold a spike."""
        return any(self._active[start:stop])

    def as_float(self, dtype: torch.dtype) -> torch.Tensor:
        if dtype not in self._float:
            self._float[dtype] = self.spikes.to(dtype)
        return self._float[dtype]


@dataclass
class _Run:
    """Per-call state of a simulation (parsed arguments)."""

    steps: int
    batch: int
    record: set[str]
    record_voltage: set[str]
    group_bias: dict[str, torch.Tensor]
    bias_max: dict[str, int]  # max |effective bias| per group
    input_spikes: torch.Tensor | None


class LoihiEmulator:
    """Bit-exact emulator of one :class:`~hw_targets.loihi.network.LoihiNetwork`.

    ``schedule``: ``"layer"`` (group by group over time windows), ``"step"`` (the whole
    network step by step; runs recurrent networks too) or ``"auto"`` (``"layer"`` when the
    network is acyclic); see the module docstring.

    >>> emu = LoihiEmulator(network, device="cpu")            # doctest: +SKIP
    >>> trace = emu.simulate(20, bias=mantissas, record="all")  # doctest: +SKIP
    """

    def __init__(
        self,
        network: LoihiNetwork,
        device: str | torch.device = "cpu",
        schedule: Schedule = "auto",
    ):
        self.network = network
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ConfigError(f"invalid device {device!r}: {exc}") from exc
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise TargetError("device 'cuda' requested but CUDA is not available; use device='cpu'")
        if schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")
        try:
            self._order: list[str] | None = network.topological_order()
        except ConversionError as exc:
            if schedule == "layer":
                raise ConfigError(
                    f"schedule='layer' needs an acyclic network ({exc}); use 'step' or 'auto'"
                ) from exc
            self._order = None
        self.schedule: Literal["layer", "step"] = (
            "step" if schedule == "step" or self._order is None else "layer"
        )
        self._ops = [_plan_synapse(network, syn, self.device) for syn in network.synapses]
        bounds = {g.name: 0 for g in network.groups}
        for op in self._ops:
            bounds[op.syn.dst] += input_bound(op.syn.weight, op.syn.weight_exp)
        #: groups whose int32 intermediate sums provably never wrap
        self._int32_safe = {name: (b << ACT_SHIFT) < INT32_SAFE_INPUT for name, b in bounds.items()}
        #: groups whose whole input path (sums, shifts, << 6, + bias) can stay in float32:
        #: exact float32 kernels, no wraps, |a_in| << 6 < 2**24, u without memory
        self._float_input = {
            g.name: g.du == DU_MEMORYLESS
            and (bounds[g.name] << ACT_SHIFT) < FLOAT32_EXACT_LIMIT
            and all(
                op.exact and op.kernel.dtype == torch.float32 and not op.wrap_bits
                for op in self._ops
                if op.syn.dst == g.name
            )
            for g in network.groups
        }
        self._bias = {
            g.name: effective_bias(g.bias_mant, g.bias_exp).reshape(1, -1).to(self.device)
            for g in network.groups
        }
        self._bias_max = {name: int(b.abs().max()) for name, b in self._bias.items()}
        self._incoming = {
            g.name: [op for op in self._ops if op.syn.dst == g.name] for g in network.groups
        }
        self._outgoing = {
            g.name: [op for op in self._ops if op.syn.src == g.name] for g in network.groups
        }

    def kernels(self) -> dict[str, str]:
        """How each synapse is computed, e.g. ``"sum-pool+conv2d"`` or
        ``"groups=128+grouped-matmul"`` (a block-diagonal weight regrouped)."""
        out = {}
        for op in self._ops:
            regrouped = op.kernel.syn.groups != op.syn.groups
            out[op.syn.name] = (
                (f"groups={op.kernel.syn.groups}+" if regrouped else "")
                + ("sum-pool+" if op.pool else "")
                + op.kernel.name
            )
        return out

    # ------------------------------------------------------------------ synapses

    def _synapse_output(
        self, op: _SynOp, spikes: torch.Tensor, dtype: torch.dtype = torch.int64
    ) -> torch.Tensor:
        """``wrap(shift(M z, weight_exp))`` for spikes ``[N, N_src]`` (bool, or 0/1 in the
        kernel's float dtype), as ``dtype``: int32 only where the sums provably fit it,
        float32 only for exact float32 kernels without a wrap (the shift is then an exact
        multiplication by ``2**exp``, floored for negative ``exp``)."""
        syn = op.syn
        n = spikes.shape[0]
        if spikes.dtype == torch.bool and self.device.type == "cpu" and not bool(spikes.any()):
            # (skipped on CUDA, where it would be a sync point)
            return torch.zeros((n, op.dst_size), dtype=dtype, device=spikes.device)
        s = spikes.to(op.kernel.dtype).view(n, *op.src_shape)
        if op.pool is not None:
            s = F.avg_pool2d(s, op.pool, op.pool, divisor_override=1)
        acc = op.kernel(s)
        if dtype == torch.float32 and op.exact and not op.wrap_bits:
            exp = syn.weight_exp
            if exp > 0:
                acc.mul_(float(1 << exp))
            elif exp < 0:
                torch.div(acc, float(1 << -exp), rounding_mode="floor", out=acc)
            return acc
        a = (acc if op.exact else torch.round(acc)).to(dtype)
        a = shift(a, syn.weight_exp)
        return wrap_signed(a, op.wrap_bits) if op.wrap_bits else a

    # ------------------------------------------------------------------ public API

    @torch.inference_mode()
    def simulate(
        self,
        steps: int,
        bias: np.ndarray | torch.Tensor | None = None,
        input_spikes: np.ndarray | torch.Tensor | None = None,
        record: Iterable[str] | str = (),
        record_voltage: Iterable[str] | str = (),
        batch: int | None = None,
        until: Mapping[str, int] | None = None,
    ) -> RawTrace:
        """Run ``steps`` hardware steps.

        ``bias``: input-group bias mantissas ``[B, *shape]`` (default: the group's own
        ``bias_mant``); ``input_spikes``: ``[steps, B, *shape]`` spikes that replace the
        input group's dynamics. ``record``/``record_voltage``: group names (or "all")
        whose spikes / voltages (``v`` after reset, raw fixed point) are returned.
        ``until``: per group, the step before which its results are wanted (groups not
        named: all steps); the layer schedule may leave later steps of a group at zero
        (the step schedule computes them anyway).
        """
        run = self._parse(steps, bias, input_spikes, record, record_voltage, batch)
        if self.schedule == "step":
            return self._simulate_steps(run)
        return self._simulate_layers(run, until or {})

    def run_prepared(
        self, prepared: PreparedInputs, plan: RunPlan, batch_size: int | None
    ) -> RawTrace:
        """Simulate ``plan.hardware_steps`` for prepared inputs, in chunks of ``batch_size``
        (None: chunks of :meth:`auto_batch_size`). Only each group's window
        ``[start, start + T)`` of the plan is needed, so the layer schedule computes no
        step after it (see the module docstring)."""
        size = batch_size or self.auto_batch_size(plan.hardware_steps)
        until = {name: start + plan.timesteps for name, start in plan.starts.items()}
        parts = []
        for lo in range(0, prepared.batch, size):
            hi = min(lo + size, prepared.batch)
            parts.append(
                self.simulate(
                    plan.hardware_steps,
                    bias=None if prepared.bias is None else prepared.bias[lo:hi],
                    input_spikes=None if prepared.spikes is None else prepared.spikes[:, lo:hi],
                    record=plan.record,
                    record_voltage=plan.record_voltage,
                    until=until,
                )
            )
        return RawTrace.concat(parts)

    def auto_batch_size(self, steps: int) -> int:
        """Samples per chunk when none is given: about :data:`AUTO_CHUNK_BYTES` of working
        set (``8 * steps`` bytes per neuron and sample for the state, inputs, float copies
        and records; an upper estimate for the layer schedule, whose windows are shorter)."""
        per_sample = 8 * max(int(steps), 1) * max(self.network.num_neurons, 1)
        return max(1, AUTO_CHUNK_BYTES // per_sample)

    # ------------------------------------------------------------------ internals

    def _parse(
        self,
        steps: int,
        bias: np.ndarray | torch.Tensor | None,
        input_spikes: np.ndarray | torch.Tensor | None,
        record: Iterable[str] | str,
        record_voltage: Iterable[str] | str,
        batch: int | None,
    ) -> _Run:
        net = self.network
        names = [g.name for g in net.groups]

        def chosen(value: Iterable[str] | str) -> set[str]:
            if value == "all":
                return set(names)
            return {value} if isinstance(value, str) else set(value)

        dev = self.device
        bias_t = None if bias is None else torch.as_tensor(np.asarray(bias)).to(dev, torch.int64)
        spikes_t = (
            None if input_spikes is None else torch.as_tensor(np.asarray(input_spikes)).to(dev)
        )
        B = (
            int(bias_t.shape[0])
            if bias_t is not None
            else int(spikes_t.shape[1])
            if spikes_t is not None
            else int(batch or 1)
        )
        if spikes_t is not None and spikes_t.shape[0] < steps:
            raise ConfigError(f"input_spikes has {spikes_t.shape[0]} steps, the run needs {steps}")
        inp = net.group(net.input)
        group_bias = dict(self._bias)
        bias_max = dict(self._bias_max)
        if bias_t is not None:
            low, high = (int(x) for x in torch.aminmax(bias_t)) if bias_t.numel() else (0, 0)
            limit = 1 << (LAVA_INT_BITS - 1 - inp.bias_exp)
            if -limit <= low and high < limit:  # the shifted bias fits int32: half the bytes
                bias_t = bias_t.to(torch.int32)
            group_bias[inp.name] = bias_t.reshape(B, -1) << inp.bias_exp
            bias_max[inp.name] = max(-low, high) << inp.bias_exp
        return _Run(
            int(steps), B, chosen(record), chosen(record_voltage), group_bias, bias_max, spikes_t
        )

    def _trace(
        self,
        run: _Run,
        counts: dict[str, torch.Tensor],
        spikes: dict[str, torch.Tensor],
        voltages: dict[str, torch.Tensor],
    ) -> RawTrace:
        """Numpy trace from ``[steps, B]`` counts and ``[steps, B, N]`` records."""
        shapes = {g.name: g.shape for g in self.network.groups}
        B = run.batch

        def numpy(t: torch.Tensor, name: str, dtype: Any) -> np.ndarray:
            return t.reshape(t.shape[0], B, *shapes[name]).cpu().numpy().astype(dtype)

        return RawTrace(
            steps=run.steps,
            precision="fixed",
            counts={n: c.cpu().numpy().astype(np.int64) for n, c in counts.items()},
            spikes={n: numpy(s, n, np.uint8) for n, s in spikes.items()},
            voltages={n: numpy(v, n, np.int32) for n, v in voltages.items()},
        )

    def _simulate_steps(self, run: _Run) -> RawTrace:
        """The reference schedule: every group advances one hardware step at a time."""
        net = self.network
        dev, B, steps = self.device, run.batch, run.steps
        inp = net.group(net.input)
        zeros = {
            g.name: torch.zeros((B, g.size), dtype=torch.int64, device=dev) for g in net.groups
        }
        u = {n: z.clone() for n, z in zeros.items()}
        v = {n: z.clone() for n, z in zeros.items()}
        rings = [
            [torch.zeros((B, net.group(op.syn.dst).size), dtype=torch.int64, device=dev)]
            * op.syn.delay
            for op in self._ops
        ]
        counts: dict[str, list[torch.Tensor]] = {
            g.name: [] for g in net.groups if g.readout == "spikes"
        }
        spk_rec: dict[str, list[torch.Tensor]] = {n: [] for n in run.record}
        v_rec: dict[str, list[torch.Tensor]] = {n: [] for n in run.record_voltage}
        for t in range(steps):
            a_in = dict(zeros)
            for op, ring in zip(self._ops, rings, strict=True):
                a_in[op.syn.dst] = a_in[op.syn.dst] + ring[t % op.syn.delay]
            spikes: dict[str, torch.Tensor] = {}
            for g in net.groups:
                if g.name == inp.name and run.input_spikes is not None:
                    s = run.input_spikes[t].reshape(B, -1) != 0
                else:
                    b = run.group_bias[g.name] if t >= g.bias_start_step else 0
                    safe = self._int32_safe[g.name]
                    a = a_in[g.name] if safe else wrap_signed(a_in[g.name], LAVA_INT_BITS)
                    s, u[g.name], v[g.name] = lif_step(
                        u[g.name], v[g.name], a, b, g.du, g.dv, g.vth, safe
                    )
                spikes[g.name] = s
                if g.name in counts:
                    counts[g.name].append(s.sum(dim=1))
                if g.name in spk_rec:
                    spk_rec[g.name].append(s)
                if g.name in v_rec:
                    v_rec[g.name].append(v[g.name].to(torch.int32))
            for op, ring in zip(self._ops, rings, strict=True):
                ring[t % op.syn.delay] = self._synapse_output(op, spikes[op.syn.src])

        def stacked(items: list[torch.Tensor], size: int, dtype: torch.dtype) -> torch.Tensor:
            if not items:
                return torch.zeros((0, B, size), dtype=dtype)
            return torch.stack(items)

        sizes = {g.name: g.size for g in net.groups}
        return self._trace(
            run,
            {n: stacked(c, 0, torch.int64).reshape(steps, B) for n, c in counts.items()},
            {n: stacked(s, sizes[n], torch.bool) for n, s in spk_rec.items()},
            {n: stacked(x, sizes[n], torch.int32) for n, x in v_rec.items()},
        )

    def _windows(self, run: _Run, until: Mapping[str, int]) -> dict[str, tuple[int, int]]:
        """``[first, end)`` per group (see the module docstring)."""
        net, steps = self.network, run.steps
        assert self._order is not None
        first: dict[str, int] = {}
        for name in self._order:
            g = net.group(name)
            if name == net.input and run.input_spikes is not None:
                active = run.input_spikes[:steps].reshape(steps, -1).any(dim=1)
                nonzero = torch.nonzero(active)
                start = int(nonzero[0]) if len(nonzero) else steps
            else:
                start = g.bias_start_step if run.bias_max[name] else steps
                for op in self._incoming[name]:
                    start = min(start, first[op.syn.src] + op.syn.delay)
            first[name] = min(start, steps)
        end: dict[str, int] = {}
        for name in reversed(self._order):
            stop = min(int(until.get(name, steps)), steps)
            for op in self._outgoing[name]:
                stop = max(stop, end[op.syn.dst] - op.syn.delay)
            end[name] = max(stop, 0)
        return {name: (min(first[name], end[name]), end[name]) for name in self._order}

    def _group_input(
        self,
        name: str,
        window: tuple[int, int],
        windows: dict[str, tuple[int, int]],
        spikes: dict[str, _SpikeWindow],
        batch: int,
        dtype: torch.dtype,
    ) -> torch.Tensor | None:
        """The summed synaptic input ``[S, B, N]`` of a group over its window (None when
        no synapse delivers anything in it)."""
        lo, hi = window
        total: torch.Tensor | None = None
        for op in self._incoming[name]:
            d = op.syn.delay
            src_lo, _ = windows[op.syn.src]
            s0, s1 = max(lo - d, src_lo), hi - d  # source steps that arrive in the window
            source = spikes[op.syn.src]
            if s1 <= s0 or not source.any(s0 - src_lo, s1 - src_lo):
                continue
            z = source.as_float(op.kernel.dtype)[s0 - src_lo : s1 - src_lo]
            out = self._synapse_output(op, z.reshape((s1 - s0) * batch, -1), dtype)
            out = out.view(s1 - s0, batch, -1)
            if total is None and (s0 + d, s1 + d) == (lo, hi):
                total = out  # covers the whole window: no zeros to add to
            elif total is None:
                total = torch.zeros((hi - lo, batch, op.dst_size), dtype=dtype, device=self.device)
                total[s0 + d - lo : s1 + d - lo] = out
            else:
                total[s0 + d - lo : s1 + d - lo] += out
        return total

    def _simulate_layers(self, run: _Run, until: Mapping[str, int]) -> RawTrace:
        """Group by group in topological order, each over its window of steps."""
        net = self.network
        B, steps = run.batch, run.steps
        windows = self._windows(run, until)
        uses = {name: len(self._outgoing[name]) for name in windows}
        spikes: dict[str, _SpikeWindow] = {}
        counts: dict[str, torch.Tensor] = {}
        spk_rec: dict[str, torch.Tensor] = {}
        v_rec: dict[str, torch.Tensor] = {}
        assert self._order is not None
        for name in self._order:
            g = net.group(name)
            lo, hi = windows[name]
            S = hi - lo
            volts = None
            if name == net.input and run.input_spikes is not None:
                z = (run.input_spikes[lo:hi].reshape(S, B, g.size) != 0).to(torch.float32)
                if name in run.record_voltage:
                    volts = torch.zeros((S, B, g.size), dtype=torch.int32, device=self.device)
            else:
                safe = self._int32_safe[name]
                dtype = (
                    torch.float32
                    if self._float_input[name]
                    else torch.int32
                    if safe
                    else torch.int64
                )
                a = self._group_input(name, (lo, hi), windows, spikes, B, dtype)
                drive, bound = (None, 0) if a is None else current_sequence(a, g.du, safe)
                z, volts = lif_window(
                    drive,
                    run.group_bias[name],
                    max(g.bias_start_step - lo, 0),
                    (B, g.size),
                    S,
                    g.dv,
                    g.vth,
                    record_voltage=name in run.record_voltage,
                    drive_bound=bound,
                    bias_bound=run.bias_max[name],
                )
            for op in self._incoming[name]:  # free source spikes nobody needs any more
                uses[op.syn.src] -= 1
                if uses[op.syn.src] == 0:
                    spikes.pop(op.syn.src, None)
            window = _SpikeWindow(z)
            if uses[name]:
                spikes[name] = window
            if g.readout == "spikes":
                counts[name] = self._pad(window.counts, lo, steps)
            if name in run.record:
                spk_rec[name] = self._pad(z, lo, steps)
            if name in run.record_voltage:
                v_rec[name] = self._pad(volts, lo, steps)  # type: ignore[arg-type]
        return self._trace(run, counts, spk_rec, v_rec)

    @staticmethod
    def _pad(x: torch.Tensor, lo: int, steps: int) -> torch.Tensor:
        """``x`` (steps ``[lo, lo + S)``) placed in zeros of ``steps`` steps."""
        if lo == 0 and x.shape[0] == steps:
            return x
        out = torch.zeros((steps, *x.shape[1:]), dtype=x.dtype, device=x.device)
        out[lo : lo + x.shape[0]] = x
        return out
