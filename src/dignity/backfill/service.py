"""Scanning a batch of backfill items and keeping the per-item record.

Each item of a batch is read from its source, scanned and written to the scan log with its key
as the content id (so a later takedown or retro-match names it), then recorded in
``backfill_items`` as ``done`` with its scan id, decision and match count. An item that cannot
be read or is not usable media (gone, unreadable, not an image, over the byte limit, a refused
or failing URL) is recorded ``failed`` with its error code and does not fail the batch; a
database that stops answering does (the batch job is retried). Items already ``done`` for the
source are skipped, so a batch run twice, or a second backfill of the same source, scans nothing
twice; failed items are tried again by the next run. The record is keyed by (source, item): the
one gap is a worker killed between an item's scan-log write and its record, which scans that
item once more on the retry (one more scan-log row for the same content id, nothing else).

The run's progress (items finished, by state and decision) is the aggregate of the record for
its run id, written onto the run's job row after each batch, so the job API shows it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from dignity.backfill.models import BackfillItem
from dignity.backfill.sources import Source
from dignity.errors import DignityError, StorageError
from dignity.jobs.models import Job
from dignity.storage.db import Database
from dignity.storage.models import utcnow
from dignity.takedown.scanlog import MAX_REF

if TYPE_CHECKING:
    from dignity.scanning import ScanResult

log = logging.getLogger("dignity.backfill")

Scan = Callable[[bytes], "ScanResult"]
Record = Callable[["ScanResult", str], int]
Progress = Callable[[int, int, Mapping[str, int]], None]
_IN_CHUNK = 500  # keys per IN (...) lookup


def content_id_of(key: str) -> str:
    """The scan log's content id for an item: its key, or (a key too long or with characters
    the log refuses) ``sha256:`` and the key's digest, stable across runs."""
    if 0 < len(key) <= MAX_REF and key.isprintable():
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class ItemOutcome:
    """How one item ended: ``done`` (scanned) or ``failed``, or ``skipped`` (done before)."""

    key: str
    state: str
    scan_id: int | None = None
    action: str | None = None
    matches: int = 0
    error_code: str | None = None
    error: str | None = None


@dataclass
class BatchOutcome:
    """A batch's counts, as its job's result."""

    scanned: int = 0
    failed: int = 0
    skipped: int = 0
    matched: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, item: ItemOutcome) -> None:
        if item.state == "skipped":
            self.skipped += 1
        elif item.state == "failed":
            self.failed += 1
            code = item.error_code or "internal"
            self.errors[code] = self.errors.get(code, 0) + 1
        else:
            self.scanned += 1
            self.matched += 1 if item.matches else 0
            if item.action:
                self.actions[item.action] = self.actions.get(item.action, 0) + 1

    def counts(self) -> dict[str, int]:
        return {
            "scanned": self.scanned,
            "failed": self.failed,
            "skipped": self.skipped,
            "matched": self.matched,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.counts(), "actions": dict(self.actions), "errors": dict(self.errors)}


