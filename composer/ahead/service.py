"""Compose-ahead as the page service sees it: answer from a kept page when it is still the
page this request would get, else say so and queue the page; queue a shopper's pages again
after their events; count views for the shoppers' priorities."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from composer.ahead.kept import InvalidKeptPage, unpack
from composer.ahead.keys import normalise, request_hash
from composer.page_request import PageRequest
from composer.pipeline import PageResult
from composer.settings import AheadSettings
from retrieval import AheadStore, Product, Visit
from retrieval.ahead_store import priority

# The trace's `ahead` field: what compose-ahead did for this page view.
KEPT = "kept"  # a page composed ahead, still valid
REFRESHING = "refreshing"  # a kept page older than refresh_after_s: served, composed again
COMPOSING = "composing"  # no valid kept page: the rules page now, the LLM page queued

PENDING_REASON = "no page composed ahead for this shopper's state yet; composing it"


@dataclass(frozen=True)
class Found:
    """A kept page this request may be served, how old it is, and how it was found."""

    result: PageResult
    age_s: float
    how: str  # KEPT or REFRESHING


class ComposeAhead:
    def __init__(
        self,
        settings: AheadSettings,
        store: AheadStore,
        products: Callable[[], Mapping[str, Product]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.products = products  # the catalog now (swapped with the models)
        self.clock = clock
        self.views: deque[Visit] = deque(maxlen=100_000)
        # Shoppers whose events arrived: their pages are queued again by the worker, off the
        # request (an event's answer waits for its own write only).
        self._requeue: set[str] = set()
        self._requeue_lock = threading.Lock()
        self.wake = threading.Event()  # set when something is queued
        # One flush at a time: two would read and write the same shoppers' scores.
        self._flush_lock = threading.Lock()

    def lookup(self, request: PageRequest, key: str) -> Found | None:
        """The kept page for ``request`` (normalised) if it was composed for ``key`` (this
        shopper state, prompt, model, arm) and is not too old; else None and the page is
        queued. A page past ``refresh_after_s`` is served and queued again."""
        assert request.shopper_id is not None
        shopper, rh = request.shopper_id, request_hash(request)
        now = self.clock()
        kept = self.store.kept(shopper, rh)
        found: Found | None = None
        if kept is not None and kept.key_hash == key:
            age = max(now - kept.composed_at, 0.0)
            if age <= self.settings.max_staleness_s:
                try:
                    result = unpack(kept.payload, self.products())
                except InvalidKeptPage:
                    result = None
                if result is not None:
                    how = REFRESHING if age > self.settings.refresh_after_s else KEPT
                    found = Found(result, age, how)
        compose_id = kept.compose_id if found is not None and kept is not None else None
        self.views.append(Visit(shopper, now, rh if found is not None else None, compose_id))
        if found is None or found.how == REFRESHING:
            self.want([request], now)
        return found

    def want(
        self,
        requests: list[PageRequest],
        now: float | None = None,
        priorities: Mapping[str, float] | None = None,
    ) -> None:
        """Queue these pages (normalised), each with its shopper's priority (from their
        visits; else from ``priorities``; else a first visit's, now)."""
        now = self.clock() if now is None else now
        if not requests:
            return
        shoppers = [r.shopper_id for r in requests if r.shopper_id is not None]
        known = {
            **(priorities or {}),
            **self.store.priorities(shoppers, self.settings.revisit_tau_s),
        }
        fresh = priority(1.0, now, self.settings.revisit_tau_s)
        rows = []
        for r in requests:
            assert r.shopper_id is not None
            rows.append(
                (r.shopper_id, request_hash(r), r.model_dump_json(), known.get(r.shopper_id, fresh))
            )
        self.store.enqueue(rows, now)
        self.wake.set()

    def requeue(self, shopper_id: str) -> None:
        """After a shopper's events: their pages are to be queued again (by
        :meth:`flush_requeues`, in the worker's thread)."""
        with self._requeue_lock:
            self._requeue.add(shopper_id)
        self.wake.set()

    def flush_requeues(self) -> int:
        """Queue again the known pages (kept or queued) of the shoppers whose events came
        since the last flush, or their home page; how many pages."""
        with self._requeue_lock:
            shoppers, self._requeue = self._requeue, set()
        requests: list[PageRequest] = []
        try:
            for shopper_id in sorted(shoppers):
                known = self.store.requests_of(shopper_id)
                own = [PageRequest.model_validate_json(r) for r in known.values()]
                requests += own or [normalise(PageRequest(shopper_id=shopper_id))]
            self.want(requests)
        except Exception:
            with self._requeue_lock:  # the store may be back next round
                self._requeue |= shoppers
            raise
        return len(requests)

    def flush_views(self) -> None:
        """Write the views noted since the last flush (visit scores, kept pages' views)."""
        with self._flush_lock:
            self._flush_views()

    def _flush_views(self) -> None:
        batch: list[Visit] = []
        while self.views:
            try:
                batch.append(self.views.popleft())
            except IndexError:  # another thread took the last one
                break
        if not batch:
            return
        self.store.record_visits(batch, self.settings.revisit_tau_s)
        self.store.mark_viewed(v.compose_id for v in batch if v.compose_id is not None)
