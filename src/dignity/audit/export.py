"""Reading the audit log out: every record as JSON lines, and filtered listings.

An exported record carries every column, with ``at`` in the exact form the hash covers
(:func:`dignity.audit.iso`) and ``detail`` as the exact canonical JSON text that was hashed, so
anyone can recompute the chain from an export alone (:func:`dignity.audit.verify.verify_lines`).
Export streams in sequence order in batches (``after_seq`` resumes where an earlier export
stopped); listings are bounded pages, newest first unless a cursor is given.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import select

from dignity.audit import AuditRecord, iso
from dignity.storage.db import Database

BATCH = 2000
MAX_LIMIT = 1000
_COLUMNS = (
    AuditRecord.id,
    AuditRecord.seq,
    AuditRecord.at,
    AuditRecord.actor,
    AuditRecord.action,
    AuditRecord.subject,
    AuditRecord.detail,
    AuditRecord.prev_hash,
    AuditRecord.hash,
)


def as_dict(row: Any) -> dict[str, Any]:
    """One record, every column; ``at`` as the hash covers it and ``detail`` as hashed."""
    return {
        "id": int(row.id),
        "seq": int(row.seq),
        "at": iso(row.at),
        "actor": row.actor,
        "action": row.action,
        "subject": row.subject,
        "detail": row.detail,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


def to_line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def iter_records(
    db: Database, *, after_seq: int = 0, batch: int = BATCH
) -> Iterator[dict[str, Any]]:
    """Every record with ``seq > after_seq``, in seq order, read ``batch`` at a time."""
    after = after_seq
    size = max(1, batch)
    while True:
        query = (
            select(*_COLUMNS).where(AuditRecord.seq > after).order_by(AuditRecord.seq).limit(size)
        )
        with db.engine.connect() as conn:
            rows = [as_dict(r) for r in conn.execute(query)]
        yield from rows
        if len(rows) < size:
            return
        after = rows[-1]["seq"]


def export_lines(db: Database, *, after_seq: int = 0) -> Iterator[str]:
    """The log as JSON lines (see the module docstring), from ``after_seq`` on."""
    for record in iter_records(db, after_seq=after_seq):
        yield to_line(record)


def list_records(
    db: Database,
    *,
    action: str | None = None,
    actor: str | None = None,
    subject: str | None = None,
    since: datetime | None = None,
    after_seq: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """A page of records. ``action`` and ``actor`` are prefixes (``bank.``, ``key:3:``),
    ``subject`` is exact, ``since`` a time (naive = UTC). Newest first; with ``after_seq``,
    oldest first from there (a cursor for following the log)."""
    query = select(*_COLUMNS)
    if action:
        query = query.where(AuditRecord.action.startswith(action, autoescape=True))
    if actor:
        query = query.where(AuditRecord.actor.startswith(actor, autoescape=True))
    if subject:
        query = query.where(AuditRecord.subject == subject)
    if since is not None:
        query = query.where(AuditRecord.at >= since)
    if after_seq is not None:
        query = query.where(AuditRecord.seq > after_seq).order_by(AuditRecord.seq)
    else:
        query = query.order_by(AuditRecord.seq.desc())
    query = query.limit(max(1, min(limit, MAX_LIMIT)))
    with db.engine.connect() as conn:
        return [as_dict(r) for r in conn.execute(query)]


__all__ = ["MAX_LIMIT", "as_dict", "export_lines", "iter_records", "list_records", "to_line"]
