r"""Expected calibration error (ECE) of top-1 confidences.

scikit-learn has no ECE (``calibration_curve`` drops bin counts), so it is computed here
in the standard way (Guo et al., 2017): the top-1 confidences
:math:`\hat p_i = \max_k p_{ik}` are put into ``n_bins`` equal-width bins
:math:`B_b = ((b-1)/M, b/M]` (the first bin also holds 0) and

.. math::
    \mathrm{ECE} = \sum_b \frac{|B_b|}{N}\, \bigl|\mathrm{acc}(B_b) - \mathrm{conf}(B_b)\bigr|

with :math:`\mathrm{acc}(B_b)` the fraction of correct predictions in the bin and
:math:`\mathrm{conf}(B_b)` its mean confidence. Empty bins contribute nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurall_neuro.errors import ConfigError

#: Number of bins used unless told otherwise (Guo et al. use 15).
DEFAULT_BINS = 15


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin counts, accuracies and mean confidences (``nan`` for empty bins)."""

    edges: np.ndarray
    counts: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray


def reliability_bins(
    y_true: np.ndarray, probs: np.ndarray, n_bins: int = DEFAULT_BINS
) -> ReliabilityBins:
    """Bin the top-1 confidences of ``probs`` ``[N, K]`` into ``n_bins`` equal-width bins."""
    if n_bins < 1:
        raise ConfigError(f"n_bins must be >= 1, got {n_bins}")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bin b holds (edges[b], edges[b+1]]; a confidence of exactly 0 goes to bin 0.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    acc_sum = np.bincount(index, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(counts > 0, acc_sum / counts, np.nan)
        conf = np.where(counts > 0, conf_sum / counts, np.nan)
    return ReliabilityBins(edges=edges, counts=counts, accuracy=acc, confidence=conf)


def expected_calibration_error(
    y_true: np.ndarray, probs: np.ndarray, n_bins: int = DEFAULT_BINS
) -> float:
    """ECE in [0, 1] (see the module docstring); 0 for an empty set."""
    if len(y_true) == 0:
        return 0.0
    bins = reliability_bins(y_true, probs, n_bins)
    filled = bins.counts > 0
    weights = bins.counts[filled] / bins.counts.sum()
    return float(np.sum(weights * np.abs(bins.accuracy[filled] - bins.confidence[filled])))
