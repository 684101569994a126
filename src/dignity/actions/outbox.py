"""The transactional outbox: events are written in the caller's transaction, then delivered.

:func:`emit_event` inserts an event and one ``pending`` delivery per enabled webhook that wants
its type, on the session of the write that caused it. The change and its event commit or roll
back together, so a receiver never hears of a change that did not happen and never misses one
that did; sending happens later, outside the transaction (see :mod:`dignity.actions.delivery`).
The outbox holds what is to be sent, not an audit log: an event that no enabled webhook wants
is not written at all (so scans cost no writes until someone subscribes), and a webhook hears
of events from its creation on.

Event types and payloads (hashes as lowercase hex, never media)::

    entry.added      {bank, bank_id, purpose, entries: [{entry_id, signal, value, origin}]}
    entry.withdrawn  the same shape: entries that stopped matching
    entry.deleted    the same shape: entries deleted for good
    bank.deleted     {bank, bank_id, purpose, entries_deleted}
    scan.match       {decision: {action, priority, rules, labels, reasons, statement, ...},
                      matches: [{bank, entry_id, signal,
                      distance, purpose}], hashes: {pdq, pdq_quality, md5, sha256}, key: {id, name}}

Entry events carry at most ``MAX_ENTRIES_PER_EVENT`` entries; a bulk change is split into
several events (``scan.match`` is built by :mod:`dignity.services.recorders`, which knows scans).
:class:`OutboxService` lists events with their deliveries and re-queues them.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import event as sa_event
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.orm import Session

from dignity.actions.models import DELIVERY_STATUSES, OutboxDelivery, OutboxEvent, Webhook
from dignity.errors import DignityError, NotFound, Refused
from dignity.storage.db import Database
from dignity.storage.models import Bank, Entry, utcnow
from dignity.storage.types import isoformat, json_default

EVENT_TYPES = (
    "entry.added",
    "entry.withdrawn",
    "entry.deleted",
    "bank.deleted",
    "scan.match",
    # The takedown workflow (issue 6): the platform carries out removals and sends notices.
    "content.remove",
    "content.restore",
    "notice.statement",
    "takedown.received",
    "takedown.escalated",
    "takedown.outcome",
    "appeal.received",
    "appeal.outcome",
    # Background jobs (issue 17): a job's end, and a past upload found by a new bank entry.
    "job.completed",
    "job.failed",
    "scan.retro_match",
)
MAX_ENTRIES_PER_EVENT = 1000
_CHUNK = 500  # ids per IN (...) lookup


class EventError(DignityError):
    """An outbox event request was refused (unknown type, bad status filter)."""


class EventRefused(EventError, Refused):
    """An event type or delivery status filter that does not exist."""

    codes = ("event.bad_type", "event.bad_status")


class EventNotFound(EventError, NotFound):
    """No outbox event with that id."""

    codes = ("event.not_found",)


def wants(event_types: str, event_type: str) -> bool:
    """Whether a webhook's filter (``*`` or a comma list) takes ``event_type``."""
    kinds = {k.strip() for k in event_types.split(",")}
    return "*" in kinds or event_type in kinds


# -- waking delivery workers after a commit -------------------------------------------------
_wakers: set[threading.Event] = set()
_wakers_lock = threading.Lock()
_FLAG = "dignity.outbox.emitted"


def add_waker(wake: threading.Event) -> None:
    with _wakers_lock:
        _wakers.add(wake)


def remove_waker(wake: threading.Event) -> None:
    with _wakers_lock:
        _wakers.discard(wake)


def _after_commit(session: Session) -> None:
    session.info.pop(_FLAG, None)
    with _wakers_lock:
        for wake in _wakers:
            wake.set()


def _wake_on_commit(s: Session) -> None:
    """Wake this process's workers once the transaction commits (not before: they would find
    nothing yet). Workers in other processes find the event on their next poll."""
    if not s.info.get(_FLAG):
        s.info[_FLAG] = True
        sa_event.listen(s, "after_commit", _after_commit, once=True)


# -- writing events ---------------------------------------------------------------------------
def subscribers(s: Session | Connection, event_type: str) -> list[int]:
    """Ids of the enabled webhooks that want ``event_type``."""
    hooks = s.execute(select(Webhook.id, Webhook.event_types).where(Webhook.enabled.is_(True)))
    return [hook_id for hook_id, types in hooks if wants(types, event_type)]


