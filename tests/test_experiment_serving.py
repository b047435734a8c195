"""Experiments in the running service, on the real MovieLens shop: files reread while it
serves (a bad one changes nothing), page ids and arms on every answer, exposures and
attributed events that survive a restart, and a guardrail that pauses a variant."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import BuiltShop
from test_api import KeyedClient, app_for, metric, parse_sse

from composer.experiments import ExperimentRegistry
from composer.settings import ExperimentSettings
from retrieval.exposures import ExposureStore
from retrieval.profile import pseudonymise

GOOD = """\
name: headline-test
variants:
  - name: control
  - name: short
    max_sections: 2
holdout: 0.1
kinds: [home]
"""


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    # A rewrite within the same clock tick and size must still look changed.
    stamp = time.time_ns() + 1_000_000
    os.utime(path, ns=(stamp, stamp))


def test_a_bad_file_is_refused_with_line_and_field_and_the_running_version_stays(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "experiments"
    write(folder, "headline.yaml", GOOD)
    registry = ExperimentRegistry(folder)
    first = registry.reload().get("headline-test")
    assert first is not None and [v.name for v in first.variants] == ["control", "short"]

    write(
        folder, "headline.yaml", GOOD.replace("max_sections: 2", "max_sections: 2\n    weight: -1")
    )
    snapshot = registry.reload()
    assert snapshot.get("headline-test") == first  # the running version, unchanged
    error = snapshot.errors["headline.yaml"]
    assert "line 6" in error and "variants.1.weight" in error

    # A second experiment over the same page kind at the same time is refused, the first
    # one runs on; one over other kinds is taken.
    write(folder, "another.yaml", GOOD.replace("headline-test", "another"))
    write(folder, "search.yaml", GOOD.replace("headline-test", "search-only").replace(
        "kinds: [home]", "kinds: [search]"))  # fmt: skip
    snapshot = registry.reload()
    assert [e.name for e in snapshot.experiments] == ["headline-test", "search-only"]
    assert "overlaps experiment 'headline-test'" in snapshot.errors["another.yaml"]

    # Fixed, it is read again; removed, it stops.
    write(folder, "headline.yaml", GOOD.replace("max_sections: 2", "max_sections: 1"))
    (folder / "another.yaml").unlink()
    snapshot = registry.reload()
    assert snapshot.errors == {}
    fixed = snapshot.get("headline-test")
    assert fixed is not None and fixed.variants[1].max_sections == 1
    (folder / "headline.yaml").unlink()
    assert [e.name for e in registry.reload().experiments] == ["search-only"]


def _app(shop: BuiltShop, folder: Path, **experiments: Any) -> Any:
    conf = ExperimentSettings(dir=folder, poll_s=0.05, flush_s=0.05, **experiments)
    return app_for(shop, experiments=conf)


def _wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_pages_carry_their_id_and_arm_and_exposures_and_events_survive_a_restart(
    ml_shop: BuiltShop, tmp_path: Path
) -> None:
    folder = tmp_path / "experiments"
    write(folder, "headline.yaml", GOOD)
    exposures = ExposureStore(ml_shop.store.engine)
    salt = ml_shop.settings.pseudonym_salt
    served: dict[str, dict[str, Any]] = {}
    with KeyedClient(_app(ml_shop, folder)) as client:
        _wait_for(lambda: client.get("/v1/experiments").json()["experiments"])
        arms: dict[str, set[str]] = {}
        by_shopper: dict[str, dict[str, Any]] = {}
        for n in range(1, 61):
            r = client.post("/v1/pages", json={"shopper_id": str(n)})
            assert r.status_code == 200, r.text
            page = r.json()
            assert page["experiment"] == "headline-test"
            assert page["trace"]["page_id"] == page["page_id"] == r.headers["X-Page-Id"]
            assert page["trace"]["variant"] == page["variant"]
            arms.setdefault(page["variant"], set()).add(str(n))
            served[page["page_id"]] = page
            by_shopper[str(n)] = page
            sections = len(page["layout"]["sections"])
            if page["variant"] == "short":
                assert sections <= 2
        # Sticky: the same shopper is in the same arm on every page.
        again = client.post("/v1/pages", json={"shopper_id": "1"}).json()
        assert again["variant"] in {v for v, who in arms.items() if "1" in who}
        assert again["page_id"] not in served
        assert set(arms) <= {"control", "short", "holdout"} and len(arms) >= 2

        # A search page is in no experiment (kinds: [home]); nor is an anonymous page
        # without a session, while one with a session id is.
        search = client.post("/v1/pages", json={"shopper_id": "1", "kind": "search",
                                                "query": "space"}).json()  # fmt: skip
        assert search["experiment"] is None and search["variant"] is None
        anon = client.post("/v1/pages", json={"recent_items": ["1"]}).json()
        assert anon["experiment"] is None
        session = client.post("/v1/pages", json={"recent_items": ["1"], "session_id": "tab-7"})
        assert session.json()["experiment"] == "headline-test"

        # The server-sent page event carries them too.
        stream = client.post("/v1/pages", json={"shopper_id": "2"},
                             headers={"Accept": "text/event-stream"})  # fmt: skip
        events = dict(parse_sse(stream.text))
        assert events["page"]["experiment"] == "headline-test"
        assert events["page"]["page_id"] == events["done"]["page_id"]

        # A click naming its page and slot, and a purchase naming none: it goes to the
        # shopper's last page (one of the experiment's here; for shopper 1 the search page,
        # in no experiment, so it counts for no arm).
        who = "30"
        page = by_shopper[who]
        page_id = page["page_id"]
        handle = page["layout"]["sections"][0]["slots"][0]["handle"]
        product = next(c["product_id"] for c in page["trace"]["candidates"]
                       if c["handle"] == handle)  # fmt: skip
        click = client.post(
            "/v1/events",
            json={"shopper_id": who, "product_id": product, "kind": "click",
                  "page_id": page_id, "slot": 0},
        )  # fmt: skip
        assert click.status_code == 201, click.text
        for shopper in (who, "1"):
            bought = client.post(
                "/v1/events",
                json={"shopper_id": shopper, "product_id": product, "kind": "purchase"},
            )
            assert bought.status_code == 201
        # A slot without its page is refused, naming the field.
        bad = client.post(
            "/v1/events",
            json={"shopper_id": who, "product_id": product, "kind": "click", "slot": 1},
        )
        assert bad.status_code == 422 and "slot" in bad.text
    # The app closed (a clean stop): every page it served is in the store.
    found = exposures.by_id(served)
    assert set(found) == set(served)
    mine = found[page_id]
    assert mine.unit == pseudonymise(who, salt) and mine.experiment == "headline-test"
    assert mine.products[0] == product
    assert sum(mine.sections) == len(mine.products) > 0
    assert mine.latency_ms > 0 and not mine.llm and mine.backend == "rules"

    # A new app on the same store (a restart) sees them, and the report attributes the
    # click to its page and the purchase to the shopper's last page.
    from composer.cli.experiment_cmd import experiment_report

    settings = ml_shop.settings.model_copy(update={"experiments": ExperimentSettings(dir=folder)})
    report = experiment_report(settings, "headline-test")
    assert report["pages"] >= 60
    assert report["attribution"]["events_naming_a_page"] >= 1
    assert report["attribution"]["given_to_last_page"] == 1
    assert report["attribution"]["unattributed"] == 1
    arms_report = {a["name"]: a for a in report["arms"]}
    clicked = arms_report[mine.variant]
    assert clicked["metrics"]["click_through"]["value"] > 0
    assert clicked["slots"][0]["clicks"] >= 1


def test_a_guardrail_breach_pauses_the_variant_and_metrics_say_so(
    ml_shop: BuiltShop, tmp_path: Path
) -> None:
    folder = tmp_path / "experiments"
    strict = GOOD.replace("holdout: 0.1\n", "").replace("headline-test", "strict") + (
        "guardrails:\n  p95_latency_ms: 0.001\n  min_pages: 5\n"
    )
    write(folder, "strict.yaml", strict)
    app = _app(ml_shop, folder, guardrail_check_s=0.1)
    with KeyedClient(app) as client:
        _wait_for(lambda: client.get("/v1/experiments").json()["experiments"])
        arm_of = {}
        for n in range(100, 140):
            page = client.post("/v1/pages", json={"shopper_id": str(n)}).json()
            arm_of[str(n)] = page["variant"]
        assert set(arm_of.values()) == {"control", "short"}
        # Every page is past the limit, but only the treatment is paused: the control is
        # what a paused arm falls back to.
        _wait_for(lambda: len(client.get("/v1/experiments").json()["paused"]) == 1)
        paused = client.get("/v1/experiments").json()["paused"]
        assert [p["variant"] for p in paused] == ["short"]
        assert "p95_latency_ms" in paused[0]["reason"]
        assert metric(client, "composer_experiment_variant_paused") == 1
        # Paused: its shoppers get the control's page, not analysed.
        short = next(who for who, arm in arm_of.items() if arm == "short")
        page = client.post("/v1/pages", json={"shopper_id": short}).json()
        assert page["variant"] == "control"
    pauses = ExposureStore(ml_shop.store.engine)
    found = pauses.by_id([page["page_id"]])[page["page_id"]]
    assert not found.analysed
    # Resumed, it is judged on its pages from then on: the old ones do not pause it again.
    assert pauses.resume("strict", "short")
    assert pauses.resumed_at("strict", "short") > found.ts
    assert not pauses.resume("strict", "short")


@pytest.mark.parametrize("logging", [True, False])
def test_the_exposure_log_can_be_turned_off(
    ml_shop: BuiltShop, tmp_path: Path, logging: bool
) -> None:
    store = ExposureStore(ml_shop.store.engine)
    with KeyedClient(_app(ml_shop, tmp_path / "none", exposure_log=logging)) as client:
        page = client.post("/v1/pages", json={"shopper_id": "3", "seed": 99}).json()
    assert (page["page_id"] in store.by_id([page["page_id"]])) is logging


def test_a_shuffled_page_draws_from_the_whole_pool_and_stays_the_same_per_shopper(
    ml_shop: BuiltShop, tmp_path: Path
) -> None:
    with KeyedClient(_app(ml_shop, tmp_path / "none")) as client:

        def products(order: str, format: str = "json") -> list[str]:
            body = {"shopper_id": "7", "order": order, "seed": 5, "format": format}
            page = client.post("/v1/pages", json=body).json()
            return [c["product_id"] for c in page["trace"]["candidates"]]

        ranked, shuffled = products("ranked"), products("shuffled")
        assert len(set(ranked) - set(shuffled)) >= len(ranked) // 2
        # The same page on every view (another format: not the cached answer).
        assert products("shuffled", "both") == shuffled
