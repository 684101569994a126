"""Scan log: the vPDQ frames of scanned videos (``scan_video``), so that a takedown's sweep
finds copies of a video by segment matching, mirrored ones too.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scan_video",
        sa.Column("scan_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("frame_count", sa.Integer(), nullable=False),
        sa.Column("frames", sa.LargeBinary(), nullable=False),
        sa.Column("dihedral", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["scan_id"], ["scan_log.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("scan_id"),
    )


def downgrade() -> None:
    op.drop_table("scan_video")
