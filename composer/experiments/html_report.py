"""The experiment report as one self-contained HTML page (no script, no network): decision
banners, tables and inline SVG charts. Coordinates are computed here as plain numbers; all
markup lives in ``templates/experiment/``."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from composer.experiments.spec import HOLDOUT
from composer.experiments.stats import MIN_UNITS, SRM_THRESHOLD
from composer.resources import resource_dir

WIDTH = 480  # plot area of a chart, in SVG units (the template adds the margins)
HEIGHT = 170
SLOT_HEIGHT = 150
DOT = 9  # diameter of a dot in the A/A strip, which is also its bin width
METRICS = ("click_through", "add_to_cart", "purchase", "revenue_per_page")
RATES = {"click_through", "add_to_cart", "purchase"}
LABELS = {
    "click_through": "click-through",
    "add_to_cart": "add to cart",
    "purchase": "purchase",
    "revenue_per_page": "revenue / page",
}
GUARDRAILS = ("fallback_rate", "p95_latency_ms", "grounding_errors_per_page")


def _linear(lo: float, hi: float, size: float, flip: bool = False) -> Callable[[float], float]:
    """Maps [lo, hi] onto [0, size] (flipped for a y axis, where SVG grows downwards)."""
    span = (hi - lo) or 1.0

    def at(v: float) -> float:
        x = (v - lo) / span * size
        return round(size - x if flip else x, 1)

    return at


def nice_ticks(lo: float, hi: float, count: int = 5, cover: bool = False) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) within [lo, hi], or
    with ``cover`` one more past ``hi`` when ``hi`` is not a tick itself (an axis's top)."""
    span = hi - lo
    if not (math.isfinite(span) and span > 0):
        return [lo] if math.isfinite(lo) else []
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * 0.999)
    first = math.ceil(lo / step - 1e-9)
    ticks = []
    k = first
    while k * step <= hi + step * 1e-9:
        ticks.append(round(k * step, 12) + 0.0)  # + 0.0 turns -0.0 into 0.0
        k += 1
    if cover and ticks[-1] < hi - step * 1e-9:
        ticks.append(round(k * step, 12) + 0.0)
    return ticks


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def _x_axis(max_pages: int) -> tuple[Callable[[float], float], list[dict[str, float]]]:
    x = _linear(0, max_pages or 1, WIDTH)
    return x, [{"x": x(t), "value": t} for t in nice_ticks(0, max_pages or 1)]


def p_value_chart(
    looks: Sequence[dict[str, Any]], alpha: float, decided_at: int | None
) -> dict[str, Any]:
    """The always-valid p-value over pages on a log axis (1 at the top), with the alpha line."""
    pages = [look["pages"] for look in looks]
    if not pages:
        return {"empty": True}
    # A log axis: the interesting part is around alpha, which a linear 0..1 axis squashes.
    floor = min(1e-4, alpha / 10)
    decades = math.ceil(-math.log10(floor))
    y = _linear(-decades, 0, HEIGHT, flip=True)

    def at(p: float) -> float:
        return y(math.log10(max(p, 10.0**-decades)))

    x, x_ticks = _x_axis(max(pages))
    points = [
        {"x": x(look["pages"]), "y": at(look["p_value"]), "pages": look["pages"],
         "p": look["p_value"]}
        for look in looks
        if _finite(look["p_value"])
    ]  # fmt: skip
    decision = None
    if decided_at is not None:
        hit = next((pt for pt in points if pt["pages"] >= decided_at), None)
        decision = {"x": x(decided_at), "y": hit["y"] if hit else at(alpha)}
    return {
        "empty": False,
        "width": WIDTH,
        "height": HEIGHT,
        "line": " ".join(f"{pt['x']},{pt['y']}" for pt in points),
        "points": points,
        "last": points[-1] if points else None,
        "alpha_y": at(alpha),
        "x_ticks": x_ticks,
        "y_ticks": [{"y": at(10.0**-k), "value": 10.0**-k} for k in range(decades + 1)],
        "decision": decision,
    }