class BackfillService:
    """The per-item record over one database; each call opens its own session."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- the record ---------------------------------------------------------------------------
    def done_keys(self, source_id: str, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` are recorded ``done`` for the source."""
        found: set[str] = set()
        with self.db.session() as s:
            for start in range(0, len(keys), _IN_CHUNK):
                chunk = list(keys[start : start + _IN_CHUNK])
                found.update(
                    s.scalars(
                        select(BackfillItem.item_key).where(
                            BackfillItem.source_id == source_id,
                            BackfillItem.item_key.in_(chunk),
                            BackfillItem.state == "done",
                        )
                    )
                )
        return found

    def record(self, source_id: str, run_id: str, item: ItemOutcome) -> None:
        """Insert or overwrite the item's row (a failed item that now scanned becomes done)."""
        values = {
            "source_id": source_id,
            "item_key": item.key,
            "run_id": run_id,
            "state": item.state,
            "scan_id": item.scan_id,
            "action": item.action,
            "matches": item.matches,
            "error_code": item.error_code,
            "error": (item.error or "")[:2000] or None,
            "updated_at": utcnow(),
        }
        changed = {k: v for k, v in values.items() if k not in ("source_id", "item_key")}
        with self.db.session() as s:
            dialect = s.get_bind().dialect.name
            ins: Any = (postgresql if dialect == "postgresql" else sqlite).insert(BackfillItem)
            s.execute(
                ins.values(**values).on_conflict_do_update(
                    index_elements=["source_id", "item_key"], set_=changed
                )
            )

    # -- a batch ------------------------------------------------------------------------------
    def process_batch(
        self,
        source: Source,
        keys: Sequence[str],
        run_id: str,
        *,
        scan: Scan,
        record_scan: Record,
        progress: Progress | None = None,
    ) -> BatchOutcome:
        """Scan the items of ``keys`` not yet done; every item ends recorded (or skipped)."""
        outcome = BatchOutcome()
        done = self.done_keys(source.id, keys)
        for n, key in enumerate(keys, start=1):
            if key in done:
                item = ItemOutcome(key, "skipped")
            else:
                item = self._one(source, key, scan, record_scan)
                self.record(source.id, run_id, item)
            outcome.add(item)
            if progress is not None:
                progress(n, len(keys), outcome.counts())
        return outcome

    @staticmethod
    def _one(source: Source, key: str, scan: Scan, record_scan: Record) -> ItemOutcome:
        try:
            data = source.read(key)
            result = scan(data)
            scan_id = record_scan(result, content_id_of(key))
        except StorageError:
            raise  # the database, not the item: the batch is retried
        except DignityError as exc:
            return ItemOutcome(key, "failed", error_code=exc.code, error=exc.message)
        except SQLAlchemyError:
            raise
        except Exception as exc:
            # A decoder's own bug on one odd file must not make the whole batch a poison job.
            log.exception("backfill item %r failed", key)
            return ItemOutcome(key, "failed", error_code="internal", error=type(exc).__name__)
        return ItemOutcome(
            key,
            "done",
            scan_id=scan_id,
            action=result.decision.action,
            matches=len(result.outcome.matches),
        )

    # -- a run's progress and summary ---------------------------------------------------------
    def run_summary(self, run_id: str) -> dict[str, Any]:
        """What a run finished so far: items by state, matched items, decisions by action and
        failures by error code."""
        with self.db.session() as s:
            rows = s.execute(
                select(
                    BackfillItem.state,
                    BackfillItem.action,
                    BackfillItem.error_code,
                    func.count(),
                    func.sum(case((BackfillItem.matches > 0, 1), else_=0)),
                )
                .where(BackfillItem.run_id == run_id)
                .group_by(BackfillItem.state, BackfillItem.action, BackfillItem.error_code)
            ).all()
        out: dict[str, Any] = {"scanned": 0, "failed": 0, "matched": 0, "actions": {}, "errors": {}}
        for state, action, code, n, matched in rows:
            n = int(n)
            if state == "done":
                out["scanned"] += n
                out["matched"] += int(matched or 0)
                if action:
                    out["actions"][action] = out["actions"].get(action, 0) + n
            else:
                out["failed"] += n
                out["errors"][code or "internal"] = out["errors"].get(code or "internal", 0) + n
        return out

    def update_run_progress(self, run_id: str, *, started: float | None = None) -> dict[str, Any]:
        """Write the run's aggregate onto its job row (``progress_done`` = items finished,
        counts by state and action, and the rate per minute since ``started``)."""
        summary = self.run_summary(run_id)
        finished = int(summary["scanned"]) + int(summary["failed"])
        counts: dict[str, int] = {
            "scanned": summary["scanned"],
            "failed": summary["failed"],
            "matched": summary["matched"],
            **{f"action.{a}": n for a, n in summary["actions"].items()},
        }
        if started is not None:
            elapsed = max(1e-3, time.time() - started)
            counts["per_minute"] = round(finished * 60.0 / elapsed)
        try:
            with self.db.session() as s:
                s.execute(
                    update(Job)
                    .where(Job.id == run_id)
                    .values(
                        progress_done=finished,
                        progress_counts=json.dumps(counts, sort_keys=True),
                        updated_at=utcnow(),
                    )
                )
        except SQLAlchemyError as exc:
            raise StorageError(
                f"could not record the backfill's progress: {type(exc).__name__}",
                code="storage.unavailable",
            ) from exc
        return summary


def keys_of(items: Iterable[Any]) -> list[str]:
    """A payload's item list as strings (anything else is dropped)."""
    return [k for k in items if isinstance(k, str)]
