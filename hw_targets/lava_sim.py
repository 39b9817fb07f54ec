"""``lava-sim``: run a network in Lava's own process-based simulator (lava-nc 0.10.0).

``compile`` resolves the graph to a :class:`~conversion.loihi_network.LoihiNetwork`
(and checks it); ``run`` builds the Lava processes (see :mod:`hw_targets.lava_build`)
and runs them with ``Loihi2SimCfg(select_tag="fixed_pt")`` (bit-accurate models) or
``"floating_pt"`` (``precision="float"``: the same graph with the unquantised float
parameters).

* **Samples** run one after the other, and the process graph is **rebuilt for every
  sample**: Lava keeps state in every process (LIF u/v, the Dense/Conv/DelayDense
  buffers holding the last step's sums) and resetting it goes through ``Var.set``,
  which moves data element by element (~0.2 ms per value here), so a reset costs about
  as much as a rebuild of a small graph while a rebuild guarantees a clean state.
* **Bias schedule**: every group gets its bias from its ``bias_start_step`` on. The run
  is split into ``RunSteps`` chunks at those steps and the groups' ``bias_mant`` are
  set between chunks (a bias change takes effect at the next step: the bit-accurate
  LIF rescales its bias every step).
* **Recording**: spikes of every group and the voltages asked for go through
  :mod:`hw_targets.lava_procs.recorders` into memory-mapped files (``Var.get`` is too
  slow for whole spike trains).
* **Cleanup**: the runtime is always stopped, also on exceptions and
  ``KeyboardInterrupt``, so no Lava child process outlives a ``run`` call. After a
  failure inside a Lava process model, ``stop()`` would wait forever for runtime
  services that are gone; the run is torn down by killing the children instead, and
  the children's exceptions are raised as one :class:`TargetError`.

Lava is imported only when a graph is run, so the rest of the library works without it.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from conversion.loihi_network import LoihiNetwork
from hw_targets.base import Deployed, RunResult, Stopwatch, Target
from hw_targets.lava_build import (
    LavaGraph,
    build_netx_graph,
    build_process_graph,
    conv_problem,
    read_recordings,
)
from hw_targets.loihi_common import (
    BIAS_SCHEDULE_HELP,
    QUANT_OPTION_HELP,
    Precision,
    PreparedInputs,
    RawTrace,
    RunPlan,
    apply_bias_schedule,
    assemble_result,
    check_graph_common,
    parse_precision,
    plan_run,
    prepare_inputs,
    resolve_graph,
)
from hw_targets.registry import register_target
from neurall_neuro.errors import ConfigError, TargetError
from neurall_neuro.optional import require
from neurall_neuro.progress import track

BACKENDS = ("auto", "process", "netx")


def lava_problems(
    network: LoihiNetwork, backend: str, netx_path: Path | None, precision: Precision
) -> list[str]:
    """What the chosen backend cannot run (messages)."""
    problems: list[str] = []
    if backend == "netx":
        if netx_path is None:
            problems.append(
                "backend='netx' needs a netx file as the graph (it loads it with netx.hdf5.Network)"
            )
        if precision != "fixed":
            problems.append(
                "backend='netx' runs fixed point only (its neuron parameters are fixed-point values)"
            )
        return problems
    for syn in network.synapses:
        problem = conv_problem(network, syn) if precision == "fixed" else None
        if problem:
            problems.append(problem)
        if syn.kind == "dense" and syn.delay - 1 > 63:
            problems.append(
                f"synapse {syn.name!r}: delay {syn.delay} exceeds Lava DelayDense's 64 steps"
            )
    return problems


def run_sample(
    network: LoihiNetwork,
    backend: str,
    netx_path: Path | None,
    precision: Precision,
    plan: RunPlan,
    bias: np.ndarray | None,
    spikes: np.ndarray | None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float]:
    """Build, run (in bias-schedule chunks) and stop the Lava graph of one sample.

    Returns the recorded spikes and voltages and the seconds per step spent inside
    Lava's ``run`` calls after the first step (the first ``run`` call, one step, also
    compiles and starts the processes).
    """
    require("lava.magma", "lava", "the lava-sim target")
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    steps = plan.hardware_steps
    with tempfile.TemporaryDirectory(prefix="neurall-lava-") as tmp:
        workdir = Path(tmp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if backend == "netx":
                if netx_path is None:
                    raise TargetError("backend='netx' needs the path of the netx file")
                graph: LavaGraph = build_netx_graph(
                    netx_path, network, steps, workdir, bias, plan.record_voltage
                )
            else:
                graph = build_process_graph(
                    network, precision, steps, workdir, bias, spikes, plan.record_voltage
                )
        cfg = Loihi2SimCfg(select_tag="fixed_pt" if precision == "fixed" else "floating_pt")
        boundaries = sorted(
            {s for s, _, _ in graph.schedule if 0 < s < steps} | {min(1, steps), steps}
        )
        started = False
        run_s = 0.0
        try:
            done = 0
            for boundary in boundaries:
                for start, proc, value in graph.schedule:
                    if start == done and done > 0:
                        proc.bias_mant.set(
                            np.asarray(
                                value, dtype=np.float64 if precision == "float" else np.int64
                            )
                        )
                started = True
                condition = RunSteps(num_steps=boundary - done)
                t0 = time.perf_counter()
                graph.root.run(condition=condition, run_cfg=cfg)
                if done > 0:  # the first call (one step) also compiles and starts Lava
                    run_s += time.perf_counter() - t0
                done = boundary
        except BaseException as exc:
            failures = _abort(graph.root) if started else []
            if isinstance(exc, Exception) and failures:
                raise TargetError(
                    "Lava failed while running the network: " + " | ".join(failures)
                ) from exc
            raise
        if started:
            _stop(graph.root)
        spikes, volts = read_recordings(graph)
        return spikes, volts, run_s / max(steps - 1, 1)


def _stop(root: Any) -> None:
    try:
        root.stop()
    except Exception as exc:  # noqa: BLE001 - a failed stop is reported, not fatal
        warnings.warn(f"stopping the Lava runtime failed: {exc}", RuntimeWarning, stacklevel=2)


def _abort(root: Any) -> list[str]:
    """Tear a failed Lava run down without ``root.stop()`` and say what failed.

    After an exception inside a process model, Lava's runtime services are gone, and
    ``stop()`` would wait forever for their "terminated" answers. Instead: collect the
    child processes' exceptions, kill the ones still alive, shut the shared-memory
    manager and the watchdogs down. Returns the last line of each child's traceback.
    """
    runtime = getattr(root, "_runtime", None)
    infra = getattr(runtime, "_messaging_infrastructure", None)
    actors = list(getattr(infra, "actors", []))
    failures: list[str] = []
    for actor in actors:
        try:
            info = actor.exception
        except (OSError, ValueError):
            info = None
        if info:
            failures.append(str(info[1]).strip().splitlines()[-1])
    for actor in actors:
        try:
            if actor.is_alive():
                actor.kill()
        except ValueError:  # already joined and closed by Lava
            pass
    for cleanup in (
        getattr(infra, "stop", None),
        getattr(getattr(runtime, "_watchdog_manager", None), "stop", None),
    ):
        if cleanup is None:
            continue
        try:
            cleanup()
        except Exception as exc:  # noqa: BLE001 - best effort after a failure
            warnings.warn(f"cleaning up after a Lava failure: {exc}", RuntimeWarning, stacklevel=2)
    return list(dict.fromkeys(failures))


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
            trace = self._run_all(prepared)
        result = assemble_result(
            self.network, self.plan, trace, self.target_name, sw.seconds, self._user_record
        )
        # seconds per hardware step inside Lava's run calls (no build / start-up), per sample
        result.extra["lava_step_s"] = self.step_seconds / max(prepared.batch, 1)
        return result

    def _run_all(self, prepared: PreparedInputs) -> RawTrace:
        plan = self.plan
        per_sample: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = []
        self.step_seconds = 0.0
        for b in track(range(prepared.batch), f"lava-sim ({self.precision}) samples"):
            spikes_b, volts_b, run_s = run_sample(
                self.network,
                self.backend,
                self.netx_path,
                self.precision,
                plan,
                None if prepared.bias is None else prepared.bias[b],
                None if prepared.spikes is None else prepared.spikes[:, b],
            )
            per_sample.append((spikes_b, volts_b))
            self.step_seconds += run_s
        spike_groups = [g.name for g in self.network.groups if g.readout == "spikes"]
        counts = {
            n: np.stack(
                [s[n].reshape(plan.hardware_steps, -1).sum(axis=1) for s, _ in per_sample], axis=1
            ).astype(np.int64)
            for n in spike_groups
        }
        spikes = {
            n: np.stack([s[n] for s, _ in per_sample], axis=1).astype(np.uint8) for n in plan.record
        }
        volts = {n: np.stack([v[n] for _, v in per_sample], axis=1) for n in plan.record_voltage}
        return RawTrace(plan.hardware_steps, self.precision, counts, spikes, volts)


@register_target("lava-sim")
class LavaSimTarget(Target):
    """Lava's CPU simulator (process based; slow: keep networks and batches small)."""

    description = (
        "Lava process-based simulation (Loihi2SimCfg fixed_pt bit-accurate or floating_pt)"
    )
    extra_options = {
        "precision": "'fixed' (Lava's bit-accurate models) or 'float' (floating_pt models, unquantised parameters)",
        "backend": "'auto' (netx for netx files in fixed point, else process), 'process' or 'netx'",
        "input_mode": "'auto' (images if the network has a host encoder, else input biases), 'image', 'bias' or 'spikes'",
        "quantization": QUANT_OPTION_HELP,
        "bias_schedule": BIAS_SCHEDULE_HELP,
    }

    def check(self, graph: Any, backend: str = "auto", precision: str = "fixed") -> list[str]:
        resolved, problems = check_graph_common(graph)
        if resolved is None:
            return problems
        try:
            chosen = self._backend(backend, resolved.netx_path, parse_precision(precision))
        except ConfigError as exc:
            return [str(exc)]
        return lava_problems(
            resolved.network, chosen, resolved.netx_path, parse_precision(precision)
        )

    @staticmethod
    def _backend(backend: str, netx_path: Path | None, precision: Precision) -> str:
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
        if backend == "auto":
            return "netx" if netx_path is not None and precision == "fixed" else "process"
        return backend

    def compile(self, graph: Any, **options: Any) -> LavaDeployed:
        opts = self.parse_options(
            options,
            {
                "precision": "fixed",
                "backend": "auto",
                "input_mode": "auto",
                "quantization": None,
                "bias_schedule": "network",
            },
        )
        if str(opts["device"]) != "cpu":
            raise ConfigError(f"lava-sim runs on the CPU only; got device={opts['device']!r}")
        precision = parse_precision(opts["precision"])
        resolved = resolve_graph(graph, opts["timesteps"], opts["quantization"])
        network = apply_bias_schedule(resolved.network, opts["bias_schedule"])
        backend = self._backend(opts["backend"], resolved.netx_path, precision)
        problems = lava_problems(network, backend, resolved.netx_path, precision)
        if problems:
            raise TargetError("lava-sim cannot run this graph: " + "; ".join(problems))
        return LavaDeployed(network, resolved.netx_path, backend, opts)