def difference_chart(looks: Sequence[dict[str, Any]], decided_at: int | None) -> dict[str, Any]:
    """The difference over pages with its confidence sequence as a band, and the zero line."""
    shown = [look for look in looks if _finite(look["difference"])]
    if not shown:
        return {"empty": True}
    # Before each arm has enough units the bounds are infinite (None): no band there.
    bounded = [look for look in shown if _finite(look["lower"]) and _finite(look["upper"])]
    core = [look["difference"] for look in shown] + [0.0]
    if bounded:
        core += [bounded[-1]["lower"], bounded[-1]["upper"]]
    everything = core + [v for look in bounded for v in (look["lower"], look["upper"])]
    # The first finite bounds can be very wide; past three spans of what matters they would
    # flatten the final interval to a line, so the band is cut at the plot's edge there.
    core_span = (max(core) - min(core)) or abs(max(core, key=abs)) or 0.01
    lo = max(min(everything), min(core) - core_span)
    hi = min(max(everything), max(core) + core_span)
    pad = (hi - lo) * 0.06
    lo, hi = lo - pad, hi + pad
    y = _linear(lo, hi, HEIGHT, flip=True)

    def clip(v: float) -> float:
        return y(min(max(v, lo), hi))

    x, x_ticks = _x_axis(max(look["pages"] for look in looks))
    upper = [f"{x(look['pages'])},{clip(look['upper'])}" for look in bounded]
    lower = [f"{x(look['pages'])},{clip(look['lower'])}" for look in reversed(bounded)]
    decision = None
    if decided_at is not None:
        hit = next((look for look in shown if look["pages"] >= decided_at), shown[-1])
        decision = {"x": x(decided_at), "y": clip(hit["difference"])}
    last = shown[-1]
    return {
        "empty": False,
        "width": WIDTH,
        "height": HEIGHT,
        "band": " ".join(upper + lower),
        "line": " ".join(f"{x(look['pages'])},{clip(look['difference'])}" for look in shown),
        "last": {"x": x(last["pages"]), "y": clip(last["difference"])},
        "zero_y": clip(0.0),
        "x_ticks": x_ticks,
        "y_ticks": [{"y": y(t), "value": t} for t in nice_ticks(lo, hi, 4)],
        "decision": decision,
    }


def slot_chart(arms: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Click-through by slot position: a group per slot, one bar per arm."""
    slots = sorted({s["slot"] for a in arms for s in a["slots"]})
    top = max((s["ctr"] for a in arms for s in a["slots"]), default=0.0)
    ticks = nice_ticks(0, top or 0.01, 4, cover=True)
    top = ticks[-1]
    group = WIDTH / max(len(slots), 1)
    bar = group * 0.8 / max(len(arms), 1)
    y = _linear(0, top, SLOT_HEIGHT, flip=True)
    bars = []
    for n, arm in enumerate(arms):
        by_slot = {s["slot"]: s for s in arm["slots"]}
        for k, slot in enumerate(slots):
            found = by_slot.get(slot)
            if found is None:
                continue
            top_y = y(found["ctr"])
            bars.append(
                {
                    "x": round(k * group + group * 0.1 + n * bar, 1),
                    "y": top_y,
                    "w": round(max(bar - 1, 1), 1),
                    "h": round(SLOT_HEIGHT - top_y, 1),
                    "color": n,
                    "arm": arm["name"],
                    **found,
                }
            )
    return {
        "width": WIDTH,
        "height": SLOT_HEIGHT,
        "bars": bars,
        "labels": [{"x": round(k * group + group / 2, 1), "slot": s} for k, s in enumerate(slots)],
        "y_ticks": [{"y": y(t), "value": t} for t in ticks],
    }


def aa_chart(p_values: Sequence[float | None], alpha: float) -> dict[str, Any]:
    """A/A p-values on a 0..1 axis as a stacked dot plot (p-values of 1 pile up: drawn side
    by side they would hide each other)."""
    x = _linear(0, 1, WIDTH)
    bins: dict[int, int] = {}
    dots = []
    for p in p_values:
        if p is None or not math.isfinite(p):
            continue
        column = min(int(x(p) // DOT), int(WIDTH // DOT) - 1)
        row = bins.get(column, 0)
        bins[column] = row + 1
        dots.append({"x": column * DOT + DOT / 2, "row": row, "p": p, "hit": p <= alpha})
    rows = max(bins.values(), default=1)
    # Tall piles are squeezed so that the chart stays a strip.
    step = min(DOT, 90 / rows)
    height = round(rows * step + 4, 1)
    for d in dots:
        d["y"] = round(height - d.pop("row") * step - step / 2, 1)
    return {
        "width": WIDTH,
        "height": height,
        "r": round(min(DOT, step) / 2 - 0.5, 1),
        "dots": dots,
        "alpha_x": x(alpha),
        "x_ticks": [{"x": x(t), "value": t} for t in (0, 0.25, 0.5, 0.75, 1)],
    }


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): how surprising k false positives in n runs are."""
    return min(1.0, sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1)))


