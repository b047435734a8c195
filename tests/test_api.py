"""The page API through Litestar's test client, on the real MovieLens shop: real store,
retriever and composer; the `rules` backend for speed, fault-injecting backends (raise,
stall, garbage) standing in for a broken model, and one slow test with the real 135M model."""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import html5lib
import pytest
from conftest import CACHE, BuiltShop
from fault_injection import TWO_SECTIONS, ScriptedBackend
from litestar import Litestar
from litestar.testing import TestClient

from composer.api import Services, create_app
from composer.api.logs import JsonFormatter
from composer.api.security.keys import new_key
from composer.backends import BackendRegistry
from composer.prompting import PromptLibrary
from composer.resources import resource_dir
from composer.settings import ApiSettings, Scope, Settings
from retrieval import FusionParams
from retrieval.profile import pseudonymise
from retrieval.records import EventKind, Interaction

# Every route but /healthz needs a key: the tests' clients carry one with every scope
# (the routes' scopes themselves are tested in test_api_access.py).
ADMIN_KEY, ADMIN_KEY_CONFIG = new_key("tests", (Scope.ADMIN,))


def keyed(api: ApiSettings) -> ApiSettings:
    return api if api.keys else api.model_copy(update={"keys": [ADMIN_KEY_CONFIG]})


class KeyedClient(TestClient):  # type: ignore[type-arg]
    """Litestar's test client sending the tests' admin key."""

    def __init__(self, app: Litestar, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.headers["Authorization"] = f"Bearer {ADMIN_KEY}"


def settings_for(shop: BuiltShop, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"llm_backend": "rules", **overrides}
    values["api"] = keyed(values.get("api") or ApiSettings())
    return Settings(
        artifacts_dir=shop.settings.artifacts_dir,
        cache_dir=CACHE,
        fusion=FusionParams(tune=False),
        **values,
    )


def app_for(
    shop: BuiltShop, *backends: Any, api: ApiSettings | None = None, **overrides: Any
) -> Litestar:
    if backends:
        # Scripted backends inject faults into the one-JSON-answer layout path (page_v3).
        overrides.setdefault("prompt", "page_v3")
    settings = settings_for(shop, **overrides)
    registry = BackendRegistry(settings)
    for backend in backends:
        registry.register(backend)
    services = Services.from_parts(settings, shop.store, shop.retriever, registry)
    return create_app(settings, services, api=keyed(api) if api else None)


@pytest.fixture(scope="module")
def client(ml_shop: BuiltShop) -> Iterator[TestClient]:
    with KeyedClient(app_for(ml_shop)) as c:
        yield c


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = None, []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if name:
            events.append((name, json.loads("\n".join(data))))
    return events


def assert_valid_html(html: str) -> None:
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    parser.parse(html)  # raises on any parse error


def metric(client: TestClient, name: str) -> float:
    """Sum of a metric's samples in /metrics (0 when absent)."""
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            total += float(line.rsplit(" ", 1)[1])
    return total


# -- endpoints -----------------------------------------------------------------------------


def test_health_ready_schema_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert body["checks"]["store"] == "ok" and body["checks"]["products"] == 1682
    schema = client.get("/schema/openapi.json").json()
    assert {
        "/v1/pages",
        "/pages/{shopper_id}",
        "/v1/copy",
        "/v1/events",
        "/v1/products/{product_id}",
        "/products/{product_id}",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= set(schema["paths"])
    assert "PageRequest" in schema["components"]["schemas"]
    docs = client.get("/schema")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]


def test_page_json_and_html_formats(client: TestClient) -> None:
    r = client.post("/v1/pages", json={"shopper_id": "196", "seed": 3})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"layout", "trace", "cache", "page_id", "experiment", "variant"}
    assert len(body["page_id"]) == 32 and body["experiment"] is None
    assert body["layout"]["sections"]
    trace = body["trace"]
    assert trace["backend"] == "rules" and not trace["fallback"]
    assert {"retrieval", "generation", "total"} <= set(trace["timings_ms"])
    assert trace["shopper"] == pseudonymise("196", "page-composer")
    assert len(r.headers["x-request-id"]) >= 8

    both = client.post("/v1/pages", json={"shopper_id": "196", "seed": 3, "format": "both"})
    html = both.json()["html"]
    assert_valid_html(html)
    for section in both.json()["layout"]["sections"]:
        assert section["headline"] in html or json.dumps(section["headline"])[1:-1] in html


