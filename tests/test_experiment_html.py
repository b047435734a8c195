"""The experiment's HTML report: a valid, self-contained page (no script, nothing loaded from
the network) that shows every arm, decision and chart, escapes what it is given, and renders
a report with no data yet."""

from __future__ import annotations

import copy
import math
import re
from typing import Any

import html5lib

from composer.experiments.html_report import (
    difference_chart,
    nice_ticks,
    p_value_chart,
    render_html,
)

ARMS = ("control", "ranked_v2", "holdout")
LOOKS = 40


def assert_valid_html(html: str) -> None:
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    parser.parse(html)  # raises on any parse error


def assert_self_contained(html: str) -> None:
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert "<script" not in html.lower() and "@import" not in html and "url(" not in html
    # The only URL allowed is the SVG namespace, which names and loads nothing.
    rest = html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "http://" not in rest and "https://" not in rest


def _metric(value: float, half: float) -> dict[str, float]:
    return {"value": value, "lower": value - half, "upper": value + half}


def _looks(lift: float, decided_from: int | None) -> list[dict[str, Any]]:
    """A path like the sequential test's: no bounds before enough units, then an interval
    that only narrows and a p-value that only falls."""
    looks = []
    p = 1.0
    for k in range(1, LOOKS + 1):
        pages = 150 * k
        if k < 4:
            looks.append({"pages": pages, "difference": lift * 0.5 if k > 1 else None,
                          "p_value": 1.0, "lower": None, "upper": None})  # fmt: skip
            continue
        half = 0.25 / math.sqrt(k)
        if decided_from is not None and k >= decided_from:
            p = min(p, 0.04 * 0.8 ** (k - decided_from))
        else:
            p = min(p, 0.2 + 0.8 / k)
        diff = lift + 0.01 * math.sin(k)
        looks.append({"pages": pages, "difference": diff, "p_value": p,
                      "lower": diff - half, "upper": diff + half})  # fmt: skip
    return looks


def _comparison(variant: str, lift: float, decided_from: int | None) -> dict[str, Any]:
    looks = _looks(lift, decided_from)
    last = looks[-1]
    significant = decided_from is not None
    if not significant:
        decision = f"no difference shown yet between {variant} and control"
    elif lift > 0:
        decision = f"{variant} is better than control"
    else:
        decision = f"{variant} is worse than control"
    return {
        "variant": variant,
        "against": "control",
        "metric": "click_through",
        "difference": last["difference"],
        "relative": last["difference"] / 0.31,
        "lower": last["lower"],
        "upper": last["upper"],
        "p_value": last["p_value"],
        "significant": significant,
        "decision": decision,
        "pages_at_decision": looks[decided_from - 1]["pages"] if decided_from else None,
        "looks": looks,
    }


def _arm(name: str, share: float, units: int, ctr: float, health: bool) -> dict[str, Any]:
    pages = units * 3
    return {
        "name": name,
        "expected_share": share,
        "units": units,
        "pages": pages,
        "metrics": {
            "click_through": _metric(ctr, 0.02),
            "add_to_cart": _metric(ctr / 4, 0.01),
            "purchase": _metric(ctr / 12, 0.004),
            "revenue_per_page": _metric(ctr * 9.5, 0.4),
        },
        "slots": [
            {
                "slot": k,
                "pages": pages - 7 * k,
                "clicks": int(pages * ctr * 0.6**k),
                "ctr": int(pages * ctr * 0.6**k) / (pages - 7 * k),
            }
            for k in range(8)
        ],
        "health": {
            "pages": pages,
            "composed": pages - 40,
            "fallback_rate": 0.03,
            "p95_latency_ms": 2450.0,
            "grounding_errors_per_page": 0.01,
        }
        if health
        else None,
        "paused": None,
    }


def make_report() -> dict[str, Any]:
    arms = [
        _arm("control", 0.45, 900, 0.31, True),
        _arm("ranked_v2", 0.45, 910, 0.36, True),
        _arm("holdout", 0.10, 195, 0.29, False),
    ]
    units = sum(a["units"] for a in arms)
    return {
        "experiment": "ranking-2026-11",
        "generated_at": "2026-11-28T09:00:00+00:00",
        "status": "running",
        "primary_metric": "click_through",
        "alpha": 0.05,
        "minimum_effect": 0.1,
        "control": "control",
        "units": units,
        "pages": sum(a["pages"] for a in arms),
        "arms": arms,
        "comparisons": [
            _comparison("ranked_v2", 0.05, decided_from=22),
            _comparison("holdout", -0.02, decided_from=None),
        ],
        "srm": {
            "observed_units": {a["name"]: a["units"] for a in arms},
            "expected_share": {a["name"]: a["expected_share"] for a in arms},
            "chi2": 0.41,
            "p_value": 0.81,
            "mismatch": False,
        },
        "guardrails": {
            "limits": {
                "fallback_rate": 0.2,
                "p95_latency_ms": 10000.0,
                "grounding_errors_per_page": 0.05,
                "min_pages": 100,
            },
            "breaches": [],
            "paused": [],
        },
        "attribution": {
            "window_s": 86400.0,
            "events_naming_a_page": 2480,
            "given_to_last_page": 310,
            "unattributed": 12,
        },
    }