def verdict(comparison: dict[str, Any]) -> str:
    """better, worse or undecided: the colour of a decision (every metric: higher is better)."""
    d = comparison["difference"]
    if not comparison["significant"] or d is None or d == 0:
        return "undecided"
    return "better" if d > 0 else "worse"


def guardrail_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per arm, each guardrail's value against its limit, and whether it is breached."""
    limits = report["guardrails"]["limits"]
    breached = {(b["variant"], b["guardrail"]) for b in report["guardrails"]["breaches"]}
    rows = []
    for arm in report["arms"]:
        health = arm["health"]
        rows.append(
            {
                "name": arm["name"],
                "health": health,
                "judged": health is not None and health["pages"] >= limits["min_pages"],
                "paused": arm["name"] in report["guardrails"]["paused"],
                "cells": [
                    {
                        "guardrail": g,
                        "value": None if health is None else health[g],
                        "breach": (arm["name"], g) in breached,
                    }
                    for g in GUARDRAILS
                ],
            }
        )
    return rows


def fmt(value: float | None, metric: str = "") -> str:
    """A metric's value as a reader wants it: rates in %, money with cents."""
    if value is None or not math.isfinite(value):
        return "–"
    if metric in RATES:
        # Three significant digits for the usual rates: 31.2 %, 2.58 %.
        return f"{value * 100:.{1 if abs(value) >= 0.1 else 2}f} %"
    if metric == "revenue_per_page":
        return f"{value:,.2f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def fmt_difference(value: float | None, metric: str = "") -> str:
    """A difference with its sign: rates in percentage points, money with cents; metric
    ``relative`` for a fraction of the control's value, in %."""
    if value is None or not math.isfinite(value):
        return "–"
    if metric == "relative":
        return f"{value * 100:+.1f} %"
    if metric in RATES:
        return f"{value * 100:+.2f} pp"
    if metric == "revenue_per_page":
        return f"{value:+,.2f}"
    return f"{value:+.3g}"


def fmt_tick(value: float, metric: str = "") -> str:
    """An axis label of a difference: as short as the tick's own digits allow."""
    if value == 0:
        return "0"
    if metric in RATES:
        return f"{round(value * 100, 6):+g} pp"
    return f"{round(value, 9):+g}"


def fmt_p(value: float | None) -> str:
    """A p-value: tiny ones as a bound, the rest with three significant digits."""
    if value is None or not math.isfinite(value):
        return "–"
    return "< 0.0001" if value < 1e-4 else f"{value:.3g}"


def fmt_p_is(value: float | None) -> str:
    """A p-value after "p": ``= 0.021``, or ``< 0.0001`` for a tiny one."""
    text = fmt_p(value)
    return text if text.startswith("<") else f"= {text}"


def fmt_percent(value: float | None, digits: int = 1) -> str:
    """A share (0..1) in %."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value * 100:.{digits}f} %"


def render_html(report: dict[str, Any], simulation: dict[str, Any] | None = None) -> str:
    """The page of ``report`` (``composer experiment report``), with the simulation's A/A and
    A/B results on top when given (``composer experiment simulate``: report is its A/B run)."""
    env = Environment(
        loader=FileSystemLoader(str(resource_dir("templates") / "experiment")),
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        fmt=fmt, diff=fmt_difference, tick=fmt_tick, p=fmt_p, p_is=fmt_p_is, percent=fmt_percent
    )
    comparisons = [
        {
            **c,
            "verdict": verdict(c),
            "p_chart": p_value_chart(c["looks"], report["alpha"], c["pages_at_decision"]),
            "d_chart": difference_chart(c["looks"], c["pages_at_decision"]),
        }
        for c in report["comparisons"]
    ]
    aa = None
    if simulation is not None:
        a = simulation["aa"]
        aa = {
            **aa_chart(a["p_values"], a["alpha"]),
            "surprise": binomial_tail(a["false_positives"], a["runs"], a["alpha"]),
        }
    return env.get_template("report.html").render(
        r=report,
        comparisons=comparisons,
        slots=slot_chart(report["arms"]),
        guardrails=guardrail_rows(report),
        metrics=METRICS,
        labels=LABELS,
        holdout=HOLDOUT,
        srm_threshold=SRM_THRESHOLD,
        min_units=MIN_UNITS,
        sim=simulation,
        aa=aa,
    )
