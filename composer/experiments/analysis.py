"""An experiment's report: outcomes attributed to pages, metrics per arm with intervals, the
sequential comparison of each arm with the control, the sample-ratio check, guardrails.

Attribution: an event that names its page (and slot) counts for that page; a cart or
purchase that names none counts for the shopper's last page of the experiment within the
attribution window; a click that names none counts for no page. Revenue is the catalog
price of what was bought. The unit of analysis is the assigned unit (a shopper or an
anonymous session): a shopper's pages are not independent, so every interval and test is
over units, by the delta method (:mod:`composer.experiments.stats`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from composer.experiments.guardrails import breaches, health
from composer.experiments.spec import HOLDOUT, Experiment, Metric
from composer.experiments.stats import (
    MIN_UNITS,
    Estimate,
    ratio_estimate,
    sample_ratio_check,
    sequential_test,
)
from retrieval.exposures import Exposure, ExposureStore, Outcome, Pause
from retrieval.profile import pseudonymise
from retrieval.records import EventKind
from retrieval.store import Store


def look_schedule(pages: int) -> list[int]:
    """The page counts the sequential test looks at: fixed from the experiment's start (every
    100 pages to 10,000, every 1,000 to 100,000, then every 10,000), so a look a reader saw
    on an earlier day is the same look, with the same data, in every later report."""
    counts, step, n = [], 100, 100
    while n <= pages:
        counts.append(n)
        if n >= 100 * step:
            step *= 10
        n += step
    return counts


SLOTS_SHOWN = 12


@dataclass
class _Pages:
    """The analysed pages of one experiment as arrays, with their attributed outcomes."""

    ts: np.ndarray  # page time
    unit: np.ndarray  # index into units
    arm: np.ndarray  # index into arms
    units: list[str]
    arms: list[str]
    slots: list[tuple[str, ...]]
    # Attributed outcomes: (page index, time, kind, value, slot or -1).
    out_page: np.ndarray
    out_ts: np.ndarray
    out_kind: np.ndarray  # 0 click, 1 cart, 2 purchase
    out_value: np.ndarray
    out_slot: np.ndarray


@dataclass(frozen=True)
class Attribution:
    with_page: int  # events that named a page of this experiment
    by_last_page: int  # carts and purchases given to the shopper's last page
    # Carts and purchases of its shoppers whose last page was not one of its pages (or too
    # long before), and clicks that named no page.
    unattributed: int


_KIND_INDEX = {EventKind.CLICK: 0, EventKind.CART: 1, EventKind.PURCHASE: 2}


def _arms(experiment: Experiment) -> list[str]:
    arms = [v.name for v in experiment.variants]
    return [*arms, HOLDOUT] if experiment.holdout > 0 else arms


def attribute(
    experiment: Experiment,
    exposures: Sequence[Exposure],
    outcomes: Sequence[Outcome],
    prices: Mapping[str, float],
    unit_of_shopper: Callable[[str], str],
    window_s: float,
    unit_pages: Mapping[str, Sequence[tuple[float, str]]] | None = None,
) -> tuple[_Pages, Attribution]:
    """``unit_pages``: each unit's pages in any experiment or none (time, page id), oldest
    first: a purchase goes to the shopper's last page, which may be outside this experiment
    (then it counts for none of its arms). Without it, the last page of this experiment."""
    arms = _arms(experiment)
    arm_index = {a: n for n, a in enumerate(arms)}
    pages = [
        e for e in exposures
        if e.experiment == experiment.name and e.analysed and e.variant in arm_index
    ]  # fmt: skip
    pages.sort(key=lambda e: (e.ts, e.page_id))
    units: dict[str, int] = {}
    for e in pages:
        units.setdefault(e.unit, len(units))
    page_index = {e.page_id: n for n, e in enumerate(pages)}
    # Each unit's pages in time order, for "the last page before the purchase".
    by_unit: dict[str, tuple[list[float], list[str]]] = {}
    if unit_pages is not None:
        for unit in units:
            seen = unit_pages.get(unit, ())
            by_unit[unit] = ([ts for ts, _ in seen], [pid for _, pid in seen])
    else:
        for e in pages:
            times, ids = by_unit.setdefault(e.unit, ([], []))
            times.append(e.ts)
            ids.append(e.page_id)

    rows: list[tuple[int, float, int, float, int]] = []
    with_page = by_last = unattributed = 0
    for o in outcomes:
        kind = _KIND_INDEX.get(o.kind)
        if kind is None:
            continue
        value = prices.get(o.product_id, 0.0) if o.kind is EventKind.PURCHASE else 0.0
        if o.page_id is not None:
            found = page_index.get(o.page_id)
            if found is None:
                continue  # another experiment's page, or none's
            n = found
            shown = pages[n]
            # A page id is the caller's word: the event must be its shopper's, after it and
            # within the window (a session's page has no shopper to check).
            foreign = not shown.unit.startswith("session:") and (
                unit_of_shopper(o.shopper_id) != shown.unit
            )
            if foreign or not shown.ts <= o.ts <= shown.ts + window_s:
                unattributed += 1
                continue
            slot = o.slot if o.slot is not None else -1
            products = shown.products
            if slot >= len(products) or (slot >= 0 and products[slot] != o.product_id):
                slot = -1  # a slot that does not hold this product on that page
            rows.append((n, o.ts, kind, value, slot))
            with_page += 1
            continue
        unit = unit_of_shopper(o.shopper_id)
        if unit not in by_unit:
            continue  # not a shopper of this experiment
        if o.kind is EventKind.CLICK:
            unattributed += 1
            continue
        times, ids = by_unit[unit]
        at = bisect.bisect_right(times, o.ts) - 1
        last = page_index.get(ids[at]) if at >= 0 and o.ts - times[at] <= window_s else None
        if last is None:
            unattributed += 1
            continue
        rows.append((last, o.ts, kind, value, -1))
        by_last += 1

    table = np.array(rows, dtype=float).reshape(-1, 5)
    data = _Pages(
        ts=np.array([e.ts for e in pages], dtype=float),
        unit=np.array([units[e.unit] for e in pages], dtype=np.int64),
        arm=np.array([arm_index[e.variant or ""] for e in pages], dtype=np.int64),
        units=list(units),
        arms=arms,
        slots=[e.products for e in pages],
        out_page=table[:, 0].astype(np.int64),
        out_ts=table[:, 1],
        out_kind=table[:, 2].astype(np.int64),
        out_value=table[:, 3],
        out_slot=table[:, 4].astype(np.int64),
    )
    return data, Attribution(with_page, by_last, unattributed)


def _per_page(data: _Pages, metric: Metric, until: float) -> np.ndarray:
    """Each page's value of ``metric`` counting outcomes up to ``until``."""
    n = len(data.ts)
    keep = data.out_ts <= until
    pages, kinds, values = data.out_page[keep], data.out_kind[keep], data.out_value[keep]
    if metric is Metric.CLICK_THROUGH:  # a page with at least one click
        return (np.bincount(pages[kinds == 0], minlength=n) > 0).astype(float)
    if metric is Metric.ADD_TO_CART:
        return np.bincount(pages[kinds == 1], minlength=n).astype(float)
    if metric is Metric.PURCHASE:
        return np.bincount(pages[kinds == 2], minlength=n).astype(float)
    return np.bincount(pages[kinds == 2], weights=values[kinds == 2], minlength=n)


