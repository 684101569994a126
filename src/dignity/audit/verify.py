"""Checking the audit chain: every record present, in order, unaltered, and the head matching.

:func:`verify` streams ``audit_log`` in sequence order in batches (a million records take
seconds and little memory) and checks, record by record, that sequence numbers run from 1 with
no gap, that each record's ``prev_hash`` is the hash of the record before it, and that each
record's hash recomputes from its contents. At the end, the last record must be the one
``audit_head`` names (its sequence number and hash), and no record may lie beyond the head. So an
altered record, a deleted one (in the middle or at the tail), an inserted one or two records
swapped are all found; the result names the first broken sequence number and why. What it
cannot see is a rewrite of the whole chain from some point on *and* the head by someone who
knows the format; to catch that, keep the summary's ``head_hash`` somewhere else and pass it
back as an anchor (``expect``). Appends while it runs are fine: the target is re-read until it
stops moving. :func:`verify_lines` checks an export (JSON lines) the same way, offline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from dignity.audit import GENESIS, AuditHead, AuditRecord, iso, record_hash
from dignity.storage.db import Database

BATCH = 5000
ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# Why a chain does not verify; ``broken_seq`` says where.
REASONS = {
    "missing": "a record was deleted",
    "altered": "a record's contents do not match its hash",
    "link": "a record's prev_hash is not the hash of the record before it",
    "unexpected": "a record that the chain does not account for (inserted or out of place)",
    "head": "the last record is not the one audit_head names",
    "no_head": "audit_head has no row",
    "anchor": "a record's hash differs from the one given to check against",
    "format": "an exported line cannot be read",
}
_COLUMNS = (
    AuditRecord.seq,
    AuditRecord.at,
    AuditRecord.actor,
    AuditRecord.action,
    AuditRecord.subject,
    AuditRecord.detail,
    AuditRecord.prev_hash,
    AuditRecord.hash,
)


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify` found: ``ok``, or the first broken ``seq`` and the ``reason``."""

    ok: bool
    records: int
    head_seq: int
    head_hash: str
    first_at: datetime | None = None
    last_at: datetime | None = None
    broken_seq: int | None = None
    reason: str | None = None
    message: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "first_at": iso(self.first_at) if self.first_at else None,
            "last_at": iso(self.last_at) if self.last_at else None,
            "broken_seq": self.broken_seq,
            "reason": self.reason,
            "message": self.message,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class _Break:
    seq: int
    reason: str
    message: str


@dataclass
class _Chain:
    """The running check: what the next record must be, and what was seen so far."""

    expect: Mapping[int, str] = field(default_factory=dict)
    next_seq: int = 1
    prev_hash: str = GENESIS
    count: int = 0
    last_hash: str = GENESIS
    first_at: datetime | None = None
    last_at: datetime | None = None

    def feed(self, row: tuple[Any, ...]) -> _Break | None:
        seq, at, actor, action, subject, detail, prev_hash, digest = row
        seq = int(seq)
        if seq < self.next_seq:
            return _Break(
                seq,
                "unexpected",
                f"record seq {seq} is out of place (the chain starts at 1 and the next record "
                f"is seq {self.next_seq})",
            )
        if seq > self.next_seq:
            gone = (
                f"seq {self.next_seq}"
                if seq == self.next_seq + 1
                else f"seq {self.next_seq} to {seq - 1}"
            )
            return _Break(self.next_seq, "missing", f"record {gone} is missing (deleted)")
        if record_hash(prev_hash, seq, at, actor, action, subject, detail) != digest:
            return _Break(
                seq,
                "altered",
                f"record seq {seq} was altered: its hash does not match its contents "
                "(changed, or moved from another seq)",
            )
        if prev_hash != self.prev_hash:
            return _Break(
                seq,
                "link",
                f"record seq {seq} does not follow record seq {seq - 1}: its prev_hash is not "
                "that record's hash (one of the two was replaced)",
            )
        want = self.expect.get(seq)
        if want is not None and want != digest:
            return _Break(
                seq, "anchor", f"record seq {seq} has hash {digest}, not the expected {want}"
            )
        self.next_seq = seq + 1
        self.prev_hash = self.last_hash = digest
        self.count += 1
        if self.first_at is None:
            self.first_at = at
        self.last_at = at
        return None

    def anchors_beyond(self, seq: int) -> _Break | None:
        """An anchor past the last record checked: the record it names is gone."""
        later = sorted(s for s in self.expect if s > seq)
        if later:
            return _Break(
                later[0], "anchor", f"record seq {later[0]} (given to check against) is missing"
            )
        return None


def _result(
    chain: _Chain,
    head_seq: int,
    head_hash: str,
    started: float,
    broken: _Break | None = None,
) -> VerifyResult:
    return VerifyResult(
        ok=broken is None,
        records=chain.count,
        head_seq=head_seq,
        head_hash=head_hash,
        first_at=chain.first_at,
        last_at=chain.last_at,
        broken_seq=broken.seq if broken else None,
        reason=broken.reason if broken else None,
        message=broken.message if broken else "the audit chain is intact",
        seconds=time.monotonic() - started,
    )


