"""The rich console every command prints its tables through.

On a terminal, rich's defaults apply (colour, the terminal's width). Piped or redirected
(``neurall energy ... | less``, ``> report.txt``), rich would fall back to an 80-column
page and cut table cells to ``bo…``; :func:`output_console` instead returns a plain
console there: no colour or style codes, and a width so large that no cell is truncated
or wrapped (tables are as wide as their content; text lines are never folded).
"""

from __future__ import annotations

import sys
from typing import IO, Any

#: Width of a console whose output is not a terminal: wide enough for any table.
PLAIN_WIDTH = 100_000


def is_terminal(stream: IO[str] | None) -> bool:
    """Whether ``stream`` is an interactive terminal (False for pipes, files and buffers)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # closed or detached stream
        return False


def output_console(
    file: IO[str] | None = None, *, stderr: bool = False, record: bool = False
) -> Any:
    """A ``rich.console.Console`` writing to ``file`` (default: stdout, or stderr).

    A terminal gets rich's defaults; anything else (pipe, file, ``io.StringIO``) gets plain
    full-width text: no ANSI codes, no truncated cells. ``record`` keeps what was printed
    for ``Console.export_text``.
    """
    from rich.console import Console

    stream = file if file is not None else (sys.stderr if stderr else sys.stdout)
    if is_terminal(stream):
        return Console(file=file, stderr=stderr, record=record)
    return Console(
        file=stream,
        width=PLAIN_WIDTH,
        color_system=None,
        force_terminal=False,
        force_interactive=False,
        no_color=True,
        highlight=False,
        emoji=False,
        record=record,
    )
