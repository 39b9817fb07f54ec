"""The real ALL image dataset (development portion), when ../shared/data is present.

Reads a handful of files only; nothing is copied. Skips cleanly on machines without it.
"""

from __future__ import annotations

import pytest

from neurall_neuro.data.dedup import find_duplicate_pairs
from neurall_neuro.data.layouts import CLASSES_4, detect_layout, load_cohort
from neurall_neuro.data.preprocess import Preprocessing
from neurall_neuro.data.scan import scan_images
from neurall_neuro.data.shared_data import shared_dataset

pytestmark = pytest.mark.realdata

ARIA = shared_dataset("all-aria-dev")
needs_aria = pytest.mark.skipif(ARIA is None, reason="shared data all-aria-dev not present")


@pytest.fixture(scope="module")
def aria_cohort():
    return load_cohort(ARIA)


@needs_aria
def test_layout_detection_and_counts(aria_cohort):
    assert detect_layout(ARIA) == "aria"
    assert detect_layout(ARIA / "Original") == "aria"
    cohort = aria_cohort
    assert cohort.class_names == CLASSES_4
    assert cohort.counts() == {"Benign": 403, "Early": 788, "Pre": 770, "Pro": 643}
    assert not cohort.has_patient_ids


@needs_aria
def test_a_few_images_per_class_decode_and_preprocess(aria_cohort):
    cohort = aria_cohort
    chosen = [next(r for r in cohort.records if r.label == c) for c in range(4)]
    report = scan_images(chosen)
    assert report.bad == [] and len(report.ok) == 4
    x = Preprocessing(size=64).load(chosen[0].path)
    assert x.shape == (3, 64, 64)


@needs_aria
def test_known_shifted_frames_are_duplicates_and_others_are_not(aria_cohort):
    cohort = aria_cohort
    names = {
        "WBC-Malignant-Pro-219.jpg",  # same frame as 220
        "WBC-Malignant-Pro-220.jpg",
        "WBC-Benign-288.jpg",  # shifted by about 10 px against 300
        "WBC-Benign-300.jpg",
        "WBC-Malignant-Early-300.jpg",  # a different field, 8 bits of phash from Early-748
        "WBC-Malignant-Early-748.jpg",
    }
    idx = [i for i, r in enumerate(cohort.records) if r.path.name in names]
    assert len(idx) == 6
    pairs = find_duplicate_pairs(cohort.subset(idx))
    found = {frozenset((p.path_a.name, p.path_b.name)) for p in pairs}
    assert found == {
        frozenset({"WBC-Malignant-Pro-219.jpg", "WBC-Malignant-Pro-220.jpg"}),
        frozenset({"WBC-Benign-288.jpg", "WBC-Benign-300.jpg"}),
    }
