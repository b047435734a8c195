"""Each event remembers the transaction that wrote it (PostgreSQL), so a cached history can
be brought up to date in commit order, not id order.

PostgreSQL hands out event ids when a row is inserted, not when its transaction commits: a
transaction holding id 9 may commit after the one holding id 10, and a reader that saw 10
and then asks for "ids after 10" never sees 9. With the writer's transaction id on each row
a reader also asks for the rows of transactions still open at its last read. SQLite has one
writer at a time, so its ids become visible in order and the column stays empty there.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    default = sa.text("pg_current_xact_id()::text::bigint") if postgres else None
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("txid", sa.BigInteger, server_default=default))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("txid")
