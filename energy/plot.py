"""The energy figure of a report: a single-column PNG for a paper (matplotlib Agg).

Two panels, every energy per inference (per image) on a log axis in µJ (nJ or pJ when
all values are smaller), axes starting at the decade below the smallest value:

(a) every profile: the SNN (``T`` steps) and the CNN side by side; the dark bar is the
    arithmetic-only energy, the light bar the energy with memory traffic; the number to
    the right is the SNN/CNN ratio with memory (below 1: the SNN saves);
(b) the same split per stage on one digital profile (default ``45nm-int8``), layers
    grouped by their module names (:data:`STAGE_RULES`: ``features.stage2.conv1`` and
    ``body.conv2`` are in stage 2, ``stem.*`` in the stem, the rest in the head).

Drawn 3.5 in wide (a single journal column) at 300 dpi with fonts of at least 7 pt.
"""

from __future__ import annotations

import math
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from energy.pricing import ModelEnergy
from energy.report import EnergyReport
from neurall_neuro.errors import ConfigError
from neurall_neuro.figures import pyplot, save_figure

#: Figure width (inches): one column of a two-column paper.
WIDTH_IN = 3.5
#: Resolution of the PNG (dots per inch).
DPI = 300
#: Font sizes in points (at the printed width above).
FONT_PT = {"tick": 7.0, "label": 7.5, "title": 8.0, "note": 7.0}
#: Height per bar row (inches) and fixed extra height per panel.
ROW_IN, PANEL_EXTRA_IN = 0.2, 0.55
#: Bar colours per role: (arithmetic, with memory).
COLOURS = {"snn": ("#1f5f9f", "#9ecae1"), "cnn": ("#c2510a", "#fdbe85")}
#: Profiles tried first for the per-stage panel.
STAGE_PROFILES: tuple[str, ...] = ("45nm-int8", "45nm-fp32")
#: Units (name, picojoules per unit), largest first; the panel uses the largest unit
#: not above its biggest value (µJ at most).
UNITS: tuple[tuple[str, float], ...] = (("µJ", 1e6), ("nJ", 1e3), ("pJ", 1.0))

#: Layer name -> stage: the first rule whose pattern matches names the stage (``{0}``:
#: the pattern's group); names no rule matches are in the ``head``.
STAGE_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?:^|\.)stage(\d+)(?:\.|$)"), "stage {0}"),
    (re.compile(r"^stem(?:\.|$)"), "stem"),
    (re.compile(r"(?:^|\.)[a-z_]*?(\d+)(?:\.|$)"), "stage {0}"),
)
HEAD = "head"


def stage_of(layer: str) -> str:
    """The stage a layer belongs to (see :data:`STAGE_RULES`)."""
    for pattern, label in STAGE_RULES:
        match = pattern.search(layer)
        if match:
            return label.format(*match.groups())
    return HEAD


def _stage_key(stage: str) -> tuple[int, int]:
    """Plot order: stem, stage 1, stage 2, ..., head."""
    if stage == "stem":
        return (0, 0)
    if stage == HEAD:
        return (2, 0)
    return (1, int(stage.split()[-1]))


@dataclass
class Bar:
    """One bar pair: arithmetic-only and with-memory energy (picojoules) of one role."""

    role: str
    arithmetic_pj: float
    total_pj: float


def stage_energies(energy: ModelEnergy) -> dict[str, Bar]:
    """Arithmetic and with-memory energy per stage of one priced model."""
    stages: dict[str, Bar] = {}
    for layer in energy.layers:
        bar = stages.setdefault(stage_of(layer.name), Bar(energy.role, 0.0, 0.0))
        bar.arithmetic_pj += layer.arithmetic_pj
        bar.total_pj += layer.total_pj
    return stages


def _unit(values: list[float]) -> tuple[str, float]:
    top = max(values)
    for name, scale in UNITS:
        if top >= scale:
            return name, scale
    return UNITS[-1]


def _limits(values: list[float], scale: float) -> tuple[float, float]:
    """Log-axis limits in units of ``scale``: the decade below the smallest value to one
    decade (room for the ratio labels) above the largest."""
    positive = [v / scale for v in values if v > 0]
    low = 10.0 ** math.floor(math.log10(min(positive)))
    high = 10.0 ** math.ceil(math.log10(max(positive) * 3))
    return low, high


