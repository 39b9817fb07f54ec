"""The data of a training run: cohort, split (made or reused, saved as ``split.json``), datasets."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from neurall_neuro.data.dataset import ImageDataset
from neurall_neuro.data.layouts import load_cohort
from neurall_neuro.data.preprocess import Preprocessing
from neurall_neuro.data.records import Cohort
from neurall_neuro.data.splits import Split, groups_from_duplicates, make_split
from neurall_neuro.data.stain import fit_stain_reference
from neurall_neuro.errors import ConfigError, DataError
from neurall_neuro.training.config import TrainConfig
from neurall_neuro.training.distributed import DistContext, barrier

SPLIT_FILE = "split.json"


class SplitWarning(UserWarning):
    """The split cannot keep patients apart (the cohort has no patient ids)."""


@dataclass
class TrainingData:
    """Everything data-related a run uses."""

    cohort: Cohort
    split: Split
    split_path: Path
    parts: dict[str, Cohort]
    preprocessing: Preprocessing
    train_set: ImageDataset
    val_set: ImageDataset


def make_or_load_split(
    config: TrainConfig,
    cohort: Cohort,
    ctx: DistContext,
    log: Callable[[str], None],
) -> tuple[Split, Path]:
    """The run's split, saved to ``<out>/split.json`` by rank 0 and read back by every rank.

    Order of precedence: the run's own ``split.json`` when resuming, ``split_file``,
    else a new grouped split (patient ids; near-duplicate clusters with
    ``group_duplicates``; image-level with a warning when there are neither).
    """
    run_split = Path(config.out) / SPLIT_FILE
    if config.resume:
        if not run_split.is_file():
            raise DataError(f"cannot resume: {run_split} is missing")
        return Split.load(run_split), run_split
    if ctx.is_main:
        if config.split_file is not None:
            split = Split.load(config.split_file)
            log(f"split: reusing {config.split_file}")
        else:
            groups = None
            group_by = None
            if config.group_duplicates:
                log("split: grouping near-duplicate images (dedup check)")
                groups = groups_from_duplicates(cohort, base_groups=cohort.groups)
                group_by = "duplicates+patient" if cohort.has_patient_ids else "duplicates"
            elif not cohort.has_patient_ids:
                warnings.warn(
                    f"{cohort.root} has no patient ids: the split is image-level, so images of one "
                    "patient (or near-duplicates) may land in both train and test; pass "
                    "--group-duplicates to group near-duplicate images",
                    SplitWarning,
                    stacklevel=3,
                )
            split = make_split(
                cohort,
                val_fraction=config.val_fraction,
                test_fraction=config.test_fraction,
                seed=config.seed,
                groups=groups,
                group_by=group_by,
            )
        split.save(run_split)
    barrier(ctx)
    return Split.load(run_split), run_split


def prepare_data(
    config: TrainConfig,
    preprocessing: Preprocessing,
    ctx: DistContext,
    log: Callable[[str], None],
    cohort: Cohort | None = None,
) -> TrainingData:
    """Load the cohort, get the split, and build the (cached) train and val datasets.

    With ``config.stain_norm`` set, the stain reference is fitted on the training split
    (:func:`~neurall_neuro.data.stain.fit_stain_reference`); the returned
    ``TrainingData.preprocessing`` carries it (the trainer saves that into its
    checkpoints), ``preprocessing`` itself is not changed.
    """
    cohort = cohort if cohort is not None else load_cohort(config.data, config.layout)
    split, split_path = make_or_load_split(config, cohort, ctx, log)
    parts = split.apply(cohort)
    if len(parts["train"]) == 0:
        raise DataError(f"the split of {cohort.root} has no training images")
    if len(parts["val"]) == 0:
        raise ConfigError(
            "training needs a validation split (early stopping and the LR schedule monitor "
            f"the validation loss), but the split ({split.group_by} groups) put no image in val; "
            "use a larger --val-fraction (with few patients per class a group may not fit) or a "
            "split file with val images"
        )
    log(
        "data: "
        + ", ".join(f"{p} {len(c)}" for p, c in parts.items())
        + f" images ({cohort.layout}, {len(cohort.class_names)} classes: "
        + ", ".join(cohort.class_names)
        + ")"
    )
    preprocessing = with_stain_norm(config, preprocessing, parts["train"], log)
    train_set = ImageDataset(
        parts["train"],
        preprocessing,
        augment=config.augment,
        cache=True,
        stain_augment=config.stain_augment,
        stain_augment_strength=config.stain_augment_strength,
    )
    val_set = ImageDataset(parts["val"], preprocessing, augment=False, cache=True)
    return TrainingData(cohort, split, split_path, parts, preprocessing, train_set, val_set)


def with_stain_norm(
    config: TrainConfig,
    preprocessing: Preprocessing,
    train: Cohort,
    log: Callable[[str], None],
) -> Preprocessing:
    """``preprocessing`` with the stain normalisation of ``config.stain_norm``, its
    reference fitted on ``train`` (a copy; ``preprocessing`` when nothing changes).

    Settings that already carry a reference for that method are kept (every process and
    a resumed run fit the same reference anyway: the choice depends only on the files).
    """
    if config.stain_norm == preprocessing.stain_norm:
        if config.stain_norm == "none" or preprocessing.stain_reference is not None:
            return preprocessing
    elif preprocessing.stain_norm != "none":
        raise ConfigError(
            f"stain_norm={config.stain_norm!r} conflicts with the preprocessing given "
            f"(stain_norm={preprocessing.stain_norm!r})"
        )
    if config.stain_norm == "none":
        return preprocessing
    root = Path(train.root)
    root = root if root.is_dir() else root.parent  # a manifest file: its folder
    reference = fit_stain_reference([r.path for r in train.records], root=root)
    fitted = dataclasses.replace(
        preprocessing, stain_norm=config.stain_norm, stain_reference=reference
    )
    he = ", ".join(f"({a:.3f}, {b:.3f})" for a, b in reference.he)
    log(
        f"stain normalisation: {config.stain_norm}, reference {reference.image} "
        f"(HERef {he}; maxCRef {reference.max_c[0]:.3f}, {reference.max_c[1]:.3f})"
    )
    return fitted
