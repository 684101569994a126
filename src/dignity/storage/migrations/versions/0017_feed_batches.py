"""Feed changes wait in ``case_feed_pending`` until a batch of several cases is published;
the scan log keeps an image's dihedral PDQ hashes, so copy sweeps find turned or mirrored copies.

Revision ID: 0017
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0013"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "case_feed_pending",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "case_hash_id",
            sa.BigInteger(),
            sa.ForeignKey("case_hashes.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('active', 'withdrawn')", name="ck_case_feed_pending_status"),
    )
    op.create_index(
        "ix_case_feed_pending_status_hash", "case_feed_pending", ["status", "case_hash_id"]
    )
    with op.batch_alter_table("scan_log") as batch:
        batch.add_column(sa.Column("pdq_dihedral", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scan_log") as batch:
        batch.drop_column("pdq_dihedral")
    op.drop_index("ix_case_feed_pending_status_hash", table_name="case_feed_pending")
    op.drop_table("case_feed_pending")
