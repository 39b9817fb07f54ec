"""Image records and cohorts: the in-memory description of a dataset.

An :class:`ImageRecord` is one image file with its integer label (an index into the
cohort's ``class_names``), an optional patient (or subject) id, and the label as the
source dataset spelled it (a folder name, a CSV value). A :class:`Cohort` is the list
of records of one dataset folder together with the layout that read it.

Records hold paths, never pixels: decoding happens in :mod:`neurall_neuro.data.imageio`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from neurall_neuro.errors import DataError


class DataWarning(UserWarning):
    """A dataset is usable but something about it deserves attention (e.g. an empty class)."""


class BadImageWarning(DataWarning):
    """Unreadable images of a dataset folder were left out (one warning lists them all)."""


@dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset.

    Attributes:
        path: absolute (or caller-relative) path of the image file.
        label: index of the class in the owning cohort's ``class_names``.
        patient_id: patient / subject id when the dataset provides one, else ``None``.
        source_label: the class as spelled by the source (folder name, CSV value).
    """

    path: Path
    label: int
    patient_id: str | None = None
    source_label: str = ""


@dataclass
class Cohort:
    """The records of one dataset folder.

    Attributes:
        root: the folder (or manifest file) the cohort was loaded from.
        layout: name of the layout that read it (see :mod:`neurall_neuro.data.layouts`).
        class_names: class names; ``record.label`` indexes this tuple.
        records: the images, in a deterministic order (sorted by class, then path).
        skipped: ``(path, reason)`` of the folder's images that were left out because
            they cannot be decoded (``load_cohort(..., bad_images="skip")``); a split
            that names them still applies (see :meth:`Split.indices
            <neurall_neuro.data.splits.Split.indices>`).
    """

    root: Path
    layout: str
    class_names: tuple[str, ...]
    records: list[ImageRecord] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.class_names = tuple(self.class_names)
        n = len(self.class_names)
        for rec in self.records:
            if not 0 <= rec.label < n:
                raise DataError(
                    f"record {rec.path} has label {rec.label}, outside 0..{n - 1} "
                    f"for classes {list(self.class_names)}"
                )

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> list[int]:
        """Integer label of every record, in record order."""
        return [r.label for r in self.records]

    @property
    def paths(self) -> list[Path]:
        """Path of every record, in record order."""
        return [r.path for r in self.records]

    @property
    def groups(self) -> list[str] | None:
        """Patient id of every record, or ``None`` when no record carries one.

        A cohort where only some records have ids gets a group per id-less record
        (its own path), so that such records never join another record's group.
        """
        if not any(r.patient_id for r in self.records):
            return None
        return [r.patient_id if r.patient_id else f"file:{r.path}" for r in self.records]

    @property
    def has_patient_ids(self) -> bool:
        """Whether at least one record carries a patient id."""
        return any(r.patient_id for r in self.records)

    def counts(self) -> dict[str, int]:
        """Number of images per class name (every class listed, zero included)."""
        out = dict.fromkeys(self.class_names, 0)
        for r in self.records:
            out[self.class_names[r.label]] += 1
        return out

    def patients(self) -> dict[str, set[str]]:
        """Patient ids per class name (empty sets when the cohort has no ids)."""
        out: dict[str, set[str]] = {c: set() for c in self.class_names}
        for r in self.records:
            if r.patient_id:
                out[self.class_names[r.label]].add(r.patient_id)
        return out

    def subset(self, indices: Iterable[int]) -> Cohort:
        """A cohort with the records at ``indices`` (same root, layout and classes)."""
        idx: Sequence[int] = list(indices)
        n = len(self.records)
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise DataError(f"record indices {bad[:5]} are out of range for a cohort of {n} images")
        return Cohort(
            self.root,
            self.layout,
            self.class_names,
            [self.records[i] for i in idx],
            list(self.skipped),
        )

    def summary(self) -> str:
        """One line: layout, size and per-class counts."""
        counts = ", ".join(f"{k} {v}" for k, v in self.counts().items())
        return f"{self.layout} at {self.root}: {len(self)} images ({counts})"
