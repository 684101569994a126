"""The reviewer queue: scan decisions of ``review``, valid takedown requests and appeals in one
list, the evidence for each, its preview, and the decision that closes it.

The queue is ordered by priority (0 urgent .. 3 low), then deadline (items without one last),
then age. :meth:`ReviewQueue.item` gathers what a reviewer needs to decide without seeing the
content: the scan's matches, signals and the policy's reasons; the takedown request's text,
validity and whether its requester is flagged (from :class:`TakedownService`); the statement of
reasons and the appeal's text. A decision is dispatched to the service that carries it out
(removal with copy sweep, rejection, appeal outcome) and recorded on the item with who and when.
Two reviewers cannot both decide one item: a decision first claims the item with a conditional
update (a claim whose decider died is released after ``_CLAIM_LEASE``), and the claim is given
back when the action fails. Previews are fetched from the platform (``preview_url_template``, an
internal URL the operator trusts), decoded with dignity's safe limits, downscaled, and by default
blurred and greyscaled here, so an unblurred image leaves the server only when a reviewer asks
for it; each reveal is audited. Fetched media is never stored. A video is never played: its
preview is a contact sheet of a few evenly spaced frames (:mod:`dignity.takedown.videos`),
each blurred the same way until revealed, and its evidence lists the other videos that share
its footage, with the matched time ranges (the copies a removal would sweep).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from PIL import Image, ImageFilter
from sqlalchemy import CursorResult, and_, or_, select, update

from dignity import audit
from dignity.errors import (
    Conflict,
    DignityError,
    MediaError,
    NotFound,
    Refused,
    UpstreamFailed,
    UpstreamTimeout,
    error_class,
)
from dignity.fetch import UrlError
from dignity.media import decode
from dignity.settings import Settings
from dignity.storage.db import Database
from dignity.storage.types import isoformat
from dignity.takedown.clock import Clock, SystemClock
from dignity.takedown.content import FetchedMedia, fetch_content, fetched_media
from dignity.takedown.models import (
    REVIEW_KINDS,
    Appeal,
    Removal,
    RequesterFlag,
    ReviewItem,
    ScanRecord,
    ScanVideo,
    Statement,
    TakedownItem,
    TakedownRequest,
)
from dignity.text import json_object

PRIORITY_NAMES = {0: "urgent", 1: "high", 2: "normal", 3: "low"}
# What a reviewer may decide for each kind of item.
OUTCOMES: dict[str, tuple[str, ...]] = {
    "scan": ("remove", "keep"),
    "takedown": ("remove", "reject"),
    "appeal": ("uphold", "reverse"),
}
PREVIEW_SIZE = 640  # longest side of a preview, in pixels
_BLUR_FRACTION = 18  # blur radius = longest side / this: shapes stay, detail is gone
_CLAIM_LEASE = timedelta(minutes=10)
_NOTE_MAX = 4000
_COPIES_SHOWN = 20
_VIDEO_COPIES_SWEPT = 5  # videos of one item whose copies the evidence panel looks for


class ReviewError(DignityError):
    """A review item that does not exist, an outcome that does not fit it, a second decision,
    or a preview that cannot be had."""


class ReviewRefused(ReviewError, Refused):
    """A decision that does not fit the item: bad kind or outcome, missing or long note."""

    codes = (
        "review.bad_kind",
        "review.bad_outcome",
        "review.note_required",
        "review.note_too_long",
        "review.gone",
    )


class ReviewNotFound(ReviewError, NotFound):
    """No review item, or no preview of it."""

    codes = ("review.not_found", "review.no_preview", "review.preview_missing")


class ReviewConflict(ReviewError, Conflict):
    """An item already decided."""

    codes = ("review.decided",)


class ReviewFailed(ReviewError, UpstreamFailed):
    """The platform's preview could not be had."""

    codes = ("review.preview_failed", "review.preview_too_large")


class ReviewTimeout(ReviewError, UpstreamTimeout):
    """The platform's preview took too long."""

    codes = ("review.preview_timeout",)


@dataclass(frozen=True)
class Preview:
    """A rendered preview: JPEG bytes, blurred and greyscale unless ``revealed``."""

    data: bytes
    media_type: str
    revealed: bool
    width: int
    height: int
    kind: str = "image"  # "video": a contact sheet of the frames at ``times`` (seconds)
    times: tuple[float, ...] = ()


