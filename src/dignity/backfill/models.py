"""The backfill's per-item record: one row per (source, item) that a backfill has finished,
done (with the scan-log id of its scan) or failed (with the error code), so that a second run of
the same source skips what is done and the summary counts decisions without reading the log.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dignity.storage.models import Base, BigId, utcnow
from dignity.storage.types import UtcDateTime

ITEM_STATES = ("done", "failed")


class BackfillItem(Base):
    """One item of a backfill source and how its scan ended."""

    __tablename__ = "backfill_items"
    __table_args__ = (
        UniqueConstraint("source_id", "item_key", name="uq_backfill_items_source_key"),
        CheckConstraint("state IN ('done', 'failed')", name="ck_backfill_items_state"),
        Index("ix_backfill_items_run", "run_id", "state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # The source's canonical name (``dir:/abs/path``, ``urls:/abs/file``, ``s3://bucket/prefix``).
    source_id: Mapped[str] = mapped_column(String(512), nullable=False)
    # The item within it: a relative path, a URL, an object key.
    item_key: Mapped[str] = mapped_column(String(1024), nullable=False)
    # The backfill job (the run) that finished the item last.
    run_id: Mapped[str] = mapped_column(String(32), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    scan_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    action: Mapped[str | None] = mapped_column(String(16), nullable=True)
    matches: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
