"""The bounded queue in front of the LLM.

``slots`` jobs run at once (one for the in-process transformers model, which serialises on
one lock anyway; more for vLLM, which batches); at most ``max_waiting`` requests wait for a
slot. A request arriving when every slot is busy and the waiting room is full is not queued
and not refused: the caller serves the deterministic ``rules`` page at once, with
``trace.fallback_reason = "queue full"``. A shopper always gets a page quickly, the storefront
never has to retry, and the LLM's queue cannot grow without bound. (The alternative the issue
allows, 503 with ``Retry-After``, would push the retry onto every storefront.)

The gate lives on the event loop: acquiring awaits a future, it never blocks a thread. A slot
is released by the owner when its worker thread finishes (not when the client goes away), so
an abandoned generation still counts until the model is free again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class QueueFull(Exception):
    """Every LLM slot is busy and the waiting room is full."""


class LLMGate:
    def __init__(self, slots: int, max_waiting: int) -> None:
        if slots < 1:
            raise ValueError("an LLM gate needs at least one slot")
        self.slots = slots
        self.max_waiting = max_waiting
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(1 for f in self._waiters if not f.done())

    @property
    def busy(self) -> bool:
        """A job holds a slot or waits for one. Readable from any thread (two reads of
        values the loop replaces whole; a waiter just given up may still count)."""
        return self.active > 0 or len(self._waiters) > 0

    async def acquire(self, timeout: float | None = None) -> None:
        """Take a slot; raises :class:`QueueFull` at once, or ``TimeoutError`` after waiting
        ``timeout`` seconds. The caller must :meth:`release` exactly once after success."""
        if self.active < self.slots and not self._waiters:
            self.active += 1
            return
        if self.waiting >= self.max_waiting:
            raise QueueFull
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            done, _ = await asyncio.wait({fut}, timeout=timeout)
        except BaseException:  # cancelled while waiting: hand back a slot we may have got
            if fut.done() and not fut.cancelled():
                self.release()
            else:
                fut.cancel()
                self._discard(fut)
            raise
        if not done:
            fut.cancel()
            self._discard(fut)
            raise TimeoutError
        # A releaser handed its slot straight to this waiter (active was not decremented).

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.active = max(0, self.active - 1)

    def _discard(self, fut: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(fut)