def make_simulation() -> dict[str, Any]:
    return {
        "shoppers": 610,
        "click_model": {"p_hit": 0.6, "p_miss": 0.03, "examine": 0.85, "p_cart": 0.3, "p_buy": 0.5},
        "aa": {
            "runs": 20,
            "pages_per_run": 400,
            "false_positives": 1,
            "false_positive_rate": 0.05,
            "alpha": 0.05,
            "p_values": [1.0] * 12 + [0.5, 0.31, 0.9, 0.72, 0.2, 0.11, 0.03, None],
        },
        "ab": {
            "control": "ranked",
            "treatment": "shuffled",
            "detected": True,
            "pages_needed": 1800,
            "pages": 2000,
            "decision": "shuffled is worse than ranked",
            "difference": -0.061,
            "relative": -0.19,
            "lower": -0.11,
            "upper": -0.012,
            "p_value": 0.021,
        },
        "seconds": 93.4,
    }


def test_report_page_is_valid_self_contained_and_complete() -> None:
    report = make_report()
    html = render_html(report)
    assert_valid_html(html)
    assert_self_contained(html)
    for arm in ARMS:
        assert arm in html
    for c in report["comparisons"]:
        assert c["decision"] in html
    assert 'class="banner better"' in html and 'class="banner undecided"' in html
    assert html.count("<svg") == 5  # p-value and difference for each comparison, the slots
    assert "<polygon" in html and 'class="decision"' in html  # band, decision point
    assert "31.0 %" in html and f"{0.31 * 9.5:.2f}" in html  # a rate in %, revenue with cents
    assert "Sample ratio mismatch" not in html and "Simulation" not in html


def test_simulation_section_sits_on_top() -> None:
    html = render_html(make_report(), simulation=make_simulation())
    assert_valid_html(html)
    assert_self_contained(html)
    assert html.index("Simulation") < html.index("<h2>Decision</h2>")
    assert "shuffled is worse than ranked" in html and "1,800" in html
    assert html.count('class="dot hit"') == 1  # the one A/A false positive
    assert html.count("<svg") == 6


def test_srm_paused_and_breaches_are_flagged() -> None:
    report = make_report()
    report["srm"].update(chi2=31.2, p_value=1.7e-7, mismatch=True)
    report["arms"][1]["paused"] = {"reason": "fallback_rate 0.31 is past its limit 0.2",
                                   "since": "2026-11-28T08:00:00+00:00"}  # fmt: skip
    report["arms"][1]["health"]["fallback_rate"] = 0.31
    report["guardrails"]["breaches"] = [
        {"variant": "ranked_v2", "guardrail": "fallback_rate", "value": 0.31, "limit": 0.2}
    ]
    report["guardrails"]["paused"] = ["ranked_v2"]
    report["comparisons"][1].update(significant=True, decision="holdout is worse than control")
    html = render_html(report)
    assert_valid_html(html)
    assert "Sample ratio mismatch" in html and "ranked_v2 is paused" in html
    assert 'class="banner worse"' in html and 'class="banner paused"' in html
    assert html.count('class="num breach"') == 1


def test_hostile_names_are_escaped() -> None:
    report = make_report()
    hostile = "<script>alert(1)</script>"
    report["experiment"] = hostile
    report["arms"][1]["name"] = '"><img src=x onerror=alert(1)>'
    report["comparisons"][0]["decision"] = f"{hostile} is better"
    html = render_html(report)
    assert_valid_html(html)
    assert hostile not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_report_without_data_renders() -> None:
    report = make_report()
    for arm in report["arms"]:
        arm.update(units=0, pages=0, slots=[], health=None)
        arm["metrics"] = {m: dict.fromkeys(("value", "lower", "upper")) for m in arm["metrics"]}
    report.update(units=0, pages=0, status="not started")
    for c in report["comparisons"]:
        decision = f"no difference shown yet between {c['variant']} and control"
        c.update(
            difference=None,
            relative=None,
            lower=None,
            upper=None,
            p_value=None,
            significant=False,
            pages_at_decision=None,
            looks=[],
            decision=decision,
        )
    report["srm"].update(observed_units=dict.fromkeys(ARMS, 0), chi2=0.0, p_value=1.0)
    report["attribution"].update(events_naming_a_page=0, given_to_last_page=0)
    html = render_html(report)
    assert_valid_html(html)
    assert_self_contained(html)
    assert "No pages yet." in html and "No click named a slot yet." in html
    assert "<svg" not in html
    # Looks with nothing in them yet (every value None) draw no chart either.
    late = copy.deepcopy(report)
    late["comparisons"][0]["looks"] = [
        {"pages": 10 * k, "difference": None, "p_value": None, "lower": None, "upper": None}
        for k in range(1, LOOKS + 1)
    ]
    assert_valid_html(render_html(late, simulation=make_simulation()))


def test_chart_coordinates() -> None:
    assert nice_ticks(0, 6000) == [0, 2000, 4000, 6000]
    assert nice_ticks(-0.03, 0.07, 4) == [-0.025, 0.0, 0.025, 0.05]
    looks = _looks(0.05, decided_from=22)
    p = p_value_chart(looks, 0.05, decided_at=looks[21]["pages"])
    assert p["y_ticks"][0] == {"y": 0, "value": 1.0}  # log axis: 1 at the top
    assert p["y_ticks"][-1] == {"y": p["height"], "value": 1e-4}
    assert p["alpha_y"] == round(p["height"] * math.log10(0.05) / -4, 1)
    assert p["decision"]["x"] == round(22 / LOOKS * p["width"], 1)
    d = difference_chart(looks, decided_at=None)
    assert d["decision"] is None and len(d["line"].split()) == LOOKS - 1  # the None is skipped
    ys = [float(pt.split(",")[1]) for pt in d["band"].split()]
    assert len(ys) == 2 * (LOOKS - 3) and all(0 <= y <= d["height"] for y in ys)
    assert 0 < d["zero_y"] < d["height"]
