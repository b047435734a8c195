"""The report from exposures and outcomes (no server): attribution by page, slot and last
page, what is left out of analysis, the sample-ratio check, and the HTML page."""

from __future__ import annotations

import html5lib

from composer.experiments import Experiment
from composer.experiments.analysis import report
from composer.experiments.html_report import render_html
from retrieval.exposures import Exposure, Outcome
from retrieval.records import EventKind

EXPERIMENT = Experiment.model_validate(
    {
        "name": "words",
        "variants": [{"name": "control"}, {"name": "llm", "backend": "transformers"}],
        "holdout": 0.1,
        "primary_metric": "click_through",
    }
)
PRICES = {"p0": 10.0, "p1": 20.0, "p2": 5.0}


def page(n: int, unit: str, variant: str, ts: float, analysed: bool = True) -> Exposure:
    return Exposure(
        page_id=f"{n:032x}", ts=ts, unit=unit, experiment="words", variant=variant,
        analysed=analysed, kind="home", backend="rules", model="rules", prompt="page_v4",
        llm=False, fallback=False, fallback_reason=None, cached=False, latency_ms=20.0 + n,
        grounding_errors=0, sections=(2, 1), products=("p0", "p1", "p2"),
    )  # fmt: skip


def outcome(shopper: str, product: str, kind: EventKind, ts: float, page_id: str | None = None,
            slot: int | None = None) -> Outcome:  # fmt: skip
    return Outcome(shopper, product, kind, ts, page_id, slot)


def build(pages: list[Exposure], outcomes: list[Outcome]) -> dict:
    return report(EXPERIMENT, pages, outcomes, PRICES, lambda s: f"u-{s}", window_s=3600)


def test_attribution_by_page_slot_and_last_page() -> None:
    pages = [
        page(1, "u-a", "control", 100.0),
        page(2, "u-a", "control", 200.0),
        page(3, "u-b", "llm", 100.0),
        page(4, "u-qa", "llm", 100.0, analysed=False),  # a QA override: never analysed
    ]
    outcomes = [
        outcome("a", "p1", EventKind.CLICK, 110.0, pages[0].page_id, 1),
        outcome("a", "p2", EventKind.CLICK, 120.0, pages[0].page_id, 1),  # slot 1 holds p1
        outcome("a", "p1", EventKind.PURCHASE, 250.0),  # → page 2, the last before it
        outcome("b", "p0", EventKind.PURCHASE, 100.0 + 7200),  # past the window
        outcome("b", "p0", EventKind.CLICK, 130.0),  # a click naming no page counts for none
        outcome("qa", "p0", EventKind.CLICK, 101.0, pages[3].page_id, 0),
        outcome("z", "p0", EventKind.PURCHASE, 150.0),  # not a shopper of the experiment
    ]
    r = build(pages, outcomes)
    arms = {a["name"]: a for a in r["arms"]}
    assert r["pages"] == 3 and r["units"] == 2
    assert arms["control"]["pages"] == 2 and arms["llm"]["pages"] == 1
    assert arms["control"]["metrics"]["click_through"]["value"] == 0.5
    assert arms["control"]["metrics"]["purchase"]["value"] == 0.5
    assert arms["control"]["metrics"]["revenue_per_page"]["value"] == 10.0  # 20 / 2 pages
    assert arms["llm"]["metrics"]["click_through"]["value"] == 0.0
    slots = {s["slot"]: s for s in arms["control"]["slots"]}
    assert slots[1]["clicks"] == 1 and slots[0]["clicks"] == 0 and slots[1]["pages"] == 2
    assert r["attribution"] == {
        "window_s": 3600,
        "events_naming_a_page": 2,
        "given_to_last_page": 1,
        "unattributed": 2,
    }


def test_a_purchase_after_a_page_outside_the_experiment_counts_for_none_of_its_arms() -> None:
    pages = [page(1, "u-a", "control", 100.0)]
    outcomes = [outcome("a", "p1", EventKind.PURCHASE, 300.0)]
    elsewhere = {"u-a": [(100.0, pages[0].page_id), (200.0, "f" * 32)]}
    r = report(EXPERIMENT, pages, outcomes, PRICES, lambda s: f"u-{s}", 3600,
               unit_pages=elsewhere)  # fmt: skip
    assert r["attribution"]["given_to_last_page"] == 0
    assert r["attribution"]["unattributed"] == 1


def test_sample_ratio_mismatch_is_flagged_and_the_html_page_says_so() -> None:
    pages = [page(n, f"u-{n}", "control", float(n)) for n in range(400)]
    pages += [page(1000 + n, f"u-x{n}", "llm", float(n)) for n in range(200)]
    pages += [page(2000 + n, f"u-h{n}", "holdout", float(n)) for n in range(60)]
    clicks = [
        outcome(f"{n}", "p0", EventKind.CLICK, n + 0.5, pages[n].page_id, 0)
        for n in range(0, 400, 3)
    ]
    r = build(pages, clicks)
    assert r["srm"]["mismatch"]
    assert [c["variant"] for c in r["comparisons"]] == ["llm", "holdout"]
    html = render_html(r)
    html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(html)
    assert "Sample ratio mismatch" in html and "<svg" in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    for arm in ("control", "llm", "holdout"):
        assert f"<b>{arm}</b>" in html


def test_an_experiment_without_pages_still_reports() -> None:
    r = build([], [])
    assert r["pages"] == 0 and r["comparisons"][0]["p_value"] == 1.0
    assert not r["comparisons"][0]["significant"]
    html = render_html(r)
    html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(html)
    assert "No click named a slot yet" in html
