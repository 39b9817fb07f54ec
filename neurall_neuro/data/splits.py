"""Train / validation / test splits: stratified by class, grouped, saved as JSON.

A :class:`Split` stores the images of each part as paths relative to the cohort
root (robust to re-ordering or to images added later), the group of every image
(patient id, near-duplicate cluster, ...), the seed and the class names. Loading
a split file re-checks that no image and no group appears in two parts; a file
edited so that a group leaks raises :class:`~neurall_neuro.errors.DataError`.

:func:`make_split` is grouped and stratified: groups never straddle parts, and
every class is split on its own so class proportions hold in each part. Groups
default to patient ids when the cohort has them, otherwise every image is its own
group; for datasets without patient ids but with near-duplicate frames (the ALL
image dataset), pass ``groups=groups_from_duplicates(cohort)``.

Assignment, per class: the class's groups are shuffled with the seed and taken
largest first; each goes to the part (test, val, train) whose image-count target
it brings closest, i.e. the part maximising ``|d| - |d - size|`` with ``d`` the
part's remaining deficit (ties go to the part with the largest relative deficit,
then in the order test, val, train). A group whose images span several classes
(a near-duplicate pair labelled differently) is placed with its majority class.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurall_neuro.atomic import atomic_write_text
from neurall_neuro.data.dedup import find_duplicate_pairs
from neurall_neuro.data.records import Cohort
from neurall_neuro.errors import ConfigError, DataError

PARTS: tuple[str, ...] = ("train", "val", "test")
FORMAT = "neurall-split"
VERSION = 1


def record_key(cohort: Cohort, index: int) -> str:
    """The key of record ``index`` in a split file: its path relative to the cohort root.

    The root is the dataset folder (or the manifest's folder); records outside it
    are keyed by their absolute path. Keys use ``/`` separators.
    """
    return path_key(cohort, cohort.records[index].path)


def path_key(cohort: Cohort, path: str | os.PathLike[str]) -> str:
    """The split-file key of an image ``path`` of ``cohort`` (see :func:`record_key`)."""
    base = cohort.root if cohort.root.is_dir() else cohort.root.parent
    path = Path(path)
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


@dataclass
class Split:
    """A train/val/test partition of a cohort's images.

    Attributes:
        train, val, test: record keys (paths relative to the cohort root, see
            :func:`record_key`).
        seed: seed used by :func:`make_split`.
        group_by: what the groups are (``patient``, ``duplicates``, ``custom``, ``none``).
        class_names: class names of the cohort the split was made for.
        root: the cohort root, for information (splits apply to copies elsewhere too).
        layout: the cohort's layout name.
        groups: group of each key (empty when ``group_by == "none"``).
    """

    train: list[str]
    val: list[str]
    test: list[str]
    seed: int = 0
    group_by: str = "none"
    class_names: tuple[str, ...] = ()
    root: str = ""
    layout: str = ""
    groups: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.class_names = tuple(self.class_names)
        self.check()

    def parts(self) -> dict[str, list[str]]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def check(self) -> None:
        """Raise DataError if an image or a group appears in two parts."""
        where: dict[str, str] = {}
        for part, keys in self.parts().items():
            for k in keys:
                if k in where:
                    raise DataError(f"split leak: image {k!r} is in both {where[k]} and {part}")
                where[k] = part
        group_parts: dict[str, set[str]] = defaultdict(set)
        for k, part in where.items():
            g = self.groups.get(k)
            if g is not None:
                group_parts[g].add(part)
        leaks = {g: sorted(p) for g, p in group_parts.items() if len(p) > 1}
        if leaks:
            examples = "; ".join(f"{g!r} in {', '.join(p)}" for g, p in sorted(leaks.items())[:5])
            raise DataError(
                f"split leak: {len(leaks)} group(s) ({self.group_by}) appear in more than one "
                f"part: {examples}"
            )

    def indices(self, cohort: Cohort) -> dict[str, list[int]]:
        """Record indices of each part in ``cohort`` (DataError if a key is missing).

        Images the cohort skipped as unreadable (``cohort.skipped``, see
        ``load_cohort(..., bad_images="skip")``, which already warned about them) are left
        out of their part instead of counting as missing.
        """
        if self.class_names and tuple(cohort.class_names) != self.class_names:
            raise DataError(
                f"split was made for classes {list(self.class_names)}, but {cohort.root} has "
                f"classes {list(cohort.class_names)}"
            )
        index_of = {record_key(cohort, i): i for i in range(len(cohort))}
        skipped = {path_key(cohort, p) for p, _ in cohort.skipped}
        out: dict[str, list[int]] = {}
        missing: list[str] = []
        for part, keys in self.parts().items():
            out[part] = [index_of[k] for k in keys if k in index_of]
            missing += [k for k in keys if k not in index_of and k not in skipped]
        if missing:
            raise DataError(
                f"{len(missing)} image(s) of the split are not in {cohort.root}, e.g. "
                f"{missing[:3]}; was the split made for another folder (split root: {self.root})?"
            )
        return out

    def apply(self, cohort: Cohort) -> dict[str, Cohort]:
        """The parts as cohorts: ``{"train": ..., "val": ..., "test": ...}``."""
        return {part: cohort.subset(idx) for part, idx in self.indices(cohort).items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "seed": self.seed,
            "group_by": self.group_by,
            "class_names": list(self.class_names),
            "root": self.root,
            "layout": self.layout,
            "train": self.train,
            "val": self.val,
            "test": self.test,
            "groups": self.groups,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write JSON atomically (:func:`neurall_neuro.atomic.atomic_write_text`: temporary
        file in the same folder, then rename; mode ``0o666 & ~umask``)."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Split:
        """Read a split file; DataError if it is malformed or leaks an image or group."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"split file {path} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"split file {path} is not readable JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DataError(f"{path} is not a neurall split file (format {FORMAT!r} expected)")
        if data.get("version") != VERSION:
            raise DataError(f"{path}: unsupported split version {data.get('version')!r}")
        try:
            parts = {p: [str(k) for k in data[p]] for p in PARTS}
            groups = {str(k): str(v) for k, v in dict(data.get("groups", {})).items()}
            split = cls(
                **parts,
                seed=int(data.get("seed", 0)),
                group_by=str(data.get("group_by", "none")),
                class_names=tuple(data.get("class_names", ())),
                root=str(data.get("root", "")),
                layout=str(data.get("layout", "")),
                groups=groups,
            )
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: malformed split file ({type(exc).__name__}: {exc})") from None
        return split

    def summary(self, cohort: Cohort | None = None) -> str:
        """Sizes of the parts (and per-class counts when ``cohort`` is given)."""
        if cohort is None:
            return ", ".join(f"{p} {len(k)}" for p, k in self.parts().items())
        lines = []
        for part, sub in self.apply(cohort).items():
            counts = ", ".join(f"{c} {n}" for c, n in sub.counts().items())
            lines.append(f"{part:<5} {len(sub):>5} images ({counts})")
        return "\n".join(lines)


def make_split(
    cohort: Cohort,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    groups: Sequence[str] | None = None,
    group_by: str | None = None,
) -> Split:
    """A grouped, class-stratified train/val/test split of ``cohort``.

    Args:
        cohort: the images.
        val_fraction, test_fraction: target fractions of images per class (>= 0,
            summing to < 1). With few groups per class the fractions are met only
            approximately (a group is never cut).
        seed: shuffling seed (same inputs and seed -> same split).
        groups: group label of every record; default: patient ids when present,
            else one group per image.
        group_by: name stored in the split for ``groups`` (default: ``patient``,
            ``custom`` for explicit groups, or ``none``).
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"val_fraction + test_fraction must be < 1, got {val_fraction + test_fraction}"
        )
    n = len(cohort)
    if n == 0:
        raise DataError(f"cannot split an empty cohort ({cohort.root})")
    if groups is not None:
        groups = [str(g) for g in groups]
        if len(groups) != n:
            raise ConfigError(f"groups has {len(groups)} entries for {n} images")
        kind = group_by or "custom"
    elif cohort.has_patient_ids:
        groups = cohort.groups
        kind = group_by or "patient"
    else:
        groups = None
        kind = "none"
    keys = [record_key(cohort, i) for i in range(n)]
    group_of = groups if groups is not None else keys

    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(group_of):
        members[g].append(i)
    by_class: dict[int, list[str]] = defaultdict(list)
    for g, idx in members.items():
        majority = Counter(cohort.records[i].label for i in idx).most_common()
        label = min(lab for lab, c in majority if c == majority[0][1])
        by_class[label].append(g)

    fractions = {"test": test_fraction, "val": val_fraction}
    fractions["train"] = 1.0 - test_fraction - val_fraction
    order = ("test", "val", "train")
    assigned: dict[str, list[int]] = {p: [] for p in PARTS}
    for label in sorted(by_class):
        names = sorted(by_class[label])
        rng = np.random.default_rng([int(seed), int(label)])
        perm = rng.permutation(len(names))
        shuffled = [names[k] for k in perm]
        shuffled.sort(key=lambda g: -len(members[g]))  # stable: random among equal sizes
        total = sum(len(members[g]) for g in shuffled)
        target = {p: fractions[p] * total for p in order}
        count = dict.fromkeys(order, 0)
        candidates = [p for p in order if target[p] > 0]
        for g in shuffled:
            size = len(members[g])
            best = max(candidates, key=lambda p: _gain(target[p], count[p], size, order.index(p)))
            count[best] += size
            assigned[best].extend(members[g])

    parts = {p: [keys[i] for i in sorted(assigned[p])] for p in PARTS}
    group_map = {keys[i]: group_of[i] for i in range(n)} if groups is not None else {}
    return Split(
        **parts,
        seed=int(seed),
        group_by=kind,
        class_names=tuple(cohort.class_names),
        root=str(cohort.root),
        layout=cohort.layout,
        groups=group_map,
    )


def _gain(target: float, count: int, size: int, rank: int) -> tuple[float, float, int]:
    """Preference of a part for a group of ``size`` images (larger is better).

    First how much closer the part's count gets to its target, ``|d| - |d - size|``
    with ``d = target - count``; then the relative deficit ``d / target``; then the
    order test, val, train (lower ``rank`` first).
    """
    d = target - count
    return (abs(d) - abs(d - size), d / target, -rank)


def groups_from_duplicates(
    cohort: Cohort,
    threshold: int | None = None,
    base_groups: Sequence[str] | None = None,
) -> list[str]:
    """Group labels joining near-duplicate images (connected components of duplicate pairs).

    Runs :func:`neurall_neuro.data.dedup.find_duplicate_pairs` on ``cohort`` and unions
    every pair; images in no pair form their own group. With ``base_groups`` (e.g.
    patient ids) the components are also unioned with those groups, so both patients
    and duplicate clusters stay on one side of a split.

    Returns:
        One label per record: ``"dup-<k>"`` for every image of a cluster that holds at
        least one duplicate pair, otherwise its base group (or its record key).
    """
    n = len(cohort)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    pairs = find_duplicate_pairs(cohort, threshold=threshold)
    for pair in pairs:
        union(pair.index_a, pair.index_b)
    if base_groups is not None:
        if len(base_groups) != n:
            raise ConfigError(f"base_groups has {len(base_groups)} entries for {n} images")
        first: dict[str, int] = {}
        for i, g in enumerate(base_groups):
            union(i, first.setdefault(str(g), i))
    roots_with_duplicates = {find(pair.index_a) for pair in pairs}
    label_of_root: dict[int, str] = {}
    out = []
    for i in range(n):
        r = find(i)
        if r in roots_with_duplicates:
            out.append(label_of_root.setdefault(r, f"dup-{len(label_of_root)}"))
        else:
            out.append(str(base_groups[i]) if base_groups is not None else record_key(cohort, i))
    return out
