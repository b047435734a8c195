"""The store on both databases it supports: SQLite (a temp file) and a real PostgreSQL
server (a throwaway cluster, composer/topology/postgres.py). Writes, the schema's versions, and
the per-shopper history cache, including events whose ids commit out of order."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from retrieval import migrations
from retrieval.records import EventKind, Interaction, Product
from retrieval.store import Store

PRODUCTS = [Product(str(i), f"Product {i}", ("Cat",), price=float(i)) for i in range(1, 6)]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shop.db'}"
    return request.getfixturevalue("postgres_url")


def _event(shopper: str, product: str, ts: float) -> Interaction:
    return Interaction(shopper, product, EventKind.VIEW, ts)


def test_ingest_and_events_round_trip(url: str) -> None:
    store = Store(url)
    change = store.ingest(PRODUCTS, [_event("s", "1", 10.0), _event("s", "2", 20.0)])
    assert len(change.added) == 5 and change.events_added == 2
    again = store.ingest(PRODUCTS, [_event("s", "1", 10.0)])
    assert again.unchanged == 5 and again.events_duplicate == 1
    assert [e.product_id for e in store.events_for("s")] == ["1", "2"]
    state = store.history_state("s")
    assert state[0] == store.last_event_id()
    store.add_events([_event("s", "3", 30.0)])
    assert store.history_state("s") != state
    assert migrations.current(store.engine) == migrations.head()
    store.close()


def test_a_cached_history_takes_in_events_from_another_writer(url: str) -> None:
    reader, writer = Store(url), Store(url, history_cache=0)
    reader.ingest(PRODUCTS, [_event("s", "1", 10.0)])
    assert [e.product_id for e in reader.events_for("s")] == ["1"]
    writer.add_events([_event("s", "2", 30.0), _event("s", "3", 5.0)])
    # Sorted by time: the back-dated event goes first.
    assert [e.product_id for e in reader.events_for("s")] == ["3", "1", "2"]
    assert reader.events_for("s") == writer.events_for("s")
    reader.close()
    writer.close()


def test_events_whose_ids_commit_out_of_order_are_not_missed(postgres_url: str) -> None:
    """PostgreSQL hands out ids at insert, not at commit: the transaction holding the lower
    id commits last. A history cached in between must still pick that event up."""
    reader = Store(postgres_url)
    reader.ingest(PRODUCTS, [_event("s", "1", 10.0)])
    assert len(reader.events_for("s")) == 1
    events = Store(postgres_url).engine
    insert = sa.text(
        "INSERT INTO events (shopper_id, product_id, kind, ts) "
        "VALUES ('s', :p, 'view', :ts) RETURNING event_id"
    )
    slow, fast = events.connect(), events.connect()
    slow.begin()
    low = slow.execute(insert, {"p": "2", "ts": 20.0}).scalar_one()
    fast.begin()
    high = fast.execute(insert, {"p": "3", "ts": 30.0}).scalar_one()
    assert low < high
    fast.commit()
    state_before = reader.history_state("s")
    assert [e.product_id for e in reader.events_for("s")] == ["1", "3"]  # 2 is not visible yet
    slow.commit()
    assert [e.product_id for e in reader.events_for("s")] == ["1", "2", "3"]
    # The page cache's key for the shopper moves too, though the highest id did not.
    assert reader.history_state("s") != state_before and reader.history_state("s")[0] == high
    fresh = Store(postgres_url, history_cache=0)
    assert reader.events_for("s") == fresh.events_for("s")
    for conn in (slow, fast):
        conn.close()
    for store in (reader, fresh):
        store.close()


def test_an_event_whose_transaction_began_after_the_last_read_is_not_missed(
    postgres_url: str,
) -> None:
    """The other way to commit out of id order: a writer whose transaction id is newer than
    every transaction the reader's snapshot knew (at or above its xmax, so not among the
    in-progress ones) holds a lower event id than one the reader already saw."""
    reader = Store(postgres_url)
    reader.ingest(PRODUCTS, [_event("s", "1", 10.0)])
    reader.events_for("s")
    engine = Store(postgres_url).engine
    insert = sa.text(
        "INSERT INTO events (shopper_id, product_id, kind, ts) "
        "VALUES ('s', :p, 'view', :ts) RETURNING event_id"
    )
    first, late = engine.connect(), engine.connect()
    try:
        first.begin()  # takes its transaction id first: a write of something else
        first.execute(sa.text("INSERT INTO shoppers (shopper_id, attributes) VALUES ('x', '{}')"))
        late.begin()
        low = late.execute(insert, {"p": "2", "ts": 20.0}).scalar_one()  # newer transaction
        high = first.execute(insert, {"p": "3", "ts": 30.0}).scalar_one()
        assert low < high
        first.commit()  # the newest finished transaction: late's id is at or above xmax
        assert [e.product_id for e in reader.events_for("s")] == ["1", "3"]
        unseen = reader._histories.get("s").unseen  # type: ignore[union-attr]
        late_id = late.execute(sa.text("SELECT pg_current_xact_id()::text::bigint")).scalar_one()
        assert late_id not in unseen.xip and late_id >= unseen.xmax
        late.commit()
        assert [e.product_id for e in reader.events_for("s")] == ["1", "2", "3"]
    finally:
        for conn in (first, late):
            conn.close()
        reader.close()


def test_a_long_open_transaction_does_not_make_catch_ups_read_again(postgres_url: str) -> None:
    """A catch-up rereads only the transactions its last read could not see, not every
    event written since the oldest of them began (one import left open would otherwise
    make every page reread the shopper's recent history)."""
    reader = Store(postgres_url)
    reader.ingest(PRODUCTS, [_event("s", "1", 10.0)])
    reader.events_for("s")
    other = Store(postgres_url)
    long = other.engine.connect()
    try:
        _catch_up_beside(long, reader, other)
    finally:
        long.close()
        for store in (reader, other):
            store.close()


def _catch_up_beside(long: sa.Connection, reader: Store, other: Store) -> None:
    long.begin()
    insert = "INSERT INTO events (shopper_id, product_id, kind, ts) VALUES ('t', '1', 'view', 1)"
    long.execute(sa.text(insert))
    other.add_events([_event("s", "2", 20.0)])
    assert [e.product_id for e in reader.events_for("s")] == ["1", "2"]
    history = reader._histories.get("s")
    assert history is not None and history.unseen.xip  # the open transaction
    read, _ = reader._read_events("s", history.last_event_id, history.unseen)
    assert read == []  # nothing new, and nothing read again
    long.commit()
    assert [e.product_id for e in reader.events_for("t")] == ["1"]
    assert [e.product_id for e in reader.events_for("s")] == ["1", "2"]


def _unversioned(url: str) -> None:
    """A store as the code before schema versions made it: tables, no version table."""
    engine = sa.create_engine(url)
    legacy = sa.MetaData()
    sa.Table(
        "products",
        legacy,
        sa.Column("product_id", sa.String(128), primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("categories", sa.Text, nullable=False),
        sa.Column("price", sa.Float, nullable=False),
        sa.Column("in_stock", sa.Boolean, nullable=False),
        sa.Column("year", sa.Integer),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("image_url", sa.Text),
        sa.Column("url", sa.Text),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    sa.Table(
        "shoppers",
        legacy,
        sa.Column("shopper_id", sa.String(128), primary_key=True),
        sa.Column("attributes", sa.Text, nullable=False),
    )
    sa.Table(
        "events",
        legacy,
        sa.Column("event_id", sa.Integer, primary_key=True),
        sa.Column("shopper_id", sa.String(128), nullable=False, index=True),
        sa.Column(
            "product_id", sa.String(128), sa.ForeignKey("products.product_id"), nullable=False
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("value", sa.Float),
    )
    sa.Table("meta", legacy, sa.Column("key", sa.String(128), primary_key=True),
             sa.Column("value", sa.Text, nullable=False))  # fmt: skip
    legacy.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO products VALUES "
                "('1', 'Old', :cats, 1.0, true, NULL, '', NULL, NULL, 0.0)"
            ),
            {"cats": '["Cat"]'},
        )
        conn.execute(sa.text("INSERT INTO events (shopper_id, product_id, kind, ts) "
                             "VALUES ('s', '1', 'view', 1.0)"))  # fmt: skip
    engine.dispose()


def test_a_store_made_before_schema_versions_is_upgraded_in_place(url: str) -> None:
    _unversioned(url)
    store = Store(url)
    assert migrations.current(store.engine) == migrations.head()
    columns = {c["name"] for c in sa.inspect(store.engine).get_columns("events")}
    assert "txid" in columns
    assert [e.product_id for e in store.events_for("s")] == ["1"]  # nothing lost
    store.add_events([_event("s", "1", 2.0)])
    assert len(store.events_for("s")) == 2
    store.close()


def test_the_migrations_build_the_schema_the_code_declares(url: str) -> None:
    """A column added to the code's tables without a migration (or the reverse) fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from retrieval.store import metadata

    store = Store(url)
    with store.engine.connect() as conn:
        drift = compare_metadata(MigrationContext.configure(conn), metadata)
    store.close()
    # Server defaults are the migrations' business (txid's exists on PostgreSQL only).
    assert [d for d in drift if d[0] != "modify_default"] == []


def test_processes_opening_a_new_store_at_once_all_succeed(url: str) -> None:
    """`serve --workers N` opens the store in N processes together: one migrates, the
    others wait for it (before the migration lock, most of four failed)."""
    import subprocess
    import sys

    script = "import sys; from retrieval.store import Store; Store(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", script, url], stderr=subprocess.PIPE)
             for _ in range(4)]  # fmt: skip
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    store = Store(url)
    assert migrations.current(store.engine) == migrations.head()
    store.close()
