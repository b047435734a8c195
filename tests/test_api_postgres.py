"""The page API over a store on a real PostgreSQL server (composer/topology/postgres.py): pages,
events, the page cache and its invalidation, as test_api.py runs them on SQLite."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from conftest import BuiltShop
from litestar.testing import TestClient
from test_api import KeyedClient, app_for

from retrieval.records import EventKind, Interaction


@pytest.fixture(scope="module")
def client(pg_shop: BuiltShop) -> Iterator[TestClient]:
    with KeyedClient(app_for(pg_shop, database_url=pg_shop.settings.database_url)) as c:
        yield c


def test_ready_on_postgres_with_the_whole_shop(client: TestClient, pg_shop: BuiltShop) -> None:
    assert pg_shop.store.engine.dialect.name == "postgresql"
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["checks"]["store"] == "ok"
    assert ready["checks"]["products"] == 1682 and ready["checks"]["last_event_id"] >= 100_000


def test_a_page_from_the_postgres_store(client: TestClient) -> None:
    r = client.post("/v1/pages", json={"shopper_id": "196", "format": "both"})
    assert r.status_code == 200
    body = r.json()
    assert body["trace"]["backend"] == "rules" and body["layout"]["sections"]
    assert "<html" in body["html"]
    # The shopper's history came from PostgreSQL: the profile counts their events.
    assert body["trace"]["candidates"] and body["cache"] == "miss"


def test_events_invalidate_cached_pages_on_postgres(client: TestClient, pg_shop: BuiltShop) -> None:
    shopper = "pg-cache-shopper"
    first = client.post("/v1/pages", json={"shopper_id": shopper})
    assert client.post("/v1/pages", json={"shopper_id": shopper}).json()["cache"] == "hit"
    top = first.json()["trace"]["candidates"][0]["product_id"]
    r = client.post(
        "/v1/events", json={"shopper_id": shopper, "product_id": top, "kind": "purchase"}
    )
    assert r.status_code == 201 and r.json()["invalidated_pages"] == 1
    assert [e.product_id for e in pg_shop.store.events_for(shopper)] == [top]
    after = client.post("/v1/pages", json={"shopper_id": shopper}).json()
    assert after["cache"] == "miss"
    assert top not in [c["product_id"] for c in after["trace"]["candidates"]]
    # Written behind the API's back (another worker): the cached page is not served.
    assert client.post("/v1/pages", json={"shopper_id": shopper}).json()["cache"] == "hit"
    pg_shop.store.add_events([Interaction(shopper, "50", EventKind.VIEW, time.time())])
    assert client.post("/v1/pages", json={"shopper_id": shopper}).json()["cache"] == "miss"
    repeat = client.post(
        "/v1/events", json={"shopper_id": shopper, "product_id": top, "kind": "purchase",
                            "timestamp": pg_shop.store.events_for(shopper)[0].timestamp}
    )  # fmt: skip
    assert repeat.status_code == 201 and repeat.json()["duplicates"] == 1
