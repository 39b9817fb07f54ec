"""Fixtures of the data tests: tiny image files on disk and a small generated cohort."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

WriteImage = Callable[..., Path]


def _pixels(seed: int, size: int) -> np.ndarray:
    """A small RGB image with structure (smooth gradient plus random blobs), unique per seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.8 - 0.3 * yy, 0.7 + 0.2 * xx, 0.85 - 0.1 * xx * yy], axis=-1)
    for _ in range(4):
        cy, cx, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.08, 0.2)
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2) < r * r
        img[blob] *= rng.uniform(0.3, 0.7, 3)
    img += rng.normal(0, 0.03, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


@pytest.fixture
def write_image() -> WriteImage:
    """``write_image(path, seed=0, size=24, mode="RGB")`` writes a real image file (format from suffix)."""

    def write(path: Path, seed: int = 0, size: int = 24, mode: str = "RGB") -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(_pixels(seed, size))
        if mode != "RGB":
            img = img.convert(mode)
        img.save(path)
        return path

    return write


@pytest.fixture(scope="session")
def synth_cohort(tmp_path_factory: pytest.TempPathFactory):
    """A generated cohort: 12 images per class, 3 patients per class, 64 px (about 1 s)."""
    from neurall_neuro.data.synth import generate_cohort

    return generate_cohort(
        tmp_path_factory.mktemp("synth") / "cohort",
        n_per_class=12,
        size=64,
        seed=3,
        n_patients_per_class=3,
    )
