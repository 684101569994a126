"""Removals: a reviewer's decision to remove reported content, carried out with its copies.

:meth:`RemovalService.remove_request` (a valid takedown request) and
:meth:`RemovalService.remove_scan` (a scan sent to review) write, for each piece of content, a
``removals`` row, a ``content.remove`` event (the platform's removal call, delivered through the
outbox), a statement of reasons for its uploader (:mod:`dignity.takedown.notices`) and the
content's hashes in the block bank ``takedown_bank`` (origin ``takedown:removal:<id>``), so a
re-upload is blocked. Then the sweep: earlier scans of *other* content with the same bytes
(``copy_exact``) or a PDQ hash within ``sweep_pdq_threshold`` (``copy_pdq``) are the TAKE IT
DOWN Act's "known identical copies"; for a video, earlier videos sharing at least three seconds
of its footage, mirrored or inside a longer compilation (``copy_video``, with the time ranges),
for an image, videos that show it (``copy_frame``), and for a video, images that show one of
its frames (``copy_still``). Each gets its own removal, event and statement. Videos never
scanned are fetched into a temporary file and hashed (vPDQ) from it. All writes of one
decision, its audit records and its events go in one transaction; what may be slow happens
before it (fetching never-scanned content through ``preview_url_template``, and
streaming the scan log for PDQ copies, whose few newer rows are caught up inside it). A
decision applied twice is answered with what the first one did and writes nothing: the request
(or scan) is claimed with a conditional update, so two reviewers cannot both remove it.
:meth:`RemovalService.restore` undoes one removal (an appeal reversed): ``content.restore``
event, ``restored_at``, and the bank entries only it still needed are withdrawn.
Platforms without a webhook pull the same facts from :meth:`RemovalService.list_removals`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, and_, or_, select, update
from sqlalchemy.orm import Session

from dignity import audit
from dignity.actions.outbox import emit_event
from dignity.errors import BankError, Conflict, DignityError, NotFound, Refused, UpstreamFailed
from dignity.fetch import UrlError
from dignity.matching.banks import BankService, NewEntry
from dignity.settings import Settings
from dignity.storage.db import Database
from dignity.storage.models import Bank, Entry
from dignity.takedown.clock import Clock, SystemClock, utc
from dignity.takedown.content import fetch_content as fetch_platform_content
from dignity.takedown.content import fetched_media
from dignity.takedown.models import (
    Removal,
    ReviewItem,
    ScanRecord,
    Statement,
    TakedownItem,
    TakedownRequest,
)
from dignity.takedown.scanlog import (
    Copy,
    HashSet,
    ScanLog,
    VideoFrames,
    hashset_of,
    latest_scan,
    other_orientations,
)

log = logging.getLogger("dignity.takedown")

ORIGIN_PREFIX = "takedown:removal:"
_LIST_MAX = 1000


class RemovalError(DignityError):
    """A removal or restore was refused: unknown request, scan or removal, a request that is
    not valid (or already closed otherwise), content without a platform id."""


class RemovalRefused(RemovalError, Refused):
    """Content that cannot be removed as asked (no platform id)."""

    codes = ("removal.no_content",)


class RemovalNotFound(RemovalError, NotFound):
    """No removal (or request, scan) with that id."""

    codes = ("removal.not_found",)


class RemovalConflict(RemovalError, Conflict):
    """A request not valid yet, or already closed otherwise."""

    codes = ("removal.request_incomplete", "removal.request_closed")


class RemovalFailed(RemovalError, UpstreamFailed):
    """The platform's removal endpoint failed."""

    codes = ("removal.fetch_failed",)


@dataclass(frozen=True)
class RemovedItem:
    """One removal: what went, why, and the statement of reasons its uploader gets."""

    id: int
    content_id: str
    reason: str
    distance: int | None = None
    copy_of: int | None = None
    scan_id: int | None = None
    statement: str | None = None  # the statement's public id
    # A video copy's segments (time ranges in both videos), or the frame showing an image.
    evidence: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "content_id": self.content_id,
            "reason": self.reason,
            "distance": self.distance,
            "copy_of": self.copy_of,
            "scan_id": self.scan_id,
            "statement": self.statement,
            **self.evidence,
        }


