"""Who may call what: every route without a key, with a key of the wrong scope and with the
right one; signed page links (valid, expired, tampered, another shopper's) and the browser
session they open; overrides that need admin; and `serve` refusing loopback-only defaults
off loopback. The real app over the MovieLens shop, `rules` backend."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import REPO, BuiltShop
from fault_injection import ScriptedBackend
from litestar.testing import TestClient
from test_api import app_for, parse_sse

from composer.api.factory import SETTINGS_ENV, app_from_env, settings_json
from composer.api.security.exposure import UnsafeExposure, check_exposure, is_loopback
from composer.api.security.keys import KeyRing, digest, new_key
from composer.api.security.limits import TooManyRequests, WindowLimiter
from composer.api.security.links import SESSION_COOKIE, LinkError, LinkSigner
from composer.api.server import serve
from composer.settings import ApiSettings, Scope, Settings

PAGES_KEY, PAGES = new_key("storefront", (Scope.PAGES,))
EVENTS_KEY, EVENTS = new_key("events-pipeline", (Scope.EVENTS,))
ADMIN_KEY, ADMIN = new_key("engineer", (Scope.ADMIN,))
OLD_PAGES_KEY, OLD_PAGES = new_key("storefront-old", (Scope.PAGES,))  # rotation: both valid
LINK_SECRET = "a-link-secret-for-the-tests-only-0123456789"

# Every route of the app, a request that it would accept, and the scope it needs.
ROUTES: list[tuple[str, str, dict[str, Any] | None, Scope | None]] = [
    ("POST", "/v1/pages", {"shopper_id": "196"}, Scope.PAGES),
    ("POST", "/v1/page-links", {"shopper_id": "196"}, Scope.PAGES),
    ("GET", "/pages/196", None, Scope.PAGES),
    ("GET", "/v1/products/1", None, Scope.PAGES),
    ("GET", "/products/1", None, Scope.PAGES),
    ("POST", "/v1/copy", {"products": ["1"], "kind": "tagline", "n": 1}, Scope.PAGES),
    ("POST", "/v1/events", {"shopper_id": "access-tests", "product_id": "1"}, Scope.EVENTS),
    ("GET", "/metrics", None, Scope.ADMIN),
    ("GET", "/v1/experiments", None, Scope.ADMIN),
    ("GET", "/schema/openapi.json", None, Scope.ADMIN),
    ("GET", "/schema", None, Scope.ADMIN),
    ("GET", "/schema/swagger", None, Scope.ADMIN),
    ("GET", "/healthz", None, None),
    ("GET", "/readyz", None, None),
    ("GET", "/favicon.ico", None, None),
]
WRONG = {Scope.PAGES: EVENTS_KEY, Scope.EVENTS: PAGES_KEY, Scope.ADMIN: PAGES_KEY}
RIGHT = {Scope.PAGES: PAGES_KEY, Scope.EVENTS: EVENTS_KEY, Scope.ADMIN: ADMIN_KEY}


@pytest.fixture(scope="module")
def client(ml_shop: BuiltShop) -> Iterator[TestClient]:
    api = ApiSettings(keys=[PAGES, EVENTS, ADMIN, OLD_PAGES], link_secret=LINK_SECRET)
    with TestClient(app_for(ml_shop, api=api)) as c:
        yield c


def call(client: TestClient, method: str, path: str, body: Any, key: str | None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.request(method, path, json=body, headers=headers)


def test_the_table_covers_every_route_of_the_app(client: TestClient) -> None:
    served = {re.sub(r"\{(\w+):\w+\}", r"{\1}", r.path) for r in client.app.routes}
    named = {re.sub(r"/(196|1)$", "/{x}", path) for _, path, _, _ in ROUTES}
    served = {re.sub(r"\{\w+\}$", "{x}", p) for p in served}
    # The docs' asset routes (/schema/{path}, the OAuth redirect page) are admin by default.
    assert served - named <= {"/schema/{x}", "/schema/oauth2-redirect.html"}
    assert named <= served


@pytest.mark.parametrize(("method", "path", "body", "scope"), ROUTES, ids=lambda v: str(v))
def test_each_route_without_a_key_with_the_wrong_scope_and_with_the_right_one(
    client: TestClient, method: str, path: str, body: Any, scope: Scope | None
) -> None:
    if scope is None:  # public: liveness, readiness, the favicon
        assert call(client, method, path, body, None).status_code in (200, 204)
        return
    none = call(client, method, path, body, None)
    assert none.status_code == 401 and none.headers["www-authenticate"] == "Bearer"
    assert none.json()["status_code"] == 401 and scope.value in none.json()["detail"]
    unknown = call(client, method, path, body, "pck_not-a-key")
    assert unknown.status_code == 401 and "not recognised" in unknown.json()["detail"]
    wrong = call(client, method, path, body, WRONG[scope])
    assert wrong.status_code == 403, wrong.text
    assert f"lacks the '{scope.value}' scope" in wrong.json()["detail"]
    right = call(client, method, path, body, RIGHT[scope])
    assert right.status_code < 300, right.text
    if scope != Scope.ADMIN:  # admin includes the others
        assert call(client, method, path, body, ADMIN_KEY).status_code < 300


def test_rotated_keys_are_both_valid(client: TestClient) -> None:
    for key in (PAGES_KEY, OLD_PAGES_KEY):
        assert call(client, "GET", "/v1/products/1", None, key).status_code == 200


def test_overrides_need_admin(client: TestClient) -> None:
    for field, value in (("backend", "rules"), ("prompt", "page_v3"), ("order", "shuffled")):
        body = {"shopper_id": "196", field: value}
        r = call(client, "POST", "/v1/pages", body, PAGES_KEY)
        assert r.status_code == 403 and "admin" in r.json()["detail"]
        assert call(client, "POST", "/v1/pages", body, ADMIN_KEY).status_code == 200
    copy = {"products": ["1"], "kind": "tagline", "n": 1, "backend": "rules"}
    assert call(client, "POST", "/v1/copy", copy, PAGES_KEY).status_code == 403
    assert call(client, "POST", "/v1/copy", copy, ADMIN_KEY).status_code == 200


def test_readiness_details_only_for_admin(client: TestClient) -> None:
    anyone = client.get("/readyz").json()
    assert anyone["status"] == "ready" and anyone["checks"] == {}
    admin = call(client, "GET", "/readyz", None, ADMIN_KEY).json()
    assert admin["status"] == "ready" and admin["checks"]


def test_a_signed_link_opens_its_shoppers_page_and_a_session_for_product_pages(
    client: TestClient,
) -> None:
    minted = call(client, "POST", "/v1/page-links", {"shopper_id": "196"}, PAGES_KEY).json()
    assert minted["expires_at"] > time.time() + 3000
    browser = TestClient(client.app)  # no key, no cookies: a shopper's browser
    assert browser.get("/pages/196").status_code == 401  # the raw id opens nothing
    assert browser.get("/products/1").status_code == 401
    page = browser.get(minted["path"] + "&kind=home&locale=zh")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    cookie = page.headers["set-cookie"]
    assert SESSION_COOKIE in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    max_age = int(re.search(r"Max-Age=(\d+)", cookie, re.I).group(1))
    assert (
        minted["expires_at"] - time.time() - 5 <= max_age <= minted["expires_at"] - time.time() + 1
    )
    # The cards link to product pages; the session the link started opens them.
    href = re.search(r'href="(/products/[^"?]+)', page.text)
    assert href
    assert browser.get(href.group(1)).status_code == 200
    # The link is for shopper 196 only.
    other = minted["path"].replace("/pages/196?", "/pages/197?")
    assert browser.get(other).status_code == 403


def test_expired_tampered_and_over_long_links_are_403(client: TestClient) -> None:
    signer = LinkSigner(LINK_SECRET.encode(), 7 * 24 * 3600)
    expired = signer.page_link("196", 60, now=time.time() - 120)
    r = TestClient(client.app).get(expired.path())
    assert r.status_code == 403 and "expired" in r.json()["detail"]
    good = signer.page_link("196", 600)
    tampered = good.path().replace(f"exp={good.expires_at}", f"exp={good.expires_at + 3600}")
    r = TestClient(client.app).get(tampered)
    assert r.status_code == 403 and "signature" in r.json()["detail"]
    flipped = good.path()[:-1] + ("A" if good.path()[-1] != "A" else "B")
    assert TestClient(client.app).get(flipped).status_code == 403
    foreign = LinkSigner(b"another-services-secret-0123456789", 3600).page_link("196", 600)
    assert TestClient(client.app).get(foreign.path()).status_code == 403
    forever = LinkSigner(LINK_SECRET.encode(), 10**9).page_link("196", 10**8)
    r = TestClient(client.app).get(forever.path())
    assert r.status_code == 403 and "longer" in r.json()["detail"]
    browser = TestClient(client.app, cookies={SESSION_COOKIE: "9999999999.forged"})
    assert browser.get("/products/1").status_code == 403


def test_keys_are_kept_as_hashes_and_found_by_hash() -> None:
    key, config = new_key("k", (Scope.PAGES,))
    assert key not in config.model_dump_json() and config.sha256 == digest(key)
    ring = KeyRing([config, ADMIN])
    assert ring.find(key) == config and ring.find(ADMIN_KEY) == ADMIN
    assert ring.find(key + "x") is None and ring.find("") is None and ring.find(None) is None
    with pytest.raises(ValueError, match="unique"):
        KeyRing([config, config])


def test_link_signer_checks() -> None:
    signer = LinkSigner(LINK_SECRET.encode(), 3600)
    link = signer.page_link("s 1/x", 600)
    assert "/pages/s%201%2Fx?" in link.path()
    assert signer.check_page("s 1/x", str(link.expires_at), link.sig) == link.expires_at
    for exp, sig in ((None, link.sig), (str(link.expires_at), None), ("12a", link.sig)):
        with pytest.raises(LinkError):
            signer.check_page("s 1/x", exp, sig)
    with pytest.raises(ValueError, match="16 bytes"):
        LinkSigner(b"short", 60)


def test_is_loopback() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "localhost", "::1", "[::1]", "127.1.2.3"]))
    assert not any(map(is_loopback, ["0.0.0.0", "192.168.1.4", "example.com", "::"]))


def test_off_loopback_the_server_refuses_local_defaults_and_names_each() -> None:
    with pytest.raises(UnsafeExposure) as refused:
        check_exposure(Settings(), "0.0.0.0")
    message = str(refused.value)
    for variable in ("COMPOSER_API__KEYS", "COMPOSER_API__LINK_SECRET", "COMPOSER_PSEUDONYM_SALT"):
        assert variable in message
    configured = Settings(
        pseudonym_salt="p" * 40, api=ApiSettings(keys=[PAGES], link_secret=LINK_SECRET)
    )
    check_exposure(configured, "0.0.0.0")  # does not raise
    short_salt = configured.model_copy(update={"pseudonym_salt": "short"})
    with pytest.raises(UnsafeExposure, match="COMPOSER_PSEUDONYM_SALT"):
        check_exposure(short_salt, "10.0.0.1")
    check_exposure(Settings(), "127.0.0.1")  # loopback: the defaults are fine


def test_the_app_factory_started_by_hand_demands_what_an_exposed_server_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `uvicorn --factory composer.api.factory:app_from_env --host 0.0.0.0` bypasses `serve`:
    # the factory cannot see the address, so it refuses loopback-only defaults anywhere.
    for name in [k for k in os.environ if k.startswith("COMPOSER_")]:
        monkeypatch.delenv(name)
    with pytest.raises(UnsafeExposure, match="COMPOSER_API__KEYS"):
        app_from_env()
    # `serve`'s own workers get their (already checked) settings through the environment.
    monkeypatch.setenv(SETTINGS_ENV, settings_json(Settings()))
    assert app_from_env() is not None


def test_the_server_process_refuses_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSER_")}
    argv = [sys.executable, "-m", "composer.api.server", "--host", "0.0.0.0", "--port", "1"]
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: refusing to serve on 0.0.0.0")
    assert "Traceback" not in done.stderr


def test_on_loopback_without_keys_serve_makes_a_key_for_the_run(
    monkeypatch: pytest.MonkeyPatch, ml_shop: BuiltShop
) -> None:
    # uvicorn itself is not started: serve() is stopped where it would hand over.
    import uvicorn

    started: dict[str, Any] = {}

    def run(app: Any, **kwargs: Any) -> None:
        started["app"], started["options"] = app, kwargs

    monkeypatch.setattr(uvicorn, "run", run)
    lines: list[str] = []
    settings = Settings(artifacts_dir=ml_shop.settings.artifacts_dir, llm_backend="rules")
    serve(settings, "127.0.0.1", 8123, announce=lines.append)
    key = re.search(r"API key for this run \(all scopes\): (pck_\S+)", lines[0])
    assert key
    link = re.search(r"http://127\.0\.0\.1:8123(/pages/\S+)", lines[1])
    assert link
    assert started["options"]["limit_concurrency"] == settings.api.max_connections
    access = started["app"].state.api.access
    assert access.keys.find(key.group(1)).allows(Scope.ADMIN)
    shopper = link.group(1).split("?")[0].removeprefix("/pages/")
    exp, sig = re.search(r"exp=(\d+)&sig=(\S+)", link.group(1)).groups()
    assert access.links.check_page(shopper, exp, sig)


# -- honest events -------------------------------------------------------------------------


def test_a_far_future_event_is_422_naming_the_timestamp(client: TestClient) -> None:
    body = {"shopper_id": "events-future", "product_id": "1", "timestamp": time.time() + 86400}
    r = call(client, "POST", "/v1/events", body, EVENTS_KEY)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "timestamp"
    assert "ahead of this server's clock" in r.json()["detail"]
    body["timestamp"] = time.time() + 60  # within the skew: a storefront's clock runs fast
    assert call(client, "POST", "/v1/events", body, EVENTS_KEY).status_code == 201


def test_a_retried_call_records_nothing_twice(client: TestClient) -> None:
    body = {"shopper_id": "events-retry", "product_ids": ["1", "2"], "timestamp": 1.7e9}
    first = call(client, "POST", "/v1/events", body, EVENTS_KEY).json()
    assert len(first["event_ids"]) == 2 and first["duplicates"] == 0
    again = call(client, "POST", "/v1/events", body, EVENTS_KEY).json()
    assert again["event_ids"] == [] and again["duplicates"] == 2
    assert "shopper" not in again  # no pseudonym handed out for an id the caller chose


def test_a_flood_for_one_shopper_is_429_with_retry_after(client: TestClient) -> None:
    limit = ApiSettings().events_per_minute_per_shopper
    ids = [str(n) for n in range(1, 101)]
    statuses = []
    for n in range(limit // 100 + 1):
        body = {"shopper_id": "events-flood", "product_ids": ids, "timestamp": 1.6e9 + n}
        r = call(client, "POST", "/v1/events", body, EVENTS_KEY)
        statuses.append(r.status_code)
    assert statuses == [201] * (limit // 100) + [429]
    assert 0 < int(r.headers["retry-after"]) <= 60 and "per shopper" in r.json()["detail"]
    # Another shopper is not held back by this one.
    other = {"shopper_id": "events-calm", "product_id": "1"}
    assert call(client, "POST", "/v1/events", other, EVENTS_KEY).status_code == 201


def test_bodies_must_be_declared_json(client: TestClient) -> None:
    # A cross-site form post (text/plain needs no preflight) must not record events.
    raw = '{"shopper_id": "events-form", "product_id": "1"}'
    for media in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Authorization": f"Bearer {EVENTS_KEY}"}
        if media:
            headers["Content-Type"] = media
        r = client.post("/v1/events", content=raw, headers=headers)
        assert r.status_code == 415 and "application/json" in r.json()["detail"]


def test_window_limiter_counts_units_and_resets() -> None:
    limiter = WindowLimiter("things", limit=5, window_s=60)
    limiter.take("a", 3, now=0.0)
    limiter.take("a", 2, now=10.0)
    with pytest.raises(TooManyRequests) as refused:
        limiter.take("a", 1, now=20.0)
    assert refused.value.headers == {"Retry-After": "40"}
    limiter.take("b", 5, now=20.0)  # keys are separate
    limiter.take("a", 5, now=61.0)  # a new window


def test_only_servable_prompts_and_served_backends_can_be_chosen(client: TestClient) -> None:
    for prompt in ("page_broken_prices", "judge_v1", "repair_v1"):
        body = {"shopper_id": "196", "prompt": prompt}
        r = call(client, "POST", "/v1/pages", body, ADMIN_KEY)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "prompt"
        assert "not a servable page prompt" in r.json()["detail"]
    # This deployment serves `rules`: asking for a model backend must not load one.
    for backend in ("transformers", "vllm"):
        r = call(client, "POST", "/v1/pages", {"shopper_id": "196", "backend": backend}, ADMIN_KEY)
        assert r.status_code == 422 and "not served here" in r.json()["detail"]
        copy = {"products": ["1"], "n": 1, "backend": backend}
        assert call(client, "POST", "/v1/copy", copy, ADMIN_KEY).status_code == 422


def test_a_storefront_gets_reason_codes_and_an_admin_the_details(ml_shop: BuiltShop) -> None:
    # A model backend that fails with an internal address in its error (as a vLLM
    # connection error does); the page falls back to rules either way.
    failing = ScriptedBackend("transformers", error="connect to http://10.0.0.7:8100/v1 refused")
    api = ApiSettings(keys=[PAGES, ADMIN], link_secret=LINK_SECRET)
    app = app_for(ml_shop, failing, llm_backend="transformers", api=api)
    body = {"shopper_id": "196", "seed": 5}
    with TestClient(app) as c:
        shop = call(c, "POST", "/v1/pages", body, PAGES_KEY).json()["trace"]
        admin = call(c, "POST", "/v1/pages", {**body, "seed": 6}, ADMIN_KEY).json()["trace"]
        stream = c.post(
            "/v1/pages",
            json={**body, "seed": 7},
            headers={"Authorization": f"Bearer {PAGES_KEY}", "Accept": "text/event-stream"},
        )
    assert shop["fallback"] and shop["fallback_reason"] == "backend_unavailable"
    assert "10.0.0.7" not in json.dumps(shop)
    assert not {"attempts", "shopper", "words", "repairs"} & set(shop)
    assert shop["candidates"] and "reason" in shop["candidates"][0]
    assert "10.0.0.7" in json.dumps(admin) and admin["shopper"].startswith("s_")
    page_events = [data for name, data in parse_sse(stream.text) if name == "page"]
    assert page_events and "10.0.0.7" not in json.dumps(page_events)


def test_one_key_cannot_fill_the_llm_queue_for_everyone(ml_shop: BuiltShop) -> None:
    api = ApiSettings(
        keys=[PAGES, OLD_PAGES], link_secret=LINK_SECRET, requests_per_minute_per_key=3
    )
    with TestClient(app_for(ml_shop, api=api)) as c:
        statuses = [
            call(c, "POST", "/v1/pages", {"shopper_id": "196", "seed": n}, PAGES_KEY).status_code
            for n in range(3)
        ]
        copy = call(c, "POST", "/v1/copy", {"products": ["1"], "n": 1}, PAGES_KEY)
        assert statuses == [200, 200, 200] and copy.status_code == 429
        assert int(copy.headers["retry-after"]) > 0 and "per API key" in copy.json()["detail"]
        # Another key (another storefront) is served as before.
        other = call(c, "POST", "/v1/pages", {"shopper_id": "196"}, OLD_PAGES_KEY)
        assert other.status_code == 200
