"""Renderings of an :class:`~energy.report.EnergyReport`: rich table, JSON, CSV, Markdown.

All four show the same content: models (parameters, footprint, T, firing rate, totals,
per-layer counts), energy per inference per profile (arithmetic-only and with memory),
SNN/CNN ratios, break-even firing rates, profiles with citations, and the assumptions.

CSV is one long table, ``section,model,profile,layer,quantity,value``, so it loads into
any spreadsheet or dataframe without losing the structure.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from typing import Any

from energy.report import EnergyReport, ModelSummary

FORMATS: tuple[str, ...] = ("table", "json", "csv", "md")

#: Per-layer columns shown in tables: (header, LayerRow attribute).
LAYER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("SynOps", "synops"),
    ("SynOps dense", "synops_dense"),
    ("MACs", "macs_dense"),
    ("adds", "adds"),
    ("mults", "mults"),
    ("cmp", "comparisons"),
    ("bias", "bias_adds"),
    ("updates", "neuron_updates"),
    ("spikes", "spikes"),
)


def format_energy(pj: float) -> str:
    """Picojoules with a readable unit (pJ, nJ, uJ, mJ, J)."""
    if not math.isfinite(pj):
        return str(pj)
    for unit, scale in (("J", 1e12), ("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if abs(pj) >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


def format_count(value: float) -> str:
    """A count with an SI suffix (k, M, G, T)."""
    if value == 0:
        return "0"
    for suffix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _model_header(summary: ModelSummary) -> list[tuple[str, str]]:
    params = "-" if summary.parameters is None else f"{summary.parameters:,}"
    footprint = "-" if summary.fp32_bytes is None else f"{summary.fp32_bytes / 1e6:.3f} MB fp32"
    if summary.int8_bytes is not None:
        footprint += f", {summary.int8_bytes / 1e6:.3f} MB int8"
    return [
        ("model", summary.model),
        ("parameters", params),
        ("footprint", footprint),
        ("timesteps T", str(summary.timesteps)),
        ("samples counted", str(summary.samples)),
        ("counted from", f"{summary.source} ({summary.view} view)"),
        ("mean firing rate", _rate(summary.firing_rate)),
        ("SynOps / inference", format_count(summary.totals["synops"])),
        ("SynOps dense", format_count(summary.totals["synops_dense"])),
        ("MACs / inference", format_count(summary.totals["macs_dense"])),
        ("neuron updates", format_count(summary.totals["neuron_updates"])),
        ("spikes", format_count(summary.totals["spikes"])),
    ]


# ----------------------------------------------------------------------------- JSON / CSV


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def to_json(report: EnergyReport) -> str:
    """The report as JSON (the fields of :meth:`EnergyReport.to_dict`)."""
    return json.dumps(_clean(report.to_dict()), indent=2)


def _csv_rows(report: EnergyReport) -> Iterator[tuple[str, str, str, str, str, Any]]:
    yield ("data", "", "", "", "description", report.data)
    for summary in (report.snn, report.cnn):
        if summary is None:
            continue
        for key in (
            "model",
            "parameters",
            "fp32_bytes",
            "int8_bytes",
            "timesteps",
            "samples",
            "firing_rate",
        ):
            yield ("model", summary.role, "", "", key, getattr(summary, key))
        for key, value in summary.totals.items():
            yield ("totals", summary.role, "", "", key, value)
        for layer in summary.layers:
            for key, value in vars(layer).items():
                if key != "name":
                    yield ("layer", summary.role, "", layer.name, key, value)
    for energy in report.energies:
        for key in ("arithmetic_pj", "memory_pj", "total_pj", "host_pj"):
            yield ("energy", energy.role, energy.profile, "", key, getattr(energy, key))
        for layer in energy.layers:
            yield (
                "layer_energy",
                energy.role,
                energy.profile,
                layer.name,
                "arithmetic_pj",
                layer.arithmetic_pj,
            )
            yield (
                "layer_energy",
                energy.role,
                energy.profile,
                layer.name,
                "memory_pj",
                layer.memory_pj,
            )
    for ratio in report.ratios:
        pair = f"{ratio.snn_profile}/{ratio.cnn_profile}"
        yield ("ratio", "snn/cnn", pair, "", "arithmetic", ratio.arithmetic)
        yield ("ratio", "snn/cnn", pair, "", "with_memory", ratio.with_memory)
    for item in report.break_even:
        pair = f"{item.snn_profile}/{item.cnn_profile}"
        yield ("break_even", item.basis, pair, "", "rate", item.rate)
        yield ("break_even", item.basis, pair, "", "scale", item.scale)
        yield ("break_even", item.basis, pair, "", "status", item.status)
    for profile in report.profiles:
        for op, pj in profile.ops_pj.items():
            yield ("profile", "", profile.name, "", op, pj)
        yield ("profile", "", profile.name, "", "memory_read_pj", profile.read_pj)
        yield ("profile", "", profile.name, "", "memory_write_pj", profile.write_pj)
    for index, text in enumerate(report.assumptions, start=1):
        yield ("assumption", "", "", "", str(index), text)


def to_csv(report: EnergyReport) -> str:
    """The report as one long CSV table (``section,model,profile,layer,quantity,value``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["section", "model", "profile", "layer", "quantity", "value"])
    for row in _csv_rows(report):
        writer.writerow(["" if v is None else v for v in row])
    return buffer.getvalue()