def _estimate(data: _Pages, values: np.ndarray, arm: int, until: float) -> Estimate:
    mask = (data.arm == arm) & (data.ts <= until)
    units = data.unit[mask]
    if units.size == 0:
        return ratio_estimate([], [])
    # Per unit: outcome total and pages (units of other arms drop out: zero pages).
    size = len(data.units)
    num = np.bincount(units, weights=values[mask], minlength=size)
    den = np.bincount(units, minlength=size).astype(float)
    has = den > 0
    return ratio_estimate(num[has].tolist(), den[has].tolist())


def _slots(data: _Pages, arm: int) -> list[dict[str, Any]]:
    """Click-through by slot position: pages that had the slot, clicks that named it."""
    shown = np.zeros(SLOTS_SHOWN, dtype=np.int64)
    for n in np.flatnonzero(data.arm == arm):
        shown[: min(len(data.slots[n]), SLOTS_SHOWN)] += 1
    named = (data.out_kind == 0) & (data.out_slot >= 0) & (data.out_slot < SLOTS_SHOWN)
    mine = named & (data.arm[data.out_page] == arm) if data.out_page.size else named
    clicks = np.bincount(data.out_slot[mine], minlength=SLOTS_SHOWN)
    return [
        {"slot": k, "pages": int(shown[k]), "clicks": int(clicks[k]),
         "ctr": float(clicks[k] / shown[k])}
        for k in range(SLOTS_SHOWN)
        if shown[k]
    ]  # fmt: skip


