"""The report's statistics: the delta method over shoppers, the always-valid sequential test
(its false-positive rate when someone looks at every step, its power), the SRM check."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from composer.experiments.stats import (
    Estimate,
    confidence_sequence,
    mixture_likelihood_ratio,
    percentile,
    ratio_estimate,
    sample_ratio_check,
    sequential_test,
)


def test_ratio_estimate_is_the_delta_method_over_units() -> None:
    clicks, pages = [1.0, 0.0, 3.0, 2.0], [2.0, 1.0, 4.0, 3.0]
    est = ratio_estimate(clicks, pages)
    r = 6 / 10
    residual = [y - r * n for y, n in zip(clicks, pages, strict=True)]
    expected = sum(e * e for e in residual) / (4 * 3 * 2.5**2)
    assert est.value == r and est.units == 4 and est.pages == 10
    assert math.isclose(est.variance, expected)
    lo, hi = est.interval(0.05)
    assert math.isclose((lo + hi) / 2, r) and hi - r == pytest.approx(1.959964 * expected**0.5)
    single = ratio_estimate([1.0], [1.0])
    assert single.value == 1.0 and single.variance == math.inf
    assert all(math.isnan(x) for x in single.interval())
    empty = ratio_estimate([], [])
    assert math.isnan(empty.value) and empty.variance == math.inf and empty.units == 0
    with pytest.raises(ValueError):
        ratio_estimate([1.0, 2.0], [1.0])


def _clustered(
    rng: np.random.Generator, units: int, lift: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Units with 1-8 pages and a click propensity of their own: their pages are correlated."""
    pages = rng.integers(1, 9, units)
    propensity = np.clip(rng.beta(1, 3, units) * (1 + lift), 0, 1)
    clicked = rng.binomial(pages, propensity)
    return clicked.astype(float), pages.astype(float)


def test_the_delta_method_variance_matches_the_spread_of_the_estimate_naive_does_not() -> None:
    rng = np.random.default_rng(1)
    values, delta, naive = [], [], []
    for _ in range(400):
        clicked, pages = _clustered(rng, 300)
        est = ratio_estimate(clicked.tolist(), pages.tolist())
        values.append(est.value)
        delta.append(est.variance)
        naive.append(est.value * (1 - est.value) / est.pages)
    empirical = float(np.var(values))
    assert abs(float(np.mean(delta)) / empirical - 1) < 0.2
    # Pages treated as independent draws: about half the real variance here.
    assert float(np.mean(naive)) < 0.75 * empirical


def test_the_mixture_ratio_and_its_confidence_sequence() -> None:
    assert mixture_likelihood_ratio(0.3, math.inf, 0.1) == 1.0
    assert mixture_likelihood_ratio(0.3, math.nan, 0.1) == 1.0
    ratios = [mixture_likelihood_ratio(d, 0.001, 0.05) for d in (0.0, 0.01, 0.05, 0.2)]
    assert ratios[0] < 1 and all(b > a for a, b in itertools.pairwise(ratios))
    assert mixture_likelihood_ratio(-0.05, 0.001, 0.05) == pytest.approx(ratios[2])
    # Overwhelming evidence must not overflow (exp of ~1e9): it is capped, the p-value ~0.
    huge = mixture_likelihood_ratio(1.0, 1e-12, 0.05)
    assert math.isfinite(huge) and 1 / huge < 1e-300

    d, v, tau, alpha = 0.1, 0.001, 0.05, 0.05
    lo, hi = confidence_sequence(d, v, tau, alpha)
    assert lo < d < hi and math.isclose(d - lo, hi - d)
    assert (hi - lo) / 2 > 1.96 * math.sqrt(v)  # the price of looking any number of times
    # Its edges are the differences the test rejects at exactly alpha.
    assert mixture_likelihood_ratio(d - lo, v, tau) == pytest.approx(1 / alpha)
    assert confidence_sequence(d, math.inf, tau, alpha) == (-math.inf, math.inf)


def _run(
    rng: np.random.Generator, lift: float, looks: int = 20, per_look: int = 40
) -> list[tuple[Estimate, Estimate]]:
    """One simulated experiment looked at ``looks`` times as units arrive (about 3,600 pages
    per arm by the last look)."""
    a = _clustered(rng, looks * per_look)
    b = _clustered(rng, looks * per_look, lift)
    path = []
    for k in range(1, looks + 1):
        n = k * per_look
        control = ratio_estimate(a[0][:n].tolist(), a[1][:n].tolist())
        treatment = ratio_estimate(b[0][:n].tolist(), b[1][:n].tolist())
        path.append((control, treatment))
    return path


