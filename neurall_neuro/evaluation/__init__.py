"""Evaluation of checkpoints: ``evaluate(checkpoint, cohort_or_dir, ...) -> EvaluationResult``.

Metrics (scikit-learn), bootstrapped CIs (patients resampled when ids exist), ECE,
robustness under input perturbations and near-duplicate checks against training data.
"""

from neurall_neuro.evaluation.evaluator import EvaluationResult, compute_metrics, evaluate

__all__ = ["EvaluationResult", "compute_metrics", "evaluate"]
