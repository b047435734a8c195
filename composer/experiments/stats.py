"""The statistics of an experiment report: ratio metrics over shoppers (delta method), an
always-valid sequential test (mSPRT with a normal mixture) whose p-value and interval stay
valid however often someone looks, and the sample-ratio-mismatch check. Pure functions over
numbers, so the report, the simulator and the tests share one implementation."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

NAN = float("nan")
# The test plugs in the variance it estimates: with a handful of shoppers per arm that
# estimate can be near 0 (every one of three shoppers clicked nothing) and the test would
# reject on noise. Below this many units per arm it does not test.
MIN_UNITS = 30
# Far below alpha: the check runs at every look, and a real mismatch is rarely subtle.
SRM_THRESHOLD = 0.001
# exp() overflows just past 709; a likelihood ratio of e^700 already means a p-value of 0.
_MAX_LOG_RATIO = 700.0


@dataclass(frozen=True)
class Estimate:
    """A ratio metric over analysis units (shoppers): sum of outcomes / sum of pages, with the
    variance of that ratio by the delta method (pages of one shopper are correlated)."""

    value: float  # sum(numerators) / sum(denominators); nan when no pages
    variance: float  # of `value`, by the delta method; inf with fewer than 2 units
    units: int
    pages: float  # sum of denominators

    def interval(self, alpha: float = 0.05) -> tuple[float, float]:
        """The fixed-horizon normal interval: valid for one look only; (nan, nan) if undefined."""
        if not (math.isfinite(self.value) and math.isfinite(self.variance)):
            return NAN, NAN
        half = float(scipy_stats.norm.ppf(1 - alpha / 2)) * math.sqrt(self.variance)
        return self.value - half, self.value + half


def ratio_estimate(numerators: Sequence[float], denominators: Sequence[float]) -> Estimate:
    """One entry per unit: its outcome total (clicks, purchases, revenue...) and its pages."""
    y = np.asarray(numerators, dtype=float)
    n = np.asarray(denominators, dtype=float)
    if y.shape != n.shape or y.ndim != 1:
        # numpy would broadcast a length-1 side silently and give a wrong variance.
        raise ValueError(f"one numerator per denominator: got {y.shape} and {n.shape}")
    units, pages = int(y.size), float(n.sum())
    if units == 0 or pages <= 0:
        return Estimate(NAN, math.inf, units, pages)
    r = float(y.sum() / pages)
    if units < 2:
        return Estimate(r, math.inf, units, pages)
    # Delta method for a ratio of means: the unit, not the page, is the independent draw.
    mean_pages = pages / units
    residual = y - r * n
    variance = float((residual**2).sum() / (units * (units - 1) * mean_pages**2))
    return Estimate(r, variance, units, pages)


@dataclass(frozen=True)
class Look:
    pages: float  # pages of both arms at this look
    difference: float  # treatment.value - control.value
    p_value: float  # always-valid, up to this look (a running minimum: only falls)
    lower: float  # always-valid interval for the difference, intersected with the
    upper: float  # earlier looks' (only narrows)


@dataclass(frozen=True)
class SequentialResult:
    difference: float
    relative: float  # difference / control.value (nan if control.value == 0)
    p_value: float  # at the last look
    lower: float
    upper: float
    significant: bool  # p_value <= alpha at some look (then it stays so)
    alpha: float
    tau: float
    looks: list[Look]


def mixture_likelihood_ratio(difference: float, variance: float, tau: float) -> float:
    """mSPRT (Johari, Pekelis, Walsh 2017) with a normal mixture N(0, tau^2) over the true
    difference: Lambda = sqrt(V/(V+tau^2)) * exp(tau^2 d^2 / (2 V (V+tau^2))). 1.0 (no
    evidence) when V or d is not finite, V <= 0, or tau is not a positive number."""
    # A variance of exactly 0 is a degenerate plug-in (no spread seen yet), not certainty.
    if not _testable(difference, variance, tau):
        return 1.0
    t2 = tau * tau
    log_ratio = 0.5 * math.log(variance / (variance + t2)) + (
        t2 * difference * difference / (2 * variance * (variance + t2))
    )
    return math.exp(min(log_ratio, _MAX_LOG_RATIO))


def confidence_sequence(
    difference: float, variance: float, tau: float, alpha: float
) -> tuple[float, float]:
    """All theta with Lambda_theta < 1/alpha, i.e. d ± sqrt(V (V+tau^2)/tau^2 *
    (2 log(1/alpha) + log((V+tau^2)/V))); (-inf, inf) where the ratio is taken as 1."""
    if not _testable(difference, variance, tau):
        return -math.inf, math.inf
    t2 = tau * tau
    half = math.sqrt(
        variance * (variance + t2) / t2
        * (2 * math.log(1 / alpha) + math.log((variance + t2) / variance))
    )  # fmt: skip
    return difference - half, difference + half


def _testable(difference: float, variance: float, tau: float) -> bool:
    return (
        math.isfinite(difference)
        and math.isfinite(variance)
        and variance > 0
        and math.isfinite(tau)
        and tau > 0
    )


def sequential_test(
    looks: Sequence[tuple[Estimate, Estimate]],
    alpha: float = 0.05,
    tau: float | None = None,
    minimum_effect: float = 0.1,
    min_units: int = MIN_UNITS,
) -> SequentialResult:
    """``looks``: (control, treatment) estimates at successive looks over cumulative data,
    oldest first; the last is now. ``tau`` (the mixture's scale, in the metric's units)
    defaults to ``minimum_effect`` times the pooled value of both arms at the last look. A
    look before each arm has ``min_units`` units tests nothing."""
    control, treatment = looks[-1] if looks else (ratio_estimate([], []),) * 2
    if tau is None:
        pages = control.pages + treatment.pages
        pooled = (_total(control) + _total(treatment)) / pages if pages > 0 else NAN
        # One scale for every look of the run, so the running minimum is over one fixed
        # test, not the best of several. It is read from the data, which makes the test
        # mildly adaptive; but it is the pooled level over all pages of both arms, which
        # says next to nothing about their difference, and the A/A simulations in the tests
        # measure the false-positive rate it keeps. A metric still at 0 (no click yet) gets
        # a tiny positive scale rather than 0: the formulas divide by tau^2, and the test
        # then simply cannot reject, which is right when neither arm has any outcome.
        tau = abs(minimum_effect * pooled) if math.isfinite(pooled) and pooled else 1e-9
    p, lower, upper = 1.0, -math.inf, math.inf
    out: list[Look] = []
    for c, t in looks:
        d = t.value - c.value
        v = c.variance + t.variance  # independent arms
        if min(c.units, t.units) >= min_units:
            p = min(p, 1.0 / max(mixture_likelihood_ratio(d, v, tau), 1.0))
            lo, hi = confidence_sequence(d, v, tau, alpha)
            lower, upper = max(lower, lo), min(upper, hi)
        out.append(Look(c.pages + t.pages, d, p, lower, upper))
    d = treatment.value - control.value
    relative = d / control.value if control.value else NAN
    return SequentialResult(
        difference=d,
        relative=relative,
        p_value=p,
        lower=lower,
        upper=upper,
        significant=p <= alpha,
        alpha=alpha,
        tau=tau,
        looks=out,
    )


def _total(e: Estimate) -> float:
    return e.value * e.pages if math.isfinite(e.value) else 0.0


@dataclass(frozen=True)
class SampleRatio:
    observed: dict[str, int]
    expected_share: dict[str, float]
    chi2: float
    p_value: float
    mismatch: bool  # p_value < threshold


def sample_ratio_check(
    observed: Mapping[str, int], weights: Mapping[str, float], threshold: float = SRM_THRESHOLD
) -> SampleRatio:
    """Pearson chi-square of observed unit counts against the configured split (weights need
    not sum to 1). Only arms with a positive weight count. Fewer than 2 arms or no units:
    p_value 1.0, no mismatch."""
    arms = [a for a in weights if weights[a] > 0]
    total_weight = sum(weights[a] for a in arms)
    shares = {a: weights[a] / total_weight for a in arms} if total_weight else {}
    counts = {a: int(observed.get(a, 0)) for a in arms}
    n = sum(counts.values())
    if len(arms) < 2 or n == 0:
        return SampleRatio(counts, shares, 0.0, 1.0, False)
    expected = [n * shares[a] for a in arms]
    chi2 = sum((counts[a] - e) ** 2 / e for a, e in zip(arms, expected, strict=True))
    p = float(scipy_stats.chi2.sf(chi2, len(arms) - 1))
    return SampleRatio(counts, shares, float(chi2), p, p < threshold)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile, q in [0, 100] (linear interpolation), nan for no values."""
    if len(values) == 0:
        return NAN
    return float(np.percentile(np.asarray(values, dtype=float), q))
