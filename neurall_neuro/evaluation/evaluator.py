"""``evaluate``: score a checkpoint on a cohort (held-out, external, or one split).

What one evaluation computes (see :func:`compute_metrics`): accuracy, balanced
accuracy, macro-F1 (each with a bootstrapped 95 % CI, resampling patients when ids
exist), per-class sensitivity / specificity / PPV / NPV / F1, one-vs-rest AUROC, the
expected calibration error and the confusion matrix. Optionally the same metrics
under robustness transforms (``grayscale``, ``stain-jitter``) with the drop vs clean,
and two checks against the training data:

* **training images** (:mod:`~neurall_neuro.evaluation.training_images`): the evaluated
  images are compared with the hashes of the training and validation images stored in
  the checkpoint (no training data or split file needed). Overlap is reported loudly
  (``summary()``, an :class:`TrainingOverlapWarning`, ``training_images`` in
  ``metrics.json``, ``training_overlap.csv``); ``exclude_training=True`` scores the
  held-out images only. Exclusion is opt-in so that a figure never changes by itself
  and an explicitly requested part (``--split val``) can still be scored.
* **near-duplicates on disk** (:mod:`~neurall_neuro.evaluation.overlap`): the
  two-stage detector of :mod:`neurall_neuro.data.dedup` against the training folder,
  when it exists.

Files written to ``out_dir`` (when given): ``metrics.json``, ``predictions.csv``,
``confusion_matrix.csv``, ``confusion_matrix.png`` and, when evaluated images were
among the checkpoint's training or validation images, ``training_overlap.csv``.
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurall_neuro.atomic import atomic_open
from neurall_neuro.data.dataset import ImageDataset
from neurall_neuro.data.preprocess import ROBUSTNESS_TRANSFORMS, Preprocessing
from neurall_neuro.data.records import Cohort
from neurall_neuro.errors import CheckpointError, ConfigError, DataError
from neurall_neuro.evaluation.bootstrap import DEFAULT_RESAMPLES, bootstrap_intervals
from neurall_neuro.evaluation.calibration import expected_calibration_error
from neurall_neuro.evaluation.metrics import (
    accuracy,
    auroc_one_vs_rest,
    balanced_accuracy,
    check_predictions,
    confusion,
    macro_f1,
    per_class_metrics,
)
from neurall_neuro.evaluation.outputs import (
    json_safe,
    write_confusion_csv,
    write_json,
    write_predictions_csv,
)
from neurall_neuro.evaluation.overlap import OverlapReport, OverlapWarning, check_overlap
from neurall_neuro.evaluation.plots import plot_confusion_matrix
from neurall_neuro.evaluation.predict import Predictions, predict
from neurall_neuro.evaluation.training_images import (
    NEAR_DISTANCE,
    TrainingOverlap,
    TrainingOverlapWarning,
    check_training_images,
    no_hashes_note,
)
from neurall_neuro.models.checkpoint import Checkpoint, load_checkpoint

#: Metrics that get bootstrapped intervals, and the drop reported under perturbations.
HEADLINE_METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "macro_f1")


@dataclass
class EvaluationResult:
    """Everything one evaluation measured (``to_dict`` is the ``metrics.json`` payload).

    Fractions are in [0, 1]; ``*_ci95`` are ``(low, high)`` bootstrap intervals.
    """

    model: str
    checkpoint: str | None
    class_names: list[str]
    n_images: int
    n_patients: int | None
    accuracy: float
    accuracy_ci95: tuple[float, float]
    balanced_accuracy: float
    balanced_accuracy_ci95: tuple[float, float]
    macro_f1: float
    macro_f1_ci95: tuple[float, float]
    per_class: dict[str, dict[str, Any]]
    auroc: dict[str, Any]
    ece: float
    confusion_matrix: list[list[int]]
    bootstrap: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    robustness: dict[str, Any] = field(default_factory=dict)
    overlap: dict[str, Any] | None = None
    training_images: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)
    predictions: Predictions | None = field(default=None, repr=False)
    training_overlap: TrainingOverlap | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (predictions are in ``predictions.csv``, not here)."""
        keys = [
            "model", "checkpoint", "class_names", "n_images", "n_patients",
            "accuracy", "accuracy_ci95", "balanced_accuracy", "balanced_accuracy_ci95",
            "macro_f1", "macro_f1_ci95", "per_class", "auroc", "ece", "confusion_matrix",
            "bootstrap", "data", "robustness", "overlap", "training_images", "files",
        ]  # fmt: skip
        return json_safe({k: getattr(self, k) for k in keys})

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def summary(self) -> str:
        """A few human-readable lines."""
        lo, hi = self.accuracy_ci95
        auroc = self.auroc.get("macro")
        lines = []
        if self.training_overlap is not None and (
            self.training_overlap.matches and not self.training_overlap.excluded
        ):
            lines.append(self.training_overlap.message())
        lines += [
            f"{self.model}: {self.n_images} images"
            + (f" from {self.n_patients} patients" if self.n_patients else ""),
            f"  accuracy {self.accuracy:.4f} "
            + (f"(95% CI {lo:.4f}-{hi:.4f}), " if lo is not None else "(no bootstrap), ")
            + f"balanced accuracy {self.balanced_accuracy:.4f}, macro-F1 {self.macro_f1:.4f}",
            f"  AUROC (macro, one-vs-rest) {auroc:.4f}, ECE {self.ece:.4f}"
            if auroc is not None
            else f"  AUROC undefined, ECE {self.ece:.4f}",
        ]
        if self.bootstrap.get("warning"):
            lines.append(f"  note: {self.bootstrap['warning']}")
        for name, section in self.robustness.items():
            lines.append(
                f"  under {name}: accuracy {section['accuracy']:.4f} "
                f"(drop {section['drop']['accuracy']:+.4f})"
            )
        if self.overlap and self.overlap.get("n_overlapping_images"):
            lines.append(
                f"  WARNING: {self.overlap['n_overlapping_images']} evaluated image(s) are "
                "near-duplicates of training images"
            )
        if self.training_overlap is not None:
            if self.training_overlap.matches and not self.training_overlap.excluded:
                lines.append(
                    f"  WARNING: {self.training_overlap.n_overlapping:,} of these images were in "
                    "the checkpoint's training or validation set (see above): scores inflated"
                )
            else:
                lines.append(f"  {self.training_overlap.summary()}")
        elif self.training_images is not None and not self.training_images.get("checked"):
            lines.append("  note: the checkpoint stores no training-image hashes; overlap unknown")
        return "\n".join(lines)


