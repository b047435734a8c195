"""The store's schema, versioned with Alembic: every store is brought to the newest version
when it is opened, SQLite and PostgreSQL alike.

A store made before the schema was versioned (its tables exist, Alembic's version table does
not) is recorded as the first version, then upgraded like any other.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

HERE = Path(__file__).parent
FIRST = "0001"


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
    """Bring the store at ``engine`` to the newest schema (a no-op when it is there)."""
    if current(engine) == _HEAD:
        return
    with engine.begin() as conn:
        unversioned = MigrationContext.configure(conn).get_current_revision() is None
        if unversioned and sa.inspect(conn).has_table("events"):
            command.stamp(_config(conn), FIRST)
        command.upgrade(_config(conn), "head")


_HEAD = head()
