r"""``loihi-emu``: a vectorised torch emulation of Lava's bit-accurate Loihi models.

The whole batch advances one timestep at a time (no Python loop over neurons or
samples), on the CPU or a CUDA device. Per step ``t`` (see
:mod:`hw_targets.loihi_fixed_point` for the exact integer rules):

1. every group's synaptic input is the int32 sum of its synapses' outputs computed at
   step ``t - delay`` (zero before; a ring buffer of ``delay`` slots per synapse);
2. every group does one ``PyLifModelBitAcc`` step with the bias
   ``bias_mant << bias_exp`` from ``bias_start_step`` on (the input group's
   per-sample bias comes from the host encoder or is given); the input group may
   instead replay given spike trains (a ``RingBuffer`` source in Lava);
3. every synapse computes ``shift(M z_src[t], weight_exp)`` (dense: a matmul, conv:
   ``conv2d``; in a float dtype in which the integer sums are exact, then rounded) and
   wraps it like the Lava process that lava-sim uses for it (int32 for Dense, 24 bits
   for Conv).

Results equal lava-sim ``fixed_pt`` bit for bit (every neuron, every step) and
reproduce lava-dl's recorded ground truth (``tests/hw_targets``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from conversion.loihi_network import LoihiNetwork, Synapse
from hw_targets.base import Deployed, RunResult, Stopwatch, Target
from hw_targets.loihi_common import (
    BIAS_SCHEDULE_HELP,
    QUANT_OPTION_HELP,
    PreparedInputs,
    RawTrace,
    RunPlan,
    apply_bias_schedule,
    assemble_result,
    check_graph_common,
    parse_precision,
    plan_run,
    prepare_inputs,
    require_fixed,
    resolve_graph,
)
from hw_targets.loihi_fixed_point import (
    conv_realisation,
    effective_bias,
    exact_float_dtype,
    input_bound,
    lif_step,
    shift,
    wrap_signed,
)
from hw_targets.registry import register_target
from neurall_neuro.errors import ConfigError, TargetError

#: Conv synapses with at most this many (N_dst * N_src) weights run as one matmul with the
#: unrolled matrix (faster than conv2d for the small layers; identical integer sums).
UNROLL_LIMIT = 1 << 20


@dataclass
class _SynOp:
    syn: Synapse
    weight: torch.Tensor
    wrap_bits: int  # 0: the sum can never overflow, skip the wrap
    src_shape: tuple[int, ...]
    exact: bool  # the float accumulation is exact (no rounding needed)
    dst_size: int
    as_matmul: bool  # dense, or a conv unrolled into a matrix


class LoihiEmulator:
    """Bit-exact emulator of one :class:`~conversion.loihi_network.LoihiNetwork`.

    >>> emu = LoihiEmulator(network, device="cpu")            # doctest: +SKIP
    >>> trace = emu.simulate(20, bias=mantissas, record="all")  # doctest: +SKIP
    """

    def __init__(self, network: LoihiNetwork, device: str | torch.device = "cpu"):
        self.network = network
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ConfigError(f"invalid device {device!r}: {exc}") from exc
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise TargetError("device 'cuda' requested but CUDA is not available; use device='cpu'")
        self._ops: list[_SynOp] = []
        bounds = {g.name: 0 for g in network.groups}
        for syn in network.synapses:
            src_shape = network.group(syn.src).shape
            dst_size = network.group(syn.dst).size
            unroll = syn.kind == "dense" or dst_size * int(np.prod(src_shape)) <= UNROLL_LIMIT
            mant = syn.dense_mantissas(src_shape) if unroll else syn.weight
            dtype = exact_float_dtype(mant, self.device)
            weight = torch.as_tensor(mant, dtype=dtype, device=self.device)
            if unroll:
                weight = weight.T.contiguous()  # [N_src, N_dst]: spikes @ weight
            wrap = (
                32
                if syn.kind == "dense" or conv_realisation(syn.weight, syn.weight_exp) == "dense"
                else 24
            )
            bound = input_bound(syn.weight, syn.weight_exp)
            bounds[syn.dst] += bound
            self._ops.append(
                _SynOp(
                    syn,
                    weight,
                    wrap if bound >= 1 << (wrap - 1) else 0,
                    src_shape,
                    exact=self.device.type == "cpu" and dtype == torch.float32,
                    dst_size=dst_size,
                    as_matmul=unroll,
                )
            )
        #: groups whose int32 intermediate sums provably never wrap
        self._int32_safe = {name: (b << 6) < (1 << 30) for name, b in bounds.items()}
        self._bias = {
            g.name: effective_bias(g.bias_mant, g.bias_exp).reshape(1, -1).to(self.device)
            for g in network.groups
        }

    def _synapse_output(self, op: _SynOp, spikes: torch.Tensor) -> torch.Tensor:
        syn = op.syn
        if self.device.type == "cpu" and not bool(spikes.any()):  # (a sync point on CUDA)
            return torch.zeros(
                (spikes.shape[0], op.dst_size), dtype=torch.int64, device=spikes.device
            )
        s = spikes.to(op.weight.dtype)
        if op.as_matmul:
            acc = s @ op.weight
        else:
            acc = F.conv2d(
                s.view(s.shape[0], *op.src_shape),
                op.weight,
                stride=syn.stride,
                padding=syn.padding,
                dilation=syn.dilation,
                groups=syn.groups,
            ).reshape(s.shape[0], -1)
        a = (acc if op.exact else torch.round(acc)).to(torch.int64)
        a = shift(a, syn.weight_exp)
        return wrap_signed(a, op.wrap_bits) if op.wrap_bits else a

    @torch.inference_mode()
    def simulate(
        self,
        steps: int,
        bias: np.ndarray | torch.Tensor | None = None,
        input_spikes: np.ndarray | torch.Tensor | None = None,
        record: Iterable[str] | str = (),
        record_voltage: Iterable[str] | str = (),
        batch: int | None = None,
    ) -> RawTrace:
        """Run ``steps`` hardware steps.

        ``bias``: input-group bias mantissas ``[B, *shape]`` (default: the group's own
        ``bias_mant``); ``input_spikes``: ``[steps, B, *shape]`` spikes that replace the
        input group's dynamics. ``record``/``record_voltage``: group names (or "all")
        whose spikes / voltages (``v`` after reset, raw fixed point) are returned.
        """
        net = self.network
        names = [g.name for g in net.groups]
        rec = (
            set(names) if record == "all" else {record} if isinstance(record, str) else set(record)
        )
        rec_v = (
            set(names)
            if record_voltage == "all"
            else {record_voltage}
            if isinstance(record_voltage, str)
            else set(record_voltage)
        )
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
        if bias_t is not None:
            group_bias[inp.name] = (bias_t.reshape(B, -1) << inp.bias_exp).to(torch.int64)
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
        spk_rec: dict[str, list[torch.Tensor]] = {n: [] for n in rec}
        v_rec: dict[str, list[torch.Tensor]] = {n: [] for n in rec_v}
        groups = net.groups
        for t in range(steps):
            a_in = {n: z for n, z in zeros.items()}
            for op, ring in zip(self._ops, rings, strict=True):
                a_in[op.syn.dst] = a_in[op.syn.dst] + ring[t % op.syn.delay]
            spikes: dict[str, torch.Tensor] = {}
            for g in groups:
                if g.name == inp.name and spikes_t is not None:
                    s = spikes_t[t].reshape(B, -1) != 0
                else:
                    b = group_bias[g.name] if t >= g.bias_start_step else 0
                    safe = self._int32_safe[g.name]
                    a = a_in[g.name] if safe else wrap_signed(a_in[g.name], 32)
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

        def stack(items: list[torch.Tensor], shape: Sequence[int], dtype: Any) -> np.ndarray:
            if not items:
                return np.zeros((0, B, *shape), dtype=dtype)
            return torch.stack(items).reshape(len(items), B, *shape).cpu().numpy().astype(dtype)

        shapes = {g.name: g.shape for g in groups}
        return RawTrace(
            steps=steps,
            precision="fixed",
            counts={n: torch.stack(c).cpu().numpy().astype(np.int64) for n, c in counts.items()}
            if steps
            else {n: np.zeros((0, B), np.int64) for n in counts},
            spikes={n: stack(spk_rec[n], shapes[n], np.uint8) for n in spk_rec},
            voltages={n: stack(v_rec[n], shapes[n], np.int32) for n in v_rec},
        )

    def run_prepared(
        self, prepared: PreparedInputs, plan: RunPlan, batch_size: int | None
    ) -> RawTrace:
        """Simulate ``plan.hardware_steps`` for prepared inputs, in chunks of ``batch_size``."""
        size = batch_size or prepared.batch
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
                )
            )
        return RawTrace.concat(parts)


class EmuDeployed(Deployed):
    """A network compiled for ``loihi-emu``; ``run(inputs)``: images ``[B, C, H, W]``
    (networks with a host encoder), input bias mantissas ``[B, *shape]``, or input spike
    trains ``[S, B, *shape]`` (``input_mode="spikes"``)."""

    target_name = "loihi-emu"

    def __init__(self, network: LoihiNetwork, options: dict[str, Any]):
        super().__init__(options["timesteps"], options)
        self.network = network
        self.emulator = LoihiEmulator(network, options["device"])
        self.plan = plan_run(
            network, self.timesteps, options["align"], options["record"], options["record_voltage"]
        )
        self._user_record = list(self.plan.record) if options["record"] else []

    def run(self, inputs: Any) -> RunResult:
        with Stopwatch() as sw:
            prepared = prepare_inputs(
                self.network, inputs, self.options["input_mode"], "fixed", self.plan.hardware_steps
            )
            trace = self.emulator.run_prepared(prepared, self.plan, self.options["batch_size"])
        return assemble_result(
            self.network, self.plan, trace, self.target_name, sw.seconds, self._user_record
        )


@register_target("loihi-emu")
class LoihiEmuTarget(Target):
    """Bit-exact Loihi (lava-nc 0.10.0 fixed point) emulator in torch, CPU or CUDA."""

    description = (
        "bit-exact emulation of Lava's fixed-point Loihi LIF/Dense/Conv models (torch, CPU/CUDA)"
    )
    extra_options = {
        "precision": "'fixed' only (bit-exact)",
        "input_mode": "'auto' (images if the network has a host encoder, else input biases), 'image', 'bias' or 'spikes'",
        "quantization": QUANT_OPTION_HELP,
        "bias_schedule": BIAS_SCHEDULE_HELP,
    }

    def check(self, graph: Any) -> list[str]:
        resolved, problems = check_graph_common(graph)
        return problems

    def compile(self, graph: Any, **options: Any) -> EmuDeployed:
        opts = self.parse_options(
            options,
            {
                "precision": "fixed",
                "input_mode": "auto",
                "quantization": None,
                "bias_schedule": "network",
            },
        )
        require_fixed(parse_precision(opts["precision"]), self.name)
        resolved = resolve_graph(graph, opts["timesteps"], opts["quantization"])
        return EmuDeployed(apply_bias_schedule(resolved.network, opts["bias_schedule"]), opts)
