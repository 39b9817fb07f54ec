"""Parity report: one exported SE-SNN, several targets, evidence that they agree.

For a batch of labelled images the report runs the Norse float model (the reference)
and every requested target on the same NIR graph and gives, per target:

* accuracy on the labels and **prediction agreement** with the Norse model;
* per layer: firing rate (spikes / (neurons x T)), the Pearson correlation of the
  per-sample spike counts with the Norse model's, and the fraction of samples whose
  count is identical;
* wall time per sample and throughput (images/s) of ``Deployed.run``.

Hardware targets with one synaptic delay per layer run ``T + depth`` steps; they report
every layer over its own window of ``T`` steps (``align=True``, see
:mod:`hw_targets.base`), so counts compare with the float model step for step.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hw_targets.registry import get_target
from neurall_neuro.figures import pyplot, save_figure
from neurall_neuro.progress import track


@dataclass
class LayerParity:
    firing_rate: float
    reference_firing_rate: float | None
    count_correlation: float | None
    counts_equal_fraction: float | None


@dataclass
class TargetParity:
    target: str
    status: str  # "ok", "skipped" or "failed"
    reason: str = ""
    n: int = 0
    accuracy: float | None = None
    agreement_with_norse: float | None = None
    latency_ms_per_sample: float | None = None
    throughput_img_per_s: float | None = None
    hardware_steps: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    layers: dict[str, LayerParity] = field(default_factory=dict)


@dataclass
class ParityReport:
    timesteps: int
    n: int
    reference_accuracy: float
    targets: list[TargetParity]
    source: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def reference_layer_names(model_spike_names: Sequence[str]) -> dict[str, str]:
    """Map the SE-SNN's recorded layers to NIR node names (``lif2`` -> ``body.lif2``,
    ``se3`` (the gated output) -> ``body.se3.and``)."""
    mapping = {}
    for name in model_spike_names:
        mapping[name] = f"body.{name}.and" if name.startswith("se") else f"body.{name}"
    return mapping


def _neurons(graph: Any, node: str) -> int | None:
    try:
        shape = graph.nodes[node].output_type["output"]
    except (KeyError, AttributeError, TypeError):
        return None
    return int(np.prod(shape))


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def parity_report(
    model: torch.nn.Module,
    graph: Any,
    images: torch.Tensor,
    labels: torch.Tensor,
    targets: Sequence[str],
    timesteps: int,
    target_options: dict[str, dict[str, Any]] | None = None,
    max_samples: dict[str, int] | None = None,
    source: dict[str, Any] | None = None,
) -> ParityReport:
    """Run the reference and every target; see the module docstring.

    ``max_samples`` limits the images for slow targets (e.g. ``{"lava-sim": 4}``);
    agreement is then computed on that prefix of the batch.
    """
    model.eval()
    with torch.no_grad():
        ref = model.run(images, timesteps=timesteps, record=True)
    ref_pred = ref.logits.argmax(1).numpy()
    labels_np = labels.numpy()
    names = reference_layer_names(list(ref.spikes))
    ref_counts = {
        names[k]: v.flatten(2).sum(dim=(0, 2)).numpy().astype(np.int64)
        for k, v in ref.spikes.items()
    }
    results = []
    for name in track(list(targets), "targets"):
        results.append(
            _run_target(
                name,
                graph,
                images,
                labels_np,
                ref_pred,
                ref_counts,
                timesteps,
                (target_options or {}).get(name, {}),
                (max_samples or {}).get(name),
            )
        )
    return ParityReport(
        timesteps=timesteps,
        n=len(labels_np),
        reference_accuracy=float((ref_pred == labels_np).mean()),
        targets=results,
        source=dict(source or {}),
    )


def _run_target(
    name: str,
    graph: Any,
    images: torch.Tensor,
    labels: np.ndarray,
    ref_pred: np.ndarray,
    ref_counts: dict[str, np.ndarray],
    timesteps: int,
    options: dict[str, Any],
    limit: int | None,
) -> TargetParity:
    target = get_target(name)
    problems = target.check(graph)
    if problems:
        return TargetParity(name, "skipped", reason="; ".join(problems), options=options)
    n = min(limit or len(labels), len(labels))
    try:
        with target.compile(graph, timesteps=timesteps, **options) as deployed:
            result = deployed.run(images[:n])
    except Exception as exc:  # noqa: BLE001 - reported per target, the others still run
        return TargetParity(
            name, "failed", reason=f"{type(exc).__name__}: {exc}", n=n, options=options
        )
    pred = result.predictions()
    layers = {}
    for node, counts in result.spike_counts.items():
        neurons = _neurons(graph, node)
        rate = float(counts.mean() / (neurons * timesteps)) if neurons else float("nan")
        ref = ref_counts.get(node)
        layers[node] = LayerParity(
            firing_rate=rate,
            reference_firing_rate=float(ref[:n].mean() / (neurons * timesteps))
            if ref is not None and neurons
            else None,
            count_correlation=_correlation(counts.astype(float), ref[:n].astype(float))
            if ref is not None
            else None,
            counts_equal_fraction=float((counts == ref[:n]).mean()) if ref is not None else None,
        )
    return TargetParity(
        target=name,
        status="ok",
        n=n,
        accuracy=float((pred == labels[:n]).mean()),
        agreement_with_norse=float((pred == ref_pred[:n]).mean()),
        latency_ms_per_sample=1e3 * result.wall_time_s / n,
        throughput_img_per_s=n / result.wall_time_s if result.wall_time_s > 0 else None,
        hardware_steps=result.hardware_steps,
        options=options,
        layers=layers,
    )


def render_table(report: ParityReport) -> str:
    """A plain-text table (also used in the demo's report)."""
    head = f"{'target':<12} {'status':<8} {'n':>4} {'accuracy':>9} {'agree':>7} {'ms/img':>9} {'img/s':>9}"
    lines = [head, "-" * len(head)]
    lines.append(
        f"{'norse':<12} {'ref':<8} {report.n:>4} {report.reference_accuracy:>9.3f} {1.0:>7.3f} {'':>9} {'':>9}"
    )
    for t in report.targets:
        if t.status != "ok":
            lines.append(f"{t.target:<12} {t.status:<8} {t.n:>4}  {t.reason[:70]}")
            continue
        lines.append(
            f"{t.target:<12} {t.status:<8} {t.n:>4} {t.accuracy:>9.3f} {t.agreement_with_norse:>7.3f} "
            f"{t.latency_ms_per_sample:>9.2f} {t.throughput_img_per_s or 0:>9.1f}"
        )
    return "\n".join(lines)


def plot_report(report: ParityReport, path: str | Path) -> Path:
    """Per-layer firing rates of every target next to the Norse reference (PNG)."""
    plt = pyplot()

    ok = [t for t in report.targets if t.status == "ok"]
    layers: list[str] = []
    for t in ok:
        layers += [
            n
            for n, lp in t.layers.items()
            if lp.reference_firing_rate is not None and n not in layers
        ]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(layers) + 2), 4))
    width = 0.8 / (len(ok) + 1)
    x = np.arange(len(layers))
    ref = [
        next((t.layers[n].reference_firing_rate for t in ok if n in t.layers), 0.0) for n in layers
    ]
    ax.bar(x, ref, width, label="norse (reference)")
    for i, t in enumerate(ok, start=1):
        ax.bar(
            x + i * width,
            [t.layers[n].firing_rate if n in t.layers else 0.0 for n in layers],
            width,
            label=f"{t.target} (agree {t.agreement_with_norse:.0%})",
        )
    ax.set_xticks(x + width * len(ok) / 2)
    ax.set_xticklabels([n.replace("body.", "") for n in layers], rotation=30, ha="right")
    ax.set_ylabel("firing rate (spikes / neuron / step)")
    ax.set_title(f"Parity across targets (n={report.n}, T={report.timesteps})")
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=120)
