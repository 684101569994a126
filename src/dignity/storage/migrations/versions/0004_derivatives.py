"""Registered source photos for edited-derivative detection.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "derivative_sources",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("consent_by", sa.Text(), nullable=False),
        sa.Column("for_whom", sa.Text(), nullable=False),
        sa.Column("consented_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("keypoints", sa.Integer(), nullable=False),
        sa.Column("features", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_derivative_sources_subject", "derivative_sources", ["subject"])
    op.create_table(
        "derivative_log",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("source_id", sa.BigInteger(), nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("derivative_log")
    op.drop_index("ix_derivative_sources_subject", table_name="derivative_sources")
    op.drop_table("derivative_sources")
