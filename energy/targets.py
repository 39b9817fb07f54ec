"""Per-neuron spike counts of a NIR graph run on a target (for :func:`energy.nir_counter.count_nir`).

``torch`` runs the graph on the floating-point NIR runtime (:mod:`conversion.nir_runtime`);
when the hardware-target registry (:mod:`hw_targets.registry`) has a ``torch`` target it is
used instead, like every other target (``loihi-emu``, ``lava-sim``, ...). A target run asks
for every layer's full spike train (``record="all"``) and sums it over time and samples,
which gives exact per-neuron counts. Layers a target reports only as per-sample totals
(``RunResult.spike_counts``) fall back to those totals (SynOps then use the mean fan-out;
the result says so).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from typing import Any

import nir
import numpy as np
import torch

from conversion.nir_graph import validate_graph
from energy.nir_counter import require_binary_events, spike_counts_from_runtime
from neurall_neuro.errors import NeurallError, TargetError


def _batches(
    images: torch.Tensor | Iterable[Any], batch_size: int, events: bool = False
) -> Iterable[torch.Tensor]:
    """Batches of ``images`` (``[N, ...]``), or of event streams ``[T, N, ...]`` split
    along the sample dimension (``events``)."""
    if isinstance(images, torch.Tensor):
        yield from images.split(batch_size, dim=1 if events else 0)
        return
    for item in images:
        yield item[0] if isinstance(item, tuple | list) else item


def add_input_events(totals: dict[str, Any], name: str, batch: torch.Tensor) -> None:
    """Add the per-position event counts of ``batch`` ``[T, B, *shape]`` to ``totals[name]``
    (the Input node's spikes)."""
    summed = batch.sum(dim=(0, 1)).to(torch.int64).cpu().numpy()
    totals[name] = totals[name] + summed if name in totals else summed


def _registry_has(name: str) -> bool:
    """Whether the hw_targets registry is importable and lists ``name``."""
    try:
        if importlib.util.find_spec("hw_targets.registry") is None:
            return False
        from hw_targets.registry import list_targets

        return name in list_targets()
    except (ImportError, NeurallError):
        return False


def spike_counts_on_target(
    graph: nir.NIRGraph,
    images: torch.Tensor | Iterable[Any],
    target: str = "torch",
    timesteps: int | None = None,
    batch_size: int = 32,
    device: str = "cpu",
    events: bool = False,
) -> tuple[dict[str, Any], int, list[str]]:
    """Run ``graph`` on ``target``; returns ``(spike counts per node, samples, notes)``.

    Counts are per-neuron arrays (summed over time and samples) where the target records
    spike trains, else per-node totals. ``events``: ``images`` are binary event streams
    ``[T, N, *input_shape]`` into the graph's Input node (the Loihi targets take them with
    ``input_mode="events"``); the Input node's per-position event counts are added under
    its name, so that its consumers are counted as ACs of those events.
    """
    if target == "torch" and not _registry_has("torch"):
        counts, samples = spike_counts_from_runtime(
            graph, images, timesteps, batch_size, device, events=events
        )
        return (
            dict(counts),
            samples,
            ["spike counts from the torch NIR runtime (conversion.nir_runtime)"],
        )
    if importlib.util.find_spec("hw_targets.registry") is None:
        raise TargetError(
            f"target {target!r} needs the hw_targets package, which is not importable"
        )
    try:
        from hw_targets.registry import get_target

        runner = get_target(target)
    except ImportError as exc:
        raise TargetError(
            f"target {target!r}: the hw_targets registry cannot be loaded ({exc})"
        ) from exc
    steps = timesteps
    if steps is None:
        from conversion.nir_io import graph_metadata

        steps = graph_metadata(graph).get("timesteps")
        if steps is None:
            raise TargetError("the graph's metadata has no 'timesteps'; pass timesteps")
    options: dict[str, Any] = {"input_mode": "events"} if events and target != "torch" else {}
    deployed = runner.compile(graph, timesteps=int(steps), device=device, record="all", **options)
    input_name = validate_graph(graph).flat.inputs[0]
    totals: dict[str, Any] = {}
    approximate: set[str] = set()
    samples = 0
    try:
        for batch in _batches(images, batch_size, events):
            if events:
                require_binary_events(batch)
            result = deployed.run(batch)
            if events and input_name not in result.spikes:  # targets that do not record it
                add_input_events(totals, input_name, batch)
            for name, trace in result.spikes.items():
                summed = np.asarray(trace).astype(np.int64).sum(axis=(0, 1))
                totals[name] = totals[name] + summed if name in totals else summed
            for name, per_sample in result.spike_counts.items():
                if name not in result.spikes:
                    approximate.add(name)
                    total = int(np.asarray(per_sample).sum())
                    totals[name] = totals.get(name, 0) + total
            samples += int(batch.shape[1 if events else 0])
    finally:
        deployed.close()
    notes = [f"spike counts from target {target!r}"]
    if approximate:
        notes.append(
            f"per-sample totals only (no spike trains) for: {', '.join(sorted(approximate))}"
        )
    return totals, samples, notes
