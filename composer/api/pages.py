"""Pages over HTTP: the page cache, the LLM gate and the worker threads around the composer.

The composer is synchronous and CPU-bound. Every page is made in a worker thread of the
app's pool; the event loop only awaits. Streamed pages come out of the thread through an
asyncio queue, event by event, as the composer yields them (a section once sent is final).

LLM pages pass the :class:`~composer.api.gate.LLMGate`. What happens around it:

- every slot busy and the waiting room full: the ``rules`` page, at once, with
  ``trace.fallback_reason = "queue full"`` (see the gate's docstring for why not 503);
- with several API keys, one key holding its share of the queue (``llm_share_per_key``)
  gets the rules page at once (``KEY_SHARE``): one caller cannot fill the queue for all;
- a request waits for a slot at most the page deadline (``Settings.page_deadline_s``); the
  time it waited is taken off the deadline the composer then gets, so the deadline holds for
  the whole request; if it runs out in the queue, the rules page says so;
- the backend cannot be built (model missing) or fails in a way the composer does not
  handle: the rules page, with the reason. Deadline, errors and garbage during generation are
  the composer's own fallbacks. None of these is a 5xx.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

from composer.api.cache import PageCache, PageKey, page_key
from composer.api.config import ApiSettings
from composer.api.errors import FieldError
from composer.api.gate import LLMGate, QueueFull
from composer.api.metrics import ApiMetrics
from composer.api.security.redaction import for_caller
from composer.api.services import Services
from composer.errors import ComposerError, UsageError
from composer.layout import Locale
from composer.page_request import PageRequest
from composer.pipeline import (
    DoneEvent,
    PageComposer,
    PageEvent,
    PageResult,
    RetrievalEvent,
    SectionEvent,
)
from retrieval.profile import pseudonymise

log = logging.getLogger("composer.api")
T = TypeVar("T")

QUEUE_FULL = "queue full"
KEY_SHARE = "key share of the LLM queue in use"


@dataclass(frozen=True)
class Plan:
    """What a request resolves to before any page work: backend, prompt, cache key."""

    request: PageRequest
    backend: str
    key: PageKey


@dataclass(frozen=True)
class StreamItem:
    """One server-sent event: its name, its JSON data, and the page with the last one."""

    event: str
    data: str
    result: PageResult | None = None


def mark_fallback(result: PageResult, reason: str) -> PageResult:
    result.trace.fallback = True
    result.trace.fallback_reason = reason
    return result


class PageService:
    def __init__(
        self,
        services: Services,
        api: ApiSettings,
        metrics: ApiMetrics,
        executor: Callable[[], Executor],
    ) -> None:
        self.services = services
        self.settings = services.settings
        self.api = api
        self.metrics = metrics
        self.executor = executor
        self.cache: PageCache[PageResult] = PageCache(api.cache_size, api.cache_ttl_s)
        self.gate = LLMGate(api.llm_slots(self.settings.llm_backend), api.llm_max_waiting)
        self.cap_per_key = api.llm_cap_per_key(self.settings.llm_backend)
        self.held: dict[str, int] = {}  # key id -> its requests in the gate (event loop only)

    # -- threads ----------------------------------------------------------------------------

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in the pool with this request's log context; the loop only awaits."""
        ctx = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor(), ctx.run, fn, *args)

    # -- planning ---------------------------------------------------------------------------

    def served_backend(self, requested: str | None) -> str:
        """The backend a page or copy request runs on: the deployment's, or ``rules``.
        Another would load a model (or call a server) this deployment does not run, inside
        a lock every page waits on."""
        served = self.settings.llm_backend
        backend = requested or served
        if backend not in (served, "rules"):
            raise FieldError(
                "backend", f"'{backend}' is not served here; use '{served}' or 'rules'"
            )
        return backend

    def plan(self, request: PageRequest) -> Plan:
        """Resolve backend and prompt and build the cache key (runs in a worker thread)."""
        backend = self.served_backend(request.backend)
        prompt = request.prompt or self.settings.prompt
        servable = self.services.prompts.servable("pages")
        if request.prompt is not None and prompt not in servable:
            raise FieldError(
                "prompt", f"'{prompt}' is not a servable page prompt; use one of: "
                f"{', '.join(servable)}"
            )  # fmt: skip
        try:
            # The shop's profile writes the words too: an edited profile must not be
            # answered from pages cached before the edit.
            stamp = self.services.composer.profile_stamp()
            prompt_hash = f"{self.services.prompts.file_hash(prompt)}:{stamp}"
        except UsageError as exc:
            raise FieldError("prompt", str(exc)) from None
        state = (
            self.services.store.last_event_id_for(request.shopper_id)
            if request.shopper_id is not None
            else None
        )
        model = "rules" if backend == "rules" else self.settings.llm_model
        return Plan(request, backend, page_key(request, state, prompt, prompt_hash, backend, model))

    def invalidate(self, shopper_id: str) -> int:
        dropped = self.cache.invalidate_shopper(shopper_id)
        self.metrics.cache_size.set(len(self.cache))
        return dropped

    def _lookup(self, plan: Plan) -> PageResult | None:
        hit = self.cache.get(plan.key)
        self.metrics.cache_lookup(hit is not None)
        return hit

    def _finish(self, plan: Plan, result: PageResult, cached: bool) -> None:
        if not cached and not result.trace.fallback:
            self.cache.put(plan.key, result)
        self.metrics.cache_size.set(len(self.cache))
        self.metrics.page(result.trace, cached)
        trace = result.trace
        log.info(
            "page",
            extra={
                "shopper": trace.shopper
                or pseudonymise(plan.request.shopper_id, self.settings.pseudonym_salt),
                "kind": plan.request.kind.value,
                "backend": trace.backend,
                "prompt": trace.prompt,
                "cache": "hit" if cached else "miss",
                "fallback": trace.fallback,
                "fallback_reason": trace.fallback_reason,
                "sections": len(result.layout.sections),
                "total_ms": trace.timings_ms.get("total"),
            },
        )

    # -- composing (worker thread) ----------------------------------------------------------

    def _composer(self, deadline_s: float) -> PageComposer:
        s = self.services
        if deadline_s >= self.settings.page_deadline_s:
            return s.composer
        settings = self.settings.model_copy(update={"page_deadline_s": max(deadline_s, 0.001)})
        return PageComposer(settings, s.retriever, s.backends, s.prompts, s.renderer)

    def events(
        self, request: PageRequest, backend: str, deadline_s: float, forced: str | None
    ) -> Iterator[PageEvent]:
        """The composer's events, with the API's own fallbacks to ``rules``."""
        composer = self._composer(deadline_s)
        rules_request = request.model_copy(update={"backend": "rules"})
        if forced is not None:
            yield from _marked(composer.stream(rules_request), forced)
            return
        if backend != "rules":
            try:
                self.services.backends.get(backend)
            except Exception as exc:
                log.error("LLM backend unavailable", extra={"backend": backend, "error": str(exc)})
                yield from _marked(
                    composer.stream(rules_request), f"backend {backend} unavailable: {exc}"
                )
                return
        sent_retrieval = sent_section = False
        try:
            for event in composer.stream(request):
                sent_retrieval = sent_retrieval or isinstance(event, RetrievalEvent)
                sent_section = sent_section or isinstance(event, SectionEvent)
                yield event
        except ComposerError:
            raise
        except Exception as exc:
            if backend == "rules" or sent_section:
                raise
            log.exception("LLM page failed; serving rules", extra={"backend": backend})
            reason = f"backend {backend} failed: {type(exc).__name__}: {exc}"
            for event in _marked(composer.stream(rules_request), reason):
                if not (sent_retrieval and isinstance(event, RetrievalEvent)):
                    yield event

    def compose_sync(
        self, request: PageRequest, backend: str, deadline_s: float, forced: str | None
    ) -> PageResult:
        for event in self.events(request, backend, deadline_s, forced):
            if isinstance(event, DoneEvent):
                return event.result
        raise ComposerError("page stream ended without a page")  # pragma: no cover

    # -- the gate ---------------------------------------------------------------------------

    async def _admit(self, backend: str, caller: str | None) -> tuple[bool, float, str | None]:
        """(holds a slot, deadline left, forced fallback reason)."""
        deadline = self.settings.page_deadline_s
        if backend == "rules":
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

    async def run_admitted(
        self, backend: str, job: Callable[[float, str | None], T], caller: str | None = None
    ) -> T:
        """Run ``job(deadline_left, forced_reason)`` in a worker thread, behind the LLM gate
        unless ``backend`` is ``rules``; ``forced_reason`` set means: serve rules, say why.
        ``caller``: the API key's id, for its share of the queue."""
        holds, deadline, forced = await self._admit(backend, caller)
        ctx = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        try:
            fut = loop.run_in_executor(self.executor(), ctx.run, job, deadline, forced)
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

    # -- entry points -----------------------------------------------------------------------

    async def page(
        self, request: PageRequest, caller: str | None = None
    ) -> tuple[PageResult, bool]:
        """A page and whether it came from the cache; ``caller`` is the API key's id."""
        if (request.backend or self.settings.llm_backend) == "rules":
            # No LLM gate to pass between planning and composing: one trip to a worker
            # thread instead of two.
            return await self.in_thread(self._rules_page, request)
        plan = await self.in_thread(self.plan, request)
        hit = self._lookup(plan)
        if hit is not None:
            self._finish(plan, hit, cached=True)
            return hit, True
        result = await self.run_admitted(
            plan.backend,
            lambda deadline, forced: self.compose_sync(request, plan.backend, deadline, forced),
            caller,
        )
        self._finish(plan, result, cached=False)
        return result, False

    def _rules_page(self, request: PageRequest) -> tuple[PageResult, bool]:
        plan = self.plan(request)
        hit = self._lookup(plan)
        if hit is not None:
            self._finish(plan, hit, cached=True)
            return hit, True
        result = self.compose_sync(request, plan.backend, self.settings.page_deadline_s, None)
        self._finish(plan, result, cached=False)
        return result, False

    async def stream(
        self, request: PageRequest, full_trace: bool = True, caller: str | None = None
    ) -> AsyncGenerator[StreamItem, None]:
        """``retrieval``, ``section`` (in index order), ``page``, ``done``; the page's trace
        in full only with ``full_trace`` (see :mod:`composer.api.security.redaction`);
        ``caller`` is the API key's id.

        Errors before the first event (bad filters, unknown prompt) raise from the first
        ``__anext__``, so the caller can still answer with a 4xx instead of a stream.
        """
        if request.format == "json":  # the page event carries the page's HTML
            request = request.model_copy(update={"format": "both"})
        plan = await self.in_thread(self.plan, request)
        hit = self._lookup(plan)
        if hit is not None:
            items = await self.in_thread(self._replay, hit, request.locale, full_trace)
            for item in items:
                yield item
            self._finish(plan, hit, cached=True)
            yield _done(hit, cached=True)
            return

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[StreamItem | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def put(item: StreamItem | BaseException | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def produce(deadline: float, forced: str | None) -> None:
            try:
                for event in self.events(request, plan.backend, deadline, forced):
                    if stop.is_set():
                        return
                    put(self._item(event, request.locale, full_trace))
            except BaseException as exc:
                put(exc)
            finally:
                put(None)

        job = asyncio.ensure_future(self.run_admitted(plan.backend, produce, caller))
        result: PageResult | None = None
        try:
            while True:
                got = await queue.get()
                if got is None:
                    break
                if isinstance(got, BaseException):
                    raise got
                if got.result is not None:
                    result = got.result
                yield got
            await job
        finally:
            stop.set()
            if not job.done():
                job.cancel()
        if result is not None:
            self._finish(plan, result, cached=False)
            yield _done(result, cached=False)

    # -- server-sent event payloads (worker thread) -----------------------------------------

    def _item(self, event: PageEvent, locale: Locale, full_trace: bool) -> StreamItem:
        if isinstance(event, RetrievalEvent):
            return StreamItem("retrieval", _json({"candidates": event.candidates}))
        if isinstance(event, SectionEvent):
            html = self.services.renderer.render_section(event.section, locale)
            data = {"index": event.index, "section": event.layout, "html": html}
            return StreamItem("section", _json(data))
        result = event.result
        body = for_caller(result.to_dict(include_html=True), full_trace)
        return StreamItem("page", _json(body), result)

    def _replay(self, result: PageResult, locale: Locale, full_trace: bool) -> list[StreamItem]:
        items = [StreamItem("retrieval", _json({"candidates": result.trace.candidates}))]
        for n, (layout_section, section) in enumerate(
            zip(result.layout.sections, result.page.sections, strict=True)
        ):
            data = {
                "index": n,
                "section": layout_section.model_dump(mode="json"),
                "html": self.services.renderer.render_section(section, locale),
            }
            items.append(StreamItem("section", _json(data)))
        body = for_caller(result.to_dict(include_html=True), full_trace)
        items.append(StreamItem("page", _json(body), result))
        return items


def _marked(events: Iterator[PageEvent], reason: str) -> Iterator[PageEvent]:
    for event in events:
        if isinstance(event, DoneEvent):
            mark_fallback(event.result, reason)
        yield event


def _done(result: PageResult, cached: bool) -> StreamItem:
    data = {
        "cache": "hit" if cached else "miss",
        "sections": len(result.layout.sections),
        "fallback": result.trace.fallback,
        "fallback_reason": result.trace.fallback_reason,
    }
    return StreamItem("done", _json(data))


def _json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
