"""Forgiving input: unreadable images of a dataset folder are skipped with one warning.

A generated cohort gets one truncated JPEG and one zero-byte file (listed in its
manifest). ``load_cohort(..., bad_images="skip")`` leaves them out with one
``BadImageWarning`` naming both and the ``neurall data scan`` command; every command
that reads a dataset folder (train, evaluate, energy, explain, deploy) completes on that
folder and prints the warning; a command that fails leaves no half-made run folder.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurall_neuro.cli.main import main
from neurall_neuro.data.layouts import CLASSES_4, load_cohort
from neurall_neuro.data.records import BadImageWarning, DataWarning
from neurall_neuro.data.sampling import sample_images
from neurall_neuro.data.scan import LISTED, check_cohort_images
from neurall_neuro.data.splits import Split, make_split
from neurall_neuro.data.synth import generate_cohort
from neurall_neuro.errors import BadImageError, ConfigError, DataError

BAD_NAMES = ("truncated.jpg", "empty.jpg")
TINY = ["--size", "16", "--set", "channels=[4, 8, 8, 8]", "--timesteps", "2"]
FAST = ["--batch-size", "8", "--threads", "1", "--bootstrap", "20", "--quiet", "--device", "cpu"]


def _truncated_jpeg() -> bytes:
    """The first half of a 64 px JPEG: a valid header, then the data stops."""
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    return data[: len(data) // 2]


def _add_to_manifest(root: Path, rel: str, data: bytes) -> Path:
    """Write ``data`` to ``root/rel`` and list it in the manifest (class = its folder)."""
    path = root / rel
    path.write_bytes(data)
    with (root / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    cls = Path(rel).parts[0]
    patient = next(r[2] for r in rows[1:] if r[1] == cls)  # an existing patient of that class
    rows.append([rel, cls, patient])
    with (root / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    return path


def _make_bad_cohort(root: Path, n_per_class: int = 6) -> tuple[Path, list[Path]]:
    generate_cohort(root, n_per_class=n_per_class, size=16, seed=0, n_patients_per_class=3)
    bad = [
        _add_to_manifest(root, f"Pro/{BAD_NAMES[0]}", _truncated_jpeg()),
        _add_to_manifest(root, f"Early/{BAD_NAMES[1]}", b""),
    ]
    return root, bad


@pytest.fixture(scope="module")
def bad_cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A generated cohort (6 images per class, 16 px) plus a truncated JPEG and an empty file."""
    return _make_bad_cohort(tmp_path_factory.mktemp("bad") / "cohort")


def _assert_one_warning(text: str, bad: list[Path]) -> None:
    assert text.count("cannot be read") == 1, text
    for path in bad:
        assert path.name in text, text
    assert "neurall data scan" in text


# ---------------------------------------------------------------------------- library
def test_skip_leaves_out_unreadable_images_with_one_warning(bad_cohort):
    root, bad = bad_cohort
    kept = load_cohort(root)  # default "keep": structure only, nothing decoded
    assert len(kept) == 26 and not kept.skipped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cohort = load_cohort(root, bad_images="skip")
    assert [w.category for w in caught] == [BadImageWarning]
    assert issubclass(BadImageWarning, DataWarning)
    message = str(caught[0].message)
    _assert_one_warning(message, bad)
    assert message.startswith(f"2 of 26 images of {kept.root} cannot be read")
    assert "truncated or corrupt" in message and "empty file" in message
    assert f"neurall data scan {root}" in message
    assert len(cohort) == 24 and cohort.counts() == dict.fromkeys(CLASSES_4, 6)
    assert sorted(p.name for p, _ in cohort.skipped) == sorted(BAD_NAMES)
    assert not {r.path for r in cohort.records} & set(bad)


def test_clean_cohort_is_returned_unchanged_without_warning(tmp_path):
    clean = generate_cohort(tmp_path / "c", n_per_class=2, size=16, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_cohort_images(clean, "skip") is clean
        loaded = load_cohort(tmp_path / "c", bad_images="skip")
    assert loaded.records == clean.records and loaded.skipped == []


def test_error_policy_and_invalid_policy(bad_cohort):
    root, bad = bad_cohort
    with pytest.raises(BadImageError) as info:
        load_cohort(root, bad_images="error")
    _assert_one_warning(str(info.value), bad)
    with pytest.raises(ConfigError, match="valid options: keep, skip, error"):
        load_cohort(root, bad_images="ignore")


def test_warning_lists_the_first_files_and_counts_the_rest(tmp_path):
    root = tmp_path / "c"
    generate_cohort(root, n_per_class=2, size=16, seed=2)
    for i in range(LISTED + 2):
        _add_to_manifest(root, f"Benign/empty{i}.png", b"")
    with pytest.warns(BadImageWarning) as caught:
        cohort = load_cohort(root, layout="manifest", bad_images="skip")
    message = str(caught[0].message)
    assert f"{LISTED + 2} of {8 + LISTED + 2} images" in message
    assert "... and 2 more" in message and "empty6.png" not in message
    assert f"neurall data scan {root} --layout manifest" in message
    assert len(cohort) == 8


def test_no_readable_image_is_an_error(tmp_path):
    root = tmp_path / "c"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "x.png").write_bytes(b"")
    (root / "b" / "y.jpg").write_bytes(_truncated_jpeg())
    with pytest.raises(BadImageError, match="no usable image left: 2 of 2 images"):
        load_cohort(root, bad_images="skip")


