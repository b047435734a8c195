"""The thread that keeps a server's experiments current: it rereads the experiment files and
the paused variants, and pauses a variant past a guardrail."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from composer.experiments.guardrails import Breach, breaches, health
from composer.experiments.registry import ExperimentRegistry, Snapshot
from composer.polling import Poller
from retrieval.exposures import ExposureStore

log = logging.getLogger("composer.experiments")

# How far back a guardrail looks: the variant's recent pages, not its whole life.
GUARDRAIL_WINDOW = timedelta(hours=1)


class ExperimentWatch:
    def __init__(
        self,
        registry: ExperimentRegistry,
        store: ExposureStore,
        poll_s: float,
        guardrail_s: float,
        on_snapshot: Callable[[Snapshot], None] | None = None,
    ) -> None:
        self.registry = registry
        self.store = store
        self.poll_s = poll_s
        self.guardrail_s = guardrail_s
        self.on_snapshot = on_snapshot
        interval = min((s for s in (poll_s, guardrail_s) if s > 0), default=0.0)
        self._poller = Poller("composer-experiments", interval, self._tick, "experiment refresh")
        self._last_guardrails = time.monotonic()

    def refresh(self) -> Snapshot:
        paused = {(p.experiment, p.variant): p.reason for p in self.store.pauses()}
        snapshot = self.registry.reload(paused)
        if self.on_snapshot is not None:
            self.on_snapshot(snapshot)
        return snapshot

    def check_guardrails(self, now: datetime | None = None) -> list[Breach]:
        """Pause every live variant past a guardrail; the breaches found."""
        now = now or datetime.now(UTC)
        snapshot = self.registry.snapshot
        found: list[Breach] = []
        for experiment in snapshot.experiments:
            if not experiment.live(now):
                continue
            since = max(
                (now - GUARDRAIL_WINDOW).timestamp(),
                experiment.start.timestamp() if experiment.start else 0.0,
            )
            pages = self.store.for_experiment(experiment.name, since)
            # A variant resumed is judged on its pages since: the ones that paused it would
            # pause it again at the next check.
            resumed = {v.name: self.store.resumed_at(experiment.name, v.name)
                       for v in experiment.variants}  # fmt: skip
            pages = [e for e in pages if e.ts >= resumed.get(e.variant or "", 0.0)]
            for breach in breaches(experiment, health(experiment, pages)):
                if (experiment.name, breach.variant) in snapshot.paused:
                    continue
                found.append(breach)
                if self.store.pause(experiment.name, breach.variant, breach.reason()):
                    log.warning(
                        "experiment variant paused",
                        extra={
                            "experiment": experiment.name,
                            "variant": breach.variant,
                            "reason": breach.reason(),
                        },
                    )
        if found:
            self.refresh()
        return found

    def start(self) -> None:
        self.refresh()
        if self._poller.interval_s > 0:
            self._poller.start()

    def stop(self) -> None:
        self._poller.stop()

    def _tick(self) -> None:
        if self.poll_s > 0:
            self.refresh()
        due = time.monotonic() - self._last_guardrails >= self.guardrail_s
        if self.guardrail_s > 0 and due:
            self._last_guardrails = time.monotonic()
            self.check_guardrails()
