"""The real server process (`python -m composer.api.server`, i.e. `serve()` under uvicorn) on
a free loopback port over the MovieLens shop, spoken to over HTTP; and SSE timing through a
real uvicorn server, where sections must arrive while the model is still writing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import CACHE, REPO, BuiltShop
from test_api import (
    ADMIN_KEY,
    ADMIN_KEY_CONFIG,
    TWO_SECTIONS,
    ScriptedBackend,
    app_for,
    assert_valid_html,
    parse_sse,
)

from retrieval.profile import pseudonymise

READY_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


@dataclass
class Server:
    url: str
    log: Path
    process: subprocess.Popen[bytes]

    def page_link(self, shopper: str) -> str:
        """A signed link to ``shopper``'s page, as a storefront would mint it."""
        r = httpx.post(f"{self.url}/v1/page-links", json={"shopper_id": shopper}, headers=AUTH)
        assert r.status_code == 201, r.text
        return str(self.url + r.json()["path"])

    def log_lines(self) -> list[str]:
        return self.log.read_text(encoding="utf-8", errors="replace").splitlines()


@contextmanager
def running_server(
    artifacts: Path, log_dir: Path, workers: int = 1, **env_overrides: str
) -> Iterator[Server]:
    """`python -m composer.api.server` over ``artifacts`` with the rules backend (unless
    ``env_overrides`` say otherwise); waits for
    /readyz, and stops the process with SIGTERM afterwards (asserting a clean exit)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSER_")}
    env.update(
        COMPOSER_ARTIFACTS_DIR=str(artifacts),
        COMPOSER_CACHE_DIR=str(CACHE),
        COMPOSER_LLM_BACKEND="rules",
        COMPOSER_FUSION__TUNE="false",
        HF_HUB_OFFLINE="1",
        COMPOSER_API__KEYS=json.dumps([ADMIN_KEY_CONFIG.model_dump(mode="json")]),
    )
    env.update(env_overrides)
    log = log_dir / f"server-{port}.log"
    argv = [sys.executable, "-m", "composer.api.server", "--port", str(port)]
    argv += ["--workers", str(workers)]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", log, process)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                tail = "\n".join(server.log_lines()[-30:])
                pytest.fail(f"server exited with {process.returncode}:\n{tail}")
            try:
                if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not ready after {READY_TIMEOUT_S} s")
            time.sleep(0.25)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                pytest.fail("server did not stop within 30 s of SIGTERM")
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert process.returncode in (0, -signal.SIGTERM), "\n".join(server.log_lines()[-30:])
    assert any("Application shutdown complete" in line for line in server.log_lines())


def test_the_real_server_answers_every_endpoint(ml_shop: BuiltShop, tmp_path: Path) -> None:
    shopper = "server-shopper-8c1d"
    with (
        running_server(ml_shop.settings.artifacts_dir, tmp_path) as server,
        httpx.Client(base_url=server.url, timeout=60, headers=AUTH) as http,
    ):
        assert http.get("/healthz").json() == {"status": "alive"}
        ready = http.get("/readyz").json()
        assert ready["status"] == "ready" and ready["checks"]["llm_backend"] == "rules"
        assert http.get("/schema").status_code == 200
        assert "/v1/pages" in http.get("/schema/openapi.json").json()["paths"]

        # JSON page, then the same page from the cache.
        first = http.post("/v1/pages", json={"shopper_id": shopper, "format": "both"})
        assert first.status_code == 200 and first.headers["x-request-id"]
        body = first.json()
        assert body["cache"] == "miss" and body["layout"]["sections"]
        assert_valid_html(body["html"])
        assert (
            http.post("/v1/pages", json={"shopper_id": shopper, "format": "both"}).json()["cache"]
            == "hit"
        )

        # Server-sent events, read as they come.
        names = []
        with http.stream(
            "POST",
            "/v1/pages",
            json={"shopper_id": "196", "kind": "search", "query": "space adventure"},
            headers={"Accept": "text/event-stream"},
        ) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            text = "\n".join(r.iter_lines())
        events = parse_sse(text + "\n\n")
        names = [n for n, _ in events]
        n_sections = len(events[-2][1]["layout"]["sections"])
        assert names == ["retrieval"] + ["section"] * n_sections + ["page", "done"]
        assert [d["index"] for n, d in events if n == "section"] == list(range(n_sections))

        # Browser page.
        html = http.get(f"/pages/{shopper}")
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        assert_valid_html(html.text)

        # Events: durable, invalidate the cache.
        top = body["trace"]["candidates"][0]["product_id"]
        ev = http.post(
            "/v1/events", json={"shopper_id": shopper, "product_id": top, "kind": "purchase"}
        )
        assert ev.status_code == 201 and ev.json()["invalidated_pages"] >= 1
        assert [e.product_id for e in ml_shop.store.events_for(shopper)] == [top]
        after = http.post("/v1/pages", json={"shopper_id": shopper, "format": "both"}).json()
        assert after["cache"] == "miss"
        assert top not in [c["product_id"] for c in after["trace"]["candidates"]]

        # Copy and products.
        copy = http.post("/v1/copy", json={"products": ["1", "2"], "n": 2})
        assert copy.status_code == 200 and len(copy.json()["variants"]) == 2
        assert http.get("/v1/products/1").json()["title"] == "Toy Story"
        assert http.get("/v1/products/nope").status_code == 404

        # Bad input.
        bad = http.post("/v1/pages", json={"shopper_id": shopper, "min_price": -2})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "min_price"
        huge = http.post(
            "/v1/pages",
            content=b'{"query": "' + b"x" * 70_000 + b'"}',
            headers={"Content-Type": "application/json"},
        )
        assert huge.status_code == 413

        metrics = http.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert "composer_page_cache_hits_total 1.0" in metrics.text
        assert 'composer_page_stage_duration_seconds_count{stage="retrieval"}' in metrics.text

    # Logs: JSON lines, with request ids, never the raw shopper id.
    lines = server.log_lines()
    parsed = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(parsed) >= len(lines) - 2, lines[:5]  # everything the server logs is JSON
    assert not [line for line in lines if shopper in line]
    requests = [p for p in parsed if p["msg"] == "request"]
    assert {"/v1/pages", "/pages/{shopper_id}", "/v1/events"} <= {p["route"] for p in requests}
    assert all(p.get("request_id") for p in requests)


@pytest.mark.slow
def test_several_workers(ml_shop: BuiltShop, tmp_path: Path) -> None:
    with (
        running_server(ml_shop.settings.artifacts_dir, tmp_path, workers=2) as server,
        httpx.Client(base_url=server.url, timeout=60, headers=AUTH) as http,
    ):
        # /readyz answered from one worker; wait until the other has loaded its services too.
        deadline = time.monotonic() + READY_TIMEOUT_S
        while len(loaded_pids(server)) < 2:
            assert time.monotonic() < deadline, "the second worker did not load"
            time.sleep(0.25)
        for n in range(6):
            r = http.post("/v1/pages", json={"shopper_id": "196", "seed": n})
            assert r.status_code == 200 and r.json()["layout"]["sections"]

        # 16 connections kept open and opened in one burst, like a storefront's pool: both
        # workers get some (with one shared listening socket, one worker took them all), and
        # an uneven spread from the kernel's hash evens out (the busier worker closes
        # connections; the client reopens them).
        already = len(server.log_lines())
        with (
            httpx.Client(
                base_url=server.url,
                timeout=60,
                headers=AUTH,
                limits=httpx.Limits(max_connections=16),
            ) as pool,
            ThreadPoolExecutor(16) as threads,
        ):
            bodies = [{"shopper_id": "42", "seed": 1000 + n} for n in range(240)]
            answers = list(threads.map(lambda b: pool.post("/v1/pages", json=b), bodies))
        assert all(r.status_code == 200 for r in answers)
        logs = [json.loads(line) for line in server.log_lines()[already:] if line[:1] == "{"]
        pids = [p["pid"] for p in logs if p["msg"] == "page"]
        assert len(set(pids)) == 2
        later = Counter(pids[-120:])  # after the first connections have moved
        assert min(later.values()) >= 0.3 * 120, later

        # Both workers keep this shopper's history in memory; a purchase recorded through
        # either one is in every later page, whichever worker makes it.
        shopper = "workers-shopper-51"
        views = {"shopper_id": shopper, "product_ids": ["1", "71", "95"], "kind": "view"}
        assert http.post("/v1/events", json=views).status_code == 201
        first = pages_from_both_workers(server, shopper, seeds=range(0, 60))
        top = first[0]["trace"]["candidates"][0]["product_id"]
        bought = {"shopper_id": shopper, "product_id": top, "kind": "purchase"}
        assert http.post("/v1/events", json=bought).status_code == 201
        for page in pages_from_both_workers(server, shopper, seeds=range(100, 160)):
            assert top not in [c["product_id"] for c in page["trace"]["candidates"]]
    started = [line for line in server.log_lines() if "Started server process" in line]
    assert len(started) == 2


def pages_from_both_workers(server: Server, shopper: str, seeds: range) -> list[dict]:
    """Pages for ``shopper``, each on a new connection, until both workers have made one (the
    page log lines say which process made each page)."""
    pseudonym = pseudonymise(shopper, "page-composer")
    already = len(server.log_lines())
    pages = []
    for seed in seeds:
        with httpx.Client(
            base_url=server.url, timeout=60, headers=AUTH
        ) as http:  # a new connection
            r = http.post("/v1/pages", json={"shopper_id": shopper, "seed": seed})
        assert r.status_code == 200 and r.json()["cache"] == "miss"
        pages.append(r.json())
        lines = server.log_lines()[already:]
        logs = [json.loads(line) for line in lines if line.startswith("{")]
        pids = {p["pid"] for p in logs if p["msg"] == "page" and p.get("shopper") == pseudonym}
        if len(pids) == 2 and len(pages) >= 2:
            return pages
    pytest.fail(f"{len(seeds)} new connections did not reach both workers")


def loaded_pids(server: Server) -> set[int]:
    logs = [json.loads(line) for line in server.log_lines() if line.startswith("{")]
    return {p["pid"] for p in logs if p["msg"] == "services loaded"}


@contextmanager
def uvicorn_in_thread(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_sse_sections_arrive_while_the_model_is_still_writing(ml_shop: BuiltShop) -> None:
    # ~300 characters at 4 ms each: the model takes over a second for the whole page.
    slow = ScriptedBackend("transformers", texts=[TWO_SECTIONS], stall_s=0.004)
    app = app_for(ml_shop, slow, llm_backend="transformers")
    arrivals: list[tuple[str, float]] = []
    with (
        uvicorn_in_thread(app) as url,
        httpx.Client(base_url=url, timeout=60, headers=AUTH) as http,
    ):
        t = time.perf_counter()
        with http.stream(
            "POST",
            "/v1/pages",
            json={"shopper_id": "42"},
            headers={"Accept": "text/event-stream"},
        ) as r:
            for line in r.iter_lines():
                if line.startswith("event:"):
                    arrivals.append((line[6:].strip(), time.perf_counter() - t))
    assert [n for n, _ in arrivals] == ["retrieval", "section", "section", "page", "done"]
    at = dict(arrivals[:2])
    page_at = arrivals[3][1]
    # The first section is out well before the page: it was sent, not buffered.
    assert at["section"] < page_at - 0.3
    assert at["retrieval"] < at["section"]
