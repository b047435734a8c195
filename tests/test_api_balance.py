"""A worker sheds kept-alive connections only while it holds more than the worker with the
fewest (real shared-memory counts, a real ASGI app)."""

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
    open_here = {"n": 1}
    mine = LoadShare(counts, 0, lambda: open_here["n"])
    assert counts[:] == [0, 0]

    # The other worker has published nothing yet (0): one connection more is fine.
    assert b"connection" not in response_headers(mine)
    assert counts[:] == [1, 0]  # published on the way

    open_here["n"] = MARGIN + 1
    assert response_headers(mine)[b"connection"] == b"close"

    counts[1] = 2  # the other worker now holds connections too: no reason to move
    assert b"connection" not in response_headers(mine)
    assert counts[:] == [MARGIN + 1, 2]
