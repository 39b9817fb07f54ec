"""``lava-sim``: Lava's own process-based simulator (lava-nc 0.10.0) as a registered target.

An adapter: ``compile`` turns the graph into a
:class:`~hw_targets.loihi.network.LoihiNetwork` (quantising NIR graphs), chooses the
backend and checks that it can build the network (:mod:`hw_targets.loihi.lava`);
``run`` runs every sample in Lava (:mod:`hw_targets.loihi.lava_runtime`: the process
graph is rebuilt per sample, bias schedules are applied between ``RunSteps`` chunks,
Lava is always stopped) with ``Loihi2SimCfg(select_tag="fixed_pt")`` (bit-accurate
models) or ``"floating_pt"`` (``precision="float"``: the same graph with the
unquantised float parameters). Spikes and voltages are recorded through
:mod:`hw_targets.loihi.lava_procs.recorders` into memory-mapped files.

Every blocking Lava call has a time limit (option ``timeout_s``); a hung sample is run
again (``retries``), else :class:`~hw_targets.loihi.lava_runtime.LavaHung` is raised.
``RunResult.extra["lava_phases_s"]`` says where the time went (build, compile, start,
run, stop). Ctrl-C during ``run`` stops Lava (its forked processes ignore SIGINT and are torn down
by the parent) and raises :class:`~hw_targets.loihi.lava_runtime.LavaInterrupted`, a
``KeyboardInterrupt`` saying how many samples had finished.

Lava is imported only when a graph is run, so the rest of the library works without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from hw_targets.base import Deployed, RunResult, Stopwatch, Target
from hw_targets.loihi.lava import choose_backend, lava_problems
from hw_targets.loihi.lava_runtime import run_samples
from hw_targets.loihi.network import LoihiNetwork
from hw_targets.loihi.options import (
    BIAS_SCHEDULE_HELP,
    QUANT_OPTION_HELP,
    Precision,
    apply_bias_schedule,
    parse_precision,
)
from hw_targets.loihi.resolve import check_graph_argument, lower_to_network, resolve_graph
from hw_targets.loihi.run import assemble_result, plan_run, prepare_inputs
from hw_targets.registry import register_target
from neurall_neuro.errors import ConfigError, TargetError


class LavaDeployed(Deployed):
    """A network prepared for ``lava-sim``; each ``run`` builds and stops Lava per sample."""

    target_name = "lava-sim"

    def __init__(
        self, network: LoihiNetwork, netx_path: Path | None, backend: str, options: dict[str, Any]
    ):
        super().__init__(options["timesteps"], options)
        self.network = network
        self.netx_path = netx_path
        self.backend = backend
        self.precision: Precision = parse_precision(options["precision"])
        self.plan = plan_run(
            network, self.timesteps, options["align"], options["record"], options["record_voltage"]
        )
        self._user_record = list(self.plan.record) if options["record"] else []
        self.step_seconds = 0.0

    def run(self, inputs: Any) -> RunResult:
        with Stopwatch() as sw:
            prepared = prepare_inputs(
                self.network,
                inputs,
                self.options["input_mode"],
                self.precision,
                self.plan.hardware_steps,
            )
            if prepared.spikes is not None and self.backend == "netx":
                raise TargetError("backend='netx' cannot take input spikes; use backend='process'")
            trace, self.step_seconds, timings = run_samples(
                self.network,
                self.backend,
                self.netx_path,
                self.precision,
                self.plan,
                prepared,
                self.options["timeout_s"],
                self.options["retries"],
            )
        result = assemble_result(
            self.network, self.plan, trace, self.target_name, sw.seconds, self._user_record
        )
        # seconds per hardware step inside Lava's run calls (no build / start-up), per sample
        result.extra["lava_step_s"] = self.step_seconds / max(prepared.batch, 1)
        # seconds in each phase (build, compile, start, run, stop), summed over samples
        result.extra["lava_phases_s"] = timings.as_dict()
        return result


def _check_limits(timeout_s: Any, retries: Any) -> None:
    """ConfigError unless ``timeout_s`` is a number >= 0 and ``retries`` an int >= 0."""
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or timeout_s < 0:
        raise ConfigError(
            f"lava-sim: timeout_s must be seconds >= 0 (0: no limit), got {timeout_s!r}"
        )
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"lava-sim: retries must be an int >= 0, got {retries!r}")


@register_target("lava-sim")
class LavaSimTarget(Target):
    """Lava's CPU simulator (process based; slow: keep networks and batches small)."""

    description = (
        "Lava process-based simulation (Loihi2SimCfg fixed_pt bit-accurate or floating_pt)"
    )
    extra_options = {
        "precision": "'fixed' (Lava's bit-accurate models) or 'float' (floating_pt models, unquantised parameters)",
        "backend": "'auto' (netx for netx files in fixed point, else process), 'process' or 'netx'",
        "input_mode": "'auto' (input events for event-input networks, images if the network has a host "
        "encoder, else input biases), 'image', 'bias', 'spikes' (replace the input group's "
        "spikes) or 'events' ([T, B, *input_shape] spikes into the NIR Input node; NIR graphs "
        "are then quantised with input_encoding='events')",
        "quantization": QUANT_OPTION_HELP,
        "bias_schedule": BIAS_SCHEDULE_HELP,
        "timeout_s": "least time limit in seconds of each blocking Lava call (start, a run chunk, "
        "stop; longer for chunks once the pace per step is known); past it Lava is stopped and "
        "LavaHung raised; 0: no limit (default 600)",
        "retries": "how many times a sample whose Lava run hung is run again (default 1)",
    }
    lowered_form = "loihi-network"
    lowering_options = ("timesteps", "quantization")
    #: Defaults of the extra options.
    defaults: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {
            "precision": "fixed",
            "backend": "auto",
            "input_mode": "auto",
            "quantization": None,
            "bias_schedule": "network",
            "timeout_s": 600.0,
            "retries": 1,
        }
    )

    def check(self, graph: Any, backend: str = "auto", precision: str = "fixed") -> list[str]:
        """The structural checks of ``loihi-emu`` plus what ``backend`` cannot build (the
        synapses of NIR graphs are checked by ``compile``, once they are quantised)."""
        found = check_graph_argument(graph)
        if found.problems:
            return found.problems
        try:
            chosen_precision = parse_precision(precision)
            chosen = choose_backend(backend, found.netx_path, chosen_precision)
        except ConfigError as exc:
            return [str(exc)]
        return lava_problems(found.network, chosen, found.netx_path, chosen_precision)

    def lower(self, graph: Any, **options: Any) -> Any:
        """NIR graphs quantised to a LoihiNetwork; netx paths stay paths (netx backend)."""
        opts = self.parse_options(options, self.defaults)
        return lower_to_network(graph, opts["timesteps"], opts["quantization"], opts["input_mode"])

    def compile(self, graph: Any, **options: Any) -> LavaDeployed:
        opts = self.parse_options(options, self.defaults)
        if str(opts["device"]) != "cpu":
            raise ConfigError(f"lava-sim runs on the CPU only; got device={opts['device']!r}")
        precision = parse_precision(opts["precision"])
        _check_limits(opts["timeout_s"], opts["retries"])
        resolved = resolve_graph(graph, opts["timesteps"], opts["quantization"], opts["input_mode"])
        network = apply_bias_schedule(resolved.network, opts["bias_schedule"])
        backend = choose_backend(opts["backend"], resolved.netx_path, precision)
        problems = lava_problems(network, backend, resolved.netx_path, precision)
        if problems:
            raise TargetError("lava-sim cannot run this graph: " + "; ".join(problems))
        return LavaDeployed(network, resolved.netx_path, backend, opts)
