"""One device rule for every ``neurall`` command with ``--device`` (and for Python callers).

A device spec is one of

* ``auto`` (the default of every command): ``cuda`` when ``torch.cuda.is_available()``,
  else ``cpu``;
* ``cpu``;
* ``cuda``: the current CUDA device (``cuda:0`` unless the process changed it);
* ``cuda:N``: CUDA device ``N`` with ``0 <= N < torch.cuda.device_count()``.

Specs are case-insensitive. Anything else (``gpu``, ``tpu``, ``mps``, ``cuda:x``,
``cuda:7`` on a machine with one GPU, ``cuda`` on a machine without CUDA) raises
:class:`DeviceError` naming the problem and the valid choices.

On the command line, :func:`device_option` (the argparse ``type`` of ``--device``)
checks the spelling and resolves ``auto`` while the command line is parsed, so a command
line parses the same way on every machine; ``neurall``'s main then checks that the
device exists (:func:`resolve_device`) before the command runs. Either way a bad device
fails in one line, before any data is read or any output folder is created.

torch is imported only when a spec is resolved, so building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING, Any

from neurall_neuro.errors import NeurallError

if TYPE_CHECKING:  # pragma: no cover
    import torch

DEFAULT_DEVICE = "auto"
#: The spellings :func:`resolve_device` accepts, in the order messages list them.
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda", "cuda:N")
DEVICE_HELP = "auto (cuda if available, else cpu), cpu, cuda or cuda:N"

_SPEC = re.compile(r"(?P<kind>auto|cpu|cuda)(?::(?P<index>\d+))?")


class DeviceError(NeurallError):
    """A device spec is malformed or names a device this machine does not have.

    Deliberately not a ``ValueError``: argparse turns a ``ValueError`` raised by an
    option's ``type`` into a generic multi-line usage message, whereas this error
    reaches ``neurall``'s main, which prints it as one line (exit status 2).
    """


def _parse(spec: object, option: str) -> tuple[str, int | None]:
    """``(kind, index)`` of a spec (``("cuda", 1)`` for ``cuda:1``); DeviceError if malformed."""
    match = _SPEC.fullmatch(str(spec).strip().lower())
    if match is None or (match["index"] is not None and match["kind"] != "cuda"):
        raise DeviceError(
            f"{option} {spec}: not a device; valid options: {', '.join(DEVICE_CHOICES)}"
        )
    return match["kind"], None if match["index"] is None else int(match["index"])


def resolve_device(spec: str | torch.device, option: str = "--device") -> torch.device:
    """The ``torch.device`` that ``spec`` names on this machine (see the module docstring).

    ``option`` is the name the messages use for the setting (``--device`` on the
    command line). Raises :class:`DeviceError` for a malformed spec, ``cuda`` without
    CUDA, or a CUDA index this machine does not have.
    """
    import torch

    kind, index = _parse(spec, option)
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"{option} {spec}: CUDA is not available on this machine "
            f"(torch.cuda.is_available() is False); use {option} cpu or auto"
        )
    if index is None:
        return torch.device("cuda")
    count = torch.cuda.device_count()
    if index >= count:
        valid = "cuda:0" if count == 1 else f"cuda:0 .. cuda:{count - 1}"
        raise DeviceError(
            f"{option} {spec}: this machine has {count} CUDA device{'s' if count > 1 else ''} "
            f"({valid}); use {option} {valid.split(' ')[0]}, cuda, cpu or auto"
        )
    return torch.device("cuda", index)


def device_option(spec: str) -> str:
    """argparse ``type`` of ``--device``: the spec in canonical form (``"cpu"``, ``"cuda"``,
    ``"cuda:1"``) with ``auto`` resolved, so ``auto`` never reaches the command's code.

    Raises :class:`DeviceError` for a malformed spec; whether a CUDA device exists is
    checked by :func:`resolve_device` (``neurall``'s main calls it before the command
    runs), so that a command line parses the same on every machine. argparse also applies
    this to the default ``"auto"`` when ``--device`` is not given.
    """
    kind, index = _parse(spec, "--device")
    if kind == "auto":
        return str(resolve_device(kind))
    return kind if index is None else f"{kind}:{index}"


def add_device_argument(
    container: argparse._ActionsContainer,
    *,
    purpose: str = "",
    default: Any = DEFAULT_DEVICE,
) -> argparse.Action:
    """Add the ``--device`` option with the one rule to a parser or an argument group.

    ``purpose`` prefixes the help (e.g. ``"device of the torch and loihi-emu targets"``);
    ``default`` is ``"auto"``, or ``argparse.SUPPRESS`` for commands whose defaults
    come from a recipe file (``neurall train``).
    """
    shown = DEFAULT_DEVICE if default is argparse.SUPPRESS else default
    text = f"{DEVICE_HELP}; default: {shown}"
    return container.add_argument(
        "--device",
        type=device_option,
        default=default,
        metavar="DEVICE",
        help=f"{purpose}: {text}" if purpose else text,
    )
