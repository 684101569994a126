"""Retro-matching: each past upload a new bank entry found, recorded once (unique per entry and
scan, with the review item or removal it led to), and the cursor over the bank change log.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
# The lead re-chains the migrations at merge (see 0015).
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retro_hits",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("scan_id", sa.BigInteger(), nullable=False),
        sa.Column("bank_id", sa.Integer(), nullable=False),
        sa.Column("signal", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("distance", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("review_item_id", sa.Integer(), nullable=True),
        sa.Column("removal_id", sa.BigInteger(), nullable=True),
        sa.Column("event_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("entry_id", "scan_id", name="uq_retro_hits_entry_scan"),
    )
    op.create_index("ix_retro_hits_scan_id", "retro_hits", ["scan_id"])
    op.create_table(
        "retro_cursor",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("retro_cursor")
    op.drop_index("ix_retro_hits_scan_id", table_name="retro_hits")
    op.drop_table("retro_hits")
