"""``loihi-emu``: the bit-exact Loihi emulator as a registered target (an adapter).

The emulator itself is :class:`hw_targets.loihi.emulator.LoihiEmulator`; this module
parses the target's options, turns the graph into a
:class:`~hw_targets.loihi.network.LoihiNetwork` (quantising NIR graphs) and runs it.
Results equal ``lava-sim`` fixed point bit for bit.

Speed: acyclic networks run layer by layer (``schedule="auto"``), each group only over
the steps its aligned window ``[depth, depth + T)`` and its consumers need; without a
``batch_size`` the batch runs in chunks of about 1 GiB of working set
(:meth:`~hw_targets.loihi.emulator.LoihiEmulator.auto_batch_size`). Neither changes
any result.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import torch

from hw_targets.base import Deployed, RunResult, Stopwatch, Target
from hw_targets.loihi.emulator import LoihiEmulator
from hw_targets.loihi.network import LoihiNetwork
from hw_targets.loihi.options import (
    BIAS_SCHEDULE_HELP,
    QUANT_OPTION_HELP,
    apply_bias_schedule,
    parse_precision,
    require_fixed,
)
from hw_targets.loihi.resolve import check_graph_argument, lower_to_network, resolve_graph
from hw_targets.loihi.run import RawTrace, assemble_result, plan_run, prepare_inputs
from hw_targets.registry import register_target


class EmuDeployed(Deployed):
    """A network compiled for ``loihi-emu``; ``run(inputs)``: images ``[B, C, H, W]``
    (networks with a host encoder), input bias mantissas ``[B, *shape]``, or input spike
    trains ``[S, B, *shape]`` (``input_mode="spikes"``)."""

    target_name = "loihi-emu"

    def __init__(self, network: LoihiNetwork, options: dict[str, Any]):
        super().__init__(options["timesteps"], options)
        self.network = network
        self.emulator = LoihiEmulator(network, options["device"], options["schedule"])
        self.plan = plan_run(
            network, self.timesteps, options["align"], options["record"], options["record_voltage"]
        )
        self._user_record = list(self.plan.record) if options["record"] else []

    def run(self, inputs: Any) -> RunResult:
        steps = self.plan.hardware_steps
        with Stopwatch() as sw:
            if isinstance(inputs, torch.Tensor):
                inputs = inputs.detach().cpu().numpy()
            arr = np.asarray(inputs)
            axis = self._batch_axis(arr)
            size = self.options["batch_size"] or self.emulator.auto_batch_size(steps)
            if axis is None or arr.shape[axis] <= size:
                pieces = [arr]
            else:  # encode and simulate chunk by chunk: bounded memory, same results
                pieces = [
                    arr[(slice(None),) * axis + (slice(lo, lo + size),)]
                    for lo in range(0, arr.shape[axis], size)
                ]
            traces = []
            for piece in pieces:
                prepared = prepare_inputs(
                    self.network, piece, self.options["input_mode"], "fixed", steps
                )
                traces.append(self.emulator.run_prepared(prepared, self.plan, size))
            trace = traces[0] if len(traces) == 1 else RawTrace.concat(traces)
        return assemble_result(
            self.network, self.plan, trace, self.target_name, sw.seconds, self._user_record
        )

    def _batch_axis(self, arr: np.ndarray) -> int | None:
        """The batch axis of batched inputs (1 for spike trains), None for anything else
        (one unbatched sample, or a malformed array that ``prepare_inputs`` rejects)."""
        mode = self.options["input_mode"]
        events = self.network.metadata.get("input_encoding") == "events"
        if mode in ("spikes", "events") or (mode == "auto" and events):
            return 1 if arr.ndim >= 2 else None
        group = self.network.group(self.network.input)
        batched = {len(group.shape) + 1}
        if self.network.encoder is not None:
            batched.add(len(self.network.encoder.input_shape) + 1)
        return 0 if arr.ndim in batched else None


@register_target("loihi-emu")
class LoihiEmuTarget(Target):
    """Bit-exact Loihi (lava-nc 0.10.0 fixed point) emulator in torch, CPU or CUDA."""

    description = (
        "bit-exact emulation of Lava's fixed-point Loihi LIF/Dense/Conv models (torch, CPU/CUDA)"
    )
    extra_options = {
        "precision": "'fixed' only (bit-exact)",
        "input_mode": "'auto' (input events for event-input networks, images if the network has a host "
        "encoder, else input biases), 'image', 'bias', 'spikes' (replace the input group's "
        "spikes) or 'events' ([T, B, *input_shape] spikes into the NIR Input node; NIR graphs "
        "are then quantised with input_encoding='events')",
        "quantization": QUANT_OPTION_HELP,
        "bias_schedule": BIAS_SCHEDULE_HELP,
        "schedule": "'auto' (layer by layer over time windows for acyclic networks, else step "
        "by step), 'layer' or 'step' (the reference loop); all give identical results",
    }
    lowered_form = "loihi-network"
    lowering_options = ("timesteps", "quantization")
    #: Defaults of the extra options.
    defaults: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {
            "precision": "fixed",
            "input_mode": "auto",
            "quantization": None,
            "bias_schedule": "network",
            "schedule": "auto",
        }
    )

    def check(self, graph: Any) -> list[str]:
        """Node types and structure of a NIR graph, the layers of a netx file (no quantisation)."""
        return check_graph_argument(graph).problems

    def lower(self, graph: Any, **options: Any) -> Any:
        """NIR graphs quantised to a LoihiNetwork (``timesteps``, ``quantization``)."""
        opts = self.parse_options(options, self.defaults)
        return lower_to_network(graph, opts["timesteps"], opts["quantization"], opts["input_mode"])

    def compile(self, graph: Any, **options: Any) -> EmuDeployed:
        opts = self.parse_options(options, self.defaults)
        require_fixed(parse_precision(opts["precision"]), self.name)
        resolved = resolve_graph(graph, opts["timesteps"], opts["quantization"], opts["input_mode"])
        return EmuDeployed(apply_bias_schedule(resolved.network, opts["bias_schedule"]), opts)
