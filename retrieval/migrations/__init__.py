"""The store's schema, versioned with Alembic: every store is brought to the newest version
when it is opened, SQLite and PostgreSQL alike.

A store made before the schema was versioned (its tables exist, Alembic's version table does
not) is recorded as the first version, then upgraded like any other.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

HERE = Path(__file__).parent
FIRST = "0001"
_LOCK_KEY = 0x636F6D706F736572  # "composer": the advisory lock the migrating opener holds


def _config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest schema version this code knows."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    found = ScriptDirectory.from_config(config).get_current_head()
    assert found is not None, "the migrations folder has no versions"
    return found


def current(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine) -> None:
    """Bring the store at ``engine`` to the newest schema (a no-op when it is there).

    Several processes open a store at once (``serve --workers N``, several hosts on one
    PostgreSQL): one migrates while the others wait for it, then find nothing to do."""
    if current(engine) == _HEAD:
        return
    with _migration_lock(engine), engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Held to the end of this transaction: the other openers wait here.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        revision = MigrationContext.configure(conn).get_current_revision()
        if revision == _HEAD:
            return
        if revision is None and sa.inspect(conn).has_table("events"):
            command.stamp(_config(conn), FIRST)
        command.upgrade(_config(conn), "head")


@contextlib.contextmanager
def _migration_lock(engine: sa.Engine) -> Iterator[None]:
    """SQLite: an exclusive lock on a file beside the database, so one process migrates
    (PostgreSQL takes an advisory lock in the migrating transaction instead)."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_HEAD = head()
