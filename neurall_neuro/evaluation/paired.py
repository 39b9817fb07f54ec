r"""Paired comparison of two classifiers on the same images: McNemar's test.

Two classifiers A and B scored on the same ``N`` images give a 2x2 table of
correctness:

.. code-block:: text

                 B right              B wrong
    A right      both_right           only_a_right (b)
    A wrong      only_b_right (c)     both_wrong

Only the discordant images (``b + c``) carry information about which classifier is
better. Under the null hypothesis that both have the same error rate, each discordant
image is equally likely to favour A or B, so ``b ~ Binomial(b + c, 1/2)``:

* **exact** test: two-sided binomial p-value
  :math:`p = \min\bigl(1,\ 2 \sum_{k=0}^{\min(b,c)} \binom{b+c}{k} 2^{-(b+c)}\bigr)`
  (equal to ``scipy.stats.binomtest(b, b + c, 0.5).pvalue``); computed with exact
  integer arithmetic;
* **chi-square** test with continuity correction (Edwards):
  :math:`\chi^2 = \max(0, |b - c| - 1)^2 / (b + c)` on one degree of freedom,
  :math:`p = P(\chi^2_1 \ge \chi^2) = \operatorname{erfc}(\sqrt{\chi^2 / 2})`. The
  ``max(0, .)`` keeps ``b = c`` at ``chi2 = 0, p = 1``.

With no discordant image (both classifiers agree on every image's correctness) both
p-values are 1. Prefer the exact p-value when ``b + c`` is small (below ~25).

The test compares correctness only: which wrong class was predicted does not matter.
It treats images as independent; several images of one patient are not (report the
paired test together with patient-level bootstrap intervals,
:mod:`~neurall_neuro.evaluation.bootstrap`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurall_neuro.errors import ConfigError


@dataclass(frozen=True)
class McNemarResult:
    """The 2x2 correctness table of two classifiers and McNemar's test on it."""

    both_right: int
    only_a_right: int
    only_b_right: int
    both_wrong: int
    p_exact: float
    chi2: float
    p_chi2: float
    name_a: str = "A"
    name_b: str = "B"
    alpha: float = 0.05

    @property
    def n(self) -> int:
        """Number of images compared."""
        return self.both_right + self.only_a_right + self.only_b_right + self.both_wrong

    @property
    def discordant(self) -> int:
        """Images on which exactly one classifier is right."""
        return self.only_a_right + self.only_b_right

    @property
    def accuracy_a(self) -> float:
        return (self.both_right + self.only_a_right) / self.n

    @property
    def accuracy_b(self) -> float:
        return (self.both_right + self.only_b_right) / self.n

    @property
    def significant(self) -> bool:
        """Exact p-value below ``alpha``."""
        return self.p_exact < self.alpha

    def table(self) -> list[list[int]]:
        """``[[both right, only A right], [only B right, both wrong]]`` (rows: A right, A wrong)."""
        return [[self.both_right, self.only_a_right], [self.only_b_right, self.both_wrong]]

    def summary(self) -> str:
        """One line for a human reader."""
        a, b = self.name_a, self.name_b
        if self.discordant == 0:
            verdict = "no discordant images, no evidence of a difference"
        elif self.significant:
            better = a if self.only_a_right > self.only_b_right else b
            verdict = f"{better} is better (significant at {self.alpha:g})"
        else:
            verdict = f"difference not significant at {self.alpha:g}"
        return (
            f"{a} vs {b} on {self.n} images: accuracy {100 * self.accuracy_a:.2f} % vs "
            f"{100 * self.accuracy_b:.2f} %; only {a} right {self.only_a_right}, only {b} right "
            f"{self.only_b_right}; McNemar exact p = {self.p_exact:.4g} "
            f"(chi2 = {self.chi2:.3f}, p = {self.p_chi2:.4g}): {verdict}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name_a": self.name_a,
            "name_b": self.name_b,
            "n": self.n,
            "both_right": self.both_right,
            "only_a_right": self.only_a_right,
            "only_b_right": self.only_b_right,
            "both_wrong": self.both_wrong,
            "p_exact": self.p_exact,
            "chi2": self.chi2,
            "p_chi2": self.p_chi2,
            "alpha": self.alpha,
            "significant": self.significant,
            "summary": self.summary(),
        }


def exact_binomial_p(b: int, c: int) -> float:
    """Two-sided exact p-value of ``b`` successes in ``b + c`` fair-coin trials."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)  # big-integer ratio: no overflow, correctly rounded


def corrected_chi2(b: int, c: int) -> tuple[float, float]:
    """Continuity-corrected McNemar statistic and its chi-square (1 df) p-value."""
    n = b + c
    if n == 0:
        return 0.0, 1.0
    chi2 = max(0, abs(b - c) - 1) ** 2 / n
    return float(chi2), float(math.erfc(math.sqrt(chi2 / 2)))


def _labels(name: str, values: Sequence[int] | np.ndarray) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ConfigError(f"{name} must be a 1-D sequence of labels, got shape {array.shape}")
    return array


def mcnemar(
    y_true: Sequence[int] | np.ndarray,
    pred_a: Sequence[int] | np.ndarray,
    pred_b: Sequence[int] | np.ndarray,
    name_a: str = "A",
    name_b: str = "B",
    alpha: float = 0.05,
) -> McNemarResult:
    """McNemar's test of two classifiers' predictions on the same images.

    Args:
        y_true: ``[N]`` true labels.
        pred_a, pred_b: ``[N]`` predicted labels of classifiers A and B, image for image
            in the order of ``y_true``.
        name_a, name_b: names used in the summary.
        alpha: significance level of ``significant`` and the summary's verdict.

    Raises:
        ConfigError: empty input, arrays of different lengths or not 1-D, or
            ``alpha`` outside (0, 1).
    """
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    truth = _labels("y_true", y_true)
    a = _labels("pred_a", pred_a)
    b = _labels("pred_b", pred_b)
    if not len(truth) == len(a) == len(b):
        raise ConfigError(
            f"paired predictions need equal lengths: {len(truth)} labels, "
            f"{len(a)} predictions of {name_a}, {len(b)} predictions of {name_b}"
        )
    if len(truth) == 0:
        raise ConfigError("cannot compare classifiers on an empty set of images")
    right_a = a == truth
    right_b = b == truth
    only_a = int(np.sum(right_a & ~right_b))
    only_b = int(np.sum(~right_a & right_b))
    chi2, p_chi2 = corrected_chi2(only_a, only_b)
    return McNemarResult(
        both_right=int(np.sum(right_a & right_b)),
        only_a_right=only_a,
        only_b_right=only_b,
        both_wrong=int(np.sum(~right_a & ~right_b)),
        p_exact=exact_binomial_p(only_a, only_b),
        chi2=chi2,
        p_chi2=p_chi2,
        name_a=name_a,
        name_b=name_b,
        alpha=alpha,
    )
