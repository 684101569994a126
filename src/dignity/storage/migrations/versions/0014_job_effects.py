"""Jobs' effects recorded once: the scan log row of a queued scan names its job (unique), and
one row per (periodic task, period) claims that period's tick for one process.

Revision ID: 0014
Revises: 0016
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scan_log") as batch:
        batch.add_column(sa.Column("job_id", sa.String(32), nullable=True))
        batch.create_index("ux_scan_log_job_id", ["job_id"], unique=True)
    op.create_table(
        "period_claims",
        sa.Column("task", sa.String(64), primary_key=True),
        sa.Column("period", sa.BigInteger(), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("claimed_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("period_claims")
    with op.batch_alter_table("scan_log") as batch:
        batch.drop_index("ux_scan_log_job_id")
        batch.drop_column("job_id")