def test_split_naming_skipped_images_still_applies(bad_cohort, tmp_path):
    root, bad = bad_cohort
    full = load_cohort(root)  # a split made while every file was listed
    split = make_split(full, val_fraction=0.3, test_fraction=0.3, seed=0)
    split.save(tmp_path / "split.json")
    with pytest.warns(BadImageWarning):
        cohort = load_cohort(root, bad_images="skip")
    parts = Split.load(tmp_path / "split.json").apply(cohort)
    assert sum(len(p) for p in parts.values()) == 24
    assert not {r.path for p in parts.values() for r in p.records} & set(bad)
    # keys that are neither in the folder nor skipped are still an error
    other = Split(train=["nope.png"], val=[], test=[], class_names=CLASSES_4)
    with pytest.raises(DataError, match="not in"):
        other.indices(cohort)


def test_sample_images_draws_from_readable_images(bad_cohort):
    root, bad = bad_cohort
    with pytest.warns(BadImageWarning):
        batch = sample_images(root, {"size": 16}, n=None)
    assert batch.images.shape == (24, 3, 16, 16)
    assert not {r.path for r in batch.records} & set(bad)


# ---------------------------------------------------------------------------- commands
@pytest.fixture(scope="module")
def trained(bad_cohort, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One tiny epoch of an SE-SNN on the bad cohort through the CLI: (best.pt, stderr)."""
    root, _ = bad_cohort
    run = tmp_path_factory.mktemp("train") / "run"
    argv = ["train", "--model", "neurallnet", "--data", str(root), "--out", str(run)]
    argv += ["--epochs", "1", "--val-fraction", "0.25", "--test-fraction", "0.25", *TINY, *FAST]
    cmd = [sys.executable, "-m", "neurall_neuro.cli.main", *argv]
    env = {**os.environ, "NEURALL_NO_PROGRESS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    return run / "best.pt", done.stderr


def test_train_skips_bad_images_and_warns_once(trained, bad_cohort):
    ckpt, stderr = trained
    _, bad = bad_cohort
    assert ckpt.is_file()
    _assert_one_warning(stderr, bad)
    assert "warning: 2 of 26 images" in stderr  # the CLI's one-line warning format
    split = Split.load(ckpt.parent / "split.json")
    keys = {k for part in split.parts().values() for k in part}
    assert len(keys) == 24 and not {k.rsplit("/", 1)[-1] for k in keys} & set(BAD_NAMES)


def test_evaluate_completes_and_warns(trained, bad_cohort, tmp_path, capsys):
    ckpt, _ = trained
    root, bad = bad_cohort
    argv = ["evaluate", "--checkpoint", str(ckpt), "--data", str(root), "--out", str(tmp_path)]
    assert main([*argv, "--bootstrap", "20", "--device", "cpu", "--no-overlap-check"]) == 0
    _assert_one_warning(capsys.readouterr().err, bad)
    assert (tmp_path / "metrics.json").is_file()


def test_energy_completes_and_warns_once(trained, bad_cohort, tmp_path, capsys):
    ckpt, _ = trained
    root, bad = bad_cohort
    out = tmp_path / "energy.json"
    argv = ["energy", "--snn", str(ckpt), "--data", str(root), "--n", "4", "--format", "json"]
    assert main([*argv, "--profiles", "loihi", "--output", str(out)]) == 0
    _assert_one_warning(capsys.readouterr().err, bad)
    assert out.stat().st_size > 0


def test_explain_completes_and_warns(trained, bad_cohort, tmp_path, capsys):
    ckpt, _ = trained
    root, bad = bad_cohort
    out = tmp_path / "maps"
    argv = ["explain", "--checkpoint", str(ckpt), "--data", str(root), "--out", str(out)]
    assert main([*argv, "--n", "2", "--method", "gradcam", "--device", "cpu"]) == 0
    _assert_one_warning(capsys.readouterr().err, bad)
    assert len(list(out.glob("*.png"))) == 2


def test_deploy_completes_and_warns(trained, bad_cohort, tmp_path, capsys):
    ckpt, _ = trained
    root, bad = bad_cohort
    out = tmp_path / "parity"
    argv = ["deploy", "--checkpoint", str(ckpt), "--data", str(root), "--targets", "torch"]
    assert main([*argv, "--n", "4", "--out", str(out)]) == 0
    _assert_one_warning(capsys.readouterr().err, bad)
    assert (out / "parity.json").is_file()


def test_failing_train_leaves_no_run_folder(bad_cohort, tmp_path, capsys):
    root, _ = bad_cohort
    split_file = tmp_path / "foreign.json"  # a split of another folder: fails after mkdir
    Split(train=["a.png"], val=["b.png"], test=["c.png"], class_names=CLASSES_4).save(split_file)
    run = tmp_path / "run"
    argv = ["train", "--model", "se-cnn", "--data", str(root), "--out", str(run)]
    assert main([*argv, "--split-file", str(split_file), "--epochs", "1", *FAST]) == 2
    assert "not in" in capsys.readouterr().err
    assert not run.exists()
    # a folder that existed before the command is left alone
    run.mkdir()
    (run / "notes.txt").write_text("mine\n")
    assert main([*argv, "--split-file", str(split_file), "--epochs", "1", *FAST]) == 2
    assert (run / "notes.txt").read_text() == "mine\n"


def test_unusable_folder_fails_before_creating_anything(tmp_path, capsys):
    root = tmp_path / "c"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        (root / cls / "x.jpg").write_bytes(b"")
    run = tmp_path / "run"
    argv = ["train", "--model", "se-cnn", "--data", str(root), "--out", str(run), *FAST]
    assert main(argv) == 2
    assert "no usable image left" in capsys.readouterr().err
    assert not run.exists()
