"""Hash exchanges: configurations and fetch checkpoints.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "exchanges",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=True),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("credentials", sa.Text(), nullable=True),
        sa.Column(
            "bank_id", sa.Integer(), sa.ForeignKey("banks.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("interval_s", sa.Float(), nullable=True),
        sa.Column("checkpoint", sa.Text(), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("full_fetch_pending", sa.Boolean(), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_fetch_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_fetch_finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.String(16), nullable=True),
        sa.Column("last_summary", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('stopncii', 'ncmec', 'fb_threatexchange', 'file', 'dignity_feed')",
            name="ck_exchanges_kind",
        ),
    )
    op.create_table(
        "exchange_records",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "exchange_id",
            sa.Integer(),
            sa.ForeignKey("exchanges.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("record_key", sa.String(255), nullable=False),
        sa.Column("signal", sa.String(16), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("meta", sa.Text(), nullable=False),
        sa.Column("seen_gen", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "exchange_id", "record_key", "signal", "value", name="uq_exchange_records_key"
        ),
    )
    op.create_index("ix_exchange_records_signal_value", "exchange_records", ["signal", "value"])


def downgrade() -> None:
    op.drop_index("ix_exchange_records_signal_value", table_name="exchange_records")
    op.drop_table("exchange_records")
    op.drop_table("exchanges")
