"""Served pages (exposures) and the paused variants of experiments, in the shop's store.

The tables live beside the events, so that an outcome (a click naming its page, a purchase)
and the page it is attributed to are read from one database, by every server process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from retrieval.records import EventKind
from retrieval.store import events_table, meta_table, metadata

exposures_table = sa.Table(
    "exposures",
    metadata,
    sa.Column("page_id", sa.String(32), primary_key=True),
    sa.Column("ts", sa.Float, nullable=False),
    # The shopper's pseudonym, or "session:<id>" for an anonymous session.
    sa.Column("unit", sa.String(160), nullable=False),
    sa.Column("experiment", sa.String(64)),
    sa.Column("variant", sa.String(64)),
    sa.Column("analysed", sa.Boolean, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("backend", sa.String(16), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("prompt", sa.String(64), nullable=False),
    sa.Column("llm", sa.Boolean, nullable=False),
    sa.Column("fallback", sa.Boolean, nullable=False),
    sa.Column("fallback_reason", sa.Text),
    sa.Column("cached", sa.Boolean, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("grounding_errors", sa.Integer, nullable=False),
    sa.Column("sections", sa.Text, nullable=False),  # JSON: products per section
    sa.Column("products", sa.Text, nullable=False),  # JSON: product ids by slot
    sa.Index("exposures_experiment", "experiment", "ts"),
    sa.Index("exposures_unit", "unit", "ts"),
)

pauses_table = sa.Table(
    "experiment_pauses",
    metadata,
    sa.Column("experiment", sa.String(64), primary_key=True),
    sa.Column("variant", sa.String(64), primary_key=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)

OUTCOME_KINDS = (EventKind.CLICK, EventKind.CART, EventKind.PURCHASE)


@dataclass(frozen=True, slots=True)
class Exposure:
    """One served page: who saw it, in which arm, how it was made, what was where."""

    page_id: str
    ts: float
    unit: str
    experiment: str | None
    variant: str | None
    analysed: bool
    kind: str
    backend: str
    model: str
    prompt: str
    llm: bool  # made by a model (not the rules backend, not a fallback)
    fallback: bool
    fallback_reason: str | None
    cached: bool
    latency_ms: float
    grounding_errors: int  # shown texts a grounding check flags
    sections: tuple[int, ...]  # how many products each section shows, in order
    products: tuple[str, ...]  # the product in each slot, in reading order


@dataclass(frozen=True, slots=True)
class Outcome:
    """A click, cart or purchase event, with the page and slot it names (if any)."""

    shopper_id: str
    product_id: str
    kind: EventKind
    ts: float
    page_id: str | None
    slot: int | None


@dataclass(frozen=True)
class Pause:
    experiment: str
    variant: str
    ts: float
    reason: str


class ExposureStore:
    """Exposures, outcomes and pauses over the store's engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, exposures: Sequence[Exposure]) -> None:
        """Write a batch in one transaction; a page id already written is left as it was (a
        batch retried after a commit whose answer was lost writes nothing twice)."""
        if not exposures:
            return
        with self.engine.begin() as conn:
            conn.execute(_insert_new(self.engine, exposures_table), [_values(e) for e in exposures])

    def for_experiment(self, experiment: str, since: float = 0.0) -> list[Exposure]:
        """The experiment's exposures from ``since`` on, oldest first."""
        query = (
            sa.select(exposures_table)
            .where(exposures_table.c.experiment == experiment, exposures_table.c.ts >= since)
            .order_by(exposures_table.c.ts, exposures_table.c.page_id)
        )
        with self.engine.connect() as conn:
            return [_exposure(row) for row in conn.execute(query)]

    def by_id(self, page_ids: Iterable[str]) -> dict[str, Exposure]:
        ids = sorted(set(page_ids))
        found: dict[str, Exposure] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                query = sa.select(exposures_table).where(exposures_table.c.page_id.in_(chunk))
                found.update((row.page_id, _exposure(row)) for row in conn.execute(query))
        return found

    def pages_of(
        self, units: Iterable[str], since: float = 0.0
    ) -> dict[str, list[tuple[float, str]]]:
        """Every page (time, page id) each of ``units`` was served from ``since`` on, in any
        experiment or none, oldest first."""
        wanted = sorted(set(units))
        found: dict[str, list[tuple[float, str]]] = {}
        t = exposures_table.c
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                query = sa.select(t.unit, t.ts, t.page_id).where(
                    t.unit.in_(wanted[start : start + 500]), t.ts >= since
                )
                for row in conn.execute(query):
                    found.setdefault(row.unit, []).append((row.ts, row.page_id))
        for pages in found.values():
            pages.sort()
        return found

    def outcomes(self, since: float = 0.0) -> list[Outcome]:
        """Clicks, carts and purchases from ``since`` on, oldest first."""
        e = events_table.c
        query = (
            sa.select(e.shopper_id, e.product_id, e.kind, e.ts, e.page_id, e.slot)
            .where(e.kind.in_([k.value for k in OUTCOME_KINDS]), e.ts >= since)
            .order_by(e.ts, e.event_id)
        )
        with self.engine.connect() as conn:
            return [
                Outcome(r.shopper_id, r.product_id, EventKind(r.kind), r.ts, r.page_id, r.slot)
                for r in conn.execute(query)
            ]

    # -- pauses -----------------------------------------------------------------------------

    def pause(self, experiment: str, variant: str, reason: str) -> bool:
        """Record a pause; False if the variant was paused already (the first reason stays;
        several server processes may find the same breach at once)."""
        row = {"experiment": experiment, "variant": variant, "ts": time.time(), "reason": reason}
        with self.engine.begin() as conn:
            done = conn.execute(_insert_new(self.engine, pauses_table), row)
        return done.rowcount > 0

    def resumed_at(self, experiment: str, variant: str) -> float:
        """When the variant was last resumed (0: never): its guardrails judge pages after."""
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(meta_table.c.value).where(
                    meta_table.c.key == _resumed_key(experiment, variant)
                )
            ).scalar()
        return float(value) if value is not None else 0.0

    def resume(self, experiment: str, variant: str) -> bool:
        key = _resumed_key(experiment, variant)
        with self.engine.begin() as conn:
            gone = conn.execute(
                pauses_table.delete().where(
                    pauses_table.c.experiment == experiment, pauses_table.c.variant == variant
                )
            )
            if gone.rowcount > 0:
                conn.execute(meta_table.delete().where(meta_table.c.key == key))
                conn.execute(meta_table.insert().values(key=key, value=repr(time.time())))
        return gone.rowcount > 0

    def pauses(self) -> list[Pause]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(pauses_table).order_by(pauses_table.c.ts))
            return [Pause(r.experiment, r.variant, r.ts, r.reason) for r in rows]


