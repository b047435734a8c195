"""The threads that compose pages ahead: claim the queue's most likely next view, compose it
with the LLM, check it and keep it; and, every few seconds, write the views noted, queue the
recently active shoppers, trim the queue, read the shared figures for ``/metrics``.

A budget of composes per minute is counted in the store (every process's composes), and a
compose starts only while no on-request LLM job is waiting for a slot: pages composed ahead
fill the model's idle time, they do not take it from a shopper waiting for a search page."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from composer.ahead.kept import InvalidKeptPage, pack, unpack
from composer.ahead.keys import normalise
from composer.ahead.service import ComposeAhead
from composer.layout import PageKind
from composer.page_request import PageRequest
from composer.pipeline import PageResult
from composer.polling import Poller
from retrieval import KeptPage, QueuedPage
from retrieval.ahead_store import priority

log = logging.getLogger("composer.ahead")

# Outcomes of a compose (the store's log and the metrics' labels).
KEPT = "kept"
INVALID = "invalid"  # the model's page failed its checks (fell back): not kept
SUPERSEDED = "superseded"  # the shopper's state changed while it was composed: not kept
FAILED = "failed"  # an exception: not kept
UNCHANGED = "unchanged"  # a valid kept page was there already: nothing composed


TIDY_S = 60.0  # how often expired kept pages go
# Subtracted from a swept shopper's priority (log-score units): visitors' priorities are
# ln(score) + t/tau with t/tau in the thousands, a sweep's can never reach them.
SWEPT_BELOW = 1e6
LOG_KEPT_S = 7 * 86400.0


@dataclass(frozen=True)
class AheadPlan:
    """A queued request resolved like a served one: the shopper's arm applied (the request
    the model gets), its backend, and the hash of its page key."""

    request: PageRequest
    llm: bool  # False: this shopper is served the rules page (an experiment's arm)
    key: str


@dataclass
class _Claim:
    started: bool = False  # its compose is in the store's log (and the budget's count)


class Pages(Protocol):
    """What the worker needs from the page service."""

    def plan_ahead(self, request: PageRequest) -> AheadPlan: ...

    def compose_ahead(self, plan: AheadPlan, deadline_s: float) -> PageResult: ...

    def llm_busy(self) -> bool: ...


class AheadMetrics(Protocol):
    def ahead_compose(self, outcome: str, seconds: float) -> None: ...

    def ahead_wasted(self) -> None: ...

    def ahead_shared(self, depth: int, per_minute: int) -> None: ...


class AheadWorker:
    def __init__(
        self,
        ahead: ComposeAhead,
        pages: Pages,
        metrics: AheadMetrics | None = None,
        housekeeping_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ahead = ahead
        self.settings = ahead.settings
        self.store = ahead.store
        self.pages = pages
        self.metrics = metrics
        self.clock = clock
        # Unique per process and start: a lease names who holds it.
        self.name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._claim_lock = threading.Lock()
        self._claimed = 0  # claimed by this process, not started yet (the budget counts them)
        self._housekeeping = Poller("composer-ahead-housekeeping", housekeeping_s,
                                    self.housekeeping, "compose-ahead housekeeping")  # fmt: skip
        self._last_sweep = 0.0
        self._last_tidy = 0.0
        self.lease_s = self.settings.deadline_s * 2 + 30

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        for n in range(self.settings.concurrency):
            thread = threading.Thread(target=self._run, name=f"composer-ahead-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._housekeeping.start()

    def stop(self) -> None:
        self._stop.set()
        self.ahead.wake.set()
        self._housekeeping.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        # A compose still running keeps its claim (its lease runs out, and housekeeping
        # anywhere marks it failed then): handing it back would let another process compose
        # the same page meanwhile.
        composing = any(thread.is_alive() for thread in self._threads)
        self._threads = []
        try:
            self.ahead.flush_views()
            self.ahead.flush_requeues()
            if not composing:
                self.store.release(self.name)
        except Exception:  # the store may be gone already; leases run out on their own
            log.exception("compose-ahead: views, events or claims not written at stop")

    # -- the compose loop ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                did = self.step()
            except Exception:  # a store outage: the next round may find it back
                log.exception("compose-ahead round failed")
                did = False
            if not did:
                self.ahead.wake.wait(0.5)
                self.ahead.wake.clear()

    def budget_left(self, now: float) -> int:
        """Composes the budget still allows this minute: every process's started ones count,
        and this process's claimed but not yet started ones."""
        started = self.store.composes_since(now - 60.0)
        return self.settings.budget_per_minute - started - self._claimed

    def step(self) -> bool:
        """Claim and compose one page; False when there was nothing to do (or no room)."""
        self.ahead.flush_requeues()
        if self.pages.llm_busy():
            return False
        with self._claim_lock:
            now = self.clock()
            if self.budget_left(now) <= 0:
                return False
            page = self.store.claim(self.name, now, self.lease_s)
            if page is None:
                return False
            self._claimed += 1
        claim = _Claim()
        try:
            self.compose(page, claim)
        finally:
            if not claim.started:
                with self._claim_lock:
                    self._claimed -= 1
            self.store.finish(page, self.name)
        return True

    def compose(self, queued: QueuedPage, claim: _Claim | None = None) -> str:
        """Compose one claimed page and keep it if it passes; the outcome."""
        request = PageRequest.model_validate_json(queued.request)
        plan = self.pages.plan_ahead(request)
        if not plan.llm:
            return UNCHANGED  # this shopper's arm serves the rules page: nothing to keep
        kept = self.store.kept(queued.shopper_id, queued.request_hash)
        now = self.clock()
        if (
            kept is not None
            and kept.key_hash == plan.key
            and now - kept.composed_at <= self.settings.refresh_after_s
            and self._reads_back(kept.payload)
        ):
            return UNCHANGED
        with self._claim_lock:
            compose_id = self.store.start_compose(
                queued.shopper_id, queued.request_hash, self.name, self.clock()
            )
            if claim is not None:
                claim.started = True
                self._claimed -= 1
        t = time.perf_counter()
        outcome = FAILED
        try:
            outcome = self._compose(queued, request, plan, compose_id)
        finally:
            seconds = time.perf_counter() - t
            self.store.end_compose(compose_id, outcome, self.clock())
            if self.metrics is not None:
                self.metrics.ahead_compose(outcome, seconds)
            log.info(
                "page composed ahead",
                extra={
                    "outcome": outcome,
                    "seconds": round(seconds, 2),
                    "kind": request.kind.value,
                },
            )
        return outcome

    def _reads_back(self, payload: str) -> bool:
        try:
            unpack(payload, self.ahead.products())
        except InvalidKeptPage:
            return False  # a product left the catalog: composed again
        return True

    def _compose(
        self, queued: QueuedPage, request: PageRequest, plan: AheadPlan, compose_id: int
    ) -> str:
        result = self.pages.compose_ahead(plan, self.settings.deadline_s)
        trace = result.trace
        if trace.fallback or trace.sources_missing:
            log.info("page composed ahead not kept", extra={"reason": trace.fallback_reason})
            return INVALID
        payload = pack(result)
        try:
            # What is kept must come back: checked as it will be read when served.
            unpack(payload, self.ahead.products())
        except InvalidKeptPage as exc:
            log.warning("page composed ahead does not read back", extra={"error": str(exc)})
            return INVALID
        # The shopper may have acted while the model wrote: a page for the old state would
        # never be served; the event queued the page again.
        if self.pages.plan_ahead(request).key != plan.key:
            # Queued again for the key of now: an event queues it anyway, but a model swap
            # or an edited prompt or profile would leave the page uncomposed.
            self.ahead.want([request])
            return SUPERSEDED
        try:
            self.ahead.flush_views()  # the page it replaces counts as seen if it was
        except Exception:  # views only inform priorities and the waste count
            log.exception("compose-ahead: views not written")
        wasted = self.store.keep(
            KeptPage(
                queued.shopper_id, queued.request_hash, plan.key, queued.request, self.clock(),
                payload, 0, compose_id,
            )
        )  # fmt: skip
        if wasted and self.metrics is not None:
            self.metrics.ahead_wasted()
        return KEPT

    # -- housekeeping -------------------------------------------------------------------------

    def housekeeping(self) -> None:
        self.ahead.flush_views()
        self.ahead.flush_requeues()
        now = self.clock()
        if now - self._last_tidy >= TIDY_S:
            self._last_tidy = now
            self.tidy(now)
        if self.settings.sweep_s > 0 and now - self._last_sweep >= self.settings.sweep_s:
            self._last_sweep = now
            self.sweep()
        self.store.trim(self.settings.max_queue)
        if self.metrics is not None:
            self.metrics.ahead_shared(self.store.depth(), self.store.composes_since(now - 60.0))

    def tidy(self, now: float) -> None:
        """Kept pages too old to serve go (unseen ones counted as wasted); the compose log
        keeps a week."""
        wasted = self.store.expire(now - self.settings.max_staleness_s)
        if self.metrics is not None:
            for _ in range(wasted):
                self.metrics.ahead_wasted()
        self.store.prune_log(now - LOG_KEPT_S)
        self.store.close_stale(now - self.lease_s)

    def sweep(self) -> int:
        """Queue the home page of shoppers active recently who have no page known and none
        composed since their last event (a swept page that expired unseen is not composed
        again until they act); how many were queued."""
        active = self.store.active_shoppers(self.settings.active_window_s, self.settings.max_queue)
        ids = {s for s, _, _ in active}
        known = self.store.shoppers_known(ids)
        composed = self.store.last_composed(ids)
        fresh = [
            (s, n, last)
            for s, n, last in active
            if s not in known and composed.get(s, float("-inf")) < last
        ]
        requests = [normalise(PageRequest(shopper_id=s, kind=PageKind.HOME)) for s, _, _ in fresh]
        # Ranked by their events (how many, how recent), all below any shopper seen visiting:
        # a visitor's page is the likelier view.
        tau = self.settings.revisit_tau_s
        ranks = {s: priority(n, last, tau) - SWEPT_BELOW for s, n, last in fresh}
        self.ahead.want(requests, priorities=ranks)
        return len(requests)
