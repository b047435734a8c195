"""Pages composed ahead of the request, in the shop's store: the queue of pages to compose,
the kept pages, a log of every compose, and each shopper's visit score.

Everything lives in the database beside the events, so that the queue survives a restart and
every server process (uvicorn workers, replicas on PostgreSQL) shares one queue. A queued
page is claimed with a compare-and-set on its row (the same statement on SQLite and
PostgreSQL): of two processes that read the same row, one update matches and the other's
does not, so a page is composed by one process at a time. A claim is a lease: a process that
dies mid-compose leaves the row to be claimed again when the lease runs out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from retrieval.store import events_table, metadata

ahead_queue_table = sa.Table(
    "ahead_queue",
    metadata,
    sa.Column("shopper_id", sa.String(128), primary_key=True),
    # Which page of the shopper (kind, locale, categories, ...): a hash of the request.
    sa.Column("request_hash", sa.String(32), primary_key=True),
    sa.Column("request", sa.Text, nullable=False),  # the PageRequest as JSON
    sa.Column("priority", sa.Float, nullable=False),
    # Bumped by every enqueue: a compose that started before an event does not delete the
    # row the event queued again.
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("enqueued_at", sa.Float, nullable=False),
    sa.Column("claimed_by", sa.String(64)),
    sa.Column("claimed_until", sa.Float, nullable=False),  # 0: not claimed
    sa.Index("ahead_queue_priority", "priority"),
)

ahead_pages_table = sa.Table(
    "ahead_pages",
    metadata,
    sa.Column("shopper_id", sa.String(128), primary_key=True),
    sa.Column("request_hash", sa.String(32), primary_key=True),
    # Hash of everything the page depends on (shopper state, prompt and its file, backend,
    # model, trained models' version, experiment arm): served only to an identical key.
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("request", sa.Text, nullable=False),  # the PageRequest as JSON
    sa.Column("composed_at", sa.Float, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("views", sa.Integer, nullable=False),
    sa.Column("compose_id", sa.Integer, nullable=False),
)

ahead_composes_table = sa.Table(
    "ahead_composes",
    metadata,
    sa.Column("compose_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("shopper_id", sa.String(128), nullable=False),
    sa.Column("request_hash", sa.String(32), nullable=False),
    sa.Column("worker", sa.String(64), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    # kept | invalid | superseded | failed | wasted (kept, then replaced unseen)
    sa.Column("outcome", sa.String(16)),
    sa.Index("ahead_composes_started", "started_at"),
)

ahead_visits_table = sa.Table(
    "ahead_visits",
    metadata,
    sa.Column("shopper_id", sa.String(128), primary_key=True),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("last_visit", sa.Float, nullable=False),
)


@dataclass(frozen=True, slots=True)
class QueuedPage:
    shopper_id: str
    request_hash: str
    request: str  # JSON
    priority: float
    version: int


@dataclass(frozen=True, slots=True)
class KeptPage:
    shopper_id: str
    request_hash: str
    key_hash: str
    request: str
    composed_at: float
    payload: str
    views: int
    compose_id: int


@dataclass(frozen=True, slots=True)
class Visit:
    """A page view of a known shopper, and whether it was served a kept page."""

    shopper_id: str
    ts: float
    request_hash: str | None = None  # the kept page served, if any
    compose_id: int | None = None  # ... and which compose of it


def priority(score: float, last_visit: float, tau_s: float) -> float:
    """A sortable stand-in for the visit score decayed to any common time: for two shoppers,
    ``score·exp(-(now-last)/tau)`` compares like ``ln(score) + last/tau`` whatever ``now`` is,
    so stored priorities never need updating as time passes."""
    return math.log(max(score, 1e-9)) + last_visit / tau_s


class AheadStore:
    """The compose-ahead tables over the store's engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- queue ------------------------------------------------------------------------------

    def enqueue(self, pages: Sequence[tuple[str, str, str, float]], now: float) -> None:
        """Queue ``(shopper_id, request_hash, request_json, priority)`` pages; a page already
        queued gets the new priority and version (one row per shopper and page)."""
        if not pages:
            return
        rows = [
            {
                "shopper_id": s,
                "request_hash": h,
                "request": r,
                "priority": p,
                "version": 1,
                "enqueued_at": now,
                "claimed_until": 0.0,
            }
            for s, h, r, p in pages
        ]
        t = ahead_queue_table
        stmt = _insert(self.engine, t)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.shopper_id, t.c.request_hash],
            set_={
                "request": stmt.excluded.request,
                "priority": stmt.excluded.priority,
                "version": t.c.version + 1,
                "enqueued_at": stmt.excluded.enqueued_at,
            },
        )
        with self.engine.begin() as conn:
            conn.execute(stmt, rows)

    def trim(self, max_size: int) -> int:
        """Drop the lowest-priority unclaimed pages beyond ``max_size``; how many went."""
        t = ahead_queue_table
        with self.engine.begin() as conn:
            size = conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() or 0
            excess = size - max_size
            if excess <= 0:
                return 0
            victims = conn.execute(
                sa.select(t.c.shopper_id, t.c.request_hash)
                .where(t.c.claimed_until == 0)
                .order_by(t.c.priority.asc())
                .limit(excess)
            ).all()
            for shopper, request_hash in victims:
                conn.execute(_where_page(t.delete(), t, shopper, request_hash))
            return len(victims)

    def claim(self, worker: str, now: float, lease_s: float, scan: int = 16) -> QueuedPage | None:
        """The highest-priority page no live lease holds, now leased to ``worker``."""
        t = ahead_queue_table
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.c.shopper_id, t.c.request_hash, t.c.request, t.c.priority, t.c.version)
                .where(t.c.claimed_until < now)
                .order_by(t.c.priority.desc())
                .limit(scan)
            ).all()
        for row in rows:
            page = QueuedPage(*row)
            with self.engine.begin() as conn:
                won = conn.execute(
                    _where_page(t.update(), t, page.shopper_id, page.request_hash)
                    .where(t.c.claimed_until < now, t.c.version == page.version)
                    .values(claimed_by=worker, claimed_until=now + lease_s)
                ).rowcount
            if won:
                return page
        return None

    def finish(self, page: QueuedPage, worker: str) -> bool:
        """Done with a claimed page: its row goes unless it was queued again meanwhile (then
        it is released for the next compose). True if the row went."""
        t = ahead_queue_table
        with self.engine.begin() as conn:
            gone = conn.execute(
                _where_page(t.delete(), t, page.shopper_id, page.request_hash).where(
                    t.c.version == page.version, t.c.claimed_by == worker
                )
            ).rowcount
            if not gone:
                conn.execute(
                    _where_page(t.update(), t, page.shopper_id, page.request_hash)
                    .where(t.c.claimed_by == worker)
                    .values(claimed_by=None, claimed_until=0.0)
                )
        return bool(gone)

    def release(self, worker: str) -> int:
        """Hand back every claim ``worker`` holds (a clean stop): the rows are claimable at
        once instead of when their leases run out."""
        t = ahead_queue_table
        with self.engine.begin() as conn:
            return conn.execute(
                t.update()
                .where(t.c.claimed_by == worker)
                .values(claimed_by=None, claimed_until=0.0)
            ).rowcount

    def depth(self) -> int:
        with self.engine.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(ahead_queue_table))
            return count.scalar() or 0

    def queued(self) -> list[QueuedPage]:
        t = ahead_queue_table
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    t.c.shopper_id, t.c.request_hash, t.c.request, t.c.priority, t.c.version
                ).order_by(t.c.priority.desc())
            ).all()
        return [QueuedPage(*row) for row in rows]

    def requests_of(self, shopper_id: str) -> dict[str, str]:
        """The pages known for a shopper (kept or queued): request hash -> request JSON."""
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            q = ahead_queue_table
            for h, r in conn.execute(
                sa.select(q.c.request_hash, q.c.request).where(q.c.shopper_id == shopper_id)
            ):
                out[h] = r
            k = ahead_pages_table
            kept = conn.execute(
                sa.select(k.c.request_hash, k.c.request).where(k.c.shopper_id == shopper_id)
            ).all()
        for h, request in kept:
            out.setdefault(h, request)
        return out

    def shoppers_known(self, shopper_ids: Iterable[str]) -> set[str]:
        """Those of ``shopper_ids`` with a page kept or queued."""
        ids = list(set(shopper_ids))
        out: set[str] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for t in (ahead_queue_table, ahead_pages_table):
                    out.update(
                        conn.execute(
                            sa.select(t.c.shopper_id).where(t.c.shopper_id.in_(chunk)).distinct()
                        ).scalars()
                    )
        return out

    # -- kept pages -------------------------------------------------------------------------

    def kept(self, shopper_id: str, request_hash: str) -> KeptPage | None:
        t = ahead_pages_table
        with self.engine.connect() as conn:
            row = conn.execute(_where_page(sa.select(t), t, shopper_id, request_hash)).first()
        return KeptPage(*row) if row is not None else None

    def keep(self, page: KeptPage) -> bool:
        """Store a composed page in place of the shopper's previous one; True if the previous
        one was never served (a wasted compose, marked so in the log)."""
        t = ahead_pages_table
        with self.engine.begin() as conn:
            before = conn.execute(
                _where_page(sa.select(t.c.views, t.c.compose_id), t, page.shopper_id,
                            page.request_hash)
            ).first()  # fmt: skip
            values = {
                "shopper_id": page.shopper_id,
                "request_hash": page.request_hash,
                "key_hash": page.key_hash,
                "request": page.request,
                "composed_at": page.composed_at,
                "payload": page.payload,
                "views": 0,
                "compose_id": page.compose_id,
            }
            # An upsert: another process may have kept this page since the read above.
            stmt = _insert(self.engine, t).values(**values)
            stmt = stmt.on_conflict_do_update(
                index_elements=[t.c.shopper_id, t.c.request_hash],
                set_={k: v for k, v in values.items() if k not in ("shopper_id", "request_hash")},
            )
            conn.execute(stmt)
            if before is None:
                return False
            wasted = before.views == 0
            if wasted:
                _set_outcome(conn, before.compose_id, "wasted")
            return wasted

    def expire(self, composed_before: float) -> int:
        """Drop kept pages composed before ``composed_before`` (too old to be served); those
        never served are marked wasted in the log. How many of those there were."""
        t = ahead_pages_table
        with self.engine.begin() as conn:
            unseen = (
                conn.execute(
                    sa.select(t.c.compose_id).where(
                        t.c.composed_at < composed_before, t.c.views == 0
                    )
                )
                .scalars()
                .all()
            )
            for compose_id in unseen:
                _set_outcome(conn, compose_id, "wasted")
            conn.execute(t.delete().where(t.c.composed_at < composed_before))
        return len(unseen)

    def prune_log(self, started_before: float) -> int:
        """Forget composes that started before ``started_before`` (the log would grow
        forever; the budget reads the last minute only)."""
        t = ahead_composes_table
        with self.engine.begin() as conn:
            return conn.execute(t.delete().where(t.c.started_at < started_before)).rowcount

    def mark_viewed(self, compose_ids: Iterable[int]) -> None:
        """Count a view of each kept page, named by its compose (a view of a page replaced
        since counts for nothing: the page it saw is gone)."""
        t = ahead_pages_table
        counts: dict[int, int] = {}
        for compose_id in compose_ids:
            counts[compose_id] = counts.get(compose_id, 0) + 1
        if not counts:
            return
        with self.engine.begin() as conn:
            for compose_id, n in counts.items():
                conn.execute(
                    t.update().where(t.c.compose_id == compose_id).values(views=t.c.views + n)
                )

    # -- compose log ------------------------------------------------------------------------

    def start_compose(self, shopper_id: str, request_hash: str, worker: str, now: float) -> int:
        t = ahead_composes_table
        with self.engine.begin() as conn:
            result = conn.execute(
                t.insert().values(
                    shopper_id=shopper_id, request_hash=request_hash, worker=worker,
                    started_at=now,
                )
            )  # fmt: skip
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def end_compose(self, compose_id: int, outcome: str, now: float) -> None:
        t = ahead_composes_table
        with self.engine.begin() as conn:
            conn.execute(
                t.update()
                .where(t.c.compose_id == compose_id)
                .values(finished_at=now, outcome=outcome)
            )

    def composes_since(self, since: float) -> int:
        """Composes started at or after ``since``, by every process (the shared budget)."""
        t = ahead_composes_table
        with self.engine.connect() as conn:
            count = conn.execute(
                sa.select(sa.func.count()).select_from(t).where(t.c.started_at >= since)
            )
            return count.scalar() or 0

    def outcomes(self) -> dict[str, int]:
        """Composes by outcome (``running`` for those not finished)."""
        t = ahead_composes_table
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.outcome, sa.func.count()).group_by(t.c.outcome))
            return {(outcome or "running"): n for outcome, n in rows}

    def close_stale(self, started_before: float) -> int:
        """Composes still open that started before ``started_before`` (their process died or
        stopped mid-page, their lease is over) are marked failed."""
        t = ahead_composes_table
        with self.engine.begin() as conn:
            return conn.execute(
                t.update()
                .where(t.c.outcome.is_(None), t.c.started_at < started_before)
                .values(outcome="failed")
            ).rowcount

    def last_composed(self, shopper_ids: Iterable[str]) -> dict[str, float]:
        """When each shopper's latest compose started (absent: none in the log)."""
        ids = list(set(shopper_ids))
        t = ahead_composes_table
        out: dict[str, float] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                rows = conn.execute(
                    sa.select(t.c.shopper_id, sa.func.max(t.c.started_at))
                    .where(t.c.shopper_id.in_(ids[start : start + 500]))
                    .group_by(t.c.shopper_id)
                )
                out.update({s: float(ts) for s, ts in rows})
        return out

    # -- visits and activity ----------------------------------------------------------------

    def record_visits(self, visits: Sequence[Visit], tau_s: float) -> None:
        """Fold page views into each shopper's visit score (each adds 1; older ones fade)."""
        for attempt in range(3):
            try:
                self._record_visits(visits, tau_s)
                return
            except sa.exc.IntegrityError:
                # Another process wrote a first visit of the same shopper between the read
                # and the insert: read again.
                if attempt == 2:
                    raise

    def _record_visits(self, visits: Sequence[Visit], tau_s: float) -> None:
        if not visits:
            return
        t = ahead_visits_table
        ordered = sorted(visits, key=lambda v: v.ts)
        shoppers = {v.shopper_id for v in ordered}
        with self.engine.begin() as conn:
            known = {
                s: (score, last)
                for s, score, last in conn.execute(
                    sa.select(t.c.shopper_id, t.c.score, t.c.last_visit).where(
                        t.c.shopper_id.in_(shoppers)
                    )
                )
            }
            fresh = set(shoppers) - set(known)
            for v in ordered:
                score, last = known.get(v.shopper_id, (0.0, v.ts))
                decay = math.exp(-max(v.ts - last, 0.0) / tau_s)
                known[v.shopper_id] = (score * decay + 1.0, max(v.ts, last))
            for shopper, (score, last) in known.items():
                if shopper in fresh:
                    conn.execute(
                        t.insert().values(shopper_id=shopper, score=score, last_visit=last)
                    )
                elif shopper in shoppers:
                    conn.execute(
                        t.update()
                        .where(t.c.shopper_id == shopper)
                        .values(score=score, last_visit=last)
                    )

    def priorities(self, shopper_ids: Iterable[str], tau_s: float) -> dict[str, float]:
        """Priorities of shoppers with recorded visits (others are absent)."""
        ids = list(set(shopper_ids))
        if not ids:
            return {}
        t = ahead_visits_table
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.c.shopper_id, t.c.score, t.c.last_visit).where(t.c.shopper_id.in_(ids))
            ).all()
        return {s: priority(score, last, tau_s) for s, score, last in rows}

    def active_shoppers(self, window_s: float, limit: int) -> list[tuple[str, int, float]]:
        """``(shopper_id, events, last event time)`` of shoppers with an event within
        ``window_s`` of the store's latest event, most recent first. Measured from the latest
        event, not the clock: a shop loaded from an older log still has recent shoppers."""
        e = events_table
        with self.engine.connect() as conn:
            latest = conn.execute(sa.select(sa.func.max(e.c.ts))).scalar()
            if latest is None:
                return []
            last = sa.func.max(e.c.ts)
            rows = conn.execute(
                sa.select(e.c.shopper_id, sa.func.count(), last)
                .where(e.c.ts >= latest - window_s)
                .group_by(e.c.shopper_id)
                .order_by(last.desc())
                .limit(limit)
            ).all()
        return [(s, int(n), float(ts)) for s, n, ts in rows]


def _where_page(stmt: Any, t: sa.Table, shopper_id: str, request_hash: str) -> Any:
    return stmt.where(t.c.shopper_id == shopper_id, t.c.request_hash == request_hash)


def _set_outcome(conn: Connection, compose_id: int, outcome: str) -> None:
    t = ahead_composes_table
    conn.execute(t.update().where(t.c.compose_id == compose_id).values(outcome=outcome))


def _insert(engine: Engine, table: sa.Table) -> Any:
    """INSERT … ON CONFLICT, which SQLite and PostgreSQL spell alike."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)