def compute_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    groups: Sequence[str] | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """All metrics of one set of predictions (the body of ``metrics.json``).

    ``groups`` (patient ids, one per image) makes the bootstrap resample patients.
    ``n_resamples = 0`` skips the bootstrap (intervals are ``None``).
    """
    y_true = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=float)
    k = len(class_names)
    check_predictions(y_true, probs, k)
    if len(y_true) == 0:
        raise DataError("no images to evaluate")
    y_pred = probs.argmax(axis=1)
    out: dict[str, Any] = {
        "accuracy": accuracy(y_true, y_pred),
        "balanced_accuracy": balanced_accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred),
    }
    if n_resamples > 0:
        boot = bootstrap_intervals(y_true, y_pred, k, groups, n_resamples=n_resamples, seed=seed)
        for name in HEADLINE_METRICS:
            out[f"{name}_ci95"] = boot.intervals[name]
        out["bootstrap"] = {k2: v for k2, v in boot.to_dict().items() if k2 != "intervals"}
        if groups is not None:
            out["bootstrap"]["warning"] = few_patients_warning(y_true, groups, class_names)
    else:
        for name in HEADLINE_METRICS:
            out[f"{name}_ci95"] = (None, None)
        out["bootstrap"] = {"n_resamples": 0}
    out["per_class"] = per_class_metrics(y_true, y_pred, class_names)
    out["auroc"] = auroc_one_vs_rest(y_true, probs, class_names)
    out["ece"] = expected_calibration_error(y_true, probs)
    out["confusion_matrix"] = confusion(y_true, y_pred, k).tolist()
    out["n_images"] = int(len(y_true))
    return out


def few_patients_warning(
    y_true: np.ndarray, groups: Sequence[str], class_names: Sequence[str]
) -> str | None:
    """A caveat when some class has fewer than 2 patients (else None).

    Patient resamples then often lack that class entirely: the accuracy interval stays
    valid but wide, and macro-F1 / balanced-accuracy intervals are pulled down.
    """
    patients: dict[int, set[str]] = {c: set() for c in range(len(class_names))}
    for label, group in zip(y_true, groups, strict=True):
        patients[int(label)].add(str(group))
    thin = [class_names[c] for c, p in patients.items() if 0 < len(p) < 2]
    if not thin:
        return None
    return (
        f"class(es) {', '.join(thin)} have a single patient in the evaluated set: patient "
        "resamples often miss a class, so intervals are wide and macro-F1 / balanced-accuracy "
        "intervals are biased low; evaluate more patients for reliable intervals"
    )


def _as_checkpoint(checkpoint: str | Path | Checkpoint) -> Checkpoint:
    return checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)


