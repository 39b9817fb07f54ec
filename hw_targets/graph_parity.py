"""Parity of any NIR graph across targets: no torch reference model and no labels needed.

:mod:`hw_targets.parity` compares targets with the Norse SE-SNN of a checkpoint. A NIR
file from elsewhere, or a user's own model exported to NIR, has no such reference (and
often no class labels), so this report takes the ``torch`` target, i.e. the NIR runtime
that defines the graph's semantics (docs/export.md), as the reference and gives per
target:

* **output agreement** with the reference: of the predictions (argmax of the scores)
  when both have a readout, else of the output spike trains ``[T, B, *shape]``
  (the fraction of equal entries); **accuracy** only when labels and scores exist;
* per spiking layer: spikes per sample, firing rate (spikes / (neurons x T)) next to the
  reference's, the Pearson correlation of the per-sample spike counts with the
  reference's and the fraction of samples with identical counts;
* latency per sample, throughput and ``hardware_steps`` of ``Deployed.run``.

A target whose ``check`` finds problems is *skipped*, one that raises is *failed*; the
others still run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from conversion.nir_graph import validate_graph
from hw_targets.base import RunResult
from hw_targets.parity import (
    LoweredGraphs,
    count_correlation,
    format_fraction,
    format_latency,
    format_throughput,
)
from hw_targets.registry import get_target
from neurall_neuro.errors import NeurallError, TargetError
from neurall_neuro.progress import track

#: The target whose run is the reference (the NIR runtime).
REFERENCE_TARGET = "torch"


@dataclass
class GraphLayerParity:
    spikes_per_sample: float
    firing_rate: float | None
    reference_firing_rate: float | None
    count_correlation: float | None
    counts_equal_fraction: float | None


@dataclass
class GraphTargetParity:
    target: str
    status: str  # "ok", "skipped" or "failed"
    reason: str = ""
    n: int = 0
    agreement: float | None = None
    agreement_of: str | None = None  # "predictions" or "output spikes"
    accuracy: float | None = None
    latency_ms_per_sample: float | None = None
    throughput_img_per_s: float | None = None
    hardware_steps: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    layers: dict[str, GraphLayerParity] = field(default_factory=dict)


@dataclass
class GraphParityReport:
    timesteps: int
    n: int
    reference: str
    reference_accuracy: float | None
    reference_spikes_per_sample: dict[str, float]
    targets: list[GraphTargetParity]
    source: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _agreement(result: RunResult, reference: RunResult, n: int) -> tuple[float | None, str | None]:
    if result.scores is not None and reference.scores is not None:
        same = result.predictions() == reference.predictions()[:n]
        return float(same.mean()), "predictions"
    ours, ref = result.output_spikes, reference.output_spikes[:, :n]
    if ours.shape == ref.shape and ours.size:
        return float((ours == ref).mean()), "output spikes"
    return None, None


def _neurons(graph: Any) -> dict[str, int]:
    info = validate_graph(graph)
    return {name: int(np.prod(shapes[1])) for name, shapes in info.shapes.items()}


def graph_parity_report(
    graph: Any,
    inputs: torch.Tensor,
    targets: Sequence[str],
    timesteps: int,
    labels: torch.Tensor | None = None,
    target_options: Mapping[str, Mapping[str, Any]] | None = None,
    max_samples: Mapping[str, int] | None = None,
    source: Mapping[str, Any] | None = None,
    events: bool = False,
) -> GraphParityReport:
    """Run ``graph`` on the reference and every target (see the module docstring).

    ``inputs``: ``[B, *shape]`` (static, presented at every step) or ``[T, B, *shape]``
    events (``events=True``: the Loihi targets then take them with ``input_mode="events"``,
    into the graph's Input node). ``labels`` ``[B]``
    (optional) give accuracies when the graph has a readout. ``target_options``: compile
    options per target (``timesteps`` is set here); ``max_samples`` limits the inputs of
    slow targets (agreement is then computed on that prefix).
    """
    neurons = _neurons(graph)
    try:
        with get_target(REFERENCE_TARGET).compile(graph, timesteps=timesteps) as deployed:
            reference = deployed.run(inputs)
    except NeurallError as exc:
        raise TargetError(
            f"the reference ({REFERENCE_TARGET} target) cannot run the graph: {exc}"
        ) from exc
    labels_np = labels.numpy() if labels is not None else None
    reference_accuracy = None
    if labels_np is not None and reference.scores is not None:
        reference_accuracy = float((reference.predictions() == labels_np).mean())
    lowered = LoweredGraphs(graph)
    results = [
        _run_target(
            name,
            lowered,
            inputs,
            labels_np,
            reference,
            neurons,
            timesteps,
            {
                **({"input_mode": "events"} if events and name != REFERENCE_TARGET else {}),
                **(target_options or {}).get(name, {}),
            },
            (max_samples or {}).get(name),
            events,
        )
        for name in track(list(targets), "targets")
    ]
    return GraphParityReport(
        timesteps=timesteps,
        n=int(inputs.shape[1 if events else 0]),
        reference=REFERENCE_TARGET,
        reference_accuracy=reference_accuracy,
        reference_spikes_per_sample={
            k: float(v.mean()) for k, v in sorted(reference.spike_counts.items())
        },
        targets=results,
        source=dict(source or {}),
    )


def _run_target(
    name: str,
    lowered: LoweredGraphs,
    inputs: torch.Tensor,
    labels: np.ndarray | None,
    reference: RunResult,
    neurons: dict[str, int],
    timesteps: int,
    options: dict[str, Any],
    limit: int | None,
    events: bool = False,
) -> GraphTargetParity:
    target = get_target(name)
    problems = target.check(lowered.graph)
    if problems:
        return GraphTargetParity(name, "skipped", reason="; ".join(problems), options=options)
    batch = int(inputs.shape[1 if events else 0])
    n = min(limit or batch, batch)
    try:
        ready = lowered.get(target, {"timesteps": timesteps, **options})
        with target.compile(ready, timesteps=timesteps, **options) as deployed:
            result = deployed.run(inputs[:, :n] if events else inputs[:n])
    except Exception as exc:  # noqa: BLE001 - reported per target, the others still run
        return GraphTargetParity(
            name, "failed", reason=f"{type(exc).__name__}: {exc}", n=n, options=options
        )
    agreement, agreement_of = _agreement(result, reference, n)
    accuracy = None
    if labels is not None and result.scores is not None:
        accuracy = float((result.predictions() == labels[:n]).mean())
    layers = {}
    for node, counts in sorted(result.spike_counts.items()):
        size = neurons.get(node)
        ref = reference.spike_counts.get(node)
        ref = ref[:n] if ref is not None else None
        layers[node] = GraphLayerParity(
            spikes_per_sample=float(counts.mean()),
            firing_rate=float(counts.mean() / (size * timesteps)) if size else None,
            reference_firing_rate=float(ref.mean() / (size * timesteps))
            if ref is not None and size
            else None,
            count_correlation=count_correlation(counts, ref, (name, REFERENCE_TARGET))[0]
            if ref is not None
            else None,
            counts_equal_fraction=float((counts == ref).mean()) if ref is not None else None,
        )
    return GraphTargetParity(
        target=name,
        status="ok",
        n=n,
        agreement=agreement,
        agreement_of=agreement_of,
        accuracy=accuracy,
        latency_ms_per_sample=1e3 * result.wall_time_s / n,
        throughput_img_per_s=n / result.wall_time_s if result.wall_time_s > 0 else None,
        hardware_steps=result.hardware_steps,
        options=options,
        layers=layers,
    )


def render_graph_table(report: GraphParityReport) -> str:
    """A plain-text table: one row per target, then the per-layer spike counts."""
    head = (
        f"{'target':<12} {'status':<8} {'n':>4} {'accuracy':>9} {'agree':>7} {'of':<14} "
        f"{'latency':>9} {'throughput':>12}"
    )
    lines = [head, "-" * len(head)]
    lines.append(
        f"{report.reference + ' (ref)':<12} {'ref':<8} {report.n:>4} "
        f"{format_fraction(report.reference_accuracy):>9} {'':>7} {'':<14} {'':>9} {'':>12}"
    )
    for t in report.targets:
        if t.status != "ok":
            lines.append(f"{t.target:<12} {t.status:<8} {t.n:>4}  {t.reason[:70]}")
            continue
        lines.append(
            f"{t.target:<12} {t.status:<8} {t.n:>4} {format_fraction(t.accuracy):>9} "
            f"{format_fraction(t.agreement):>7} {t.agreement_of or '-':<14} "
            f"{format_latency(t.latency_ms_per_sample):>9} "
            f"{format_throughput(t.throughput_img_per_s):>12}"
        )
    lines.append("")
    lines.append("spikes per sample (reference | target: count, correlation with reference)")
    for layer, ref_count in report.reference_spikes_per_sample.items():
        cells = [f"{layer}: {ref_count:.1f}"]
        for t in report.targets:
            entry = t.layers.get(layer)
            if entry is not None:
                cells.append(
                    f"{t.target} {entry.spikes_per_sample:.1f} "
                    f"(r={format_fraction(entry.count_correlation)})"
                )
        lines.append("  " + " | ".join(cells))
    return "\n".join(lines)
