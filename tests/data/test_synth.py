"""The generated cohort: layout, determinism, patients, speed, argument checks."""

from __future__ import annotations

import csv
import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurall_neuro.data.layouts import CLASSES_4, detect_layout, load_cohort
from neurall_neuro.data.synth import generate_cohort, render_image
from neurall_neuro.errors import ConfigError


def digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_structure_manifest_and_patients(synth_cohort):
    root = Path(synth_cohort.root).parent
    assert synth_cohort.layout == "manifest"
    assert detect_layout(root) == "manifest"
    assert synth_cohort.class_names == CLASSES_4
    assert synth_cohort.counts() == dict.fromkeys(CLASSES_4, 12)
    patients = synth_cohort.patients()
    for cls in CLASSES_4:
        assert len(patients[cls]) == 3
        assert all(p.startswith(cls.lower() + "-p") for p in patients[cls])
    with (root / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 48 and set(rows[0]) == {"path", "label", "patient_id"}
    for row in rows:
        assert (root / row["path"]).is_file()
        assert Path(row["path"]).parts[0] == row["label"]
    with Image.open(synth_cohort.records[0].path) as img:
        assert img.mode == "RGB" and img.size == (64, 64)
    # Without the manifest the same tree reads as an image folder.
    assert load_cohort(root, layout="imagefolder").counts() == synth_cohort.counts()


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = generate_cohort(tmp_path / "a", n_per_class=3, size=32, seed=11, n_patients_per_class=2)
    b = generate_cohort(tmp_path / "b", n_per_class=3, size=32, seed=11, n_patients_per_class=2)
    c = generate_cohort(tmp_path / "c", n_per_class=3, size=32, seed=12, n_patients_per_class=2)
    da = digests(tmp_path / "a")
    assert da == digests(tmp_path / "b")
    dc = digests(tmp_path / "c")
    pngs = [k for k in da if k.endswith(".png")]
    assert len(pngs) == 12
    assert all(da[k] != dc[k] for k in pngs)
    assert len(a) == len(b) == len(c) == 12
    # A single image can be re-rendered on its own, identical to the file.
    rec = a.records[0]
    pid = int(rec.patient_id.rsplit("-p", 1)[1])
    index = int(rec.path.stem.rsplit("_", 1)[1])
    again = render_image(11, CLASSES_4[rec.label], pid, index, size=32)
    assert np.array_equal(again, np.asarray(Image.open(rec.path)))


def test_images_of_a_patient_share_nuisance_and_classes_differ_in_size():
    # Background colour (corner pixels) varies less within a patient than between patients.
    def corners(cls: str, patient: int) -> np.ndarray:
        imgs = [render_image(0, cls, patient, i, 48).astype(float) for i in range(6)]
        return np.stack([np.median(im[[0, 0, -1, -1], [0, -1, 0, -1]], axis=0) for im in imgs])

    within = np.mean([corners("Pre", p).std(axis=0).mean() for p in range(4)])
    between = np.stack([corners("Pre", p).mean(axis=0) for p in range(4)]).std(axis=0).mean()
    assert between > within

    def dark_area(cls: str) -> float:  # stained (nucleus + cytoplasm) pixel fraction
        imgs = [render_image(1, cls, p, i, 48) for p in range(3) for i in range(8)]
        return float(np.mean([(im.mean(axis=2) < 170).mean() for im in imgs]))

    assert dark_area("Benign") < dark_area("Early") < dark_area("Pro")


def test_generation_speed_sanity(tmp_path):
    start = time.perf_counter()
    generate_cohort(tmp_path / "s", n_per_class=25, size=64, seed=0)
    per_image = (time.perf_counter() - start) / 100
    assert per_image < 0.05, f"{per_image * 1000:.1f} ms per image"  # typically a few ms


def test_arguments_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="difficulty"):
        generate_cohort(tmp_path / "x", n_per_class=2, difficulty="impossible")
    with pytest.raises(ConfigError, match="n_patients_per_class"):
        generate_cohort(tmp_path / "x", n_per_class=2, n_patients_per_class=0)
    with pytest.raises(ConfigError, match="size"):
        generate_cohort(tmp_path / "x", n_per_class=2, size=8)
    generate_cohort(tmp_path / "y", n_per_class=2, size=16, n_patients_per_class=1)
    with pytest.raises(ConfigError, match="not empty"):
        generate_cohort(tmp_path / "y", n_per_class=2, size=16, n_patients_per_class=1)
    again = generate_cohort(
        tmp_path / "y", n_per_class=1, size=16, n_patients_per_class=1, overwrite=True
    )
    assert len(again) == 4 and len(list((tmp_path / "y").rglob("*.png"))) == 4
    (tmp_path / "real" / "Benign").mkdir(parents=True)
    keep = tmp_path / "real" / "Benign" / "precious.png"
    keep.write_bytes(b"not generated")
    with pytest.raises(ConfigError, match="refusing"):
        generate_cohort(tmp_path / "real", n_per_class=1, size=16, overwrite=True)
    assert keep.read_bytes() == b"not generated"
