"""Trimmed frames: each banked video frame's PDQ with the video's letterbox bars trimmed
(entry_frames.trimmed_pdq, NULL where the video has none), and the same for logged videos
(scan_video.trimmed, 32 bytes a frame), so that a copy with bars added or removed still matches
and is swept. Only dignity's own matching reads them; exports carry the raw frames.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable ADD COLUMN: no table rewrite on PostgreSQL nor SQLite.
    op.add_column("entry_frames", sa.Column("trimmed_pdq", sa.String(length=64), nullable=True))
    op.add_column("scan_video", sa.Column("trimmed", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scan_video") as batch:
        batch.drop_column("trimmed")
    with op.batch_alter_table("entry_frames") as batch:
        batch.drop_column("trimmed_pdq")
