"""Backfill: one row per finished item of a backfill source (done with its scan id, or failed
with its error code), unique per (source, item), so a second run skips what is done.

Revision ID: 0015
Revises: 0017
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
# Chained after the job table on this branch so the tests migrate to one head; the lead
# re-chains the migrations (0014 engine, 0015, 0016) at merge.
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backfill_items",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("source_id", sa.String(512), nullable=False),
        sa.Column("item_key", sa.String(1024), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("scan_id", sa.BigInteger(), nullable=True),
        sa.Column("action", sa.String(16), nullable=True),
        sa.Column("matches", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("source_id", "item_key", name="uq_backfill_items_source_key"),
        sa.CheckConstraint("state IN ('done', 'failed')", name="ck_backfill_items_state"),
    )
    op.create_index("ix_backfill_items_run", "backfill_items", ["run_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_backfill_items_run", table_name="backfill_items")
    op.drop_table("backfill_items")
