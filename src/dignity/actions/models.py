"""Tables of the webhook outbox: webhooks, the events written with the change that caused them,
and one delivery row per (event, webhook).

Events are immutable facts; everything that changes while sending lives in
``outbox_deliveries``, one row per receiver. Keeping delivery state per webhook (rather than on
the event) means one slow or dead receiver never holds back another, a redelivery can target a
single receiver, and a worker claims exactly one narrow row with one indexed ``UPDATE``. A
delivery in flight stays ``pending`` with a lease: ``lease_token`` names the claim and
``next_attempt_at`` is pushed to the lease's end, so a worker that dies mid-send simply lets the
row come due again (at-least-once). Event ids are UUIDs because receivers deduplicate on them
and must never see one reused, not even after the database is rebuilt.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
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

DELIVERY_STATUSES = ("pending", "delivered", "dead")


class Webhook(Base):
    """A receiver: events whose type is in ``event_types`` (comma list, or ``*``) are POSTed to
    ``url``, signed with ``secret``. The secret is kept as given because signing needs it."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    secret: Mapped[str] = mapped_column(String(256), nullable=False)
    event_types: Mapped[str] = mapped_column(Text, nullable=False, default="*")
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class OutboxEvent(Base):
    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_events_created_at", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(64), nullable=False)
    payload: Mapped[str] = mapped_column(Text, nullable=False)  # JSON text
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class OutboxDelivery(Base):
    __tablename__ = "outbox_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "webhook_id", name="uq_outbox_deliveries_event_webhook"),
        CheckConstraint(
            "status IN ('pending', 'delivered', 'dead')", name="ck_outbox_deliveries_status"
        ),
        # The claim query: due pending rows, oldest first.
        Index("ix_outbox_deliveries_due", "status", "next_attempt_at"),
        Index("ix_outbox_deliveries_webhook_id", "webhook_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("outbox_events.id", ondelete="CASCADE"), nullable=False
    )
    webhook_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    leased_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    lease_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_error: Mapped[str] = mapped_column(Text, nullable=False, default="")
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