def _not_found(item_id: int) -> ReviewError:
    return ReviewNotFound(f"no review item {item_id}", code="review.not_found", item_id=item_id)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


class ReviewQueue:
    """The review queue over the database; thread-safe (each call uses its own sessions)."""

    def __init__(self, db: Database, settings: Settings, clock: Clock | None = None) -> None:
        self.db = db
        self.settings = settings
        self.clock: Clock = clock or SystemClock()

    def _now(self) -> datetime:
        return self.clock.now().astimezone(UTC)

    def _open(self, now: datetime) -> Any:
        # Open items, and items whose decider claimed them and never finished.
        return or_(
            ReviewItem.state == "open",
            and_(ReviewItem.state == "deciding", ReviewItem.decided_at < now - _CLAIM_LEASE),
        )

    # -- the list ---------------------------------------------------------------------------

    def queue(
        self, *, limit: int = 200, kinds: Iterable[str] | None = None, viewer: str | None = None
    ) -> list[dict[str, Any]]:
        """Open items, most urgent first: priority, then deadline (none last), then age. The
        same content is listed once: of several open scans of one content id, the first in
        that order stands for all (deciding it settles the others). ``viewer``: the reviewer
        asking, who is offered no outcome on an appeal against their own removal."""
        wanted = tuple(kinds) if kinds is not None else REVIEW_KINDS
        unknown = [k for k in wanted if k not in REVIEW_KINDS]
        if unknown:
            raise ReviewRefused(
                f"kind must be one of {', '.join(REVIEW_KINDS)}; got {unknown[0]!r}",
                code="review.bad_kind",
            )
        limit = max(1, min(int(limit), 1000))
        now = self._now()
        with self.db.session() as s:
            rows = list(
                s.scalars(
                    select(ReviewItem)
                    .where(self._open(now), ReviewItem.kind.in_(wanted))
                    .order_by(
                        ReviewItem.priority,
                        ReviewItem.due_at.is_(None),
                        ReviewItem.due_at,
                        ReviewItem.created_at,
                        ReviewItem.id,
                    )
                    .limit(limit)
                )
            )
            scans = self._by_id(s, ScanRecord, [r.scan_id for r in rows if r.kind == "scan"])
            seen: set[str] = set()
            unique = []
            for row in rows:
                scan = scans.get(row.scan_id or -1) if row.kind == "scan" else None
                content_id = scan.content_id if scan is not None else None
                if content_id is not None:
                    if content_id in seen:
                        continue
                    seen.add(content_id)
                unique.append(row)
            return self._summaries(s, unique, now, viewer)

    def recent(self, *, limit: int = 20) -> list[dict[str, Any]]:
        """The latest decisions, newest first (who decided what, and when)."""
        limit = max(1, min(int(limit), 200))
        now = self._now()
        with self.db.session() as s:
            rows = list(
                s.scalars(
                    select(ReviewItem)
                    .where(ReviewItem.state == "decided")
                    .order_by(ReviewItem.decided_at.desc(), ReviewItem.id.desc())
                    .limit(limit)
                )
            )
            return self._summaries(s, rows, now)

    def _summaries(
        self, s: Any, rows: Sequence[ReviewItem], now: datetime, viewer: str | None = None
    ) -> list[dict[str, Any]]:
        scans = self._by_id(s, ScanRecord, [r.scan_id for r in rows if r.kind == "scan"])
        requests = self._by_id(
            s, TakedownRequest, [r.request_id for r in rows if r.kind == "takedown"]
        )
        appeals = self._by_id(s, Appeal, [r.appeal_id for r in rows if r.kind == "appeal"])
        statements = self._by_id(s, Statement, [a.statement_id for a in appeals.values()])
        removals = self._by_id(s, Removal, [st.removal_id for st in statements.values()])
        counts: dict[int, int] = {}
        if requests:
            for rid in s.scalars(
                select(TakedownItem.request_id).where(TakedownItem.request_id.in_(requests))
            ):
                counts[rid] = counts.get(rid, 0) + 1
        flagged = self._flagged(s, [r.requester_fp for r in requests.values()])
        out = []
        for row in rows:
            entry = self._common(row, now)
            if row.kind == "scan":
                scan = scans.get(row.scan_id or -1)
                entry.update(self._scan_summary(scan))
            elif row.kind == "takedown":
                req = requests.get(row.request_id or -1)
                entry.update(
                    self._takedown_summary(
                        req, counts, req is not None and req.requester_fp in flagged
                    )
                )
            else:
                appeal = appeals.get(row.appeal_id or -1)
                statement = statements.get(appeal.statement_id) if appeal is not None else None
                entry.update(self._appeal_summary(statement))
                removal = (
                    removals.get(statement.removal_id or -1) if statement is not None else None
                )
                if (
                    viewer
                    and removal is not None
                    and removal.decided_by
                    and removal.decided_by == viewer
                ):
                    # DSA Art. 20: not decided by whoever removed it (decide_appeal refuses it).
                    entry["outcomes"] = []
                    entry["not_yours"] = (
                        "You took the removal decision this appeal is against, so another "
                        "reviewer decides the appeal."
                    )
            out.append(entry)
        return out

    @staticmethod
    def _by_id(s: Any, model: Any, ids: Iterable[int | None]) -> dict[int, Any]:
        wanted = {i for i in ids if i is not None}
        if not wanted:
            return {}
        return {row.id: row for row in s.scalars(select(model).where(model.id.in_(wanted)))}

    def _flagged(self, s: Any, fps: Iterable[str]) -> set[str]:
        """Requesters flagged for repeatedly unfounded requests (DSA Art. 23)."""
        wanted = set(fps)
        if not wanted:
            return set()
        return set(
            s.scalars(
                select(RequesterFlag.requester_fp).where(
                    RequesterFlag.requester_fp.in_(wanted),
                    RequesterFlag.unfounded >= self.settings.unfounded_flag_after,
                )
            )
        )

    def _common(self, row: ReviewItem, now: datetime) -> dict[str, Any]:
        due = row.due_at
        left = None if due is None else int((due - now).total_seconds())
        return {
            "id": row.id,
            "kind": row.kind,
            "priority": row.priority,
            "priority_name": PRIORITY_NAMES.get(row.priority, str(row.priority)),
            "state": "open" if row.state == "deciding" else row.state,
            "due_at": isoformat(due),
            "seconds_left": left,
            "overdue": left is not None and left < 0,
            "created_at": isoformat(row.created_at),
            "outcome": row.outcome if row.state == "decided" else None,
            "decided_by": row.decided_by if row.state == "decided" else None,
            "decided_at": isoformat(row.decided_at) if row.state == "decided" else None,
            "note": row.note if row.state == "decided" else "",
            "outcomes": list(OUTCOMES.get(row.kind, ())),
            "escalated": None,
            "flagged": False,
            "not_yours": None,
        }

    @staticmethod
    def _scan_summary(scan: ScanRecord | None) -> dict[str, Any]:
        if scan is None:
            return {"summary": "Scan (record no longer kept)", "content_id": None}
        detail = json_object(scan.detail)
        matches = detail.get("matches") or []
        decision = detail.get("decision") or {}
        rule = decision.get("rule") if isinstance(decision, dict) else None
        what = scan.content_id or f"scan {scan.id}"
        text = f"Scan of {what}: {_plural(len(matches), 'match')}"
        if rule:
            text += f", rule {rule}"
        return {"summary": text, "content_id": scan.content_id}

    @staticmethod
    def _takedown_summary(
        req: TakedownRequest | None, counts: dict[int, int], flagged: bool
    ) -> dict[str, Any]:
        if req is None:
            return {"summary": "Takedown request (gone)", "content_id": None}
        n = counts.get(req.id, 0)
        channel = "trusted flagger" if req.channel == "flagger" else "form"
        escalated = "36h" if req.escalated_36_at else "24h" if req.escalated_24_at else None
        return {
            "summary": f"Takedown request {req.ticket} ({channel}): {_plural(n, 'item')}",
            "content_id": None,
            "escalated": escalated,
            "flagged": flagged,
        }

    @staticmethod
    def _appeal_summary(statement: Statement | None) -> dict[str, Any]:
        if statement is None:
            return {"summary": "Appeal (statement gone)", "content_id": None}
        return {
            "summary": f"Appeal against removal of {statement.content_id} "
            f"(statement {statement.public_id})",
            "content_id": statement.content_id,
        }

    # -- one item's evidence ----------------------------------------------------------------

    def item(self, item_id: int, *, viewer: str | None = None) -> dict[str, Any]:
        """Everything the evidence panel shows for one item, open or decided (``viewer``: as
        :meth:`queue`)."""
        now = self._now()
        with self.db.session() as s:
            row = s.get(ReviewItem, item_id)
            if row is None:
                raise _not_found(item_id)
            out = self._summaries(s, [row], now, viewer)[0]
            if row.kind == "scan":
                out["scan"] = self._scan_evidence(s, row.scan_id)
                out["copies"] = self._copies(s, out["scan"])
            elif row.kind == "appeal":
                out.update(self._appeal_evidence(s, row.appeal_id))
            out["content_ids"] = self._content_ids(s, row)
            videos = self._videos(s, out["content_ids"])
            out["content_kinds"] = {
                cid: ("video" if cid in videos else "image")
                for cid in out["content_ids"]
                if cid in videos or self._scanned(s, cid)
            }
            request_id = row.request_id if row.kind == "takedown" else None
        if request_id is not None:
            from dignity.takedown.requests import TakedownService

            out["request"] = TakedownService(self.db, self.settings, self.clock).get(request_id)
        out["video_copies"] = self._video_copies(videos)
        out["previews"] = bool(self.settings.preview_url_template) and bool(out["content_ids"])
        return out

    @staticmethod
    def _scanned(s: Any, content_id: str) -> bool:
        return (
            s.scalar(select(ScanRecord.id).where(ScanRecord.content_id == content_id).limit(1))
            is not None
        )

    @staticmethod
    def _videos(s: Any, content_ids: Sequence[str]) -> dict[str, ScanRecord]:
        """The newest logged scan of each of ``content_ids`` that is a video."""
        from dignity.takedown.scanlog import latest_scan

        out: dict[str, ScanRecord] = {}
        for cid in content_ids[:_VIDEO_COPIES_SWEPT]:
            row = latest_scan(s, cid)
            if row is not None and s.get(ScanVideo, row.id) is not None:
                out[cid] = row
        return out

    def _video_copies(self, videos: dict[str, ScanRecord]) -> list[dict[str, Any]]:
        """Other videos sharing footage with the item's videos (what a removal would sweep
        besides byte-identical copies), with the matched time ranges."""
        if not videos:
            return []
        from dignity.takedown.scanlog import HashSet, ScanLog, hashset_of

        log = ScanLog(self.db, self.settings, self.clock)
        with self.db.session() as s:
            queries = []
            for row in videos.values():
                fresh = s.get(ScanRecord, row.id)
                if fresh is not None:
                    full = hashset_of(s, fresh)
                    # Frames only: the exact copies are listed already, and an image-style
                    # PDQ walk of the whole log is a removal's job, not a page view's.
                    queries.append(HashSet(None, full.md5, full.sha256, None, full.video))
            found = log.find_copies(
                queries, exclude_content_ids=set(videos), session=s, stills=False
            )
        sources = list(videos)
        return [
            {**c.to_dict(), "copy_of": sources[c.query]}
            for c in found[:_COPIES_SHOWN]
            if c.reason != "copy_exact"
        ]

    @staticmethod
    def _scan_evidence(s: Any, scan_id: int | None) -> dict[str, Any] | None:
        scan = s.get(ScanRecord, scan_id) if scan_id is not None else None
        if scan is None:
            return None
        detail = json_object(scan.detail)
        raw_decision = detail.get("decision")
        decision: dict[str, Any] = raw_decision if isinstance(raw_decision, dict) else {}
        return {
            "id": scan.id,
            "content_id": scan.content_id,
            "uploader": scan.uploader,
            "created_at": isoformat(scan.created_at),
            "decision": scan.decision,
            "pdq": scan.pdq,
            "pdq_quality": scan.pdq_quality,
            "md5": scan.md5,
            "sha256": scan.sha256,
            "removed_at": isoformat(scan.removed_at),
            "matches": detail.get("matches") or [],
            # The upload's size: matches found inside it carry a region in its pixels.
            "media": detail.get("media") or None,
            "signals": detail.get("signals") or {},
            # Each with ``text``: the fact in words, for a reviewer (never raw JSON).
            "reasons": [
                {**r, "text": reason_text(r, detail.get("matches"))} if isinstance(r, dict) else r
                for r in decision.get("reasons") or detail.get("reasons") or []
            ],
            "rules": decision.get("rules") or [],
            "labels": decision.get("labels") or [],
        }

    @staticmethod
    def _copies(s: Any, scan: dict[str, Any] | None) -> list[dict[str, Any]]:
        """Other content already known to be byte-identical (what a removal would sweep too,
        besides PDQ near-copies)."""
        if scan is None:
            return []
        where = [
            or_(ScanRecord.sha256 == scan["sha256"], ScanRecord.md5 == scan["md5"]),
            ScanRecord.id != scan["id"],
        ]
        if scan["content_id"]:
            # Another scan of the same content is not a copy of it: it is the same item.
            where.append(
                or_(ScanRecord.content_id.is_(None), ScanRecord.content_id != scan["content_id"])
            )
        query = select(ScanRecord).where(*where).order_by(ScanRecord.id.desc()).limit(200)
        out: list[dict[str, Any]] = []
        listed: set[str] = set()
        for c in s.scalars(query):
            if c.content_id is not None:
                if c.content_id in listed:
                    continue  # one line per content, its newest scan
                listed.add(c.content_id)
            out.append(
                {
                    "scan_id": c.id,
                    "content_id": c.content_id,
                    "created_at": isoformat(c.created_at),
                    "removed_at": isoformat(c.removed_at),
                }
            )
            if len(out) == _COPIES_SHOWN:
                break
        return out

    @staticmethod
    def _appeal_evidence(s: Any, appeal_id: int | None) -> dict[str, Any]:
        appeal = s.get(Appeal, appeal_id) if appeal_id is not None else None
        if appeal is None:
            return {"appeal": None, "statement": None, "removal": None}
        statement = s.get(Statement, appeal.statement_id)
        removal = (
            s.get(Removal, statement.removal_id)
            if statement is not None and statement.removal_id is not None
            else None
        )
        return {
            "appeal": {
                "id": appeal.id,
                "text": appeal.text,
                "state": appeal.state,
                "received_at": isoformat(appeal.received_at),
            },
            "statement": None
            if statement is None
            else {
                "public_id": statement.public_id,
                "content_id": statement.content_id,
                "uploader": statement.uploader,
                "created_at": isoformat(statement.created_at),
                "appeal_until": isoformat(statement.appeal_until),
                "body": json_object(statement.body),
            },
            "removal": None
            if removal is None
            else {
                "id": removal.id,
                "content_id": removal.content_id,
                "reason": removal.reason,
                "decided_by": removal.decided_by,
                "automated": removal.automated,
                "created_at": isoformat(removal.created_at),
                "restored_at": isoformat(removal.restored_at),
            },
        }

    @staticmethod
    def _content_ids(s: Any, row: ReviewItem) -> list[str]:
        """The platform content ids an item is about, in a stable order (preview numbering)."""
        if row.kind == "scan":
            scan = s.get(ScanRecord, row.scan_id) if row.scan_id is not None else None
            return [scan.content_id] if scan is not None and scan.content_id else []
        if row.kind == "takedown":
            ids = s.scalars(
                select(TakedownItem.content_id)
                .where(TakedownItem.request_id == row.request_id)
                .order_by(TakedownItem.id)
            )
            return [i for i in ids if i]
        appeal = s.get(Appeal, row.appeal_id) if row.appeal_id is not None else None
        statement = s.get(Statement, appeal.statement_id) if appeal is not None else None
        return [statement.content_id] if statement is not None else []

    # -- deciding ---------------------------------------------------------------------------

    def decide(
        self,
        item_id: int,
        outcome: str,
        *,
        actor: str,
        note: str = "",
        unfounded: bool = False,
    ) -> dict[str, Any]:
        """Carry out ``outcome`` for an open item and record who decided it and when.

        Raises ``review.not_found`` (404), ``review.bad_outcome`` (an outcome that does not fit
        the item's kind), ``review.note_required`` (a rejection needs a reason for the
        requester), ``review.decided`` (409: someone decided it already); errors of the
        service that carries out the decision pass through and leave the item open."""
        note = note.strip()
        if len(note) > _NOTE_MAX:
            raise ReviewRefused(
                f"the note is longer than {_NOTE_MAX} characters", code="review.note_too_long"
            )
        who = actor.strip()[:200] or "unknown"
        now = self._now()
        with self.db.session() as s:
            row = s.get(ReviewItem, item_id)
            if row is None:
                raise _not_found(item_id)
            kind = row.kind
            allowed = OUTCOMES.get(kind, ())
            if outcome not in allowed:
                raise ReviewRefused(
                    f"a {kind} item is decided with {' or '.join(allowed)}; got {outcome!r}",
                    code="review.bad_outcome",
                    allowed=list(allowed),
                )
            if unfounded and (kind, outcome) != ("takedown", "reject"):
                raise ReviewRefused(
                    "only a rejected takedown request can be marked unfounded",
                    code="review.bad_outcome",
                )
            if (kind, outcome) == ("takedown", "reject") and not note:
                raise ReviewRefused(
                    "say why the request is rejected: the requester is told this reason",
                    code="review.note_required",
                )
            target = {"scan": row.scan_id, "takedown": row.request_id, "appeal": row.appeal_id}[
                kind
            ]
            if target is None and (kind, outcome) != ("scan", "keep"):
                raise ReviewRefused(
                    f"review item {item_id} no longer has its {kind} record",
                    code="review.gone",
                )
            self._refuse_if_decided(row, now)
        self._claim(item_id, who, now)
        try:
            result = self._dispatch(kind, outcome, target, item_id, who, note, unfounded)
        except BaseException:
            self._release(item_id)
            raise
        with self.db.session() as s:
            row = s.get(ReviewItem, item_id)
            if row is None:  # deleted under us (its request was deleted): nothing to record
                raise _not_found(item_id)
            row.state = "decided"
            row.outcome = outcome
            row.decided_by = who
            row.decided_at = now
            row.note = note
            detail: dict[str, Any] = {
                "item_id": item_id,
                "kind": kind,
                "outcome": outcome,
                "by": who,
            }
            if target is not None:
                detail[f"{kind}_id"] = target
            if unfounded:
                detail["unfounded"] = True
            if result:
                detail["removals"] = [r.get("id") for r in result.get("removals", [])][:100]
            audit.record(s, "review.decided", f"review_item:{item_id}", detail)
        out = self.item(item_id)
        out["result"] = result
        return out

    def _refuse_if_decided(self, row: ReviewItem, now: datetime) -> None:
        stale = row.state == "deciding" and (
            row.decided_at is None or row.decided_at < now - _CLAIM_LEASE
        )
        if row.state == "open" or stale:
            return
        by = f" by {row.decided_by}" if row.decided_by else ""
        raise ReviewConflict(
            f"review item {row.id} is being decided{by} right now"
            if row.state == "deciding"
            else f"review item {row.id} was already decided{by}",
            code="review.decided",
            outcome=row.outcome,
            decided_by=row.decided_by,
            decided_at=isoformat(row.decided_at),
        )

    def _claim(self, item_id: int, who: str, now: datetime) -> None:
        with self.db.session() as s:
            claimed = s.execute(
                update(ReviewItem)
                .where(ReviewItem.id == item_id, self._open(now))
                .values(state="deciding", decided_by=who, decided_at=now)
            )
            if cast(CursorResult[Any], claimed).rowcount:
                return
            row = s.get(ReviewItem, item_id)
            if row is None:
                raise _not_found(item_id)
            self._refuse_if_decided(row, now)
            raise ReviewConflict(  # unreachable unless the row changed between the two reads
                f"review item {item_id} was already decided", code="review.decided"
            )

    def _release(self, item_id: int) -> None:
        with self.db.session() as s:
            s.execute(
                update(ReviewItem)
                .where(ReviewItem.id == item_id, ReviewItem.state == "deciding")
                .values(state="open", decided_by=None, decided_at=None)
            )

    def _dispatch(
        self,
        kind: str,
        outcome: str,
        target: int | None,
        item_id: int,
        who: str,
        note: str,
        unfounded: bool,
    ) -> dict[str, Any] | None:
        if (kind, outcome) == ("scan", "keep"):
            return None  # nothing to carry out: the item closes with who kept it and why
        assert target is not None  # checked in decide()
        if outcome == "remove":
            from dignity.takedown.removal import RemovalService

            removals = RemovalService(self.db, self.settings, self.clock)
            if kind == "takedown":
                summary = removals.remove_request(target, actor=who, review_item_id=item_id)
            else:
                summary = removals.remove_scan(target, actor=who, review_item_id=item_id)
            out: dict[str, Any] = summary.to_dict()
            return out
        if kind == "takedown":
            from dignity.takedown.requests import TakedownService

            TakedownService(self.db, self.settings, self.clock).reject(
                target, reason=note, unfounded=unfounded, actor=who, review_item_id=item_id
            )
            return None
        from dignity.takedown.notices import NoticeService

        NoticeService(self.db, self.settings, self.clock).decide_appeal(
            target, outcome, actor=who, note=note
        )
        return None

    # -- previews ---------------------------------------------------------------------------

    def content_ids(self, item_id: int) -> list[str]:
        with self.db.session() as s:
            row = s.get(ReviewItem, item_id)
            if row is None:
                raise _not_found(item_id)
            return self._content_ids(s, row)

    def preview(self, item_id: int, *, index: int = 0, reveal: bool = False, actor: str) -> Preview:
        """The preview of the item's ``index``-th content: blurred and greyscale unless
        ``reveal`` (then audited as ``review.revealed``). Raises ``review.no_preview`` (404)
        when previews are not set up or the item has no content id."""
        template = self.settings.preview_url_template
        if not template:
            raise ReviewNotFound(
                "previews are not set up on this server (DIGNITY_PREVIEW_URL_TEMPLATE)",
                code="review.no_preview",
            )
        ids = self.content_ids(item_id)
        if not 0 <= index < len(ids):
            raise ReviewNotFound(
                "this item has no content id to preview"
                if not ids
                else f"this item has {_plural(len(ids), 'content id')}; no number {index}",
                code="review.no_preview",
            )
        try:
            with fetched_media(self.settings, ids[index]) as fetched:
                shot = self._render(fetched, reveal=reveal)
        except UrlError as exc:
            raise preview_error(self.settings, exc) from exc
        except MediaError as exc:
            raise ReviewFailed(
                f"the platform's preview could not be decoded: {exc.message}",
                code="review.preview_failed",
                media=exc.code,
            ) from exc
        if reveal:
            with self.db.session() as s:
                audit.record(
                    s,
                    "review.revealed",
                    f"review_item:{item_id}",
                    {
                        "item_id": item_id,
                        "content_index": index,
                        "by": actor[:200],
                        "kind": shot.kind,
                    },
                )
        return shot

    def _render(self, fetched: FetchedMedia, *, reveal: bool) -> Preview:
        """An image's preview, or a video's contact sheet (never the video itself)."""
        if fetched.kind == "video":
            from dignity.takedown.videos import contact_sheet

            sheet = contact_sheet(fetched.path, self.settings, reveal=reveal)
            return Preview(
                sheet.data,
                "image/jpeg",
                reveal,
                sheet.width,
                sheet.height,
                kind="video",
                times=sheet.times,
            )
        media = decode(
            fetched.read(),
            max_bytes=self.settings.max_bytes,
            max_pixels=self.settings.max_pixels,
            min_size=PREVIEW_SIZE,
        )
        image = render_preview(media.image, reveal=reveal)
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=85)
        return Preview(buf.getvalue(), "image/jpeg", reveal, image.width, image.height)