@dataclass(frozen=True)
class RemovalSummary:
    """What one decision removed. ``already`` is true when the decision had been applied
    before: nothing was written this time and ``removals`` are the earlier ones."""

    removals: tuple[RemovedItem, ...] = ()
    bank_entries: int = 0
    request_id: int | None = None
    ticket: str | None = None
    already: bool = False
    not_found: tuple[str, ...] = ()  # reported refs that name no content on the platform
    unhashed: tuple[str, ...] = ()  # removed, but no hashes known: no bank entry, no sweep

    @property
    def copies(self) -> int:
        return sum(1 for r in self.removals if r.reason.startswith("copy_"))

    @property
    def statements(self) -> list[str]:
        return [r.statement for r in self.removals if r.statement]

    def to_dict(self) -> dict[str, Any]:
        return {
            "removals": [r.to_dict() for r in self.removals],
            "copies": self.copies,
            "bank_entries": self.bank_entries,
            "statements": self.statements,
            "request_id": self.request_id,
            "ticket": self.ticket,
            "already_done": self.already,
            "not_found": list(self.not_found),
            "unhashed": list(self.unhashed),
        }


@dataclass(frozen=True)
class _Target:
    """A piece of reported content: its id, the scan its hashes come from (if any)."""

    content_id: str
    scan_id: int | None
    hashes: HashSet | None
    url: str | None
    item_ids: tuple[int, ...] = ()


@dataclass
class _Decision:
    """Shared by every write of one decision."""

    now: datetime
    who: str
    bank: str
    request: TakedownRequest | None = None
    review_item_id: int | None = None
    bank_entries: int = 0
    removed: list[RemovedItem] = field(default_factory=list)


class _InTransaction:
    """Stands in for :class:`Database` with an open session, so :class:`BankService` writes
    entries, their index log and their events inside the removal's transaction."""

    def __init__(self, s: Session) -> None:
        self._s = s

    @contextmanager
    def session(self) -> Iterator[Session]:
        yield self._s


def banks_in(s: Session) -> BankService:
    """A bank service whose writes join ``s``'s transaction."""
    return BankService(cast(Database, _InTransaction(s)))


