"""``evaluate`` on a tiny generated cohort: files, split evaluation, robustness, external cohorts."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from neurall_neuro.data.layouts import load_cohort
from neurall_neuro.data.preprocess import Preprocessing
from neurall_neuro.data.splits import make_split
from neurall_neuro.errors import ConfigError, DataError
from neurall_neuro.evaluation import EvaluationResult, evaluate
from neurall_neuro.models.checkpoint import save_checkpoint
from neurall_neuro.models.registry import get_model

CLASSES = ["Benign", "Early", "Pre", "Pro"]


@pytest.fixture(scope="module")
def checkpoint(tiny_cohort_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = get_model("se-cnn", input_size=16, channels=[4, 8, 8, 8])
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    meta = {"train_root": str(tiny_cohort_dir), "train_layout": "manifest"}
    return save_checkpoint(path, model, CLASSES, Preprocessing(size=16).to_dict(), meta)


def test_evaluate_writes_metrics_and_files(
    checkpoint: Path, tiny_cohort_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    result = evaluate(
        checkpoint, tiny_cohort_dir, out, bootstrap=1000, overlap_check=False, progress=False
    )
    assert isinstance(result, EvaluationResult)
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "accuracy", "accuracy_ci95", "balanced_accuracy", "macro_f1", "n_images", "per_class",
        "auroc", "ece", "confusion_matrix", "class_names", "model", "checkpoint",
    ):  # fmt: skip
        assert key in metrics, key
    assert metrics["n_images"] == 48 and metrics["class_names"] == CLASSES
    assert 0.0 <= metrics["accuracy"] <= 1.0
    lo, hi = metrics["accuracy_ci95"]
    assert lo <= metrics["accuracy"] <= hi
    assert metrics["bootstrap"]["n_resamples"] == 1000 and metrics["bootstrap"]["unit"] == "patient"
    assert np.asarray(metrics["confusion_matrix"]).sum() == 48
    assert metrics["model"] == "se-cnn" and metrics["checkpoint"] == str(checkpoint)
    # predictions.csv agrees with the confusion matrix
    with (out / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 48 and {"path", "true", "predicted", "prob_Benign"} <= set(rows[0])
    acc = np.mean([r["true"] == r["predicted"] for r in rows])
    assert acc == pytest.approx(metrics["accuracy"])
    assert (out / "confusion_matrix.png").stat().st_size > 0
    assert (
        (out / "confusion_matrix.csv").read_text().splitlines()[0].endswith("Benign,Early,Pre,Pro")
    )
    assert json.loads(result.to_json())["accuracy"] == metrics["accuracy"]


def test_split_and_robustness(checkpoint: Path, tiny_cohort_dir: Path, tmp_path: Path) -> None:
    cohort = load_cohort(tiny_cohort_dir)
    split = make_split(cohort, seed=0)
    split_path = split.save(tmp_path / "split.json")
    result = evaluate(
        checkpoint, tiny_cohort_dir, split_file=split_path, split="test",
        robustness=["grayscale", "stain-jitter"], bootstrap=100, overlap_check=False, progress=False,
    )  # fmt: skip
    assert result.n_images == len(split.test)
    assert set(result.robustness) == {"grayscale", "stain-jitter"}
    gray = result.robustness["grayscale"]
    assert gray["drop"]["accuracy"] == pytest.approx(result.accuracy - gray["accuracy"])
    with pytest.raises(Exception, match="valid options"):
        evaluate(checkpoint, tiny_cohort_dir, robustness=["blur"], overlap_check=False)
    with pytest.raises(ConfigError, match="split"):
        evaluate(
            checkpoint, tiny_cohort_dir, split_file=split_path, split="holdout", overlap_check=False
        )


def test_external_cohort_with_other_class_names(
    checkpoint: Path, tiny_cohort_dir: Path, tmp_path: Path
) -> None:
    # The same images in a Kaggle-style folder layout with that dataset's class names.
    ext = tmp_path / "kaggle" / "Blood cell Cancer [ALL]"
    names = {
        "Benign": "Benign",
        "Early": "[Malignant] early Pre-B",
        "Pre": "[Malignant] Pre-B",
        "Pro": "[Malignant] Pro-B",
    }
    for src, dst in names.items():
        shutil.copytree(tiny_cohort_dir / src, ext / dst)
    result = evaluate(
        checkpoint, tmp_path / "kaggle", bootstrap=50, overlap_check=False, progress=False
    )
    reference = evaluate(
        checkpoint, tiny_cohort_dir, bootstrap=50, overlap_check=False, progress=False
    )
    assert result.data["layout"] == "kaggle-blood-cells"
    assert result.n_images == 48 and result.n_patients is None  # no ids: images are resampled
    assert result.bootstrap["unit"] == "image"
    assert result.accuracy == pytest.approx(reference.accuracy)
    assert result.confusion_matrix == reference.confusion_matrix
    # A class that cannot be mapped is an error naming both class sets.
    other = tmp_path / "other"
    for name in ("cats", "dogs"):
        shutil.copytree(tiny_cohort_dir / "Pre", other / name)
    with pytest.raises(DataError, match="cannot map classes"):
        evaluate(checkpoint, other, overlap_check=False, progress=False)


def test_overlap_with_training_data_is_reported(
    checkpoint: Path, tiny_cohort_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_cohort_dir, copy)
    with pytest.warns(UserWarning, match="near-duplicates"):
        result = evaluate(
            checkpoint, copy, bootstrap=20, progress=False
        )  # train_root from metadata
    assert result.overlap is not None and result.overlap["n_overlapping_images"] == 48
    own = evaluate(checkpoint, tiny_cohort_dir, bootstrap=20, progress=False)
    assert own.overlap is not None and own.overlap["n_overlapping_images"] == 0
    assert "training cohort" in own.overlap["note"]
