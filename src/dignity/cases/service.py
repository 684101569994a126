"""Victim cases: open a case from hashes, check its status, withdraw it, and feed partners.

A person submits hashes computed on their own device; :meth:`CaseService.create` puts them in
the configured bank (origin kind ``case``, the case number as origin ref) and returns the case
number and a PIN, both shown once. With number and PIN, :meth:`status` says how many hashes the
case holds and how many times they matched (counts only), and :meth:`withdraw` withdraws every
hash: the case and its feed items first, in one transaction, then the bank entries through
:class:`~dignity.matching.banks.BankService`, whose change log takes the withdrawal to every
process's index within one refresh. A bank entry is withdrawn only when no other open case
holds the same hash and it was not already live from another origin (an exchange, a curator)
before the case named it: one person's withdrawal never unblocks another's picture. A crash
between the two steps leaves the case marked withdrawn but not released; every later
status, withdrawal or listing finishes it first (:meth:`release_pending`).

PIN guessing is bounded per case in the database (``case_pin_attempts`` wrong PINs, then locked
for ``case_lockout_s``; an attempt is counted *before* the slow check, so parallel guesses
cannot slip past the limit) and per client address in each process (:class:`FailureLimiter`).
Wrong number and wrong PIN get the same answer in the same time.

The partner feed must never tell a partner which hashes came from one person. A case's changes
(its hashes added, later withdrawn) wait in ``case_feed_pending``; :meth:`CaseService.publish`
closes a batch of one kind of change (additions, or withdrawals) once it is old enough or big
enough *and* mixes enough cases (:class:`FeedBatching`), and writes it to the feed log in a
random order, every item under the batch's one time. Sequence numbers are handed out as the
batch is published, so a partner's cursor works as before: nothing published after it is ever
skipped. A withdrawal waits until its hash's addition is published, so the later change always
has the higher sequence number.
"""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from itertools import pairwise
from typing import Any

from sqlalchemy import delete, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from dignity import audit
from dignity.cases.limits import minutes_text
from dignity.cases.models import Case, CaseFeedLog, CaseFeedPending, CaseHash
from dignity.cases.pins import (
    group,
    hash_pin,
    new_number,
    new_pin,
    normalize_number,
    normalize_pin,
    verify_pin,
)
from dignity.errors import (
    BankNotFound,
    DignityError,
    Forbidden,
    NotFound,
    RateLimited,
    Refused,
    RequestRefused,
)
from dignity.hashing.signals import normalize_hash
from dignity.matching.banks import BankService, NewEntry
from dignity.settings import Settings
from dignity.storage.changelog import GapRule
from dignity.storage.db import Database
from dignity.storage.models import Bank, Entry, utcnow
from dignity.storage.types import isoformat

CASE_SIGNALS = ("pdq", "md5", "video_md5", "vpdq")
# A vpdq hash holds at most three hours of frames at one a second (the portal's own limit).
MAX_VIDEO_FRAMES = 10800
FEED_MAX_LIMIT = 1000
FEED_DEFAULT_LIMIT = 500
# A feed page stops before a sequence gap younger than this: on PostgreSQL a lower number may
# still be committing. Case writes are single short transactions, far below this; a partner's
# feed stalls at a rolled-back write for this long, so it is much shorter than the patience of
# a process's own index, which skips over a gap and comes back for it.
FEED_SETTLE_S = 2.0
FEED_GAPS = GapRule(patience_s=FEED_SETTLE_S)
_CHUNK = 500
_ZERO_PDQ = "0" * 64
_RANDOM = secrets.SystemRandom()


@dataclass(frozen=True)
class FeedBatching:
    """When a batch of feed changes closes: ``batch_s`` after its oldest change, or at
    ``items`` changes, but only once it holds changes of ``min_cases`` cases; a change that has
    waited ``max_hold_s`` goes out anyway (a lone case must still be blocked in time)."""

    batch_s: float = 600.0
    items: int = 500
    min_cases: int = 3
    max_hold_s: float = 86400.0

    def due(self, changes: int, cases: int, age_s: float) -> bool:
        if changes == 0:
            return False
        if age_s >= self.max_hold_s:
            return True
        return cases >= self.min_cases and (age_s >= self.batch_s or changes >= self.items)


