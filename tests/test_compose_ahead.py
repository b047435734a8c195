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
from fault_injection import TWO_SECTIONS, ScriptedBackend
from litestar.testing import TestClient
from test_api import KeyedClient, app_for, keyed, metric, parse_sse, settings_for

from composer.ahead import AheadWorker, ComposeAhead, normalise, pack
from composer.api import create_app
from composer.api.services import Services
from composer.backends import BackendRegistry
from composer.experiments import assign, load_experiment
from composer.page_request import PageRequest
from composer.provision import open_store
from composer.settings import AheadSettings, ApiSettings, ExperimentSettings
from retrieval import AheadStore, KeptPage, Store, Visit
from retrieval.ahead_store import (
    ahead_composes_table,
    ahead_pages_table,
    ahead_queue_table,
    ahead_visits_table,
)
from retrieval.profile import pseudonymise


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
    app = app_for(ml_shop, api=STILL, llm_backend="transformers", ahead=ahead())
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


# -- scripted model: the queue's mechanics ------------------------------------------------------
# A scripted model writes a valid two-section page in a fixed time, so that these tests are
# about the queue and not the model's speed (the test above uses the real model).


def scripted(stall_page_s: float = 0.0, texts: list[str] | None = None) -> ScriptedBackend:
    text = (texts or [TWO_SECTIONS])[0]
    return ScriptedBackend("transformers", texts=texts or [TWO_SECTIONS],
                           stall_s=stall_page_s / len(text))  # fmt: skip


# Other tests of the session train new model versions of the shared shop: an app polling for
# them would swap mid-test, and every page's key with it.
STILL = ApiSettings(model_poll_s=0)


def app_with(shop: BuiltShop, backend: ScriptedBackend, **settings: Any) -> Any:
    return app_for(shop, backend, api=STILL, llm_backend="transformers", ahead=ahead(**settings))


def test_kept_pages_serve_json_sse_and_html_and_go_stale(ml_shop: BuiltShop) -> None:
    backend = scripted()
    app = app_with(ml_shop, backend, refresh_after_s=3.0, max_staleness_s=60.0)
    with KeyedClient(app) as c:
        assert home(c, "7")["trace"]["ahead"] == "composing"
        wait_for(lambda: kept_pages(ml_shop) == 1 and idle(ml_shop), message="compose")

        page = home(c, "7", format="html")
        assert page["trace"]["ahead"] == "kept" and page["layout"]["title"] == "Movie night"
        assert "Stories chosen for tonight" in page["html"]  # rendered when served
        events = parse_sse(
            c.post("/v1/pages", json={"shopper_id": "7"},
                   headers={"Accept": "text/event-stream"}).text
        )  # fmt: skip
        assert [n for n, _ in events] == ["retrieval", "section", "section", "page", "done"]
        assert events[3][1]["trace"]["ahead"] == "kept"
        html = c.get("/pages/7")
        assert html.status_code == 200 and "Stories chosen for tonight" in html.text
        assert backend.calls == 1  # four views, one compose

        # Past refresh_after_s: still served, and composed again for the next view.
        time.sleep(3.1)
        stale = home(c, "7")
        assert stale["trace"]["ahead"] == "refreshing" and stale["trace"]["page_age_s"] > 3.0
        wait_for(lambda: backend.calls == 2 and idle(ml_shop), message="refresh")
        assert home(c, "7")["trace"]["ahead"] == "kept"
        # The page replaced had been seen: not wasted.
        assert metric(c, "composer_ahead_wasted_composes_total") == 0


