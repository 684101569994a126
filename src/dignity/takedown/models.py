"""Tables of the takedown workflow: the scan log, requests and their items, the review queue,
removals, statements of reasons, appeals, requester flags and reviewer sessions.

``scan_log`` keeps what dignity scanned as hashes and a compact summary of the decision, never
the media: it is what makes "remove the known identical copies" (exact and PDQ) possible after a
takedown. Times are UTC. Requesters' contact details are the only personal data here and are
kept because a takedown answer must reach the requester; no table holds an image.
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

from dignity.storage.models import Base, BigId, utcnow
from dignity.storage.types import UtcDateTime

REQUEST_STATES = ("incomplete", "valid", "removed", "rejected", "withdrawn")
ITEM_STATES = ("pending", "removed", "kept", "not_found")
REVIEW_KINDS = ("scan", "takedown", "appeal")
REMOVAL_REASONS = (
    "reported",
    "copy_exact",
    "copy_pdq",
    "copy_video",
    "copy_frame",
    "copy_still",
    "reviewed",
)
APPEAL_STATES = ("open", "upheld", "reversed")


class ScanRecord(Base):
    """One scan through ``/v1/scan``: the platform's content id, hashes, decision summary."""

    __tablename__ = "scan_log"
    __table_args__ = (
        Index("ix_scan_log_sha256", "sha256"),
        Index("ix_scan_log_md5", "md5"),
        Index("ix_scan_log_content_id", "content_id"),
        Index("ix_scan_log_created_at", "created_at"),
        Index("ux_scan_log_job_id", "job_id", unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The platform's own identifiers (query parameters of /v1/scan); either may be absent.
    content_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    uploader: Mapped[str | None] = mapped_column(String(255), nullable=True)
    pdq: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pdq_quality: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The image's 7 other dihedral PDQ hashes (rotated, mirrored; 32 bytes each, in
    # DIHEDRAL_NAMES order after the original), so a sweep finds a turned or mirrored copy.
    pdq_dihedral: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    md5: Mapped[str] = mapped_column(String(32), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    decision: Mapped[str] = mapped_column(String(16), nullable=False)
    # JSON: {"matches": [...], "signals": {compact}, "decision": {...}} for the evidence panel.
    detail: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    removed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # The queued scan job that wrote the row (None for /v1/scan): unique, so a job retried after
    # its worker died mid-write can never log its scan twice.
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


class ScanRegion(Base):
    """The PDQ of one picture found inside a scanned upload (:mod:`dignity.regions`: a phone
    screenshot's photo, a collage's cell), so that a copy sweep finds a removed picture that
    was posted inside a screenshot. Deleted with its scan."""

    __tablename__ = "scan_regions"
    __table_args__ = (Index("ix_scan_regions_scan_id", "scan_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    scan_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("scan_log.id", ondelete="CASCADE"), nullable=False
    )
    pdq: Mapped[str] = mapped_column(String(64), nullable=False)
    pdq_quality: Mapped[int] = mapped_column(Integer, nullable=False)
    # Where the picture is, in the upload's pixels.
    x: Mapped[int] = mapped_column(Integer, nullable=False)
    y: Mapped[int] = mapped_column(Integer, nullable=False)
    w: Mapped[int] = mapped_column(Integer, nullable=False)
    h: Mapped[int] = mapped_column(Integer, nullable=False)


class ScanVideo(Base):
    """The vPDQ frames of a scanned video (one row per video scan), for segment sweeps.

    ``frames`` packs each sampled frame as :data:`dignity.takedown.scanlog.FRAME` (frame
    number, timestamp in ms, quality, 32-byte PDQ): 41 bytes a frame, about 2.5 KB a minute.
    ``dihedral`` holds each frame's 7 other dihedral variants (7 x 32 bytes, in
    ``DIHEDRAL_NAMES`` order after the original) when they were computed, so a mirrored copy
    is found whichever side was scanned first. ``trimmed`` holds each frame's PDQ with the
    video's letterbox bars cut off (32 bytes a frame; NULL without bars), so a copy with bars
    added or removed is found too (:mod:`dignity.video.bars`). Deleted with its scan (purge)."""

    __tablename__ = "scan_video"

    scan_id: Mapped[int] = mapped_column(
        BigInteger,
        ForeignKey("scan_log.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    )
    duration: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    frame_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    frames: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    dihedral: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    trimmed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class TakedownRequest(Base):
    __tablename__ = "takedown_requests"
    __table_args__ = (
        CheckConstraint(
            "state IN ('incomplete', 'valid', 'removed', 'rejected', 'withdrawn')",
            name="ck_takedown_requests_state",
        ),
        CheckConstraint("channel IN ('form', 'flagger')", name="ck_takedown_requests_channel"),
        Index("ix_takedown_requests_state_due", "state", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Shown to the requester on the receipt; random, says nothing about the request.
    ticket: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    # SHA-256 of the access code shown once with the receipt (128 random bits: no slow hash).
    access_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    channel: Mapped[str] = mapped_column(String(16), nullable=False, default="form")
    flagger_key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    flagger_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # 0 most urgent .. 3 least; trusted flaggers' requests come first (DSA Art. 22).
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    requester_kind: Mapped[str] = mapped_column(String(16), nullable=False, default="self")
    requester_name: Mapped[str] = mapped_column(Text, nullable=False, default="")
    requester_contact: Mapped[str] = mapped_column(Text, nullable=False, default="")
    # SHA-256 of the normalised contact: counts unfounded requests without reading contacts.
    requester_fp: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    authority_statement: Mapped[str] = mapped_column(Text, nullable=False, default="")
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    good_faith: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    signature_name: Mapped[str] = mapped_column(Text, nullable=False, default="")
    signed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    ai_made: Mapped[str] = mapped_column(String(8), nullable=False, default="unknown")
    jurisdiction: Mapped[str] = mapped_column(String(8), nullable=False, default="")
    # JSON: {"take_it_down": {"valid": bool, "missing": [...]}, "dsa_art16": {...}}
    validity: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="incomplete")
    received_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    # The 48-hour clock starts when the request is valid.
    valid_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    escalated_24_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    escalated_36_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    outcome_reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    # Rejected as manifestly unfounded (DSA Art. 23 counts these per requester).
    unfounded: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    decided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class TakedownItem(Base):
    """One piece of reported content: a URL or content id as given, and what it resolved to."""

    __tablename__ = "takedown_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("takedown_requests.id", ondelete="CASCADE"), nullable=False, index=True
    )
    ref: Mapped[str] = mapped_column(Text, nullable=False)
    content_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    scan_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("scan_log.id", ondelete="SET NULL"), nullable=True
    )
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")


class ReviewItem(Base):
    """The reviewer queue: scan decisions of ``review``, valid takedown requests, appeals."""

    __tablename__ = "review_items"
    __table_args__ = (
        CheckConstraint("kind IN ('scan', 'takedown', 'appeal')", name="ck_review_items_kind"),
        Index("ix_review_items_queue", "state", "priority", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    scan_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("scan_log.id", ondelete="SET NULL"), nullable=True
    )
    request_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("takedown_requests.id", ondelete="CASCADE"), nullable=True
    )
    appeal_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("appeals.id", ondelete="CASCADE"), nullable=True
    )
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=2)
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="open")
    # remove | keep | reject | uphold | reverse
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Removal(Base):
    """One piece of content dignity asked the platform to remove (webhook via the outbox)."""

    __tablename__ = "removals"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("takedown_requests.id", ondelete="SET NULL"), nullable=True, index=True
    )
    # No foreign key: review_items -> appeals -> statements -> removals would close a cycle.
    review_item_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    scan_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("scan_log.id", ondelete="SET NULL"), nullable=True
    )
    content_id: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    # reported | copy_exact | copy_pdq | copy_video | copy_frame | copy_still | reviewed
    reason: Mapped[str] = mapped_column(String(16), nullable=False)
    distance: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The removal this copy was found from (sweeps), else None.
    source_removal_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    event_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    automated: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    decided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    restored_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class Statement(Base):
    """A statement of reasons to an uploader (DSA Art. 17), with its appeal window."""

    __tablename__ = "statements"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # Public reference (in the notice and the appeal link); random.
    public_id: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    removal_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("removals.id", ondelete="SET NULL"), nullable=True
    )
    content_id: Mapped[str] = mapped_column(String(255), nullable=False)
    uploader: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # JSON with every DSA Art. 17(3) field and the Transparency Database's names.
    body: Mapped[str] = mapped_column(Text, nullable=False)
    # SHA-256 of the appeal code the uploader receives with the notice.
    appeal_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    appeal_until: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    event_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Appeal(Base):
    __tablename__ = "appeals"
    __table_args__ = (
        CheckConstraint("state IN ('open', 'upheld', 'reversed')", name="ck_appeals_state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    statement_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("statements.id", ondelete="CASCADE"), nullable=False, index=True
    )
    text: Mapped[str] = mapped_column(Text, nullable=False, default="")
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="open")
    received_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")


class RequesterFlag(Base):
    """A requester whose requests were repeatedly rejected as unfounded (DSA Art. 23)."""

    __tablename__ = "requester_flags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    requester_fp: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    unfounded: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    flagged_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    suspended_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")


class WebSession(Base):
    """A reviewer signed in to the review UI with their key: cookie token and CSRF token."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # SHA-256 of the cookie's token; the token itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    key_id: Mapped[int] = mapped_column(Integer, nullable=False)
    key_name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    csrf: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
