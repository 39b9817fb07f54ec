"""Progress display of one epoch: a rich bar with running loss/accuracy on a terminal.

In non-interactive output (logs, CI) nothing is drawn per batch; the trainer prints one
line per epoch instead. ``NEURALL_NO_PROGRESS=1`` disables the bar too.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType

from neurall_neuro.progress import progress_enabled


class EpochProgress:
    """``with EpochProgress("epoch 3/50 train", total=25) as bar: bar.update(done, loss, acc)``.

    ``update`` is cheap when nothing is shown and refreshes at most every
    ``refresh_s`` seconds otherwise; callers check :meth:`wants_update` before
    computing (synchronising) the running values.
    """

    def __init__(
        self, description: str, total: int, enabled: bool = True, refresh_s: float = 0.25
    ) -> None:
        self.description = description
        self.total = total
        self.enabled = enabled and progress_enabled() and sys.stderr.isatty()
        self.refresh_s = refresh_s
        self._last = 0.0
        self._progress = None
        self._task = None

    def __enter__(self) -> EpochProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[stats]}"),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total, stats="")
        return self

    def wants_update(self, done: int) -> bool:
        """Whether an update now would be shown (always at the last batch)."""
        if not self.enabled:
            return False
        now = time.monotonic()
        return done >= self.total or now - self._last >= self.refresh_s

    def update(self, done: int, loss: float | None = None, accuracy: float | None = None) -> None:
        if not self.enabled or self._progress is None:
            return
        self._last = time.monotonic()
        stats = ""
        if loss is not None:
            stats = f"loss {loss:.4f}"
        if accuracy is not None:
            stats += f" acc {accuracy:.3f}"
        self._progress.update(self._task, completed=done, stats=stats)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