def test_pages_composed_ahead_are_written_by_their_own_words_model(ml_shop: BuiltShop) -> None:
    """COMPOSER_AHEAD__WORDS_MODEL: the model behind pages composed ahead is another than
    the one behind pages composed on request, and a kept page is served under its key."""
    on_request, ahead_writer = scripted(), scripted()
    settings = settings_for(
        ml_shop, prompt="page_v3", llm_backend="transformers",
        ahead=ahead(words_model="the-ahead-writer"),
    )  # fmt: skip
    registry = BackendRegistry(settings)
    registry.register(on_request)
    registry.register(ahead_writer, "the-ahead-writer")
    services = Services.from_parts(settings, ml_shop.store, ml_shop.retriever, registry)
    with KeyedClient(create_app(settings, services, api=keyed(STILL))) as c:
        assert home(c, "7")["trace"]["ahead"] == "composing"
        wait_for(lambda: kept_pages(ml_shop) == 1 and idle(ml_shop), message="compose")
        page = home(c, "7")
        assert page["trace"]["ahead"] == "kept" and page["trace"]["fallback"] is False
        assert (ahead_writer.calls, on_request.calls) == (1, 0)
        # A search page is composed on request, by the page model.
        search = c.post("/v1/pages", json={"shopper_id": "7", "kind": "search", "query": "space"})
        assert search.json()["trace"]["fallback"] is False
        assert (ahead_writer.calls, on_request.calls) == (1, 1)


def test_a_kept_page_is_fresh_then_refreshing_then_too_old_to_serve(ml_shop: BuiltShop) -> None:
    composed_at = 1000.0
    clock = [composed_at]
    settings = ahead(refresh_after_s=10.0, max_staleness_s=60.0)
    services = Services.from_parts(settings_for(ml_shop), ml_shop.store, ml_shop.retriever)
    request = normalise(PageRequest(shopper_id="42"))
    payload = pack(services.composer.compose(request))
    store = _MemoryStore(KeptPage("42", "h", "key", "{}", composed_at, payload, 0, 1))
    products = ml_shop.retriever.catalog.by_id
    service = ComposeAhead(settings, store, products, clock=lambda: clock[0])  # type: ignore[arg-type]

    clock[0] = composed_at + 5
    found = service.lookup(request, "key")
    assert found is not None and found.how == "kept" and found.age_s == 5 and store.queued == 0
    assert found.result.page.product_ids()  # rebuilt from the catalog
    clock[0] = composed_at + 11
    found = service.lookup(request, "key")
    assert found is not None and found.how == "refreshing" and store.queued == 1
    clock[0] = composed_at + 61
    assert service.lookup(request, "key") is None and store.queued == 2
    # Another key (an event since, another prompt or arm): never served, however fresh.
    clock[0] = composed_at + 1
    assert service.lookup(request, "another key") is None and store.queued == 3


class _MemoryStore:
    """Only what ``ComposeAhead.lookup`` reads and writes (the other tests use SQLite)."""

    def __init__(self, page: KeptPage) -> None:
        self.page = page
        self.queued = 0

    def kept(self, shopper_id: str, request_hash: str) -> KeptPage:
        return self.page

    def priorities(self, shoppers: Any, tau: float) -> dict[str, float]:
        return {}

    def enqueue(self, rows: list[Any], now: float) -> None:
        self.queued += len(rows)


def test_a_page_that_fails_its_checks_is_never_kept(ml_shop: BuiltShop) -> None:
    garbage = scripted(texts=["<<garbage>>"])
    with KeyedClient(app_with(ml_shop, garbage)) as c:
        home(c, "9")
        wait_for(lambda: composes(ml_shop) and idle(ml_shop), message="the compose")
        assert [o for _, _, o in composes(ml_shop)] == ["invalid"]
        assert kept_pages(ml_shop) == 0
        # The next view is still the rules page (and the page is queued again).
        assert home(c, "9")["trace"]["ahead"] == "composing"
        assert metric(c, 'composer_ahead_composes_total{outcome="invalid"}') >= 1


