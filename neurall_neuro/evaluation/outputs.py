"""Files written by an evaluation: per-image predictions and the confusion matrix as CSV."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neurall_neuro.data.records import ImageRecord


def write_predictions_csv(
    path: str | Path,
    records: Sequence[ImageRecord],
    labels: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
) -> Path:
    """One row per image: ``path, patient_id, true, predicted, correct, prob_<class>...``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    predicted = probs.argmax(axis=1)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["path", "patient_id", "true", "predicted", "correct"]
            + [f"prob_{c}" for c in class_names]
        )
        for rec, y, p, row in zip(records, labels, predicted, probs, strict=True):
            writer.writerow(
                [str(rec.path), rec.patient_id or "", class_names[y], class_names[p], int(y == p)]
                + [f"{v:.6f}" for v in row]
            )
    return path


def write_confusion_csv(path: str | Path, matrix: np.ndarray, class_names: Sequence[str]) -> Path:
    """The confusion matrix with a header row of predicted classes and a column of true classes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["true \\ predicted", *class_names])
        for name, row in zip(class_names, np.asarray(matrix), strict=True):
            writer.writerow([name, *(int(v) for v in row)])
    return path


def json_safe(value: Any) -> Any:
    """Recursively convert numpy scalars/arrays, tuples and paths; NaN/inf become ``None``."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented, strictly valid JSON (no NaN)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(json_safe(payload), indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    return path
