"""Table definitions: banks, their entries (a video entry's frames beside it), and the index
change log.

``index_log`` is an append-only list of entry changes (add / remove) with a monotonically
increasing sequence number. An in-memory index remembers the last sequence it applied and
replays only newer rows, so every process sees an add or withdrawal within one poll, without
rebuilding. Hash values are stored as lowercase hex text: portable, greppable, and the same
text python-threatexchange and HMA exchange.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
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
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dignity.storage.types import UtcDateTime

# SQLite only auto-increments INTEGER PRIMARY KEY; BigInteger elsewhere.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Bank(Base):
    __tablename__ = "banks"
    __table_args__ = (
        CheckConstraint("purpose IN ('block', 'review', 'allow')", name="ck_banks_purpose"),
        CheckConstraint("threshold >= 0 AND threshold <= 63", name="ck_banks_threshold"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    purpose: Mapped[str] = mapped_column(String(16), nullable=False, default="block")
    threshold: Mapped[int] = mapped_column(Integer, nullable=False, default=31)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    # vPDQ rule (HMA's): a video matches when this share of the query's frames match; a run of
    # matching frames this many seconds long matches too (a clip inside a longer video).
    vpdq_query_percent: Mapped[float] = mapped_column(
        Float, nullable=False, default=80.0, server_default="80"
    )
    vpdq_min_segment_s: Mapped[float] = mapped_column(
        Float, nullable=False, default=3.0, server_default="3"
    )


class Entry(Base):
    __tablename__ = "entries"
    __table_args__ = (
        UniqueConstraint("bank_id", "signal", "value", name="uq_entries_bank_signal_value"),
        CheckConstraint("status IN ('active', 'withdrawn')", name="ck_entries_status"),
        Index("ix_entries_signal_value", "signal", "value"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    bank_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("banks.id", ondelete="CASCADE"), nullable=False, index=True
    )
    signal: Mapped[str] = mapped_column(String(16), nullable=False)
    value: Mapped[str] = mapped_column(String(64), nullable=False)
    # Where the hash came from: kind is one of case, exchange, person, file, import.
    origin_kind: Mapped[str] = mapped_column(String(16), nullable=False, default="person")
    origin_ref: Mapped[str] = mapped_column(Text, nullable=False, default="")
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # A vpdq entry's video file MD5 (hex), when it was hashed from a file: the entry matches by
    # it too (as signal video_md5), so one banked video is one entry.
    video_md5: Mapped[str | None] = mapped_column(String(32), nullable=True)


class EntryFrame(Base):
    """One frame of a ``vpdq`` entry: its PDQ, quality, frame number and time in the video.
    ``position`` orders an entry's frames from 0; the rows go with their entry."""

    __tablename__ = "entry_frames"

    entry_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("entries.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    frame_number: Mapped[int] = mapped_column(Integer, nullable=False)
    timestamp: Mapped[float] = mapped_column(Float, nullable=False)
    pdq: Mapped[str] = mapped_column(String(64), nullable=False)
    quality: Mapped[int] = mapped_column(Integer, nullable=False)
    # The frame's PDQ with the video's letterbox bars trimmed, for dignity's own matching only
    # (exports and exchanges carry ``pdq``); None where the video has no bars.
    trimmed_pdq: Mapped[str | None] = mapped_column(String(64), nullable=True)


class IndexLog(Base):
    __tablename__ = "index_log"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    entry_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    op: Mapped[str] = mapped_column(String(8), nullable=False)  # 'add' | 'remove'
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class ApiKey(Base):
    """An API key: only the SHA-256 of the key is kept (keys are 256-bit random, so a fast hash
    is enough: there is nothing to brute-force); the key itself is shown once, at creation."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint(
            "role IN ('admin', 'curator', 'platform', 'reviewer', 'partner', 'flagger')",
            name="ck_api_keys_role",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    rate_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
