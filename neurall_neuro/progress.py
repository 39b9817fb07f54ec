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