def _is_url(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


def removal_dict(row: Removal, statement: str | None, ticket: str | None) -> dict[str, Any]:
    """A removal as ``GET /v1/removals`` lists it."""
    return {
        "id": row.id,
        "content_id": row.content_id,
        "reason": row.reason,
        "distance": row.distance,
        "copy_of": row.source_removal_id,
        "ticket": ticket,
        "automated": row.automated,
        "created_at": row.created_at.isoformat(),
        "restored_at": row.restored_at.isoformat() if row.restored_at else None,
        "statement": (
            {"public_id": statement, "url": f"/statements/{statement}"} if statement else None
        ),
    }


class RemovalService:
    """Removals with copy sweeps, block-bank entries, statements, and restores."""

    def __init__(self, db: Database, settings: Settings, clock: Clock | None = None) -> None:
        self.db = db
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.scan_log = ScanLog(db, settings, self.clock)

    # -- deciding --------------------------------------------------------------------------
    def remove_request(
        self, request_id: int, *, actor: str | None = None, review_item_id: int | None = None
    ) -> RemovalSummary:
        """Remove the content of a valid takedown request and its known copies; close the
        request as ``removed`` and tell the requester. Applied twice: the first summary, with
        ``already`` set, and nothing written."""
        who = (actor or audit.current_actor())[:200]
        with self.db.session() as s:
            req = s.get(TakedownRequest, request_id)
            if req is None:
                raise RemovalNotFound(
                    f"no takedown request {request_id}",
                    code="removal.not_found",
                    request_id=request_id,
                )
            if req.state == "removed":
                return self._summary_of_request(s, req)
            self._check_open(req)
            items = list(
                s.scalars(
                    select(TakedownItem)
                    .where(
                        TakedownItem.request_id == request_id,
                        # Lines the intake found not on the platform are never acted on.
                        TakedownItem.state != "invalid",
                    )
                    .order_by(TakedownItem.id)
                )
            )
            refs = [(i.id, i.ref, i.content_id, i.scan_id) for i in items]
        targets, not_found = self._targets(refs)
        if not targets:
            raise RemovalRefused(
                "none of the request's content resolves to a content id on this platform; "
                "reject the request or ask the requester for the exact URL",
                code="removal.no_content",
                request_id=request_id,
            )
        self._ensure_bank()
        queries, candidates, seen = self._presweep(targets)

        def apply(s: Session) -> RemovalSummary | None:
            now = self.clock.now()
            claimed = s.execute(
                update(TakedownRequest)
                .where(TakedownRequest.id == request_id, TakedownRequest.state == "valid")
                .values(
                    state="removed",
                    closed_at=now,
                    decided_by=who,
                    outcome_reason="The reported content was removed.",
                    updated_at=now,
                )
            )
            if not cast(CursorResult[Any], claimed).rowcount:
                return None  # decided meanwhile: answered below, outside this transaction
            req = s.get(TakedownRequest, request_id)
            assert req is not None
            ctx = _Decision(now, who, self.settings.takedown_bank, req, review_item_id)
            reported = self._remove_targets(s, ctx, targets, reason="reported")
            copies = self._sweep(s, ctx, targets, reported, queries, candidates, seen)
            for target in targets:
                if target.item_ids:
                    s.execute(
                        update(TakedownItem)
                        .where(TakedownItem.id.in_(target.item_ids))
                        .values(state="removed")
                    )
            missing = [item_id for item_id, *_ in refs if item_id in not_found]
            if missing:
                s.execute(
                    update(TakedownItem)
                    .where(TakedownItem.id.in_(missing))
                    .values(state="not_found")
                )
            self._close_review_items(
                s, ctx, ReviewItem.request_id == request_id, review_item_id, "remove"
            )
            self._settle_other_requests(s, ctx)
            from dignity.takedown.notices import notify_requester

            notify_requester(
                s,
                req,
                "removed",
                "The content you reported was removed"
                + (f", and {len(copies)} known copies with it." if copies else "."),
                copies=len(copies),
                removed=[r.content_id for r in ctx.removed][:100],
            )
            audit.record(
                s,
                "takedown.removed",
                f"takedown:{req.ticket}",
                {
                    "request_id": request_id,
                    "removals": [r.id for r in ctx.removed][:200],
                    "copies": len(copies),
                    "review_item_id": review_item_id,
                },
            )
            return RemovalSummary(
                tuple(ctx.removed),
                ctx.bank_entries,
                request_id,
                req.ticket,
                not_found=tuple(ref for item_id, ref, *_ in refs if item_id in not_found),
                unhashed=tuple(t.content_id for t in targets if t.hashes is None),
            )

        result = self.db.retrying(apply)
        if result is not None:
            return result
        with self.db.session() as s:
            req = s.get(TakedownRequest, request_id)
            assert req is not None
            if req.state == "removed":
                return self._summary_of_request(s, req)
            self._check_open(req)
        raise AssertionError("unreachable: the request was valid but could not be claimed")

    def remove_scan(
        self, scan_id: int, *, actor: str | None = None, review_item_id: int | None = None
    ) -> RemovalSummary:
        """Remove the content of a scan a reviewer looked at (reason ``reviewed``), with its
        known copies. Applied twice: the first summary, ``already`` set, nothing written."""
        who = (actor or audit.current_actor())[:200]
        with self.db.session() as s:
            row = s.get(ScanRecord, scan_id)
            if row is None:
                raise RemovalNotFound(
                    f"no scan {scan_id}", code="removal.not_found", scan_id=scan_id
                )
            if row.content_id is None:
                raise RemovalRefused(
                    "this scan has no content id (the platform did not send one), so there is "
                    "nothing to name in a removal call",
                    code="removal.no_content",
                    scan_id=scan_id,
                )
            if row.removed_at is not None:
                return self._summary_of_content(s, row.content_id)
            target = _Target(row.content_id, row.id, hashset_of(s, row), None)
        self._ensure_bank()
        queries, candidates, seen = self._presweep([target])

        def apply(s: Session) -> RemovalSummary | None:
            now = self.clock.now()
            claimed = s.execute(
                update(ScanRecord)
                .where(ScanRecord.id == scan_id, ScanRecord.removed_at.is_(None))
                .values(removed_at=now)
            )
            if not cast(CursorResult[Any], claimed).rowcount:
                return None
            ctx = _Decision(now, who, self.settings.takedown_bank, None, review_item_id)
            reported = self._remove_targets(s, ctx, [target], reason="reviewed")
            copies = self._sweep(s, ctx, [target], reported, queries, candidates, seen)
            self._close_review_items(
                s, ctx, ReviewItem.scan_id == scan_id, review_item_id, "remove"
            )
            self._settle_other_requests(s, ctx)
            audit.record(
                s,
                "scan.removed",
                f"scan:{scan_id}",
                {
                    "scan_id": scan_id,
                    "removals": [r.id for r in ctx.removed][:200],
                    "copies": len(copies),
                    "review_item_id": review_item_id,
                },
            )
            return RemovalSummary(tuple(ctx.removed), ctx.bank_entries)

        result = self.db.retrying(apply)
        if result is not None:
            return result
        with self.db.session() as s:
            return self._summary_of_content(s, target.content_id)

    # -- the pieces of a decision ----------------------------------------------------------
    @staticmethod
    def _check_open(req: TakedownRequest) -> None:
        if req.state == "valid":
            return
        if req.state == "incomplete":
            raise RemovalConflict(
                f"takedown request {req.ticket} is incomplete; nothing is removed before a "
                "request is valid",
                code="removal.request_incomplete",
                ticket=req.ticket,
            )
        raise RemovalConflict(
            f"takedown request {req.ticket} is already closed ({req.state})",
            code="removal.request_closed",
            ticket=req.ticket,
            state=req.state,
        )

    def _targets(
        self, refs: Sequence[tuple[int, str, str | None, int | None]]
    ) -> tuple[list[_Target], set[int]]:
        """Group the request's items by content id, with the hashes the scan log has for each
        (fetching and hashing never-scanned content when previews are configured)."""
        by_content: dict[str, list[tuple[int, str, int | None]]] = {}
        not_found: set[int] = set()
        for item_id, ref, content_id, scan_id in refs:
            if not content_id:
                not_found.add(item_id)
                continue
            by_content.setdefault(content_id, []).append((item_id, ref, scan_id))
        targets: list[_Target] = []
        with self.db.session() as s:
            for content_id, items in by_content.items():
                scan_ids = [sid for _, _, sid in items if sid is not None]
                row = None
                if scan_ids:
                    row = s.get(ScanRecord, max(scan_ids))
                if row is None:
                    row = latest_scan(s, content_id)
                url = next((ref for _, ref, _ in items if _is_url(ref)), None)
                ids = tuple(i for i, _, _ in items)
                if row is not None:
                    targets.append(_Target(content_id, row.id, hashset_of(s, row), url, ids))
                else:
                    targets.append(_Target(content_id, None, None, url, ids))
        return [self._fetched(t) if t.hashes is None else t for t in targets], not_found

    def _fetched(self, target: _Target) -> _Target:
        """Hash never-scanned content through ``preview_url_template`` and log it; on any
        failure the content is still removed by its id, just without a bank entry or sweep."""
        if not self.settings.preview_url_template:
            return target
        try:
            with fetched_media(self.settings, target.content_id) as media:
                if media.kind == "video":
                    from dignity.takedown.videos import hash_video

                    video = hash_video(media.path, self.settings)
                else:
                    from dignity.hashing.signals import hash_bytes

                    hashes = hash_bytes(
                        media.read(), settings=self.settings, dihedral=self.settings.match_dihedral
                    )
        except (DignityError, UrlError) as exc:
            log.warning("could not fetch %s for hashing: %s", target.content_id, exc)
            return target
        if media.kind == "video":
            scan_id = self.scan_log.record_video(video, content_id=target.content_id)
            query = HashSet(None, video.md5, video.sha256, None, VideoFrames.from_vpdq(video))
        else:
            scan_id = self.scan_log.record_hashes(hashes, content_id=target.content_id)
            query = HashSet(
                hashes.pdq.hex if hashes.pdq else None,
                hashes.md5,
                hashes.sha256,
                hashes.pdq.quality if hashes.pdq else None,
                pdq_dihedral=other_orientations(hashes.pdq),
            )
        return _Target(target.content_id, scan_id, query, target.url, target.item_ids)

    def _ensure_bank(self) -> None:
        """The takedown block bank, created on first use (outside the decision: creating a
        bank twice concurrently is harmless, failing a removal for it is not)."""
        banks = BankService(self.db)
        name = self.settings.takedown_bank
        try:
            banks.get_bank(name)
        except BankError as exc:
            if exc.code != "bank.not_found":
                raise
            try:
                banks.create_bank(
                    name,
                    purpose="block",
                    description="Hashes of content removed after a takedown decision "
                    "(dignity takedown workflow): re-uploads are blocked.",
                )
            except BankError as again:
                if again.code != "bank.exists":
                    raise

    def _presweep(self, targets: Sequence[_Target]) -> tuple[list[HashSet], list[Copy], int]:
        """The sweep's long part, before the transaction: stream the scan log once."""
        queries = [t.hashes for t in targets if t.hashes is not None]
        if not queries:
            return [], [], 0
        seen = self.scan_log.max_id()
        candidates = self.scan_log.find_copies(
            queries, exclude_content_ids={t.content_id for t in targets}
        )
        return queries, candidates, seen

    def _remove_targets(
        self, s: Session, ctx: _Decision, targets: Sequence[_Target], *, reason: str
    ) -> list[RemovedItem | None]:
        out: list[RemovedItem | None] = []
        for t in targets:
            if self._active_removal(s, t.content_id) is not None:
                out.append(None)  # removed already (an earlier request, a sweep)
                continue
            out.append(
                self._remove_one(
                    s, ctx, t.content_id, t.scan_id, reason, hashes=t.hashes, url=t.url
                )
            )
        return out

    @staticmethod
    def _active_removal(s: Session, content_id: str) -> Removal | None:
        return s.scalars(
            select(Removal)
            .where(Removal.content_id == content_id, Removal.restored_at.is_(None))
            .order_by(Removal.id)
            .limit(1)
        ).first()

    def _sweep(
        self,
        s: Session,
        ctx: _Decision,
        targets: Sequence[_Target],
        reported: Sequence[RemovedItem | None],
        queries: Sequence[HashSet],
        candidates: Sequence[Copy],
        seen: int,
    ) -> list[RemovedItem]:
        """Remove the known copies: the pre-sweep's candidates that are still there, plus
        copies among rows scanned since it ran (found here, inside the transaction)."""
        if not queries:
            return []
        # Query i is the i-th target with hashes; its removal is the copies' source.
        sources: list[int | None] = []
        for t, r in zip(targets, reported, strict=True):
            if t.hashes is None:
                continue
            if r is None:  # removed before: its earlier removal is the source
                earlier = self._active_removal(s, t.content_id)
                sources.append(earlier.id if earlier is not None else None)
            else:
                sources.append(r.id)
        excluded = {t.content_id for t in targets}
        late = self.scan_log.find_copies(
            queries, exclude_content_ids=excluded, after_id=seen, session=s
        )
        best: dict[str, Copy] = {}
        for c in [*candidates, *late]:
            old = best.get(c.content_id)
            if old is None or c.rank < old.rank:
                best[c.content_id] = c
        if not best:
            return []
        rows = {
            r.id: r
            for r in s.scalars(
                select(ScanRecord).where(ScanRecord.id.in_([c.scan_id for c in best.values()]))
            )
        }
        removed: list[RemovedItem] = []
        for c in sorted(best.values(), key=lambda c: (c.query, c.distance, c.scan_id)):
            row = rows.get(c.scan_id)
            if row is None or row.removed_at is not None:
                continue  # purged or removed since the pre-sweep
            if self._active_removal(s, c.content_id) is not None:
                continue
            hashes = HashSet(row.pdq, row.md5, row.sha256, row.pdq_quality)
            if c.reason != "copy_exact":
                # A near copy's own PDQ (or a video's frames) would widen the bank's reach with
                # every sweep; its exact hashes block its re-upload without drifting.
                hashes = HashSet(None, hashes.md5, hashes.sha256)
            removed.append(
                self._remove_one(
                    s,
                    ctx,
                    c.content_id,
                    c.scan_id,
                    c.reason,
                    distance=c.distance,
                    copy_of=sources[c.query],
                    hashes=hashes,
                    evidence=c.evidence(),
                )
            )
        return removed

    def _remove_one(
        self,
        s: Session,
        ctx: _Decision,
        content_id: str,
        scan_id: int | None,
        reason: str,
        *,
        distance: int | None = None,
        copy_of: int | None = None,
        hashes: HashSet | None = None,
        url: str | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> RemovedItem:
        from dignity.takedown.notices import NoticeService

        copy = reason.startswith("copy_")
        row = Removal(
            request_id=ctx.request.id if ctx.request is not None else None,
            review_item_id=ctx.review_item_id,
            scan_id=scan_id,
            content_id=content_id,
            reason=reason,
            distance=distance,
            source_removal_id=copy_of,
            automated=copy,
            decided_by=ctx.who,
            created_at=ctx.now,
        )
        s.add(row)
        s.flush()
        s.execute(
            update(ScanRecord)
            .where(ScanRecord.content_id == content_id, ScanRecord.removed_at.is_(None))
            .values(removed_at=ctx.now)
        )
        # Scans of this content waiting in the review queue are settled by this removal.
        s.execute(
            update(ReviewItem)
            .where(
                ReviewItem.kind == "scan",
                ReviewItem.state.in_(("open", "deciding")),
                ReviewItem.scan_id.in_(
                    select(ScanRecord.id).where(ScanRecord.content_id == content_id)
                ),
            )
            .values(
                state="decided",
                outcome="remove",
                decided_by=ctx.who,
                decided_at=ctx.now,
                note=f"removed ({reason})",
            )
        )
        if hashes is not None:
            ctx.bank_entries += self._bank_hashes(s, ctx, row.id, hashes)
        statement = NoticeService(self.db, self.settings, self.clock).create_statement(
            s, row, request=ctx.request
        )
        ticket = ctx.request.ticket if ctx.request is not None else None
        row.event_id = emit_event(
            s,
            "content.remove",
            {
                "removal_id": row.id,
                "content_id": content_id,
                "url": url,
                "reason": reason,
                "distance": distance,
                "ticket": ticket,
                "copy_of": copy_of,
                "statement": {
                    "public_id": statement.public_id,
                    "url": f"/statements/{statement.public_id}",
                },
                # A video copy's matched time ranges (or the frame showing an image).
                **(evidence or {}),
            },
        )
        audit.record(
            s,
            "content.removed",
            f"removal:{row.id}",
            {
                "removal_id": row.id,
                "content_id": content_id,
                "reason": reason,
                "distance": distance,
                "copy_of": copy_of,
                "scan_id": scan_id,
                "ticket": ticket,
                "statement": statement.public_id,
                **(evidence or {}),
            },
        )
        item = RemovedItem(
            row.id,
            content_id,
            reason,
            distance,
            copy_of,
            scan_id,
            statement.public_id,
            evidence=dict(evidence or {}),
        )
        ctx.removed.append(item)
        return item

    def _bank_hashes(self, s: Session, ctx: _Decision, removal_id: int, h: HashSet) -> int:
        items = [NewEntry("md5", h.md5), NewEntry("sha256", h.sha256)]
        if h.pdq and (h.pdq_quality is None or h.pdq_quality >= self.settings.pdq_min_quality):
            items.insert(0, NewEntry("pdq", h.pdq))
        floor = self.settings.pdq_min_quality
        if h.video is not None and any(q >= floor for q in h.video.qualities):
            # The removed video's frames, so that a re-encoded, trimmed or mirrored re-upload is
            # blocked when it is scanned, not only found by the next sweep.
            items.insert(0, NewEntry("vpdq", "", frames=h.video.vpdq_frames(), video_md5=h.md5))
        ref = f"{ORIGIN_PREFIX}{removal_id}"
        note = f"removed by {ctx.who}"
        result = banks_in(s).add_entries(
            ctx.bank,
            [replace(e, origin_kind="person", origin_ref=ref, note=note) for e in items],
        )
        changed = result.added + result.reactivated
        if result.reactivated:
            # A withdrawn entry comes back for this removal: it now answers to this one, so
            # restoring this removal withdraws it again.
            s.execute(update(Entry).where(Entry.id.in_(result.reactivated)).values(origin_ref=ref))
        return len(changed)

    @staticmethod
    def _settle_other_requests(s: Session, ctx: _Decision) -> None:
        """Mark other open requests' items about content this decision removed as removed,
        and close every such request none of whose items is left: it would otherwise wait in
        the queue for content that is gone. Its requester is told, as if decided."""
        removed = sorted({r.content_id for r in ctx.removed})
        if not removed:
            return
        own = ctx.request.id if ctx.request is not None else None
        open_requests = select(TakedownRequest.id).where(
            TakedownRequest.state == "valid",
            *([TakedownRequest.id != own] if own is not None else []),
        )
        touched: set[int] = set()
        for i in range(0, len(removed), 500):
            chunk = removed[i : i + 500]
            touched.update(
                s.scalars(
                    select(TakedownItem.request_id).where(
                        TakedownItem.content_id.in_(chunk),
                        TakedownItem.state == "pending",
                        TakedownItem.request_id.in_(open_requests),
                    )
                )
            )
            s.execute(
                update(TakedownItem)
                .where(
                    TakedownItem.content_id.in_(chunk),
                    TakedownItem.state == "pending",
                    TakedownItem.request_id.in_(open_requests),
                )
                .values(state="removed")
                .execution_options(synchronize_session=False)
            )
        from dignity.takedown.notices import notify_requester

        for request_id in sorted(touched):
            left = s.scalar(
                select(TakedownItem.id)
                .where(TakedownItem.request_id == request_id, TakedownItem.state == "pending")
                .limit(1)
            )
            if left is not None:
                continue
            closed = s.execute(
                update(TakedownRequest)
                .where(TakedownRequest.id == request_id, TakedownRequest.state == "valid")
                .values(
                    state="removed",
                    closed_at=ctx.now,
                    decided_by=ctx.who,
                    outcome_reason="The reported content was removed.",
                    updated_at=ctx.now,
                )
            )
            if not cast(CursorResult[Any], closed).rowcount:
                continue
            RemovalService._close_review_items(
                s, ctx, ReviewItem.request_id == request_id, None, "remove"
            )
            req = s.get(TakedownRequest, request_id)
            assert req is not None
            notify_requester(s, req, "removed", "The content you reported was removed.")
            audit.record(
                s,
                "takedown.removed",
                f"takedown:{req.ticket}",
                {
                    "request_id": request_id,
                    "removals": [r.id for r in ctx.removed][:200],
                    "review_item_id": ctx.review_item_id,
                },
            )

    @staticmethod
    def _close_review_items(
        s: Session, ctx: _Decision, which: Any, review_item_id: int | None, outcome: str
    ) -> None:
        """Decide the item the reviewer acted on and every other open item about the same
        request or scan: one decision settles them all."""
        cond = which
        if review_item_id is not None:
            cond = or_(which, ReviewItem.id == review_item_id)
        s.execute(
            update(ReviewItem)
            .where(cond, ReviewItem.state.in_(("open", "deciding")))
            .values(state="decided", outcome=outcome, decided_by=ctx.who, decided_at=ctx.now)
        )

    # -- restoring -------------------------------------------------------------------------
    def restore(self, removal_id: int, *, actor: str | None = None) -> dict[str, Any]:
        """Undo one removal (an appeal reversed): ``content.restore`` event, ``restored_at``,
        and the bank entries only it still needed are withdrawn. A second call changes
        nothing (``already_done``)."""
        who = (actor or audit.current_actor())[:200]

        def apply(s: Session) -> dict[str, Any]:
            return self.restore_in(s, removal_id, who=who, now=self.clock.now())

        return self.db.retrying(apply)

    def restore_in(
        self, s: Session, removal_id: int, *, who: str, now: datetime, why: str = ""
    ) -> dict[str, Any]:
        """:meth:`restore` inside the caller's transaction (an appeal's decision)."""
        row = s.get(Removal, removal_id)
        if row is None:
            raise RemovalNotFound(
                f"no removal {removal_id}", code="removal.not_found", removal_id=removal_id
            )
        claimed = s.execute(
            update(Removal)
            .where(Removal.id == removal_id, Removal.restored_at.is_(None))
            .values(restored_at=now)
        )
        if not cast(CursorResult[Any], claimed).rowcount:
            return {
                "removal_id": removal_id,
                "content_id": row.content_id,
                "restored_at": row.restored_at.isoformat() if row.restored_at else None,
                "withdrawn": 0,
                "already_done": True,
            }
        s.refresh(row)
        withdrawn = self._withdraw_hashes(s, row)
        if self._active_removal(s, row.content_id) is None:
            # Back on the platform: a later sweep may find it again (the bank no longer does).
            s.execute(
                update(ScanRecord)
                .where(ScanRecord.content_id == row.content_id)
                .values(removed_at=None)
            )
        if row.request_id is not None:
            s.execute(
                update(TakedownItem)
                .where(
                    TakedownItem.request_id == row.request_id,
                    TakedownItem.content_id == row.content_id,
                )
                .values(state="kept")
            )
        emit_event(
            s,
            "content.restore",
            {
                "removal_id": row.id,
                "content_id": row.content_id,
                "reason": why or "restored",
                "copy_of": row.source_removal_id,
            },
        )
        audit.record(
            s,
            "content.restored",
            f"removal:{row.id}",
            {
                "removal_id": row.id,
                "content_id": row.content_id,
                "withdrawn_entries": withdrawn,
                "by": who,
                "why": why[:200],
            },
        )
        return {
            "removal_id": row.id,
            "content_id": row.content_id,
            "restored_at": utc(now).isoformat(),
            "withdrawn": withdrawn,
            "already_done": False,
        }

    def _withdraw_hashes(self, s: Session, row: Removal) -> int:
        """Withdraw the takedown-bank entries this removal's hashes put there, unless another
        removal still in force has the same hash; entries of other origins stay."""
        scan = s.get(ScanRecord, row.scan_id) if row.scan_id is not None else None
        if scan is None:
            return 0
        values = {v for v in (scan.pdq, scan.md5, scan.sha256) if v}
        held = s.execute(
            select(ScanRecord.pdq, ScanRecord.md5, ScanRecord.sha256)
            .join(Removal, Removal.scan_id == ScanRecord.id)
            .where(
                Removal.restored_at.is_(None),
                Removal.id != row.id,
                or_(
                    ScanRecord.pdq.in_(values),
                    ScanRecord.md5.in_(values),
                    ScanRecord.sha256.in_(values),
                ),
            )
        ).all()
        still = {v for r in held for v in r if v}
        wanted = sorted(values - still)
        if not wanted:
            return 0
        bank = s.scalars(select(Bank).where(Bank.name == self.settings.takedown_bank)).first()
        if bank is None:
            return 0
        ids = list(
            s.scalars(
                select(Entry.id).where(
                    and_(
                        Entry.bank_id == bank.id,
                        Entry.status == "active",
                        Entry.value.in_(wanted),
                        Entry.origin_ref.like(f"{ORIGIN_PREFIX}%"),
                    )
                )
            )
        )
        if not ids:
            return 0
        return banks_in(s).withdraw(bank.name, ids)

    # -- reading ---------------------------------------------------------------------------
    def _summary_of_request(self, s: Session, req: TakedownRequest) -> RemovalSummary:
        rows = list(
            s.scalars(select(Removal).where(Removal.request_id == req.id).order_by(Removal.id))
        )
        return RemovalSummary(
            tuple(self._item(s, r) for r in rows), 0, req.id, req.ticket, already=True
        )

    def _summary_of_content(self, s: Session, content_id: str) -> RemovalSummary:
        first = self._active_removal(s, content_id)
        if first is None:
            return RemovalSummary(already=True)
        copies = s.scalars(
            select(Removal).where(Removal.source_removal_id == first.id).order_by(Removal.id)
        )
        rows = [first, *copies]
        return RemovalSummary(tuple(self._item(s, r) for r in rows), 0, already=True)

    @staticmethod
    def _item(s: Session, r: Removal) -> RemovedItem:
        public = s.scalar(
            select(Statement.public_id)
            .where(Statement.removal_id == r.id)
            .order_by(Statement.id)
            .limit(1)
        )
        return RemovedItem(
            r.id, r.content_id, r.reason, r.distance, r.source_removal_id, r.scan_id, public
        )

    def list_removals(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        restored_since: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Removals with id > ``after`` in id order (what a platform without a webhook polls),
        or with ``restored_since`` those restored at or after that time, in restore order."""
        limit = max(1, min(limit, _LIST_MAX))
        with self.db.session() as s:
            q = select(Removal)
            if restored_since is not None:
                q = q.where(Removal.restored_at >= restored_since).order_by(
                    Removal.restored_at, Removal.id
                )
            else:
                q = q.where(Removal.id > after).order_by(Removal.id)
            rows = list(s.scalars(q.limit(limit)))
            statements = {
                rid: pid
                for rid, pid in s.execute(
                    select(Statement.removal_id, Statement.public_id).where(
                        Statement.removal_id.in_([r.id for r in rows])
                    )
                )
            }
            tickets = {
                rid: t
                for rid, t in s.execute(
                    select(TakedownRequest.id, TakedownRequest.ticket).where(
                        TakedownRequest.id.in_({r.request_id for r in rows if r.request_id})
                    )
                )
            }
            return [
                removal_dict(
                    r,
                    statements.get(r.id),
                    tickets.get(r.request_id) if r.request_id is not None else None,
                )
                for r in rows
            ]


def fetch_content(settings: Settings, content_id: str) -> bytes:
    """The content's bytes from the platform through ``preview_url_template`` (see
    :mod:`dignity.takedown.content` for the rules). Raises ``removal.fetch_failed``."""
    try:
        return fetch_platform_content(settings, content_id)
    except UrlError as exc:
        raise RemovalFailed(
            f"could not fetch {content_id!r}: {exc.message}",
            code="removal.fetch_failed",
            reason=exc.code,
        ) from exc


__all__ = [
    "ORIGIN_PREFIX",
    "RemovalError",
    "RemovalService",
    "RemovalSummary",
    "RemovedItem",
    "banks_in",
    "fetch_content",
    "removal_dict",
]
