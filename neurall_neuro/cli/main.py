"""Entry point of the ``neurall`` command.

Each subcommand lives in its own module ``neurall_neuro.cli.<name>_cmd`` exposing
``register(subparsers)``, which adds its parser and sets ``func`` to the function
that runs it. Heavy imports (torch, lava) happen inside those functions so that
``neurall --help`` stays fast.

Errors derived from :class:`neurall_neuro.errors.NeurallError` print as one line;
``--debug`` (or ``NEURALL_DEBUG=1``) shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neurall",
        description=(
            "neurall-neuro: spiking neural networks for neuromorphic hardware "
            "(SE-SNN for ALL subtyping, NIR/Lava export, energy reports)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"neurall-neuro {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks on errors (or NEURALL_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"neurall_neuro.cli.{name}_cmd")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("NEURALL_DEBUG", "") not in ("", "0")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from neurall_neuro.errors import NeurallError

    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except NeurallError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
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
