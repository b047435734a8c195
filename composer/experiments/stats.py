"""The statistics of an experiment report: ratio metrics over shoppers (delta method), an
always-valid sequential test (mSPRT with a normal mixture) whose p-value and interval stay
valid however often someone looks, and the sample-ratio-mismatch check."""

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


@dataclass(frozen=True)
class Estimate:
    """A ratio metric over analysis units (shoppers): sum of outcomes / sum of pages, with the
    variance of that ratio by the delta method (pages of one shopper are correlated)."""

    value: float
    variance: float
    units: int
    pages: float

    def interval(self, alpha: float = 0.05) -> tuple[float, float]:
        """The fixed-horizon normal interval (valid for one look only)."""
        if not (math.isfinite(self.value) and math.isfinite(self.variance)):
            return NAN, NAN
        half = float(scipy_stats.norm.ppf(1 - alpha / 2)) * math.sqrt(self.variance)
        return self.value - half, self.value + half


def ratio_estimate(numerators: Sequence[float], denominators: Sequence[float]) -> Estimate:
    """One entry per unit: its outcome total (clicks, purchases, revenue...) and its pages."""
    y = np.asarray(numerators, dtype=float)
    n = np.asarray(denominators, dtype=float)
    units, pages = int(y.size), float(n.sum())
    if units == 0 or pages <= 0:
        return Estimate(NAN, math.inf, units, pages)
    r = float(y.sum() / pages)
    if units < 2:
        return Estimate(r, math.inf, units, pages)
    mean_pages = pages / units
    residual = y - r * n
    variance = float((residual**2).sum() / (units * (units - 1) * mean_pages**2))
    return Estimate(r, variance, units, pages)


@dataclass(frozen=True)
class Look:
    pages: float  # pages of both arms at this look
    difference: float  # treatment - control
    p_value: float  # always-valid, up to this look (only falls)
    lower: float  # always-valid interval for the difference, intersected with the
    upper: float  # earlier looks' (only narrows)


@dataclass(frozen=True)
class SequentialResult:
    difference: float
    relative: float
    p_value: float
    lower: float
    upper: float
    significant: bool  # p_value <= alpha at some look (then it stays so)
    alpha: float
    tau: float
    looks: list[Look]


def mixture_likelihood_ratio(difference: float, variance: float, tau: float) -> float:
    """mSPRT (Johari, Pekelis, Walsh 2017) with a N(0, tau^2) mixture over the difference."""
    if not (math.isfinite(variance) and math.isfinite(difference)) or variance <= 0:
        return 1.0
    t2 = tau * tau
    log_ratio = 0.5 * math.log(variance / (variance + t2)) + (
        t2 * difference * difference / (2 * variance * (variance + t2))
    )
    return math.exp(min(log_ratio, 700.0))  # past e^700 the p-value is 0 anyway


def confidence_sequence(
    difference: float, variance: float, tau: float, alpha: float
) -> tuple[float, float]:
    """Every difference the mixture test would not reject at ``alpha``."""
    if not (math.isfinite(variance) and math.isfinite(difference)) or variance <= 0:
        return -math.inf, math.inf
    t2 = tau * tau
    half = math.sqrt(
        variance * (variance + t2) / t2
        * (2 * math.log(1 / alpha) + math.log((variance + t2) / variance))
    )  # fmt: skip
    return difference - half, difference + half


def sequential_test(
    looks: Sequence[tuple[Estimate, Estimate]],
    alpha: float = 0.05,
    tau: float | None = None,
    minimum_effect: float = 0.1,
    min_units: int = MIN_UNITS,
) -> SequentialResult:
    """``looks``: (control, treatment) at successive looks over cumulative data, oldest
    first; the last is now. ``tau`` (the mixture's scale, in the metric's units) defaults to
    ``minimum_effect`` times the pooled value of both arms at the last look. A look before
    each arm has ``min_units`` units tests nothing."""
    control, treatment = looks[-1] if looks else (ratio_estimate([], []),) * 2
    if tau is None:
        pages = control.pages + treatment.pages
        pooled = (_total(control) + _total(treatment)) / pages if pages > 0 else NAN
        # One scale for every look of the run, so the running minimum is over one test. It is
        # read from the data, which makes the test slightly adaptive; the A/A simulations and
        # the tests measure the false-positive rate it keeps. A metric still at 0 (no click
        # yet) gets a tiny scale: the test then simply cannot reject.
        tau = abs(minimum_effect * pooled) if math.isfinite(pooled) and pooled else 1e-9
    p, lower, upper = 1.0, -math.inf, math.inf
    out: list[Look] = []
    for c, t in looks:
        d = t.value - c.value
        v = c.variance + t.variance
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
    mismatch: bool


def sample_ratio_check(
    observed: Mapping[str, int], weights: Mapping[str, float], threshold: float = SRM_THRESHOLD
) -> SampleRatio:
    """Pearson chi-square of units per arm against the configured split."""
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
    """The ``q``-th percentile (linear), nan for no values."""
    if len(values) == 0:
        return NAN
    return float(np.percentile(np.asarray(values, dtype=float), q))