def _load_eval_cohort(
    data: str | Path | Cohort,
    layout: str | None,
    split_file: str | Path | None,
    split: str,
) -> tuple[Cohort, Cohort | None, dict[str, Any]]:
    """The cohort to evaluate, the full cohort it came from, and a description."""
    from neurall_neuro.data.layouts import load_cohort

    full = data if isinstance(data, Cohort) else load_cohort(data, layout, bad_images="skip")
    info: dict[str, Any] = {"root": str(full.root), "layout": full.layout}
    if split_file is None:
        return full, None, info
    from neurall_neuro.data.splits import PARTS, Split

    if split not in PARTS:
        raise ConfigError(f"split {split!r} is invalid; valid options: {', '.join(PARTS)}")
    parts = Split.load(split_file).apply(full)
    info.update({"split_file": str(split_file), "split": split})
    return parts[split], full, info


def _groups(cohort: Cohort, indices: np.ndarray) -> list[str] | None:
    groups = cohort.groups
    return None if groups is None else [groups[i] for i in indices]


def evaluate(
    checkpoint: str | Path | Checkpoint,
    data: str | Path | Cohort,
    out_dir: str | Path | None = None,
    *,
    layout: str | None = None,
    split_file: str | Path | None = None,
    split: str = "test",
    label_mapping: dict[str, str] | None = None,
    robustness: Sequence[str] = (),
    bootstrap: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    batch_size: int = 64,
    device: str = "auto",
    amp: bool | None = None,
    train_data: str | Path | Cohort | None = None,
    overlap_check: bool = True,
    progress: bool = True,
    training_check: bool = True,
    exclude_training: bool = False,
    near_distance: int = NEAR_DISTANCE,
) -> EvaluationResult:
    """Evaluate a checkpoint on a cohort; optionally write the result files to ``out_dir``.

    Args:
        checkpoint: a checkpoint path or a loaded :class:`Checkpoint` (model, classes and
            preprocessing come from it: no model options are needed).
        data: a dataset folder / manifest (layout detected unless ``layout``) or a Cohort.
            Its classes are mapped onto the checkpoint's classes by name
            (:func:`~neurall_neuro.data.layouts.map_labels`, ``label_mapping`` for
            explicit ``source -> target`` names), so external cohorts need no retraining.
        out_dir: folder for ``metrics.json``, ``predictions.csv`` and the confusion matrix.
        split_file, split: evaluate only one part (``train``/``val``/``test``) of a split.
        robustness: names of robustness transforms to evaluate in addition to clean
            inputs (see ``ROBUSTNESS_TRANSFORMS``).
        bootstrap: number of bootstrap resamples for the CIs (0 disables them).
        seed: seed of the bootstrap and of the robustness transforms.
        train_data: training data to check for near-duplicates of the evaluated images;
            default: the training root recorded in the checkpoint metadata, if it exists.
        overlap_check: set False to skip the near-duplicate check.
        training_check: compare the evaluated images with the training and validation
            image hashes stored in the checkpoint (see
            :mod:`~neurall_neuro.evaluation.training_images`); any overlap is warned
            about (:class:`TrainingOverlapWarning`) and reported in ``training_images``.
        exclude_training: score only the images that are neither training nor
            validation images of the checkpoint (exact or near-duplicate matches);
            raises CheckpointError when the checkpoint stores no image hashes.
        near_distance: perceptual-hash distance (bits of 128) up to which an image
            counts as a near-duplicate of a remembered one.
    """
    if bootstrap < 0:
        raise ConfigError(f"bootstrap must be >= 0 resamples, got {bootstrap}")
    for name in robustness:
        ROBUSTNESS_TRANSFORMS.get(name)  # unknown names fail before any work
    ckpt = _as_checkpoint(checkpoint)
    cohort, full, data_info = _load_eval_cohort(data, layout, split_file, split)
    if tuple(cohort.class_names) != tuple(ckpt.class_names) or label_mapping:
        from neurall_neuro.data.layouts import map_labels

        data_info["source_class_names"] = list(cohort.class_names)
        cohort = map_labels(cohort, ckpt.class_names, label_mapping)
    if len(cohort) == 0:
        raise DataError(f"no images to evaluate in {data_info['root']}")
    preprocessing = Preprocessing.from_dict(ckpt.preprocessing)
    class_names = list(ckpt.class_names)

    training_overlap: TrainingOverlap | None = None
    training_section: dict[str, Any] | None = None
    if training_check or exclude_training:
        training_overlap = check_training_images(cohort, ckpt, near_distance, progress)
        if training_overlap is None:
            if exclude_training:
                raise CheckpointError(
                    f"{ckpt.path or 'the checkpoint'} stores no training-image hashes, so "
                    "exclude_training (--exclude-training) cannot tell which images it trained "
                    "on; evaluate one part of its split instead (--split-file F --split test), "
                    "or add the hashes with scripts/add_training_hashes.py"
                )
            training_section = no_hashes_note()
        elif exclude_training:
            training_overlap.excluded = True
            if training_overlap.n_held_out == 0:
                raise DataError(
                    f"all {training_overlap.n_evaluated} evaluated images were among the "
                    "checkpoint's training or validation images; no held-out image is left "
                    "to score"
                )
            if training_overlap.matches:
                full = full if full is not None else cohort
                cohort = cohort.subset(training_overlap.held_out_indices())
        elif training_overlap.matches:
            warnings.warn(training_overlap.message(), TrainingOverlapWarning, stacklevel=2)
        if training_overlap is not None:
            training_section = training_overlap.to_dict()

    overlap: OverlapReport | None = None
    if overlap_check:
        overlap = check_overlap(cohort, ckpt, train_data=train_data, evaluated_full=full)
        if overlap.n_overlapping_images:
            warnings.warn(overlap.message(), OverlapWarning, stacklevel=2)

    def run(robust: str) -> tuple[Predictions, dict[str, Any]]:
        dataset = ImageDataset(
            cohort,
            preprocessing,
            augment=False,
            cache=True,
            robustness=robust,
            robustness_seed=seed,
        )
        label = "evaluating" if robust == "none" else f"evaluating ({robust})"
        preds = predict(ckpt.model, dataset, batch_size, device, amp, label, progress)
        metrics = compute_metrics(
            preds.labels, preds.probs, class_names, _groups(cohort, preds.indices), bootstrap, seed
        )
        return preds, metrics

    preds, metrics = run("none")
    robust_section: dict[str, Any] = {}
    for name in robustness:
        if name == "none":
            continue
        _, m = run(name)
        robust_section[name] = {
            **{k: m[k] for k in (*HEADLINE_METRICS, "accuracy_ci95", "ece")},
            "auroc_macro": m["auroc"]["macro"],
            "drop": {k: metrics[k] - m[k] for k in HEADLINE_METRICS},
        }

    groups = cohort.groups
    result = EvaluationResult(
        model=ckpt.model_name,
        checkpoint=str(ckpt.path) if ckpt.path else None,
        class_names=class_names,
        n_images=metrics["n_images"],
        n_patients=len(set(groups)) if groups is not None else None,
        accuracy=metrics["accuracy"],
        accuracy_ci95=metrics["accuracy_ci95"],
        balanced_accuracy=metrics["balanced_accuracy"],
        balanced_accuracy_ci95=metrics["balanced_accuracy_ci95"],
        macro_f1=metrics["macro_f1"],
        macro_f1_ci95=metrics["macro_f1_ci95"],
        per_class=metrics["per_class"],
        auroc=metrics["auroc"],
        ece=metrics["ece"],
        confusion_matrix=metrics["confusion_matrix"],
        bootstrap=metrics["bootstrap"],
        data={**data_info, "preprocessing": preprocessing.to_dict()},
        robustness=robust_section,
        overlap=overlap.to_dict() if overlap is not None else None,
        training_images=training_section,
        predictions=preds,
        training_overlap=training_overlap,
    )
    if out_dir is not None:
        write_evaluation(result, cohort, out_dir)
    return result


