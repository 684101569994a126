"""Takedown requests: intake (the public form and trusted flaggers), the requester's status page,
completion and withdrawal, the 48-hour clock with its escalations, rejection, and the abuse
controls of DSA Art. 23.

A request arrives as a :class:`~dignity.takedown.validity.RequestForm`. Malformed input is
refused before anything is written; what is merely *missing* is listed by
:func:`~dignity.takedown.validity.check`, and the request is kept ``incomplete`` until the
requester supplies it (``complete``). The clock starts when the request becomes ``valid``:
``due_at = valid_at + takedown_deadline_h`` (48 h, TAKE IT DOWN Act sec. 3(a)(3)); a review item
(kind ``takedown``; priority 0 for trusted flaggers, DSA Art. 22, else 1) opens at the same
moment. :meth:`TakedownService.escalate` (run every ``takedown_check_s`` by the serving process,
or from cron with ``dignity takedown escalate``) marks a valid request at the first and second
of ``takedown_escalate_h`` (24 h and 36 h) after ``valid_at``, raises its review item to
priority 0 and emits ``takedown.escalated``; a conditional update makes that idempotent across
processes. A valid request whose ``due_at`` has passed is *overdue*.

The requester has no account: the receipt carries a ticket (``TD-XXXXX-XXXXX``, 50 random bits,
Crockford base32) and an access code (28 characters, 140 random bits) shown once and stored only
as its SHA-256 (no slow hash is needed for that much entropy). Checks compare in constant time,
and an unknown ticket is answered exactly like a wrong code. Requesters are counted, never read,
through ``requester_fp`` (SHA-256 of the normalised contact): a request rejected as manifestly
unfounded counts, and at ``unfounded_flag_after`` such rejections within 365 days the requester
is flagged (``requester_flags``); their later requests still go in, with the flag shown to the
reviewer. Staff may suspend a requester for some days; their requests are then refused
(``takedown.suspended``). Nothing here removes content: removal is a reviewer's decision
(:mod:`dignity.takedown.removal`). Every change goes in one transaction with its outbox event
and its audit record.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dignity import audit
from dignity.actions.outbox import emit_event
from dignity.keys import KeyInfo
from dignity.settings import Settings
from dignity.storage.db import Database
from dignity.storage.types import isoformat
from dignity.takedown.clock import Clock, SystemClock, utc
from dignity.takedown.models import (
    REQUEST_STATES,
    RequesterFlag,
    ReviewItem,
    ScanRecord,
    ScanVideo,
    TakedownItem,
    TakedownRequest,
)
from dignity.takedown.notices import notify_requester
from dignity.takedown.validity import (
    RequestForm,
    TakedownConflict,
    TakedownError,
    TakedownForbidden,
    TakedownNotFound,
    TakedownRefused,
    TakedownUnavailable,
    Validity,
    check,
    email_in,
    item_problems,
    normalize,
    phone_in,
    resolve,
)

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
TICKET_CHARS = 10
CODE_CHARS = 28
_FORGIVE = str.maketrans({"O": "0", "I": "1", "L": "1"})
_TICKET = re.compile(r"\A[0-9A-HJKMNP-TV-Z]{10}\Z")
_CODE = re.compile(r"\A[0-9A-HJKMNP-TV-Z]{28}\Z")
_FP = re.compile(r"\A[0-9a-f]{64}\Z")
# Compared against when the ticket is unknown, so both failures take the same path.
_DUMMY_HASH = hashlib.sha256(b"dignity-no-such-ticket").hexdigest()
ABUSE_WINDOW = timedelta(days=365)
MAX_REASON = 4000
MAX_NOTE = 2000
MAX_SUSPEND_DAYS = 3650
OPEN_STATES = ("incomplete", "valid")
HOW_TO_CONTEST = (
    "Reply to the notice you received or file a new request with more information; you may "
    "also complain to the FTC (US) or to your national Digital Services Coordinator (EU)."
)


def _random(n: int) -> str:
    return "".join(secrets.choice(CROCKFORD) for _ in range(n))


def _group(text: str, size: int) -> str:
    return "-".join(text[i : i + size] for i in range(0, len(text), size))


def new_ticket() -> str:
    """A fresh ticket as shown and stored: ``TD-K7QM3-XRT9W``."""
    return "TD-" + _group(_random(TICKET_CHARS), 5)


def new_access_code() -> str:
    """A fresh access code as shown: seven groups of four characters (140 bits)."""
    return _group(_random(CODE_CHARS), 4)


def _clean(text: object, limit: int = 80) -> str | None:
    if not isinstance(text, str) or len(text) > limit:
        return None
    return re.sub(r"[\s\-_.]", "", text).upper().translate(_FORGIVE)


def normalize_ticket(text: object) -> str | None:
    """A typed ticket in stored form (``TD-XXXXX-XXXXX``), or None when it cannot be one."""
    cleaned = _clean(text)
    if cleaned is None:
        return None
    if cleaned.startswith("TD") and len(cleaned) == TICKET_CHARS + 2:
        cleaned = cleaned[2:]
    return "TD-" + _group(cleaned, 5) if _TICKET.match(cleaned) else None


def normalize_code(text: object) -> str | None:
    """A typed access code without separators, or None when it cannot be one."""
    cleaned = _clean(text)
    return cleaned if cleaned is not None and _CODE.match(cleaned) else None


def code_hash(code: str) -> str:
    """What is stored for an access code: SHA-256 of its normalised form."""
    normalised = normalize_code(code) or code
    return hashlib.sha256(normalised.encode("ascii", "replace")).hexdigest()


def requester_fingerprint(contact: str) -> str:
    """SHA-256 of the normalised contact (an email, else a phone number's digits, else the
    text folded): how abuse is counted without reading anyone's contact details."""
    email = email_in(contact)
    if email:
        key = "email:" + email.lower()
    else:
        phone = phone_in(contact)
        key = (
            "phone:" + re.sub(r"\D", "", phone)
            if phone
            else "text:" + " ".join(contact.lower().split())
        )
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Receipt:
    """What the requester gets back once: the ticket and the access code (never shown again)."""

    request_id: int
    ticket: str
    access_code: str
    state: str
    validity: Validity
    received_at: datetime
    due_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ticket": self.ticket,
            "access_code": self.access_code,
            "state": self.state,
            "validity": self.validity.to_dict(),
            "missing": [m.to_dict() for m in self.validity.missing]
            if not self.validity.valid
            else [],
            # Lines that cannot be acted on (the clock runs for the rest), with what to fix.
            "item_problems": [p.to_dict() for p in self.validity.item_problems],
            "received_at": isoformat(self.received_at),
            "due_at": isoformat(self.due_at),
            "status_url": "/takedown/status",
        }


