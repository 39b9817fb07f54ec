"""Reading the examples out of Markdown files, for ``tests/docs/test_doc_examples.py``.

* :func:`fenced_blocks` returns every fenced code block (language, first code line).
* :func:`shell_commands` turns ``bash``/``sh``/``shell``/``console`` blocks into commands:
  continuation lines (``\\``) are joined, comments dropped, ``;``/``&&``/``||``/``|``
  split a line into commands, leading ``VAR=value`` assignments and shell keywords
  (``do``, ``then``, ``time``, ...) are skipped, redirections are removed, and ``...``
  (an elided rest) is dropped. ``console`` blocks contribute only ``$ `` prompt lines.
* :func:`neurall_parse_error` parses one ``neurall`` argument list with the real argparse
  parser (nothing runs); :func:`makefile_targets` lists the targets of a Makefile.
* :func:`run_python_blocks` executes ``python`` blocks in order in one namespace, with
  tracebacks pointing at the Markdown file and line.

A block opts out of execution only with a first line ``# doc-example: skip (reason)``.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHELL_LANGS = frozenset({"bash", "sh", "shell", "console", "zsh"})
SKIP_MARKER = re.compile(r"^\s*#\s*doc-example:\s*skip\b\s*(?P<rest>.*)$")
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_KEYWORDS = frozenset({"do", "then", "else", "elif", "time", "exec", "!", "{"})
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_OPERATOR = re.compile(r"^[;&|()]+$")
_REDIRECT = re.compile(r"^[<>&]*[<>][<>&]*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: ``line`` is the 1-based line of its first code line."""

    path: Path
    line: int
    lang: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"

    @property
    def skip_reason(self) -> str | None:
        """The text after the skip marker on the first non-blank line (``""`` if none), or
        ``None`` when the block is not marked."""
        for line in self.code.splitlines():
            if line.strip():
                match = SKIP_MARKER.match(line)
                return match["rest"].strip(" ()") if match else None
        return None


@dataclass(frozen=True)
class Command:
    """A ``neurall`` or ``make`` command found in a shell block."""

    path: Path
    line: int
    text: str
    program: str  # "neurall" or "make"
    argv: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    """Every fenced code block of a Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, indent = match["fence"], len(match["indent"])
        info = match["info"].split()
        lang = info[0].lower() if info else ""
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            stripped = lines[j].strip()
            if stripped.startswith(fence) and set(stripped) == {fence[0]}:
                break
            line = lines[j]
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            j += 1
        blocks.append(Block(path, i + 2, lang, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def _logical_lines(block: Block) -> list[tuple[int, str]]:
    """``(line number, text)`` of the shell block's commands, continuations joined."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    console = block.lang == "console"
    for offset, raw in enumerate(block.code.splitlines()):
        line = raw.rstrip()
        if not pending:
            if console:
                if not line.lstrip().startswith("$ "):
                    continue
                line = line.lstrip()[2:]
            start = block.line + offset
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        out.append((start, " ".join(pending)))
        pending = []
    if pending:
        out.append((start, " ".join(pending)))
    return out


def _tokens(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def _segments(tokens: list[str]) -> list[list[str]]:
    """Split at shell operators; drop redirections (with their target and fd number)."""
    segments: list[list[str]] = [[]]
    skip_next = False
    for token in tokens:
        if skip_next:
            skip_next = False
            continue
        if _REDIRECT.match(token):
            if segments[-1] and segments[-1][-1].isdigit():
                segments[-1].pop()
            skip_next = True
            continue
        if _OPERATOR.match(token):
            segments.append([])
            continue
        segments[-1].append(token)
    return [s for s in segments if s]


def _command(path: Path, line: int, text: str, words: list[str]) -> Command | None:
    while words and (words[0] in _KEYWORDS or _ASSIGNMENT.match(words[0])):
        words = words[1:]
    words = [w for w in words if w != "..."]
    if not words:
        return None
    program = words[0].rsplit("/", 1)[-1]
    if program == "neurall":
        return Command(path, line, text, "neurall", tuple(words[1:]))
    if program == "make":
        return Command(path, line, text, "make", tuple(words[1:]))
    for k in range(len(words) - 1):  # python -m / torchrun -m neurall_neuro.cli.main ...
        if words[k] == "-m" and words[k + 1] == "neurall_neuro.cli.main":
            return Command(path, line, text, "neurall", tuple(words[k + 2 :]))
    return None


def shell_commands(block: Block) -> list[Command]:
    """The ``neurall`` and ``make`` commands of a shell block (empty for other blocks)."""
    if block.lang not in SHELL_LANGS or block.skip_reason is not None:
        return []
    found: list[Command] = []
    for line, text in _logical_lines(block):
        try:
            tokens = _tokens(text)
        except ValueError as exc:  # unbalanced quotes
            found.append(Command(block.path, line, text, "neurall", (f"<unparsable: {exc}>",)))
            continue
        for words in _segments(tokens):
            command = _command(block.path, line, text, words)
            if command is not None:
                found.append(command)
    return found


def neurall_parse_error(argv: tuple[str, ...]) -> str | None:
    """Why ``neurall ARGV`` does not parse (the argparse message), or ``None`` if it does."""
    from neurall_neuro.cli.main import build_parser

    parser = build_parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            args = parser.parse_args(list(argv))
    except SystemExit as exc:
        if exc.code in (0, None):  # --help / --version
            return None
        lines = err.getvalue().strip().splitlines()
        return lines[-1] if lines else f"argparse exit {exc.code}"
    if getattr(args, "command", None) is None:
        return "no sub-command given"
    if args.command == "data" and getattr(args, "data_command", None) is None:
        return "no `neurall data` sub-command given"
    return None


def makefile_targets(makefile: Path) -> set[str]:
    """Explicit target names of a Makefile (variables and special targets excluded)."""
    targets: set[str] = set()
    for line in makefile.read_text(encoding="utf-8").splitlines():
        if line.startswith(("\t", "#")) or ":" not in line:
            continue
        head, _, rest = line.partition(":")
        if rest.startswith("=") or "=" in head:
            continue
        for name in head.split():
            if not name.startswith(".") and "$" not in name and "%" not in name:
                targets.add(name)
    return targets


def make_target_errors(command: Command, targets: set[str]) -> list[str]:
    """Messages for the targets ``command`` names that the Makefile lacks."""
    wanted = [w for w in command.argv if not w.startswith("-") and "=" not in w]
    return [
        f"no make target {w!r} (targets: {', '.join(sorted(targets))})"
        for w in wanted
        if w not in targets
    ]


def python_source(block: Block) -> str:
    """The block's code, padded so that line numbers match the Markdown file."""
    return "\n" * (block.line - 1) + textwrap.dedent(block.code)


def run_python_blocks(blocks: list[Block], namespace: dict[str, Any]) -> None:
    """Execute ``blocks`` in order in ``namespace``; a failure names the file and line."""
    for block in blocks:
        code = compile(python_source(block), str(block.path), "exec")
        try:
            exec(code, namespace)
        except Exception as exc:
            raise AssertionError(
                f"the example at {block.where} failed: {type(exc).__name__}: {exc}"
            ) from exc