def test_the_queue_survives_a_restart_and_a_dead_workers_lease_runs_out(
    ml_shop: BuiltShop,
) -> None:
    # A first process queues three pages (one claimed by a worker that then dies), and goes.
    settings = ahead()
    before = open_second_store(ml_shop)
    queue = AheadStore(before.engine)
    service = ComposeAhead(settings, queue, lambda: ml_shop.retriever.catalog.by_id())
    # Priority: 13 visited three times a minute ago, 12 once an hour ago, 11 never (a first
    # visit now counts as one visit now).
    now = time.time()
    visits = [Visit("13", now - 60)] * 3 + [Visit("12", now - 3600)]
    queue.record_visits(visits, settings.revisit_tau_s)
    requests = [normalise(PageRequest(shopper_id=s)) for s in ("11", "12", "13")]
    service.want(requests)
    claimed = queue.claim("dead-worker", time.time(), lease_s=3.0)
    assert claimed is not None
    before.close()

    # The next process finds them in the store, and composes all three, the claimed one once
    # its lease ran out.
    after = AheadStore(ml_shop.store.engine)
    assert [q.shopper_id for q in after.queued()] == ["13", "11", "12"]
    backend = scripted()
    with KeyedClient(app_with(ml_shop, backend)) as c:
        wait_for(lambda: kept_pages(ml_shop) == 3 and idle(ml_shop), message="the queue")
        assert sorted(s for s, _, _ in composes(ml_shop)) == ["11", "12", "13"]
        for shopper in ("11", "12", "13"):
            assert home(c, shopper)["trace"]["ahead"] == "kept"


def open_second_store(shop: BuiltShop) -> Store:
    """The shop's database through an engine of its own, as another process opens it."""
    return open_store(shop.settings)


def test_two_workers_on_one_store_never_compose_the_same_page_twice(ml_shop: BuiltShop) -> None:
    shoppers = [str(n) for n in range(20, 36)]
    other = open_second_store(ml_shop)
    second = BuiltShop(ml_shop.settings, other, ml_shop.retriever)
    try:
        # Each composes for 0.2 s, two at a time per process: 4 claimers on 16 pages.
        one = app_with(ml_shop, scripted(0.2), concurrency=2)
        two = app_with(second, scripted(0.2), concurrency=2)
        with KeyedClient(one) as a, KeyedClient(two) as b:
            for n, shopper in enumerate(shoppers):
                home(a if n % 2 else b, shopper)
            wait_for(lambda: kept_pages(ml_shop) == 16 and idle(ml_shop), message="16 pages")
            done = composes(ml_shop)
            assert sorted(s for s, _, _ in done) == sorted(shoppers)  # each exactly once
            assert {o for _, _, o in done} == {"kept"}
            assert len({w for _, w, _ in done}) >= 2  # both processes took pages
    finally:
        other.close()


ARMS = """\
name: ahead-arms
variants:
  - name: control
  - name: no-model
    backend: rules
kinds: [home]
"""


def test_a_shopper_gets_the_page_of_their_experiment_arm(ml_shop: BuiltShop, tmp_path: Any) -> None:
    folder = tmp_path / "experiments"
    folder.mkdir()
    (folder / "arms.yaml").write_text(ARMS)
    experiment = load_experiment(folder / "arms.yaml")
    salt = settings_for(ml_shop).pseudonym_salt
    arms: dict[str, str] = {}
    for n in range(40, 200):
        variant = assign(experiment, pseudonymise(str(n), salt)).variant
        arms.setdefault(variant, str(n))
        if len(arms) == 2:
            break
    backend = scripted()
    app = app_for(ml_shop, backend, api=STILL, llm_backend="transformers", ahead=ahead(),
                  experiments=ExperimentSettings(dir=folder, poll_s=0))  # fmt: skip
    with KeyedClient(app) as c:
        rules_arm = home(c, arms["no-model"])
        assert rules_arm["variant"] == "no-model" and rules_arm["trace"]["backend"] == "rules"
        assert rules_arm["trace"]["ahead"] is None and not rules_arm["trace"]["fallback"]
        model_arm = home(c, arms["control"])
        assert model_arm["variant"] == "control" and model_arm["trace"]["ahead"] == "composing"
        wait_for(lambda: kept_pages(ml_shop) == 1 and idle(ml_shop), message="the compose")
        served = home(c, arms["control"])
        assert served["variant"] == "control" and served["trace"]["ahead"] == "kept"
        assert served["trace"]["backend"] == "transformers"
        assert sorted(s for s, _, _ in composes(ml_shop)) == [arms["control"]]


