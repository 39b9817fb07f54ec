"""Checkpoints remember their training and validation images by hash; evaluation counts
the evaluated images among them, warns on screen and can score the held-out rest only."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neurall_neuro.data.layouts import load_cohort
from neurall_neuro.data.preprocess import Preprocessing
from neurall_neuro.data.splits import Split, record_key
from neurall_neuro.errors import CheckpointError, ConfigError, DataError
from neurall_neuro.evaluation.evaluator import evaluate
from neurall_neuro.evaluation.training_images import (
    NEAR_DISTANCE,
    RememberedPart,
    TrainingImageHashes,
    TrainingOverlapWarning,
    checkpoint_image_hashes,
    exact_code,
    find_training_images,
    fingerprint_images,
)
from neurall_neuro.models.checkpoint import load_checkpoint, save_checkpoint
from neurall_neuro.models.registry import get_model
from neurall_neuro.training import TrainConfig, train

CLASSES = ["Benign", "Early", "Pre", "Pro"]


@pytest.fixture(scope="module")
def trained_run(tiny_cohort_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of a tiny SE-CNN on the tiny generated cohort (patient-grouped split)."""
    out = tmp_path_factory.mktemp("run") / "run"
    train(
        TrainConfig(
            model="se-cnn", data=tiny_cohort_dir, out=out, size=16,
            model_options={"channels": [4, 8, 8, 8]}, epochs=1, batch_size=8,
            evaluate_test=False, log=False, device="cpu", threads=1,
        )
    )  # fmt: skip
    return out


def _split_keys(run: Path) -> dict[str, set[str]]:
    split = Split.load(run / "split.json")
    return {part: set(keys) for part, keys in split.parts().items()}


def _neurall(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEURALL_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "neurall_neuro.cli.main", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)


def test_training_stores_hashes_of_its_train_and_val_images(
    trained_run: Path, tiny_cohort_dir: Path
) -> None:
    keys = _split_keys(trained_run)
    for name in ("best.pt", "last.pt"):
        raw = torch.load(trained_run / name, weights_only=True)  # still plain tensors/values
        assert raw["image_hashes"]["format"] == "neurall-image-hashes"
        hashes = checkpoint_image_hashes(load_checkpoint(trained_run / name))
        assert hashes is not None
        assert hashes.counts() == {"train": len(keys["train"]), "val": len(keys["val"])}
    cohort = load_cohort(tiny_cohort_dir)
    train_paths = [p for i, p in enumerate(cohort.paths) if record_key(cohort, i) in keys["train"]]
    codes = {exact_code(Path(p).read_bytes()) for p in train_paths}
    assert set(hashes.parts["train"].exact.tolist()) == codes


