"""The scan log: the hashes and a compact decision summary of every ``/v1/scan``, never the media.

It is what makes the TAKE IT DOWN Act's "known identical copies" findable after a takedown: a
removal sweeps the log for earlier scans of other content with the same bytes (SHA-256 or MD5)
or a near PDQ hash (:meth:`ScanLog.find_copies`), its own or that of a picture found inside it
(``scan_regions``: a screenshot's photo, a collage's cell; see :mod:`dignity.regions`).
:meth:`ScanLog.record` writes one row per scan (and one per region) in one short transaction
(plus a ``review_items`` row, kind ``scan``, when the policy said ``review``); its detail
JSON is capped at :data:`MAX_DETAIL` bytes so the log stays small at millions of rows. The
PDQ part of a sweep streams the log in id order, a batch at a time, and compares each batch
with the removed hashes in the compiled kernel of :class:`~dignity.matching.index.MihIndex`,
so memory stays flat whatever the log's size.
:meth:`ScanLog.purge` applies ``scan_log_retention_days`` but keeps every row that a removal or
an open review item still refers to.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from sqlalchemy import CursorResult, and_, delete, func, insert, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from dignity import audit
from dignity.errors import RequestRefused, ScanNotFound, StorageError
from dignity.settings import Settings
from dignity.storage.db import Database
from dignity.storage.models import Entry
from dignity.takedown.clock import Clock, SystemClock, utc
from dignity.takedown.models import Removal, ReviewItem, ScanRecord, ScanRegion

if TYPE_CHECKING:
    from dignity.hashing.signals import ImageHashes
    from dignity.keys import KeyInfo
    from dignity.scanning import ScanResult

MAX_DETAIL = 4096  # bytes of detail JSON per scan: the evidence panel's needs, no more
MAX_REF = 255  # content_id / uploader: the columns' width
SWEEP_BATCH = 50_000  # scan-log ids per PDQ comparison window
_MAX_MATCHES = 20
_MAX_REASONS = 10
_MAX_EVIDENCE = 5
_SHORT = 160  # characters kept of a free-text value in the detail
_PURGE_BATCH = 5000
# The review queue's priorities (0 urgent .. 3 low) from the policy's 0-100 scale, where the
# policy's names are urgent 100, high 75, normal 50, low 25.
_QUEUE_STEPS = ((100, 0), (75, 1), (50, 2))


def queue_priority(decision_priority: int) -> int:
    """The review queue's priority (0 urgent, 1 high, 2 normal, 3 low) of a policy priority."""
    for floor, level in _QUEUE_STEPS:
        if decision_priority >= floor:
            return level
    return 3


def check_ref(value: str | None, what: str) -> str | None:
    """A platform identifier (``content_id``, ``uploader``): None, or 1-255 printable
    characters; anything else raises ``request.bad_<what>`` (422)."""
    if value is None:
        return None
    if not value or len(value) > MAX_REF or not value.isprintable():
        raise RequestRefused(
            f"{what} must be 1 to {MAX_REF} printable characters",
            code=f"request.bad_{what}",
            field=what,
        )
    return value


