"""The target API: ``check`` what a target cannot run, ``compile`` a graph, ``run`` inputs.

>>> from hw_targets.registry import get_target          # doctest: +SKIP
>>> target = get_target("loihi-emu")                    # doctest: +SKIP
>>> problems = target.check("model.nir")                # [] when it can run the graph
>>> deployed = target.compile("model.nir", timesteps=16)
>>> result = deployed.run(images)                       # RunResult
>>> result.scores.shape, result.spike_counts["body.lif1"].shape   # ([B, K], [B]); keys are NIR node names

A target is a small :class:`Target` subclass registered under a name with
:func:`hw_targets.registry.register_target`; ``compile`` returns a :class:`Deployed`
whose ``run`` returns a :class:`RunResult`. Every target accepts the
:data:`COMMON_OPTIONS`; a target lists its extra options in ``extra_options``. A graph
is a ``nir.NIRGraph``, a path to a NIR file, or (for the Loihi targets) a
:class:`~hw_targets.loihi.network.LoihiNetwork` or a path to a netx HDF5 file.

``check`` validates only (node types, shapes, options): it never quantises or runs. A
target may *lower* a graph to its own form (:meth:`Target.lower`; the Loihi targets
quantise NIR graphs to a ``LoihiNetwork``); ``compile`` of the lowered graph equals
``compile`` of the graph, so a caller that compiles one graph for several targets (the
parity report) lowers it once per form.

Time convention: ``timesteps`` is the number of *model* steps ``T``. Hardware targets
with per-layer synaptic delays run longer (``RunResult.hardware_steps``) and, with
``align=True`` (default), report every layer over its own window of ``T`` steps, so that
results are comparable across targets (a float torch target has ``hardware_steps == T``).
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

import numpy as np

from neurall_neuro.errors import ConfigError

#: What ``check``/``compile`` accept; see the module docstring.
GraphLike = Union["os.PathLike[str]", str, Any]

#: Options every target understands (name -> meaning).
COMMON_OPTIONS: dict[str, str] = {
    "timesteps": "number of model timesteps T per sample (required)",
    "device": "'cpu', 'cuda' or 'cuda:N' (where the target computes)",
    "batch_size": "samples per chunk (bounds memory; default: the whole batch)",
    "align": "report each layer over its own T-step window (default True)",
    "record": "names of layers whose full spike trains go into RunResult.spikes ('all' for every layer)",
    "record_voltage": "names of layers whose voltages go into RunResult.voltages",
}

#: Defaults of :data:`COMMON_OPTIONS` (``timesteps`` has none: it is required).
COMMON_DEFAULTS: dict[str, Any] = {
    "timesteps": None,
    "device": "cpu",
    "batch_size": None,
    "align": True,
    "record": None,
    "record_voltage": None,
}


@dataclass
class RunResult:
    """What one :meth:`Deployed.run` returns (numpy arrays, batch ``B``, ``T`` timesteps).

    ``scores``: class scores ``[B, K]`` (float, in the float model's units) if the graph
    has a readout, else None. ``output_spikes``: ``[T, B, *shape]`` (uint8) of the output
    layer. ``spike_counts``: per layer the number of spikes per sample ``[B]`` (int64)
    over its window. ``spikes`` / ``voltages``: full ``[T, B, *shape]`` traces of the
    layers asked for with ``record`` / ``record_voltage``.
    """

    target: str
    timesteps: int
    scores: np.ndarray | None
    output_spikes: np.ndarray
    spike_counts: dict[str, np.ndarray]
    wall_time_s: float
    hardware_steps: int | None = None
    spikes: dict[str, np.ndarray] = field(default_factory=dict)
    voltages: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return int(self.output_spikes.shape[1])

    def predictions(self) -> np.ndarray:
        """``argmax`` of the scores ``[B]``; ConfigError if the graph has no readout."""
        if self.scores is None:
            raise ConfigError("this result has no scores (the graph has no readout layer)")
        return np.argmax(self.scores, axis=1)


class Deployed(ABC):
    """A graph compiled for one target; ``run`` may be called repeatedly."""

    target_name: str = ""

    def __init__(self, timesteps: int, options: Mapping[str, Any]):
        self.timesteps = int(timesteps)
        self.options = dict(options)

    @abstractmethod
    def run(self, inputs: Any) -> RunResult:
        """Run a batch of inputs (see the target's documentation for their form)."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release resources (processes, device memory). Idempotent."""

    def __enter__(self) -> Deployed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Target(ABC):
    """A place a graph can run. Subclasses set ``name``, ``description`` and
    ``extra_options`` and implement :meth:`check` and :meth:`compile`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: Target-specific compile options (name -> meaning), besides COMMON_OPTIONS.
    extra_options: ClassVar[dict[str, str]] = {}
    #: Name of the form :meth:`lower` turns graphs into (None: ``lower`` changes nothing).
    #: Targets with the same form and equal :attr:`lowering_options` accept each other's
    #: lowered graphs.
    lowered_form: ClassVar[str | None] = None
    #: The compile options the result of :meth:`lower` depends on.
    lowering_options: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def check(self, graph: GraphLike) -> list[str]:
        """What this target cannot run in ``graph``, one message per problem ([] if none).

        Runs nothing: cheap structural checks only (node types, shapes, options; no
        quantisation, no simulation). Raises only for arguments of the wrong type.
        """

    def lower(self, graph: GraphLike, **options: Any) -> GraphLike:
        """``graph`` in the form ``compile`` consumes without converting it again
        (default: ``graph`` itself). ``compile(lower(g, **o), **o)`` equals
        ``compile(g, **o)``; the result depends only on :attr:`lowering_options`."""
        return graph

    @abstractmethod
    def compile(self, graph: GraphLike, **options: Any) -> Deployed:
        """Prepare ``graph`` for running; options: :data:`COMMON_OPTIONS` + ``extra_options``."""

    def valid_options(self) -> dict[str, str]:
        return {**COMMON_OPTIONS, **self.extra_options}

    def parse_options(
        self, options: Mapping[str, Any], defaults: Mapping[str, Any]
    ) -> dict[str, Any]:
        """:data:`COMMON_DEFAULTS` and the target's ``defaults`` (its extra options)
        updated with ``options``; ConfigError for unknown or missing ones."""
        valid = self.valid_options()
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ConfigError(
                f"target {self.name!r}: unknown option(s) {', '.join(unknown)}; valid options: "
                + "; ".join(f"{k} ({v})" for k, v in sorted(valid.items()))
            )
        merged = {**COMMON_DEFAULTS, **defaults, **options}
        steps = merged.get("timesteps")
        if (
            steps is None
            or isinstance(steps, bool)
            or not isinstance(steps, (int, np.integer))
            or steps < 1
        ):
            raise ConfigError(
                f"target {self.name!r}: option timesteps must be a positive int, got {steps!r}"
            )
        batch = merged.get("batch_size")
        if batch is not None and (
            isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1
        ):
            raise ConfigError(
                f"target {self.name!r}: option batch_size must be a positive int or None, got {batch!r}"
            )
        return merged

    def __repr__(self) -> str:
        return f"<target {self.name!r}: {self.description}>"


class Stopwatch:
    """Wall-clock timer: ``with Stopwatch() as sw: ...; sw.seconds``."""

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