def test_unseen_pages_that_expire_count_as_wasted_and_a_clean_stop_hands_claims_back(
    ml_shop: BuiltShop,
) -> None:
    store = AheadStore(ml_shop.store.engine)
    now = time.time()
    seen, unseen = (store.start_compose(s, "h", "w", now - 7200) for s in ("50", "51"))
    for shopper, compose_id in (("50", seen), ("51", unseen)):
        store.end_compose(compose_id, "kept", now - 7100)
        store.keep(KeptPage(shopper, "h", "key", "{}", now - 7100, "{}", 0, compose_id))
    store.mark_viewed([seen])
    assert store.expire(now - 3600) == 1
    assert kept_pages(ml_shop) == 0
    assert sorted(o for _, _, o in composes(ml_shop)) == ["kept", "wasted"]

    # Replacing a page nobody was served is a waste too.
    replaced = store.start_compose("52", "h", "w", now)
    store.keep(KeptPage("52", "h", "k1", "{}", now, "{}", 0, replaced))
    assert store.keep(KeptPage("52", "h", "k2", "{}", now, "{}", 0, replaced + 1)) is True

    store.enqueue([("53", "h", normalise(PageRequest(shopper_id="53")).model_dump_json(), 1.0)],
                  now)  # fmt: skip
    assert store.claim("stopping", now, lease_s=600) is not None
    assert store.claim("other", now, lease_s=600) is None  # leased
    assert store.release("stopping") == 1
    assert store.claim("other", now, lease_s=600) is not None


def test_the_budget_caps_composes_per_minute_across_the_queue(ml_shop: BuiltShop) -> None:
    backend = scripted()
    with KeyedClient(app_with(ml_shop, backend, budget_per_minute=2, concurrency=2)) as c:
        for shopper in ("60", "61", "62", "63", "64"):
            home(c, shopper)
        wait_for(lambda: kept_pages(ml_shop) == 2 and idle_but(ml_shop, 3), message="2 pages")
        # The workers keep looking (the gauge is refreshed every second): nothing more starts
        # within the minute.
        wait_for(lambda: metric(c, "composer_ahead_queue_depth") == 3, 10, "the gauge")
        time.sleep(1.0)
        assert len(composes(ml_shop)) == 2 and backend.calls == 2
        assert AheadStore(ml_shop.store.engine).depth() == 3


def idle_but(shop: BuiltShop, queued: int) -> bool:
    store = AheadStore(shop.store.engine)
    return store.depth() == queued and "running" not in store.outcomes()


class _NoPages:
    """The sweep composes nothing: it only queues."""

    def plan_ahead(self, request: PageRequest) -> Any:
        raise AssertionError("the sweep composes nothing")

    def compose_ahead(self, plan: Any, deadline_s: float) -> Any:
        raise AssertionError("the sweep composes nothing")

    def llm_busy(self) -> bool:
        return True


def test_the_sweep_queues_recent_shoppers_below_visitors_and_once_per_state(
    ml_shop: BuiltShop,
) -> None:
    store = AheadStore(ml_shop.store.engine)
    # The session's shop holds MovieLens' 1998 events and the ones tests post now: a window
    # reaching back over both takes every shopper.
    settings = ahead(active_window_s=40 * 365 * 86400.0)
    service = ComposeAhead(settings, store, ml_shop.retriever.catalog.by_id)
    worker = AheadWorker(service, _NoPages())
    active = store.active_shoppers(settings.active_window_s, 1000)
    assert len(active) >= 900
    # One of them visited a page just now: a visitor outranks every swept shopper.
    visitor = active[-1][0]
    store.record_visits([Visit(visitor, time.time())], settings.revisit_tau_s)

    assert worker.sweep() == len(active)
    queued = store.queued()
    assert {q.shopper_id for q in queued} == {s for s, _, _ in active}
    assert queued[0].shopper_id == visitor
    assert worker.sweep() == 0  # all known now

    # Composed since their last event and gone from the queue (an expired, unseen page):
    # not swept again until they act.
    for q in queued:
        assert store.claim("w", time.time(), 60) is not None
        store.start_compose(q.shopper_id, q.request_hash, "w", time.time())
    with ml_shop.store.engine.begin() as conn:
        conn.execute(ahead_queue_table.delete())
    assert worker.sweep() == 0