def _short(value: Any) -> Any:
    """A value for the detail: numbers and short strings as they are, the rest summarised."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= _SHORT else text[: _SHORT - 1] + "…"


def compact_detail(result: ScanResult, origins: Mapping[int, str] | None = None) -> dict[str, Any]:
    """The evidence a reviewer and a statement of reasons need from one scan: matches (bank,
    distance, signal, origin), the decision (reasons, priority, labels) and the key signals
    (nudity score, AI evidence sources, derivative_of, C2PA state); at most MAX_DETAIL bytes."""
    origins = origins or {}
    signals = result.analysis.signals
    decision = result.decision
    matches = [
        {
            "bank": m.bank,
            "entry_id": m.entry_id,
            "signal": m.signal,
            "distance": m.distance,
            "purpose": m.purpose,
            "origin": origins.get(m.entry_id),
            # Where a picture found inside the upload is: the review panel outlines it.
            **({"region": m.region.to_dict()} if m.region is not None else {}),
        }
        for m in result.outcome.matches[:_MAX_MATCHES]
    ]
    evidence = [
        {"source": str(e.get("source")), "detail": _short(e.get("detail"))}
        for e in (signals.get("ai_evidence") or [])
        if isinstance(e, Mapping)
    ][:_MAX_EVIDENCE]
    derivative = signals.get("derivative_of")
    c2pa = signals.get("c2pa")
    generator = signals.get("generator")
    nudity = signals.get("nudity")
    detail: dict[str, Any] = {
        "matches": matches,
        "signals": {
            "nudity": nudity if isinstance(nudity, int | float) else None,
            "ai_evidence": evidence,
            "derivative_of": (
                {
                    k: derivative.get(k)
                    for k in ("source_id", "confidence", "matched_area", "region")
                    if k in derivative
                }
                if isinstance(derivative, Mapping)
                else None
            ),
            "c2pa": c2pa.get("state") if isinstance(c2pa, Mapping) else None,
            "generator": (
                _short(generator.get("generator")) if isinstance(generator, Mapping) else None
            ),
        },
        "decision": {
            "action": decision.action,
            "priority": decision.priority,
            "rules": list(decision.rules)[:_MAX_REASONS],
            "labels": list(decision.labels)[:_MAX_REASONS],
            "reasons": [
                {"rule": r.rule, "signal": r.signal, "value": _short(r.value)}
                for r in decision.reasons[:_MAX_REASONS]
            ],
            "policy": _short(decision.policy),
            # What a statement of reasons quotes: the policy's words for the facts and grounds.
            "statement": {
                "facts": [_short(f) for f in (decision.statement.get("facts") or [])[:3]],
                "legal_ground": _short(decision.statement.get("legal_ground")),
                "contractual_ground": _short(decision.statement.get("contractual_ground")),
            },
        },
        "media": {
            "width": result.analysis.hashes.width,
            "height": result.analysis.hashes.height,
            "format": result.analysis.hashes.format,
        },
    }
    return fit(detail)


def fit(detail: dict[str, Any], limit: int = MAX_DETAIL) -> dict[str, Any]:
    """Shrink ``detail`` step by step (least useful first) until its JSON fits ``limit``."""
    decision: dict[str, Any] = detail.get("decision") or {}
    signals: dict[str, Any] = detail.get("signals") or {}

    def size() -> int:
        return len(dumps(detail).encode("utf-8"))

    def cut(where: dict[str, Any], key: str, keep: int) -> None:
        if isinstance(where.get(key), list):
            where[key] = where[key][:keep]

    steps = (
        lambda: [r.pop("value", None) for r in decision.get("reasons") or []],
        lambda: cut(decision.get("statement") or {}, "facts", 0),
        lambda: cut(signals, "ai_evidence", 1),
        lambda: cut(detail, "matches", 3),
        lambda: cut(decision, "reasons", 3),
        lambda: cut(detail, "matches", 1),
    )
    for step in steps:
        if size() <= limit:
            return detail
        step()
    if size() > limit:  # only pathological plug-in output gets here: keep the decision
        detail = {"decision": {"action": decision.get("action")}, "truncated": True}
    return detail


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, default=str)


@dataclass(frozen=True)
class HashSet:
    """The hashes of one piece of content, as a sweep's query."""

    pdq: str | None
    md5: str
    sha256: str
    pdq_quality: int | None = None


@dataclass(frozen=True)
class Copy:
    """A scan-log row found by a sweep: another piece of content with the same or near hashes.

    ``query`` is the index of the :class:`HashSet` it matched; ``reason`` ``copy_exact``
    (distance 0) or ``copy_pdq`` (PDQ distance)."""

    scan_id: int
    content_id: str
    query: int
    reason: str
    distance: int
    # Set when the copy is a picture inside that scan (a screenshot, a collage): where it is.
    region: dict[str, int] | None = None

    @property
    def rank(self) -> tuple[int, int, int]:
        """Which finding of one content id counts: exact before PDQ, then nearer, then older."""
        return (0 if self.reason == "copy_exact" else 1, self.distance, self.scan_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scan_id": self.scan_id,
            "content_id": self.content_id,
            "reason": self.reason,
            "distance": self.distance,
            **({"region": self.region} if self.region is not None else {}),
        }


