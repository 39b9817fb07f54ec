"""Run a :class:`~hw_targets.loihi.network.LoihiNetwork` in Lava's simulator (lava-nc 0.10.0).

:func:`run_samples` runs a batch one sample after the other; :func:`run_sample` builds
the process graph of one sample (:mod:`hw_targets.loihi.lava`), runs it with
``Loihi2SimCfg(select_tag="fixed_pt")`` (bit-accurate models) or ``"floating_pt"``,
and always stops it.

* The process graph is **rebuilt for every sample**, because in Lava 0.10 that is
  cheaper than reusing it. Lava keeps state in every process (LIF u/v, the
  Dense/Conv/DelayDense buffers holding the last step's sums); resetting it goes
  through ``Var.set``, which sends the data element by element (18 us per value here:
  about 15 s for the ~0.85 M state values of the shipped 64 px SE-SNN), while building,
  compiling, starting and stopping its graph takes about 1.6 s. Lava's own cost is its
  stepping: ~3 s per step for that network (283 k neurons, 14 steps, ~26 processes
  on 2 cores), ~0.25 s per step even for a tiny one; :class:`LavaTimings` reports each phase.
* **Bias schedule**: every group gets its bias from its ``bias_start_step`` on. The run
  is split into ``RunSteps`` chunks at those steps and the groups' ``bias_mant`` are
  set between chunks (a bias change takes effect at the next step: the bit-accurate
  LIF rescales its bias every step).
* **Cleanup**: the runtime is always stopped, also on exceptions and
  ``KeyboardInterrupt``, so no Lava child process outlives a run. After a failure
  inside a Lava process model, ``stop()`` would wait forever for runtime services that
  are gone; the run is torn down by killing the children instead, and the children's
  exceptions are raised as one :class:`~neurall_neuro.errors.TargetError`.
* **Ctrl-C** (:class:`InterruptGuard`, installed while samples run): Lava forks one
  process per process model and runtime service (26 for the SE-SNN), and a terminal
  sends SIGINT to all of them. The forked processes inherit a handler that ignores it
  (the parent tears them down), so they print no tracebacks; the parent defers the
  interrupt while Lava forks and starts its processes (an interrupt inside a fork
  handler would be swallowed and leave the parent waiting for children that died), then
  aborts the run and raises :class:`LavaInterrupted` (a ``KeyboardInterrupt`` saying
  how many samples had finished).
* **Hangs and crashes**: Lava has no watchdog (lava-nc/lava#178); a process that stops
  answering, or dies (SIGKILL, SIGBUS on a full /dev/shm), blocks the parent forever.
  Every blocking call (start, each run chunk, stop) is watched (:class:`CallLimits`):
  past its time limit Lava is torn down and :class:`LavaHung` raised, and
  :func:`run_samples` runs the sample again (``retries``); a dead Lava process raises
  :class:`LavaProcessDied` within a second.
* **Progress**: a line every few seconds within a long sample (step k of N), under the
  per-sample progress of :func:`run_samples`.

Lava is imported only here, when a graph runs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import numpy as np

from hw_targets.loihi.lava import (
    LavaGraph,
    build_netx_graph,
    build_process_graph,
    read_recordings,
)
from hw_targets.loihi.network import LoihiNetwork
from hw_targets.loihi.options import Precision
from hw_targets.loihi.run import PreparedInputs, RawTrace, RunPlan
from neurall_neuro.errors import TargetError
from neurall_neuro.optional import require
from neurall_neuro.progress import StepReporter, track


class LavaInterrupted(KeyboardInterrupt):
    """Ctrl-C (or another ``KeyboardInterrupt``) during a lava-sim run: ``done`` of
    ``total`` samples had finished; their results are dropped (the run raises instead of
    returning a partial batch). ``detail``: the original interrupt's message, if any."""

    def __init__(self, done: int, total: int, detail: str = ""):
        super().__init__(done, total, detail)
        self.done = done
        self.total = total
        self.detail = detail

    def __str__(self) -> str:
        text = f"lava-sim stopped after {self.done} of {self.total} samples"
        return f"{text}: {self.detail}" if self.detail else text