# ----------------------------------------------------------------------------- Markdown


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _layer_rows(summary: ModelSummary) -> tuple[list[str], list[list[str]]]:
    headers = ["layer", "kind", "op", "steps", *[h for h, _ in LAYER_COLUMNS], "rate"]
    rows = []
    for layer in summary.layers:
        name = layer.name + (f" (+{layer.folded})" if layer.folded else "")
        rows.append(
            [name, layer.kind, layer.op, str(layer.steps)]
            + [format_count(getattr(layer, attr)) for _, attr in LAYER_COLUMNS]
            + [_rate(layer.firing_rate)]
        )
    return headers, rows


def _energy_rows(report: EnergyReport) -> list[list[str]]:
    rows = []
    for energy in report.energies:
        rows.append(
            [
                energy.role.upper(),
                energy.profile,
                format_energy(energy.arithmetic_pj),
                format_energy(energy.memory_pj),
                format_energy(energy.total_pj),
                format_energy(energy.host_pj) if energy.host_pj else "-",
            ]
        )
    return rows


def _matrix(report: EnergyReport) -> tuple[list[str], list[list[str]], list[list[str]]]:
    snn_profiles = list(dict.fromkeys(r.snn_profile for r in report.ratios))
    cnn_profiles = list(dict.fromkeys(r.cnn_profile for r in report.ratios))
    headers = ["SNN on \\ CNN on", *cnn_profiles]
    ratio_rows, break_rows = [], []
    for sp in snn_profiles:
        ratio_row, break_row = [sp], [sp]
        for cp in cnn_profiles:
            ratio = report.ratio(sp, cp)
            ratio_row.append(f"{ratio.arithmetic:.3g} / {ratio.with_memory:.3g}")
            items = {
                b.basis: b for b in report.break_even if b.snn_profile == sp and b.cnn_profile == cp
            }
            break_row.append(
                " / ".join(_break_cell(items.get(k)) for k in ("arithmetic", "with_memory"))
            )
        ratio_rows.append(ratio_row)
        break_rows.append(break_row)
    return headers, ratio_rows, break_rows


def _break_cell(item: Any) -> str:
    if item is None:
        return "-"
    if item.status == "never_saves":
        return "never"
    if item.status == "no_spikes":
        return "n/a"
    return f"{item.rate:.3g}" + ("+" if item.status == "always_saves" else "")


