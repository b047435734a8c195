"""Pages composed ahead: the queue, the kept pages, the compose log and visit scores.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ahead_queue",
        sa.Column("shopper_id", sa.String(128), primary_key=True),
        sa.Column("request_hash", sa.String(32), primary_key=True),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("priority", sa.Float, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("enqueued_at", sa.Float, nullable=False),
        sa.Column("claimed_by", sa.String(64)),
        sa.Column("claimed_until", sa.Float, nullable=False),
    )
    op.create_index("ahead_queue_priority", "ahead_queue", ["priority"])
    op.create_table(
        "ahead_pages",
        sa.Column("shopper_id", sa.String(128), primary_key=True),
        sa.Column("request_hash", sa.String(32), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("composed_at", sa.Float, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("views", sa.Integer, nullable=False),
        sa.Column("compose_id", sa.Integer, nullable=False),
    )
    op.create_table(
        "ahead_composes",
        sa.Column("compose_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("shopper_id", sa.String(128), nullable=False),
        sa.Column("request_hash", sa.String(32), nullable=False),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.Column("outcome", sa.String(16)),
    )
    op.create_index("ahead_composes_started", "ahead_composes", ["started_at"])
    op.create_table(
        "ahead_visits",
        sa.Column("shopper_id", sa.String(128), primary_key=True),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("last_visit", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ahead_visits")
    op.drop_index("ahead_composes_started", "ahead_composes")
    op.drop_table("ahead_composes")
    op.drop_table("ahead_pages")
    op.drop_index("ahead_queue_priority", "ahead_queue")
    op.drop_table("ahead_queue")
