"""`composer bench api --trace revisits`: the shop's own visit pattern replayed against a page
API, pages composed on request against pages composed ahead.

The trace comes from the shop's event log: the last ``days`` of it, cut into visits (a new
visit after 30 minutes without an event), of the shoppers who had visited before. Their
visits keep their order and their gaps, compressed so that the window lasts ``seconds``;
each visit asks for the shopper's home page, then records the visit's events (at most
``MAX_EVENTS_PER_VISIT``), which change the shopper's state before their next visit.

Each mode runs on a fresh copy of the shop (its store without the window's events, the same
index and models), in a server of its own with the same model. With compose-ahead, the
shoppers' previous visit (one page view each, before the window) comes first, and the replay
starts once the pages it queued are composed (or ``warmup_timeout_s`` passed: reported).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson
from sqlalchemy.engine import make_url

from composer.api.security.redaction import reason_code
from composer.bench.api import percentile
from composer.errors import UsageError
from composer.provision import copy_shop_files, open_store
from composer.settings import BackendName, Settings
from retrieval import AheadStore
from retrieval.store import StoredEvent

SESSION_GAP_S = 1800.0
MAX_EVENTS_PER_VISIT = 20
MODES = ("on_request", "compose_ahead")


@dataclass(frozen=True)
class TraceVisit:
    at_s: float  # seconds after the replay starts
    shopper_id: str
    events: tuple[tuple[str, str], ...]  # (kind, product id), in the log's order


@dataclass(frozen=True)
class Trace:
    visits: list[TraceVisit]
    shoppers: list[str]
    window_start: float  # event time where the window begins
    days: float
    seconds: float

    @property
    def compression(self) -> float:
        return self.days * 86400 / self.seconds

    def summary(self) -> dict[str, Any]:
        per_shopper = Counter(v.shopper_id for v in self.visits)
        gaps = self._gaps()
        return {
            "window_days": self.days,
            "replay_seconds": self.seconds,
            "compression": round(self.compression, 1),
            "shoppers": len(self.shoppers),
            "visits": len(self.visits),
            "returning_visits": sum(n - 1 for n in per_shopper.values()),
            "gap_s_compressed_p10_p50_p90": [
                round(float(np.percentile(gaps, q)), 1) for q in (10, 50, 90)
            ]
            if gaps
            else None,
        }

    def _gaps(self) -> list[float]:
        last: dict[str, float] = {}
        gaps = []
        for v in self.visits:
            if v.shopper_id in last:
                gaps.append(v.at_s - last[v.shopper_id])
            last[v.shopper_id] = v.at_s
        return gaps


def build_trace(
    events: Sequence[StoredEvent], days: float, seconds: float, max_shoppers: int | None = None
) -> Trace:
    """The visits of returning shoppers in the log's last ``days``, compressed to
    ``seconds``; with ``max_shoppers``, those with the most visits in the window (a shop
    where most come once has thousands, each of whom the warm-up would compose for)."""
    if not events:
        raise UsageError("the shop has no events: there is no visit pattern to replay")
    ordered = sorted(events, key=lambda e: e.timestamp)
    start = ordered[-1].timestamp - days * 86400
    by_shopper: dict[str, list[StoredEvent]] = {}
    for e in ordered:
        by_shopper.setdefault(e.shopper_id, []).append(e)
    compression = days * 86400 / seconds
    visits: list[TraceVisit] = []
    for shopper, own in by_shopper.items():
        if own[0].timestamp >= start:
            continue  # a first visit: nothing known to compose ahead from
        window = [e for e in own if e.timestamp >= start]
        sessions: list[list[StoredEvent]] = []
        for e in window:
            if not sessions or e.timestamp - sessions[-1][-1].timestamp > SESSION_GAP_S:
                sessions.append([])
            sessions[-1].append(e)
        for session in sessions:
            visits.append(
                TraceVisit(
                    (session[0].timestamp - start) / compression,
                    shopper,
                    tuple((e.kind.value, e.product_id) for e in session[:MAX_EVENTS_PER_VISIT]),
                )
            )
    if max_shoppers is not None:
        counts = Counter(v.shopper_id for v in visits)
        chosen = {s for s, _ in sorted(counts.items(), key=lambda c: (-c[1], c[0]))[:max_shoppers]}
        visits = [v for v in visits if v.shopper_id in chosen]
    visits.sort(key=lambda v: v.at_s)
    if not visits:
        raise UsageError(
            f"no shopper who visited before the last {days:g} days visited within them; "
            "give --trace-days more days"
        )
    shoppers = sorted({v.shopper_id for v in visits})
    return Trace(visits, shoppers, start, days, seconds)


def prepare_world(settings: Settings, folder: Path, window_start: float) -> Settings:
    """A copy of the shop in ``folder`` whose store ends where the window begins."""
    url = make_url(settings.resolved_database_url())
    if url.get_backend_name() != "sqlite" or not url.database:
        raise UsageError("--trace replays on a copy of an SQLite shop; this one is not SQLite")
    copy_shop_files(settings, folder)
    # SQLite's backup: a consistent copy even if a server is writing to the shop.
    with (
        closing(sqlite3.connect(url.database)) as src,
        closing(sqlite3.connect(folder / "shop.db")) as dst,
    ):
        src.backup(dst)
        dst.execute("DELETE FROM events WHERE ts >= ?", (window_start,))
        # A shop that served with compose-ahead brings its queue and pages along: each mode
        # starts from none.
        for table in ("ahead_queue", "ahead_pages", "ahead_composes", "ahead_visits"):
            dst.execute(f"DELETE FROM {table}")
        dst.commit()
    return settings.for_shop_folder(folder)


@dataclass
class View:
    status: int
    latency_ms: float
    llm: bool = False
    fallback_reason: str | None = None
    ahead: str | None = None
    page_age_s: float | None = None
    cached: bool = False


class Replayer:
    def __init__(self, url: str, key: str, concurrency: int) -> None:
        self.url = url
        self.headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
        self.concurrency = concurrency
        self.errors = 0
        self.events_refused = 0

    async def page(self, session: aiohttp.ClientSession, shopper: str) -> View | None:
        body = {"shopper_id": shopper, "format": "html"}
        t = time.perf_counter()
        try:
            async with session.post(
                f"{self.url}/v1/pages", data=orjson.dumps(body), headers=self.headers
            ) as r:
                status, raw = r.status, await r.read()
        except (aiohttp.ClientError, TimeoutError):
            self.errors += 1
            return None
        latency = (time.perf_counter() - t) * 1000
        if status != 200:
            return View(status, latency)
        page = orjson.loads(raw)
        trace = page["trace"]
        return View(
            status,
            latency,
            llm=trace["backend"] != BackendName.RULES and not trace["fallback"],
            fallback_reason=reason_code(trace.get("fallback_reason")),
            ahead=trace.get("ahead"),
            page_age_s=trace.get("page_age_s"),
            cached=page.get("cache") == "hit",
        )

    async def events(self, session: aiohttp.ClientSession, visit: TraceVisit) -> None:
        by_kind: dict[str, list[str]] = {}
        for kind, product in visit.events:
            by_kind.setdefault(kind, []).append(product)
        for kind, products in by_kind.items():
            body = {"shopper_id": visit.shopper_id, "kind": kind, "product_ids": products}
            try:
                async with session.post(
                    f"{self.url}/v1/events", data=orjson.dumps(body), headers=self.headers
                ) as r:
                    await r.read()
                    self.events_refused += r.status != 201
            except (aiohttp.ClientError, TimeoutError):
                self.events_refused += 1

    async def warm_up(self, shoppers: Sequence[str]) -> list[View]:
        """One page view per shopper, all at once (bounded by the concurrency)."""
        limit = asyncio.Semaphore(self.concurrency)
        async with self._session() as session:

            async def one(shopper: str) -> View | None:
                async with limit:
                    return await self.page(session, shopper)

            views = await asyncio.gather(*(one(s) for s in shoppers))
        return [v for v in views if v is not None]

    async def replay(self, visits: Sequence[TraceVisit]) -> tuple[list[View], float]:
        """Every visit at its time (at most ``concurrency`` page requests in flight); a
        shopper's visits one after the other, their events after their page."""
        limit = asyncio.Semaphore(self.concurrency)
        views: list[View] = []
        by_shopper: dict[str, list[TraceVisit]] = {}
        for v in visits:
            by_shopper.setdefault(v.shopper_id, []).append(v)
        loop = asyncio.get_running_loop()
        async with self._session() as session:
            t0 = loop.time()

            async def shopper(own: list[TraceVisit]) -> None:
                for visit in own:
                    await asyncio.sleep(max(0.0, t0 + visit.at_s - loop.time()))
                    async with limit:
                        view = await self.page(session, visit.shopper_id)
                    if view is not None:
                        views.append(view)
                    await self.events(session, visit)

            await asyncio.gather(*(shopper(own) for own in by_shopper.values()))
            elapsed = loop.time() - t0
        return views, elapsed

    def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.concurrency + 4),
            timeout=aiohttp.ClientTimeout(total=300),
        )


