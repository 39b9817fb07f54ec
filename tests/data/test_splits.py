"""Grouped stratified splits: no leakage, stratification, save/load, tamper detection."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurall_neuro.data.layouts import load_cohort
from neurall_neuro.data.records import Cohort, ImageRecord
from neurall_neuro.data.splits import Split, groups_from_duplicates, make_split
from neurall_neuro.errors import ConfigError, DataError


def fake_cohort(
    tmp_path: Path, n_patients: int = 10, per_patient: int = 12, classes: int = 4
) -> Cohort:
    """Records only (splits never open the files): ``classes`` x ``n_patients`` patients."""
    records = []
    rng = np.random.default_rng(0)
    for c in range(classes):
        for p in range(n_patients):
            for i in range(per_patient + int(rng.integers(0, 5))):
                records.append(
                    ImageRecord(tmp_path / f"c{c}" / f"p{c}-{p}_{i}.png", c, f"pat{c}-{p}")
                )
    return Cohort(tmp_path, "manifest", tuple(f"class{c}" for c in range(classes)), records)


def test_patient_split_has_no_leak_and_is_stratified(tmp_path):
    cohort = fake_cohort(tmp_path)
    split = make_split(cohort, val_fraction=0.2, test_fraction=0.2, seed=1)
    assert split.group_by == "patient"
    parts = split.apply(cohort)
    assert sum(len(p) for p in parts.values()) == len(cohort)
    patients = {name: {r.patient_id for r in part.records} for name, part in parts.items()}
    assert not patients["train"] & patients["test"]
    assert not patients["train"] & patients["val"]
    assert not patients["val"] & patients["test"]
    for name, frac in (("val", 0.2), ("test", 0.2), ("train", 0.6)):
        counts = parts[name].counts()
        totals = cohort.counts()
        for cls in cohort.class_names:
            assert abs(counts[cls] / totals[cls] - frac) < 0.1, (
                name,
                cls,
                counts[cls],
                totals[cls],
            )


def test_split_is_deterministic_and_seed_dependent(tmp_path):
    cohort = fake_cohort(tmp_path)
    a = make_split(cohort, seed=7)
    assert make_split(cohort, seed=7).to_dict() == a.to_dict()
    assert make_split(cohort, seed=8).test != a.test


def test_image_level_split_without_patient_ids(tmp_path):
    records = [ImageRecord(tmp_path / f"{i}.png", i % 2) for i in range(200)]
    cohort = Cohort(tmp_path, "imagefolder", ("a", "b"), records)
    split = make_split(cohort, val_fraction=0.1, test_fraction=0.2)
    assert split.group_by == "none" and split.groups == {}
    sizes = {k: len(v) for k, v in split.parts().items()}
    assert sizes == {"train": 140, "val": 20, "test": 40}


def test_save_load_round_trip(tmp_path):
    cohort = fake_cohort(tmp_path)
    split = make_split(cohort, seed=3)
    path = split.save(tmp_path / "out" / "split.json")
    assert not list(path.parent.glob(".*.tmp"))  # atomic write leaves no temporary file
    loaded = Split.load(path)
    assert loaded.to_dict() == split.to_dict()
    assert {k: len(v) for k, v in loaded.apply(cohort).items()} == {
        k: len(v) for k, v in split.parts().items()
    }


def test_tampered_split_with_leaking_group_is_rejected(tmp_path):
    cohort = fake_cohort(tmp_path)
    path = make_split(cohort, seed=0).save(tmp_path / "split.json")
    data = json.loads(path.read_text())
    # Move one image of a test patient into train: its patient now spans two parts.
    moved = data["test"].pop(0)
    data["train"].append(moved)
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="split leak.*group"):
        Split.load(path)
    # The same image listed in two parts is rejected too.
    data["test"].append(moved)
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="both"):
        Split.load(path)


def test_bad_split_files_and_arguments(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(DataError, match="not readable JSON"):
        Split.load(tmp_path / "x.json")
    (tmp_path / "y.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(DataError, match="not a neurall split"):
        Split.load(tmp_path / "y.json")
    with pytest.raises(DataError, match="does not exist"):
        Split.load(tmp_path / "missing.json")
    cohort = fake_cohort(tmp_path)
    with pytest.raises(ConfigError):
        make_split(cohort, val_fraction=0.6, test_fraction=0.5)
    other = Cohort(tmp_path / "elsewhere", "manifest", cohort.class_names, cohort.records[:3])
    with pytest.raises(DataError, match="not in"):
        make_split(cohort).apply(other)


def test_groups_from_duplicates_keep_planted_copies_together(synth_cohort, tmp_path):
    # Copy the generated cohort's manifest and add resized, JPEG re-encoded copies of 4 images.
    base = Path(synth_cohort.root).parent
    lines = (base / "manifest.csv").read_text().splitlines()
    originals = [ln.split(",") for ln in lines[1:]][::12][:4]
    out = tmp_path / "with_copies"
    rows = ["path,label,patient_id"]
    for rel, label, pid in (ln.split(",") for ln in lines[1:]):
        rows.append(f"{base / rel},{label},{pid}")
    for k, (rel, label, _pid) in enumerate(originals):
        img = Image.open(base / rel).convert("RGB").resize((80, 80), Image.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        copy = out / f"copy{k}.jpg"
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(buf.getvalue())
        rows.append(f"{copy},{label},copy-{k}")  # a different "patient": only dedup can group it
    (out / "manifest.csv").write_text("\n".join(rows) + "\n")
    cohort = load_cohort(out)
    groups = groups_from_duplicates(cohort)
    by_path = {r.path.name: g for r, g in zip(cohort.records, groups, strict=True)}
    for k, (rel, _label, _pid) in enumerate(originals):
        assert by_path[f"copy{k}.jpg"] == by_path[Path(rel).name]
        assert by_path[f"copy{k}.jpg"].startswith("dup-")
    assert Counter(g for g in groups if g.startswith("dup-")) == Counter(
        {f"dup-{k}": 2 for k in range(4)}
    )
    merged = groups_from_duplicates(cohort, base_groups=cohort.groups)
    split = make_split(cohort, groups=merged, group_by="duplicates+patient", seed=0)
    assert split.group_by == "duplicates+patient"
    where = {k: part for part, keys in split.parts().items() for k in keys}
    for k, (rel, _label, _pid) in enumerate(originals):
        copy_key = next(key for key in where if key.endswith(f"copy{k}.jpg"))
        orig_key = next(key for key in where if key.endswith(Path(rel).name))
        assert where[copy_key] == where[orig_key]
