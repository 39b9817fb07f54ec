"""Checking that every image of a cohort can be decoded, before training on it.

:func:`scan_images` fully decodes each file with the library's reader
(:func:`neurall_neuro.data.imageio.decode_rgb`), so it finds exactly the files that
would fail later: missing or unreadable paths (permissions), zero-byte files,
non-image files (text, random bytes with an image extension), and truncated or
corrupt image data. Grayscale, palette, RGBA and 16-bit images are *not* errors:
they are converted to 8-bit RGB by the reader and counted in ``converted`` by
their original Pillow mode.

By default bad files are skipped and listed in the report; ``strict=True`` raises
:class:`~neurall_neuro.errors.BadImageError` listing them all.

:func:`check_cohort_images` applies a policy to a loaded cohort and is what
``load_cohort(root, bad_images=...)`` runs before any command works on a dataset
folder (see :data:`BAD_IMAGE_POLICIES`): ``"skip"`` drops the unreadable images with
one :class:`~neurall_neuro.data.records.BadImageWarning` that gives their number, the
first :data:`LISTED` paths with reasons, and the ``neurall data scan DIR`` command
listing them all; ``"error"`` raises the same message as a ``BadImageError``.
"""

from __future__ import annotations

import shlex
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from neurall_neuro.data.imageio import decode_rgb
from neurall_neuro.data.records import BadImageWarning, Cohort, ImageRecord
from neurall_neuro.errors import BadImageError, ConfigError
from neurall_neuro.progress import track

#: What to do with the unreadable images of a cohort, by policy name:
#: keep them (no decoding), skip them with one warning, or fail listing them.
BAD_IMAGE_POLICIES: dict[str, str] = {
    "keep": "keep every record; nothing is decoded (unreadable files fail when used)",
    "skip": "decode every image and leave out the unreadable ones, with one warning",
    "error": "decode every image and raise BadImageError listing the unreadable ones",
}
#: Number of unreadable files named in the warning (the scan command lists them all).
LISTED = 5


@dataclass
class ScanReport:
    """Result of :func:`scan_images`.

    Attributes:
        ok: records whose image decoded.
        bad: ``(path, reason)`` for every file that did not.
        converted: number of decoded images per original mode other than RGB
            (e.g. ``{"L": 3, "RGBA": 1, "I;16": 2}``).
    """

    ok: list[ImageRecord] = field(default_factory=list)
    bad: list[tuple[Path, str]] = field(default_factory=list)
    converted: dict[str, int] = field(default_factory=dict)

    @property
    def n_checked(self) -> int:
        return len(self.ok) + len(self.bad)

    def summary(self) -> str:
        """One line: how many images were fine, bad, converted."""
        conv = ", ".join(f"{m} {n}" for m, n in sorted(self.converted.items())) or "none"
        return (
            f"{self.n_checked} images checked: {len(self.ok)} ok, {len(self.bad)} bad; "
            f"converted to RGB: {conv}"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "n_checked": self.n_checked,
            "n_ok": len(self.ok),
            "bad": [{"path": str(p), "reason": r} for p, r in self.bad],
            "converted": dict(self.converted),
        }


def _reason(exc: BadImageError, path: Path) -> str:
    """The reason part of a BadImageError message (it starts with the path)."""
    msg = str(exc)
    prefix = f"{path}: "
    return msg[len(prefix) :] if msg.startswith(prefix) else msg


def scan_images(records: Sequence[ImageRecord] | Cohort, strict: bool = False) -> ScanReport:
    """Decode every image of ``records`` and report the ones that fail.

    Raises:
        BadImageError: with ``strict=True``, when any file is bad (all are listed).
    """
    recs = list(records.records if isinstance(records, Cohort) else records)
    report = ScanReport()
    modes: Counter[str] = Counter()
    items = track(recs, "scanning images") if len(recs) >= 500 else recs
    for rec in items:
        path = Path(rec.path)
        try:
            _, mode = decode_rgb(path)
        except BadImageError as exc:
            report.bad.append((path, _reason(exc, path)))
            continue
        report.ok.append(rec)
        if mode != "RGB":
            modes[mode] += 1
    report.converted = dict(sorted(modes.items()))
    if strict and report.bad:
        lines = "\n".join(f"  {p}: {r}" for p, r in report.bad)
        raise BadImageError(f"{len(report.bad)} of {len(recs)} images are unusable:\n{lines}")
    return report


def unreadable_message(
    cohort: Cohort, bad: Sequence[tuple[Path, str]], n_total: int, scan_command: str
) -> str:
    """The text of the skip warning / error: count, the first :data:`LISTED` files with
    their reasons, and the command that lists them all."""
    lines = [
        f"{len(bad)} of {n_total} images of {cohort.root} cannot be read "
        "(truncated, corrupt, empty or not an image):"
    ]
    lines += [f"  {p}: {reason}" for p, reason in bad[:LISTED]]
    if len(bad) > LISTED:
        lines.append(f"  ... and {len(bad) - LISTED} more")
    lines.append(f"run `{scan_command}` to list them all")
    return "\n".join(lines)


def check_cohort_images(
    cohort: Cohort,
    bad_images: str = "skip",
    scan_command: str | None = None,
    stacklevel: int = 2,
) -> Cohort:
    """Apply the ``bad_images`` policy (:data:`BAD_IMAGE_POLICIES`) to ``cohort``.

    With ``"skip"``, returns the cohort without its unreadable images (they are added to
    ``cohort.skipped``) after one :class:`~neurall_neuro.data.records.BadImageWarning`
    naming their number and the first few; a cohort without bad files is returned
    unchanged (the same object). ``scan_command`` is the command the message suggests
    (default ``neurall data scan ROOT``); ``stacklevel`` is passed on to
    :func:`warnings.warn`, counted from the caller of this function.

    Raises:
        ConfigError: ``bad_images`` is not a policy name (lists the valid ones).
        BadImageError: with ``"error"``, when any image is unreadable; with ``"skip"``,
            when none is readable.
    """
    if bad_images not in BAD_IMAGE_POLICIES:
        raise ConfigError(
            f"bad_images={bad_images!r} is invalid; valid options: {', '.join(BAD_IMAGE_POLICIES)}"
        )
    if bad_images == "keep" or not cohort.records:
        return cohort
    report = scan_images(cohort)
    if not report.bad:
        return cohort
    command = scan_command or f"neurall data scan {shlex.quote(str(cohort.root))}"
    message = unreadable_message(cohort, report.bad, len(cohort), command)
    if bad_images == "error" or not report.ok:
        prefix = "" if report.ok else "no usable image left: "
        raise BadImageError(prefix + message)
    warnings.warn(message, BadImageWarning, stacklevel=stacklevel + 1)
    return Cohort(
        cohort.root,
        cohort.layout,
        cohort.class_names,
        report.ok,
        [*cohort.skipped, *report.bad],
    )
