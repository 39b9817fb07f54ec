"""Plot of an energy report (PNG, matplotlib Agg): per-layer operations and energy per profile."""

from __future__ import annotations

from pathlib import Path

from energy.report import EnergyReport, ModelSummary
from neurall_neuro.figures import pyplot, save_figure

#: Per-layer series plotted: (label, LayerRow attribute).
SERIES: tuple[tuple[str, str], ...] = (
    ("SynOps (AC, effective)", "synops"),
    ("SynOps dense (all inputs active)", "synops_dense"),
    ("MACs", "macs_dense"),
    ("neuron updates", "neuron_updates"),
    ("other (adds, mults, cmp, bias)", "_other"),
)


def _value(layer: object, attr: str) -> float:
    if attr == "_other":
        return sum(
            getattr(layer, a) for a in ("adds", "mults", "comparisons", "nonlinear", "bias_adds")
        )
    return float(getattr(layer, attr))


def _layers_panel(ax, summary: ModelSummary) -> None:  # noqa: ANN001 - matplotlib Axes
    import numpy as np

    names = [layer.name for layer in summary.layers]
    y = np.arange(len(names))
    height = 0.8 / len(SERIES)
    for i, (label, attr) in enumerate(SERIES):
        values = [max(_value(layer, attr), 0.0) for layer in summary.layers]
        ax.barh(y + i * height, values, height=height, label=label)
    ax.set_yticks(y + 0.4 - height / 2)
    ax.set_yticklabels(names, fontsize=6)
    ax.invert_yaxis()
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("operations per inference")
    ax.set_title(f"{summary.role.upper()} {summary.model} (T={summary.timesteps})", fontsize=9)
    ax.legend(fontsize=6, loc="lower right")


def plot_report(report: EnergyReport, path: str | Path) -> Path:
    """Write a PNG: per-layer operations of each model, then energy per profile."""
    plt = pyplot()
    import numpy as np

    models = [s for s in (report.snn, report.cnn) if s is not None]
    heights = [max(3.0, 0.16 * len(s.layers)) for s in models] + [3.5]
    fig, axes = plt.subplots(
        len(heights),
        1,
        figsize=(9, sum(heights) + 1),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, summary in zip(axes[:, 0], models, strict=False):
        _layers_panel(ax, summary)
    ax = axes[-1, 0]
    labels = [f"{e.role.upper()} {e.profile}" for e in report.energies]
    x = np.arange(len(labels))
    arithmetic = [e.arithmetic_pj for e in report.energies]
    total = [e.total_pj for e in report.energies]
    ax.bar(x - 0.2, arithmetic, width=0.4, label="arithmetic only")
    ax.bar(x + 0.2, total, width=0.4, label="with memory traffic")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("energy per inference (pJ)")
    ax.set_title("Energy per inference by profile", fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=120, format="png")
