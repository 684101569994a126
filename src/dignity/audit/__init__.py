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
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dignity.audit.models import AuditHead, AuditRecord
from dignity.errors import BadRequest, DignityError, Internal, Unavailable
from dignity.storage.db import Database
from dignity.storage.types import utc

GENESIS = "0" * 64
MAX_ACTION = 64  # audit_log.action's width
MAX_TEXT = 200  # audit_log.actor's and .subject's width
_ACTOR: ContextVar[str] = ContextVar("dignity_audit_actor", default="system")


class AuditError(DignityError):
    """The audit log refused a record, or the chain does not verify (``audit.broken``)."""


class AuditBadRequest(AuditError, BadRequest):
    """An audit command's bad argument, or a chain that does not verify."""

    codes = ("audit.bad_anchor", "audit.bad_since", "audit.bad_output", "audit.broken")


class AuditUnavailable(AuditError, Unavailable):
    """A database without the chain's head row: the audit log cannot be written."""

    codes = ("audit.no_head",)


class AuditInternal(AuditError, Internal):
    """A malformed action name: a fault in the calling code."""

    codes = ("audit.bad_action",)


def current_actor() -> str:
    return _ACTOR.get()


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Attribute audit records written inside the block to ``actor``."""
    token = _ACTOR.set(actor[:MAX_TEXT])
    try:
        yield
    finally:
        _ACTOR.reset(token)


def set_actor(actor: str) -> None:
    """Attribute this context's later audit records to ``actor`` (a request, a CLI run)."""
    _ACTOR.set(actor[:MAX_TEXT])


def canonical(obj: Any) -> str:
    """The one JSON text a record's hash covers: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def iso(at: datetime) -> str:
    """UTC, microseconds, a fixed format: what the hash covers must not depend on the driver."""
    return utc(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
    """Append one record in ``s``'s transaction (flushed, not committed).

    Call it last in the transaction (see the module docstring). It does not retry: on SQLite a
    busy database surfaces as the caller's transaction failing, which rolls back the change
    together with its record, so a retry belongs to whoever owns the whole transaction.
    """
    if not action or len(action) > MAX_ACTION or "." not in action:
        # A programming error, caught before anything is locked or written.
        raise AuditInternal(
            f"an audit action is 'noun.verb', at most {MAX_ACTION} characters; got {action!r}",
            code="audit.bad_action",
        )
    s.flush()  # the change being recorded is written first, in the same transaction
    # The UPDATE comes before the read: it takes the lock, so the head we read is the latest.
    s.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq + 1))
    head = s.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1)).one_or_none()
    if head is None:
        raise AuditUnavailable(
            "the audit log has no head row (audit_head id 1); the database was not migrated "
            "by dignity or the row was deleted",
            code="audit.no_head",
        )
    # A naive time is UTC (as iso() reads it), not the host's local time.
    when = utc(at or datetime.now(UTC))
    # Whole microseconds survive every backend's round trip, so verify recomputes the same hash.
    text = canonical(detail or {})
    who = (actor if actor is not None else current_actor())[:MAX_TEXT]
    what = subject[:MAX_TEXT]
    digest = record_hash(head.hash, head.seq, when, who, action, what, text)
    row = AuditRecord(
        seq=head.seq,
        at=when,
        actor=who,
        action=action,
        subject=what,
        detail=text,
        prev_hash=head.hash,
        hash=digest,
    )
    s.add(row)
    s.execute(update(AuditHead).where(AuditHead.id == 1).values(hash=digest))
    s.flush()
    return row


def few(ids: list[int], limit: int = 100) -> dict[str, Any]:
    """At most ``limit`` ids and the total: a bulk change is one record of bounded size."""
    return {"count": len(ids), "ids": ids[:limit], "ids_truncated": len(ids) > limit}


def record_policy(db: Database, policy_file: Path | None, *, actor: str = "system") -> bool:
    """Record ``policy.loaded`` (the policy file's SHA-256 and path) unless the last such
    record names the same file and content. Returns whether a record was written.

    Servers call this at start; with several workers starting at once, the first takes the
    chain's lock before reading the last record, so the others see its record and write none.
    """
    if policy_file is None:
        path = "default.toml (shipped with dignity)"
        data = resources.files("dignity.policy").joinpath("default.toml").read_bytes()
    else:
        path = str(policy_file.expanduser().resolve())
        data = policy_file.read_bytes()
    detail = {"path": path, "sha256": hashlib.sha256(data).hexdigest()}
    with db.session() as s:
        # A no-op UPDATE takes the chain's lock first, serialising this check across processes.
        s.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq))
        last = s.execute(
            select(AuditRecord.detail)
            .where(AuditRecord.action == "policy.loaded")
            .order_by(AuditRecord.seq.desc())
            .limit(1)
        ).scalar_one_or_none()
        if last is not None:
            try:
                before = json.loads(last)
            except ValueError:
                before = None
            if isinstance(before, dict) and all(before.get(k) == v for k, v in detail.items()):
                return False
        record(s, "policy.loaded", "policy", detail, actor=actor)
        return True


__all__ = [
    "GENESIS",
    "AuditError",
    "AuditHead",
    "AuditRecord",
    "acting_as",
    "canonical",
    "current_actor",
    "few",
    "iso",
    "record",
    "record_hash",
    "record_policy",
    "set_actor",
]
