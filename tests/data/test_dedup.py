"""Near-duplicate detection on real files: planted resized/re-encoded copies, distinct cells."""

from __future__ import annotations

import io
import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurall_neuro.data.dedup import (
    HASH_BITS,
    check_duplicates,
    find_cross_duplicates,
    find_duplicate_pairs,
    find_split_leaks,
    hamming_candidates,
    hash_images,
)
from neurall_neuro.data.layouts import load_cohort
from neurall_neuro.data.records import Cohort, ImageRecord
from neurall_neuro.data.splits import Split, record_key
from neurall_neuro.data.synth import generate_cohort


def planted_copy(src: Path, dst: Path, scale: float, quality: int, shift: int = 0) -> Path:
    """Resize ``src`` by ``scale`` (optionally crop ``shift`` px first) and save as JPEG."""
    img = Image.open(src).convert("RGB")
    if shift:
        w, h = img.size
        img = img.crop((shift, shift, w, h)).resize((w, h), Image.BILINEAR)
    size = (round(img.width * scale), round(img.height * scale))
    buf = io.BytesIO()
    img.resize(size, Image.BILINEAR).save(buf, "JPEG", quality=quality)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(buf.getvalue())
    return dst


PLANTS = [(0.75, 85, 0), (1.5, 80, 0), (1.25, 70, 0), (1.0, 90, 1)]


@pytest.fixture
def cohort_with_copies(synth_cohort: Cohort, tmp_path: Path) -> tuple[Cohort, dict[str, str]]:
    """The generated cohort plus 4 planted copies (copy name -> original name)."""
    records = list(synth_cohort.records)
    originals = [records[i] for i in (0, 13, 26, 39)]  # one per class, different patients
    copies = {}
    for k, (rec, (scale, quality, shift)) in enumerate(zip(originals, PLANTS, strict=True)):
        dst = planted_copy(rec.path, tmp_path / f"copy{k}.jpg", scale, quality, shift)
        records.append(ImageRecord(dst, rec.label, f"other-{k}"))
        copies[dst.name] = rec.path.name
    return Cohort(tmp_path, "manifest", synth_cohort.class_names, records), copies


def test_hamming_candidates_match_brute_force():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, (40, HASH_BITS), dtype=np.uint8)
    a[5] = a[17]
    a[9, :10] ^= 1
    a[9] = np.where(np.arange(HASH_BITS) < 10, 1 - a[30], a[30])
    got = {(i, j): d for i, j, d in hamming_candidates(a, None, 40, chunk=7)}
    want = {
        (i, j): int((a[i] != a[j]).sum())
        for i, j in combinations(range(len(a)), 2)
        if (a[i] != a[j]).sum() <= 40
    }
    assert got == want
    assert got[(5, 17)] == 0 and got[(9, 30)] == 10


def test_no_false_alarms_on_distinct_generated_cells(synth_cohort):
    # 48 distinct cells, 4 per patient, sharing stain and background per patient.
    assert find_duplicate_pairs(synth_cohort) == []


def test_planted_copies_are_found_and_nothing_else(cohort_with_copies):
    cohort, copies = cohort_with_copies
    pairs = find_duplicate_pairs(cohort)
    found = {frozenset((p.path_a.name, p.path_b.name)) for p in pairs}
    assert found == {frozenset(item) for item in copies.items()}
    for p in pairs:
        assert p.hash_distance <= 8
        assert p.similarity >= 0.65
        assert p.label_a == p.label_b


def test_split_leak_of_a_planted_copy(cohort_with_copies):
    cohort, copies = cohort_with_copies
    keys = [record_key(cohort, i) for i in range(len(cohort))]
    copy_keys = {k for k in keys if Path(k).name in copies}
    leaked_original = next(k for k in keys if Path(k).name == copies["copy0.jpg"])
    test = sorted(copy_keys)
    train = [k for k in keys if k not in copy_keys]
    split = Split(train=train, val=[], test=test, class_names=cohort.class_names)
    leaks = find_split_leaks(cohort, split)
    assert len(leaks) == 4
    assert {(p.where_a, p.where_b) for p in leaks} == {("train", "test")}
    assert any(
        Path(record_key(cohort, p.index_a)).name == Path(leaked_original).name for p in leaks
    )


def test_cross_cohort_duplicates(synth_cohort, tmp_path):
    other = generate_cohort(
        tmp_path / "other", n_per_class=3, size=64, seed=99, n_patients_per_class=1
    )
    shared = [synth_cohort.records[i] for i in (5, 30)]
    extra = [
        ImageRecord(planted_copy(r.path, tmp_path / "b" / f"shared{k}.jpg", 0.75, 85), r.label)
        for k, r in enumerate(shared)
    ]
    cohort_b = Cohort(tmp_path / "b", "manifest", other.class_names, other.records + extra)
    pairs = find_cross_duplicates(synth_cohort, cohort_b)
    assert {(p.path_a.name, p.path_b.name) for p in pairs} == {
        (shared[0].path.name, "shared0.jpg"),
        (shared[1].path.name, "shared1.jpg"),
    }

    report = check_duplicates([synth_cohort, cohort_b])
    counts = report.counts()
    assert counts["within"][str(synth_cohort.root)] == {"pairs": 0, "images": 0}
    assert list(counts["across_cohorts"].values()) == [{"pairs": 2, "images": 4}]
    assert report.across_splits is None
    out = report.save_json(tmp_path / "report" / "dedup.json")
    data = json.loads(out.read_text())
    pair = next(iter(data["across_cohorts"].values()))[0]
    assert set(pair) >= {"path_a", "path_b", "hash_distance", "similarity", "shift"}
    assert "2 pair(s)" in report.summary()


def test_unreadable_images_are_skipped_and_listed(tmp_path, write_image):
    good = [write_image(tmp_path / f"g{i}.png", seed=i, size=48) for i in range(3)]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    hashes = hash_images([*good, bad])
    assert hashes.valid.tolist() == [True, True, True, False]
    assert [p for p, _ in hashes.failed] == [bad]
    cohort = load_cohort_from(tmp_path, [*good, bad])
    report = check_duplicates([cohort])
    assert report.cohorts[0]["unreadable"][0]["path"] == str(bad)


def load_cohort_from(root: Path, paths: list[Path]) -> Cohort:
    lines = ["path,label"] + [f"{p.name},a" for p in paths]
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return load_cohort(root)
