"""Keep kept-alive connections spread evenly over the workers.

The kernel hands each new connection to one worker's ``SO_REUSEPORT`` socket by a hash of
its addresses, so a client's pool of 16 connections often lands 12 on one worker and 4 on the
other (measured: 3/13 to 8/8 over eight pools), and the requests of the 12 wait three times
as long. Nothing moves a connection once it is accepted. So every worker publishes its number
of open connections in an array shared by all workers, and a worker that has more than
``MARGIN`` above the worker with the fewest answers with ``Connection: close``: the client
opens a new connection, which the hash sends to any worker. Only the busier worker sheds
connections, so the spread converges instead of churning. (Requests in flight would be the
wrong count: an overloaded worker has not yet read the requests waiting on its sockets.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from litestar.types import ASGIApp, Message, Receive, Scope, Send

MARGIN = 1  # connections above the worker with the fewest that are still fine


class SharedCounts(Protocol):
    """``multiprocessing.Array("i", workers)``: one slot per worker, each written only by
    its own worker (so no lock)."""

    def __getitem__(self, index: Any) -> Any: ...
    def __setitem__(self, index: int, value: int) -> None: ...
    def __len__(self) -> int: ...


class LoadShare:
    """This worker's slot in the shared counts."""

    def __init__(self, counts: SharedCounts, index: int, connections: Callable[[], int]) -> None:
        self.counts = counts
        self.index = index
        self.connections = connections  # this worker's open connections, now
        counts[index] = 0  # a restarted worker does not inherit its predecessor's count

    def overloaded(self) -> bool:
        """Publish this worker's count; whether it is above the fewest by more than MARGIN."""
        self.counts[self.index] = mine = self.connections()
        counts: Sequence[int] = self.counts[:]
        return mine > min(counts) + MARGIN


def balanced(app: ASGIApp, share: LoadShare) -> ASGIApp:
    """``app`` answering ``Connection: close`` while this worker holds too many connections."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and share.overloaded():
                headers = [*message.get("headers", ()), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_closing)

    return wrapped
