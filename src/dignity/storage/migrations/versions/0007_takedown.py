"""Takedown workflow and audit log: scan log, requests, review queue, removals, statements,
appeals, requester flags, reviewer sessions, and the hash-chained audit log with its head.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
GENESIS = "0" * 64
_ROLES_BEFORE = "role IN ('admin', 'curator', 'platform', 'reviewer', 'partner')"
_ROLES_AFTER = "role IN ('admin', 'curator', 'platform', 'reviewer', 'partner', 'flagger')"


def _set_role_check(condition: str) -> None:
    # SQLite cannot alter a constraint in place; batch mode copies the table under the new one.
    with op.batch_alter_table("api_keys", recreate="auto") as batch:
        batch.drop_constraint("ck_api_keys_role", type_="check")
        batch.create_check_constraint("ck_api_keys_role", condition)


def upgrade() -> None:
    # flagger: a trusted flagger (DSA Art. 22) files takedown requests through /v1/takedowns.
    _set_role_check(_ROLES_AFTER)
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("seq"),
    )
    op.create_index(op.f("ix_audit_log_action"), "audit_log", ["action"], unique=False)
    op.create_table(
        "requester_flags",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("requester_fp", sa.String(length=64), nullable=False),
        sa.Column("unfounded", sa.Integer(), nullable=False),
        sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("suspended_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("requester_fp"),
    )
    op.create_table(
        "scan_log",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("content_id", sa.String(length=255), nullable=True),
        sa.Column("uploader", sa.String(length=255), nullable=True),
        sa.Column("pdq", sa.String(length=64), nullable=True),
        sa.Column("pdq_quality", sa.Integer(), nullable=True),
        sa.Column("md5", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_scan_log_content_id", "scan_log", ["content_id"], unique=False)
    op.create_index("ix_scan_log_created_at", "scan_log", ["created_at"], unique=False)
    op.create_index("ix_scan_log_md5", "scan_log", ["md5"], unique=False)
    op.create_index("ix_scan_log_sha256", "scan_log", ["sha256"], unique=False)
    op.create_table(
        "takedown_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket", sa.String(length=32), nullable=False),
        sa.Column("access_hash", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("flagger_key_id", sa.Integer(), nullable=True),
        sa.Column("flagger_name", sa.String(length=200), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("requester_kind", sa.String(length=16), nullable=False),
        sa.Column("requester_name", sa.Text(), nullable=False),
        sa.Column("requester_contact", sa.Text(), nullable=False),
        sa.Column("requester_fp", sa.String(length=64), nullable=False),
        sa.Column("authority_statement", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("good_faith", sa.Boolean(), nullable=False),
        sa.Column("signature_name", sa.Text(), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ai_made", sa.String(length=8), nullable=False),
        sa.Column("jurisdiction", sa.String(length=8), nullable=False),
        sa.Column("validity", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_24_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_36_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome_reason", sa.Text(), nullable=False),
        sa.Column("unfounded", sa.Boolean(), nullable=False),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("channel IN ('form', 'flagger')", name="ck_takedown_requests_channel"),
        sa.CheckConstraint(
            "state IN ('incomplete', 'valid', 'removed', 'rejected', 'withdrawn')",
            name="ck_takedown_requests_state",
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticket"),
    )
    op.create_index(
        op.f("ix_takedown_requests_requester_fp"),
        "takedown_requests",
        ["requester_fp"],
        unique=False,
    )
    op.create_index(
        "ix_takedown_requests_state_due", "takedown_requests", ["state", "due_at"], unique=False
    )
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("key_name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "removals",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("review_item_id", sa.Integer(), nullable=True),
        sa.Column("scan_id", sa.BigInteger(), nullable=True),
        sa.Column("content_id", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("distance", sa.Integer(), nullable=True),
        sa.Column("source_removal_id", sa.BigInteger(), nullable=True),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.Column("automated", sa.Boolean(), nullable=False),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("restored_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["request_id"], ["takedown_requests.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["scan_id"], ["scan_log.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_removals_content_id"), "removals", ["content_id"], unique=False)
    op.create_index(op.f("ix_removals_request_id"), "removals", ["request_id"], unique=False)
    op.create_table(
        "takedown_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("content_id", sa.String(length=255), nullable=True),
        sa.Column("scan_id", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["takedown_requests.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["scan_id"], ["scan_log.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_takedown_items_request_id"), "takedown_items", ["request_id"], unique=False
    )
    op.create_table(
        "statements",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("removal_id", sa.BigInteger(), nullable=True),
        sa.Column("content_id", sa.String(length=255), nullable=False),
        sa.Column("uploader", sa.String(length=255), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("appeal_hash", sa.String(length=64), nullable=False),
        sa.Column("appeal_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["removal_id"], ["removals.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("public_id"),
    )
    op.create_table(
        "appeals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("statement_id", sa.BigInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.CheckConstraint("state IN ('open', 'upheld', 'reversed')", name="ck_appeals_state"),
        sa.ForeignKeyConstraint(["statement_id"], ["statements.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_appeals_statement_id"), "appeals", ["statement_id"], unique=False)
    op.create_table(
        "review_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("scan_id", sa.BigInteger(), nullable=True),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("appeal_id", sa.Integer(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('scan', 'takedown', 'appeal')", name="ck_review_items_kind"),
        sa.ForeignKeyConstraint(["appeal_id"], ["appeals.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["request_id"], ["takedown_requests.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["scan_id"], ["scan_log.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_review_items_queue", "review_items", ["state", "priority", "due_at"], unique=False
    )
    # The chain's head starts at the genesis hash; appenders lock and advance this one row.
    op.bulk_insert(
        sa.table(
            "audit_head",
            sa.column("id", sa.Integer()),
            sa.column("seq", sa.BigInteger()),
            sa.column("hash", sa.String()),
        ),
        [{"id": 1, "seq": 0, "hash": GENESIS}],
    )


def downgrade() -> None:
    _set_role_check(_ROLES_BEFORE)
    op.drop_table("review_items")
    op.drop_table("appeals")
    op.drop_table("statements")
    op.drop_table("takedown_items")
    op.drop_table("removals")
    op.drop_table("web_sessions")
    op.drop_table("takedown_requests")
    op.drop_table("scan_log")
    op.drop_table("requester_flags")
    op.drop_table("audit_log")
    op.drop_table("audit_head")
