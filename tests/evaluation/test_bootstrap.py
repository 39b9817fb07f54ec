"""Bootstrap intervals: coverage of the point estimate, narrowing, patient-level resampling."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from neurall_neuro.errors import ConfigError
from neurall_neuro.evaluation.bootstrap import (
    CONFUSION_STATISTICS,
    bootstrap_intervals,
    resample_indices,
    resampled_confusions,
)
from neurall_neuro.evaluation.evaluator import compute_metrics


def _data(n: int, acc: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    pred = np.where(rng.random(n) < acc, y, 1 - y)
    return y, pred


def test_confusion_statistics_equal_scikit_learn_on_resamples() -> None:
    rng = np.random.default_rng(0)
    k = 4
    y = rng.integers(0, k, size=60)
    pred = np.where(rng.random(60) < 0.6, y, rng.integers(0, k, size=60))
    resamples = resample_indices(60, None, 200, seed=1)
    resamples.append(np.flatnonzero(y != 3))  # a resample without class 3 in the labels
    resamples.append(np.flatnonzero((y != 3) & (pred != 3)))  # ... nor in the predictions
    cms = resampled_confusions(y, pred, k, resamples)
    ours = {name: fn(cms) for name, fn in CONFUSION_STATISTICS.items()}
    for r, idx in enumerate(resamples):
        yt, yp = y[idx], pred[idx]
        assert ours["accuracy"][r] == pytest.approx(accuracy_score(yt, yp), abs=1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
            ref_bal = balanced_accuracy_score(yt, yp)
        assert ours["balanced_accuracy"][r] == pytest.approx(ref_bal, abs=1e-12)
        ref_f1 = f1_score(yt, yp, average="macro", zero_division=0)
        assert ours["macro_f1"][r] == pytest.approx(ref_f1, abs=1e-12)


def test_interval_contains_point_estimate_and_is_seeded() -> None:
    y, pred = _data(300, 0.8)
    point = float((y == pred).mean())
    a = bootstrap_intervals(y, pred, 2, n_resamples=1000, seed=3)
    lo, hi = a.intervals["accuracy"]
    assert lo <= point <= hi
    assert 0 <= lo < hi <= 1
    assert a.intervals == bootstrap_intervals(y, pred, 2, n_resamples=1000, seed=3).intervals
    assert a.intervals != bootstrap_intervals(y, pred, 2, n_resamples=1000, seed=4).intervals


def test_interval_narrows_with_more_data() -> None:
    widths = []
    for n in (80, 2000):
        y, pred = _data(n, 0.8, seed=n)
        lo, hi = bootstrap_intervals(y, pred, 2, n_resamples=1000).intervals["accuracy"]
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 3  # width ~ 1/sqrt(n): about 5x narrower


def test_patient_resampling_draws_whole_groups() -> None:
    groups = ["p1"] * 3 + ["p2"] * 5 + ["p3"] * 1 + ["p4"] * 4
    members = [{i for i, x in enumerate(groups) if x == g} for g in ("p1", "p2", "p3", "p4")]
    for idx in resample_indices(len(groups), groups, n_resamples=200, seed=1):
        counts = np.bincount(idx, minlength=len(groups))
        for mem in members:
            assert len({int(counts[i]) for i in mem}) == 1  # a patient's images drawn together
        assert sum(int(counts[min(mem)]) for mem in members) == 4  # 4 patients per resample


def test_patient_level_interval_is_wider_for_correlated_patients() -> None:
    # 12 patients x 25 images; a patient is either all right or all wrong.
    rng = np.random.default_rng(0)
    groups, y, pred = [], [], []
    for p in range(12):
        right = p % 4 != 0  # 9 of 12 patients right
        for _ in range(25):
            label = int(rng.integers(0, 2))
            groups.append(f"p{p}")
            y.append(label)
            pred.append(label if right else 1 - label)
    y_arr, pred_arr = np.array(y), np.array(pred)
    image = bootstrap_intervals(y_arr, pred_arr, 2, None, 1000).intervals["accuracy"]
    patient = bootstrap_intervals(y_arr, pred_arr, 2, groups, 1000).intervals["accuracy"]
    assert (patient[1] - patient[0]) > 2 * (image[1] - image[0])
    m = compute_metrics(y_arr, np.eye(2)[pred_arr], ["x", "y"], groups=groups, n_resamples=300)
    assert m["bootstrap"]["unit"] == "patient" and m["bootstrap"]["n_units"] == 12
    assert m["accuracy_ci95"][0] <= m["accuracy"] <= m["accuracy_ci95"][1]


def test_bad_arguments() -> None:
    y, pred = _data(10, 0.5)
    with pytest.raises(ConfigError):
        bootstrap_intervals(y, pred, 2, n_resamples=0)
    with pytest.raises(ConfigError):
        bootstrap_intervals(y, pred, 2, groups=["a"] * 3)
    with pytest.raises(ConfigError):
        bootstrap_intervals(y, pred[:5], 2)


def test_single_patient_classes_get_a_warning() -> None:
    y = np.array([0, 0, 1, 1, 1, 1])
    probs = np.eye(2)[y]
    one = compute_metrics(y, probs, ["a", "b"], groups=["p1", "p1", "p2", "p2", "p3", "p3"])
    assert "a" in one["bootstrap"]["warning"] and "single patient" in one["bootstrap"]["warning"]
    two = compute_metrics(y, probs, ["a", "b"], groups=["p1", "p4", "p2", "p2", "p3", "p3"])
    assert two["bootstrap"]["warning"] is None