def _panel(
    ax: Any,
    rows: list[tuple[str, dict[str, Bar]]],
    title: str,
    ratios: dict[str, float] | None = None,
) -> None:
    """Horizontal bar pairs (SNN above CNN) per row, arithmetic over with-memory."""
    from matplotlib.ticker import LogLocator, NullFormatter

    values = [b.total_pj for _, bars in rows for b in bars.values()]
    values += [b.arithmetic_pj for _, bars in rows for b in bars.values()]
    if not any(v > 0 for v in values):
        raise ConfigError(f"nothing to plot in {title!r}: every energy is zero")
    unit, scale = _unit(values)
    low, high = _limits(values, scale)
    roles = [role for role in ("snn", "cnn") if any(role in bars for _, bars in rows)]
    height = 0.8 / len(roles)
    for i, (_, bars) in enumerate(rows):
        for j, role in enumerate(roles):
            if role not in bars:
                continue
            y = i - 0.4 + height * (j + 0.5)
            dark, light = COLOURS[role]
            total = max(bars[role].total_pj / scale, low)
            arithmetic = max(bars[role].arithmetic_pj / scale, low)
            ax.barh(y, total - low, left=low, height=height * 0.9, color=light, linewidth=0)
            ax.barh(y, arithmetic - low, left=low, height=height * 0.9, color=dark, linewidth=0)
        if ratios and rows[i][0] in ratios:
            top = max(b.total_pj for b in bars.values()) / scale
            ax.text(
                top * 1.25,
                i,
                f"{ratios[rows[i][0]]:.2g}×",
                va="center",
                fontsize=FONT_PT["note"],
            )
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    ax.xaxis.set_major_locator(LogLocator(base=10.0, numticks=6))
    ax.xaxis.set_minor_locator(LogLocator(base=10.0, subs="auto", numticks=12))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([label for label, _ in rows])
    ax.tick_params(labelsize=FONT_PT["tick"], length=2, pad=1.5)
    ax.set_xlabel(f"energy per inference ({unit})", fontsize=FONT_PT["label"], labelpad=1)
    ax.set_title(title, fontsize=FONT_PT["title"], loc="left", pad=3)
    ax.grid(axis="x", which="major", linewidth=0.4, alpha=0.4)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _stage_profile(report: EnergyReport, wanted: str | None) -> str:
    roles = {e.profile: set() for e in report.energies}
    for e in report.energies:
        roles[e.profile].add(e.role)
    if wanted is not None:
        if wanted not in roles:
            raise ConfigError(
                f"profile {wanted!r} is not in the report; valid options: {', '.join(roles)}"
            )
        return wanted
    both = [p for p, r in roles.items() if len(r) == 2]
    for name in (*STAGE_PROFILES, *both, *roles):
        if name in roles and (name in both or not both):
            return name
    raise ConfigError("the report has no energies to plot")


def plot_report(report: EnergyReport, path: str | Path, stage_profile: str | None = None) -> Path:
    """Write the energy figure of ``report`` (see the module docstring) as a PNG.

    ``stage_profile``: the profile of the per-stage panel (default: ``45nm-int8`` when
    both models are priced on it, else the first profile that prices both).
    """
    if not report.energies:
        raise ConfigError("the report has no energies to plot (no profile priced a model)")
    plt = pyplot()
    from matplotlib.patches import Patch

    by_profile: dict[str, dict[str, Bar]] = {}
    for e in report.energies:
        by_profile.setdefault(e.profile, {})[e.role] = Bar(e.role, e.arithmetic_pj, e.total_pj)
    ratios = {r.snn_profile: r.with_memory for r in report.ratios if r.snn_profile == r.cnn_profile}
    profile = _stage_profile(report, stage_profile)
    per_role = [stage_energies(e) for e in report.energies if e.profile == profile]
    stages = sorted({s for stages in per_role for s in stages}, key=_stage_key)
    stage_rows = [
        (stage, {bars[stage].role: bars[stage] for bars in per_role if stage in bars})
        for stage in stages
    ]
    profile_rows = list(by_profile.items())

    heights = [
        ROW_IN * len(profile_rows) + PANEL_EXTRA_IN,
        ROW_IN * len(stage_rows) + PANEL_EXTRA_IN,
    ]
    fig, (top, bottom) = plt.subplots(
        2,
        1,
        figsize=(WIDTH_IN, sum(heights) + 0.9),
        gridspec_kw={"height_ratios": heights},
        layout="constrained",
    )
    models = []
    if report.snn is not None:
        models.append(f"SNN {report.snn.model} (T = {report.snn.timesteps} steps)")
    if report.cnn is not None:
        models.append(f"CNN {report.cnn.model}")
    _panel(top, profile_rows, "(a) per profile", ratios)
    _panel(bottom, stage_rows, f"(b) per stage on {profile}")
    handles = []
    for role, name in (("snn", "SNN"), ("cnn", "CNN")):
        if any(role in bars for _, bars in profile_rows):
            dark, light = COLOURS[role]
            handles += [
                Patch(color=dark, label=f"{name} arithmetic"),
                Patch(color=light, label=f"{name} + memory"),
            ]
    fig.legend(
        handles=handles,
        loc="outside upper center",
        ncol=2,
        fontsize=FONT_PT["note"],
        frameon=False,
        handlelength=1.2,
        columnspacing=1.0,
        title="Energy per inference (one image)\n" + ", ".join(models),
        title_fontsize=FONT_PT["title"],
    )
    notes = []
    if report.ratios:
        notes.append("Numbers: SNN/CNN energy with memory on the same profile.")
    if report.cnn is not None and len(by_profile) > sum("cnn" in b for b in by_profile.values()):
        notes.append("The CNN is priced on digital profiles only.")
    if report.data:
        notes.append(f"Data: {report.data}.")
    if notes:
        fig.supxlabel(textwrap.fill(" ".join(notes), 58), fontsize=FONT_PT["note"], ha="center")
    return save_figure(fig, path, dpi=DPI, tight=False, format="png")