def test_evaluate_cli_reports_overlap_and_excludes_it(
    trained_run: Path, tiny_cohort_dir: Path, tmp_path: Path
) -> None:
    keys = _split_keys(trained_run)
    n_train, n_val, n_test = (len(keys[p]) for p in ("train", "val", "test"))
    assert n_test > 0 and n_train + n_val + n_test == 48
    base = [
        "evaluate",
        "--checkpoint",
        str(trained_run / "best.pt"),
        "--data",
        str(tiny_cohort_dir),
    ]
    base += ["--bootstrap", "0", "--device", "cpu"]

    proc = _neurall(*base, "--out", str(tmp_path / "all"))
    assert proc.returncode == 0, proc.stderr
    expected = (
        f"WARNING: {n_train} of 48 images were in this checkpoint's training set and {n_val} "
        "in its validation set"
    )
    assert expected in proc.stdout
    assert f"Score the {n_test} held-out images only with --exclude-training" in proc.stdout
    metrics = json.loads((tmp_path / "all" / "metrics.json").read_text())
    assert metrics["n_images"] == 48
    section = metrics["training_images"]
    assert section["train"] == {"exact": n_train, "near": 0}
    assert section["val"] == {"exact": n_val, "near": 0}
    assert section["n_held_out"] == n_test and section["excluded"] is False
    with (tmp_path / "all" / "training_overlap.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == n_train + n_val and {r["match"] for r in rows} == {"exact"}

    proc = _neurall(*base, "--exclude-training", "--out", str(tmp_path / "held_out"))
    assert proc.returncode == 0, proc.stderr
    assert f"NOTE: scored the {n_test} held-out images only" in proc.stdout
    assert "WARNING" not in proc.stdout
    metrics = json.loads((tmp_path / "held_out" / "metrics.json").read_text())
    assert metrics["n_images"] == n_test
    assert metrics["training_images"]["excluded"] is True
    assert metrics["training_images"]["n_scored"] == n_test
    with (tmp_path / "held_out" / "predictions.csv").open() as fh:
        scored = {
            Path(r["path"]).relative_to(tiny_cohort_dir).as_posix() for r in csv.DictReader(fh)
        }
    assert scored == keys["test"]


def test_near_duplicates_are_counted_apart_from_identical_files(
    trained_run: Path, tiny_cohort_dir: Path, tmp_path: Path
) -> None:
    """Resized, JPEG re-encoded copies of training images are near-duplicates; the test
    images themselves are held out."""
    keys = _split_keys(trained_run)
    cohort = load_cohort(tiny_cohort_dir)
    root = tmp_path / "mixed"
    copied = {"train": 0, "test": 0}
    for i, rec in enumerate(cohort.records):
        key = record_key(cohort, i)
        part = next(p for p, k in keys.items() if key in k)
        if part == "val" or copied.get(part, 9) >= 3:
            continue
        copied[part] += 1
        dst = root / Path(key).with_suffix(".jpg")
        dst.parent.mkdir(parents=True, exist_ok=True)
        Image.open(rec.path).convert("RGB").resize((24, 24)).save(dst, quality=85)
    with pytest.warns(TrainingOverlapWarning, match="3 more are near-duplicates of training"):
        result = evaluate(
            trained_run / "best.pt", root, bootstrap=0, device="cpu", progress=False,
            overlap_check=False,
        )  # fmt: skip
    section = result.training_images
    assert section["train"] == {"exact": 0, "near": 3} and section["n_held_out"] == 3
    assert all(0 <= e["hash_distance"] <= NEAR_DISTANCE for e in section["examples"])
    held_out = evaluate(
        trained_run / "best.pt", root, bootstrap=0, device="cpu", progress=False,
        overlap_check=False, exclude_training=True,
    )  # fmt: skip
    assert held_out.n_images == 3


def test_counting_rule_on_synthetic_codes() -> None:
    """Exact codes decide first (training before validation), then the hash distance."""

    def fp(exact: list[int], bits: list[np.ndarray]):
        from neurall_neuro.evaluation.training_images import ImageFingerprints

        n = len(exact)
        return ImageFingerprints(
            np.array(exact, dtype=np.int64), np.stack([np.packbits(b) for b in bits]),
            np.ones(n, dtype=bool), np.ones(n, dtype=bool),
        )  # fmt: skip

    rng = np.random.default_rng(0)
    a, b, c = (rng.integers(0, 2, 128, dtype=np.uint8) for _ in range(3))
    flip = a.copy()
    flip[:NEAR_DISTANCE] ^= 1  # exactly NEAR_DISTANCE bits away from a
    far = a.copy()
    far[: NEAR_DISTANCE + 1] ^= 1
    remembered = TrainingImageHashes(
        {
            "train": RememberedPart.from_fingerprints(fp([1, 2], [a, b])),
            "val": RememberedPart.from_fingerprints(fp([2, 3], [b, c])),
        }
    )
    evaluated = fp([2, 3, 7, 8, 9], [b, c, flip, far, c])
    found = find_training_images(evaluated, remembered)
    got = [(m.index, m.part, m.kind, m.hash_distance) for m in found.matches]
    assert got == [
        (0, "train", "exact", 0),  # in both parts: training wins
        (1, "val", "exact", 0),
        (2, "train", "near", NEAR_DISTANCE),
        (4, "val", "near", 0),
    ]
    assert found.held_out_indices() == [3]
    assert find_training_images(evaluated, remembered, near_distance=0).held_out_indices() == [2, 3]
    with pytest.raises(ConfigError, match="near-duplicate distance"):
        find_training_images(evaluated, remembered, near_distance=128)


def test_payload_round_trip_and_errors(tiny_cohort_dir: Path, tmp_path: Path) -> None:
    cohort = load_cohort(tiny_cohort_dir)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    fps = fingerprint_images([*cohort.paths[:3], broken, tmp_path / "missing.png"], progress=False)
    assert fps.readable.tolist() == [True, True, True, True, False]
    assert fps.decoded.tolist() == [True, True, True, False, False]

    hashes = TrainingImageHashes.from_cohorts({"train": cohort.subset(range(40))}, progress=False)
    model = get_model("se-cnn", input_size=16, channels=[4, 8, 8, 8])
    path = save_checkpoint(
        tmp_path / "m.pt", model, CLASSES, Preprocessing(size=16).to_dict(),
        image_hashes=hashes.to_payload(),
    )  # fmt: skip
    raw = torch.load(path, weights_only=True)
    back = TrainingImageHashes.from_payload(raw["image_hashes"])
    assert back.counts() == {"train": 40, "val": 0}
    assert np.array_equal(back.parts["train"].perceptual, hashes.parts["train"].perceptual)
    with pytest.raises(CheckpointError, match="not a 'neurall-image-hashes' entry"):
        TrainingImageHashes.from_payload({"format": "other"})
    with pytest.raises(CheckpointError, match="valid options: train, val"):
        parts = {"test": raw["image_hashes"]["parts"]["train"]}
        TrainingImageHashes.from_payload({**raw["image_hashes"], "parts": parts})

    # Exclusion needs hashes, and some image left to score.
    plain = save_checkpoint(tmp_path / "plain.pt", model, CLASSES, Preprocessing(size=16).to_dict())
    with pytest.raises(CheckpointError, match="stores no training-image hashes"):
        evaluate(plain, cohort, bootstrap=0, device="cpu", progress=False, exclude_training=True)
    result = evaluate(plain, cohort, bootstrap=0, device="cpu", progress=False)
    assert result.training_images["checked"] is False
    assert "overlap unknown" in result.summary()
    with pytest.raises(DataError, match="no held-out image is left"):
        evaluate(
            path, cohort.subset(range(40)), bootstrap=0, device="cpu", progress=False,
            exclude_training=True,
        )  # fmt: skip
