"""Parity report: one exported SE-SNN, several targets, evidence that they agree.

For a batch of labelled images the report runs the Norse float model (the reference)
on every image and every requested target on the same NIR graph. A slow target may run
only the first ``max_samples`` images; every number below states the images it is
computed on, and a comparison of two runs always uses the images **both** ran (the
first ``min(n_a, n_b)``: targets run a prefix of the batch).

* Per target (:class:`TargetParity`, on the ``n`` images it ran, against Norse on the
  same images): accuracy, **prediction agreement** with Norse, per layer the firing rate
  ``spikes / (neurons x T)`` next to Norse's, the Pearson correlation of the per-sample
  spike counts with Norse's and the fraction of samples whose count is identical;
  latency per sample and throughput of ``Deployed.run``.
* Per pair of targets that ran (:class:`PairParity`, on the images both ran):
  prediction agreement and per layer both firing rates, their difference, the count
  correlation and the fraction of identical counts (e.g. ``loihi-emu`` against
  ``lava-sim`` on the few images Lava simulated).
* :class:`SharedImages`: firing rates of Norse and every target on the images all of
  them ran; the figure (:func:`plot_report`) draws them next to the all-images rates.

A statistic that means nothing is ``None`` (``null`` in JSON, ``n/a`` in the table) and
its reason is in the record's ``not_applicable`` (field -> reason): a correlation over
fewer than :data:`MIN_CORRELATION_SAMPLES` samples or over counts that do not vary, an
agreement or fraction over no images, a firing rate of a layer whose size is unknown.

Hardware targets with one synaptic delay per layer run ``T + depth`` steps; they report
every layer over its own window of ``T`` steps (``align=True``, see
:mod:`hw_targets.base`), so counts compare with the float model step for step.

Each target is checked (cheap, structural) and compiled once. The graph is lowered once
per lowered form (:meth:`hw_targets.base.Target.lower`): ``loihi-emu`` and ``lava-sim``
with the same quantisation options share one quantised network.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hw_targets.base import GraphLike, Target
from hw_targets.registry import get_target
from neurall_neuro.errors import UnknownNameError
from neurall_neuro.figures import pyplot, save_figure
from neurall_neuro.progress import track

#: Fewest samples over which a Pearson correlation of spike counts is reported (with two
#: samples it is always +-1, whatever the counts).
MIN_CORRELATION_SAMPLES = 3
#: Name of the reference (the Norse float model) in tables, figures and ``SharedImages``.
REFERENCE = "norse"

#: A statistic, or None and the reason why it means nothing here.
Stat = tuple[float | None, str | None]


@dataclass
class LayerParity:
    """One layer of one target against Norse, on the images the target ran."""

    firing_rate: float | None
    reference_firing_rate: float | None
    count_correlation: float | None
    counts_equal_fraction: float | None
    not_applicable: dict[str, str] = field(default_factory=dict)


@dataclass
class TargetParity:
    """One target: ``n`` is the number of images it ran (the first ``n`` of the batch)."""

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
    not_applicable: dict[str, str] = field(default_factory=dict)


@dataclass
class LayerComparison:
    """One layer compared between two targets on the images both ran.

    ``firing_rates``: target -> rate; ``firing_rate_delta``: first target's rate minus
    the second's (:attr:`PairParity.targets` order).
    """

    firing_rates: dict[str, float | None]
    firing_rate_delta: float | None
    count_correlation: float | None
    counts_equal_fraction: float | None
    not_applicable: dict[str, str] = field(default_factory=dict)


@dataclass
class PairParity:
    """Two targets compared on the ``n`` images both ran (the first ``n`` of the batch)."""

    targets: list[str]
    n: int
    prediction_agreement: float | None
    layers: dict[str, LayerComparison] = field(default_factory=dict)
    not_applicable: dict[str, str] = field(default_factory=dict)


@dataclass
class SharedImages:
    """Norse and every target that ran, on the ``n`` images all of them ran.

    ``firing_rates``: layer -> {``"norse"`` or target -> rate};
    ``agreement_with_norse``: target -> agreement on these images.
    """

    n: int
    targets: list[str]
    agreement_with_norse: dict[str, float | None]
    firing_rates: dict[str, dict[str, float | None]]
    not_applicable: dict[str, str] = field(default_factory=dict)


@dataclass
class ParityReport:
    """``n`` images (Norse ran all of them); ``reference_firing_rates``: Norse per layer
    over all ``n``; ``targets`` in the order asked; ``comparisons`` every pair of
    targets that ran; ``shared`` the images all of them ran (None if no target ran);
    ``not_applicable`` the reasons for n/a reference values."""

    timesteps: int
    n: int
    reference_accuracy: float | None
    targets: list[TargetParity]
    source: dict[str, Any] = field(default_factory=dict)
    reference_firing_rates: dict[str, float | None] = field(default_factory=dict)
    comparisons: list[PairParity] = field(default_factory=list)
    shared: SharedImages | None = None
    not_applicable: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParityReport:
        """The report of :meth:`to_dict` (e.g. a ``parity.json`` read back, to redraw it)."""
        targets = [
            TargetParity(**{**t, "layers": {k: LayerParity(**v) for k, v in t["layers"].items()}})
            for t in data["targets"]
        ]
        pairs = [
            PairParity(**{**p, "layers": {k: LayerComparison(**v) for k, v in p["layers"].items()}})
            for p in data.get("comparisons", [])
        ]
        shared = data.get("shared")
        return cls(
            **{
                **data,
                "targets": targets,
                "comparisons": pairs,
                "shared": SharedImages(**shared) if shared is not None else None,
            }
        )

    def target(self, name: str) -> TargetParity:
        """The entry of target ``name`` (UnknownNameError listing the report's targets)."""
        for entry in self.targets:
            if entry.target == name:
                return entry
        raise UnknownNameError("target in this report", name, [t.target for t in self.targets])

    def comparison(self, a: str, b: str) -> PairParity:
        """The comparison of targets ``a`` and ``b``, in either order (UnknownNameError
        listing the compared pairs if there is none)."""
        for pair in self.comparisons:
            if set(pair.targets) == {a, b}:
                return pair
        raise UnknownNameError(
            "comparison", f"{a} vs {b}", [" vs ".join(p.targets) for p in self.comparisons]
        )


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


def _same_option(a: Any, b: Any) -> bool:
    """Equality of option values, arrays and tensors included (compared elementwise)."""
    if a is b:
        return True
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same_option(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_option(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (np.ndarray, torch.Tensor)) or isinstance(b, (np.ndarray, torch.Tensor)):
        x, y = (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v for v in (a, b))
        return bool(np.array_equal(np.asarray(x), np.asarray(y)))
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


class LoweredGraphs:
    """One graph lowered at most once per (lowered form, lowering options).

    ``get(target, options)`` returns ``target.lower(graph, **options)``, or the graph
    lowered earlier for a target of the same ``lowered_form`` with equal values of the
    ``lowering_options`` (the graph itself for targets without a lowered form).
    """

    def __init__(self, graph: GraphLike):
        self.graph = graph
        self._lowered: list[tuple[str, dict[str, Any], GraphLike]] = []

    def get(self, target: Target, options: Mapping[str, Any]) -> GraphLike:
        form = target.lowered_form
        if form is None:
            return self.graph
        key = {name: options.get(name) for name in target.lowering_options}
        for done_form, done_key, lowered in self._lowered:
            if done_form == form and _same_option(done_key, key):
                return lowered
        lowered = target.lower(self.graph, **options)
        self._lowered.append((form, key, lowered))
        return lowered


# --- statistics: each returns (value, None) or (None, why it means nothing) ----------------


def count_correlation(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> Stat:
    """Pearson correlation of two runs' per-sample spike counts ``a``, ``b`` (same images).

    ``r = cov(a, b) / (std(a) std(b))``; n/a with fewer than
    :data:`MIN_CORRELATION_SAMPLES` samples or when either run's counts do not vary.
    """
    if a.size < MIN_CORRELATION_SAMPLES:
        return None, (
            f"{a.size} sample{'s' if a.size != 1 else ''}; a correlation needs at least "
            f"{MIN_CORRELATION_SAMPLES}"
        )
    flat = [name for name, x in zip(names, (a, b), strict=True) if np.std(x) == 0]
    if flat:
        values = ", ".join(
            f"{name}: every sample {int(x[0])}"
            for name, x in zip(names, (a, b), strict=True)
            if name in flat
        )
        return None, f"zero variance ({values})"
    return float(np.corrcoef(a.astype(float), b.astype(float))[0, 1]), None


def equal_fraction(a: np.ndarray, b: np.ndarray, what: str) -> Stat:
    """Fraction of positions where ``a == b`` (n/a over no samples)."""
    if a.size == 0:
        return None, f"no images: {what} over 0 images"
    return float(np.mean(a == b)), None


def firing_rate(counts: np.ndarray, neurons: int | None, timesteps: int, layer: str) -> Stat:
    """``mean(counts) / (neurons T)``: spikes per neuron per step over the samples."""
    if neurons is None:
        return None, f"the number of neurons of {layer!r} is unknown (not a node of the graph)"
    if counts.size == 0:
        return None, "no images"
    return float(counts.mean() / (neurons * timesteps)), None


def _keep(na: dict[str, str], key: str, stat: Stat) -> float | None:
    """The value of ``stat``; its reason (if n/a) goes to ``na[key]``."""
    value, reason = stat
    if reason is not None:
        na[key] = reason
    return value


@dataclass
class _Run:
    """What the comparisons need of one run (kept in memory, not in the report)."""

    n: int
    predictions: np.ndarray
    counts: dict[str, np.ndarray]


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

    ``max_samples`` limits the images for slow targets (e.g. ``{"lava-sim": 4}``): such a
    target runs the first ``max_samples`` images, and everything comparing it with Norse
    or another target uses those images only.
    """
    model.eval()
    with torch.no_grad():  # the fast inference path where there is one: identical spikes
        runner = model.to_inference() if hasattr(model, "to_inference") else model
        ref = runner.run(images, timesteps=timesteps, record=True)
    ref_pred = ref.logits.argmax(1).numpy()
    labels_np = labels.numpy()
    names = reference_layer_names(list(ref.spikes))
    ref_counts = {
        names[k]: v.flatten(2).sum(dim=(0, 2)).numpy().astype(np.int64)
        for k, v in ref.spikes.items()
    }
    reference = _Run(len(labels_np), ref_pred, ref_counts)
    results: list[TargetParity] = []
    runs: dict[str, _Run] = {}
    lowered = LoweredGraphs(graph)
    for name in track(list(targets), "targets"):
        entry, run = _run_target(
            name,
            lowered,
            images,
            labels_np,
            reference,
            timesteps,
            (target_options or {}).get(name, {}),
            (max_samples or {}).get(name),
        )
        results.append(entry)
        if run is not None:
            runs[name] = run
    neurons = {
        layer: _neurons(graph, layer) for run in (reference, *runs.values()) for layer in run.counts
    }
    ref_na: dict[str, str] = {}
    return ParityReport(
        timesteps=timesteps,
        n=len(labels_np),
        reference_accuracy=_keep(
            ref_na, "reference_accuracy", equal_fraction(ref_pred, labels_np, "accuracy")
        ),
        targets=results,
        source=dict(source or {}),
        reference_firing_rates={
            layer: _keep(
                ref_na,
                f"reference_firing_rates.{layer}",
                firing_rate(counts, neurons[layer], timesteps, layer),
            )
            for layer, counts in ref_counts.items()
        },
        comparisons=[
            _compare(a, runs[a], b, runs[b], neurons, timesteps) for a, b in combinations(runs, 2)
        ],
        shared=_shared(reference, runs, neurons, timesteps) if runs else None,
        not_applicable=ref_na,
    )


def _run_target(
    name: str,
    lowered: LoweredGraphs,
    images: torch.Tensor,
    labels: np.ndarray,
    reference: _Run,
    timesteps: int,
    options: dict[str, Any],
    limit: int | None,
) -> tuple[TargetParity, _Run | None]:
    graph = lowered.graph
    target = get_target(name)
    problems = target.check(graph)
    if problems:
        return TargetParity(name, "skipped", reason="; ".join(problems), options=options), None
    n = min(limit or len(labels), len(labels))
    try:
        ready = lowered.get(target, {"timesteps": timesteps, **options})
        with target.compile(ready, timesteps=timesteps, **options) as deployed:
            result = deployed.run(images[:n])
    except Exception as exc:  # noqa: BLE001 - reported per target, the others still run
        return TargetParity(
            name, "failed", reason=f"{type(exc).__name__}: {exc}", n=n, options=options
        ), None
    pred = result.predictions()
    layers = {}
    for node, counts in result.spike_counts.items():
        neurons = _neurons(graph, node)
        na: dict[str, str] = {}
        ref = reference.counts.get(node)
        if ref is None:
            na["reference_firing_rate"] = na["count_correlation"] = na["counts_equal_fraction"] = (
                f"the Norse model records no layer {node!r}"
            )
            ref_rate = corr = equal = None
        else:
            ref_rate = _keep(
                na, "reference_firing_rate", firing_rate(ref[:n], neurons, timesteps, node)
            )
            corr = _keep(
                na, "count_correlation", count_correlation(counts, ref[:n], (name, REFERENCE))
            )
            equal = _keep(
                na, "counts_equal_fraction", equal_fraction(counts, ref[:n], "identical counts")
            )
        layers[node] = LayerParity(
            firing_rate=_keep(na, "firing_rate", firing_rate(counts, neurons, timesteps, node)),
            reference_firing_rate=ref_rate,
            count_correlation=corr,
            counts_equal_fraction=equal,
            not_applicable=na,
        )
    na = {}
    seconds = result.wall_time_s
    if seconds <= 0 or n == 0:
        why = "no images ran" if n == 0 else "the run took no measurable time"
        na["latency_ms_per_sample"] = na["throughput_img_per_s"] = why
    entry = TargetParity(
        target=name,
        status="ok",
        n=n,
        accuracy=_keep(na, "accuracy", equal_fraction(pred, labels[:n], "accuracy")),
        agreement_with_norse=_keep(
            na, "agreement_with_norse", equal_fraction(pred, reference.predictions[:n], "agreement")
        ),
        latency_ms_per_sample=1e3 * seconds / n if n and seconds > 0 else None,
        throughput_img_per_s=n / seconds if n and seconds > 0 else None,
        hardware_steps=result.hardware_steps,
        options=options,
        layers=layers,
        not_applicable=na,
    )
    counts = {k: np.asarray(v, dtype=np.int64) for k, v in result.spike_counts.items()}
    return entry, _Run(n, np.asarray(pred), counts)


def _compare(
    a: str, run_a: _Run, b: str, run_b: _Run, neurons: dict[str, int | None], timesteps: int
) -> PairParity:
    """Targets ``a`` and ``b`` on the first ``min(n_a, n_b)`` images (both ran them)."""
    n = min(run_a.n, run_b.n)
    na: dict[str, str] = {}
    agreement = _keep(
        na,
        "prediction_agreement",
        equal_fraction(run_a.predictions[:n], run_b.predictions[:n], "agreement"),
    )
    layers = {}
    for layer in [name for name in run_a.counts if name in run_b.counts]:
        x, y = run_a.counts[layer][:n], run_b.counts[layer][:n]
        lna: dict[str, str] = {}
        rates = {
            a: _keep(
                lna, f"firing_rates.{a}", firing_rate(x, neurons.get(layer), timesteps, layer)
            ),
            b: _keep(
                lna, f"firing_rates.{b}", firing_rate(y, neurons.get(layer), timesteps, layer)
            ),
        }
        if rates[a] is None or rates[b] is None:
            lna["firing_rate_delta"] = "a firing rate is n/a"
            delta = None
        else:
            delta = rates[a] - rates[b]
        layers[layer] = LayerComparison(
            firing_rates=rates,
            firing_rate_delta=delta,
            count_correlation=_keep(lna, "count_correlation", count_correlation(x, y, (a, b))),
            counts_equal_fraction=_keep(
                lna, "counts_equal_fraction", equal_fraction(x, y, "identical counts")
            ),
            not_applicable=lna,
        )
    return PairParity([a, b], n, agreement, layers, na)


def _shared(
    reference: _Run, runs: dict[str, _Run], neurons: dict[str, int | None], timesteps: int
) -> SharedImages:
    """Norse and every run on the first ``min(n)`` images (the ones all of them ran)."""
    n = min(run.n for run in runs.values())
    na: dict[str, str] = {}
    agreement = {
        name: _keep(
            na,
            f"agreement_with_norse.{name}",
            equal_fraction(run.predictions[:n], reference.predictions[:n], "agreement"),
        )
        for name, run in runs.items()
    }
    rates: dict[str, dict[str, float | None]] = {}
    for layer, ref_counts in reference.counts.items():
        rates[layer] = {}
        for name, counts in [
            (REFERENCE, ref_counts),
            *((k, r.counts.get(layer)) for k, r in runs.items()),
        ]:
            if counts is not None:
                stat = firing_rate(counts[:n], neurons.get(layer), timesteps, layer)
                rates[layer][name] = _keep(na, f"firing_rates.{layer}.{name}", stat)
    return SharedImages(n, list(runs), agreement, rates, na)


# --- text ------------------------------------------------------------------------------------


def significant(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits in positional notation (0.01234 ->
    0.0123, 2.891 -> 2.89); values of ``digits`` or more integer digits are rounded to a
    whole number (1234.4 -> 1234)."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    rounded = float(f"{value:.{digits - 1}e}")  # 99.96 -> 100.0: count digits after rounding
    if abs(rounded) >= 10 ** (digits - 1):  # whole numbers keep every integer digit
        return f"{value:.0f}"
    decimals = max(digits - 1 - math.floor(math.log10(abs(rounded))), 0)
    return f"{rounded:.{decimals}f}"


def format_latency(ms_per_sample: float | None) -> str:
    """Seconds per image in the unit that keeps 3 significant digits readable (us, ms, s)."""
    if ms_per_sample is None:
        return "n/a"
    if ms_per_sample >= 1000:
        return f"{significant(ms_per_sample / 1000)} s"
    if ms_per_sample >= 1:
        return f"{significant(ms_per_sample)} ms"
    return f"{significant(ms_per_sample * 1000)} us"


def format_throughput(img_per_s: float | None) -> str:
    """Images per second (``img/s``), or seconds per image (``s/img``) below 1 img/s."""
    if img_per_s is None:
        return "n/a"
    if img_per_s < 1:
        return f"{significant(1 / img_per_s)} s/img"
    return f"{significant(img_per_s)} img/s"


def format_fraction(value: float | None) -> str:
    """A fraction or correlation with 3 decimals, ``n/a`` when it means nothing."""
    return "n/a" if value is None else f"{value:.3f}"


def render_table(report: ParityReport) -> str:
    """A plain-text table of the targets (each on its own ``n`` images, against Norse on
    the same images) and, below it, the pairs of targets on the images both ran."""
    head = (
        f"{'target':<12} {'status':<8} {'n':>4} {'accuracy':>9} {'agree':>7} "
        f"{'latency':>10} {'throughput':>13}"
    )
    lines = [head, "-" * len(head)]
    lines.append(
        f"{REFERENCE:<12} {'ref':<8} {report.n:>4} {format_fraction(report.reference_accuracy):>9} "
        f"{format_fraction(1.0 if report.n else None):>7} {'':>10} {'':>13}"
    )
    for t in report.targets:
        if t.status != "ok":
            lines.append(f"{t.target:<12} {t.status:<8} {t.n:>4}  {t.reason[:70]}")
            continue
        lines.append(
            f"{t.target:<12} {t.status:<8} {t.n:>4} {format_fraction(t.accuracy):>9} "
            f"{format_fraction(t.agreement_with_norse):>7} {format_latency(t.latency_ms_per_sample):>10} "
            f"{format_throughput(t.throughput_img_per_s):>13}"
        )
    lines.append(
        "(agree: predictions equal to Norse's on the same images; n: images the target ran)"
    )
    if report.comparisons:
        lines += ["", *_render_pairs(report.comparisons)]
    return "\n".join(lines)


def _render_pairs(pairs: Sequence[PairParity]) -> list[str]:
    head = (
        f"{'pair (on the images both ran)':<30} {'n':>4} {'agree':>7} {'max|d rate|':>12} "
        f"{'mean corr':>10} {'equal counts':>13}"
    )
    lines = [head, "-" * len(head)]
    for pair in pairs:
        deltas = [
            abs(c.firing_rate_delta)
            for c in pair.layers.values()
            if c.firing_rate_delta is not None
        ]
        corrs = [
            c.count_correlation for c in pair.layers.values() if c.count_correlation is not None
        ]
        equal = [
            c.counts_equal_fraction
            for c in pair.layers.values()
            if c.counts_equal_fraction is not None
        ]
        lines.append(
            f"{' vs '.join(pair.targets):<30} {pair.n:>4} {format_fraction(pair.prediction_agreement):>7} "
            f"{(f'{max(deltas):.4f}' if deltas else 'n/a'):>12} "
            f"{(f'{np.mean(corrs):.3f}' if corrs else 'n/a'):>10} "
            f"{format_fraction(float(np.mean(equal)) if equal else None):>13}"
        )
    lines.append(
        f"(per layer, averaged over layers; n/a: a correlation needs >= {MIN_CORRELATION_SAMPLES} "
        "samples whose counts vary; details in parity.json)"
    )
    return lines


# --- figure ----------------------------------------------------------------------------------


def _figure_layers(report: ParityReport) -> list[str]:
    """Layers recorded by Norse and by at least one target that ran, in graph order."""
    ran = {layer for t in report.targets if t.status == "ok" for layer in t.layers}
    return [layer for layer in report.reference_firing_rates if layer in ran]


def _bar_panel(
    ax: Any,
    layers: list[str],
    series: list[tuple[str, str, dict[str, float | None]]],
    colours: dict[str, str],
    title: str,
) -> None:
    """Grouped bars: per layer one bar per ``(name, label, rates)`` of ``series``."""
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(layers))
    for i, (name, label, rates) in enumerate(series):
        values = [rates.get(layer) for layer in layers]
        ax.bar(
            x + i * width,
            [np.nan if v is None else v for v in values],
            width,
            label=label,
            color=colours[name],
        )
    ax.set_xticks(x + width * (len(series) - 1) / 2)
    ax.set_xticklabels([layer.replace("body.", "") for layer in layers], rotation=30, ha="right")
    ax.set_ylabel("firing rate\n(spikes / neuron / step)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _agree(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def plot_report(report: ParityReport, path: str | Path) -> Path:
    """Per-layer firing rates of Norse and every target, each bar group on stated images.

    Top panel: all ``n`` images, with Norse and the targets that ran all of them. When
    some target ran fewer images (``max_samples``), a second panel shows Norse and every
    target that ran on the first ``shared.n`` images, the ones all of them ran. Legends
    give each series' images and prediction agreement with Norse on them; the title
    the images each target ran. A target keeps its colour in both panels.
    """
    plt = pyplot()
    ok = [t for t in report.targets if t.status == "ok"]
    layers = _figure_layers(report)
    names = [REFERENCE, *(t.target for t in report.targets)]
    colours = {name: f"C{i % 10}" for i, name in enumerate(names)}
    reference = f"{REFERENCE} (reference)"
    panels = [
        (
            f"all {report.n} images: Norse and the targets that ran all of them",
            [(REFERENCE, reference, report.reference_firing_rates)]
            + [
                (
                    t.target,
                    f"{t.target} (n={t.n}, agree {_agree(t.agreement_with_norse)})",
                    _rates_of(t),
                )
                for t in ok
                if t.n == report.n
            ],
        )
    ]
    shared = report.shared
    if shared is not None and shared.n < report.n:
        images = f"{shared.n} image{'s' if shared.n != 1 else ''}"
        panels.append(
            (
                f"the first {images}, which every target ran",
                [(REFERENCE, reference, _column(shared, REFERENCE, layers))]
                + [
                    (
                        name,
                        f"{name} (n={shared.n}, agree {_agree(shared.agreement_with_norse[name])})",
                        _column(shared, name, layers),
                    )
                    for name in shared.targets
                ],
            )
        )
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(max(6, 1.1 * len(layers) + 2) + 2.5, 3.4 * len(panels) + 0.7),
        squeeze=False,
    )
    for ax, (title, series) in zip(axes[:, 0], panels, strict=True):
        _bar_panel(ax, layers, series, colours, title)
    counts = ", ".join(
        [f"{REFERENCE} n={report.n}"]
        + [
            f"{t.target} n={t.n}" if t.status == "ok" else f"{t.target} {t.status}"
            for t in report.targets
        ]
    )
    fig.suptitle(
        f"Parity across targets, T={report.timesteps}; images run: {counts}\n"
        "(agree: predictions equal to Norse's on the same images)",
        fontsize=10,
    )
    return save_figure(fig, path, dpi=120)


def _rates_of(target: TargetParity) -> dict[str, float | None]:
    return {layer: lp.firing_rate for layer, lp in target.layers.items()}


def _column(shared: SharedImages, name: str, layers: Sequence[str]) -> dict[str, float | None]:
    return {layer: shared.firing_rates.get(layer, {}).get(name) for layer in layers}
