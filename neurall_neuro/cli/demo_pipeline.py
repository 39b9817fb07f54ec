"""A small staged-pipeline runner for ``neurall demo``.

Each stage is a function of the shared :class:`DemoContext` returning a
:class:`StageOutput` (machine-readable JSON and a Markdown section). The runner shows
progress, times every stage, writes ``<stage>.json`` as soon as a stage finishes, and
rewrites ``report.md`` after every stage, so a failure keeps everything before it and
the report says which stage failed and why.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurall_neuro.errors import NeurallError


@dataclass
class StageOutput:
    """What a stage produced: ``data`` goes to ``<key>.json``, ``markdown`` to the report."""

    data: dict[str, Any]
    markdown: str


@dataclass
class Stage:
    key: str
    title: str
    run: Callable[[DemoContext], StageOutput]


@dataclass
class DemoContext:
    """State shared by the stages: settings, the run directory and earlier results."""

    run_dir: Path
    settings: Any
    values: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, StageOutput] = field(default_factory=dict)

    def path(self, *parts: str) -> Path:
        p = self.run_dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


class DemoStageError(NeurallError):
    """A demo stage failed; earlier stages' outputs are kept in the run directory."""


@dataclass
class StageRecord:
    key: str
    title: str
    status: str  # "done", "failed" or "not run"
    seconds: float = 0.0
    error: str = ""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_pipeline(
    stages: list[Stage],
    ctx: DemoContext,
    header: str,
    write_report: Callable[[DemoContext, list[StageRecord], str], Path],
) -> list[StageRecord]:
    """Run ``stages`` in order; raise :class:`DemoStageError` at the first failure."""
    records = [StageRecord(s.key, s.title, "not run") for s in stages]
    start = time.monotonic()
    for index, (stage, record) in enumerate(zip(stages, records, strict=True), start=1):
        _log(f"[{index}/{len(stages)}] {stage.title} ...")
        t0 = time.monotonic()
        try:
            output = stage.run(ctx)
        except KeyboardInterrupt:
            record.status, record.error = "failed", "interrupted"
            write_report(ctx, records, header)
            raise
        except Exception as exc:  # noqa: BLE001 - recorded, then re-raised as one typed error
            record.status = "failed"
            record.seconds = time.monotonic() - t0
            record.error = f"{type(exc).__name__}: {exc}"
            (ctx.path("failure.txt")).write_text(traceback.format_exc())
            report = write_report(ctx, records, header)
            raise DemoStageError(
                f"demo stage '{stage.title}' failed: {record.error} "
                f"(earlier stages are kept in {ctx.run_dir}; see {report} and failure.txt)"
            ) from exc
        record.status, record.seconds = "done", time.monotonic() - t0
        ctx.outputs[stage.key] = output
        ctx.path(f"{stage.key}.json").write_text(json.dumps(output.data, indent=2, default=str))
        write_report(ctx, records, header)
        _log(f"      done in {record.seconds:.1f} s (total {time.monotonic() - start:.0f} s)")
    return records
