"""A labelled batch of preprocessed images from a dataset folder (calibration, parity, demos)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from neurall_neuro.data.dataset import ImageDataset
from neurall_neuro.data.layouts import load_cohort, map_labels
from neurall_neuro.data.preprocess import Preprocessing
from neurall_neuro.data.records import Cohort, ImageRecord
from neurall_neuro.errors import ConfigError, DataError


@dataclass
class ImageBatch:
    """``images`` ``[N, 3, S, S]``; ``labels`` ``[N]`` indexing ``class_names``, or None
    when the dataset's classes do not map onto them; the chosen ``records``."""

    images: torch.Tensor
    labels: torch.Tensor | None
    records: list[ImageRecord]
    class_names: tuple[str, ...]


def sample_images(
    data: str | Path | Cohort,
    preprocessing: Preprocessing | dict[str, Any],
    n: int | None = None,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> ImageBatch:
    """``n`` seeded-random images of ``data`` (all when ``n`` is None), preprocessed.

    A dataset folder is loaded with ``bad_images="skip"``: unreadable files are left out
    (one warning lists them) before the images are drawn, so they are drawn from the
    readable ones. A :class:`Cohort` is used as given.

    With ``class_names`` (e.g. a checkpoint's), the cohort's labels are mapped onto them
    by name; if they cannot be mapped the batch is returned unlabelled.
    """
    if n is not None and n < 1:
        raise ConfigError(f"number of images must be >= 1, got {n}")
    cohort = data if isinstance(data, Cohort) else load_cohort(data, bad_images="skip")
    labelled = True
    if class_names is not None:
        try:
            cohort = map_labels(cohort, list(class_names))
        except DataError:
            labelled = False
    records = list(cohort.records)
    if not records:
        raise DataError(f"{cohort.root} holds no images")
    if n is not None and n < len(records):
        records = random.Random(seed).sample(records, n)
    if isinstance(preprocessing, dict):
        preprocessing = Preprocessing.from_dict(preprocessing)
    dataset = ImageDataset(records, preprocessing, cache=False)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    labels = torch.tensor([r.label for r in records]) if labelled else None
    return ImageBatch(images, labels, records, tuple(cohort.class_names))
