"""Shared fixture: a tiny generated cohort (fast on 2 CPU cores)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_cohort_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated 4-class cohort: 12 images per class, 6 patients per class, 16 px."""
    from neurall_neuro.data.synth import generate_cohort

    root = tmp_path_factory.mktemp("cohort")
    generate_cohort(root, n_per_class=12, size=16, seed=0, n_patients_per_class=6)
    return root
