"""Every served page, written durably in batches by a thread of its own: a page pays for
appending to a list, never for a database write.

A clean stop writes what is pending. A crash loses what was not written yet: at most the
pages of the last ``flush_s`` (or one batch, when pages come faster than a batch a flush).
A failed write is retried with the next batch; past ``max_pending`` pages waiting (the
database gone for long) the oldest are dropped, counted and logged, so that memory stays
bounded.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from composer.experiments.assignment import Assignment
from composer.page_request import PageRequest
from composer.pipeline import PageResult
from composer.settings import BackendName
from composer.validation import script_issue, unsupported_claims
from retrieval.exposures import Exposure, ExposureStore

log = logging.getLogger("composer.experiments")

# What a page hands over: the exposure is built in the writer's thread, not the request's.
Pending = Callable[[], Exposure]


class ExposureLog:
    def __init__(
        self,
        store: ExposureStore,
        flush_s: float = 0.5,
        batch_size: int = 500,
        max_pending: int = 100_000,
        on_written: Callable[[list[Exposure]], None] | None = None,
    ) -> None:
        self.store = store
        self.flush_s = flush_s
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.on_written = on_written
        self.written = 0
        self.dropped = 0
        # deque.append and popleft are atomic: pages never take a lock to record.
        self._pending: deque[Pending | Exposure] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flush_lock = threading.Lock()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="composer-exposures", daemon=True)
        self._thread.start()

    def record(self, pending: Pending) -> None:
        self._pending.append(pending)
        if len(self._pending) >= self.batch_size and not self._failing:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            # After a failed write, wait the whole interval: a store that is down is not
            # asked again on every page.
            self._wake.wait(self.flush_s)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the thread must outlive any one batch
                log.exception("exposure log flush failed")

    def flush(self) -> int:
        """Write everything pending now; how many were written."""
        done = 0
        with self._flush_lock:
            while self._pending:
                batch: list[Exposure] = []
                while self._pending and len(batch) < self.batch_size:
                    item = self._pending.popleft()
                    try:
                        batch.append(item if isinstance(item, Exposure) else item())
                    except Exception:  # one page that cannot be described loses only itself
                        log.exception("exposure could not be built; left out")
                try:
                    self.store.add(batch)
                except Exception as exc:
                    self._requeue(batch, exc)
                    return done
                if self._failing:
                    log.info("exposures written again", extra={"pending": len(self._pending)})
                self._failing = False
                done += len(batch)
                self.written += len(batch)
                if self.on_written is not None:
                    try:
                        self.on_written(batch)
                    except Exception:  # counting is not worth a lost batch
                        log.exception("exposure metrics failed")
        return done

    def _requeue(self, batch: list[Exposure], exc: Exception) -> None:
        self._pending.extendleft(reversed(batch))
        excess = len(self._pending) - self.max_pending
        for _ in range(max(excess, 0)):
            self._pending.popleft()
        self.dropped += max(excess, 0)
        if self._failing and excess <= 0:
            return  # said once per outage, and again when pages are dropped
        self._failing = True
        log.error(
            "exposures not written; retried with the next batch",
            extra={
                "error": f"{type(exc).__name__}: {exc}",
                "pending": len(self._pending),
                "dropped": self.dropped,
            },
        )

    def close(self) -> None:
        """Stop the thread and write what is pending."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self.flush()


def exposure_of(
    page_id: str,
    unit: str | None,
    assignment: Assignment | None,
    request: PageRequest,
    result: PageResult,
    cached: bool,
    latency_ms: float,
    ts: float,
) -> Exposure:
    """What the log keeps of one served page."""
    trace = result.trace
    llm = trace.backend != BackendName.RULES and not trace.fallback
    page = result.page
    # Grounding errors shown: the page's model-written texts a check flags (the checks in
    # the pipeline keep this at 0; a guardrail watches that they go on doing so). Rules
    # words are templates around catalog facts: not counted.
    shown = [page.title, *(s.headline for s in page.sections)] if llm else []
    grounding = sum(
        bool(unsupported_claims(text) or script_issue(text, request.locale)) for text in shown
    )
    return Exposure(
        page_id=page_id,
        ts=ts,
        unit=unit or "anonymous",
        experiment=assignment.experiment if assignment else None,
        variant=assignment.variant if assignment else None,
        analysed=assignment.analysed if assignment else False,
        kind=request.kind.value,
        backend=trace.backend,
        # The columns' widths: a row that cannot be written would hold up every batch after.
        model=trace.model[:200],
        prompt=trace.prompt[:64],
        llm=llm,
        fallback=trace.fallback,
        fallback_reason=trace.fallback_reason,
        cached=cached,
        latency_ms=round(latency_ms, 3),
        grounding_errors=grounding,
        sections=tuple(len(s.slots) for s in page.sections),
        products=tuple(page.product_ids()),
    )
