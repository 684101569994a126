"""Scan regions: the PDQ of each picture found inside a scanned upload (a screenshot's photo, a
collage's cell), so that copy sweeps find pictures posted inside other pictures.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "scan_regions",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("scan_id", sa.BigInteger(), nullable=False),
        sa.Column("pdq", sa.String(length=64), nullable=False),
        sa.Column("pdq_quality", sa.Integer(), nullable=False),
        sa.Column("x", sa.Integer(), nullable=False),
        sa.Column("y", sa.Integer(), nullable=False),
        sa.Column("w", sa.Integer(), nullable=False),
        sa.Column("h", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["scan_id"], ["scan_log.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_scan_regions_scan_id", "scan_regions", ["scan_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_scan_regions_scan_id", table_name="scan_regions")
    op.drop_table("scan_regions")
