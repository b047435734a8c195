"""The report's statistics: the delta method over shoppers, the always-valid sequential test
(its false-positive rate when someone looks at every step, its power), the SRM check."""

from __future__ import annotations

import itertools
import math

import numpy as np

from composer.experiments.stats import (
    Estimate,
    confidence_sequence,
    mixture_likelihood_ratio,
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
    assert ratio_estimate([1.0], [1.0]).variance == math.inf
    assert math.isnan(ratio_estimate([], []).value)


def _clustered(rng: np.random.Generator, units: int, lift: float = 0.0) -> tuple[np.ndarray, ...]:
    """Units with 1-8 pages and a propensity of their own: their pages are correlated."""
    pages = rng.integers(1, 9, units).astype(float)
    propensity = np.clip(rng.beta(2, 6, units) * (1 + lift), 0, 1)
    clicked = rng.binomial(pages.astype(int), propensity).astype(float)
    return clicked, pages


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
    assert float(np.mean(naive)) < 0.75 * empirical  # pages treated as independent


def test_the_mixture_ratio_and_its_confidence_sequence() -> None:
    assert mixture_likelihood_ratio(0.3, math.inf, 0.1) == 1.0
    small, large = (mixture_likelihood_ratio(d, 0.001, 0.05) for d in (0.01, 0.2))
    assert large > small
    lo, hi = confidence_sequence(0.1, 0.001, 0.05, 0.05)
    fixed = 1.96 * math.sqrt(0.001)
    assert lo < 0.1 < hi and (hi - lo) / 2 > fixed


def _run(rng: np.random.Generator, lift: float, looks: int = 20, per_look: int = 40) -> tuple:
    """One simulated experiment looked at ``looks`` times as units arrive."""
    a = _clustered(rng, looks * per_look)
    b = _clustered(rng, looks * per_look, lift)
    path = []
    for k in range(1, looks + 1):
        n = k * per_look
        path.append(
            (ratio_estimate(a[0][:n].tolist(), a[1][:n].tolist()),
             ratio_estimate(b[0][:n].tolist(), b[1][:n].tolist()))
        )  # fmt: skip
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
    assert found >= 80


def test_no_test_before_each_arm_has_enough_units() -> None:
    tiny = (ratio_estimate([0.0, 0.0, 0.0], [1.0, 2.0, 1.0]),
            ratio_estimate([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]))  # fmt: skip
    assert tiny[0].variance == 0  # a plug-in test would reject on this
    assert sequential_test([tiny]).p_value == 1.0


def test_sample_ratio_mismatch() -> None:
    assert not sample_ratio_check({"a": 5000, "b": 5000}, {"a": 1, "b": 1}).mismatch
    assert sample_ratio_check({"a": 5000, "b": 5400}, {"a": 1, "b": 1}).mismatch
    assert not sample_ratio_check({"a": 6667, "b": 3333}, {"a": 2, "b": 1}).mismatch
    assert not sample_ratio_check({"a": 10}, {"a": 1}).mismatch