def _check_type(event_type: str) -> None:
    if event_type not in EVENT_TYPES:
        raise EventRefused(f"unknown event type {event_type!r}", code="event.bad_type")


def _write(s: Session, event_type: str, payload: dict[str, Any], hook_ids: list[int]) -> str:
    now = utcnow()
    event_id = str(uuid.uuid4())
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True, default=json_default)
    s.execute(
        insert(OutboxEvent).values(id=event_id, type=event_type, payload=body, created_at=now)
    )
    s.execute(
        insert(OutboxDelivery),
        [
            {
                "event_id": event_id,
                "webhook_id": hook_id,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "last_error": "",
                "updated_at": now,
            }
            for hook_id in hook_ids
        ],
    )
    _wake_on_commit(s)
    return event_id


def emit_event(s: Session, event_type: str, payload: dict[str, Any]) -> str | None:
    """Write an event and a pending delivery per webhook that wants it, in ``s``'s transaction;
    return the event id. An event no enabled webhook wants is not written (None): the outbox
    holds what is to be sent, it is not an audit log, and a busy platform's scans cost no
    writes until someone subscribes."""
    _check_type(event_type)
    hook_ids = subscribers(s, event_type)
    return _write(s, event_type, payload, hook_ids) if hook_ids else None


def _bank_fields(bank: Bank) -> dict[str, Any]:
    return {"bank": bank.name, "bank_id": bank.id, "purpose": bank.purpose}


def emit_entries(s: Session, event_type: str, bank: Bank, entry_ids: Sequence[int]) -> list[str]:
    """``entry.*`` events for these entries of ``bank`` (read now, so call before deleting).
    Nothing is read or written when no webhook wants ``event_type``."""
    _check_type(event_type)
    ids = sorted(set(entry_ids))
    hook_ids = subscribers(s, event_type) if ids else []
    if not hook_ids:
        return []
    found: list[dict[str, Any]] = []
    for i in range(0, len(ids), _CHUNK):
        for eid, signal, value, origin in s.execute(
            select(Entry.id, Entry.signal, Entry.value, Entry.origin_kind)
            .where(Entry.id.in_(ids[i : i + _CHUNK]))
            .order_by(Entry.id)
        ):
            found.append({"entry_id": eid, "signal": signal, "value": value, "origin": origin})
    return [
        _write(
            s,
            event_type,
            {**_bank_fields(bank), "entries": found[i : i + MAX_ENTRIES_PER_EVENT]},
            hook_ids,
        )
        for i in range(0, len(found), MAX_ENTRIES_PER_EVENT)
    ]


def emit_bank_deleted(s: Session, bank: Bank, entries_deleted: int) -> str | None:
    return emit_event(s, "bank.deleted", {**_bank_fields(bank), "entries_deleted": entries_deleted})


# -- reading and re-queueing ----------------------------------------------------------------
@dataclass(frozen=True)
class DeliveryInfo:
    id: int
    webhook_id: int
    status: str
    attempts: int
    next_attempt_at: datetime | None
    in_flight: bool
    last_status: int | None
    last_error: str
    delivered_at: datetime | None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "webhook_id": self.webhook_id,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": (
                isoformat(self.next_attempt_at) if self.status == "pending" else None
            ),
            "in_flight": self.in_flight,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "delivered_at": isoformat(self.delivered_at),
        }


@dataclass(frozen=True)
class EventInfo:
    id: str
    type: str
    payload: dict[str, Any]
    created_at: datetime
    deliveries: list[DeliveryInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "type": self.type,
            "created_at": isoformat(self.created_at),
            "payload": self.payload,
            "deliveries": [d.to_dict() for d in self.deliveries],
        }


def _delivery_info(d: OutboxDelivery, now: datetime) -> DeliveryInfo:
    leased = d.leased_until is not None and d.leased_until > now
    return DeliveryInfo(
        id=d.id,
        webhook_id=d.webhook_id,
        status=d.status,
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at,
        in_flight=d.status == "pending" and leased,
        last_status=d.last_status,
        last_error=d.last_error,
        delivered_at=d.delivered_at,
    )


