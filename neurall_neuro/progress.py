"""Progress display for long work (training, evaluation, Lava runs).

Uses rich when attached to a terminal; otherwise prints a line at most every few
seconds so logs (CI, files) stay readable. ``NEURALL_NO_PROGRESS=1`` silences it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress_enabled() -> bool:
    return os.environ.get("NEURALL_NO_PROGRESS", "") not in ("1", "true", "yes")


def track(
    items: Iterable[T],
    description: str,
    total: int | None = None,
    every_s: float = 5.0,
) -> Iterator[T]:
    """Yield from ``items`` while showing progress (a bar on a TTY, periodic lines otherwise)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if not progress_enabled():
        yield from items
        return
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import track as rich_track

        # the bar belongs on stderr (the terminal checked above): on stdout it would end
        # up in piped or redirected command output
        yield from rich_track(
            items,
            description=description,
            total=total,
            transient=False,
            console=Console(stderr=True),
        )
        return
    start = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            of = f"/{total}" if total else ""
            print(f"{description}: {done}{of} ({now - start:.0f} s)", file=sys.stderr, flush=True)
    of = f"/{total}" if total else ""
    print(
        f"{description}: {done}{of} done in {time.monotonic() - start:.1f} s",
        file=sys.stderr,
        flush=True,
    )


class StepReporter:
    """Progress lines for work inside one item of a longer loop (the steps of one Lava
    sample): ``update(done)`` prints ``"{description}: {done}/{total} {unit} (S s)"`` to
    stderr at most once every ``every_s`` seconds, the first only after ``every_s``, so
    short items print nothing. Lines, not a bar: they also show under a running ``track``
    bar on a terminal. Silent when progress is disabled (``NEURALL_NO_PROGRESS=1``)."""

    def __init__(self, description: str, total: int, unit: str = "steps", every_s: float = 5.0):
        self.description = description
        self.total = total
        self.unit = unit
        self.every_s = every_s
        self.enabled = progress_enabled()
        self._start = self._last = time.monotonic()

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        print(
            f"{self.description}: {done}/{self.total} {self.unit} ({now - self._start:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
