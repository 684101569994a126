"""What a scan leaves behind before its answer goes out: explicit, ordered recorders, not closures.

The scan log writes first (it gives the scan its id and is what takedown sweeps and retro-matching
read); then each :class:`ScanRecorder` runs in the order the composition root lists them: the
``scan.match`` webhook event, then the case match counters. A recorder that raises fails the scan
(the platform retries), so nothing a platform was told about goes unrecorded. New side effects
(the jobs issue's retro-match index, say) are one more recorder in that list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from dignity.actions.outbox import emit_event, subscribers
from dignity.cases.service import CaseService
from dignity.errors import StorageError
from dignity.hashing.signals import ImageHashes
from dignity.keys import KeyInfo
from dignity.matching.engine import MatchOutcome
from dignity.policy import Decision
from dignity.scanning import ScanResult
from dignity.storage.db import Database


@dataclass(frozen=True)
class RecordedScan:
    """One answered scan as the recorders see it: the result, who asked, its scan-log id."""

    result: ScanResult
    key: KeyInfo | None
    scan_id: int | None


class ScanRecorder(Protocol):
    """A side effect of every scan, run in a declared order after the scan log's write. With a
    ``session`` (a queued scan) it writes in that transaction, so the job's end, its scan log
    row and these effects commit together, once."""

    name: str

    def record(self, scan: RecordedScan, session: Session | None = None) -> None: ...


def scan_payload(
    hashes: ImageHashes, outcome: MatchOutcome, decision: Decision, key: KeyInfo | None
) -> dict[str, Any]:
    """The ``scan.match`` webhook payload (its shape is part of the webhook contract)."""
    return {
        "decision": decision.to_dict(),
        "matches": [m.to_dict() for m in outcome.matches],
        "hashes": {
            "pdq": hashes.pdq.hex if hashes.pdq else None,
            "pdq_quality": hashes.pdq.quality if hashes.pdq else None,
            "md5": hashes.md5,
            "sha256": hashes.sha256,
        },
        "key": {"id": key.id, "name": key.name} if key is not None else None,
    }


def record_scan(
    db: Database,
    hashes: ImageHashes,
    outcome: MatchOutcome,
    decision: Decision,
    key: KeyInfo | None,
) -> str | None:
    """A ``scan.match`` event when the scan matched and someone subscribed (in a transaction of
    its own: the scan wrote nothing else); returns the event id. A failure fails the scan, so
    the platform retries rather than a match going unheard."""
    if not outcome.matches:
        return None
    try:
        # A read-only look first: most scans on most installations write nothing.
        with db.engine.connect() as conn:
            if not subscribers(conn, "scan.match"):
                return None
        payload = scan_payload(hashes, outcome, decision, key)
        return db.retrying(lambda s: emit_event(s, "scan.match", payload))
    except SQLAlchemyError as exc:
        raise StorageError(
            f"could not record the scan event: {exc}", code="storage.unavailable"
        ) from exc


class MatchEventRecorder:
    """Writes ``scan.match`` into the webhook outbox when a scan matched."""

    name = "scan.match event"

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, scan: RecordedScan, session: Session | None = None) -> None:
        result = scan.result
        if session is None:
            record_scan(self.db, result.analysis.hashes, result.outcome, result.decision, scan.key)
        elif result.outcome.matches and subscribers(session, "scan.match"):
            hashes = result.analysis.hashes
            emit_event(
                session,
                "scan.match",
                scan_payload(hashes, result.outcome, result.decision, scan.key),
            )


class CaseMatchRecorder:
    """Counts matches against case hashes: what a victim's case status reports."""

    name = "case match counters"

    def __init__(self, cases: CaseService) -> None:
        self.cases = cases

    def record(self, scan: RecordedScan, session: Session | None = None) -> None:
        ids = [m.entry_id for m in scan.result.outcome.matches]
        if ids:
            self.cases.record_matches(ids, session=session)
