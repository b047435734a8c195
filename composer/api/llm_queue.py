"""Admission to the LLM, shared by pages and copy: which backend a request may use, the
bounded queue in front of it, each key's share of that queue, and the worker thread a job
then runs in.

A request that gets no slot is not refused: its job runs at once with a ``forced`` reason,
and the job serves the rules answer saying why (see :mod:`composer.fallback`):

- every slot busy and the waiting room full: ``QUEUE_FULL`` (see the gate's docstring for
  why not 503);
- with several API keys, one key holding its share of the queue (``llm_share_per_key``):
  ``KEY_SHARE``, so one caller cannot fill the queue for all;
- a request waits for a slot at most the page deadline (``Settings.page_deadline_s``); the
  time it waited is taken off the deadline its job then gets, so the deadline holds for the
  whole request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

from composer.api.errors import FieldError
from composer.api.gate import LLMGate, QueueFull
from composer.api.metrics import ApiMetrics
from composer.api.threads import submit
from composer.settings import ApiSettings, BackendName, Settings

T = TypeVar("T")

QUEUE_FULL = "queue full"
KEY_SHARE = "key share of the LLM queue in use"


class LLMQueue:
    def __init__(
        self,
        settings: Settings,
        api: ApiSettings,
        metrics: ApiMetrics,
        executor: Callable[[], Executor],
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.executor = executor
        self.gate = LLMGate(api.llm_slots(settings.llm_backend), api.llm_max_waiting)
        self.cap_per_key = api.llm_cap_per_key(settings.llm_backend)
        self.held: dict[str, int] = {}  # key id -> its requests in the gate (event loop only)

    def served_backend(self, requested: BackendName | None) -> BackendName:
        """The backend a request runs on: the deployment's, or ``rules``. Another would
        load a model (or call a server) this deployment does not run, inside a lock every
        page waits on."""
        served = self.settings.llm_backend
        backend = requested or served
        if backend not in (served, BackendName.RULES):
            raise FieldError(
                "backend", f"'{backend}' is not served here; use '{served}' or 'rules'"
            )
        return backend

    async def run(
        self,
        backend: BackendName,
        job: Callable[[float, str | None], T],
        caller: str | None = None,
    ) -> T:
        """Run ``job(deadline_left, forced_reason)`` in a worker thread, behind the gate
        unless ``backend`` is ``rules``; ``forced_reason`` set means: serve rules, say why.
        ``caller``: the API key's id, for its share of the queue."""
        holds, deadline, forced = await self._admit(backend, caller)
        try:
            fut = submit(self.executor(), job, deadline, forced)
        except BaseException:
            if holds:
                self._release(caller)
            raise

        def done(f: asyncio.Future[T]) -> None:
            if not f.cancelled():
                f.exception()  # retrieved here too: the awaiting request may be gone
            if holds:
                # Released when the thread is done, not when the client goes away.
                self._release(caller)

        fut.add_done_callback(done)
        return await asyncio.shield(fut)

    async def _admit(
        self, backend: BackendName, caller: str | None
    ) -> tuple[bool, float, str | None]:
        """(holds a slot, deadline left, forced fallback reason)."""
        deadline = self.settings.page_deadline_s
        if backend == BackendName.RULES:
            return False, deadline, None
        cap = self.cap_per_key
        if caller is not None and cap is not None and self.held.get(caller, 0) >= cap:
            self.metrics.queue_rejections.inc()
            return False, deadline, KEY_SHARE
        self._hold(caller, +1)
        t = time.monotonic()
        try:
            await self.gate.acquire(timeout=deadline)
        except QueueFull:
            self._hold(caller, -1)
            self.metrics.queue_rejections.inc()
            return False, deadline, QUEUE_FULL
        except TimeoutError:
            self._hold(caller, -1)
            return False, deadline, f"deadline of {deadline:g} s reached while queued for the LLM"
        except BaseException:
            self._hold(caller, -1)
            raise
        finally:
            self._gauges()
        return True, deadline - (time.monotonic() - t), None

    def _hold(self, caller: str | None, change: int) -> None:
        if caller is None:
            return
        held = self.held.get(caller, 0) + change
        if held > 0:
            self.held[caller] = held
        else:
            self.held.pop(caller, None)

    def _release(self, caller: str | None) -> None:
        self.gate.release()
        self._hold(caller, -1)
        self._gauges()

    def _gauges(self) -> None:
        self.metrics.queue_waiting.set(self.gate.waiting)
        self.metrics.llm_active.set(self.gate.active)
