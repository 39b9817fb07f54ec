"""Entry point of the ``neurall`` command.

Each subcommand lives in its own module ``neurall_neuro.cli.<name>_cmd`` exposing
``register(subparsers)``, which adds its parser and sets ``func`` to the function
that runs it. Heavy imports (torch, lava) happen inside those functions so that
``neurall --help`` stays fast.

What this module adds on top of the command modules:

* errors derived from :class:`neurall_neuro.errors.NeurallError` print as one line,
  exit status 2; ``--debug``, accepted before or after the subcommand (or
  ``NEURALL_DEBUG=1``), shows the full traceback instead;
* ``--device`` follows one rule (:mod:`neurall_neuro.devices`): its spelling is checked
  while the command line is parsed and the device's existence right after, so a bad
  device fails before the command reads any data or creates any folder;
* library messages that tell Python callers which argument to pass (``layer=...``,
  ``mapping={source: target}``, ``load_nir(graph, dt=...)``) show the command-line
  flag instead (:data:`CLI_HINTS`);
* Python warnings print as one line, ``warning: <message>`` (the standard format,
  with the source line, under ``--debug``);
* help texts are plain text: reStructuredText markup of the module docstrings that
  serve as descriptions (double backquotes, ``::``) is removed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TextIO

from neurall_neuro import __version__

# Order is the order shown by --help.
COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "data",
    "train",
    "evaluate",
    "explain",
    "export",
    "deploy",
    "energy",
)

DEBUG_HELP = "show full tracebacks on errors (or NEURALL_DEBUG=1)"


@dataclass(frozen=True)
class CliHint:
    """A Python-only hint in a library message, and what the command line shows instead.

    ``python`` is replaced by ``cli`` when the running command has the option ``flag``
    (or when ``flag`` is ``None``); on a command without that option, by ``otherwise``
    if given (else the message is left as it is).
    """

    python: str
    cli: str
    flag: str | None = None
    otherwise: str | None = None

    def apply(self, message: str, options: frozenset[str]) -> str:
        if self.python not in message:
            return message
        if self.flag is None or self.flag in options:
            return message.replace(self.python, self.cli)
        if self.otherwise is not None:
            return message.replace(self.python, self.otherwise)
        return message


_DT_CLI = "store dt in the NIR file's metadata (neurall export writes it)"
_DT_FLAG = "pass --dt SECONDS or a convention name (neurall, norse, snntorch, sinabs, ...)"

#: Applied in order (a longer snippet before one it contains). Each ``python`` text
#: occurs in a library message (``tests/cli/test_cli_help.py`` checks that against the source).
CLI_HINTS: tuple[CliHint, ...] = (
    CliHint(
        "Name one explicitly with layout=... (CLI: --layout).",
        "Name one explicitly with --layout NAME.",
        "--layout",
        otherwise="This command detects layouts only; the others take --layout NAME.",
    ),
    CliHint("pass layer=...", "pass --layer NAME", "--layer"),
    CliHint(
        "(pass mapping={source: target} to map them explicitly)",
        "(pass --map SOURCE=TARGET, repeatable, to map them explicitly)",
        "--map",
        otherwise=(
            "(name the class folders like the checkpoint's classes; neurall evaluate "
            "also maps them explicitly with --map SOURCE=TARGET)"
        ),
    ),
    CliHint("pass overwrite=True (CLI: --overwrite)", "pass --overwrite", "--overwrite"),
    CliHint(
        "to_nir(model, calibration=images) (CLI: --calibration-data DIR)",
        "--calibration-data DIR",
        "--calibration-data",
    ),
    CliHint(
        "Pass calibration images, to_nir(model, calibration=images), so",
        "Pass calibration images with --calibration-data DIR, so",
        "--calibration-data",
    ),
    CliHint("pass timesteps=T", "pass --timesteps T", "--timesteps"),
    CliHint("pass timesteps=...", "pass --timesteps T", "--timesteps"),
    CliHint(
        "has no 'timesteps'; pass timesteps",
        "has no 'timesteps'; pass --timesteps T",
        "--timesteps",
    ),
    CliHint("pass it explicitly: load_nir(graph, dt=...)", _DT_FLAG, "--dt", otherwise=_DT_CLI),
    CliHint("pass load_nir(..., dt=...)", _DT_FLAG, "--dt", otherwise=_DT_CLI),
    CliHint("compile it with dt=...", _DT_FLAG, "--dt", otherwise=_DT_CLI),
    CliHint("pass dt=...", _DT_FLAG, "--dt", otherwise=_DT_CLI),
    CliHint("pass dt=SECONDS", _DT_FLAG, "--dt", otherwise=_DT_CLI),
)


def cli_message(message: str, parser: argparse.ArgumentParser | None = None) -> str:
    """``message`` with the Python-only hints of :data:`CLI_HINTS` replaced by the flags of
    the running command ``parser`` (all of its options; none when ``parser`` is None)."""
    options = frozenset(parser._option_string_actions) if parser is not None else frozenset()
    for hint in CLI_HINTS:
        message = hint.apply(message, options)
    return message


def iter_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every subcommand parser below it, depth first, each once."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from iter_parsers(sub)


def plain_text(text: str) -> str:
    """Help text without reStructuredText markup: ````x```` -> ``x``, a trailing ``::`` -> ``:``."""
    text = re.sub(r"``(.+?)``", r"\1", text, flags=re.S)
    return re.sub(r"::$", ":", text, flags=re.M)


def _finish(parser: argparse.ArgumentParser) -> None:
    """Plain help texts and ``--debug`` on every parser below ``parser``."""
    for p in iter_parsers(parser):
        for attr in ("description", "epilog"):
            if getattr(p, attr):
                setattr(p, attr, plain_text(getattr(p, attr)))
        for action in p._actions:
            helps = [action]
            if isinstance(action, argparse._SubParsersAction):
                helps += action._choices_actions
            for a in helps:
                if a.help and a.help is not argparse.SUPPRESS:
                    a.help = plain_text(a.help)
        if "--debug" not in p._option_string_actions:
            # SUPPRESS: a subcommand that is not given --debug keeps the main parser's value
            p.add_argument(
                "--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neurall",
        description=(
            "neurall-neuro: spiking neural networks for neuromorphic hardware "
            "(SE-SNN for ALL subtyping, NIR/Lava export, energy reports)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"neurall-neuro {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"neurall_neuro.cli.{name}_cmd")
        module.register(sub)
    _finish(parser)
    return parser


def _command_parser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    """The parser of the (sub)subcommand that ``args`` runs."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                return _command_parser(chosen, args)
    return parser