class InterruptGuard:
    """SIGINT handling while Lava runs (a context manager around the runs).

    Installed as the SIGINT handler of the calling (main) thread, it is inherited by
    every process Lava forks. There, i.e. in any process other than the one that
    installed it, SIGINT is ignored: the parent stops its children, and the children
    print no ``KeyboardInterrupt`` tracebacks. In the parent, SIGINT goes to the previous
    handler (normally: raise ``KeyboardInterrupt`` at once), except inside
    :meth:`deferred` blocks, where it is remembered and raised when the outermost block
    ends. Nothing is installed outside the main thread or when the previous handler is
    not a Python callable (``SIG_IGN``, ``SIG_DFL``): the guard then does nothing.
    Nested guards reuse the installed one.
    """

    def __init__(self) -> None:
        self._owner = os.getpid()
        self._previous: Any = None
        self._installed = False
        self._depth = 0
        self._pending = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._owner:  # a process forked by Lava: the parent stops it
            return
        if self._depth:
            self._pending = True
            return
        self._previous(signum, frame)

    def __enter__(self) -> InterruptGuard:
        current = signal.getsignal(signal.SIGINT)
        if isinstance(current, InterruptGuard):  # nested: share the installed guard
            return current
        if threading.current_thread() is threading.main_thread() and callable(current):
            self._previous = current
            signal.signal(signal.SIGINT, self)
            self._installed = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def deferred(self, raise_pending: bool = True) -> _Deferred:
        """A block during which SIGINT in this process is only remembered; at its end a
        remembered interrupt raises ``KeyboardInterrupt`` (if ``raise_pending`` and the
        block did not raise) or is dropped."""
        return _Deferred(self, raise_pending)


class _Deferred:
    def __init__(self, guard: InterruptGuard, raise_pending: bool):
        self.guard = guard
        self.raise_pending = raise_pending

    def __enter__(self) -> None:
        self.guard._depth += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        guard = self.guard
        guard._depth -= 1
        if guard._depth or not guard._pending:
            return
        guard._pending = False
        if exc_type is None and self.raise_pending:
            raise KeyboardInterrupt


@dataclass
class LavaTimings:
    """Seconds spent in each phase of Lava runs (summed over samples): ``build`` our process
    graph, ``compile`` (Lava's compiler), ``start`` (``create_runtime``: Lava forks its
    processes), ``run`` (inside ``run`` calls: Lava's own stepping), ``stop``."""

    build: float = 0.0
    compile: float = 0.0
    start: float = 0.0
    run: float = 0.0
    stop: float = 0.0

    def add(self, other: LavaTimings) -> None:
        for name, value in dataclasses.asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, float]:
        return {name: round(value, 4) for name, value in dataclasses.asdict(self).items()}


class LavaHung(TargetError):
    """A blocking Lava call (``phase``: start, run or stop) did not return within
    ``seconds``: Lava has no watchdog of its own (lava-nc/lava#178), so a process that
    stops answering would otherwise block the caller forever."""

    def __init__(self, phase: str, seconds: float):
        super().__init__(
            f"Lava did not return from {phase} within {seconds:.0f} s; its processes were "
            "stopped (raise the target option timeout_s if the network is this slow)"
        )
        self.phase = phase
        self.seconds = seconds

    def __reduce__(self) -> tuple:
        return LavaHung, (self.phase, self.seconds)


class LavaProcessDied(TargetError):
    """A process Lava forked died (``exitcodes``: its name -> exit status, negative for a
    signal, e.g. SIGBUS when the disk or /dev/shm is full) while the parent waited in
    ``phase``: Lava itself would wait for its answer forever."""

    def __init__(self, phase: str, exitcodes: dict[str, int]):
        died = ", ".join(f"{name} ({_describe_exit(code)})" for name, code in exitcodes.items())
        super().__init__(f"a Lava process died during {phase}: {died}; the run was stopped")
        self.phase = phase
        self.exitcodes = exitcodes

    def __reduce__(self) -> tuple:
        return LavaProcessDied, (self.phase, self.exitcodes)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class _Stopped(BaseException):
    """Raised by the SIGALRM handler inside a Lava call that ran past its limit or whose
    Lava processes died (a BaseException, so that Lava's own ``except Exception``
    clauses do not swallow it). ``exitcodes``: the dead processes, empty for a hang."""

    def __init__(self, exitcodes: dict[str, int]):
        super().__init__()
        self.exitcodes = exitcodes


def lava_processes(root: Any) -> list[Any]:
    """The processes Lava forked for ``root``'s runtime (empty before it exists)."""
    runtime = getattr(root, "_runtime", None)
    infra = getattr(runtime, "_messaging_infrastructure", None)
    return list(getattr(infra, "actors", []))


