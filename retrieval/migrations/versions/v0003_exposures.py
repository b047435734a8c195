"""Experiments: every served page is an exposure; events may name the page and slot they
came from; a variant a guardrail paused is recorded for every server process to see.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exposures",
        sa.Column("page_id", sa.String(32), primary_key=True),
        sa.Column("ts", sa.Float, nullable=False),
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
        sa.Column("sections", sa.Text, nullable=False),
        sa.Column("products", sa.Text, nullable=False),
    )
    op.create_index("exposures_experiment", "exposures", ["experiment", "ts"])
    op.create_index("exposures_unit", "exposures", ["unit", "ts"])
    op.create_table(
        "experiment_pauses",
        sa.Column("experiment", sa.String(64), primary_key=True),
        sa.Column("variant", sa.String(64), primary_key=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("page_id", sa.String(32)))
        batch.add_column(sa.Column("slot", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("slot")
        batch.drop_column("page_id")
    op.drop_table("experiment_pauses")
    op.drop_index("exposures_unit", "exposures")
    op.drop_index("exposures_experiment", "exposures")
    op.drop_table("exposures")