def _peeking(path: list[tuple[Estimate, Estimate]]) -> bool:
    """A fixed-horizon test read at every look: what the sequential test replaces."""
    for a, b in path:
        d, v = b.value - a.value, a.variance + b.variance
        if abs(d) > 1.96 * math.sqrt(v):
            return True
    return False


def test_looking_at_every_step_keeps_the_false_positive_rate_at_alpha() -> None:
    rng = np.random.default_rng(2)
    runs = 300
    sequential = peeking = 0
    for _ in range(runs):
        path = _run(rng, lift=0.0)
        sequential += sequential_test(path, alpha=0.05).significant
        peeking += _peeking(path)
    assert sequential / runs <= 0.07  # 0.05 and sampling error
    assert peeking / runs > 0.08 and peeking > sequential


def test_a_real_difference_is_found_and_the_test_only_tightens() -> None:
    rng = np.random.default_rng(3)
    found = 0
    for _ in range(100):
        result = sequential_test(_run(rng, lift=0.3), alpha=0.05)
        found += result.significant and result.difference > 0
        p = [look.p_value for look in result.looks]
        assert all(later <= earlier for earlier, later in itertools.pairwise(p))
        lows = [look.lower for look in result.looks]
        highs = [look.upper for look in result.looks]
        assert all(b >= a for a, b in itertools.pairwise(lows))
        assert all(b <= a for a, b in itertools.pairwise(highs))
        # The p-value and the interval are one test: significant iff 0 is outside.
        assert result.significant == (result.lower > 0 or result.upper < 0)
        assert result.p_value == p[-1] and result.lower == lows[-1]
    assert found >= 80


def test_the_default_scale_is_the_minimum_effect_on_the_pooled_value() -> None:
    control = ratio_estimate([1.0, 2.0, 0.0], [4.0, 4.0, 2.0])  # 3 clicks / 10 pages
    treatment = ratio_estimate([3.0, 3.0], [5.0, 5.0])  # 6 / 10
    result = sequential_test([(control, treatment)], minimum_effect=0.2, min_units=2)
    assert result.tau == pytest.approx(0.2 * 9 / 20)
    assert result.difference == pytest.approx(0.3) and result.relative == pytest.approx(1.0)
    assert len(result.looks) == 1 and result.looks[0].pages == 20
    # No outcome in either arm: nothing to test, and nothing divides by zero.
    none = ratio_estimate([0.0] * 40, [1.0] * 40)
    quiet = sequential_test([(none, none)])
    assert 0 < quiet.tau < 1e-6 and quiet.p_value == 1.0 and not quiet.significant
    assert math.isnan(quiet.relative)


def test_no_test_before_each_arm_has_enough_units() -> None:
    tiny = (
        ratio_estimate([0.0, 0.0, 0.0], [1.0, 2.0, 1.0]),
        ratio_estimate([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]),
    )
    assert tiny[0].variance == 0  # a plug-in test would reject on this
    result = sequential_test([tiny])
    assert result.p_value == 1.0 and (result.lower, result.upper) == (-math.inf, math.inf)


def test_sample_ratio_mismatch() -> None:
    even = sample_ratio_check({"a": 5000, "b": 5000}, {"a": 1, "b": 1})
    assert not even.mismatch and even.chi2 == 0 and even.p_value == 1.0
    skewed = sample_ratio_check({"a": 5000, "b": 5400}, {"a": 1, "b": 1})
    assert skewed.mismatch and skewed.chi2 == pytest.approx(2 * 200**2 / 5200)
    assert skewed.p_value == pytest.approx(8.8e-5, rel=0.05)
    two_to_one = sample_ratio_check({"a": 6667, "b": 3333}, {"a": 2, "b": 1})
    assert not two_to_one.mismatch and two_to_one.expected_share["a"] == pytest.approx(2 / 3)
    single = sample_ratio_check({"a": 10}, {"a": 1})
    assert not single.mismatch and single.p_value == 1.0
    assert not sample_ratio_check({}, {"a": 1, "b": 1}).mismatch


def test_percentile() -> None:
    assert math.isnan(percentile([], 95))
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([0.0, 10.0], 95) == pytest.approx(9.5)
    assert percentile([5.0], 99) == 5.0