def _dead(processes: list[Any]) -> dict[str, int]:
    """Name -> exit status of the processes that ended with a non-zero status."""
    dead = {}
    for proc in processes:
        try:
            code = proc.exitcode
        except ValueError:  # already joined and closed by Lava
            continue
        if code:
            dead[proc.name] = code
    return dead


class CallLimits:
    """A watchdog for the blocking Lava calls of one sample.

    While a call runs, ``SIGALRM`` fires every :attr:`POLL_S` seconds (an interval timer
    is not inherited by the processes Lava forks) and checks two things:

    * **time**: a call's limit is ``max(minimum_s, SLACK x the seconds per step measured
      so far in this sample x the steps of the call)``, so slow networks are not cut off
      once their pace is known; past it: :class:`LavaHung`. No limit for ``minimum_s <= 0``.
    * **dead processes**: a Lava process that ended with a non-zero status (a crash, a
      signal) while the parent waits: :class:`LavaProcessDied` at once.

    Only in the main thread, where Python delivers signals; elsewhere calls run unwatched.
    """

    #: How many times slower than the measured pace a call may be before it counts as hung.
    SLACK = 20.0
    #: Seconds between checks.
    POLL_S = 1.0

    def __init__(self, minimum_s: float, processes: Callable[[], list[Any]]):
        self.minimum_s = minimum_s
        self.processes = processes
        self.step_s = 0.0

    def seconds(self, steps: int = 0) -> float:
        """The limit of a call of ``steps`` steps (inf without a limit)."""
        if self.minimum_s <= 0:
            return math.inf
        return max(self.minimum_s, self.SLACK * self.step_s * steps)

    @contextmanager
    def limit(self, phase: str, steps: int = 0) -> Iterator[None]:
        """Watch the block (see the class); ``phase`` names it in the errors."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        seconds = self.seconds(steps)
        deadline = time.monotonic() + seconds

        def check(signum: int, frame: FrameType | None) -> None:
            dead = _dead(self.processes())
            if dead or time.monotonic() >= deadline:
                raise _Stopped(dead)

        previous = signal.signal(signal.SIGALRM, check)
        try:
            interval = min(self.POLL_S, seconds)
            signal.setitimer(signal.ITIMER_REAL, interval, interval)
            try:
                yield
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _Stopped as stopped:
            if stopped.exitcodes:
                raise LavaProcessDied(phase, stopped.exitcodes) from None
            raise LavaHung(phase, seconds) from None
        finally:
            signal.signal(signal.SIGALRM, previous)


def run_sample(
    network: LoihiNetwork,
    backend: str,
    netx_path: Path | None,
    precision: Precision,
    plan: RunPlan,
    bias: np.ndarray | None,
    spikes: np.ndarray | None,
    timeout_s: float = 0.0,
    label: str = "lava-sim",
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float, LavaTimings]:
    """Build, run (in bias-schedule chunks) and stop the Lava graph of one sample.

    Returns the recorded spikes and voltages, the seconds per step spent inside Lava's
    ``run`` calls after the first step (the first ``run`` call, one step, also sets the
    freshly started processes going) and the time of each phase (:class:`LavaTimings`).
    The graph is compiled, then its runtime created (Lava forks its processes) with SIGINT
    deferred (:class:`InterruptGuard`). ``timeout_s``: the least time limit of each
    blocking Lava call (:class:`CallLimits`; 0: none); a call past its limit stops Lava
    and raises :class:`LavaHung`. Progress lines (``label``) every few seconds.
    """
    require("lava.magma", "lava", "the lava-sim target")
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    steps = plan.hardware_steps
    timings = LavaTimings()
    progress = StepReporter(label, steps)
    with InterruptGuard() as guard, tempfile.TemporaryDirectory(prefix="neurall-lava-") as tmp:
        workdir = Path(tmp)
        t0 = time.perf_counter()
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
        t1 = time.perf_counter()
        executable = graph.root.compile(cfg)  # no child processes yet: interruptible
        t2 = time.perf_counter()
        timings.build, timings.compile = t1 - t0, t2 - t1
        run_s = 0.0
        limits = CallLimits(timeout_s, lambda: lava_processes(graph.root))
        try:
            with guard.deferred(), limits.limit("start"):  # Lava forks and starts its processes
                graph.root.create_runtime(executable=executable)
            timings.start = time.perf_counter() - t2
            done = 0
            for boundary in boundaries:
                for start, proc, value in graph.schedule:
                    if start == done and done > 0:
                        proc.bias_mant.set(
                            np.asarray(
                                value, dtype=np.float64 if precision == "float" else np.int64
                            )
                        )
                condition = RunSteps(num_steps=boundary - done)
                t0 = time.perf_counter()
                with limits.limit(f"run (steps {done + 1}-{boundary} of {steps})", boundary - done):
                    graph.root.run(condition=condition)
                seconds = time.perf_counter() - t0
                timings.run += seconds
                limits.step_s = max(limits.step_s, seconds / (boundary - done))
                if done > 0:  # the first call (one step) also sets the processes going
                    run_s += seconds
                done = boundary
                progress.update(done)
        except BaseException as exc:
            with guard.deferred(raise_pending=False):  # a second Ctrl-C must not stop the cleanup
                failures = _abort(graph.root)
            if isinstance(exc, Exception) and failures:
                raise TargetError(
                    "Lava failed while running the network: " + " | ".join(failures)
                ) from exc
            raise
        t0 = time.perf_counter()
        try:
            with guard.deferred(), limits.limit("stop"):
                _stop(graph.root)
        except (LavaHung, LavaProcessDied):
            _abort(graph.root)
            raise
        timings.stop = time.perf_counter() - t0
        spikes, volts = read_recordings(graph)
        return spikes, volts, run_s / max(steps - 1, 1), timings


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
    manager and the watchdogs down, release the parent's channel threads and mark the
    runtime stopped (``Runtime.__del__`` would otherwise call ``stop()`` and wait for the
    killed services). Returns the last line of each child's traceback.
    """
    runtime = getattr(root, "_runtime", None)
    infra = getattr(runtime, "_messaging_infrastructure", None)
    actors = lava_processes(root)
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
    if runtime is not None:
        for port in list(getattr(runtime, "_open_ports", [])):
            try:
                port.join()
            except Exception:  # noqa: BLE001 - best effort: the peers are gone
                continue
        runtime._is_running = False
        runtime._is_started = False
    return list(dict.fromkeys(failures))


