"""Victim cases (number + PIN) and the partner feed; API keys may have the ``partner`` role.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_ROLES_BEFORE = "role IN ('admin', 'curator', 'platform', 'reviewer')"
_ROLES_AFTER = "role IN ('admin', 'curator', 'platform', 'reviewer', 'partner')"


def _set_role_check(condition: str) -> None:
    # SQLite cannot alter a constraint in place; batch mode copies the table under the new one.
    with op.batch_alter_table("api_keys", recreate="auto") as batch:
        batch.drop_constraint("ck_api_keys_role", type_="check")
        batch.create_check_constraint("ck_api_keys_role", condition)


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("number", sa.String(32), nullable=False, unique=True),
        sa.Column("pin_hash", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("bank_id", sa.Integer(), nullable=True),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('open', 'withdrawn')", name="ck_cases_status"),
    )
    op.create_table(
        "case_hashes",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "case_id",
            sa.Integer(),
            sa.ForeignKey("cases.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("public_id", sa.String(32), nullable=False, unique=True),
        sa.Column("signal", sa.String(16), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("quality", sa.Integer(), nullable=True),
        sa.Column("entry_id", sa.BigInteger(), nullable=True),
        sa.Column("owns_entry", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("matches", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("case_id", "signal", "value", name="uq_case_hashes_case_signal_value"),
        sa.CheckConstraint("status IN ('active', 'withdrawn')", name="ck_case_hashes_status"),
    )
    op.create_index("ix_case_hashes_case_id", "case_hashes", ["case_id"])
    op.create_index("ix_case_hashes_entry_id", "case_hashes", ["entry_id"])
    op.create_table(
        "case_feed_log",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "case_hash_id",
            sa.BigInteger(),
            sa.ForeignKey("case_hashes.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('active', 'withdrawn')", name="ck_case_feed_log_status"),
    )
    op.create_index("ix_case_feed_log_case_hash_id", "case_feed_log", ["case_hash_id"])
    _set_role_check(_ROLES_AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM api_keys WHERE role = 'partner'")
    _set_role_check(_ROLES_BEFORE)
    op.drop_index("ix_case_feed_log_case_hash_id", table_name="case_feed_log")
    op.drop_table("case_feed_log")
    op.drop_index("ix_case_hashes_entry_id", table_name="case_hashes")
    op.drop_index("ix_case_hashes_case_id", table_name="case_hashes")
    op.drop_table("case_hashes")
    op.drop_table("cases")
