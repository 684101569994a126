"""Tables of victim cases: the case (number, PIN hash, lockout state), its hashes, the feed log.

A case's hashes are kept here as well as in the bank: the bank entry may be shared with another
case or deleted with its bank, while the case must still know what it submitted, answer "how
many, matched or not", and tell partners what to withdraw. ``case_feed_log`` is the partner
feed: an append-only list of changes (a case hash became active or withdrawn) whose sequence
number is the feed cursor. A change waits in ``case_feed_pending`` until a batch of changes
from several cases is published together, in random order, under one time (so the feed never
groups one case's hashes). No table holds an image, a name or a contact detail.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from dignity.storage.models import Base, BigId, utcnow
from dignity.storage.types import UtcDateTime

CASE_STATUSES = ("open", "withdrawn")
HASH_STATUSES = ("active", "withdrawn")


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (CheckConstraint("status IN ('open', 'withdrawn')", name="ck_cases_status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Normalised (no dashes, upper case); shown to the person grouped in fours.
    number: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    # "scrypt$<log2 n>$<r>$<p>$<salt hex>$<key hex>": the PIN itself is never stored.
    pin_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="open")
    # The bank's id, not its name: a renamed bank still holds the case's entries.
    bank_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    failed_attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # Set once the bank entries are withdrawn too; a withdrawn case without it is retried.
    released_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class CaseHash(Base):
    __tablename__ = "case_hashes"
    __table_args__ = (
        UniqueConstraint("case_id", "signal", "value", name="uq_case_hashes_case_signal_value"),
        CheckConstraint("status IN ('active', 'withdrawn')", name="ck_case_hashes_status"),
        Index("ix_case_hashes_entry_id", "entry_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("cases.id", ondelete="CASCADE"), nullable=False, index=True
    )
    # The feed's case-scoped entry id: random, says nothing about the case or the person.
    public_id: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    signal: Mapped[str] = mapped_column(String(16), nullable=False)
    value: Mapped[str] = mapped_column(String(64), nullable=False)
    quality: Mapped[int | None] = mapped_column(Integer, nullable=True)
    entry_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Whether withdrawing this case may withdraw the bank entry: false when the entry was
    # already live from another origin (an exchange, a curator) before the case named it.
    owns_entry: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    matches: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class CaseFeedLog(Base):
    __tablename__ = "case_feed_log"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'withdrawn')", name="ck_case_feed_log_status"),
    )

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_hash_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("case_hashes.id", ondelete="CASCADE"), nullable=False, index=True
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class CaseFeedPending(Base):
    """A change not yet in the feed: it waits for its batch (see ``CaseService.publish``)."""

    __tablename__ = "case_feed_pending"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'withdrawn')", name="ck_case_feed_pending_status"),
        Index("ix_case_feed_pending_status_hash", "status", "case_hash_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_hash_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("case_hashes.id", ondelete="CASCADE"), nullable=False
    )
    # Counted, never published: a batch closes only once it mixes enough cases.
    case_id: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class AddressTry(Base):
    """One counted try of a client address against a per-address limit (``scope``: which limit),
    kept in the database so that every server process shares the count and a restart keeps it."""

    __tablename__ = "address_tries"
    __table_args__ = (Index("ix_address_tries_scope_address_at", "scope", "address", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(32), nullable=False)
    address: Mapped[str] = mapped_column(String(64), nullable=False)
    # Unix time in seconds: the window arithmetic is plain subtraction on every dialect.
    at: Mapped[float] = mapped_column(Float, nullable=False)
