"""`composer bench ingest`: products/s and events/s the store writes, on SQLite (a temp file,
the baseline measured in the same run) and on any other database URL given (PostgreSQL).

Each database must be empty: the benchmark writes a generated catalog and its events there.
The rows go through :meth:`Store.ingest`, the path `composer ingest` takes (one transaction,
products upserted, events checked against the stored ones and appended); a third figure is
live events, :meth:`Store.add_events` in calls of ``batch`` events, as the API records them.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from composer.errors import UsageError
from retrieval.records import EventKind, Interaction, Product
from retrieval.store import Store

CATEGORIES = ("Audio", "Cameras", "Computers", "Phones", "TV", "Home", "Outdoor", "Toys")
KINDS = (EventKind.VIEW, EventKind.VIEW, EventKind.VIEW, EventKind.CART, EventKind.PURCHASE)


def generated(products: int, events: int, seed: int) -> tuple[list[Product], list[Interaction]]:
    rng = random.Random(seed)
    catalog = [
        Product(
            f"p{i}",
            f"Generated product {i}",
            tuple(rng.sample(CATEGORIES, 2)),
            price=round(rng.uniform(1, 500), 2),
            description="A product of the ingest benchmark.",
        )
        for i in range(products)
    ]
    shoppers = max(1, events // 20)
    history = [
        Interaction(
            f"u{rng.randrange(shoppers)}",
            f"p{rng.randrange(products)}",
            rng.choice(KINDS),
            1.7e9 + i,
        )
        for i in range(events)
    ]
    return catalog, history


def measure(url: str, catalog: list[Product], history: list[Interaction], batch: int) -> dict:
    store = Store(url, history_cache=0)
    try:
        if any(store.counts().values()):
            shown = make_url(url).render_as_string(hide_password=True)
            raise UsageError(f"{shown} is not empty; the benchmark needs an empty database")
        t = time.perf_counter()
        store.ingest(catalog, [])
        products_s = time.perf_counter() - t
        bulk, live = history[: len(history) // 2], history[len(history) // 2 :]
        t = time.perf_counter()
        store.ingest([], bulk)
        events_s = time.perf_counter() - t
        t = time.perf_counter()
        for start in range(0, len(live), batch):
            store.add_events(live[start : start + batch], skip_known=True)
        live_s = time.perf_counter() - t
    finally:
        store.close()
    return {
        "products_per_s": round(len(catalog) / products_s),
        "events_per_s": round(len(bulk) / events_s),
        "live_events_per_s": round(len(live) / live_s),
        "live_batch": batch,
    }


def run(
    others: Mapping[str, str], products: int, events: int, batch: int = 10, seed: int = 1
) -> dict[str, Any]:
    """Figures for SQLite and for each of ``others`` (name -> URL), with each one's ratio
    to SQLite's."""
    catalog, history = generated(products, events, seed)
    with tempfile.TemporaryDirectory() as folder:
        report: dict[str, Any] = {
            "products": products,
            "events": events,
            "sqlite": measure(f"sqlite:///{Path(folder) / 'bench.db'}", catalog, history, batch),
        }
    for name, url in others.items():
        figures = measure(url, catalog, history, batch)
        for key in ("products_per_s", "events_per_s", "live_events_per_s"):
            figures[f"{key}_vs_sqlite"] = round(figures[key] / report["sqlite"][key], 2)
        report[name] = figures
    return report
