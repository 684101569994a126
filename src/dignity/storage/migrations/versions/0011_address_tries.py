"""Per-address tries in the database, shared by every server process and kept over restarts.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "address_tries",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.create_index(
        "ix_address_tries_scope_address_at", "address_tries", ["scope", "address", "at"]
    )


def downgrade() -> None:
    op.drop_index("ix_address_tries_scope_address_at", table_name="address_tries")
    op.drop_table("address_tries")