class TakedownService:
    """Takedown requests in the database; thread-safe (each call uses its own sessions)."""

    def __init__(self, db: Database, settings: Settings, clock: Clock | None = None) -> None:
        self.db = db
        self.settings = settings
        self.clock: Clock = clock or SystemClock()

    # -- helpers ----------------------------------------------------------------------------

    def _now(self) -> datetime:
        return utc(self.clock.now())

    def _deadline(self) -> timedelta:
        return timedelta(hours=self.settings.takedown_deadline_h)

    def _escalations(self) -> list[tuple[str, float]]:
        """(column, hours) for the first two escalation points: the table has two columns."""
        hours = sorted(h for h in self.settings.takedown_escalate_h if h >= 0)[:2]
        return list(zip(("escalated_24_at", "escalated_36_at"), hours, strict=False))

    def check(self, form: RequestForm) -> Validity:
        """What ``form`` lacks (nothing written; malformed input raises)."""
        return check(normalize(form), self.settings)

    def _suspension(self, s: Session, fp: str, now: datetime) -> None:
        flag = s.scalar(select(RequesterFlag).where(RequesterFlag.requester_fp == fp))
        if flag is not None and flag.suspended_until is not None:
            until = flag.suspended_until
            if until > now:
                raise TakedownForbidden(
                    "requests from this contact are suspended until "
                    f"{until:%Y-%m-%d %H:%M} UTC, because earlier requests were found manifestly "
                    "unfounded (EU DSA Art. 23). If this is a mistake, contact the platform.",
                    code="takedown.suspended",
                    until=until.isoformat(),
                )

    @staticmethod
    def _latest_scans(s: Session, content_ids: Sequence[str]) -> dict[str, int]:
        wanted = sorted(set(content_ids))
        out: dict[str, int] = {}
        for i in range(0, len(wanted), 500):
            rows = s.execute(
                select(ScanRecord.content_id, func.max(ScanRecord.id))
                .where(ScanRecord.content_id.in_(wanted[i : i + 500]))
                .group_by(ScanRecord.content_id)
            )
            for content_id, scan_id in rows:
                if content_id is not None and scan_id is not None:
                    out[str(content_id)] = int(scan_id)
        return out

    @classmethod
    def _kinds(cls, s: Session, content_ids: Sequence[str]) -> dict[str, str]:
        """``image`` or ``video`` for each content id the scan log knows, by its newest scan
        (a video's scan has its frames in ``scan_video``)."""
        latest = cls._latest_scans(s, content_ids)
        if not latest:
            return {}
        videos = set(
            s.scalars(select(ScanVideo.scan_id).where(ScanVideo.scan_id.in_(list(latest.values()))))
        )
        return {cid: "video" if sid in videos else "image" for cid, sid in latest.items()}

    def _add_items(self, s: Session, request_id: int, form: RequestForm) -> None:
        refs = [resolve(r, self.settings) for r in form.content]
        bad = {p.ref for p in item_problems(form.content, self.settings)}
        scans = self._latest_scans(s, [r.content_id for r in refs if r.content_id])
        for r in refs:
            s.add(
                TakedownItem(
                    request_id=request_id,
                    ref=r.ref,
                    content_id=r.content_id,
                    scan_id=scans.get(r.content_id) if r.content_id else None,
                    # Kept (the requester and the reviewer see it) but never acted on.
                    state="invalid" if r.ref in bad else "pending",
                )
            )

    def _start_clock(self, s: Session, req: TakedownRequest, now: datetime) -> None:
        req.state = "valid"
        req.valid_at = now
        req.due_at = now + self._deadline()
        s.add(
            ReviewItem(
                kind="takedown",
                request_id=req.id,
                priority=req.priority,
                due_at=req.due_at,
                state="open",
                created_at=now,
            )
        )

    @staticmethod
    def _apply(req: TakedownRequest, form: RequestForm, validity: Validity, now: datetime) -> None:
        req.requester_kind = form.requester_kind
        req.requester_name = form.requester_name
        req.requester_contact = form.requester_contact
        req.requester_fp = requester_fingerprint(form.requester_contact)
        req.authority_statement = form.authority_statement
        req.description = form.description
        req.good_faith = form.good_faith
        # The signature's timestamp: when the typed name was confirmed as a signature.
        if not (form.signature_name and form.signature_confirmed):
            req.signed_at = None
        elif req.signed_at is None or form.signature_name != req.signature_name:
            req.signed_at = now
        req.signature_name = form.signature_name
        req.ai_made = form.ai_made
        req.jurisdiction = form.jurisdiction
        req.validity = json.dumps(validity.to_dict(), sort_keys=True)
        req.updated_at = now

    @staticmethod
    def _form_of(req: TakedownRequest, refs: Sequence[str]) -> RequestForm:
        return RequestForm(
            requester_kind=req.requester_kind,
            requester_name=req.requester_name,
            requester_contact=req.requester_contact,
            authority_statement=req.authority_statement,
            content=tuple(refs),
            description=req.description,
            good_faith=req.good_faith,
            signature_name=req.signature_name,
            signature_confirmed=req.signed_at is not None,
            ai_made=req.ai_made,
            jurisdiction=req.jurisdiction,
        )

    @staticmethod
    def _subject(req: TakedownRequest) -> str:
        return f"takedown_request:{req.id}"

    def _unique_ticket(self, s: Session) -> str:
        for _ in range(8):
            ticket = new_ticket()
            if s.scalar(select(TakedownRequest.id).where(TakedownRequest.ticket == ticket)) is None:
                return ticket
        raise TakedownUnavailable("could not pick a free ticket; try again", code="takedown.busy")

    # -- intake -----------------------------------------------------------------------------

    def submit(
        self, form: RequestForm, *, channel: str = "form", flagger: KeyInfo | None = None
    ) -> Receipt:
        """File a request. ``channel`` is ``form`` (the public page) or ``flagger`` (a trusted
        flagger's key, given as ``flagger``: priority 0). Raises ``takedown.*`` on malformed
        input and ``takedown.suspended`` for a suspended requester; nothing is written then."""
        if channel not in ("form", "flagger"):
            raise TakedownRefused(f"unknown channel {channel!r}", code="takedown.invalid")
        if channel == "flagger" and flagger is None:
            raise TakedownRefused(
                "a flagger request needs the flagger's key", code="takedown.invalid"
            )
        form = normalize(form)
        validity = check(form, self.settings)
        now = self._now()
        code = new_access_code()
        fp = requester_fingerprint(form.requester_contact)
        with self.db.session() as s:
            self._suspension(s, fp, now)
            req = TakedownRequest(
                ticket=self._unique_ticket(s),
                access_hash=code_hash(code),
                channel=channel,
                flagger_key_id=flagger.id if flagger is not None else None,
                flagger_name=flagger.name[:200] if flagger is not None else None,
                priority=0 if channel == "flagger" else 1,
                requester_fp=fp,
                state="incomplete",
                received_at=now,
            )
            self._apply(req, form, validity, now)
            s.add(req)
            s.flush()
            self._add_items(s, req.id, form)
            if validity.valid:
                self._start_clock(s, req, now)
            s.flush()
            emit_event(
                s,
                "takedown.received",
                {
                    "ticket": req.ticket,
                    "request_id": req.id,
                    "state": req.state,
                    "channel": channel,
                    "priority": req.priority,
                    "received_at": isoformat(now),
                    "due_at": isoformat(req.due_at),
                    "items": [
                        {"ref": r, "content_id": resolve(r, self.settings).content_id}
                        for r in form.content
                    ],
                },
            )
            detail = {
                "ticket": req.ticket,
                "channel": channel,
                "items": len(form.content),
                "state": req.state,
            }
            if flagger is not None:
                detail["flagger_key_id"] = flagger.id
            audit.record(s, "takedown.received", self._subject(req), detail)
            if validity.valid:
                audit.record(
                    s,
                    "takedown.valid",
                    self._subject(req),
                    {"ticket": req.ticket, "due_at": isoformat(req.due_at)},
                )
            return Receipt(req.id, req.ticket, code, req.state, validity, now, req.due_at)

    # -- the requester: status, complete, withdraw -----------------------------------------

    def _authenticate(self, s: Session, ticket: object, code: object) -> TakedownRequest:
        t = normalize_ticket(ticket)
        c = normalize_code(code)
        req = (
            s.scalar(select(TakedownRequest).where(TakedownRequest.ticket == t).with_for_update())
            if t is not None
            else None
        )
        expected = req.access_hash if req is not None else _DUMMY_HASH
        given = hashlib.sha256((c or "").encode("ascii", "replace")).hexdigest()
        matches = hmac.compare_digest(expected, given)
        if req is None or c is None or not matches:
            raise TakedownForbidden(
                "that ticket and access code do not match a request; check both and try again",
                code="takedown.bad_credentials",
            )
        return req

    def _refs(self, s: Session, request_id: int) -> list[TakedownItem]:
        return list(
            s.scalars(
                select(TakedownItem)
                .where(TakedownItem.request_id == request_id)
                .order_by(TakedownItem.id)
            )
        )

    def _public(self, s: Session, req: TakedownRequest) -> dict[str, Any]:
        """What the requester sees on the status page."""
        items = self._refs(s, req.id)
        validity = Validity.from_dict(json.loads(req.validity or "{}"))
        problems = {p.ref: p.message for p in validity.item_problems}
        out: dict[str, Any] = {
            "ticket": req.ticket,
            "state": req.state,
            "channel": req.channel,
            "received_at": isoformat(req.received_at),
            "valid_at": isoformat(req.valid_at),
            "due_at": isoformat(req.due_at),
            "closed_at": isoformat(req.closed_at),
            "validity": validity.to_dict(),
            "missing": [m.to_dict() for m in validity.missing] if req.state == "incomplete" else [],
            "item_problems": [p.to_dict() for p in validity.item_problems],
            "items": [
                {"ref": i.ref, "state": i.state, "problem": problems.get(i.ref)} for i in items
            ],
            "outcome": None,
            "form": None,
        }
        if req.state in ("removed", "rejected"):
            out["outcome"] = {
                "state": req.state,
                "reason": req.outcome_reason,
                # Only a refusal is something to contest: a requester whose content was
                # removed is not told to complain to a regulator.
                "how_to_contest": HOW_TO_CONTEST if req.state == "rejected" else None,
            }
        if req.state == "incomplete":
            # The requester's own answers, so the page can ask only for what is missing.
            out["form"] = self._form_of(req, [i.ref for i in items]).to_dict()
        return out

    def status(self, ticket: str, code: str) -> dict[str, Any]:
        """The requester's view of their request (``takedown.bad_credentials`` when the ticket
        or the code is wrong: the two are not told apart)."""
        with self.db.session() as s:
            return self._public(s, self._authenticate(s, ticket, code))

    def complete(self, ticket: str, code: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Supplement an incomplete request with ``fields`` (form field names; those not given
        keep their value). When it becomes valid, the clock starts now. Raises
        ``takedown.not_incomplete`` (409) for a request that is not incomplete."""
        now = self._now()
        with self.db.session() as s:
            req = self._authenticate(s, ticket, code)
            if req.state != "incomplete":
                raise TakedownConflict(
                    f"this request is {req.state}; only an incomplete request can be completed",
                    code="takedown.not_incomplete",
                    state=req.state,
                )
            items = self._refs(s, req.id)
            current = self._form_of(req, [i.ref for i in items]).to_dict()
            form = normalize(RequestForm.from_mapping({**current, **dict(fields)}))
            validity = check(form, self.settings)
            self._suspension(s, requester_fingerprint(form.requester_contact), now)
            self._apply(req, form, validity, now)
            if list(form.content) != [i.ref for i in items]:
                s.execute(delete(TakedownItem).where(TakedownItem.request_id == req.id))
                self._add_items(s, req.id, form)
            if validity.valid:
                self._start_clock(s, req, now)
            s.flush()
            audit.record(
                s,
                "takedown.completed",
                self._subject(req),
                {"ticket": req.ticket, "fields": sorted(fields)[:20], "state": req.state},
            )
            if validity.valid:
                audit.record(
                    s,
                    "takedown.valid",
                    self._subject(req),
                    {"ticket": req.ticket, "due_at": isoformat(req.due_at)},
                )
            return self._public(s, req)

    def withdraw(self, ticket: str, code: str) -> dict[str, Any]:
        """The requester withdraws their open request: it closes, and so does its review item.
        Raises ``takedown.closed`` (409) when it is already decided or withdrawn."""
        now = self._now()
        with self.db.session() as s:
            req = self._authenticate(s, ticket, code)
            if req.state not in OPEN_STATES:
                raise TakedownConflict(
                    f"this request is already {req.state}", code="takedown.closed", state=req.state
                )
            req.state = "withdrawn"
            req.closed_at = now
            req.outcome_reason = "withdrawn by the requester"
            req.updated_at = now
            s.execute(
                update(ReviewItem)
                .where(ReviewItem.request_id == req.id, ReviewItem.state == "open")
                .values(state="closed", decided_at=now, note="withdrawn by the requester")
                .execution_options(synchronize_session=False)
            )
            notify_requester(s, req, "withdrawn", "You withdrew this request.")
            audit.record(s, "takedown.withdrawn", self._subject(req), {"ticket": req.ticket})
            return self._public(s, req)

    # -- staff: evidence, lists -------------------------------------------------------------

    def _flag(self, s: Session, fp: str) -> dict[str, Any] | None:
        flag = s.scalar(select(RequesterFlag).where(RequesterFlag.requester_fp == fp))
        if flag is None:
            return None
        now = self._now()
        until = flag.suspended_until
        return {
            "requester_fp": flag.requester_fp,
            "flagged": flag.unfounded >= self.settings.unfounded_flag_after,
            "unfounded": flag.unfounded,
            "flagged_at": isoformat(flag.flagged_at),
            "suspended_until": isoformat(until),
            "suspended": until is not None and until > now,
            "note": flag.note,
        }

    def _history(self, s: Session, fp: str, now: datetime) -> dict[str, int]:
        rows = s.execute(
            select(
                TakedownRequest.state, TakedownRequest.unfounded, TakedownRequest.closed_at
            ).where(TakedownRequest.requester_fp == fp)
        ).all()
        since = now - ABUSE_WINDOW
        return {
            "requests": len(rows),
            "removed": sum(1 for r in rows if r.state == "removed"),
            "rejected": sum(1 for r in rows if r.state == "rejected"),
            "unfounded_365d": sum(
                1
                for r in rows
                if r.state == "rejected"
                and r.unfounded
                and r.closed_at is not None
                and r.closed_at >= since
            ),
        }

    def _load(self, s: Session, request_id: int) -> TakedownRequest:
        req = s.get(TakedownRequest, request_id)
        if req is None:
            raise TakedownNotFound(
                f"no takedown request {request_id}",
                code="takedown.not_found",
                request_id=request_id,
            )
        return req

    def _summary(self, req: TakedownRequest, now: datetime, items: int) -> dict[str, Any]:
        due = req.due_at
        return {
            "id": req.id,
            "ticket": req.ticket,
            "state": req.state,
            "channel": req.channel,
            "flagger_key_id": req.flagger_key_id,
            "flagger_name": req.flagger_name,
            "priority": req.priority,
            "ai_made": req.ai_made,
            "jurisdiction": req.jurisdiction,
            "item_count": items,
            "received_at": isoformat(req.received_at),
            "valid_at": isoformat(req.valid_at),
            "due_at": isoformat(due),
            "hours_left": round((due - now).total_seconds() / 3600, 2)
            if due is not None and req.state == "valid"
            else None,
            "overdue": req.state == "valid" and due is not None and due < now,
            "escalated_24_at": isoformat(req.escalated_24_at),
            "escalated_36_at": isoformat(req.escalated_36_at),
            "closed_at": isoformat(req.closed_at),
            "unfounded": req.unfounded,
            "decided_by": req.decided_by,
        }

    def get(self, request_id: int) -> dict[str, Any]:
        """Everything a reviewer needs about one request: who asked (and whether they are
        flagged), what they said, the validity check, the clock, and each item with the content
        id it resolved to and its latest scan id. Raises ``takedown.not_found`` (404)."""
        now = self._now()
        with self.db.session() as s:
            req = self._load(s, request_id)
            items = self._refs(s, req.id)
            kinds = self._kinds(s, [i.content_id for i in items if i.content_id])
            out = self._summary(req, now, len(items))
            out.update(
                {
                    "requester_kind": req.requester_kind,
                    "requester_name": req.requester_name,
                    "requester_contact": req.requester_contact,
                    "requester_fp": req.requester_fp,
                    "authority_statement": req.authority_statement,
                    "description": req.description,
                    "good_faith": req.good_faith,
                    "signature_name": req.signature_name,
                    "signed_at": isoformat(req.signed_at),
                    "validity": Validity.from_dict(json.loads(req.validity or "{}")).to_dict(),
                    "outcome_reason": req.outcome_reason,
                    "items": [
                        {
                            "id": i.id,
                            "ref": i.ref,
                            "content_id": i.content_id,
                            "scan_id": i.scan_id,
                            "state": i.state,
                            "kind": kinds.get(i.content_id or ""),
                        }
                        for i in items
                    ],
                    "requester_flag": self._flag(s, req.requester_fp),
                    "requester_history": self._history(s, req.requester_fp, now),
                }
            )
            return out

    def request_id(self, ticket: str) -> int:
        """The id of the request with ``ticket`` (typed forms are forgiven)."""
        t = normalize_ticket(ticket)
        with self.db.session() as s:
            found = (
                s.scalar(select(TakedownRequest.id).where(TakedownRequest.ticket == t))
                if t is not None
                else None
            )
        if found is None:
            raise TakedownNotFound(
                f"no takedown request {str(ticket)[:40]!r}", code="takedown.not_found"
            )
        return int(found)

    def get_by_ticket(self, ticket: str) -> dict[str, Any]:
        return self.get(self.request_id(ticket))

    def list(
        self,
        *,
        state: str | None = None,
        overdue: bool = False,
        limit: int = 100,
        after_id: int = 0,
    ) -> builtins.list[dict[str, Any]]:
        """Request summaries by id (``overdue``: valid requests past their deadline, the most
        overdue first)."""
        if state is not None and state not in REQUEST_STATES:
            raise TakedownRefused(
                f"state must be one of {', '.join(REQUEST_STATES)}; got {state[:40]!r}",
                code="takedown.bad_state",
            )
        limit = max(1, min(int(limit), 10_000))
        now = self._now()
        q = select(TakedownRequest)
        if overdue:
            q = q.where(TakedownRequest.state == "valid", TakedownRequest.due_at < now)
            if state is not None and state != "valid":
                return []
            q = q.order_by(TakedownRequest.due_at, TakedownRequest.id)
        else:
            if state is not None:
                q = q.where(TakedownRequest.state == state)
            q = q.where(TakedownRequest.id > after_id).order_by(TakedownRequest.id)
        with self.db.session() as s:
            rows = list(s.scalars(q.limit(limit)))
            counts: dict[int, int] = {}
            ids = [r.id for r in rows]
            if ids:
                counts = {
                    int(rid): int(n)
                    for rid, n in s.execute(
                        select(TakedownItem.request_id, func.count())
                        .where(TakedownItem.request_id.in_(ids))
                        .group_by(TakedownItem.request_id)
                    )
                }
            return [self._summary(r, now, counts.get(r.id, 0)) for r in rows]

    def overdue(self) -> builtins.list[dict[str, Any]]:
        """Valid requests past their deadline, the most overdue first."""
        return self.list(overdue=True, limit=10_000)

    # -- the clock --------------------------------------------------------------------------

    def escalate(self) -> int:
        """Escalate valid requests that reached an escalation point (24 h and 36 h after
        ``valid_at`` by default): stamp ``escalated_24_at`` / ``escalated_36_at``, raise the
        open review item to priority 0, emit ``takedown.escalated`` and audit it. Idempotent
        (each point fires once per request, whichever process gets there first). Returns how
        many escalations happened (a request past both points at once counts twice)."""
        now = self._now()
        done = 0
        for column, hours in self._escalations():
            col = getattr(TakedownRequest, column)
            cutoff = now - timedelta(hours=hours)
            with self.db.session() as s:
                ids = list(
                    s.scalars(
                        select(TakedownRequest.id)
                        .where(
                            TakedownRequest.state == "valid",
                            TakedownRequest.valid_at <= cutoff,
                            col.is_(None),
                        )
                        .order_by(TakedownRequest.id)
                    )
                )
            for request_id in ids:
                if self._escalate_one(request_id, column, hours, cutoff, now):
                    done += 1
        return done

    def _escalate_one(
        self, request_id: int, column: str, hours: float, cutoff: datetime, now: datetime
    ) -> bool:
        col = getattr(TakedownRequest, column)
        with self.db.session() as s:
            claimed = s.execute(
                update(TakedownRequest)
                .where(
                    TakedownRequest.id == request_id,
                    TakedownRequest.state == "valid",
                    TakedownRequest.valid_at <= cutoff,
                    col.is_(None),
                )
                .values({column: now})
                .execution_options(synchronize_session=False)
            )
            if not cast(CursorResult[Any], claimed).rowcount:
                return False  # another process escalated it, or it was decided meanwhile
            req = self._load(s, request_id)
            raised = list(
                s.scalars(
                    select(ReviewItem.id).where(
                        ReviewItem.request_id == request_id,
                        ReviewItem.state == "open",
                        ReviewItem.priority > 0,
                    )
                )
            )
            if raised:
                s.execute(
                    update(ReviewItem)
                    .where(ReviewItem.id.in_(raised))
                    .values(priority=0)
                    .execution_options(synchronize_session=False)
                )
            emit_event(
                s,
                "takedown.escalated",
                {
                    "ticket": req.ticket,
                    "request_id": req.id,
                    "hours": hours,
                    "valid_at": isoformat(req.valid_at),
                    "due_at": isoformat(req.due_at),
                    "escalated_at": isoformat(now),
                },
            )
            audit.record(
                s,
                "takedown.escalated",
                self._subject(req),
                {"ticket": req.ticket, "hours": hours, "review_items": raised},
            )
            return True

    # -- decisions and abuse controls -------------------------------------------------------

    def reject(
        self,
        request_id: int,
        *,
        reason: str,
        unfounded: bool,
        actor: str | None = None,
        review_item_id: int | None = None,
    ) -> dict[str, Any]:
        """Reject an open request: the requester is told ``reason`` and how to contest it.
        ``unfounded`` marks it manifestly unfounded (DSA Art. 23): at
        ``unfounded_flag_after`` such rejections within 365 days the requester is flagged.
        Open review items of the request close as decided (``review_item_id``, the one the
        reviewer is deciding, is left to its caller). Raises ``takedown.not_found``,
        ``takedown.closed`` (409), ``takedown.reason_required``."""
        reason = reason.strip() if isinstance(reason, str) else ""
        if not reason:
            raise TakedownRefused(
                "say why the request is rejected: the requester is told this reason",
                code="takedown.reason_required",
            )
        if len(reason) > MAX_REASON:
            raise TakedownRefused(
                f"the reason is longer than {MAX_REASON} characters", code="takedown.too_long"
            )
        who = (actor or audit.current_actor())[:200]
        now = self._now()
        with self.db.session() as s:
            req = s.scalar(
                select(TakedownRequest).where(TakedownRequest.id == request_id).with_for_update()
            )
            if req is None:
                raise TakedownNotFound(
                    f"no takedown request {request_id}",
                    code="takedown.not_found",
                    request_id=request_id,
                )
            if req.state not in OPEN_STATES:
                raise TakedownConflict(
                    f"request {req.ticket} is already {req.state}",
                    code="takedown.closed",
                    state=req.state,
                )
            req.state = "rejected"
            req.closed_at = now
            req.decided_by = who
            req.outcome_reason = reason
            req.unfounded = bool(unfounded)
            req.updated_at = now
            s.execute(
                update(TakedownItem)
                .where(TakedownItem.request_id == req.id, TakedownItem.state == "pending")
                .values(state="kept")
                .execution_options(synchronize_session=False)
            )
            others = update(ReviewItem).where(
                ReviewItem.request_id == req.id, ReviewItem.state == "open"
            )
            if review_item_id is not None:
                others = others.where(ReviewItem.id != review_item_id)
            s.execute(
                others.values(
                    state="decided", outcome="reject", decided_by=who, decided_at=now, note=reason
                ).execution_options(synchronize_session=False)
            )
            s.flush()
            flag = self._count_unfounded(s, req.requester_fp, now) if unfounded else None
            extra: dict[str, Any] = {}
            if flag is not None:
                extra["warning"] = (
                    "Several of your requests were found manifestly unfounded. Further ones may "
                    "lead to your requests not being processed for a time (EU DSA Art. 23)."
                )
            notify_requester(s, req, "rejected", reason, **extra)
            audit.record(
                s,
                "takedown.rejected",
                self._subject(req),
                {
                    "ticket": req.ticket,
                    "unfounded": bool(unfounded),
                    "by": who,
                    "review_item_id": review_item_id,
                },
            )
            if flag is not None and flag["new"]:
                audit.record(
                    s,
                    "takedown.requester_flagged",
                    f"requester:{req.requester_fp}",
                    {"unfounded": flag["unfounded"], "ticket": req.ticket},
                )
            return {
                "id": req.id,
                "ticket": req.ticket,
                "state": req.state,
                "unfounded": req.unfounded,
                "decided_by": who,
                "closed_at": isoformat(now),
                "requester_flagged": flag is not None,
            }

    def _count_unfounded(self, s: Session, fp: str, now: datetime) -> dict[str, Any] | None:
        """Count ``fp``'s unfounded rejections in the last year; flag at the threshold.
        Returns {"unfounded", "new"} when the requester is (now) flagged, else None."""
        count = int(
            s.scalar(
                select(func.count())
                .select_from(TakedownRequest)
                .where(
                    TakedownRequest.requester_fp == fp,
                    TakedownRequest.state == "rejected",
                    TakedownRequest.unfounded.is_(True),
                    TakedownRequest.closed_at >= now - ABUSE_WINDOW,
                )
            )
            or 0
        )
        flag = self._lock_flag(s, fp)
        if count < self.settings.unfounded_flag_after:
            if flag is not None:
                flag.unfounded = count
            return None
        new = flag is None or flag.unfounded < self.settings.unfounded_flag_after
        if flag is None:
            flag = self._insert_flag(s, fp, now)
        if new:
            flag.flagged_at = now
        flag.unfounded = count
        return {"unfounded": count, "new": new}

    @staticmethod
    def _lock_flag(s: Session, fp: str) -> RequesterFlag | None:
        return s.scalar(
            select(RequesterFlag).where(RequesterFlag.requester_fp == fp).with_for_update()
        )

    def _insert_flag(self, s: Session, fp: str, now: datetime) -> RequesterFlag:
        """Insert the flag row, or take the one a concurrent transaction just inserted."""
        try:
            with s.begin_nested():
                flag = RequesterFlag(requester_fp=fp, unfounded=0, flagged_at=now)
                s.add(flag)
            return flag
        except IntegrityError:
            found = self._lock_flag(s, fp)
            if found is None:
                raise
            return found

    @staticmethod
    def _check_fp(fp: str) -> str:
        value = fp.strip().lower() if isinstance(fp, str) else ""
        if not _FP.match(value):
            raise TakedownRefused(
                "a requester fingerprint is 64 hex characters (requester_fp in the evidence)",
                code="takedown.bad_fingerprint",
            )
        return value

    def suspend(self, fp: str, *, days: int, note: str = "") -> dict[str, Any]:
        """Refuse requests from requester ``fp`` for ``days`` days (after a warning, DSA Art.
        23(1)); the flag shows in later evidence. Raises ``takedown.bad_fingerprint`` and
        ``takedown.invalid`` for a number of days out of 1..3650."""
        fp = self._check_fp(fp)
        if not isinstance(days, int) or not 1 <= days <= MAX_SUSPEND_DAYS:
            raise TakedownRefused(
                f"days must be 1 to {MAX_SUSPEND_DAYS}", code="takedown.invalid", field="days"
            )
        note = note.strip()
        if len(note) > MAX_NOTE:
            raise TakedownRefused(
                f"the note is longer than {MAX_NOTE} characters", code="takedown.too_long"
            )
        now = self._now()
        until = now + timedelta(days=days)
        with self.db.session() as s:
            flag = self._lock_flag(s, fp) or self._insert_flag(s, fp, now)
            flag.suspended_until = until
            if note:
                flag.note = note
            s.flush()
            audit.record(
                s,
                "takedown.requester_suspended",
                f"requester:{fp}",
                {"days": days, "until": isoformat(until)},
            )
            out = self._flag(s, fp)
        assert out is not None
        return out

    def unsuspend(self, fp: str) -> dict[str, Any]:
        """Lift a suspension. Raises ``takedown.flag_not_found`` (404) for an unknown ``fp``."""
        fp = self._check_fp(fp)
        with self.db.session() as s:
            flag = self._lock_flag(s, fp)
            if flag is None:
                raise TakedownNotFound(
                    "no flag or suspension for that requester", code="takedown.flag_not_found"
                )
            flag.suspended_until = None
            s.flush()
            audit.record(s, "takedown.requester_unsuspended", f"requester:{fp}", {})
            out = self._flag(s, fp)
        assert out is not None
        return out

    def flags(self) -> builtins.list[dict[str, Any]]:
        """Every flagged or suspended requester, most recently flagged first."""
        with self.db.session() as s:
            fps = list(
                s.scalars(
                    select(RequesterFlag.requester_fp).order_by(
                        RequesterFlag.flagged_at.desc(), RequesterFlag.id.desc()
                    )
                )
            )
            return [f for f in (self._flag(s, fp) for fp in fps) if f is not None]


__all__ = [
    "HOW_TO_CONTEST",
    "Receipt",
    "RequestForm",
    "TakedownError",
    "TakedownService",
    "code_hash",
    "new_access_code",
    "new_ticket",
    "normalize_code",
    "normalize_ticket",
    "requester_fingerprint",
]
