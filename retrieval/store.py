"""The shop's data-access layer: catalog, shoppers and events behind SQLAlchemy Core.

SQLite (WAL) by default; PostgreSQL by changing the URL (``postgresql+psycopg://…``). The
schema is versioned (:mod:`retrieval.migrations`) and brought up to date on opening.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from retrieval import migrations
from retrieval.errors import UnknownProductError
from retrieval.lru import LRU
from retrieval.records import EventKind, Interaction, Product, Shopper

metadata = sa.MetaData()

# Events of one shopper a page reads at most (the latest ones).
MAX_HISTORY = 2000

products_table = sa.Table(
    "products",
    metadata,
    sa.Column("product_id", sa.String(128), primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("categories", sa.Text, nullable=False),  # JSON list
    sa.Column("price", sa.Float, nullable=False),
    sa.Column("in_stock", sa.Boolean, nullable=False),
    sa.Column("year", sa.Integer),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("image_url", sa.Text),
    sa.Column("url", sa.Text),
    sa.Column("updated_at", sa.Float, nullable=False),
)

shoppers_table = sa.Table(
    "shoppers",
    metadata,
    sa.Column("shopper_id", sa.String(128), primary_key=True),
    sa.Column("attributes", sa.Text, nullable=False),  # JSON object
)

events_table = sa.Table(
    "events",
    metadata,
    sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("shopper_id", sa.String(128), nullable=False, index=True),
    sa.Column(
        "product_id",
        sa.String(128),
        sa.ForeignKey("products.product_id"),
        nullable=False,
    ),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("value", sa.Float),
    # The writing transaction's id (PostgreSQL fills it in; see migration 0002).
    sa.Column("txid", sa.BigInteger),
    # The served page and slot (0-based, in reading order) the event came from, if it says.
    sa.Column("page_id", sa.String(32)),
    sa.Column("slot", sa.Integer),
)

meta_table = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

sa.Index(
    "events_identity",
    events_table.c.shopper_id,
    events_table.c.product_id,
    events_table.c.kind,
    events_table.c.ts,
)


@dataclass(frozen=True)
class CatalogChange:
    """What an upsert did, so the vector index touches only changed products."""

    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: int = 0
    events_added: int = 0
    events_duplicate: int = 0

    @property
    def changed(self) -> tuple[str, ...]:
        return self.added + self.updated


@dataclass(frozen=True, slots=True)  # slots: histories are cached, one object per event
class StoredEvent:
    event_id: int
    shopper_id: str
    product_id: str
    kind: EventKind
    timestamp: float
    value: float | None


def _row_to_product(row: sa.Row) -> Product:
    return Product(
        product_id=row.product_id,
        title=row.title,
        categories=tuple(json.loads(row.categories)),
        price=float(row.price),
        in_stock=bool(row.in_stock),
        year=row.year,
        description=row.description,
        image_url=row.image_url,
        url=row.url,
    )


def _product_values(p: Product) -> dict[str, object]:
    return {
        "product_id": p.product_id,
        "title": p.title,
        "categories": json.dumps(list(p.categories), ensure_ascii=False),
        "price": round(p.price, 2),
        "in_stock": p.in_stock,
        "year": p.year,
        "description": p.description,
        "image_url": p.image_url,
        "url": p.url,
        "updated_at": time.time(),
    }


@dataclass(frozen=True)
class _Unseen:
    """The transactions a PostgreSQL read could not see: those in progress (``xip``) and
    every one from ``xmax`` on. Their events, whatever their ids, may commit later."""

    xip: tuple[int, ...] = ()
    xmax: int = 2**62  # nothing read yet: "after id 0" reads the whole history


@dataclass(frozen=True)
class _History:
    """A shopper's events, oldest first: every event up to ``last_event_id`` except, on
    PostgreSQL, those of the transactions the read could not see (``unseen``; SQLite's ids
    become visible in id order, one writer at a time)."""

    last_event_id: int
    events: tuple[StoredEvent, ...]
    unseen: _Unseen = _Unseen()

    # The page cache's key for the shopper (Store.history_state), asked for by every page:
    # computed once per cached history.
    @cached_property
    def state(self) -> tuple[int, int]:
        ids = tuple(sorted(e.event_id for e in self.events))
        return (ids[-1] if ids else 0), hash(ids)

    def seen_at(self, unseen: _Unseen) -> _History:
        """The same events after a read that found nothing new (PostgreSQL's unseen
        transactions move with every commit anywhere: keep the state computed)."""
        moved = _History(self.last_event_id, self.events, unseen)
        if "state" in self.__dict__:
            moved.__dict__["state"] = self.__dict__["state"]
        return moved


class Store:
    """Catalog, shoppers and events. Every write is one transaction.

    ``history_cache`` shoppers' event lists stay in memory (see :meth:`events_for`); 0
    turns that off. A history is the shopper's latest
    ``max_history`` events: a flood of events for one id costs no page more than that.
    """

    def __init__(self, url: str, history_cache: int = 1024, max_history: int = MAX_HISTORY) -> None:
        self.url = url
        self.max_history = max_history
        self.engine: Engine = sa.create_engine(url, future=True)
        self.postgres = self.engine.dialect.name == "postgresql"
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        migrations.upgrade(self.engine)
        # The catch-up is complete where ids commit in order (SQLite) or where the writer's
        # transaction id is kept (PostgreSQL); elsewhere every read is a full one.
        cacheable = self.postgres or self.engine.dialect.name == "sqlite"
        self._histories: LRU[str, _History] = LRU(history_cache if cacheable else 0)

    def close(self) -> None:
        self.engine.dispose()

    # -- writes ---------------------------------------------------------------------------

    def ingest(
        self,
        products: Sequence[Product] = (),
        interactions: Sequence[Interaction] = (),
        shoppers: Sequence[Shopper] = (),
        meta: dict[str, str] | None = None,
    ) -> CatalogChange:
        """Upsert products and shoppers and append new interactions, all or nothing.

        An interaction identical to a stored one (shopper, product, kind, time) is skipped, so
        re-ingesting the same file does not double the history.
        """
        with self.engine.begin() as conn:
            change = self._upsert_products(conn, products)
            self._upsert_shoppers(conn, shoppers)
            fresh = self._drop_known_events(conn, interactions)
            self._append_events(conn, fresh)
            for key, value in (meta or {}).items():
                conn.execute(meta_table.delete().where(meta_table.c.key == key))
                conn.execute(meta_table.insert().values(key=key, value=value))
        return CatalogChange(
            change.added,
            change.updated,
            change.unchanged,
            events_added=len(fresh),
            events_duplicate=len(interactions) - len(fresh),
        )

    def get_meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(meta_table.c.value).where(meta_table.c.key == key)
            ).scalar()

    def _drop_known_events(
        self, conn: Connection, interactions: Sequence[Interaction]
    ) -> list[Interaction]:
        shoppers = sorted({i.shopper_id for i in interactions})
        known: set[tuple[str, str, str, float]] = set()
        for chunk in _chunks(shoppers, 500):
            rows = conn.execute(
                sa.select(
                    events_table.c.shopper_id,
                    events_table.c.product_id,
                    events_table.c.kind,
                    events_table.c.ts,
                ).where(events_table.c.shopper_id.in_(chunk))
            )
            known.update((r[0], r[1], r[2], r[3]) for r in rows)
        fresh, batch = [], set()
        for i in interactions:
            key = (i.shopper_id, i.product_id, i.kind.value, i.timestamp)
            if key not in known and key not in batch:
                batch.add(key)
                fresh.append(i)
        return fresh

    def add_events(
        self, interactions: Sequence[Interaction], skip_known: bool = False
    ) -> list[int]:
        """Append shopper events durably; returns their event ids. With ``skip_known``,
        events identical to a stored one (or to one before them in the call) are left out:
        a retried call records nothing twice."""
        with self.engine.begin() as conn:
            if skip_known:
                interactions = self._drop_known_events(conn, interactions)
            return self._append_events(conn, interactions)

    def _upsert_products(self, conn: Connection, products: Sequence[Product]) -> CatalogChange:
        if not products:
            return CatalogChange()
        existing: dict[str, Product] = {}
        ids = [p.product_id for p in products]
        for chunk in _chunks(ids, 500):
            rows = conn.execute(
                sa.select(products_table).where(products_table.c.product_id.in_(chunk))
            )
            existing.update({r.product_id: _row_to_product(r) for r in rows})
        added, updated, unchanged = [], [], 0
        inserts, updates = [], []
        for p in products:
            old = existing.get(p.product_id)
            if old is None:
                added.append(p.product_id)
                inserts.append(_product_values(p))
            elif old.content_key() != p.content_key():
                updated.append(p.product_id)
                updates.append(_product_values(p))
            else:
                unchanged += 1
        if inserts:
            conn.execute(products_table.insert(), inserts)
        if updates:
            stmt = (
                products_table.update()
                .where(products_table.c.product_id == sa.bindparam("pid"))
                .values({c: sa.bindparam(c) for c in updates[0] if c != "product_id"})
            )
            conn.execute(stmt, [{**u, "pid": u["product_id"]} for u in updates])
        return CatalogChange(tuple(added), tuple(updated), unchanged)

    def _upsert_shoppers(self, conn: Connection, shoppers: Sequence[Shopper]) -> None:
        for chunk in _chunks(list(shoppers), 500):
            ids = [s.shopper_id for s in chunk]
            conn.execute(shoppers_table.delete().where(shoppers_table.c.shopper_id.in_(ids)))
            conn.execute(
                shoppers_table.insert(),
                [
                    {"shopper_id": s.shopper_id, "attributes": json.dumps(s.attributes)}
                    for s in chunk
                ],
            )

    def _append_events(self, conn: Connection, interactions: Sequence[Interaction]) -> list[int]:
        if not interactions:
            return []
        wanted = {i.product_id for i in interactions}
        known: set[str] = set()
        for chunk in _chunks(sorted(wanted), 500):
            known.update(
                conn.execute(
                    sa.select(products_table.c.product_id).where(
                        products_table.c.product_id.in_(chunk)
                    )
                ).scalars()
            )
        missing = wanted - known
        if missing:
            raise UnknownProductError(sorted(missing))
        result = conn.execute(
            events_table.insert().returning(events_table.c.event_id, sort_by_parameter_order=True),
            [
                {
                    "shopper_id": i.shopper_id,
                    "product_id": i.product_id,
                    "kind": i.kind.value,
                    "ts": i.timestamp,
                    "value": i.value,
                    "page_id": i.page_id,
                    "slot": i.slot,
                }
                for i in interactions
            ],
        )
        return list(result.scalars())

    # -- reads ----------------------------------------------------------------------------

    def products(self) -> list[Product]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(products_table).order_by(products_table.c.product_id))
            return [_row_to_product(r) for r in rows]

    def product(self, product_id: str) -> Product | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(products_table).where(products_table.c.product_id == product_id)
            ).first()
            return _row_to_product(row) if row else None

    def product_ids(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(products_table.c.product_id)).scalars())

    def shopper(self, shopper_id: str) -> Shopper | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(shoppers_table).where(shoppers_table.c.shopper_id == shopper_id)
            ).first()
            return Shopper(row.shopper_id, json.loads(row.attributes)) if row else None

    def events_for(self, shopper_id: str) -> list[StoredEvent]:
        return list(self._history(shopper_id).events)

    def _history(self, shopper_id: str) -> _History:
        """The shopper's events, oldest first (by time, then id), as cached.

        Events are only ever appended, so a cached history is brought up to date with the
        events recorded since: one indexed query that usually finds nothing, instead of
        reading hundreds of rows for a heavy shopper on every page. "Since" is in commit
        order: on SQLite ids become visible in id order (one writer at a time); on
        PostgreSQL a lower id may commit later, so the catch-up also reads the events of
        the transactions the last read could not see.
        """
        cached = self._histories.get(shopper_id)
        after = cached.last_event_id if cached is not None else 0
        unseen = cached.unseen if cached is not None else _Unseen()
        read, unseen_now = self._read_events(shopper_id, after, unseen)
        known = {e.event_id for e in cached.events} if cached is not None and read else set()
        new = [e for e in read if e.event_id not in known]
        if cached is not None and not new:
            if unseen_now != cached.unseen:
                cached = cached.seen_at(unseen_now)
                self._histories.put(shopper_id, cached)
            return cached
        if cached is not None:
            # An event may carry an earlier timestamp than ones already stored.
            events = sorted((*cached.events, *new), key=lambda e: (e.timestamp, e.event_id))
            events = events[-self.max_history :]
        else:
            events = new
        if not events:
            return _History(0, ())
        last = max(after, max(e.event_id for e in new))
        history = _History(last, tuple(events), unseen_now)
        self._histories.put(shopper_id, history)
        return history

    def _read_events(
        self, shopper_id: str, after_event_id: int = 0, unseen: _Unseen = _Unseen()
    ) -> tuple[list[StoredEvent], _Unseen]:
        """Events after ``after_event_id`` (and, on PostgreSQL, those of the ``unseen``
        transactions), and what this read could not see (nothing on SQLite)."""
        params = {"shopper": shopper_id, "after": after_event_id, "limit": self.max_history}
        if self.postgres:
            # One statement, so one snapshot: the transactions it reports unseen are exactly
            # those whose events it could not read. No transaction around it (autocommit):
            # one round trip to the server.
            params |= {"xip": list(unseen.xip), "xmax": unseen.xmax}
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                rows = conn.execute(_EVENTS_SINCE_SNAPSHOT, params).all()
            unseen_now = _Unseen(tuple(rows[0].xip), int(rows[0].xmax))
            found = [r[2:] for r in rows if r.event_id is not None]
            return _events_of(shopper_id, found), unseen_now
        with self.engine.connect() as conn:
            return _events_of(shopper_id, conn.execute(_EVENTS_AFTER, params)), _Unseen()

    def all_events(self) -> list[StoredEvent]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(events_table).order_by(events_table.c.event_id))
            return [_row_to_event(r) for r in rows]

    def last_event_id(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(events_table.c.event_id))).scalar() or 0

    def history_state(self, shopper_id: str) -> tuple[int, int]:
        """The shopper's latest event id and a fingerprint of the events a page reads
        ((0, hash of nothing) if none): changes with every new event, also one whose lower
        id commits after a higher one (PostgreSQL). Read through the history cache, so it
        costs a page no more than its history does (a count over every event did)."""
        return self._history(shopper_id).state

    def latest_shopper(self) -> str | None:
        """The shopper of the most recent event (None in a shop without events)."""
        with self.engine.connect() as conn:
            query = sa.select(events_table.c.shopper_id).order_by(events_table.c.event_id.desc())
            return conn.execute(query.limit(1)).scalar()

    def last_event_time(self) -> float | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(events_table.c.ts))).scalar()

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0
                for name, table in (
                    ("products", products_table),
                    ("shoppers", shoppers_table),
                    ("events", events_table),
                )
            }


_KINDS = {k.value: k for k in EventKind}

_HISTORY_COLUMNS = (
    events_table.c.event_id,
    events_table.c.product_id,
    events_table.c.kind,
    events_table.c.ts,
    events_table.c.value,
)
# The two queries of every page, built once: building a SQLAlchemy statement costs more
# than running it on an indexed table (an eighth of a rules page's GIL time under load).
_EVENTS_AFTER = (
    sa.select(*_HISTORY_COLUMNS)
    .where(
        events_table.c.shopper_id == sa.bindparam("shopper"),
        # Ids start at 1, so "after 0" is the whole history.
        events_table.c.event_id > sa.bindparam("after"),
    )
    # The latest events by id (the order they were recorded in); sorted by time on reading.
    .order_by(events_table.c.event_id.desc())
    .limit(sa.bindparam("limit"))
)
# PostgreSQL: the same, plus the events of the transactions the last read could not see,
# and what this read cannot see (always one row: the snapshot's, with or without an event).
_EVENTS_SINCE_SNAPSHOT = sa.text(
    """
    SELECT s.xip, s.xmax, e.event_id, e.product_id, e.kind, e.ts, e.value
    FROM (
        SELECT ARRAY(SELECT x::text::bigint FROM pg_snapshot_xip(snap) AS x) AS xip,
               pg_snapshot_xmax(snap)::text::bigint AS xmax
        FROM pg_current_snapshot() AS snap
    ) AS s
    LEFT JOIN LATERAL (
        SELECT event_id, product_id, kind, ts, value FROM events
        WHERE shopper_id = :shopper
          AND (event_id > :after OR txid = ANY(CAST(:xip AS bigint[])) OR txid >= :xmax)
        ORDER BY event_id DESC
        LIMIT :limit
    ) AS e ON true
    """
)


def _events_of(shopper_id: str, rows: Iterable[Sequence[Any]]) -> list[StoredEvent]:
    events = [
        StoredEvent(event_id, shopper_id, product_id, _KINDS[kind], ts, value)
        for event_id, product_id, kind, ts, value in rows
    ]
    return sorted(events, key=lambda e: (e.timestamp, e.event_id))


def _row_to_event(r: sa.Row) -> StoredEvent:
    return StoredEvent(r.event_id, r.shopper_id, r.product_id, EventKind(r.kind), r.ts, r.value)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    # WAL + NORMAL survives process crashes; FULL also survives power loss.
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()


def _chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
