"""Keep kept-alive connections spread evenly over the workers.

The kernel hands each new connection to one worker's ``SO_REUSEPORT`` socket by a hash of
its addresses, so a client's pool of 16 connections often lands 12 on one worker and 4 on the
other (measured: 3/13 to 8/8 over eight pools), and the requests of the 12 wait three times
as long. Nothing moves a connection once it is accepted. So every worker counts its
requests in flight in an array shared by all workers, and a worker that has more than
``MARGIN`` above the least busy one answers with ``Connection: close``: the client opens a
new connection, which the hash sends to any worker. Only the heavier worker sheds
connections, so the spread converges instead of churning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from litestar.types import ASGIApp, Message, Receive, Scope, Send

MARGIN = 2  # requests in flight above the least busy worker that are still fine


class SharedCounts(Protocol):
    """``multiprocessing.Array("i", workers)``: one slot per worker, and its lock."""

    def __getitem__(self, index: int) -> int: ...
    def __setitem__(self, index: int, value: int) -> None: ...
    def __len__(self) -> int: ...
    def get_lock(self) -> Any: ...


class LoadShare:
    """This worker's slot in the shared counts."""

    def __init__(self, counts: SharedCounts, index: int) -> None:
        self.counts = counts
        self.index = index
        with counts.get_lock():
            counts[index] = 0  # a restarted worker does not inherit its predecessor's count

    def _add(self, delta: int) -> None:
        with self.counts.get_lock():
            self.counts[self.index] += delta

    def enter(self) -> None:
        self._add(1)

    def leave(self) -> None:
        self._add(-1)

    def overloaded(self) -> bool:
        counts: Sequence[int] = self.counts[:]  # type: ignore[index]
        return counts[self.index] > min(counts) + MARGIN


def balanced(app: ASGIApp, share: LoadShare) -> ASGIApp:
    """``app`` with its HTTP requests counted, closing connections while overloaded."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        share.enter()

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and share.overloaded():
                headers = [*message.get("headers", ()), (b"connection", b"close")]
                message = {**message, "headers": headers}  # type: ignore[typeddict-item]
            await send(message)

        try:
            await app(scope, receive, send_closing)
        finally:
            share.leave()

    return wrapped