def summarise(views: Sequence[View], elapsed_s: float, replayer: Replayer) -> dict[str, Any]:
    ok = [v for v in views if v.status == 200]
    latencies = [v.latency_ms for v in ok]
    ages = [v.page_age_s for v in ok if v.page_age_s is not None]
    return {
        "page_views": len(views) + replayer.errors,
        "answered_200": len(ok),
        "llm_share": round(sum(v.llm for v in ok) / len(ok), 3) if ok else None,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": round(max(latencies), 1) if latencies else None,
        "rules_page_reasons": dict(Counter(v.fallback_reason for v in ok if not v.llm)),
        "ahead": dict(Counter(v.ahead for v in ok if v.ahead is not None)),
        "page_age_s_p50": round(float(np.median(ages)), 1) if ages else None,
        "page_age_s_max": round(max(ages), 1) if ages else None,
        "cache_hits": sum(v.cached for v in ok),
        "non_200": len(views) - len(ok),
        "errors": replayer.errors,
        "events_refused": replayer.events_refused,
        "replay_s": round(elapsed_s, 1),
    }


def wait_composed(store: AheadStore, timeout_s: float) -> tuple[bool, float]:
    """Until nothing is queued and no compose runs: (drained, seconds waited)."""
    t = time.perf_counter()
    while time.perf_counter() - t < timeout_s:
        if store.depth() == 0 and "running" not in store.outcomes():
            return True, round(time.perf_counter() - t, 1)
        time.sleep(1.0)
    return False, round(time.perf_counter() - t, 1)