def run_samples(
    network: LoihiNetwork,
    backend: str,
    netx_path: Path | None,
    precision: Precision,
    plan: RunPlan,
    prepared: PreparedInputs,
    timeout_s: float = 0.0,
    retries: int = 0,
) -> tuple[RawTrace, float, LavaTimings]:
    """Run every sample of ``prepared`` (one Lava run each) and join them into one
    :class:`RawTrace`; also returns the summed seconds per step inside Lava's ``run``
    calls and the summed :class:`LavaTimings` (see :func:`run_sample`).

    A sample whose Lava run hangs (:class:`LavaHung`, limits from ``timeout_s``) is run
    again from a new process graph up to ``retries`` times, with a ``RuntimeWarning``
    each time (the runs are deterministic: a retry gives the result the hung run would
    have given). A ``KeyboardInterrupt`` (Ctrl-C) stops Lava and becomes
    :class:`LavaInterrupted`, which says how many samples had finished."""
    per_sample: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = []
    step_seconds = 0.0
    timings = LavaTimings()
    label = f"lava-sim ({precision})"
    with InterruptGuard():  # also covers the gaps between samples
        try:
            for b in track(range(prepared.batch), f"{label} samples"):
                for attempt in range(retries + 1):
                    try:
                        spikes_b, volts_b, run_s, sample_timings = run_sample(
                            network,
                            backend,
                            netx_path,
                            precision,
                            plan,
                            None if prepared.bias is None else prepared.bias[b],
                            None if prepared.spikes is None else prepared.spikes[:, b],
                            timeout_s,
                            f"{label} sample {b + 1}/{prepared.batch}",
                        )
                        break
                    except LavaHung as exc:
                        if attempt == retries:
                            raise
                        warnings.warn(
                            f"lava-sim sample {b + 1}: {exc}; running it again "
                            f"(attempt {attempt + 2} of {retries + 1})",
                            RuntimeWarning,
                            stacklevel=2,
                        )
                per_sample.append((spikes_b, volts_b))
                step_seconds += run_s
                timings.add(sample_timings)
        except KeyboardInterrupt as exc:
            if isinstance(exc, LavaInterrupted):
                raise
            raise LavaInterrupted(len(per_sample), prepared.batch, str(exc)) from None
    spike_groups = [g.name for g in network.groups if g.readout == "spikes"]
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
    trace = RawTrace(plan.hardware_steps, precision, counts, spikes, volts)
    return trace, step_seconds, timings