def _tau(looks: list[tuple[Estimate, Estimate]], minimum_effect: float) -> float | None:
    """``minimum_effect`` times the pooled value at the first look where both arms have
    MIN_UNITS units and the metric is not 0 (None before: nothing is tested yet)."""
    for control, treatment in looks:
        pages = control.pages + treatment.pages
        if min(control.units, treatment.units) < MIN_UNITS or pages <= 0:
            continue
        total = sum(e.value * e.pages for e in (control, treatment) if np.isfinite(e.value))
        if total > 0:
            return minimum_effect * total / pages
    return None


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def report(
    experiment: Experiment,
    exposures: Sequence[Exposure],
    outcomes: Sequence[Outcome],
    prices: Mapping[str, float],
    unit_of_shopper: Callable[[str], str],
    window_s: float,
    pauses: Sequence[Pause] = (),
    now: datetime | None = None,
    unit_pages: Mapping[str, Sequence[tuple[float, str]]] | None = None,
) -> dict[str, Any]:
    """The report as plain data (the CLI prints it, writes it as JSON or HTML).

    Once an arm is paused its new shoppers see the control's page, so from then on the arms
    no longer get the split they were given: every arm is analysed up to the first pause."""
    now = now or datetime.now(UTC)
    mine = [p for p in pauses if p.experiment == experiment.name]
    cutoff = min((p.ts for p in mine), default=None)
    if cutoff is not None:
        exposures = [e for e in exposures if e.ts <= cutoff]
    data, attribution = attribute(
        experiment, exposures, outcomes, prices, unit_of_shopper, window_s, unit_pages
    )
    until = float(data.ts.max()) if data.ts.size else 0.0
    until = max(until, float(data.out_ts.max()) if data.out_ts.size else 0.0)
    per_page = {m: _per_page(data, m, until) for m in Metric}
    weights = {v.name: v.weight * (1 - experiment.holdout) for v in experiment.variants}
    if experiment.holdout > 0:
        weights[HOLDOUT] = experiment.holdout * sum(v.weight for v in experiment.variants)
    total = sum(weights.values())
    paused = {p.variant: p for p in pauses if p.experiment == experiment.name}
    found_health = health(experiment, exposures)

    arms_out = []
    units_per_arm: dict[str, int] = {}
    for a, name in enumerate(data.arms):
        mask = data.arm == a
        units_per_arm[name] = int(np.unique(data.unit[mask]).size)
        metrics = {}
        for m in Metric:
            est = _estimate(data, per_page[m], a, until)
            lo, hi = est.interval(experiment.alpha)
            metrics[m.value] = {"value": _finite(est.value), "lower": _finite(lo),
                                "upper": _finite(hi)}  # fmt: skip
        h = found_health.get(name)
        pause = paused.get(name)
        arms_out.append(
            {
                "name": name,
                "expected_share": weights[name] / total,
                "units": units_per_arm[name],
                "pages": int(mask.sum()),
                "metrics": metrics,
                "slots": _slots(data, a),
                "health": None if h is None else {
                    "pages": h.pages,
                    "composed": h.composed,
                    "fallback_rate": _finite(h.fallback_rate),
                    "p95_latency_ms": _finite(h.p95_latency_ms),
                    "grounding_errors_per_page": h.grounding_errors_per_page,
                },
                "paused": None if pause is None else {
                    "reason": pause.reason,
                    "since": datetime.fromtimestamp(pause.ts, UTC).isoformat(),
                },
            }
        )  # fmt: skip

    comparisons = [
        _compare(experiment, data, per_page[experiment.primary_metric], a, until)
        for a in range(1, len(data.arms))
    ]
    srm = sample_ratio_check(units_per_arm, weights)
    status = (
        "running" if experiment.live(now)
        else "not started" if experiment.start is not None and now < experiment.start
        else "stopped"
    )  # fmt: skip
    return {
        "experiment": experiment.name,
        "generated_at": now.isoformat(timespec="seconds"),
        "status": status,
        "primary_metric": experiment.primary_metric.value,
        "alpha": experiment.alpha,
        "minimum_effect": experiment.minimum_effect,
        "control": experiment.control.name,
        "units": len(data.units),
        "pages": int(data.ts.size),
        "analysed_until": (
            None if cutoff is None else datetime.fromtimestamp(cutoff, UTC).isoformat()
        ),
        "arms": arms_out,
        "comparisons": comparisons,
        "srm": {
            "observed_units": srm.observed,
            "expected_share": srm.expected_share,
            "chi2": srm.chi2,
            "p_value": srm.p_value,
            "mismatch": srm.mismatch,
        },
        "guardrails": {
            "limits": experiment.guardrails.model_dump(),
            "breaches": [
                {"variant": b.variant, "guardrail": b.guardrail, "value": b.value, "limit": b.limit}
                for b in breaches(experiment, found_health)
            ],
            "paused": sorted(paused),
        },
        "attribution": {
            "window_s": window_s,
            "events_naming_a_page": attribution.with_page,
            "given_to_last_page": attribution.by_last_page,
            "unattributed": attribution.unattributed,
        },
    }