def _resumed_key(experiment: str, variant: str) -> str:
    return f"experiment_resumed:{experiment}:{variant}"


def _insert_new(engine: Engine, table: sa.Table) -> Any:
    """INSERT that leaves rows whose key exists alone (SQLite and PostgreSQL say it alike)."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    if engine.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing()
    return table.insert()


def _values(e: Exposure) -> dict[str, object]:
    return {
        "page_id": e.page_id,
        "ts": e.ts,
        "unit": e.unit,
        "experiment": e.experiment,
        "variant": e.variant,
        "analysed": e.analysed,
        "kind": e.kind,
        "backend": e.backend,
        "model": e.model,
        "prompt": e.prompt,
        "llm": e.llm,
        "fallback": e.fallback,
        "fallback_reason": e.fallback_reason,
        "cached": e.cached,
        "latency_ms": e.latency_ms,
        "grounding_errors": e.grounding_errors,
        "sections": json.dumps(list(e.sections)),
        "products": json.dumps(list(e.products), ensure_ascii=False),
    }


def _exposure(row: sa.Row) -> Exposure:
    return Exposure(
        page_id=row.page_id,
        ts=row.ts,
        unit=row.unit,
        experiment=row.experiment,
        variant=row.variant,
        analysed=bool(row.analysed),
        kind=row.kind,
        backend=row.backend,
        model=row.model,
        prompt=row.prompt,
        llm=bool(row.llm),
        fallback=bool(row.fallback),
        fallback_reason=row.fallback_reason,
        cached=bool(row.cached),
        latency_ms=row.latency_ms,
        grounding_errors=row.grounding_errors,
        sections=tuple(json.loads(row.sections)),
        products=tuple(json.loads(row.products)),
    )