def run_revisits(
    settings: Settings,
    backend: BackendName,
    days: float = 14.0,
    seconds: float = 360.0,
    workers: int = 1,
    concurrency: int = 16,
    budget_per_minute: int = 60,
    max_shoppers: int | None = None,
    warmup_timeout_s: float = 1200.0,
    modes: Sequence[str] = MODES,
) -> dict[str, Any]:
    """Both modes over the same trace: share of page views that were LLM pages, latency."""
    from composer.topology.api_server import ApiServer
    from composer.topology.process import shop_env

    if backend == BackendName.RULES:
        raise UsageError("--trace compares LLM pages: give --backend transformers or vllm")
    with closing(open_store(settings)) as source:
        trace = build_trace(source.all_events(), days, seconds, max_shoppers)
    out: dict[str, Any] = {"trace": trace.summary(), "backend": backend, "workers": workers,
                           "concurrency": concurrency}  # fmt: skip
    folder = settings.artifacts_dir / "bench" / "revisits"
    for mode in modes:
        world = prepare_world(settings, folder, trace.window_start)
        ahead = mode == "compose_ahead"
        env = shop_env(
            {
                "COMPOSER_ARTIFACTS_DIR": str(folder.resolve()),
                "COMPOSER_CACHE_DIR": str(settings.resolved_cache_dir().resolve()),
                "COMPOSER_LLM_BACKEND": backend.value,
                "COMPOSER_AHEAD__ENABLED": str(ahead).lower(),
                # The previous visits below queue exactly the trace's shoppers; a sweep would
                # queue every recently active shopper of the shop as well.
                "COMPOSER_AHEAD__SWEEP_S": "0",
                "COMPOSER_AHEAD__BUDGET_PER_MINUTE": str(budget_per_minute),
            }
        )
        logs = settings.artifacts_dir / "bench" / "revisits-logs"
        logs.mkdir(parents=True, exist_ok=True)
        replayer_log = logs / f"server-{mode}.log"
        with ApiServer(workers, env, log=replayer_log, key_id="revisits") as server:
            replayer = Replayer(server.url, server.key, concurrency)
            report: dict[str, Any] = {}
            if ahead:
                t = time.perf_counter()
                warm = asyncio.run(replayer.warm_up(trace.shoppers))
                with closing(open_store(world)) as store:
                    drained, waited = wait_composed(AheadStore(store.engine), warmup_timeout_s)
                report["previous_visits"] = {
                    "page_views": len(warm),
                    "composed_in_s": round(time.perf_counter() - t, 1),
                    "all_composed": drained,
                    "waited_s": waited,
                }
                replayer.errors = 0
            views, elapsed = asyncio.run(replayer.replay(trace.visits))
            report.update(summarise(views, elapsed, replayer))
            if ahead:
                with closing(open_store(world)) as store:
                    report["composes"] = AheadStore(store.engine).outcomes()
            out[mode] = report
    if all(m in out for m in MODES):
        before, after = out["on_request"], out["compose_ahead"]
        out["ratios"] = {
            "llm_share_ahead_over_on_request": _ratio(after["llm_share"], before["llm_share"]),
            "p99_ahead_over_on_request": _ratio(after["p99_ms"], before["p99_ms"]),
            "p50_ahead_over_on_request": _ratio(after["p50_ms"], before["p50_ms"]),
        }
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None
