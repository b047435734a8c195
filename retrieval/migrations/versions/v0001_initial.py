"""The schema as it stood before versioning: products, shoppers, events, meta.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "products",
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
    op.create_table(
        "shoppers",
        sa.Column("shopper_id", sa.String(128), primary_key=True),
        sa.Column("attributes", sa.Text, nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("shopper_id", sa.String(128), nullable=False),
        sa.Column(
            "product_id", sa.String(128), sa.ForeignKey("products.product_id"), nullable=False
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("value", sa.Float),
    )
    op.create_index("ix_events_shopper_id", "events", ["shopper_id"])
    op.create_index("events_identity", "events", ["shopper_id", "product_id", "kind", "ts"])
    op.create_table(
        "meta",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("meta", "events", "shoppers", "products"):
        op.drop_table(table)