def report_from_store(
    experiment: Experiment,
    store: Store,
    pseudonym_salt: str,
    window_s: float,
    pages: Sequence[Exposure] | None = None,
) -> dict[str, Any]:
    """:func:`report` over what ``store`` holds (``pages``: the experiment's exposures, if
    the caller read them already)."""
    exposures = ExposureStore(store.engine)
    if pages is None:
        pages = exposures.for_experiment(experiment.name)
    since = min((e.ts for e in pages), default=0.0)
    return report(
        experiment,
        pages,
        exposures.outcomes(since),
        {p.product_id: p.price for p in store.products()},
        lambda shopper: pseudonymise(shopper, pseudonym_salt),
        window_s,
        exposures.pauses(),
        unit_pages=exposures.pages_of({e.unit for e in pages}, since),
    )


def _compare(
    experiment: Experiment, data: _Pages, values: np.ndarray, arm: int, until: float
) -> dict[str, Any]:
    """Arm ``arm`` against the control (arm 0) on the primary metric, sequentially, at the
    looks of :func:`look_schedule` and now. The mixture's scale is fixed once, at the first
    look where both arms have enough units, so earlier looks never change: the p-value a
    reader saw only falls, the interval only narrows."""
    times = [float(data.ts[n - 1]) for n in look_schedule(int(data.ts.size))]
    if not times or times[-1] < until:
        times.append(until)
    looks = []
    for t in times:
        # Outcomes up to each look, too: what was known then.
        at = _per_page(data, experiment.primary_metric, t)
        looks.append((_estimate(data, at, 0, t), _estimate(data, at, arm, t)))
    result = sequential_test(looks, experiment.alpha, tau=_tau(looks, experiment.minimum_effect))
    name, control = data.arms[arm], data.arms[0]
    # The sign of the interval that excluded 0, not of the latest point estimate.
    better = result.lower > 0 if result.lower > 0 or result.upper < 0 else result.difference > 0
    if not result.significant:
        decision = f"no difference shown yet between {name} and {control}"
    elif better:
        decision = f"{name} is better than {control}"
    else:
        decision = f"{name} is worse than {control}"
    return {
        "variant": name,
        "against": control,
        "metric": experiment.primary_metric.value,
        "difference": _finite(result.difference),
        "relative": _finite(result.relative),
        "lower": _finite(result.lower),
        "upper": _finite(result.upper),
        "p_value": _finite(result.p_value),
        "significant": result.significant,
        "decision": decision,
        "pages_at_decision": next(
            (int(look.pages) for look in result.looks if look.p_value <= experiment.alpha), None
        ),
        "looks": [
            {
                "pages": int(look.pages),
                "difference": _finite(look.difference),
                "p_value": _finite(look.p_value),
                "lower": _finite(look.lower),
                "upper": _finite(look.upper),
            }
            for look in result.looks
        ],
    }
