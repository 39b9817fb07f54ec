"""``report.md`` of a demo run: one section per stage, figures linked as PNG."""

from __future__ import annotations

from pathlib import Path

from neurall_neuro import __version__
from neurall_neuro.cli.demo_pipeline import DemoContext, StageRecord

HONESTY = (
    "> **Not clinical evidence.** Unless a real dataset was given with `--data`, every image "
    "here is procedurally generated; accuracies on it say that the pipeline works, not how "
    "well leukemia subtypes are recognised."
)


def demote_headings(markdown: str, levels: int = 2) -> str:
    """Push Markdown headings down so stage sections nest under the report's ``##``."""
    out = []
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if not in_code and line.startswith("#"):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out)


def write_report(ctx: DemoContext, records: list[StageRecord], header: str) -> Path:
    lines = [
        "# neurall-neuro demo report",
        "",
        f"{header}; neurall-neuro {__version__}. Settings: `settings.json`; every section's data "
        "is in `<stage>.json`.",
        "",
        HONESTY,
        "",
        "| # | stage | status | time |",
        "|---|---|---|---|",
    ]
    for i, r in enumerate(records, start=1):
        lines.append(f"| {i} | {r.title} | {r.status} | {r.seconds:.0f} s |")
    for i, r in enumerate(records, start=1):
        lines += ["", f"## {i}. {r.title}", ""]
        if r.status == "done":
            lines.append(demote_headings(ctx.outputs[r.key].markdown))
        elif r.status == "failed":
            lines.append(f"**Failed:** `{r.error}` (traceback in `failure.txt`).")
        else:
            lines.append("_Not run (an earlier stage failed)._")
    path = ctx.run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
