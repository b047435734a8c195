"""Pages over HTTP: the page cache and the worker threads around the composer.

The composer is synchronous and CPU-bound. Every page is made in a worker thread of the
app's pool; the event loop only awaits. Streamed pages come out of the thread through an
asyncio queue, event by event, as the composer yields them (a section once sent is final).

LLM pages pass the :class:`~composer.api.llm_queue.LLMQueue` (slots, waiting room, each
key's share, the deadline while queued); what happens when the model is refused a slot,
cannot be built or fails is :class:`~composer.fallback.Fallback`'s to decide: the rules page,
with the reason, never a 5xx. Deadline, errors and garbage during generation are the
composer's own fallbacks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

from composer.api.cache import PageCache, PageKey, page_key
from composer.api.errors import FieldError
from composer.api.llm_queue import LLMQueue
from composer.api.metrics import ApiMetrics
from composer.api.security.redaction import for_caller
from composer.api.services import Services
from composer.api.threads import in_thread
from composer.errors import ComposerError, UsageError
from composer.fallback import Fallback
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
from composer.settings import ApiSettings, BackendName
from retrieval.profile import pseudonymise

log = logging.getLogger("composer.api")
T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    """What a request resolves to before any page work: backend, prompt, cache key."""

    request: PageRequest
    backend: BackendName
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
        queue: LLMQueue,
        executor: Callable[[], Executor],
    ) -> None:
        self.services = services
        self.settings = services.settings
        self.metrics = metrics
        self.queue = queue
        self.fallback = Fallback(services.backends)
        self.executor = executor
        self.cache: PageCache[PageResult] = PageCache(api.cache_size, api.cache_ttl_s)

    # -- threads ----------------------------------------------------------------------------

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in the pool with this request's log context; the loop only awaits."""
        return await in_thread(self.executor(), fn, *args)

    # -- planning ---------------------------------------------------------------------------

    def plan(self, request: PageRequest) -> Plan:
        """Resolve backend and prompt and build the cache key (runs in a worker thread)."""
        backend = self.queue.served_backend(request.backend)
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
            self.services.store.history_state(request.shopper_id)
            if request.shopper_id is not None
            else None
        )
        model = "rules" if backend == BackendName.RULES else self.settings.llm_model
        # The served model version is part of the key: after a swap or a rollback no page
        # of the previous models is served from the cache.
        models = self.services.retriever.model_version
        key = page_key(request, state, prompt, prompt_hash, backend, model, models)
        return Plan(request, backend, key)

    def invalidate(self, shopper_id: str) -> int:
        dropped = self.cache.invalidate_shopper(shopper_id)
        self.metrics.cache_size.set(len(self.cache))
        return dropped

    def _lookup(self, plan: Plan) -> PageResult | None:
        hit = self.cache.get(plan.key)
        self.metrics.cache_lookup(hit is not None)
        return hit

    def _finish(self, plan: Plan, result: PageResult, cached: bool) -> None:
        # A fallback page, or one made without a failed source, is not what the next request
        # should get once the model or the source is back.
        if not cached and not result.trace.fallback and not result.trace.sources_missing:
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
        self, request: PageRequest, backend: BackendName, deadline_s: float, forced: str | None
    ) -> Iterator[PageEvent]:
        """The composer's events, or the rules page's when the model is refused or fails."""
        composer = self._composer(deadline_s)
        rules_request = request.model_copy(update={"backend": BackendName.RULES})
        return self.fallback.stream(
            backend,
            lambda: composer.stream(request),
            lambda reason: _marked(composer.stream(rules_request), reason),
            final=lambda event: isinstance(event, SectionEvent),
            once=lambda event: isinstance(event, RetrievalEvent),
            forced=forced,
        )

    def compose_sync(
        self, request: PageRequest, backend: BackendName, deadline_s: float, forced: str | None
    ) -> PageResult:
        for event in self.events(request, backend, deadline_s, forced):
            if isinstance(event, DoneEvent):
                return event.result
        raise ComposerError("page stream ended without a page")  # pragma: no cover

    # -- entry points -----------------------------------------------------------------------

    async def page(
        self, request: PageRequest, caller: str | None = None
    ) -> tuple[PageResult, bool]:
        """A page and whether it came from the cache; ``caller`` is the API key's id."""
        if (request.backend or self.settings.llm_backend) == BackendName.RULES:
            # No LLM gate to pass between planning and composing: one trip to a worker
            # thread instead of two.
            return await self.in_thread(self._rules_page, request)
        plan = await self.in_thread(self.plan, request)
        hit = self._lookup(plan)
        if hit is not None:
            self._finish(plan, hit, cached=True)
            return hit, True
        result = await self.queue.run(
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

        job = asyncio.ensure_future(self.queue.run(plan.backend, produce, caller))
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
