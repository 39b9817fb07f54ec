"""Layout detection and loading on small fake trees of every supported layout."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from neurall_neuro.data.layouts import (
    CLASSES_2,
    CLASSES_4,
    DataWarning,
    canonical_class_name,
    detect_layout,
    list_layouts,
    load_cohort,
    map_labels,
)
from neurall_neuro.errors import DataError, UnknownLayoutError, UnknownNameError

ARIA_NAMES = {
    "Benign": "WBC-Benign-{:03d}.jpg",
    "Early": "WBC-Malignant-Early-{:03d}.jpg",
    "Pre": "WBC-Malignant-Pre-{:03d}.jpg",
    "Pro": "WBC-Malignant-Pro-{:03d}.jpg",
}


def make_aria(root: Path, write_image, n: int = 2, segmented: bool = True) -> Path:
    seed = 0
    for cls, pattern in ARIA_NAMES.items():
        for i in range(n):
            write_image(root / "Original" / cls / pattern.format(i + 1), seed=seed)
            if segmented:
                write_image(root / "Segmented" / cls / pattern.format(i + 1), seed=seed + 1000)
            seed += 1
    return root


def test_aria_root_detected_and_segmented_ignored(tmp_path, write_image):
    root = make_aria(tmp_path / "ALL", write_image, n=2)
    assert detect_layout(root) == "aria"
    cohort = load_cohort(root)
    assert cohort.layout == "aria"
    assert cohort.class_names == CLASSES_4
    assert cohort.counts() == {"Benign": 2, "Early": 2, "Pre": 2, "Pro": 2}
    assert all("Segmented" not in r.path.parts for r in cohort.records)
    assert all(r.patient_id is None for r in cohort.records)
    assert cohort.groups is None
    for r in cohort.records:
        assert r.path.parent.name == CLASSES_4[r.label] == r.source_label


def test_aria_original_folder_itself_and_segmented_on_request(tmp_path, write_image):
    root = make_aria(tmp_path / "ALL", write_image, n=1)
    assert detect_layout(root / "Original") == "aria"
    assert len(load_cohort(root / "Original")) == 4
    seg = load_cohort(root, layout="aria-segmented")
    assert len(seg) == 4
    assert all("Segmented" in r.path.parts for r in seg.records)
    assert detect_layout(root / "Segmented") == "aria-segmented"


def test_kaggle_blood_cells(tmp_path, write_image):
    top = tmp_path / "kaggle" / "Blood cell Cancer [ALL]"
    folders = {
        "Benign": "Benign",
        "[Malignant] early Pre-B": "Early",
        "[Malignant] Pre-B": "Pre",
        "[Malignant] Pro-B": "Pro",
    }
    for k, folder in enumerate(folders):
        for i in range(3):
            write_image(top / folder / f"Sap_{k:03d} ({i + 1}).jpg", seed=10 * k + i)
    for root in (tmp_path / "kaggle", top):
        assert detect_layout(root) == "kaggle-blood-cells"
        cohort = load_cohort(root)
        assert cohort.class_names == CLASSES_4
        for r in cohort.records:
            assert CLASSES_4[r.label] == folders[r.source_label]
        assert cohort.counts() == dict.fromkeys(CLASSES_4, 3)


def test_cnmc_patients_from_file_names(tmp_path, write_image):
    root = tmp_path / "C-NMC"
    files = {
        "fold_0/all/UID_11_1_1_all.bmp": ("ALL", "11"),
        "fold_0/all/UID_11_2_3_all.bmp": ("ALL", "11"),
        "fold_1/all/UID_12_1_1_all.bmp": ("ALL", "12"),
        "fold_0/hem/UID_H10_1_1_hem.bmp": ("Normal", "H10"),
        "fold_2/hem/UID_H22_4_2_hem.bmp": ("Normal", "H22"),
    }
    for i, rel in enumerate(files):
        write_image(root / "training_data" / rel, seed=i)
    assert detect_layout(root) == "cnmc"
    cohort = load_cohort(root)
    assert cohort.class_names == CLASSES_2 == ("Normal", "ALL")
    got = {r.path.relative_to(root / "training_data").as_posix(): r for r in cohort.records}
    for rel, (cls, pid) in files.items():
        assert cohort.class_names[got[rel].label] == cls
        assert got[rel].patient_id == pid
    assert cohort.has_patient_ids
    assert cohort.patients() == {"Normal": {"H10", "H22"}, "ALL": {"11", "12"}}


@pytest.mark.parametrize(
    ("layout", "ext", "sub"), [("all-idb1", "jpg", "im"), ("all-idb2", "tif", "img")]
)
def test_all_idb(tmp_path, write_image, layout, ext, sub):
    root = tmp_path / layout
    for i, y in enumerate([1, 0, 1, 0, 0]):
        write_image(root / sub / f"Im{i + 1:03d}_{y}.{ext}", seed=i)
    (root / "xyc").mkdir()  # ALL-IDB1 ships coordinate files beside the images
    assert detect_layout(root) == layout
    cohort = load_cohort(root)
    assert cohort.class_names == ("Normal", "ALL")
    assert cohort.counts() == {"Normal": 3, "ALL": 2}
    for r in cohort.records:
        assert r.label == int(r.path.stem[-1])


def test_manifest_with_patients_and_relative_paths(tmp_path, write_image):
    root = tmp_path / "m"
    write_image(root / "imgs" / "a.png", seed=1)
    write_image(root / "imgs" / "b.png", seed=2)
    write_image(root / "imgs" / "c.png", seed=3)
    (root / "manifest.csv").write_text(
        "path,label,patient_id\nimgs/a.png,Pro,p1\nimgs/b.png,benign,p2\nimgs/c.png,Pro,p1\n"
    )
    assert detect_layout(root) == "manifest"
    cohort = load_cohort(root)
    assert cohort.class_names == ("Benign", "Pro")  # canonical names and order, present ones
    assert [cohort.class_names[r.label] for r in cohort.records] == ["Benign", "Pro", "Pro"]
    assert cohort.groups == ["p2", "p1", "p1"]
    assert load_cohort(root / "manifest.csv").counts() == cohort.counts()


def test_manifest_errors_name_the_problem(tmp_path, write_image):
    root = tmp_path / "m"
    write_image(root / "a.png")
    (root / "manifest.csv").write_text("file,class\na.png,x\n")
    with pytest.raises(DataError, match="lacks column"):
        load_cohort(root)
    (root / "manifest.csv").write_text("path,label\na.png,x\nmissing.png,y\n")
    with pytest.raises(DataError, match="missing.png"):
        load_cohort(root)


def test_imagefolder_generic_and_canonical(tmp_path, write_image):
    generic = tmp_path / "g"
    for i, cls in enumerate(["zebra", "apple", "mango"]):
        write_image(generic / cls / f"x{i}.png", seed=i)
    (generic / "apple" / "notes.txt").write_text("not an image, ignored by the layout")
    assert detect_layout(generic) == "imagefolder"
    cohort = load_cohort(generic)
    assert cohort.class_names == ("apple", "mango", "zebra")
    assert len(cohort) == 3

    canon = tmp_path / "c"
    for i, cls in enumerate(["pro", "benign", "early", "pre"]):
        write_image(canon / cls / f"y{i}.png", seed=i)
    assert load_cohort(canon).class_names == CLASSES_4


def test_empty_class_folder_warns_and_keeps_class(tmp_path, write_image):
    root = make_aria(tmp_path / "ALL", write_image, n=1, segmented=False)
    for f in (root / "Original" / "Pre").iterdir():
        f.unlink()
    with pytest.warns(DataWarning, match=r"Pre.*holds no images"):
        cohort = load_cohort(root)
    assert cohort.class_names == CLASSES_4
    assert cohort.counts()["Pre"] == 0
    assert len(cohort) == 3


def test_all_classes_empty_is_an_error(tmp_path):
    for cls in CLASSES_4:
        (tmp_path / "ALL" / "Original" / cls).mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(DataError, match="no images"):
            load_cohort(tmp_path / "ALL")


def test_unknown_layout_lists_every_layout(tmp_path, write_image):
    write_image(tmp_path / "lonely.png")
    with pytest.raises(UnknownLayoutError) as info:
        detect_layout(tmp_path)
    message = str(info.value)
    for layout in list_layouts():
        assert layout.name in message
        assert layout.description in message
    with pytest.raises(DataError, match="does not exist"):
        load_cohort(tmp_path / "nope")
    with pytest.raises(UnknownNameError, match="imagefolder"):
        load_cohort(tmp_path, layout="no-such-layout")


def test_map_labels_by_name_and_explicit_mapping(tmp_path, write_image):
    root = tmp_path / "k" / "Blood cell Cancer [ALL]"
    write_image(root / "Benign" / "a.jpg", seed=1)
    write_image(root / "[Malignant] Pro-B" / "b.jpg", seed=2)
    with pytest.warns(DataWarning, match="no folder for class 'Early'"):
        cohort = load_cohort(tmp_path / "k")
    reordered = map_labels(cohort, ["pro", "pre", "early", "benign"])
    assert reordered.class_names == ("pro", "pre", "early", "benign")
    assert {r.path.name: reordered.class_names[r.label] for r in reordered.records} == {
        "a.jpg": "benign",
        "b.jpg": "pro",
    }
    with pytest.raises(DataError) as info:
        map_labels(cohort, ["Normal", "ALL"])
    assert "Benign" in str(info.value) and "Normal" in str(info.value)
    two = map_labels(cohort, CLASSES_2, {"Benign": "Normal", "Pro": "ALL"})
    assert sorted(two.labels) == [0, 1]


def test_canonical_names():
    assert canonical_class_name("[Malignant] early Pre-B") == "Early"
    assert canonical_class_name("hem") == "Normal"
    assert canonical_class_name("Pre_B") == "Pre"
    assert canonical_class_name("monocyte") is None
