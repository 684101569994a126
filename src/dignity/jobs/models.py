"""Tables of background jobs: one row per job (its state, attempts, lease, progress and result)
and, for a queued scan of an uploaded file, the upload's bytes until the job has run.

The job table is the truth about a job, not the broker: the API answers a job's state from here,
a worker claims a job by a conditional update of its row (so two deliveries of one message run it
once), and a message the broker lost is sent again from the rows still queued. Uploaded media is
the one place dignity keeps media, and only until the job ends (done, failed or cancelled): the
row in ``job_media`` is deleted in the same transaction that ends the job.
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
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from dignity.storage.models import Base, utcnow
from dignity.storage.types import UtcDateTime

JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATES = ("done", "failed", "cancelled")


class Job(Base):
    """One unit of background work (a scan, a backfill or one of its batches, a retro-match)."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(
            "state IN ('queued', 'running', 'done', 'failed', 'cancelled')", name="ck_jobs_state"
        ),
        Index("ix_jobs_state_created", "state", "created_at"),
        Index("ix_jobs_parent", "parent_id"),
        Index("ix_jobs_key_created", "key_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    # JSON object: what to do (a URL, an object-store key, a batch of backfill items ...).
    payload: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    parent_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Who asked (an API key's id; None for the CLI and the engine's own jobs).
    key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # A caller's idempotency key: a second submit with it returns the first job.
    dedupe_key: Mapped[str | None] = mapped_column(String(255), nullable=True, unique=True)
    queue: Mapped[str] = mapped_column(String(32), nullable=False, default="default")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=3)
    # The worker that holds the job and until when (epoch seconds); an expired lease on a
    # running job means its worker died: the job may be claimed again.
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    progress_done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    progress_total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # JSON object of named counters (matched, failed, skipped ...).
    progress_counts: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    result: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    # When the job was last handed to the broker; a queued job not claimed long after is resent.
    dispatched_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class JobMedia(Base):
    """The bytes of an uploaded file a queued scan job will read; deleted when the job ends."""

    __tablename__ = "job_media"

    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    filename: Mapped[str | None] = mapped_column(String(255), nullable=True)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class PeriodClaim(Base):
    """Which process runs a shared periodic task's tick in one period: the first to insert the
    row (task, period number) runs it; any other process, API or worker, skips that period."""

    __tablename__ = "period_claims"

    task: Mapped[str] = mapped_column(String(64), primary_key=True)
    # floor(epoch seconds / the task's interval): the same number on every machine.
    period: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    owner: Mapped[str] = mapped_column(String(128), nullable=False)
    claimed_at: Mapped[float] = mapped_column(Float, nullable=False)
