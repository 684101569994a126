"""The tamper-evident audit log: who did what, when, to which request, bank, entry, key or policy.

Every record is appended with :func:`record` *inside the transaction that makes the change*, so
a change and its audit record commit or roll back together; nothing acknowledged goes
unrecorded. Records form a hash chain (each carries the SHA-256 of the one before), serialised
by locking the single ``audit_head`` row: on PostgreSQL the ``UPDATE`` takes a row lock that
concurrent appenders queue behind; on SQLite it takes the database's write lock. The actor comes
from a context variable that the HTTP layer (the caller's key or reviewer session) and the CLI
(the operating-system user) set, so services deep below need not pass it along.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dignity.audit.models import AuditHead, AuditRecord

GENESIS = "0" * 64
_ACTOR: ContextVar[str] = ContextVar("dignity_audit_actor", default="system")


def current_actor() -> str:
    return _ACTOR.get()


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Attribute audit records written inside the block to ``actor``."""
    token = _ACTOR.set(actor[:200])
    try:
        yield
    finally:
        _ACTOR.reset(token)


def set_actor(actor: str) -> None:
    """Attribute this context's later audit records to ``actor`` (a request, a CLI run)."""
    _ACTOR.set(actor[:200])


def canonical(obj: Any) -> str:
    """The one JSON text a record's hash covers: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def iso(at: datetime) -> str:
    """UTC, microseconds, a fixed format: what the hash covers must not depend on the driver."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)  # SQLite hands back naive datetimes; we store UTC only
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_hash(
    prev_hash: str, seq: int, at: datetime, actor: str, action: str, subject: str, detail: str
) -> str:
    text = canonical([prev_hash, seq, iso(at), actor, action, subject, detail])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record(
    s: Session,
    action: str,
    subject: str = "",
    detail: dict[str, Any] | None = None,
    *,
    actor: str | None = None,
    at: datetime | None = None,
) -> AuditRecord:
    """Append one record in ``s``'s transaction (flushed, not committed)."""
    s.flush()  # the change being recorded is written first, in the same transaction
    # The UPDATE comes before the read: it takes the lock, so the head we read is the latest.
    s.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq + 1))
    head = s.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1)).one()
    when = (at or datetime.now(UTC)).astimezone(UTC)
    # Whole microseconds survive every backend's round trip, so verify recomputes the same hash.
    text = canonical(detail or {})
    who = (actor if actor is not None else current_actor())[:200]
    digest = record_hash(head.hash, head.seq, when, who, action, subject[:200], text)
    row = AuditRecord(
        seq=head.seq,
        at=when,
        actor=who,
        action=action,
        subject=subject[:200],
        detail=text,
        prev_hash=head.hash,
        hash=digest,
    )
    s.add(row)
    s.execute(update(AuditHead).where(AuditHead.id == 1).values(hash=digest))
    s.flush()
    return row


__all__ = [
    "GENESIS",
    "AuditHead",
    "AuditRecord",
    "acting_as",
    "canonical",
    "current_actor",
    "iso",
    "record",
    "record_hash",
    "set_actor",
]