# The facts a policy tests, in words (``match.review``: the matches of review banks, ...).
_FACT_NAMES = {
    "match": "matches",
    "match.any": "matches",
    "match.block": "matches in block banks",
    "match.review": "matches in review banks",
    "match.allow": "matches in allow banks",
    "match.region": "matches inside the upload",
    "match.best_distance": "closest match distance",
    "match.segments": "matched video segments",
    "nudity": "nudity score",
    "nudity.max": "nudity score",
    "nudity.share": "share of frames with nudity",
    "ai_evidence": "AI-generation evidence",
    "ai_evidence.sources": "AI-generation evidence from",
    "derivative_of": "made from a registered photo",
}


_MATCH_PURPOSE = {"match.block": "block", "match.review": "review", "match.allow": "allow"}


def reason_text(reason: dict[str, Any], matches: Any = None) -> str:
    """One policy reason as a sentence: the rule, the fact it tested and its value in words.
    The scan log keeps a long value as (cut) JSON text; a match fact is told from the scan's
    own ``matches`` instead, and other JSON text is read back where it is whole."""
    rule = str(reason.get("rule") or "a rule")
    fact = str(reason.get("signal") or "")
    name = _FACT_NAMES.get(fact, fact.replace("_", " "))
    value = reason.get("value")
    if fact in ("match", "match.any", *_MATCH_PURPOSE) and isinstance(matches, list):
        purpose = _MATCH_PURPOSE.get(fact)
        value = [m for m in matches if isinstance(m, dict) and purpose in (None, m.get("purpose"))]
    elif isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            value = json.loads(value)
        except ValueError:
            value = "(cut short; see the matches and signals below)"
    return f"{rule}: {name}: {_value_text(fact, value)}"


