"""McNemar's paired test (``neurall_neuro.evaluation.paired``) against scipy and by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import binomtest, chi2

from neurall_neuro.errors import ConfigError
from neurall_neuro.evaluation.paired import corrected_chi2, exact_binomial_p, mcnemar


def _predictions(both_right: int, only_a: int, only_b: int, both_wrong: int, seed: int = 0):
    """Labels and two prediction vectors with the given 2x2 correctness counts (4 classes,
    wrong predictions spread over the wrong classes), in shuffled order."""
    rng = np.random.default_rng(seed)
    n = both_right + only_a + only_b + both_wrong
    y = rng.integers(0, 4, size=n)
    wrong = (y + rng.integers(1, 4, size=n)) % 4  # some other class
    wrong2 = (y + rng.integers(1, 4, size=n)) % 4
    kind = np.repeat([0, 1, 2, 3], [both_right, only_a, only_b, both_wrong])
    rng.shuffle(kind)
    a = np.where((kind == 0) | (kind == 1), y, wrong)
    b = np.where((kind == 0) | (kind == 2), y, wrong2)
    return y, a, b


@pytest.mark.parametrize(
    "counts",
    [(50, 7, 2, 3), (30, 0, 6, 1), (10, 1, 1, 0), (100, 13, 25, 4), (5, 40, 31, 2), (0, 1, 0, 0)],
)
def test_counts_and_exact_p_match_scipy_binomtest(counts) -> None:
    both_right, only_a, only_b, both_wrong = counts
    y, a, b = _predictions(*counts)
    result = mcnemar(y, a, b)
    assert (
        result.both_right,
        result.only_a_right,
        result.only_b_right,
        result.both_wrong,
    ) == counts
    assert result.n == len(y) and result.discordant == only_a + only_b
    expected = binomtest(only_a, only_a + only_b, 0.5, alternative="two-sided").pvalue
    assert result.p_exact == pytest.approx(expected, rel=1e-12)
    assert result.table() == [[both_right, only_a], [only_b, both_wrong]]
    assert result.accuracy_a == pytest.approx((both_right + only_a) / len(y))
    assert result.accuracy_b == pytest.approx((both_right + only_b) / len(y))


def test_chi_square_by_hand() -> None:
    # b = 7, c = 2: chi2 = (|7 - 2| - 1)^2 / 9 = 16 / 9
    y, a, b = _predictions(50, 7, 2, 3)
    result = mcnemar(y, a, b)
    assert result.chi2 == pytest.approx(16 / 9, rel=1e-12)
    assert result.p_chi2 == pytest.approx(chi2.sf(16 / 9, df=1), rel=1e-9)
    assert result.p_chi2 == pytest.approx(0.182422, abs=1e-6)  # table value
    # b = 13, c = 25: chi2 = (12 - 1)^2 / 38 = 121 / 38
    stat, p = corrected_chi2(13, 25)
    assert stat == pytest.approx(121 / 38, rel=1e-12)
    assert p == pytest.approx(chi2.sf(121 / 38, df=1), rel=1e-9)
    # exact p by hand: b = 1, c = 5, n = 6: 2 * (1 + 6) / 64
    assert exact_binomial_p(1, 5) == pytest.approx(14 / 64, rel=1e-15)


def test_swapping_a_and_b_mirrors_the_table_and_keeps_p() -> None:
    y, a, b = _predictions(40, 9, 3, 5, seed=2)
    ab = mcnemar(y, a, b, name_a="snn", name_b="cnn")
    ba = mcnemar(y, b, a, name_a="cnn", name_b="snn")
    assert (ab.only_a_right, ab.only_b_right) == (ba.only_b_right, ba.only_a_right)
    assert ab.both_right == ba.both_right and ab.both_wrong == ba.both_wrong
    assert ab.p_exact == ba.p_exact and ab.chi2 == ba.chi2 and ab.p_chi2 == ba.p_chi2


@pytest.mark.parametrize("k", [1, 4, 17])
def test_balanced_discordance_gives_p_one(k: int) -> None:
    y, a, b = _predictions(20, k, k, 3, seed=k)
    result = mcnemar(y, a, b)
    assert result.p_exact == 1.0
    assert result.chi2 == 0.0 and result.p_chi2 == 1.0
    assert binomtest(k, 2 * k, 0.5).pvalue == pytest.approx(1.0)
    assert not result.significant


def test_all_agree_gives_p_one_and_says_so() -> None:
    y = np.array([0, 1, 2, 3, 1, 2])
    a = np.array([0, 1, 2, 0, 1, 3])  # wrong on the last two ...
    b = np.array([0, 1, 2, 1, 1, 0])  # ... and so is B (other wrong classes: still concordant)
    result = mcnemar(y, a, b, name_a="A", name_b="B")
    assert result.table() == [[4, 0], [0, 2]]
    assert result.p_exact == 1.0 and result.p_chi2 == 1.0 and result.chi2 == 0.0
    assert "no discordant" in result.summary()
    identical = mcnemar(y, y, y)
    assert identical.both_right == 6 and identical.p_exact == 1.0


def test_significant_difference_and_summary() -> None:
    y, a, b = _predictions(300, 20, 3, 10)
    result = mcnemar(y, a, b, name_a="se-cnn", name_b="neurallnet")
    assert result.p_exact == pytest.approx(binomtest(20, 23, 0.5).pvalue, rel=1e-12)
    assert result.p_exact < 0.05 and result.significant
    line = result.summary()
    assert "\n" not in line
    assert "se-cnn is better" in line and "333 images" in line
    assert "only se-cnn right 20" in line and "only neurallnet right 3" in line
    data = json.loads(json.dumps(result.to_dict()))
    assert data["only_a_right"] == 20 and data["significant"] is True
    assert data["summary"] == line
    small = mcnemar(*_predictions(30, 3, 1, 2))
    assert "not significant" in small.summary()


def test_large_counts_stay_finite() -> None:
    p = exact_binomial_p(2400, 2600)  # 5,000 discordant pairs: 2**5000 is no float
    expected = binomtest(2400, 5000, 0.5).pvalue
    assert math.isfinite(p) and p == pytest.approx(expected, rel=1e-9)


def test_bad_input_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="equal lengths"):
        mcnemar([0, 1, 2], [0, 1], [0, 1, 2])
    with pytest.raises(ConfigError, match="equal lengths"):
        mcnemar([0, 1], [0, 1], [0, 1, 1])
    with pytest.raises(ConfigError, match="empty"):
        mcnemar([], [], [])
    with pytest.raises(ConfigError, match="1-D"):
        mcnemar(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ConfigError, match="alpha"):
        mcnemar([0], [0], [0], alpha=1.5)