def _snapshot(db: Database) -> tuple[int, str, int | None] | None:
    """The head's seq and hash and the log's largest seq, read in one statement (one view)."""
    head_seq = select(AuditHead.seq).where(AuditHead.id == 1).scalar_subquery()
    head_hash = select(AuditHead.hash).where(AuditHead.id == 1).scalar_subquery()
    top = select(func.max(AuditRecord.seq)).scalar_subquery()
    with db.engine.connect() as conn:
        row = conn.execute(select(head_seq, head_hash, top)).one()
    if row[0] is None:
        return None
    return int(row[0]), str(row[1]), None if row[2] is None else int(row[2])


def _batches(
    db: Database, after: int | None, upto: int, size: int
) -> Iterator[list[tuple[Any, ...]]]:
    """Records with ``after < seq <= upto`` in seq order, ``size`` at a time, each batch read
    on a short connection of its own (no long-running transaction holds the database)."""
    while True:
        query = select(*_COLUMNS).where(AuditRecord.seq <= upto)
        if after is not None:
            query = query.where(AuditRecord.seq > after)
        query = query.order_by(AuditRecord.seq).limit(size)
        with db.engine.connect() as conn:
            rows: list[tuple[Any, ...]] = [tuple(r) for r in conn.execute(query)]
        if not rows:
            return
        yield rows
        if len(rows) < size:
            return
        after = int(rows[-1][0])


def verify(
    db: Database, *, batch: int = BATCH, expect: Mapping[int, str] | None = None
) -> VerifyResult:
    """Check the whole chain; ``expect`` maps seq -> hash noted earlier (anchors)."""
    started = time.monotonic()
    chain = _Chain(expect=dict(expect or {}))
    snap = _snapshot(db)
    if snap is None:
        return _result(chain, 0, "", started, _Break(0, "no_head", "audit_head has no row (id 1)"))
    head_seq, head_hash, _ = snap
    after: int | None = None  # the first batch has no lower bound: a seq below 1 is found too
    while True:
        for rows in _batches(db, after, head_seq, max(1, batch)):
            for row in rows:
                broken = chain.feed(row)
                if broken is not None:
                    return _result(chain, head_seq, head_hash, started, broken)
            after = int(rows[-1][0])
        # Records appended meanwhile moved the head on: check those too, until it stands still.
        snap = _snapshot(db)
        if snap is None:
            return _result(
                chain, head_seq, head_hash, started, _Break(0, "no_head", "audit_head vanished")
            )
        if snap[0] > head_seq:
            head_seq, head_hash = snap[0], snap[1]
            continue
        head_seq, head_hash, top = snap
        break
    last = chain.next_seq - 1
    if last < head_seq:
        return _result(
            chain,
            head_seq,
            head_hash,
            started,
            _Break(
                last + 1,
                "missing",
                f"record seq {last + 1} is missing: audit_head names seq {head_seq} but the log "
                f"ends at seq {last} (the last record(s) were deleted)",
            ),
        )
    if last > head_seq or (top is not None and top > head_seq):
        extra = max(last, top or 0)
        return _result(
            chain,
            head_seq,
            head_hash,
            started,
            _Break(
                head_seq + 1,
                "unexpected",
                f"the log holds records up to seq {extra} but audit_head ends at seq {head_seq} "
                "(records were inserted past the head, or the head was rolled back)",
            ),
        )
    if chain.last_hash != head_hash:
        return _result(
            chain,
            head_seq,
            head_hash,
            started,
            _Break(
                head_seq,
                "head",
                f"record seq {head_seq} has hash {chain.last_hash}, but audit_head names "
                f"{head_hash} (the last record was replaced, or the head was changed)",
            ),
        )
    beyond = chain.anchors_beyond(last)
    return _result(chain, head_seq, head_hash, started, beyond)


def parse_line(line: str) -> tuple[Any, ...]:
    """One exported line back into the columns the hash covers; ValueError if unreadable."""
    obj = json.loads(line)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    at = datetime.strptime(str(obj["at"]), ISO_FORMAT).replace(tzinfo=UTC)
    return (
        int(obj["seq"]),
        at,
        str(obj["actor"]),
        str(obj["action"]),
        str(obj["subject"]),
        str(obj["detail"]),
        str(obj["prev_hash"]),
        str(obj["hash"]),
    )


def verify_lines(lines: Iterable[str], *, expect: Mapping[int, str] | None = None) -> VerifyResult:
    """Check an export (see :mod:`dignity.audit.export`) without the database.

    An export from the start must begin at seq 1 with the genesis hash; one made with
    ``--after-seq`` begins where it begins, trusting its first record's ``prev_hash``. With no
    head to compare, a cut-off end goes unseen here: compare ``head_hash`` with the database's
    (or an anchor) for that.
    """
    started = time.monotonic()
    chain = _Chain(expect=dict(expect or {}))
    first = True
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = parse_line(line)
        except (ValueError, KeyError, TypeError) as exc:
            return _result(
                chain,
                chain.next_seq - 1,
                chain.last_hash,
                started,
                _Break(chain.next_seq, "format", f"line {n} cannot be read: {exc}"),
            )
        if first and row[0] > 1:
            chain.next_seq, chain.prev_hash = row[0], row[6]
        first = False
        broken = chain.feed(row)
        if broken is not None:
            return _result(chain, chain.next_seq - 1, chain.last_hash, started, broken)
    return _result(
        chain,
        chain.next_seq - 1,
        chain.last_hash,
        started,
        chain.anchors_beyond(chain.next_seq - 1),
    )


__all__ = ["BATCH", "REASONS", "VerifyResult", "parse_line", "verify", "verify_lines"]
