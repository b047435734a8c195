"""Workers shed kept-alive connections only while they have more requests in flight than the
least busy worker (real shared-memory counts, a real ASGI app)."""

from __future__ import annotations

import asyncio
import multiprocessing

from litestar import Litestar, get

from composer.api.balance import MARGIN, LoadShare, balanced


@get("/")
async def hello() -> str:
    return "hi"


def response_headers(share: LoadShare) -> dict[bytes, bytes]:
    app = balanced(Litestar([hello]), share)
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 200
    return dict(start["headers"])


def test_only_the_overloaded_worker_closes_connections() -> None:
    counts = multiprocessing.get_context("spawn").Array("i", 2)
    counts[0] = 7  # left over from a worker that died: the new one starts from zero
    mine, other = LoadShare(counts, 0), LoadShare(counts, 1)
    assert counts[:] == [0, 0]

    assert b"connection" not in response_headers(mine)
    assert counts[:] == [0, 0]  # counted while in flight only

    for _ in range(MARGIN - 1):  # requests still running on this worker
        mine.enter()
    assert b"connection" not in response_headers(mine)  # MARGIN in flight with this one
    mine.enter()
    assert response_headers(mine)[b"connection"] == b"close"  # MARGIN + 1: move elsewhere

    for _ in range(MARGIN):  # the other worker is as busy: no reason to move
        other.enter()
    assert b"connection" not in response_headers(mine)
    assert counts[:] == [MARGIN, MARGIN]
