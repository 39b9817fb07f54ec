"""Classification metrics of a set of predictions (scikit-learn implementations).

All functions take integer true labels ``y_true`` (``[N]``, values ``0..K-1``) and class
probabilities ``probs`` (``[N, K]``, rows summing to 1); the predicted class is the
arg-max of ``probs``. Metrics that are undefined for the data at hand (the sensitivity
of a class without images, the AUROC of a class that is all-positive or absent) are
``None``, never a silent 0.

One-vs-rest quantities of class ``c`` treat ``c`` as positive and every other class as
negative:

* sensitivity (recall, TPR) = TP / (TP + FN)   -> ``recall_score(y == c, pred == c)``
* specificity (TNR)         = TN / (TN + FP)   -> ``recall_score(y != c, pred != c)``
* PPV (precision)           = TP / (TP + FP)   -> ``precision_score(y == c, pred == c)``
* NPV                       = TN / (TN + FN)   -> ``precision_score(y != c, pred != c)``
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from neurall_neuro.errors import ConfigError


def check_predictions(
    y_true: np.ndarray, probs: np.ndarray, num_classes: int | None = None
) -> None:
    """Validate shapes and label range; raises ConfigError with the offending values."""
    if probs.ndim != 2:
        raise ConfigError(f"probabilities must be [N, K], got shape {tuple(probs.shape)}")
    if y_true.ndim != 1 or y_true.shape[0] != probs.shape[0]:
        raise ConfigError(
            f"{y_true.shape[0] if y_true.ndim else 0} labels for {probs.shape[0]} probability rows"
        )
    k = probs.shape[1] if num_classes is None else num_classes
    if probs.shape[1] != k:
        raise ConfigError(f"probabilities have {probs.shape[1]} columns for {k} classes")
    if y_true.size and (y_true.min() < 0 or y_true.max() >= k):
        raise ConfigError(f"labels must be in 0..{k - 1}, got range {y_true.min()}..{y_true.max()}")


def _nan_to_none(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of correct predictions, in [0, 1]."""
    return float(accuracy_score(y_true, y_pred))


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``y_true``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "y_pred contains classes not in y_true"
        return float(balanced_accuracy_score(y_true, y_pred))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean F1 over the classes that occur in ``y_true`` or ``y_pred``.

    (scikit-learn's default label set; a class neither present nor predicted has no F1
    and is not counted as 0, which matters for bootstrap resamples that miss a patient
    group and with it a class.)
    """
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def per_class_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Per class: ``support``, ``sensitivity``, ``specificity``, ``ppv``, ``npv``, ``f1``.

    Undefined ratios (zero denominators) are ``None``.
    """
    out: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(class_names):
        pos_true, pos_pred = y_true == c, y_pred == c
        neg_true, neg_pred = ~pos_true, ~pos_pred
        nan = np.nan
        out[name] = {
            "support": int(pos_true.sum()),
            "sensitivity": _nan_to_none(recall_score(pos_true, pos_pred, zero_division=nan)),
            "specificity": _nan_to_none(recall_score(neg_true, neg_pred, zero_division=nan)),
            "ppv": _nan_to_none(precision_score(pos_true, pos_pred, zero_division=nan)),
            "npv": _nan_to_none(precision_score(neg_true, neg_pred, zero_division=nan)),
            "f1": _nan_to_none(f1_score(pos_true, pos_pred, zero_division=nan)),
        }
    return out


def auroc_one_vs_rest(
    y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """One-vs-rest AUROC per class and their unweighted mean (``macro``).

    A class's AUROC is ``None`` when the evaluated set has no positives or no negatives
    for it; ``macro`` averages the defined ones (``None`` if there are none).
    """
    per_class: dict[str, float | None] = {}
    for c, name in enumerate(class_names):
        positive = y_true == c
        if positive.all() or not positive.any():
            per_class[name] = None
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            per_class[name] = float(roc_auc_score(positive, probs[:, c]))
    defined = [v for v in per_class.values() if v is not None]
    return {"macro": float(np.mean(defined)) if defined else None, "per_class": per_class}


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrix ``[K, K]``: rows are true classes, columns predicted classes."""
    return confusion_matrix(y_true, y_pred, labels=list(range(num_classes)))
