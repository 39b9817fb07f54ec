"""Near-duplicate check between evaluated images and a model's training data.

An external cohort that shares images with the training data (the two public ALL
sets come from the same hospital) gives optimistic scores. Before scoring, the
evaluated images are compared with the training data by
:mod:`neurall_neuro.data.dedup`; any overlap is reported (count and example pairs)
in ``metrics.json`` and as an :class:`OverlapWarning`.

Which training images are compared:

* evaluating one split of the training cohort (``--split-file``): the evaluated part
  against the *other* parts (train and val) of the same cohort;
* evaluating the training cohort itself without a split: nothing (every image would
  match itself); the report says so;
* any other cohort: against the whole training cohort.

The training data is ``train_data`` when given, else the ``train_root`` (and
``train_layout``) recorded in the checkpoint's metadata when that folder exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurall_neuro.data.records import Cohort
from neurall_neuro.models.checkpoint import Checkpoint

#: Example pairs kept in the report.
MAX_EXAMPLES = 20


class OverlapWarning(UserWarning):
    """Evaluated images are near-duplicates of training images (the score is optimistic)."""


@dataclass
class OverlapReport:
    """Result of the near-duplicate check."""

    reference: str
    n_evaluated: int
    n_reference: int
    n_overlapping_images: int
    n_pairs: int
    examples: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    def message(self) -> str:
        return (
            f"{self.n_overlapping_images} of {self.n_evaluated} evaluated images are near-duplicates "
            f"of training images in {self.reference} ({self.n_pairs} pairs); the scores are "
            "optimistic -- remove the overlap or report it"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "n_evaluated": self.n_evaluated,
            "n_reference": self.n_reference,
            "n_overlapping_images": self.n_overlapping_images,
            "n_pairs": self.n_pairs,
            "examples": self.examples,
            "note": self.note,
        }


def _same_root(a: Path, b: Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _reference_cohort(
    evaluated: Cohort,
    checkpoint: Checkpoint,
    train_data: str | Path | Cohort | None,
    evaluated_full: Cohort | None,
) -> tuple[Cohort | None, str]:
    """The training images to compare with (or None) and a note explaining the choice."""
    from neurall_neuro.data.layouts import load_cohort

    if isinstance(train_data, Cohort):
        reference = train_data
    elif train_data is not None:
        reference = load_cohort(train_data)
    else:
        root = checkpoint.metadata.get("train_root")
        if not root or not Path(root).exists():
            return None, "no training data known (pass --train-data to check for overlap)"
        reference = load_cohort(root, checkpoint.metadata.get("train_layout") or None)
    if _same_root(reference.root, evaluated.root):
        if evaluated_full is None:
            return None, "the evaluated cohort is the training cohort; no overlap check"
        evaluated_paths = {Path(r.path).resolve() for r in evaluated.records}
        others = [
            i
            for i, r in enumerate(reference.records)
            if Path(r.path).resolve() not in evaluated_paths
        ]
        return reference.subset(others), "evaluated split vs the other parts of the training cohort"
    return reference, "evaluated cohort vs the training cohort"


def check_overlap(
    evaluated: Cohort,
    checkpoint: Checkpoint,
    train_data: str | Path | Cohort | None = None,
    evaluated_full: Cohort | None = None,
    threshold: int | None = None,
) -> OverlapReport:
    """Compare ``evaluated`` with the training data (see the module docstring).

    When there is nothing to compare with, the report has no reference images and its
    ``note`` says why.
    """
    reference, note = _reference_cohort(evaluated, checkpoint, train_data, evaluated_full)
    if reference is None:
        return OverlapReport("", len(evaluated), 0, 0, 0, note=note)
    pairs = cross_duplicate_pairs(evaluated, reference, threshold)
    evaluated_hits = {a for a, _, _, _ in pairs}
    examples = [
        {
            "evaluated": str(evaluated.records[a].path),
            "training": str(reference.records[b].path),
            "hash_distance": d,
            "similarity": round(sim, 4),
        }
        for a, b, d, sim in pairs[:MAX_EXAMPLES]
    ]
    return OverlapReport(
        reference=str(reference.root),
        n_evaluated=len(evaluated),
        n_reference=len(reference),
        n_overlapping_images=len(evaluated_hits),
        n_pairs=len(pairs),
        examples=examples,
        note=note,
    )


def cross_duplicate_pairs(
    evaluated: Cohort, reference: Cohort, threshold: int | None = None
) -> list[tuple[int, int, int, float]]:
    """``(evaluated index, reference index, hash distance, similarity)`` of near-duplicates."""
    from neurall_neuro.data.dedup import find_cross_duplicates

    pairs = find_cross_duplicates(evaluated, reference, threshold=threshold)
    return [(p.index_a, p.index_b, int(p.hash_distance), float(p.similarity)) for p in pairs]