def write_evaluation(
    result: EvaluationResult, cohort: Cohort, out_dir: str | Path
) -> dict[str, str]:
    """Write ``metrics.json``, ``predictions.csv``, ``confusion_matrix.{csv,png}`` to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cm = np.asarray(result.confusion_matrix)
    files = {
        "confusion_matrix_csv": write_confusion_csv(out / "confusion_matrix.csv", cm, result.class_names),
        "confusion_matrix_png": plot_confusion_matrix(
            cm, result.class_names, out / "confusion_matrix.png",
            title=f"{result.model}: accuracy {result.accuracy:.3f}",
        ),
    }  # fmt: skip
    if result.predictions is not None:
        preds = result.predictions
        records = [cohort.records[i] for i in preds.indices]
        files["predictions_csv"] = write_predictions_csv(
            out / "predictions.csv", records, preds.labels, preds.probs, result.class_names
        )
    if result.training_overlap is not None and result.training_overlap.matches:
        files["training_overlap_csv"] = write_training_overlap_csv(
            out / "training_overlap.csv", result.training_overlap
        )
    result.files = {k: str(v) for k, v in files.items()}
    result.files["metrics_json"] = str(out / "metrics.json")
    write_json(out / "metrics.json", result.to_dict())
    return result.files


def write_training_overlap_csv(path: str | Path, overlap: TrainingOverlap) -> Path:
    """Every evaluated image found among the checkpoint's training or validation images:
    ``path, part, match, hash_distance`` (``match`` is ``exact`` or ``near``)."""
    path = Path(path)
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "part", "match", "hash_distance"])
        writer.writeheader()
        writer.writerows(overlap.rows())
    return path
