"""Video entries: the frames of a vpdq entry (entry_frames), a vpdq entry's video MD5, and the
banks' vPDQ rule (share of query frames, shortest matching segment).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "entry_frames",
        sa.Column(
            "entry_id",
            sa.BigInteger(),
            sa.ForeignKey("entries.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("frame_number", sa.Integer(), nullable=False),
        sa.Column("timestamp", sa.Float(), nullable=False),
        sa.Column("pdq", sa.String(length=64), nullable=False),
        sa.Column("quality", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("entry_id", "position"),
    )
    # Plain ADD COLUMN (SQLite has it natively), with server defaults for the banks there are.
    op.add_column("entries", sa.Column("video_md5", sa.String(length=32), nullable=True))
    op.add_column(
        "banks",
        sa.Column("vpdq_query_percent", sa.Float(), nullable=False, server_default="80"),
    )
    op.add_column(
        "banks",
        sa.Column("vpdq_min_segment_s", sa.Float(), nullable=False, server_default="3"),
    )


def downgrade() -> None:
    with op.batch_alter_table("banks") as batch:
        batch.drop_column("vpdq_min_segment_s")
        batch.drop_column("vpdq_query_percent")
    with op.batch_alter_table("entries") as batch:
        batch.drop_column("video_md5")
    op.drop_table("entry_frames")
