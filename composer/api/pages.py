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
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from composer.ahead import (
    COMPOSING,
    PENDING_REASON,
    AheadPlan,
    ComposeAhead,
    applies,
    key_hash,
    normalise,
)
from composer.api.cache import PageCache, PageKey, page_key
from composer.api.errors import FieldError
from composer.api.llm_queue import LLMQueue
from composer.api.metrics import ApiMetrics
from composer.api.security.redaction import for_caller
from composer.api.services import Services
from composer.api.threads import in_thread
from composer.copybook import copybook
from composer.errors import ComposerError, UsageError
from composer.experiments import (
    Assignment,
    Experiment,
    ExperimentRegistry,
    ExposureLog,
    Routed,
    exposure_of,
    route,
    unit_of,
)
from composer.fallback import Fallback
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
    """What a request resolves to before any page work: backend, prompt, cache key, and the
    served page's id and experiment arm."""

    request: PageRequest
    backend: BackendName
    key: PageKey
    page_id: str
    unit: str | None
    assignment: Assignment | None
    started: float  # perf_counter when the request came in

    def stamp(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` (a page as JSON) with the page id, experiment and variant, at the top and
        in its trace."""
        ids = {
            "page_id": self.page_id,
            "experiment": self.assignment.experiment if self.assignment else None,
            "variant": self.assignment.variant if self.assignment else None,
        }
        body.update(ids)
        if "trace" in body:
            body["trace"].update(ids)
        return body


@dataclass(frozen=True)
class Served:
    """A page as served: the result (shared with the cache: never changed), whether it came
    from the cache, and the plan that names it."""

    result: PageResult
    cached: bool
    plan: Plan

    @property
    def page_id(self) -> str:
        return self.plan.page_id


@dataclass(frozen=True)
class StreamItem:
    """One server-sent event: its name, its JSON data, and the page with the last one; a
    section's HTML, and on the first event the page's id and whether it came from the
    cache (an HTML stream's headers)."""

    event: str
    data: str
    result: PageResult | None = None
    html: str | None = None
    page_id: str | None = None
    cached: bool = False


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
        experiments: ExperimentRegistry | None = None,
        exposures: ExposureLog | None = None,
        ahead: ComposeAhead | None = None,
    ) -> None:
        self.services = services
        self.settings = services.settings
        self.metrics = metrics
        self.queue = queue
        self.fallback = Fallback(services.backends)
        self.executor = executor
        self.cache: PageCache[PageResult] = PageCache(api.cache_size, api.cache_ttl_s)
        self.experiments = experiments
        self.exposures = exposures
        self.ahead = ahead

    # -- threads ----------------------------------------------------------------------------

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in the pool with this request's log context; the loop only awaits."""
        return await in_thread(self.executor(), fn, *args)

    # -- planning ---------------------------------------------------------------------------

    def route(self, request: PageRequest) -> tuple[Routed, str | None]:
        """The request in its experiment arm (if any), and the unit assigned."""
        pseudonym = (
            pseudonymise(request.shopper_id, self.settings.pseudonym_salt)
            if request.shopper_id is not None
            else None
        )
        unit = unit_of(request, pseudonym)
        if self.experiments is None:
            return Routed(request, None), unit
        routed = route(self.experiments.snapshot, request, unit, datetime.now(UTC))
        return routed, unit

    def plan(
        self, request: PageRequest, started: float | None = None, model: str | None = None
    ) -> Plan:
        """Route the request to its experiment arm, resolve backend and prompt and build the
        cache key (runs in a worker thread); ``model`` writes the words instead of the
        setting's (pages composed ahead)."""
        started = time.perf_counter() if started is None else started
        routed, unit = self.route(request)
        request = routed.request
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
        model = "rules" if backend == BackendName.RULES else model or self.settings.llm_model
        # The served model version is part of the key: after a swap or a rollback no page
        # of the previous models is served from the cache.
        models = self.services.retriever.model_version
        key = page_key(request, state, prompt, prompt_hash, backend, model, models)
        return Plan(request, backend, key, uuid.uuid4().hex, unit, routed.assignment, started)

    def check_experiment(self, experiment: Experiment) -> None:
        """What an experiment file cannot know: that its prompts are servable page prompts
        and its models the ones this service serves (UsageError naming the field)."""
        servable = self.services.prompts.servable("pages")
        backends = {BackendName.RULES, self.settings.llm_backend}
        for n, variant in enumerate(experiment.variants):
            if variant.backend is not None and variant.backend not in backends:
                raise UsageError(
                    f"experiment {experiment.name!r}, field 'variants.{n}.backend': "
                    f"{variant.backend.value!r} is not served here; use "
                    f"{' or '.join(sorted(b.value for b in backends))}",
                    field=f"variants.{n}.backend",
                )
            if variant.prompt is not None and variant.prompt not in servable:
                raise UsageError(
                    f"experiment {experiment.name!r}, field 'variants.{n}.prompt': "
                    f"{variant.prompt!r} is not a servable page prompt; use one of: "
                    f"{', '.join(servable)}",
                    field=f"variants.{n}.prompt",
                )
            if variant.model is not None and variant.model != self.settings.llm_model:
                raise UsageError(
                    f"experiment {experiment.name!r}, field 'variants.{n}.model': "
                    f"{variant.model!r} is not served here (COMPOSER_LLM_MODEL is "
                    f"{self.settings.llm_model!r}); run a server per model and split "
                    "traffic between them, or leave the model out",
                    field=f"variants.{n}.model",
                )

    def invalidate(self, shopper_id: str) -> int:
        """After a shopper's events: their cached pages dropped, their pages composed ahead
        queued again (the kept ones no longer match their state)."""
        dropped = self.cache.invalidate_shopper(shopper_id)
        self.metrics.cache_size.set(len(self.cache))
        if self.ahead is not None:
            self.ahead.requeue(shopper_id)
        return dropped

    def _lookup(self, plan: Plan) -> PageResult | None:
        hit = self.cache.get(plan.key)
        self.metrics.cache_lookup(hit is not None)
        return hit

    def _finish(self, plan: Plan, result: PageResult, cached: bool) -> None:
        # A fallback page, or one made without a failed source, is not what the next request
        # should get once the model or the source is back; a page composed ahead is kept in
        # the store already.
        trace = result.trace
        if not cached and not trace.fallback and not trace.sources_missing and trace.ahead is None:
            self.cache.put(plan.key, result)
        self.metrics.cache_size.set(len(self.cache))
        self.metrics.page(result.trace, cached)
        latency_ms = (time.perf_counter() - plan.started) * 1000
        if self.exposures is not None:
            ts = time.time()
            self.exposures.record(
                lambda: exposure_of(plan.page_id, plan.unit, plan.assignment, plan.request,
                                    result, cached, latency_ms, ts)
            )  # fmt: skip
        trace = result.trace
        assignment = plan.assignment
        log.info(
            "page",
            extra={
                "page_id": plan.page_id,
                "experiment": assignment.experiment if assignment else None,
                "variant": assignment.variant if assignment else None,
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
                "latency_ms": round(latency_ms, 2),
            },
        )

    # -- composing (worker thread) ----------------------------------------------------------

    def _composer(
        self, deadline_s: float, streamed: bool = False, model: str | None = None
    ) -> PageComposer:
        """The composer with this deadline; for a streamed page, one that writes the first
        section's words alone first (the shopper sees it sooner, the page takes longer);
        with ``model``, one whose words that model writes."""
        s = self.services
        model = model or self.settings.llm_model
        if (
            deadline_s == self.settings.page_deadline_s
            and not streamed
            and model == s.composer.settings.llm_model
        ):
            return s.composer
        update: dict[str, Any] = {"page_deadline_s": max(deadline_s, 0.001), "llm_model": model}
        if streamed:
            update["words"] = self.settings.words.model_copy(update={"first_section_alone": True})
        settings = self.settings.model_copy(update=update)
        return PageComposer(settings, s.retriever, s.backends, s.prompts, s.renderer)

    def events(
        self,
        request: PageRequest,
        backend: BackendName,
        deadline_s: float,
        forced: str | None,
        streamed: bool = False,
        model: str | None = None,
    ) -> Iterator[PageEvent]:
        """The composer's events, or the rules page's when the model is refused or fails."""
        composer = self._composer(deadline_s, streamed, model)
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
        self,
        request: PageRequest,
        backend: BackendName,
        deadline_s: float,
        forced: str | None,
        model: str | None = None,
    ) -> PageResult:
        for event in self.events(request, backend, deadline_s, forced, model=model):
            if isinstance(event, DoneEvent):
                return event.result
        raise ComposerError("page stream ended without a page")  # pragma: no cover

    # -- composed ahead (composer.ahead.Pages, for its worker; and the request's side) -------

    @property
    def ahead_model(self) -> str:
        """Who writes the words of pages composed ahead."""
        return self.settings.ahead.words_model or self.settings.llm_model

    def plan_ahead(self, request: PageRequest) -> AheadPlan:
        plan = self.plan(request, model=self.ahead_model)
        return AheadPlan(plan.request, plan.backend != BackendName.RULES, key_hash(plan.key))

    def compose_ahead(self, plan: AheadPlan, deadline_s: float) -> PageResult:
        backend = self.queue.served_backend(plan.request.backend)
        return self.compose_sync(plan.request, backend, deadline_s, None, self.ahead_model)

    def llm_busy(self) -> bool:
        """An on-request LLM job holds a slot or waits for one: pages composed ahead do not
        start then (one already started can keep such a job waiting for its length)."""
        return self.queue.gate.busy

    def uses_ahead(self, request: PageRequest) -> bool:
        """Answered from pages composed ahead: a shop's own home or category page of a known
        shopper, where the served backend is a model."""
        served = self.settings.llm_backend
        return self.ahead is not None and served != BackendName.RULES and applies(request)

    def _ahead_page(self, request: PageRequest, started: float) -> Served:
        """A kept page if it is this request's page (same shopper state, prompt, model, arm,
        request) and not too old; else the rules page now, the LLM page queued."""
        assert self.ahead is not None
        normal = normalise(request)
        plan = self.plan(normal, started, model=self.ahead_model)
        if plan.backend == BackendName.RULES:  # this shopper's arm serves the rules page
            return self._rules_page(request, started)
        found = self.ahead.lookup(normal, key_hash(plan.key))
        if found is not None:
            result = found.result
            if request.format != "json":
                result.html = self.services.renderer.render(result.page)
            result.trace.ahead = found.how
            result.trace.page_age_s = round(found.age_s, 3)
        else:
            rules = plan.request.model_copy(
                update={"backend": BackendName.RULES, "format": request.format}
            )
            deadline = self.settings.page_deadline_s
            result = mark_fallback(
                self.compose_sync(rules, BackendName.RULES, deadline, None), PENDING_REASON
            )
            result.trace.ahead = COMPOSING
        self._finish(plan, result, cached=False)
        return Served(result, False, plan)

    # -- entry points -----------------------------------------------------------------------

    async def page(self, request: PageRequest, caller: str | None = None) -> Served:
        """A page, whether it came from the cache, and its id; ``caller`` is the API key's
        id."""
        started = time.perf_counter()
        if self._rules_only(request, self.settings.llm_backend):
            # No LLM gate to pass between planning and composing: one trip to a worker
            # thread instead of two.
            return await self.in_thread(self._rules_page, request, started)
        if self.uses_ahead(request):
            return await self.in_thread(self._ahead_page, request, started)
        plan = await self.in_thread(self.plan, request, started)
        hit = self._lookup(plan)
        if hit is not None:
            self._finish(plan, hit, cached=True)
            return Served(hit, True, plan)
        result = await self.queue.run(
            plan.backend,
            lambda deadline, forced: self.compose_sync(
                plan.request, plan.backend, deadline, forced
            ),
            caller,
        )
        self._finish(plan, result, cached=False)
        return Served(result, False, plan)

    @staticmethod
    def _rules_only(request: PageRequest, served: BackendName) -> bool:
        """Sure to be a rules page before planning: rules asked for, or served (an
        experiment's arm may name only the served backend or rules)."""
        return (request.backend or served) == BackendName.RULES

    def _rules_page(self, request: PageRequest, started: float) -> Served:
        # Only called where the request's arm is a rules page: every arm where the served
        # backend is rules (an arm may name only the served backend or rules), or this
        # shopper's arm where pages are composed ahead.
        plan = self.plan(request, started)
        hit = self._lookup(plan)
        if hit is not None:
            self._finish(plan, hit, cached=True)
            return Served(hit, True, plan)
        result = self.compose_sync(plan.request, plan.backend, self.settings.page_deadline_s, None)
        self._finish(plan, result, cached=False)
        return Served(result, False, plan)

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
        if self.uses_ahead(request):
            served = await self.in_thread(self._ahead_page, request, time.perf_counter())
            items = await self.in_thread(self._replay, served.result, served.plan, full_trace)
            for item in items:
                yield item
            yield _done(served.result, served.cached, served.plan)
            return
        plan = await self.in_thread(self.plan, request, time.perf_counter())
        request = plan.request
        hit = self._lookup(plan)
        if hit is not None:
            items = await self.in_thread(self._replay, hit, plan, full_trace)
            self._finish(plan, hit, cached=True)
            for item in items:
                yield item
            yield _done(hit, True, plan)
            return

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[StreamItem | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def put(item: StreamItem | BaseException | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def produce(deadline: float, forced: str | None) -> None:
            try:
                for event in self.events(request, plan.backend, deadline, forced, True):
                    if stop.is_set():
                        return
                    put(self._item(event, plan, full_trace))
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
                    # Logged as the page goes out: a client that leaves after the `page`
                    # event has seen it, and its clicks name it.
                    self._finish(plan, result, cached=False)
                yield got
            await job
        finally:
            stop.set()
            if not job.done():
                job.cancel()
        if result is not None:
            yield _done(result, False, plan)

    async def html_stream(
        self, request: PageRequest, caller: str | None = None
    ) -> tuple[StreamItem, AsyncIterator[str]]:
        """A page as one HTML document sent as it is composed: the head at once, each
        section as it is checked, the title and the end last. The first stream item (for
        the page id) and the document's chunks; errors before it raise here (a 4xx)."""
        items = self.stream(request.model_copy(update={"format": "html"}), False, caller)
        first = await items.__anext__()
        renderer = self.services.renderer
        kind, locale = request.kind, request.locale
        category = request.categories[0] if request.categories else None
        title = copybook(locale).page_title(kind.value, request.query, category)

        async def chunks() -> AsyncIterator[str]:
            closed = False
            try:
                yield renderer.render_open(kind, locale, title)
                async for item in items:
                    if item.html is not None:
                        yield item.html
                    elif item.result is not None:
                        closed = True
                        yield renderer.render_close(item.result.layout.title)
            except Exception as exc:
                # The head and sections sent are final: the document still ends properly,
                # with the sections it has (the status line went out with the head).
                log.error("streamed page failed", extra={"error": f"{type(exc).__name__}: {exc}"})
                if not closed:
                    yield renderer.render_close(title)
            finally:
                await items.aclose()

        return first, chunks()

    def streams_html(self, request: PageRequest) -> bool:
        """A browser page composed on request by the LLM: worth streaming (a rules page or
        one composed ahead is there at once)."""
        return not self.uses_ahead(request) and not self._rules_only(
            request, self.settings.llm_backend
        )

    # -- server-sent event payloads (worker thread) -----------------------------------------

    def _item(self, event: PageEvent, plan: Plan, full_trace: bool) -> StreamItem:
        locale = plan.request.locale
        if isinstance(event, RetrievalEvent):
            candidates = _json({"candidates": event.candidates})
            return StreamItem("retrieval", candidates, page_id=plan.page_id)
        if isinstance(event, SectionEvent):
            html = self.services.renderer.render_section(event.section, locale)
            data = {"index": event.index, "section": event.layout, "html": html}
            return StreamItem("section", _json(data), html=html)
        result = event.result
        body = plan.stamp(for_caller(result.to_dict(include_html=True), full_trace))
        return StreamItem("page", _json(body), result)

    def _replay(self, result: PageResult, plan: Plan, full_trace: bool) -> list[StreamItem]:
        locale = plan.request.locale
        candidates = _json({"candidates": result.trace.candidates})
        items = [StreamItem("retrieval", candidates, page_id=plan.page_id, cached=True)]
        for n, (layout_section, section) in enumerate(
            zip(result.layout.sections, result.page.sections, strict=True)
        ):
            html = self.services.renderer.render_section(section, locale)
            data = {"index": n, "section": layout_section.model_dump(mode="json"), "html": html}
            items.append(StreamItem("section", _json(data), html=html))
        body = plan.stamp(for_caller(result.to_dict(include_html=True), full_trace))
        items.append(StreamItem("page", _json(body), result))
        return items


def _marked(events: Iterator[PageEvent], reason: str) -> Iterator[PageEvent]:
    for event in events:
        if isinstance(event, DoneEvent):
            mark_fallback(event.result, reason)
        yield event


def _done(result: PageResult, cached: bool, plan: Plan) -> StreamItem:
    data = {
        "page_id": plan.page_id,
        "cache": "hit" if cached else "miss",
        "sections": len(result.layout.sections),
        "fallback": result.trace.fallback,
        "fallback_reason": result.trace.fallback_reason,
    }
    return StreamItem("done", _json(data))


def _json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