def _hex_rows(values: Sequence[str]) -> np.ndarray[Any, np.dtype[np.uint8]]:
    return np.frombuffer(bytes.fromhex("".join(values)), dtype=np.uint8).reshape(-1, 32)


class ScanLog:
    """Records scans and finds known copies in them; thread-safe (a session per call)."""

    def __init__(self, db: Database, settings: Settings, clock: Clock | None = None) -> None:
        self.db = db
        self.settings = settings
        self.clock: Clock = clock or SystemClock()

    # -- recording -------------------------------------------------------------------------
    def record(
        self,
        result: ScanResult,
        key: KeyInfo | None,
        *,
        content_id: str | None = None,
        uploader: str | None = None,
    ) -> int:
        """Write one scan (and its review item when the decision is ``review``); return its id.

        Raises ``storage.unavailable`` when the write fails, so the scan fails and the platform
        retries: a scan that was answered is always in the log."""
        content_id = check_ref(content_id, "content_id")
        uploader = check_ref(uploader, "uploader")
        origins = self._origins([m.entry_id for m in result.outcome.matches[:_MAX_MATCHES]])
        detail = dumps(compact_detail(result, origins))
        decision = result.decision
        review = queue_priority(decision.priority) if decision.action == "review" else None
        return self._insert(
            result.analysis.hashes,
            decision.action,
            detail,
            key_id=key.id if key is not None else None,
            content_id=content_id,
            uploader=uploader,
            review_priority=review,
        )

    def record_hashes(
        self,
        hashes: ImageHashes,
        *,
        content_id: str,
        uploader: str | None = None,
        decision: str = "fetched",
        detail: Mapping[str, Any] | None = None,
    ) -> int:
        """Log content that was hashed outside ``/v1/scan`` (fetched for a removal), so that it
        is swept like any scan; ``decision`` says why it is there."""
        content_id = cast(str, check_ref(content_id, "content_id"))
        return self._insert(
            hashes,
            decision,
            dumps(fit(dict(detail or {"decision": {"action": decision}}))),
            key_id=None,
            content_id=content_id,
            uploader=check_ref(uploader, "uploader"),
            review_priority=None,
        )

    def _insert(
        self,
        hashes: ImageHashes,
        action: str,
        detail: str,
        *,
        key_id: int | None,
        content_id: str | None,
        uploader: str | None,
        review_priority: int | None,
    ) -> int:
        now = self.clock.now()
        values = {
            "created_at": now,
            "key_id": key_id,
            "content_id": content_id,
            "uploader": uploader,
            "pdq": hashes.pdq.hex if hashes.pdq else None,
            "pdq_quality": hashes.pdq.quality if hashes.pdq else None,
            "md5": hashes.md5,
            "sha256": hashes.sha256,
            "decision": action[:16],
            "detail": detail,
        }
        try:
            with self.db.session() as s:
                scan_id = int(
                    s.execute(
                        insert(ScanRecord).values(**values).returning(ScanRecord.id)
                    ).scalar_one()
                )
                regions = [
                    {
                        "scan_id": scan_id,
                        "pdq": rh.pdq.hex,
                        "pdq_quality": rh.pdq.quality,
                        **rh.region.to_dict(),
                    }
                    for rh in hashes.regions
                ]
                if regions:
                    s.execute(insert(ScanRegion), regions)
                if review_priority is not None:
                    s.execute(
                        insert(ReviewItem).values(
                            kind="scan",
                            scan_id=scan_id,
                            priority=review_priority,
                            state="open",
                            note="",
                            created_at=now,
                        )
                    )
                return scan_id
        except SQLAlchemyError as exc:
            raise StorageError(
                f"could not record the scan: {exc.__class__.__name__}", code="storage.unavailable"
            ) from exc

    def _origins(self, entry_ids: Sequence[int]) -> dict[int, str]:
        """``kind:ref`` of each matched entry (a read on its own connection, before the write:
        an SQLite transaction that reads first could be refused its write)."""
        if not entry_ids:
            return {}
        try:
            with self.db.engine.connect() as conn:
                rows = conn.execute(
                    select(Entry.id, Entry.origin_kind, Entry.origin_ref).where(
                        Entry.id.in_(list(entry_ids))
                    )
                ).all()
        except SQLAlchemyError as exc:
            raise StorageError(
                f"could not read match origins: {exc.__class__.__name__}",
                code="storage.unavailable",
            ) from exc
        return {eid: f"{kind}:{ref}" if ref else kind for eid, kind, ref in rows}

    # -- reading ---------------------------------------------------------------------------
    def get(self, scan_id: int) -> dict[str, Any]:
        """One scan as the review UI shows it (``scan.not_found`` when there is none)."""
        with self.db.session() as s:
            row = s.get(ScanRecord, scan_id)
            if row is None:
                raise ScanNotFound(f"no scan {scan_id}", code="scan.not_found", scan_id=scan_id)
            return scan_dict(row)

    def latest_for(self, content_id: str) -> dict[str, Any] | None:
        """The newest scan of ``content_id`` (what a takedown item resolves to), or None."""
        with self.db.session() as s:
            row = latest_scan(s, content_id)
            return scan_dict(row) if row is not None else None

    # -- sweeping --------------------------------------------------------------------------
    def find_copies(
        self,
        queries: Sequence[HashSet],
        *,
        exclude_content_ids: Iterable[str] = (),
        threshold: int | None = None,
        after_id: int = 0,
        session: Session | None = None,
    ) -> list[Copy]:
        """Scan-log rows of other content that are copies of ``queries``: equal SHA-256 or MD5
        (``copy_exact``), or PDQ within ``threshold`` (default ``sweep_pdq_threshold``;
        ``copy_pdq``). Rows already removed, rows without a content id and
        ``exclude_content_ids`` are skipped; one result per content id (its closest row).
        PDQ hashes below ``pdq_min_quality`` on either side are not compared: flat images
        have near-identical hashes whatever they show. ``after_id`` limits the search to
        newer rows (a sweep's catch-up inside its transaction)."""
        if not queries:
            return []
        limit = self.settings.sweep_pdq_threshold if threshold is None else threshold
        excluded = set(exclude_content_ids)
        best: dict[str, Copy] = {}

        def keep(found: Copy) -> None:
            if found.content_id in excluded:
                return
            old = best.get(found.content_id)
            if old is None or found.rank < old.rank:
                best[found.content_id] = found

        def run(s: Session) -> None:
            for found in self._exact(s, queries, after_id):
                keep(found)
            for found in self._near(s, queries, limit, after_id):
                keep(found)
            for found in self._near_regions(s, queries, limit, after_id):
                keep(found)

        if session is not None:
            run(session)
        else:
            with self.db.session() as s:
                run(s)
        return sorted(best.values(), key=lambda c: (c.query, c.distance, c.scan_id))

    def _exact(self, s: Session, queries: Sequence[HashSet], after_id: int) -> Iterator[Copy]:
        by_sha = {q.sha256: i for i, q in reversed(list(enumerate(queries)))}
        by_md5 = {q.md5: i for i, q in reversed(list(enumerate(queries)))}
        rows = s.execute(
            select(ScanRecord.id, ScanRecord.content_id, ScanRecord.sha256, ScanRecord.md5).where(
                or_(ScanRecord.sha256.in_(list(by_sha)), ScanRecord.md5.in_(list(by_md5))),
                ScanRecord.removed_at.is_(None),
                ScanRecord.content_id.is_not(None),
                ScanRecord.id > after_id,
            )
        )
        for scan_id, content_id, sha, md5 in rows:
            query = by_sha.get(sha, by_md5.get(md5))
            if query is not None:
                yield Copy(int(scan_id), str(content_id), query, "copy_exact", 0)

    def _near(
        self, s: Session, queries: Sequence[HashSet], limit: int, after_id: int
    ) -> Iterator[Copy]:
        from dignity.matching.index import MihIndex

        floor = self.settings.pdq_min_quality
        usable = [
            (i, q.pdq)
            for i, q in enumerate(queries)
            if q.pdq is not None and (q.pdq_quality is None or q.pdq_quality >= floor)
        ]
        hashes = [h for _, h in usable if h is not None]
        if not usable:
            return
        # The removed hashes are the (tiny) index; each batch of the log is searched against
        # it with the index's compiled scan, so a batch costs one C call.
        index = MihIndex.from_arrays(
            np.asarray([i for i, _ in usable], dtype=np.int64),
            _hex_rows(hashes),
            np.zeros(len(usable), dtype=np.int32),
            background=False,
        )
        # Windows of ids rather than LIMIT: each batch is an index range on any planner, even
        # on a table whose statistics are stale (a LIMIT query then sorts the whole table).
        # The driver's cursor directly: building ORM rows would cost more than the comparison
        # (3 us a row against 0.3). The statement holds only integers we computed.
        bounds = s.execute(
            select(func.min(ScanRecord.id), func.max(ScanRecord.id)).where(ScanRecord.id > after_id)
        ).one()
        if bounds[0] is None:
            return
        low, high = int(bounds[0]) - 1, int(bounds[1])
        cursor = s.connection().connection.cursor()
        try:
            while low < high:
                top = low + SWEEP_BATCH
                cursor.execute(
                    f"SELECT id, pdq FROM scan_log WHERE id > {low:d} AND id <= {top:d}"
                    " AND pdq IS NOT NULL AND removed_at IS NULL AND content_id IS NOT NULL"
                    f" AND (pdq_quality IS NULL OR pdq_quality >= {int(floor):d})"
                )
                batch = cursor.fetchall()
                low = top
                if not batch:
                    continue
                hits = index.search(_hex_rows([str(row[1]) for row in batch]), limit)
                found = [
                    (int(batch[row_no][0]), int(query), int(dist))
                    for row_no, query, dist in zip(
                        hits.query.tolist(),
                        hits.ids.tolist(),
                        hits.distances.tolist(),
                        strict=True,
                    )
                ]
                if found:
                    ids = {
                        r[0]: r[1]
                        for r in s.execute(
                            select(ScanRecord.id, ScanRecord.content_id).where(
                                ScanRecord.id.in_([f[0] for f in found])
                            )
                        )
                    }
                    for scan_id, query, dist in found:
                        content_id = ids.get(scan_id)
                        if content_id is not None:
                            # Equal PDQ is not equal bytes: exact copies are the digest matches.
                            yield Copy(scan_id, str(content_id), query, "copy_pdq", dist)
        finally:
            cursor.close()

    def _near_regions(
        self, s: Session, queries: Sequence[HashSet], limit: int, after_id: int
    ) -> Iterator[Copy]:
        """PDQ copies among the pictures found inside earlier scans (``scan_regions``): a
        removed picture that was posted inside a screenshot or a collage. Few scans have
        regions that pass the quality floor, so this reads them in batches by region id."""
        from dignity.matching.index import MihIndex

        floor = self.settings.pdq_min_quality
        usable = [
            (i, q.pdq)
            for i, q in enumerate(queries)
            if q.pdq is not None and (q.pdq_quality is None or q.pdq_quality >= floor)
        ]
        if not usable:
            return
        index = MihIndex.from_arrays(
            np.asarray([i for i, _ in usable], dtype=np.int64),
            _hex_rows([h for _, h in usable if h is not None]),
            np.zeros(len(usable), dtype=np.int32),
            background=False,
        )
        last = 0
        while True:
            batch = s.execute(
                select(
                    ScanRegion.id,
                    ScanRegion.pdq,
                    ScanRegion.scan_id,
                    ScanRecord.content_id,
                    ScanRegion.x,
                    ScanRegion.y,
                    ScanRegion.w,
                    ScanRegion.h,
                )
                .join(ScanRecord, ScanRecord.id == ScanRegion.scan_id)
                .where(
                    ScanRegion.id > last,
                    ScanRegion.pdq_quality >= floor,
                    ScanRecord.id > after_id,
                    ScanRecord.removed_at.is_(None),
                    ScanRecord.content_id.is_not(None),
                )
                .order_by(ScanRegion.id)
                .limit(SWEEP_BATCH)
            ).all()
            if not batch:
                return
            last = int(batch[-1][0])
            hits = index.search(_hex_rows([str(row[1]) for row in batch]), limit)
            for row_no, query, dist in zip(
                hits.query.tolist(), hits.ids.tolist(), hits.distances.tolist(), strict=True
            ):
                _, _, scan_id, content_id, x, y, w, h = batch[row_no]
                region = {"x": int(x), "y": int(y), "w": int(w), "h": int(h)}
                yield Copy(int(scan_id), str(content_id), int(query), "copy_pdq", int(dist), region)

    def max_id(self, s: Session | None = None) -> int:
        """The newest scan id (0 when the log is empty)."""
        if s is not None:
            return int(s.scalar(select(func.max(ScanRecord.id))) or 0)
        with self.db.session() as own:
            return int(own.scalar(select(func.max(ScanRecord.id))) or 0)

    # -- retention -------------------------------------------------------------------------
    def purge(self, *, now: datetime | None = None) -> int:
        """Delete scans older than ``scan_log_retention_days`` that no removal and no open
        review item refers to; returns how many went. Batched, so a large purge never holds
        the database's write lock for long."""
        cutoff = utc(now or self.clock.now()) - timedelta(
            days=self.settings.scan_log_retention_days
        )
        kept_by_removal = select(Removal.scan_id).where(Removal.scan_id.is_not(None))
        kept_by_review = select(ReviewItem.scan_id).where(
            ReviewItem.scan_id.is_not(None), ReviewItem.state != "decided"
        )

        def batch(s: Session) -> tuple[int, int]:
            ids = list(
                s.scalars(
                    select(ScanRecord.id)
                    .where(
                        and_(
                            ScanRecord.created_at < cutoff,
                            ScanRecord.id.not_in(kept_by_removal),
                            ScanRecord.id.not_in(kept_by_review),
                        )
                    )
                    .order_by(ScanRecord.id)
                    .limit(_PURGE_BATCH)
                )
            )
            if not ids:
                return 0, 0
            gone = s.execute(delete(ScanRecord).where(ScanRecord.id.in_(ids)))
            n = int(cast(CursorResult[Any], gone).rowcount or 0)
            audit.record(
                s, "scanlog.purged", "scan_log", {"rows": n, "first": ids[0], "last": ids[-1]}
            )
            return len(ids), n

        total = 0
        while True:
            found, deleted = self.db.retrying(batch)
            total += deleted
            if found < _PURGE_BATCH:
                return total


def latest_scan(s: Session, content_id: str) -> ScanRecord | None:
    """The newest scan of ``content_id``: what a reported content id resolves to."""
    return s.scalars(
        select(ScanRecord)
        .where(ScanRecord.content_id == content_id)
        .order_by(ScanRecord.id.desc())
        .limit(1)
    ).first()


def scan_dict(row: ScanRecord) -> dict[str, Any]:
    try:
        detail = json.loads(row.detail or "{}")
    except ValueError:
        detail = {}
    return {
        "scan_id": row.id,
        "created_at": row.created_at.isoformat(),
        "content_id": row.content_id,
        "uploader": row.uploader,
        "hashes": {
            "pdq": row.pdq,
            "pdq_quality": row.pdq_quality,
            "md5": row.md5,
            "sha256": row.sha256,
        },
        "decision": row.decision,
        "detail": detail,
        "removed_at": row.removed_at.isoformat() if row.removed_at else None,
    }


__all__ = [
    "MAX_DETAIL",
    "Copy",
    "HashSet",
    "ScanLog",
    "check_ref",
    "compact_detail",
    "queue_priority",
    "scan_dict",
]