def check_status(status: str | None) -> None:
    if status is not None and status not in DELIVERY_STATUSES:
        raise EventRefused(
            f"status must be one of {', '.join(DELIVERY_STATUSES)}; got {status!r}",
            code="event.bad_status",
        )


class OutboxService:
    """Events and their deliveries: list, show, re-queue, and the backlog's size."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def list_events(
        self,
        *,
        status: str | None = None,
        event_type: str | None = None,
        webhook_id: int | None = None,
        limit: int = 100,
    ) -> list[EventInfo]:
        """Newest first. ``status`` keeps events with at least one delivery in that status (and
        shows only those deliveries); so does ``webhook_id``."""
        check_status(status)
        if event_type is not None and event_type not in EVENT_TYPES:
            raise EventRefused(f"unknown event type {event_type!r}", code="event.bad_type")
        now = utcnow()
        with self.db.session() as s:
            q = select(OutboxEvent).order_by(OutboxEvent.created_at.desc(), OutboxEvent.id)
            if event_type is not None:
                q = q.where(OutboxEvent.type == event_type)
            conds = []
            if status is not None:
                conds.append(OutboxDelivery.status == status)
            if webhook_id is not None:
                conds.append(OutboxDelivery.webhook_id == webhook_id)
            if conds:
                q = q.where(
                    OutboxEvent.id.in_(select(OutboxDelivery.event_id).where(*conds).distinct())
                )
            events = list(s.scalars(q.limit(max(1, min(limit, 1000)))))
            by_event: dict[str, list[DeliveryInfo]] = {e.id: [] for e in events}
            ids = list(by_event)
            for i in range(0, len(ids), _CHUNK):
                dq = (
                    select(OutboxDelivery)
                    .where(OutboxDelivery.event_id.in_(ids[i : i + _CHUNK]), *conds)
                    .order_by(OutboxDelivery.id)
                )
                for d in s.scalars(dq):
                    by_event[d.event_id].append(_delivery_info(d, now))
            return [
                EventInfo(e.id, e.type, json.loads(e.payload), e.created_at, by_event[e.id])
                for e in events
            ]

    def get_event(self, event_id: str) -> EventInfo:
        now = utcnow()
        with self.db.session() as s:
            e = s.get(OutboxEvent, event_id)
            if e is None:
                raise EventNotFound(
                    f"no event with id {event_id!r}", code="event.not_found", event_id=event_id
                )
            deliveries = s.scalars(
                select(OutboxDelivery)
                .where(OutboxDelivery.event_id == event_id)
                .order_by(OutboxDelivery.id)
            )
            return EventInfo(
                e.id,
                e.type,
                json.loads(e.payload),
                e.created_at,
                [_delivery_info(d, now) for d in deliveries],
            )

    def redeliver(self, event_id: str, *, webhook_id: int | None = None) -> int:
        """Put the event's dead or delivered deliveries back to pending with attempts reset;
        pending ones are left as they are. Returns how many were re-queued."""
        now = utcnow()
        with self.db.session() as s:
            stmt = (
                update(OutboxDelivery)
                .where(
                    OutboxDelivery.event_id == event_id,
                    OutboxDelivery.status.in_(("dead", "delivered")),
                )
                .values(
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    leased_until=None,
                    lease_token=None,
                    last_error="",
                    last_status=None,
                    delivered_at=None,
                    updated_at=now,
                )
            )
            if webhook_id is not None:
                stmt = stmt.where(OutboxDelivery.webhook_id == webhook_id)
            # Write first, then check existence: on SQLite the transaction then holds the lock.
            n = int(cast(CursorResult[Any], s.execute(stmt)).rowcount or 0)
            if s.get(OutboxEvent, event_id) is None:
                raise EventNotFound(
                    f"no event with id {event_id!r}", code="event.not_found", event_id=event_id
                )
            if n:
                _wake_on_commit(s)
            return n

    def depth(self) -> int:
        """Deliveries still to make (pending, in flight included), for /metrics."""
        with self.db.engine.connect() as conn:
            q = select(func.count()).select_from(OutboxDelivery)
            return int(conn.execute(q.where(OutboxDelivery.status == "pending")).scalar_one())
