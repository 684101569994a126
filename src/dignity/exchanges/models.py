"""Tables for hash exchanges: each exchange's configuration and fetch state, and its records.

``exchanges`` holds one row per configured exchange: what it is, where it lives, its
credentials (encrypted, see :mod:`dignity.exchanges.secrets`), the bank it fills, the checkpoint
a fetch resumes from, and a lease so two runners never fetch the same exchange at once.
``exchange_records`` remembers which hashes each remote record contributed (one row per record
and hash). That memory is what lets a later "record deleted" message, which often carries no
hash at all (NCMEC tombstones, ThreatExchange ``should_delete``), withdraw the right entries,
and what keeps a hash alive while any other record still vouches for it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from dignity.storage.models import Base, BigId, utcnow
from dignity.storage.types import UtcDateTime

EXCHANGE_KINDS = ("stopncii", "ncmec", "fb_threatexchange", "file", "dignity_feed")


class Exchange(Base):
    __tablename__ = "exchanges"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('stopncii', 'ncmec', 'fb_threatexchange', 'file', 'dignity_feed')",
            name="ck_exchanges_kind",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    base_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    config: Mapped[str] = mapped_column(Text, nullable=False, default="{}")  # JSON object
    # Fernet token of the credentials text; never returned by any listing.
    credentials: Mapped[str | None] = mapped_column(Text, nullable=True)
    bank_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("banks.id", ondelete="SET NULL"), nullable=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    interval_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    checkpoint: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON object
    # A full fetch (one that started with no checkpoint) removes, when it completes, every
    # record it did not see; ``generation`` tells seen rows from stale ones.
    generation: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    full_fetch_pending: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_fetch_started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_fetch_finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    last_summary: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON object
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class ExchangeRecord(Base):
    """One hash that one remote record contributed to the exchange's bank."""

    __tablename__ = "exchange_records"
    __table_args__ = (
        UniqueConstraint(
            "exchange_id", "record_key", "signal", "value", name="uq_exchange_records_key"
        ),
        Index("ix_exchange_records_signal_value", "signal", "value"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    exchange_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("exchanges.id", ondelete="CASCADE"), nullable=False
    )
    record_key: Mapped[str] = mapped_column(String(255), nullable=False)
    signal: Mapped[str] = mapped_column(String(16), nullable=False)
    value: Mapped[str] = mapped_column(String(64), nullable=False)
    meta: Mapped[str] = mapped_column(Text, nullable=False, default="{}")  # JSON, for feedback
    seen_gen: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
