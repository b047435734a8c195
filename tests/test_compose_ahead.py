"""Pages composed ahead of the request, on the real MovieLens shop and its SQLite store: a kept
page is served only for the shopper state, prompt, model and arm it was composed for; an
event in between means the rules page now and a fresh compose; the queue survives a restart;
two workers never compose the same page twice; a page that fails its checks is never kept."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import BuiltShop
from litestar.testing import TestClient
from test_api import KeyedClient, app_for, metric

from composer.settings import AheadSettings
from retrieval import AheadStore
from retrieval.ahead_store import (
    ahead_composes_table,
    ahead_pages_table,
    ahead_queue_table,
    ahead_visits_table,
)


@pytest.fixture(autouse=True)
def empty_ahead_tables(ml_shop: BuiltShop) -> Iterator[None]:
    """The session's shop is shared: every test starts with no queue and no kept page."""

    def empty() -> None:
        with ml_shop.store.engine.begin() as conn:
            for t in (ahead_queue_table, ahead_pages_table, ahead_composes_table,
                      ahead_visits_table):  # fmt: skip
                conn.execute(t.delete())

    empty()
    yield
    empty()


def ahead(**overrides: Any) -> AheadSettings:
    values: dict[str, Any] = {"enabled": True, "sweep_s": 0, "budget_per_minute": 600}
    return AheadSettings(**{**values, **overrides})


def wait_for(what: Callable[[], Any], timeout: float = 60.0, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting: {message}")


def kept_pages(shop: BuiltShop) -> int:
    with shop.store.engine.connect() as conn:
        count = sa.select(sa.func.count()).select_from(ahead_pages_table)
        return conn.execute(count).scalar() or 0


def composes(shop: BuiltShop) -> list[tuple[str, str, str | None]]:
    t = ahead_composes_table
    with shop.store.engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.shopper_id, t.c.worker, t.c.outcome)).all()
    return [(s, w, o) for s, w, o in rows]


def idle(shop: BuiltShop) -> bool:
    """Nothing queued and no compose running."""
    store = AheadStore(shop.store.engine)
    return store.depth() == 0 and "running" not in store.outcomes()


def home(client: TestClient, shopper: str, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/pages", json={"shopper_id": shopper, **body})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def view(client: TestClient, shopper: str, product: str) -> None:
    r = client.post(
        "/v1/events", json={"shopper_id": shopper, "kind": "view", "product_id": product}
    )
    assert r.status_code == 201, r.text


# -- the real model ---------------------------------------------------------------------------


def test_the_real_model_composes_ahead_and_an_event_means_rules_now_then_a_fresh_page(
    ml_shop: BuiltShop,
) -> None:
    app = app_for(ml_shop, llm_backend="transformers", ahead=ahead())
    with KeyedClient(app) as c:
        first = home(c, "42")
        # Nothing kept yet: the rules page at once, its reason, the LLM page queued.
        assert first["trace"]["backend"] == "rules" and first["trace"]["ahead"] == "composing"
        assert first["trace"]["fallback"] and first["trace"]["page_age_s"] is None
        assert "composed ahead" in first["trace"]["fallback_reason"]
        wait_for(lambda: kept_pages(ml_shop) == 1 and idle(ml_shop), 180, "the first compose")

        served = home(c, "42")
        trace = served["trace"]
        assert trace["backend"] == "transformers" and not trace["fallback"], trace
        assert trace["ahead"] == "kept" and trace["page_age_s"] >= 0
        assert trace["tokens"] > 0  # the model wrote this page's words
        assert served["layout"]["sections"] and served["page_id"] != first["page_id"]

        # Again: the same kept page (another page id), no new compose.
        again = home(c, "42")
        assert again["trace"]["ahead"] == "kept"
        assert again["layout"] == served["layout"]
        assert [o for _, _, o in composes(ml_shop)] == ["kept"]

        # An event changes the shopper's state: the kept page is not theirs any more.
        view(c, "42", served["trace"]["candidates"][0]["product_id"])
        after = home(c, "42")
        assert after["trace"]["ahead"] == "composing" and after["trace"]["backend"] == "rules"
        wait_for(lambda: len(composes(ml_shop)) == 2 and idle(ml_shop), 180, "the recompose")
        fresh = home(c, "42")
        assert fresh["trace"]["ahead"] == "kept" and not fresh["trace"]["fallback"]
        assert fresh["trace"]["backend"] == "transformers"
        assert [o for _, _, o in composes(ml_shop)] == ["kept", "kept"]
        # The page served before the event was seen: nothing was wasted.
        assert metric(c, "composer_ahead_wasted_composes_total") == 0
        assert metric(c, 'composer_page_views_total{page="llm"}') == 3
        assert metric(c, 'composer_page_views_total{page="rules"}') == 2
        assert metric(c, 'composer_ahead_composes_total{outcome="kept"}') == 2
        assert metric(c, "composer_served_page_age_seconds_count") == 3