def check_devices(command: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Check that every device option of ``command`` (``--device``, see
    :mod:`neurall_neuro.devices`) names a device of this machine: DeviceError otherwise."""
    from neurall_neuro.devices import device_option, resolve_device

    for action in command._actions:
        value = getattr(args, action.dest, None)
        if action.type is device_option and value is not None:
            resolve_device(value, option=action.option_strings[0])


def _warning_printer(parser: argparse.ArgumentParser) -> Callable[..., None]:
    """A ``warnings.showwarning`` that prints one line: ``warning: <message>``."""

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        stream = sys.stderr if file is None else file
        with contextlib.suppress(OSError):  # stderr closed: nothing sensible left to do
            print(f"warning: {cli_message(str(message), parser)}", file=stream, flush=True)

    return show


def _debug_requested(argv: Sequence[str] | None) -> bool:
    tokens = sys.argv[1:] if argv is None else argv
    return "--debug" in tokens or os.environ.get("NEURALL_DEBUG", "") not in ("", "0")


def main(argv: Sequence[str] | None = None) -> int:
    from neurall_neuro.errors import NeurallError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # checks the spelling of --device
    except NeurallError as exc:
        if _debug_requested(argv):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    debug = args.debug or os.environ.get("NEURALL_DEBUG", "") not in ("", "0")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    command = _command_parser(parser, args)
    try:
        check_devices(command, args)
    except NeurallError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with warnings.catch_warnings():  # restores the caller's warning printer afterwards
        if not debug:
            warnings.showwarning = _warning_printer(command)
        return _run(args, command, debug)


def _run(args: argparse.Namespace, command: argparse.ArgumentParser, debug: bool) -> int:
    from neurall_neuro.errors import NeurallError

    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except NeurallError as exc:
        if debug:
            raise
        print(f"error: {cli_message(str(exc), command)}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - last-resort one-line report
        if debug:
            raise
        print(
            f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