def test_html_page_for_a_browser(client: TestClient) -> None:
    r = client.get("/pages/196", params={"kind": "search", "q": "space adventure"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert_valid_html(r.text)
    assert r.text.count('class="section ') >= 1 and 'href="/products/' in r.text
    zh = client.get("/pages/196", params={"locale": "zh"})
    assert 'lang="zh-Hans"' in zh.text
    bad = client.get("/pages/196", params={"kind": "search"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query"


def test_unknown_shopper_and_anonymous_session_get_cold_start_pages(client: TestClient) -> None:
    r = client.post("/v1/pages", json={"shopper_id": "never-seen-before-7781"})
    assert r.status_code == 200 and r.json()["layout"]["sections"]
    anon = client.post("/v1/pages", json={"recent_items": ["1", "71", "95"], "format": "html"})
    assert anon.status_code == 200 and anon.json()["trace"]["shopper"] == "anonymous"
    assert client.post("/v1/pages", json={}).status_code == 200  # nobody at all: popular


def test_products(client: TestClient) -> None:
    r = client.get("/v1/products/1")
    assert r.status_code == 200
    assert r.json()["title"] == "Toy Story" and r.json()["year"] == 1995
    missing = client.get("/v1/products/no-such-product")
    assert missing.status_code == 404
    assert "unknown product id 'no-such-product'" in missing.json()["detail"]


def test_product_page_for_a_browser(client: TestClient) -> None:
    r = client.get("/products/1")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert_valid_html(r.text)
    assert '<h1 class="page__title product__title">Toy Story</h1>' in r.text
    assert "$12.99" in r.text and "1995" in r.text and "Animation / Children" in r.text
    assert 'class="product__back"' not in r.text  # from nowhere: no way back to offer

    # From a shopper's Chinese page: the price in that locale, a link back to that page.
    came_from = "http://testserver/pages/196?locale=zh&kind=home"
    zh = client.get("/products/1", headers={"Referer": came_from})
    assert 'lang="zh-Hans"' in zh.text and "US$12.99" in zh.text
    assert 'href="/pages/196?locale=zh&amp;kind=home"' in zh.text
    # A link from another site never becomes a link off this one.
    elsewhere = client.get("/products/1", headers={"Referer": "https://evil.example/x"})
    assert "evil.example" not in elsewhere.text
    assert 'class="product__back"' not in elsewhere.text
    assert "US$12.99" in client.get("/products/1", params={"locale": "zh"}).text

    missing = client.get("/products/no-such-product", headers={"Referer": came_from})
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert_valid_html(missing.text)
    assert "unknown product id &#39;no-such-product&#39;" in missing.text
    assert 'href="/pages/196?locale=zh&amp;kind=home"' in missing.text


def test_every_product_link_on_a_page_opens_its_product(client: TestClient) -> None:
    page = client.get("/pages/196")
    links = set(re.findall(r'class="card__link" href="([^"]+)"', page.text))
    assert len(links) >= 6
    for href in links:
        r = client.get(href, headers={"Referer": "http://testserver/pages/196"})
        product_id = href.rsplit("/", 1)[1]
        assert r.status_code == 200, href
        assert f'data-product-id="{product_id}"' in r.text
        assert 'href="/pages/196"' in r.text


def test_copy(client: TestClient) -> None:
    r = client.post("/v1/copy", json={"products": ["1", "50"], "kind": "tagline", "n": 2})
    assert r.status_code == 200
    body = r.json()
    assert body["backend"] == "rules" and len(body["variants"]) == 2
    assert all(v["text"] and v["passed"] for v in body["variants"])
    bad = client.post("/v1/copy", json={"products": ["1", "nope"]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "products[1]"
    bad = client.post("/v1/copy", json={"products": ["1"], "backend": "gpt-9"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "backend"


def test_metrics_count_requests_stages_and_cache(client: TestClient) -> None:
    client.post("/v1/pages", json={"shopper_id": "301", "seed": 9})
    client.post("/v1/pages", json={"shopper_id": "301", "seed": 9})
    text = client.get("/metrics").text
    assert 'composer_http_requests_total{method="POST",route="/v1/pages",status="200"}' in text
    assert "composer_http_request_duration_seconds_bucket" in text
    assert 'composer_page_stage_duration_seconds_count{stage="retrieval"}' in text
    for name in (
        "composer_page_cache_hits_total",
        "composer_page_cache_misses_total",
        "composer_page_cache_hit_ratio",
        "composer_page_fallbacks_total",
        "composer_page_repairs_total",
        "composer_generated_tokens_total",
        "composer_llm_queue_rejections_total",
    ):
        assert name in text, name
    assert metric(client, "composer_page_cache_hits_total") >= 1


# -- streaming -----------------------------------------------------------------------------


def test_sse_sends_retrieval_then_sections_in_order_then_page_and_done(
    ml_shop: BuiltShop,
) -> None:
    backend = ScriptedBackend("transformers", texts=[TWO_SECTIONS])
    with KeyedClient(app_for(ml_shop, backend, llm_backend="transformers")) as c:
        r = c.post(
            "/v1/pages",
            json={"shopper_id": "42", "seed": 1},
            headers={"Accept": "text/event-stream"},
        )
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(r.text)
        assert [name for name, _ in events] == ["retrieval", "section", "section", "page", "done"]
        assert events[0][1]["candidates"][0]["handle"] == "P1"
        sections = [data for name, data in events if name == "section"]
        assert [s["index"] for s in sections] == [0, 1]
        assert sections[0]["section"]["headline"] == "Stories chosen for tonight"
        assert 'data-section-kind="hero"' in sections[0]["html"]
        assert "Comedies to share with friends" in sections[1]["html"]
        page = events[3][1]
        assert [s["headline"] for s in page["layout"]["sections"]] == [
            s["section"]["headline"] for s in sections
        ]
        assert_valid_html(page["html"])
        assert page["trace"]["backend"] == "transformers" and not page["trace"]["fallback"]
        assert events[4][1]["cache"] == "miss"
        assert (
            metric(c, 'composer_generated_tokens_total{backend="transformers"}')
            == (page["trace"]["tokens"])
            > 0
        )

        # The same request again is a cache hit, replayed in the same order.
        again = parse_sse(
            c.post(
                "/v1/pages",
                json={"shopper_id": "42", "seed": 1},
                headers={"Accept": "text/event-stream"},
            ).text
        )
        assert [n for n, _ in again] == ["retrieval", "section", "section", "page", "done"]
        assert again[-1][1]["cache"] == "hit" and backend.calls == 1


def test_sse_fallback_still_completes_the_stream(ml_shop: BuiltShop) -> None:
    broken = ScriptedBackend("transformers", error="model server refused the connection")
    with KeyedClient(app_for(ml_shop, broken, llm_backend="transformers")) as c:
        r = c.post("/v1/pages", json={"shopper_id": "42"}, headers={"Accept": "text/event-stream"})
        events = parse_sse(r.text)
        names = [n for n, _ in events]
        assert names[0] == "retrieval" and names[-2:] == ["page", "done"]
        assert names.count("section") == len(events[-2][1]["layout"]["sections"]) >= 1
        assert events[-1][1]["fallback"] is True
        assert "refused" in events[-1][1]["fallback_reason"]


def test_a_copy_prompt_that_does_not_exist_gives_rules_copy_not_an_error(
    ml_shop: BuiltShop,
) -> None:
    """A deployment's mistake (COMPOSER_COPY_PROMPT naming no prompt) is not the caller's:
    the storefront gets the rules copy and the reason, as when the model is down."""
    model = ScriptedBackend("transformers", texts=["unused"])
    app = app_for(ml_shop, model, llm_backend="transformers", copy_prompt="no_such_prompt")
    with KeyedClient(app) as c:
        r = c.post("/v1/copy", json={"products": ["1"], "n": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["backend"] == "rules" and body["fallback"] is True
    assert "no_such_prompt" in body["fallback_reason"] and len(body["variants"]) == 2
    assert model.calls == 0


def test_sse_with_filters_that_match_nothing_is_a_422_not_a_stream(client: TestClient) -> None:
    r = client.post(
        "/v1/pages",
        json={"shopper_id": "42", "min_price": 5000},
        headers={"Accept": "text/event-stream"},
    )
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/json")
    assert r.json()["errors"][0]["field"] == "filters" and "widen" in r.json()["detail"]


# -- failing and slow models ---------------------------------------------------------------


def test_deadline_fallback_is_a_rules_page_not_an_error(ml_shop: BuiltShop) -> None:
    slow = ScriptedBackend("transformers", texts=['{"title":"x"' * 50], stall_s=0.05)
    app = app_for(ml_shop, slow, llm_backend="transformers", page_deadline_s=0.5)
    with KeyedClient(app) as c:
        t = time.perf_counter()
        r = c.post("/v1/pages", json={"shopper_id": "42", "format": "html"})
        assert time.perf_counter() - t < 5
        assert r.status_code == 200
        trace = r.json()["trace"]
        assert trace["fallback"] is True and "deadline" in trace["fallback_reason"]
        assert r.json()["layout"]["sections"] and r.json()["html"]
        assert metric(c, 'composer_page_fallbacks_total{reason="deadline"}') == 1
        # A fallback page is not cached: the next request tries the model again.
        c.post("/v1/pages", json={"shopper_id": "42", "format": "html"})
        assert slow.calls == 2


@pytest.mark.parametrize(
    ("backend", "reason"),
    [
        (ScriptedBackend("transformers", error="connection refused"), "connection refused"),
        (ScriptedBackend("transformers", texts=["<<garbage>>"]), "not valid JSON"),
        (ScriptedBackend("transformers", crash=True), "segfault in the tokenizer"),
    ],
    ids=["down", "garbage", "crashing"],
)
def test_a_broken_model_never_turns_into_a_5xx(
    ml_shop: BuiltShop, backend: ScriptedBackend, reason: str
) -> None:
    with KeyedClient(app_for(ml_shop, backend, llm_backend="transformers")) as c:
        for path, kwargs in (
            ("/v1/pages", {"json": {"shopper_id": "42"}}),
            ("/v1/copy", {"json": {"products": ["1", "2"], "n": 1}}),
        ):
            r = c.post(path, **kwargs)
            assert r.status_code == 200, r.text
            body = r.json()
            fallback = body.get("trace", body)
            assert fallback["fallback"] is True
            if path == "/v1/pages":
                assert reason in fallback["fallback_reason"]


def test_a_model_that_cannot_load_gives_rules_pages(ml_shop: BuiltShop, tmp_path: Path) -> None:
    # A model folder that does not exist: building the backend fails on first use.
    app = app_for(ml_shop, llm_backend="transformers", llm_model=str(tmp_path / "no-model"))
    with KeyedClient(app) as c:
        r = c.post("/v1/pages", json={"shopper_id": "42"})
        assert r.status_code == 200
        assert r.json()["trace"]["fallback_reason"].startswith("backend transformers unavailable")


def test_full_llm_queue_serves_the_rules_page_at_once(ml_shop: BuiltShop) -> None:
    slow = ScriptedBackend("transformers", texts=[TWO_SECTIONS], stall_s=0.004)
    api = ApiSettings(llm_concurrency=1, llm_max_waiting=0)
    app = app_for(ml_shop, slow, api=api, llm_backend="transformers")
    with KeyedClient(app) as c, ThreadPoolExecutor(3) as pool:

        def page(seed: int) -> tuple[float, dict[str, Any]]:
            t = time.perf_counter()
            r = c.post("/v1/pages", json={"shopper_id": "42", "seed": seed})
            assert r.status_code == 200
            return time.perf_counter() - t, r.json()["trace"]

        results = list(pool.map(page, [1, 2, 3]))
        modelled = [(s, t) for s, t in results if t["backend"] == "transformers"]
        rejected = [(s, t) for s, t in results if t["fallback_reason"] == "queue full"]
        assert len(modelled) == 1 and len(rejected) == 2
        assert all(t["backend"] == "rules" and t["fallback"] for _, t in rejected)
        # Rejected requests did not wait for the model.
        assert max(s for s, _ in rejected) < modelled[0][0]
        assert metric(c, "composer_llm_queue_rejections_total") == 2
        assert metric(c, 'composer_page_fallbacks_total{reason="queue_full"}') == 2


def test_one_key_cannot_fill_the_llm_queue_for_the_others(ml_shop: BuiltShop) -> None:
    # Two storefronts; the queue holds 4 (1 slot + 3 waiting), so each key may hold 2.
    other_key, other = new_key("storefront-b", (Scope.PAGES,))
    slow = ScriptedBackend("transformers", texts=[TWO_SECTIONS], stall_s=0.004)
    api = ApiSettings(
        llm_concurrency=1, llm_max_waiting=3, keys=[ADMIN_KEY_CONFIG, other], cache_size=0
    )
    app = app_for(ml_shop, slow, api=api, llm_backend="transformers")
    with KeyedClient(app) as c, ThreadPoolExecutor(4) as pool:

        def page(key: str, seed: int) -> dict[str, Any]:
            r = c.post(
                "/v1/pages",
                json={"shopper_id": "42", "seed": seed},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert r.status_code == 200
            return r.json()["trace"]

        flood = [pool.submit(page, ADMIN_KEY, seed) for seed in (1, 2, 3)]
        time.sleep(0.3)  # the flood holds the slot and its share of the waiting room
        fair = page(other_key, 4)
        traces = [f.result() for f in flood]
    refused = [t for t in traces if t["fallback_reason"] == "key share of the LLM queue in use"]
    assert len(refused) == 1 and refused[0]["backend"] == "rules"
    assert sum(t["backend"] == "transformers" for t in traces) == 2
    # The other storefront still got into the queue and onto the model.
    assert fair["backend"] == "transformers" and not fair["fallback"]


# -- cache ---------------------------------------------------------------------------------


def test_cache_hit_then_invalidated_by_an_event(client: TestClient, ml_shop: BuiltShop) -> None:
    shopper = "api-cache-shopper-1"
    first = client.post("/v1/pages", json={"shopper_id": shopper})
    assert first.json()["cache"] == "miss" and first.headers["x-cache"] == "miss"
    second = client.post("/v1/pages", json={"shopper_id": shopper})
    assert second.json()["cache"] == "hit"
    assert second.json()["layout"] == first.json()["layout"]
    # Different request fields are a different page.
    assert client.post("/v1/pages", json={"shopper_id": shopper, "seed": 5}).json()["cache"] == (
        "miss"
    )

    top = first.json()["trace"]["candidates"][0]["product_id"]
    r = client.post(
        "/v1/events", json={"shopper_id": shopper, "product_id": top, "kind": "purchase"}
    )
    assert r.status_code == 201
    assert r.json()["invalidated_pages"] == 2 and len(r.json()["event_ids"]) == 1
    assert r.json()["duplicates"] == 0 and "shopper" not in r.json()
    # Durable: the store has it already.
    assert [e.product_id for e in ml_shop.store.events_for(shopper)] == [top]

    after = client.post("/v1/pages", json={"shopper_id": shopper})
    assert after.json()["cache"] == "miss"
    # The next page folds the purchase in: a bought product is not offered again.
    assert top not in [c["product_id"] for c in after.json()["trace"]["candidates"]]

    # An event written behind the API's back (the CLI, another worker) changes the
    # shopper's state, so the cached page is not served either.
    assert client.post("/v1/pages", json={"shopper_id": shopper}).json()["cache"] == "hit"
    ml_shop.store.add_events([Interaction(shopper, "50", EventKind.VIEW, time.time())])
    assert client.post("/v1/pages", json={"shopper_id": shopper}).json()["cache"] == "miss"


def test_editing_the_prompt_file_retires_cached_pages(ml_shop: BuiltShop, tmp_path: Path) -> None:
    folder = tmp_path / "prompts"
    shutil.copytree(resource_dir("prompts"), folder)
    settings = settings_for(ml_shop)
    services = Services(
        settings, ml_shop.store, ml_shop.retriever, BackendRegistry(settings), PromptLibrary(folder)
    )
    body = {"shopper_id": "api-prompt-edit-shopper"}
    with KeyedClient(create_app(settings, services)) as c:
        assert c.post("/v1/pages", json=body).json()["cache"] == "miss"
        assert c.post("/v1/pages", json=body).json()["cache"] == "hit"
        prompt = folder / f"{settings.prompt}.j2"
        prompt.write_text(prompt.read_text() + "{# edited #}\n")
        edited = c.post("/v1/pages", json=body).json()
        assert edited["cache"] == "miss"
        assert edited["trace"]["prompt_hash"] == PromptLibrary(folder).file_hash(settings.prompt)


def test_events_with_several_products(client: TestClient, ml_shop: BuiltShop) -> None:
    shopper = "api-events-shopper"
    r = client.post(
        "/v1/events",
        json={"shopper_id": shopper, "product_ids": ["1", "2", "3"], "kind": "cart",
              "timestamp": 1_700_000_000},
    )  # fmt: skip
    assert r.status_code == 201 and len(r.json()["event_ids"]) == 3
    stored = ml_shop.store.events_for(shopper)
    assert [(e.product_id, e.kind.value, e.timestamp) for e in stored] == [
        (p, "cart", 1_700_000_000) for p in ("1", "2", "3")
    ]
    # All or nothing: one unknown product and nothing is written.
    bad = client.post(
        "/v1/events", json={"shopper_id": shopper, "product_ids": ["4", "no-such", "5"]}
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "product_ids[1]"
    assert "no-such" in bad.json()["detail"]
    assert len(ml_shop.store.events_for(shopper)) == 3


# -- bad requests --------------------------------------------------------------------------

PAGES = "/v1/pages"
BAD_REQUESTS = [
    # (path, raw JSON body, field named in the answer)
    (PAGES, '{"shopper_id": 42}', "shopper_id"),
    (PAGES, '{"max_sections": "many"}', "max_sections"),
    (PAGES, '{"recent_items": [1, 2]}', "recent_items[0]"),
    (PAGES, '{"recent_items": "1,2"}', "recent_items"),
    (PAGES, '{"colour": "red"}', "colour"),
    (PAGES, '{"min_price": -1}', "min_price"),
    (PAGES, '{"min_price": 20, "max_price": 5}', "max_price"),
    (PAGES, json.dumps({"shopper_id": "x" * 129}), "shopper_id"),
    (PAGES, json.dumps({"query": "q" * 201}), "query"),
    (PAGES, '{"locale": "fr"}', "locale"),
    (PAGES, '{"kind": "checkout"}', "kind"),
    (PAGES, '{"kind": "search"}', "query"),
    (PAGES, '{"max_sections": 9}', "max_sections"),
    (PAGES, '{"seed": -3}', "seed"),
    (PAGES, '{"format": "pdf"}', "format"),
    (PAGES, '{"backend": "gpt-9"}', "backend"),
    (PAGES, '{"prompt": "../../etc/passwd"}', "prompt"),
    (PAGES, '{"prompt": "no_such_prompt"}', "prompt"),
    (PAGES, '{"categories": ["Drama"], "min_price": 999}', "filters"),
    (PAGES, "", "body"),
    (PAGES, "{", "body"),
    (PAGES, "[]", "body"),
    (PAGES, "null", "body"),
    ("/v1/events", '{"product_id": "1"}', "shopper_id"),
    ("/v1/events", '{"shopper_id": "a"}', "product_id"),
    ("/v1/events", '{"shopper_id": "a", "product_id": "no-such"}', "product_id"),
    ("/v1/events", '{"shopper_id": "a", "product_id": "1", "kind": "like"}', "kind"),
    ("/v1/events", '{"shopper_id": "a", "product_id": "1", "timestamp": -5}', "timestamp"),
    ("/v1/copy", '{"products": []}', "products"),
    ("/v1/copy", '{"products": ["1"], "n": 0}', "n"),
    ("/v1/copy", '{"products": ["1"], "max_chars": 5000}', "max_chars"),
]


@pytest.mark.parametrize(("path", "body", "field"), BAD_REQUESTS)
def test_bad_requests_are_422_naming_the_field(
    client: TestClient, path: str, body: str, field: str
) -> None:
    r = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    out = r.json()
    assert out["status_code"] == 422
    assert out["errors"][0]["field"] == field, out
    assert out["detail"].startswith(f"{field}: ")
    assert out["request_id"] == r.headers["x-request-id"]


def test_oversized_body_is_413(client: TestClient) -> None:
    body = json.dumps({"shopper_id": "1", "categories": ["x" * 60] * 2000})
    assert len(body) > 64 * 1024
    r = client.post(PAGES, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["status_code"] == 413


def test_unknown_route_and_method(client: TestClient) -> None:
    r = client.get("/v2/nothing")
    assert r.status_code == 404 and r.headers["x-request-id"]
    assert client.get("/v1/pages").status_code == 405


# -- logs and request ids ------------------------------------------------------------------


def test_logs_are_json_with_request_ids_and_no_raw_shopper_ids(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    shopper = "raw-shopper-id-3f9a"
    caplog.set_level(logging.INFO, logger="composer.api")
    given = client.post(
        PAGES, json={"shopper_id": shopper}, headers={"X-Request-ID": "storefront-123"}
    )
    assert given.headers["x-request-id"] == "storefront-123"  # a caller's id is kept
    ids = {given.headers["x-request-id"]}
    for r in (
        client.get(f"/pages/{shopper}"),
        client.post(PAGES, json={"shopper_id": shopper}, headers={"Accept": "text/event-stream"}),
        client.post("/v1/events", json={"shopper_id": shopper, "product_id": "1"}),
        client.post("/v1/events", json={"shopper_id": shopper, "product_id": "nope"}),
        client.get(f"/pages/{shopper}", params={"kind": "search"}),
    ):
        assert r.headers["x-request-id"] not in ids  # one id per request
        ids.add(r.headers["x-request-id"])
    weird = client.get("/healthz", headers={"X-Request-ID": "bad id\nwith newline"})
    assert weird.headers["x-request-id"] != "bad id\nwith newline"

    lines = [JsonFormatter().format(rec) for rec in caplog.records if rec.name == "composer.api"]
    assert lines
    assert not [line for line in lines if shopper in line]
    parsed = [json.loads(line) for line in lines]
    assert ids <= {p.get("request_id") for p in parsed}
    pages = [p for p in parsed if p["msg"] == "page"]
    assert pages and {p["shopper"] for p in pages} == {pseudonymise(shopper, "page-composer")}
    access = [p for p in parsed if p["msg"] == "request"]
    assert {"/pages/{shopper_id}", "/v1/pages", "/v1/events"} <= {p["route"] for p in access}


# -- start-up ------------------------------------------------------------------------------


def test_not_ready_until_loaded_then_503_with_retry_after(tmp_path: Path) -> None:
    # Nothing built in this folder: loading fails; the process stays alive and says why.
    settings = Settings(
        artifacts_dir=tmp_path / "empty",
        cache_dir=CACHE,
        llm_backend="rules",
        api=keyed(ApiSettings()),
    )
    app = create_app(settings)
    with KeyedClient(app) as c:
        assert c.get("/healthz").status_code == 200
        app.state.api.wait_loaded(timeout=60)
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "failed"
        assert "composer setup" in ready.json()["error"]
        r = c.post(PAGES, json={"shopper_id": "1"})
        assert r.status_code == 503 and r.headers["retry-after"]


def test_services_load_in_the_background_from_settings(ml_shop: BuiltShop) -> None:
    app = create_app(settings_for(ml_shop))
    with KeyedClient(app) as c:
        assert c.get("/healthz").status_code == 200
        assert app.state.api.wait_loaded(timeout=120)
        assert c.get("/readyz").json()["status"] == "ready"
        assert c.post(PAGES, json={"shopper_id": "196"}).status_code == 200


# -- the real model ------------------------------------------------------------------------


@pytest.mark.slow
def test_real_model_page_over_http(ml_shop: BuiltShop) -> None:
    app = app_for(ml_shop, llm_backend="transformers", page_deadline_s=600.0)
    with KeyedClient(app, timeout=900) as c:
        r = c.post(PAGES, json={"shopper_id": "196", "seed": 1, "format": "both"})
        assert r.status_code == 200
        trace = r.json()["trace"]
        assert trace["backend"] == "transformers" and trace["model"] == "smollm2-135m-instruct"
        assert not trace["fallback"] and trace["attempts"]
        assert_valid_html(r.json()["html"])
        tokens = metric(c, 'composer_generated_tokens_total{backend="transformers"}')
        assert tokens == trace["tokens"]


# -- the cache and the gate on their own ---------------------------------------------------


def test_page_cache_is_lru_with_ttl_and_per_shopper_invalidation() -> None:
    from composer.api.cache import PageCache

    now = [0.0]
    cache: PageCache[str] = PageCache(max_size=2, ttl_s=10, clock=lambda: now[0])
    cache.put(("a", 1), "a1")
    cache.put(("b", 1), "b1")
    assert cache.get(("a", 1)) == "a1"  # a is now the most recently used
    cache.put(("c", 1), "c1")  # evicts b, the least recently used
    assert cache.get(("b", 1)) is None and cache.get(("a", 1)) == "a1"
    now[0] = 11.0
    assert cache.get(("a", 1)) is None  # expired
    cache.put(("a", 2), "a2")
    cache.put((None, 0), "anonymous")
    assert cache.invalidate_shopper("a") == 1
    assert cache.get(("a", 2)) is None and cache.get((None, 0)) == "anonymous"


def test_llm_gate_admits_queues_and_refuses() -> None:
    import asyncio

    from composer.api.gate import LLMGate, QueueFull

    async def scenario() -> None:
        gate = LLMGate(slots=1, max_waiting=1)
        await gate.acquire()
        waiter = asyncio.ensure_future(gate.acquire(timeout=5))
        await asyncio.sleep(0)
        assert gate.waiting == 1
        with pytest.raises(QueueFull):
            await gate.acquire()
        gate.release()  # hands the slot to the waiter
        await waiter
        assert gate.active == 1 and gate.waiting == 0
        with pytest.raises(TimeoutError):
            await gate.acquire(timeout=0.05)
        assert gate.waiting == 0
        gate.release()
        assert gate.active == 0

    asyncio.run(scenario())