IMMEDIATE = FeedBatching(batch_s=0.0, items=1, min_cases=1, max_hold_s=0.0)


class _NotDue(Exception):
    """A claimed batch turned out too small (another process took part of it): roll back."""


class CaseError(DignityError):
    """A case request was refused: bad hashes, wrong number or PIN, locked, unknown case."""


class CaseRefused(CaseError, Refused):
    """Hashes or fields a case cannot be made of."""

    codes = (
        "case.bad_hash",
        "case.no_hashes",
        "case.too_many_hashes",
        "case.low_quality",
        "case.not_adult",
        "case.internal",
    )


class CaseForbidden(CaseError, Forbidden):
    """A case number and PIN that do not match."""

    codes = ("case.bad_credentials",)


class CaseLocked(CaseError, RateLimited):
    """A case locked after too many wrong PINs."""

    codes = ("case.locked",)


class CaseNotFound(CaseError, NotFound):
    """No case with that number."""

    codes = ("case.not_found",)


@dataclass(frozen=True)
class HashIn:
    """One submitted hash: ``pdq`` (with the quality the device computed), ``md5``,
    ``video_md5``, or ``vpdq`` given by its ``frames`` (the contract's JSON ``[{frame,
    timestamp, pdq, quality}]``), whose value is the digest of their canonical text: the case
    service computes it, so ``value`` may be left empty."""

    signal: str
    value: str = ""
    quality: int | None = None
    frames: tuple[Mapping[str, Any], ...] | None = None


@dataclass(frozen=True)
class CaseCreated:
    number: str  # grouped, as shown
    pin: str  # grouped, as shown; exists nowhere else after this
    hashes: int

    def to_dict(self) -> dict[str, object]:
        return {"case_number": self.number, "pin": self.pin, "hashes": self.hashes}


@dataclass(frozen=True)
class CaseStatus:
    number: str
    status: str
    hashes: int
    matches: int
    created_at: datetime | None
    withdrawn_at: datetime | None

    def to_dict(self) -> dict[str, object]:
        return {
            "case_number": self.number,
            "status": self.status,
            "hashes": self.hashes,
            "matched": self.matches > 0,
            "matches": self.matches,
            "created_at": isoformat(self.created_at),
            "withdrawn_at": isoformat(self.withdrawn_at),
        }


@dataclass(frozen=True)
class FeedItem:
    seq: int
    id: str
    signal: str
    value: str
    status: str
    updated_at: datetime
    # An active vpdq item's frames ([{frame, timestamp, pdq, quality}]): its value is only
    # their digest, and a partner matches by the frames.
    frames: tuple[dict[str, object], ...] = ()

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "seq": self.seq,
            "id": self.id,
            "signal": self.signal,
            "value": self.value,
            "status": self.status,
            "updated_at": isoformat(self.updated_at),
        }
        if self.frames:
            out["frames"] = list(self.frames)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


@dataclass(frozen=True)
class FeedPage:
    items: list[FeedItem]
    next_cursor: int
    has_more: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "items": [i.to_dict() for i in self.items],
            "next_cursor": self.next_cursor,
            "has_more": self.has_more,
        }


def _bad_credentials() -> CaseError:
    return CaseForbidden("The case number or PIN is not right.", code="case.bad_credentials")


