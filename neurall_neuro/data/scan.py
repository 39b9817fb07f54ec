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
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from neurall_neuro.data.imageio import decode_rgb
from neurall_neuro.data.records import Cohort, ImageRecord
from neurall_neuro.errors import BadImageError
from neurall_neuro.progress import track


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