def _value_text(fact: str, value: Any, depth: int = 0) -> str:
    if value is None:
        return "not known"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, dict):
        if fact.startswith("match") and "bank" in value:
            return _match_text(value)
        parts = [
            f"{k.replace('_', ' ')} {_value_text(k, v, depth + 1)}"
            for k, v in list(value.items())[:6]
            # Nested detail (a manifest, a region) past the first level is left to the JSON.
            if v not in (None, "", [], {}) and not (depth and isinstance(v, (dict, list)))
        ]
        return ", ".join(parts) or "none"
    if isinstance(value, (list, tuple)):
        if not value:
            return "none"
        shown = [_value_text(fact, v, depth + 1) for v in value[:5]]
        more = f" and {len(value) - 5} more" if len(value) > 5 else ""
        return "; ".join(shown) + more
    return str(value)


def _match_text(m: dict[str, Any]) -> str:
    where = [str(m.get("signal") or "hash")]
    if m.get("distance") is not None:
        where.append(f"distance {m['distance']}")
    if m.get("transform") not in (None, "", "original"):
        where.append(str(m["transform"]))
    text = f"bank {m.get('bank')} ({', '.join(where)})"
    return text + (" inside the upload" if m.get("region") else "")


def render_preview(image: Image.Image, *, reveal: bool) -> Image.Image:
    """Downscale to at most ``PREVIEW_SIZE`` a side; unless ``reveal``, greyscale and blur it
    so strongly that only large shapes remain."""
    small = image.convert("RGB")
    small.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE), Image.Resampling.LANCZOS)
    if reveal:
        return small
    grey = small.convert("L")
    radius = max(4, max(grey.size) // _BLUR_FRACTION)
    # Two passes: one Gaussian of this radius still lets strong edges show through faintly.
    return grey.filter(ImageFilter.GaussianBlur(radius)).filter(ImageFilter.GaussianBlur(radius))


def fetch_preview(settings: Settings, content_id: str) -> bytes:
    """The platform's content for a preview, fetched by the one platform fetcher
    (:mod:`dignity.takedown.content`); its failures become the review's preview codes."""
    try:
        return fetch_content(settings, content_id)
    except UrlError as exc:
        raise preview_error(settings, exc) from exc


def preview_error(settings: Settings, exc: UrlError) -> DignityError:
    """A failed platform fetch as the review's preview codes."""
    status = exc.detail.get("status")
    if status in (404, 410):
        message = (
            f"the platform has no preview of this content (HTTP {status}); it may be gone already"
        )
        code = "review.preview_missing"
    elif exc.code == "url.too_large":
        message = "the preview is larger than this server fetches"
        code = "review.preview_too_large"
    elif exc.code == "url.timeout":
        message = "the platform did not send the preview in time"
        code = "review.preview_timeout"
    else:
        message = f"the preview could not be fetched: {exc.message}"
        code = "review.preview_failed"
    return error_class(code)(message, code=code, reason=exc.code)


__all__ = [
    "OUTCOMES",
    "PREVIEW_SIZE",
    "PRIORITY_NAMES",
    "Preview",
    "ReviewError",
    "ReviewQueue",
    "fetch_preview",
    "preview_error",
    "reason_text",
    "render_preview",
]