def to_markdown(report: EnergyReport) -> str:
    """The report as a Markdown document."""
    lines = ["# Energy report", ""]
    if report.data:
        lines += [f"Data: {report.data}", ""]
    for summary in (report.snn, report.cnn):
        if summary is None:
            continue
        lines += [f"## {summary.role.upper()}: {summary.model}", ""]
        lines += _md_table(["quantity", "value"], [list(item) for item in _model_header(summary)])
        headers, rows = _layer_rows(summary)
        lines += ["", "Per-layer counts per inference (+ marks pooling folded into the layer):", ""]
        lines += _md_table(headers, rows)
        lines += [""]
    lines += ["## Energy per inference", ""]
    lines += _md_table(
        ["model", "profile", "arithmetic", "memory", "total", "of which host"], _energy_rows(report)
    )
    if report.ratios:
        headers, ratio_rows, break_rows = _matrix(report)
        lines += [
            "",
            "## SNN / CNN energy ratio (arithmetic / with memory; below 1 the SNN saves)",
            "",
        ]
        lines += _md_table(headers, ratio_rows)
        lines += [
            "",
            "## Break-even firing rate (spikes per neuron per step; arithmetic / with memory)",
            "",
            "The SNN saves energy below this rate; 'never': not even without spikes; '+': above 1, "
            "saves at every rate.",
            "",
        ]
        lines += _md_table(headers, break_rows)
    lines += ["", "## Profiles", ""]
    rows = [
        [
            p.name,
            p.kind,
            ", ".join(f"{op} {pj:g}" for op, pj in p.ops_pj.items()),
            p.host or "-",
            "included" if p.memory_included else f"{p.read_pj:g}/{p.write_pj:g} pJ r/w",
        ]
        for p in report.profiles
    ]
    lines += _md_table(["profile", "kind", "pJ per op", "host", "memory"], rows)
    citations = {key: text for p in report.profiles for key, text in p.sources.items()}
    lines += ["", "Sources:", ""] + [
        f"* **{key}**: {text}" for key, text in sorted(citations.items())
    ]
    lines += ["", "## Assumptions", ""] + [
        f"{i}. {text}" for i, text in enumerate(report.assumptions, 1)
    ]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"* {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- rich table


def render_table(report: EnergyReport, console: Any = None) -> None:
    """Print the report as rich tables (to ``console``, default stdout).

    The default console (:func:`neurall_neuro.console.output_console`) prints plain,
    untruncated text when stdout is a pipe or a file.
    """
    from rich.table import Table

    from neurall_neuro.console import output_console

    console = console or output_console()
    if report.data:
        console.print(f"[bold]Data:[/bold] {report.data}")
    for summary in (report.snn, report.cnn):
        if summary is None:
            continue
        head = Table(title=f"{summary.role.upper()}: {summary.model}", show_header=False)
        head.add_column("quantity")
        head.add_column("value")
        for key, value in _model_header(summary):
            head.add_row(key, value)
        console.print(head)
        headers, rows = _layer_rows(summary)
        layers = Table(title=f"{summary.role.upper()} per-layer counts per inference")
        for i, header in enumerate(headers):
            layers.add_column(header, justify="left" if i < 3 else "right")
        for row in rows:
            layers.add_row(*row)
        console.print(layers)
    energy = Table(title="Energy per inference")
    for header in ["model", "profile", "arithmetic", "memory", "total", "of which host"]:
        energy.add_column(header, justify="left" if header in ("model", "profile") else "right")
    for row in _energy_rows(report):
        energy.add_row(*row)
    console.print(energy)
    if report.ratios:
        headers, ratio_rows, break_rows = _matrix(report)
        for title, rows in (
            ("SNN/CNN energy ratio (arithmetic / with memory)", ratio_rows),
            ("Break-even firing rate (arithmetic / with memory)", break_rows),
        ):
            table = Table(title=title)
            for header in headers:
                table.add_column(header)
            for row in rows:
                table.add_row(*row)
            console.print(table)
    console.print("[bold]Assumptions[/bold]")
    for i, text in enumerate(report.assumptions, 1):
        console.print(f"  {i}. {text}")
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {note}")


def render(report: EnergyReport, fmt: str) -> str:
    """The report in ``fmt`` (json, csv, md) as a string; ``table`` renders to text."""
    if fmt == "json":
        return to_json(report)
    if fmt == "csv":
        return to_csv(report)
    if fmt == "md":
        return to_markdown(report)
    if fmt == "table":
        from neurall_neuro.console import output_console

        console = output_console(io.StringIO(), record=True)
        render_table(report, console)
        return console.export_text()
    from neurall_neuro.errors import ConfigError

    raise ConfigError(f"unknown format {fmt!r}; valid options: {', '.join(FORMATS)}")