class FailureLimiter:
    """Failed tries per client address in a sliding window (this process only).

    The per-case lockout in the database is the real bound on guessing one case's PIN; this
    one slows a single address that tries many case numbers."""

    def __init__(self, limit: int, window_s: float = 3600.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = {}

    def _trim(self, client: str, now: float) -> deque[float]:
        q = self._seen.setdefault(client, deque())
        while q and now - q[0] >= self.window_s:
            q.popleft()
        return q

    def check(self, client: str) -> None:
        """Raise ``rate.limited`` when ``client`` used up its tries."""
        now = time.monotonic()
        with self._lock:
            self._refuse_if_full(self._trim(client, now), now)

    def _refuse_if_full(self, q: deque[float], now: float) -> None:
        if len(q) >= self.limit:
            wait = max(1, math.ceil(self.window_s - (now - q[0])))
            raise RateLimited(
                f"Too many tries from this address. Try again in {minutes_text(wait)}.",
                code="rate.limited",
                retry_after=wait,
            )

    def add(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._seen) > 100_000:  # an address flood: forget rather than grow
                self._seen.clear()
            self._trim(client, now).append(now)


class CaseService:
    """Cases in the database; thread-safe (each call uses its own sessions)."""

    def __init__(
        self,
        db: Database,
        banks: BankService | None = None,
        *,
        bank_name: str = "cases",
        max_hashes: int = 200,
        pin_attempts: int = 5,
        lockout_s: float = 900.0,
        min_quality: int = 50,
        batching: FeedBatching | None = None,
    ) -> None:
        self.db = db
        self.batching = batching or FeedBatching()
        self.banks = banks or BankService(db)
        self.bank_name = bank_name
        self.max_hashes = max_hashes
        self.pin_attempts = pin_attempts
        self.lockout_s = lockout_s
        self.min_quality = min_quality

    @classmethod
    def from_settings(
        cls, db: Database, settings: Settings, banks: BankService | None = None
    ) -> CaseService:
        return cls(
            db,
            banks,
            bank_name=settings.portal_bank,
            max_hashes=settings.case_max_hashes,
            pin_attempts=settings.case_pin_attempts,
            lockout_s=settings.case_lockout_s,
            min_quality=settings.pdq_min_quality,
            batching=FeedBatching(
                batch_s=settings.feed_batch_s,
                items=settings.feed_batch_items,
                min_cases=settings.feed_batch_min_cases,
                max_hold_s=settings.feed_batch_max_hold_s,
            ),
        )

    # -- creating ------------------------------------------------------------------------
    def validate(self, hashes: Sequence[HashIn]) -> list[HashIn]:
        """Checked, normalised, de-duplicated hashes, or ``CaseError`` naming the bad one."""
        if not hashes:
            raise CaseRefused("A case needs at least one hash.", code="case.no_hashes")
        if len(hashes) > self.max_hashes:
            raise CaseRefused(
                f"A case holds at most {self.max_hashes} hashes; got {len(hashes)}.",
                code="case.too_many_hashes",
                limit=self.max_hashes,
            )
        clean: dict[tuple[str, str], HashIn] = {}
        for n, h in enumerate(hashes):
            where = f"Hash {n + 1}: "
            if h.signal not in CASE_SIGNALS:
                raise CaseRefused(
                    f"{where}a case takes {', '.join(CASE_SIGNALS)} hashes; got {h.signal!r}",
                    code="case.bad_hash",
                    index=n,
                )
            if h.signal == "vpdq":
                video = self._video(h, where, n)
                clean.setdefault((video.signal, video.value), video)
                continue
            if h.frames is not None:
                raise CaseRefused(
                    f"{where}only a vpdq hash has frames", code="case.bad_hash", index=n
                )
            try:
                signal, value = normalize_hash(h.signal, h.value)
            except DignityError as exc:
                raise CaseRefused(where + exc.message, code="case.bad_hash", index=n) from exc
            if signal == "pdq":
                if value == _ZERO_PDQ:
                    raise CaseRefused(
                        f"{where}an all-zero PDQ hash matches nothing useful",
                        code="case.bad_hash",
                        index=n,
                    )
                if h.quality is not None and not 0 <= h.quality <= 100:
                    raise CaseRefused(f"{where}quality is 0-100", code="case.bad_hash", index=n)
                if h.quality is not None and h.quality < self.min_quality:
                    raise CaseRefused(
                        f"{where}PDQ quality {h.quality} is below {self.min_quality}: such a "
                        "hash would match unrelated pictures",
                        code="case.low_quality",
                        index=n,
                    )
            clean.setdefault((signal, value), HashIn(signal, value, h.quality))
        return list(clean.values())

    def _video(self, h: HashIn, where: str, n: int) -> HashIn:
        """A checked vpdq hash: its frames in canonical JSON and their digest as its value."""
        # Imported here: dignity.video loads PyAV, which only video cases need.
        from dignity.video.formats import frames_from_json, frames_to_json, vpdq_digest

        if not h.frames:
            raise CaseRefused(f"{where}a vpdq hash needs its frames", code="case.bad_hash", index=n)
        if len(h.frames) > MAX_VIDEO_FRAMES:
            raise CaseRefused(
                f"{where}a vpdq hash holds at most {MAX_VIDEO_FRAMES} frames; got {len(h.frames)}",
                code="case.bad_hash",
                index=n,
            )
        try:
            frames = frames_from_json([dict(f) for f in h.frames])
        except DignityError as exc:
            raise CaseRefused(where + exc.message, code="case.bad_hash", index=n) from exc
        numbers = [f.frame_number for f in frames]
        if any(b <= a for a, b in pairwise(numbers)):
            raise CaseRefused(
                f"{where}vpdq frames must be in frame order, each once",
                code="case.bad_hash",
                index=n,
            )
        if not any(f.quality >= self.min_quality for f in frames):
            raise CaseRefused(
                f"{where}no frame of this video has PDQ quality {self.min_quality} or more: its "
                "codes would match unrelated videos",
                code="case.low_quality",
                index=n,
            )
        digest = vpdq_digest(frames)
        if h.value and h.value.lower() != digest:
            raise CaseRefused(
                f"{where}the vpdq value is not the digest of its frames",
                code="case.bad_hash",
                index=n,
            )
        return HashIn("vpdq", digest, None, tuple(frames_to_json(frames)))

    def _bank(self) -> tuple[int, str]:
        try:
            info = self.banks.get_bank(self.bank_name)
        except BankNotFound:
            try:
                info = self.banks.create_bank(
                    self.bank_name,
                    purpose="block",
                    description="Hashes people submitted through the victim portal (cases).",
                )
            except DignityError as exc:
                if exc.code != "bank.exists":
                    raise
                info = self.banks.get_bank(self.bank_name)  # another process made it first
        return info.id, info.name

    def create(self, hashes: Sequence[HashIn]) -> CaseCreated:
        """Open a case: the hashes go into the bank; returns the number and PIN (shown once)."""
        items = self.validate(hashes)
        bank_id, bank_name = self._bank()
        pin = new_pin()
        pin_hash = hash_pin(pin)
        # 1. The case and its hashes, not yet linked to entries.
        for _ in range(5):
            number = new_number()
            try:
                with self.db.session() as s:
                    case = Case(number=number, pin_hash=pin_hash, status="open", bank_id=bank_id)
                    s.add(case)
                    s.flush()
                    case_id = case.id
                    s.add_all(
                        CaseHash(
                            case_id=case_id,
                            public_id="cs_" + secrets.token_hex(10),
                            signal=h.signal,
                            value=h.value,
                            quality=h.quality,
                            status="active",
                            owns_entry=True,
                            matches=0,
                        )
                        for h in items
                    )
                    # The case id and a count only: never the case number or the PIN.
                    audit.record(s, "case.created", f"case:{case_id}", {"hashes": len(items)})
                break
            except IntegrityError:  # a number (or id) drawn twice in 2^60: draw again
                continue
        else:  # pragma: no cover - five collisions in a 60-bit space
            raise CaseRefused("Could not draw a free case number; try again.", code="case.internal")
        # 2. The bank entries; 3. link them and publish to the feed. A video's frames go to
        # its bank entry (the case keeps the digest: partners and status need no more).
        frames = {h.value: h.frames for h in items if h.signal == "vpdq" and h.frames}
        try:
            self._link(case_id, bank_name, number, frames)
        except BaseException:
            with self.db.session() as s:
                s.execute(delete(Case).where(Case.id == case_id))
                audit.record(s, "case.abandoned", f"case:{case_id}", {"hashes": len(items)})
            raise
        return CaseCreated(group(number), group(pin), len(items))

    def _link(
        self,
        case_id: int,
        bank_name: str,
        number: str,
        frames: Mapping[str, tuple[Mapping[str, Any], ...]],
    ) -> None:
        with self.db.session() as s:
            rows = s.execute(
                select(CaseHash.id, CaseHash.signal, CaseHash.value)
                .where(CaseHash.case_id == case_id)
                .order_by(CaseHash.id)
            ).all()
        result = self.banks.add_entries(
            bank_name, [self._entry(sig, val, group(number), frames) for _, sig, val in rows]
        )
        pre_existing = [eid for eid, kind in result.outcomes.values() if kind == "already_active"]
        with self.db.session() as s:
            origin = (
                dict(
                    s.execute(
                        select(Entry.id, Entry.origin_kind).where(Entry.id.in_(pre_existing))
                    ).all()
                )
                if pre_existing
                else {}
            )
            now = utcnow()
            for hid, sig, val in rows:
                eid, kind = result.outcomes[(sig, val)]
                owns = kind != "already_active" or origin.get(eid) == "case"
                s.execute(
                    update(CaseHash)
                    .where(CaseHash.id == hid)
                    .values(entry_id=eid, owns_entry=owns, updated_at=now)
                )
            s.add_all(
                CaseFeedPending(case_hash_id=hid, case_id=case_id, status="active", at=now)
                for hid, _, _ in rows
            )

    @staticmethod
    def _entry(
        signal: str, value: str, ref: str, frames: Mapping[str, tuple[Mapping[str, Any], ...]]
    ) -> NewEntry:
        if signal != "vpdq":
            return NewEntry(signal, value, origin_kind="case", origin_ref=ref)
        from dignity.video.formats import frames_from_json

        return NewEntry(
            signal,
            value,
            origin_kind="case",
            origin_ref=ref,
            frames=frames_from_json([dict(f) for f in frames[value]]),
        )

    # -- checking number and PIN ---------------------------------------------------------
    def authenticate(self, number: str, pin: str) -> int:
        """The case id for a right number and PIN; ``case.bad_credentials`` or ``case.locked``."""
        norm = normalize_number(number)
        norm_pin = normalize_pin(pin)
        with self.db.session() as s:
            row = (
                s.execute(select(Case.id, Case.pin_hash).where(Case.number == norm)).one_or_none()
                if norm
                else None
            )
        if row is None:
            verify_pin(norm_pin, None)  # the same time as a real check
            raise _bad_credentials()
        case_id, stored = row
        now = utcnow()
        # Count the attempt first: parallel guesses each take a slot, none slips past the limit.
        with self.db.session() as s:
            s.execute(
                update(Case)
                .where(
                    Case.id == case_id,
                    or_(Case.locked_until.is_(None), Case.locked_until <= now),
                )
                .values(failed_attempts=Case.failed_attempts + 1)
            )
            attempts, locked_until = s.execute(
                select(Case.failed_attempts, Case.locked_until).where(Case.id == case_id)
            ).one()
        if locked_until is not None and locked_until > now:
            raise self._locked(locked_until, now)
        if attempts > self.pin_attempts:
            raise self._lock(case_id, now)
        ok = verify_pin(norm_pin, stored)
        if ok:
            with self.db.session() as s:
                s.execute(update(Case).where(Case.id == case_id).values(failed_attempts=0))
            return int(case_id)
        if attempts >= self.pin_attempts:
            raise self._lock(case_id, now)
        raise _bad_credentials()

    def _lock(self, case_id: int, now: datetime) -> CaseError:
        until = now + timedelta(seconds=self.lockout_s)
        with self.db.session() as s:
            s.execute(
                update(Case)
                .where(
                    Case.id == case_id,
                    or_(Case.locked_until.is_(None), Case.locked_until <= now),
                )
                .values(locked_until=until, failed_attempts=0)
            )
            stored = s.execute(select(Case.locked_until).where(Case.id == case_id)).scalar_one()
        return self._locked(stored if stored else until, now)

    @staticmethod
    def _locked(until: datetime, now: datetime) -> CaseError:
        wait = max(1, math.ceil((until - now).total_seconds()))
        return CaseLocked(
            f"Too many wrong PINs for this case. It is locked; try again in {minutes_text(wait)}.",
            code="case.locked",
            retry_after=wait,
        )

    # -- status and withdrawal -----------------------------------------------------------
    def status(self, number: str, pin: str) -> CaseStatus:
        return self._status(self.authenticate(number, pin))

    def _status(self, case_id: int) -> CaseStatus:
        with self.db.session() as s:
            case = s.get(Case, case_id)
            if case is None:
                raise _bad_credentials()
            n, matches = s.execute(
                select(func.count(), func.coalesce(func.sum(CaseHash.matches), 0)).where(
                    CaseHash.case_id == case_id
                )
            ).one()
            return CaseStatus(
                group(case.number),
                case.status,
                int(n),
                int(matches),
                case.created_at,
                case.withdrawn_at,
            )

    def withdraw(self, number: str, pin: str) -> CaseStatus:
        """Withdraw every hash of the case (number + PIN); stops matching everywhere."""
        return self._withdraw(self.authenticate(number, pin))

    def withdraw_by_number(self, number: str) -> CaseStatus:
        """Helpline staff: withdraw a case by its number alone (the CLI)."""
        return self._withdraw(self._case_id(number))

    def _case_id(self, number: str) -> int:
        norm = normalize_number(number)
        with self.db.session() as s:
            case_id = (
                s.execute(select(Case.id).where(Case.number == norm)).scalar_one_or_none()
                if norm
                else None
            )
        if case_id is None:
            raise CaseNotFound(f"No case is numbered {number!r}.", code="case.not_found")
        return int(case_id)

    def _withdraw(self, case_id: int) -> CaseStatus:
        now = utcnow()
        with self.db.session() as s:
            case = s.get(Case, case_id)
            if case is None:
                raise CaseNotFound("The case is gone.", code="case.not_found")
            if case.status != "withdrawn":
                case.status = "withdrawn"
                case.withdrawn_at = now
                live = list(
                    s.scalars(
                        select(CaseHash.id).where(
                            CaseHash.case_id == case_id, CaseHash.status == "active"
                        )
                    )
                )
                for i in range(0, len(live), _CHUNK):
                    s.execute(
                        update(CaseHash)
                        .where(CaseHash.id.in_(live[i : i + _CHUNK]))
                        .values(status="withdrawn", updated_at=now)
                    )
                s.add_all(
                    CaseFeedPending(case_hash_id=h, case_id=case_id, status="withdrawn", at=now)
                    for h in live
                )
                audit.record(s, "case.withdrawn", f"case:{case_id}", {"hashes": len(live)})
        self._release(case_id)
        return self._status(case_id)

    def _release(self, case_id: int) -> int:
        """Withdraw the bank entries of a withdrawn case that no open case still holds."""
        with self.db.session() as s:
            case = s.get(Case, case_id)
            if case is None or case.status != "withdrawn" or case.released_at is not None:
                return 0
            mine = set(
                s.scalars(
                    select(CaseHash.entry_id).where(
                        CaseHash.case_id == case_id,
                        CaseHash.owns_entry.is_(True),
                        CaseHash.entry_id.is_not(None),
                    )
                )
            )
            held: set[int] = set()
            ids = sorted(i for i in mine if i is not None)
            for i in range(0, len(ids), _CHUNK):
                held.update(
                    s.scalars(
                        select(CaseHash.entry_id)
                        .join(Case, Case.id == CaseHash.case_id)
                        .where(
                            CaseHash.entry_id.in_(ids[i : i + _CHUNK]),
                            CaseHash.case_id != case_id,
                            Case.status == "open",
                        )
                    )
                )
            release = [i for i in ids if i not in held]
            bank_name = s.execute(
                select(Bank.name).where(Bank.id == case.bank_id)
            ).scalar_one_or_none()
            existing: list[int] = []
            if bank_name is not None:
                for i in range(0, len(release), _CHUNK):
                    existing += s.scalars(
                        select(Entry.id).where(
                            Entry.id.in_(release[i : i + _CHUNK]),
                            Entry.bank_id == case.bank_id,
                        )
                    )
        changed = 0
        if bank_name is not None and existing:
            try:
                changed = self.banks.withdraw(bank_name, existing)
            except BankNotFound:
                # The bank or an entry was deleted meanwhile: deleted entries match nothing;
                # withdraw what is left, one by one.
                for eid in existing:
                    try:
                        changed += self.banks.withdraw(bank_name, [eid])
                    except BankNotFound:
                        continue
        with self.db.session() as s:
            s.execute(
                update(Case)
                .where(Case.id == case_id, Case.released_at.is_(None))
                .values(released_at=utcnow())
            )
        return changed

    def release_pending(self) -> int:
        """Finish withdrawals that a crash interrupted; returns how many cases it finished."""
        with self.db.session() as s:
            pending = list(
                s.scalars(
                    select(Case.id).where(Case.status == "withdrawn", Case.released_at.is_(None))
                )
            )
        for case_id in pending:
            self._release(case_id)
        return len(pending)

    # -- matches -------------------------------------------------------------------------
    def record_matches(self, entry_ids: Sequence[int], *, session: Session | None = None) -> int:
        """Count a match for each active case hash behind ``entry_ids``; returns rows touched.
        In ``session`` when given (a queued scan's: counted once, with the job's end)."""
        ids = sorted(set(entry_ids))
        if not ids:
            return 0
        if session is not None:
            return self._count_matches(session, ids)
        with self.db.session() as s:
            return self._count_matches(s, ids)

    def _count_matches(self, s: Session, ids: Sequence[int]) -> int:
        touched = 0
        for i in range(0, len(ids), _CHUNK):
            result = s.execute(
                update(CaseHash)
                .where(CaseHash.entry_id.in_(ids[i : i + _CHUNK]), CaseHash.status == "active")
                .values(matches=CaseHash.matches + 1)
            )
            touched += int(getattr(result, "rowcount", 0) or 0)
        return touched

    # -- staff views ---------------------------------------------------------------------
    def list_cases(
        self, *, status: str | None = None, limit: int = 100, after_id: int = 0
    ) -> list[dict[str, object]]:
        self.release_pending()
        with self.db.session() as s:
            counts = (
                select(
                    CaseHash.case_id.label("cid"),
                    func.count().label("n"),
                    func.coalesce(func.sum(CaseHash.matches), 0).label("m"),
                )
                .group_by(CaseHash.case_id)
                .subquery()
            )
            q = (
                select(Case, counts.c.n, counts.c.m)
                .outerjoin(counts, counts.c.cid == Case.id)
                .where(Case.id > after_id)
                .order_by(Case.id)
                .limit(limit)
            )
            if status:
                q = q.where(Case.status == status)
            return [
                {
                    "id": c.id,
                    "case_number": group(c.number),
                    "status": c.status,
                    "hashes": int(n or 0),
                    "matches": int(m or 0),
                    "locked": c.locked_until is not None and c.locked_until > utcnow(),
                    "created_at": isoformat(c.created_at),
                    "withdrawn_at": isoformat(c.withdrawn_at),
                }
                for c, n, m in s.execute(q).all()
            ]

    def show(self, number: str, *, with_hashes: bool = False) -> dict[str, object]:
        case_id = self._case_id(number)
        self.release_pending()
        out = self._status(case_id).to_dict()
        with self.db.session() as s:
            case = s.get(Case, case_id)
            assert case is not None
            out["locked_until"] = isoformat(case.locked_until)
            out["bank_id"] = case.bank_id
            if with_hashes:
                out["hash_list"] = [
                    {
                        "id": h.public_id,
                        "signal": h.signal,
                        "value": h.value,
                        "status": h.status,
                        "entry_id": h.entry_id,
                        "matches": h.matches,
                    }
                    for h in s.scalars(
                        select(CaseHash).where(CaseHash.case_id == case_id).order_by(CaseHash.id)
                    )
                ]
        return out

    def unlock(self, number: str) -> None:
        case_id = self._case_id(number)
        with self.db.session() as s:
            s.execute(
                update(Case).where(Case.id == case_id).values(locked_until=None, failed_attempts=0)
            )
            audit.record(s, "case.unlocked", f"case:{case_id}")

    # -- the partner feed ----------------------------------------------------------------
    def publish(self) -> int:
        """Close the batches that are due (additions first, then withdrawals) and write them to
        the feed log; returns how many changes were published. Safe to call from any number of
        processes at once: a batch is claimed by deleting its pending rows, so each change is
        published once."""
        published = 0
        for status in ("active", "withdrawn"):
            try:
                published += self.db.retrying(partial(self._close_batch, status=status))
            except _NotDue:
                continue
        return published

    def _close_batch(self, s: Session, status: str) -> int:
        pending = CaseFeedPending
        where = [pending.status == status]
        if status == "withdrawn":
            # Not before the hash's addition is out: the withdrawal must get the higher seq.
            addition = aliased(CaseFeedPending)
            where.append(
                ~exists().where(
                    addition.case_hash_id == pending.case_hash_id, addition.status == "active"
                )
            )
        changes, cases, oldest = s.execute(
            select(
                func.count(), func.count(func.distinct(pending.case_id)), func.min(pending.at)
            ).where(*where)
        ).one()
        now = utcnow()
        if not changes or not self.batching.due(changes, cases, (now - oldest).total_seconds()):
            return 0
        claimed = s.execute(
            delete(pending)
            .where(*where)
            .returning(pending.case_hash_id, pending.case_id, pending.at)
        ).all()
        # Another process may have claimed part of it between the count and the delete.
        if not claimed or not self.batching.due(
            len(claimed),
            len({row[1] for row in claimed}),
            (now - min(row[2] for row in claimed)).total_seconds(),
        ):
            raise _NotDue
        order = [int(row[0]) for row in claimed]
        _RANDOM.shuffle(order)  # the feed's order says nothing about which case an item is of
        s.execute(
            insert(CaseFeedLog),
            [{"case_hash_id": hid, "status": status, "at": now} for hid in order],
        )
        return len(order)

    def feed(self, cursor: int = 0, limit: int = FEED_DEFAULT_LIMIT) -> FeedPage:
        """Changes after ``cursor`` in sequence order, stopping before an unsettled gap (the
        batches that are due are published first)."""
        if cursor < 0:
            raise RequestRefused("cursor must be 0 or more", code="request.invalid")
        if not 1 <= limit <= FEED_MAX_LIMIT:
            raise RequestRefused(f"limit must be 1-{FEED_MAX_LIMIT}", code="request.invalid")
        cursor = min(cursor, 2**63 - 1)
        self.publish()
        with self.db.session() as s:
            rows = s.execute(
                select(
                    CaseFeedLog.seq,
                    CaseHash.public_id,
                    CaseHash.signal,
                    CaseHash.value,
                    CaseFeedLog.status,
                    CaseFeedLog.at,
                    CaseHash.entry_id,
                )
                .join(CaseHash, CaseHash.id == CaseFeedLog.case_hash_id)
                .where(CaseFeedLog.seq > cursor)
                .order_by(CaseFeedLog.seq)
                .limit(limit + 1)
            ).all()
            video_ids = [
                int(row[6])
                for row in rows
                if row[2] == "vpdq" and row[4] == "active" and row[6] is not None
            ]
            frames = _feed_frames(s, video_ids) if video_ids else {}
        now = utcnow()
        settled = FEED_GAPS.settled(
            [(int(row[0]), (now - row[5]).total_seconds()) for row in rows], cursor
        )
        held_back = settled < len(rows)
        items = [
            FeedItem(
                int(seq),
                pid,
                sig,
                val,
                status,
                at,
                frames.get(int(eid), ()) if eid is not None and status == "active" else (),
            )
            for seq, pid, sig, val, status, at, eid in rows[: min(settled, limit)]
        ]
        has_more = not held_back and len(rows) > len(items)
        next_cursor = items[-1].seq if items else cursor
        return FeedPage(items, next_cursor, has_more)

    def iter_feed(self, cursor: int = 0) -> Iterator[FeedItem]:
        """Every settled change after ``cursor``, page by page."""
        while True:
            page = self.feed(cursor, FEED_MAX_LIMIT)
            yield from page.items
            cursor = page.next_cursor
            if not page.has_more:
                return

    def active_hashes(self) -> Iterator[tuple[str, str]]:
        """(signal, value) of every active case hash, once each, for text exports."""
        with self.db.session() as s:
            q = (
                select(CaseHash.signal, CaseHash.value)
                .where(CaseHash.status == "active")
                .group_by(CaseHash.signal, CaseHash.value)
                .order_by(CaseHash.signal, CaseHash.value)
            )
            yield from ((str(sig), str(val)) for sig, val in s.execute(q))


def _feed_frames(s: Session, entry_ids: list[int]) -> dict[int, tuple[dict[str, object], ...]]:
    from dignity.matching.banks import read_frames
    from dignity.video.formats import frames_to_json

    return {eid: tuple(frames_to_json(f)) for eid, f in read_frames(s, entry_ids).items()}


__all__ = [
    "CaseCreated",
    "CaseError",
    "CaseService",
    "CaseStatus",
    "FailureLimiter",
    "FeedBatching",
    "FeedItem",
    "FeedPage",
    "HashIn",
]
