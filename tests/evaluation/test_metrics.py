"""Metrics against hand-computed values on tiny cases."""

from __future__ import annotations

import numpy as np
import pytest

from neurall_neuro.errors import ConfigError
from neurall_neuro.evaluation.calibration import expected_calibration_error, reliability_bins
from neurall_neuro.evaluation.evaluator import compute_metrics
from neurall_neuro.evaluation.metrics import auroc_one_vs_rest, per_class_metrics

# Three classes, ten images. Confusion matrix (rows true, columns predicted):
#   [[2, 1, 1],
#    [1, 2, 0],
#    [0, 1, 2]]
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 0, 1, 2, 1, 1, 0, 2, 2, 1])
CLASSES = ["a", "b", "c"]


def one_hot_probs(pred: np.ndarray, k: int, top: float = 0.6) -> np.ndarray:
    probs = np.full((len(pred), k), (1 - top) / (k - 1))
    probs[np.arange(len(pred)), pred] = top
    return probs


def test_headline_metrics_match_hand_computation() -> None:
    m = compute_metrics(Y_TRUE, one_hot_probs(Y_PRED, 3), CLASSES, n_resamples=0)
    assert m["confusion_matrix"] == [[2, 1, 1], [1, 2, 0], [0, 1, 2]]
    assert m["accuracy"] == pytest.approx(6 / 10)
    assert m["balanced_accuracy"] == pytest.approx((2 / 4 + 2 / 3 + 2 / 3) / 3)
    # F1 per class: 4/7, 4/7, 2/3
    assert m["macro_f1"] == pytest.approx((4 / 7 + 4 / 7 + 2 / 3) / 3)
    assert m["n_images"] == 10
    # every confidence is 0.6 and accuracy is 0.6: perfectly calibrated
    assert m["ece"] == pytest.approx(0.0, abs=1e-12)


def test_per_class_sensitivity_specificity_ppv_npv() -> None:
    pc = per_class_metrics(Y_TRUE, Y_PRED, CLASSES)
    expected = {
        # sensitivity, specificity, ppv, npv (TP, TN, FP, FN counted by hand)
        "a": (2 / 4, 5 / 6, 2 / 3, 5 / 7),
        "b": (2 / 3, 5 / 7, 2 / 4, 5 / 6),
        "c": (2 / 3, 6 / 7, 2 / 3, 6 / 7),
    }
    for name, (sens, spec, ppv, npv) in expected.items():
        assert pc[name]["sensitivity"] == pytest.approx(sens)
        assert pc[name]["specificity"] == pytest.approx(spec)
        assert pc[name]["ppv"] == pytest.approx(ppv)
        assert pc[name]["npv"] == pytest.approx(npv)
    assert [pc[n]["support"] for n in CLASSES] == [4, 3, 3]


def test_undefined_ratios_are_none_not_zero() -> None:
    y_true = np.array([0, 0, 1, 1])
    y_pred = np.array([0, 0, 0, 0])  # class 1 never predicted, class 2 absent
    pc = per_class_metrics(y_true, y_pred, ["x", "y", "z"])
    assert pc["y"]["ppv"] is None
    assert pc["z"]["sensitivity"] is None
    assert pc["y"]["sensitivity"] == 0.0


def test_auroc_hand_case_and_undefined_class() -> None:
    # positives of class 1 score 0.8, 0.4; negatives 0.6, 0.2 -> 3 of 4 pairs ordered: 0.75
    y = np.array([1, 1, 0, 0])
    p1 = np.array([0.8, 0.4, 0.6, 0.2])
    probs = np.stack([1 - p1, p1], axis=1)
    au = auroc_one_vs_rest(y, probs, ["neg", "pos"])
    assert au["per_class"]["pos"] == pytest.approx(0.75)
    assert au["per_class"]["neg"] == pytest.approx(0.75)
    assert au["macro"] == pytest.approx(0.75)
    probs3 = np.concatenate([probs * 0.9, np.full((4, 1), 0.1)], axis=1)
    au3 = auroc_one_vs_rest(y, probs3, ["neg", "pos", "absent"])
    assert au3["per_class"]["absent"] is None
    assert au3["macro"] == pytest.approx(0.75)


def test_ece_hand_case() -> None:
    # confidences 0.95, 0.95 (one right) and 0.55, 0.55 (both right):
    # 0.5 * |0.5 - 0.95| + 0.5 * |1.0 - 0.55| = 0.225 + 0.225
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.45, 0.55], [0.45, 0.55]])
    y = np.array([0, 1, 1, 1])
    assert expected_calibration_error(y, probs) == pytest.approx(0.45)
    bins = reliability_bins(y, probs, n_bins=10)
    assert bins.counts.sum() == 4
    assert bins.counts[9] == 2 and bins.counts[5] == 2


def test_compute_metrics_rejects_bad_shapes() -> None:
    with pytest.raises(ConfigError, match="labels must be in"):
        compute_metrics(np.array([0, 3]), np.full((2, 3), 1 / 3), CLASSES, n_resamples=0)
    with pytest.raises(ConfigError, match="columns"):
        compute_metrics(np.array([0, 1]), np.full((2, 2), 0.5), CLASSES, n_resamples=0)
