"""Statements of reasons, appeals, the requester's outcome notice, and the DSA Transparency
Database export.

Every removal gets a statement of reasons for its uploader (:meth:`NoticeService.create_statement`,
called inside the removal's transaction) with the fields EU DSA Art. 17(3) asks for: (a) the
restriction (removal), (b) the facts and circumstances, including whether the decision followed
a notice (Art. 16), a trusted flagger's notice (Art. 22) or the platform's own initiative, (c)
whether automated means detected the content and whether they decided, (d) the legal ground (the
US TAKE IT DOWN Act, Directive (EU) 2024/1385 Art. 5 on non-consensual sharing of intimate or
manipulated material, national law) with an explanation, or (e) the contractual ground (terms of
service), and (f) redress: the internal complaint (appeal) with its deadline, out-of-court dispute
settlement (Art. 21) and the courts. The body also carries the statement exactly as the EU DSA
Transparency Database's API takes it (``POST /api/v1/statement``, schema v2 of 1 July 2025; field
names and enum values from https://transparency.dsa.ec.europa.eu/page/api-documentation and the
database's source, github.com/digital-services-act/transparency-database): ``decision_visibility``
``DECISION_VISIBILITY_CONTENT_REMOVED``; ``decision_ground`` ``DECISION_GROUND_ILLEGAL_CONTENT``
with ``illegal_content_legal_ground`` / ``illegal_content_explanation``, or
``DECISION_GROUND_INCOMPATIBLE_CONTENT`` with ``incompatible_content_ground`` /
``incompatible_content_explanation`` / ``incompatible_content_illegal``; ``category``
``STATEMENT_CATEGORY_CYBER_VIOLENCE`` with ``category_specification``
``KEYWORD_NON_CONSENSUAL_IMAGE_SHARING`` (and ``KEYWORD_NON_CONSENSUAL_MATERIAL_DEEPFAKE`` for AI
fakes); ``content_type`` ``CONTENT_TYPE_IMAGE`` plus ``CONTENT_TYPE_SYNTHETIC_MEDIA`` where a scan
found AI evidence or the requester said the image was AI-made; ``source_type``
``SOURCE_ARTICLE_16`` / ``SOURCE_TRUSTED_FLAGGER`` / ``SOURCE_VOLUNTARY``; ``automated_detection``
``Yes``/``No``; ``automated_decision`` ``AUTOMATED_DECISION_FULLY`` / ``_PARTIALLY`` /
``_NOT_AUTOMATED``; ``application_date`` and ``content_date`` as ``YYYY-MM-DD``;
``territorial_scope`` (EU/EEA ISO codes); ``puid``. The database's PUID must be unique per
statement and use only ``[A-Za-z0-9_-]``: it is the content id made safe, then the statement's
public id. The export holds no personal data (no uploader, no requester), as Art. 24(5) requires.

The uploader receives the statement through the ``notice.statement`` event (the platform's
mailer) with a one-time appeal code, stored only as its SHA-256 (128 random bits need no slow
hash), and the public page ``/statements/<public_id>``. An appeal (:meth:`NoticeService.appeal`)
is open for ``appeal_window_days`` (at least six months, DSA Art. 20(1)), one at a time per
statement; it becomes a review item for a person (Art. 20(6): never decided by automated means
alone). :meth:`NoticeService.decide_appeal` is refused to the reviewer who took the removal
decision, so someone else looks again; ``reverse`` restores the content and tells the requester.
The requester's outcome notice is :func:`notify_requester`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from dignity import audit
from dignity.errors import Conflict, DignityError, Forbidden, NotFound, Refused
from dignity.settings import Settings
from dignity.storage.db import Database
from dignity.takedown.clock import Clock, SystemClock, utc
from dignity.takedown.models import (
    Appeal,
    Removal,
    ReviewItem,
    ScanRecord,
    Statement,
    TakedownRequest,
)
from dignity.text import json_object

# EU member states and the other EEA countries (IS, LI, NO): a removal applies everywhere.
TERRITORIAL_SCOPE = (
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU",
    "IE", "IS", "IT", "LI", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE",
    "SI", "SK",
)  # fmt: skip
AI_MADE = frozenset({"ai", "yes", "true"})
MAX_APPEAL_TEXT = 5000
_FACTS_MAX = 5000  # TDB decision_facts
_GROUND_MAX = 500  # TDB *_ground
_EXPLANATION_MAX = 2000  # TDB *_explanation
_PUID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_TERMS = (
    "Terms of service: sharing intimate images of a person without their consent is prohibited."
)

_LEGAL: dict[str, str] = {
    "US": "US TAKE IT DOWN Act (Pub. L. 119-12): notice and removal of non-consensual intimate "
    "visual depictions, including digital forgeries, within 48 hours.",
    "EU": "Directive (EU) 2024/1385, Art. 5 (non-consensual sharing of intimate or manipulated "
    "material), as transposed in national law; notice under DSA Art. 16.",
    "UK": "Sexual Offences Act 2003, s. 66B (sharing an intimate photograph or film without "
    "consent); Online Safety Act 2023.",
}
_LEGAL_ANY = (
    "Laws against sharing intimate images without consent (US TAKE IT DOWN Act, Pub. L. 119-12; "
    "Directive (EU) 2024/1385, Art. 5; the national law of the person shown)."
)


class NoticeError(DignityError):
    """A statement or appeal request was refused: unknown statement or appeal, wrong code, the
    window closed, an appeal already open or decided, the removal's own reviewer deciding."""


class NoticeRefused(NoticeError, Refused):
    """An appeal or statement request with a bad field, outcome or period."""

    codes = (
        "appeal.bad_text",
        "appeal.bad_outcome",
        "appeal.bad_state",
        "appeal.no_actor",
        "statement.bad_period",
    )


class NoticeForbidden(NoticeError, Forbidden):
    """A wrong appeal code, or the removal's own reviewer deciding its appeal."""

    codes = ("appeal.bad_code", "appeal.same_reviewer")


class NoticeConflict(NoticeError, Conflict):
    """An appeal that cannot be made or decided in the removal's state."""

    codes = (
        "appeal.window_closed",
        "appeal.already_open",
        "appeal.already_decided",
        "appeal.restored",
    )


class NoticeNotFound(NoticeError, NotFound):
    """No statement or appeal with that id."""

    codes = ("statement.not_found", "appeal.not_found")


def notify_requester(
    s: Session, request: TakedownRequest, outcome: str, reason: str, **extra: Any
) -> str | None:
    """Tell the requester how their request ended, in ``s``'s transaction: a
    ``takedown.outcome`` event that the platform's mailer delivers to the contact given, with
    how to contest the outcome. The status page shows the same. Returns the event id (None when
    no webhook subscribes: the status page still answers)."""
    from dignity.actions.outbox import emit_event

    contest = (
        (
            "Reply to this notice or file a new request with more information; you may also "
            "complain to the FTC (US) or to your national Digital Services Coordinator (EU)."
        )
        if outcome in ("rejected", "restored")
        else None  # content removed, or the requester's own withdrawal: nothing to contest
    )
    payload = {
        "ticket": request.ticket,
        "contact": request.requester_contact,
        "outcome": outcome,
        "reason": reason,
        "how_to_contest": contest,
        **extra,
    }
    return emit_event(s, "takedown.outcome", payload)


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def statement_path(public_id: str) -> str:
    return f"/statements/{public_id}"


def puid(content_id: str, public_id: str) -> str:
    """The TDB's platform unique identifier: unique per statement, ``[A-Za-z0-9_-]`` only."""
    return f"{_PUID_UNSAFE.sub('_', content_id)[:400]}-{public_id}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _day(at: datetime) -> str:
    return utc(at).strftime("%Y-%m-%d")


def _sub(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


class NoticeService:
    """Statements of reasons and appeals; thread-safe (a session per call)."""

    def __init__(self, db: Database, settings: Settings, clock: Clock | None = None) -> None:
        self.db = db
        self.settings = settings
        self.clock: Clock = clock or SystemClock()

    # -- issuing -------------------------------------------------------------------------
    def create_statement(
        self, s: Session, removal: Removal, *, request: TakedownRequest | None = None
    ) -> Statement:
        """Write the statement of reasons for ``removal`` in ``s``'s transaction and send it
        (with a fresh appeal code) as a ``notice.statement`` event; audited."""
        from dignity.actions.outbox import emit_event

        now = removal.created_at
        # Hex, not URL-safe base64: an id that starts with "-" reads as an option on a command
        # line (`dignity statement show -x...` failed), and it travels in URLs and notices.
        public_id = secrets.token_hex(16)
        code = secrets.token_urlsafe(12)
        until = now + timedelta(days=self.settings.appeal_window_days)
        body = self._body(s, removal, request, public_id, now, until)
        scan = s.get(ScanRecord, removal.scan_id) if removal.scan_id is not None else None
        row = Statement(
            public_id=public_id,
            removal_id=removal.id,
            content_id=removal.content_id,
            uploader=scan.uploader if scan is not None else None,
            body=json.dumps(body, separators=(",", ":"), sort_keys=True),
            appeal_hash=code_hash(code),
            appeal_until=until,
            created_at=now,
        )
        s.add(row)
        s.flush()
        row.event_id = emit_event(
            s,
            "notice.statement",
            {
                "statement_id": public_id,
                "url": statement_path(public_id),
                "appeal_code": code,
                "appeal_until": until.isoformat(),
                "content_id": removal.content_id,
                "uploader": row.uploader,
                "removal_id": removal.id,
                "copy_of": removal.source_removal_id,
                "statement": body["art17"],
            },
        )
        audit.record(
            s,
            "statement.issued",
            f"statement:{public_id}",
            {
                "statement": public_id,
                "removal_id": removal.id,
                "content_id": removal.content_id,
                "appeal_until": until.isoformat(),
                "synthetic": body["synthetic"],
            },
        )
        return row

    def _body(
        self,
        s: Session,
        removal: Removal,
        request: TakedownRequest | None,
        public_id: str,
        now: datetime,
        until: datetime,
    ) -> dict[str, Any]:
        scan = s.get(ScanRecord, removal.scan_id) if removal.scan_id is not None else None
        detail = json_object(scan.detail) if scan is not None else {}
        signals: dict[str, Any] = _sub(detail, "signals")
        decision: dict[str, Any] = _sub(detail, "decision")
        source_body: dict[str, Any] = {}
        source: Removal | None = None
        if removal.source_removal_id is not None:
            source = s.get(Removal, removal.source_removal_id)
            parent = s.scalars(
                select(Statement.body).where(Statement.removal_id == removal.source_removal_id)
            ).first()
            source_body = json_object(parent)
        first_seen = s.scalar(
            select(func.min(ScanRecord.created_at)).where(
                ScanRecord.content_id == removal.content_id
            )
        )
        ai_sources = sorted(
            {str(e.get("source")) for e in signals.get("ai_evidence") or [] if isinstance(e, dict)}
        )
        said_ai = request is not None and request.ai_made.strip().lower() in AI_MADE
        synthetic = bool(ai_sources or said_ai or source_body.get("synthetic"))
        platform = self.settings.platform_name
        copy = removal.reason.startswith("copy_")
        if copy:
            kind = "own_initiative"
        elif request is not None:
            kind = "trusted_flagger" if request.channel == "flagger" else "notice"
        else:
            kind = "own_initiative"

        # (d)/(e) grounds: a notice of NCII is a notice of illegal content; a scan a reviewer
        # removed falls under the terms (and is illegal too when it matched known NCII);
        # a copy stands on the ground of what it copies.
        legal: str | None
        terms: str | None
        if copy and source_body:
            art = source_body.get("art17", {})
            legal = (art.get("legal_ground") or {}).get("provision")
            terms = (art.get("contractual_ground") or {}).get("provision")
            illegal = source_body.get("tdb", {}).get("decision_ground") == (
                "DECISION_GROUND_ILLEGAL_CONTENT"
            )
        elif request is not None:
            legal = _LEGAL.get(request.jurisdiction.strip().upper(), _LEGAL_ANY)
            terms = _TERMS
            illegal = True
        else:
            statement = decision.get("statement") if isinstance(decision, dict) else None
            statement = statement if isinstance(statement, dict) else {}
            known = any(
                isinstance(m, dict) and m.get("purpose") == "block"
                for m in detail.get("matches") or []
            )
            legal = _LEGAL_ANY if known else None
            terms = str(statement.get("contractual_ground") or _TERMS)
            illegal = False

        facts = self._facts(removal, request, source, source_body, kind, signals, decision)
        why_illegal = (
            "The person shown (or someone authorised to act for them) stated, with a signature, "
            "that this intimate image was published without their consent"
            + (", and that it was made or altered with AI (a digital forgery)" if said_ai else "")
            + "; a reviewer found the notice complete and credible."
            if request is not None or (copy and illegal)
            else "The content matches imagery already found to be non-consensual intimate imagery."
        )
        why_terms = (
            "The terms of service do not allow intimate images of a person shared without their "
            "consent; a reviewer found that this content is such an image."
        )
        if copy:
            why_illegal = f"It is a copy of content removed on that ground. {why_illegal}"
            why_terms = f"It is a copy of content removed on that ground. {why_terms}"
        detection = kind == "own_initiative"
        automated_decision = copy
        means = (
            "The copy was found automatically by comparing file hashes (exact SHA-256/MD5, and "
            "the PDQ perceptual hash) with content removed after a person's decision, and "
            "removed without a further review."
            if copy
            else (
                "Automated checks flagged the content at upload (hash matching against banks, "
                "file provenance checks, an image classifier); a person reviewed it and decided."
                if kind == "own_initiative"
                else "The content was reported by a person; a person reviewed the notice and "
                "decided. No automated means detected the content or took the decision."
            )
        )
        path = statement_path(public_id)
        art17 = {
            "restriction": f"Removal of the content {removal.content_id} from {platform}.",
            "restriction_type": "removal",
            "facts_and_circumstances": facts,
            "source": kind,
            "notice": (
                {"ticket": request.ticket, "channel": request.channel}
                if request is not None and not copy
                else None
            ),
            "automated_means": {
                "detection": detection,
                "decision": automated_decision,
                "description": means,
            },
            "legal_ground": (
                {"provision": legal, "explanation": why_illegal} if legal is not None else None
            ),
            "contractual_ground": (
                {"provision": terms, "explanation": why_terms} if terms is not None else None
            ),
            "redress": {
                "internal_complaint": {
                    "how": "Appeal on this statement's page with the appeal code sent with this "
                    "notice. A person who did not take the decision reviews the appeal (DSA "
                    "Art. 20); if it succeeds, the content is restored.",
                    "url": path,
                    "until": until.isoformat(),
                },
                "out_of_court_settlement": "You may refer the dispute to a certified "
                "out-of-court dispute settlement body (DSA Art. 21).",
                "judicial_redress": "You may bring the matter before the courts of your "
                "country at any time.",
            },
        }
        tdb: dict[str, Any] = {
            "decision_visibility": ["DECISION_VISIBILITY_CONTENT_REMOVED"],
            "decision_ground": (
                "DECISION_GROUND_ILLEGAL_CONTENT"
                if illegal and legal is not None
                else "DECISION_GROUND_INCOMPATIBLE_CONTENT"
            ),
            "category": "STATEMENT_CATEGORY_CYBER_VIOLENCE",
            "category_specification": ["KEYWORD_NON_CONSENSUAL_IMAGE_SHARING"]
            + (["KEYWORD_NON_CONSENSUAL_MATERIAL_DEEPFAKE"] if synthetic else []),
            "content_type": ["CONTENT_TYPE_IMAGE"]
            + (["CONTENT_TYPE_SYNTHETIC_MEDIA"] if synthetic else []),
            "decision_facts": _clip(facts, _FACTS_MAX),
            "source_type": {
                "notice": "SOURCE_ARTICLE_16",
                "trusted_flagger": "SOURCE_TRUSTED_FLAGGER",
            }.get(kind, "SOURCE_VOLUNTARY"),
            "automated_detection": "Yes" if detection else "No",
            "automated_decision": (
                "AUTOMATED_DECISION_FULLY"
                if automated_decision
                else "AUTOMATED_DECISION_NOT_AUTOMATED"
            ),
            "territorial_scope": list(TERRITORIAL_SCOPE),
            "application_date": _day(now),
            "content_date": _day(first_seen) if first_seen is not None else _day(now),
            "end_date_visibility_restriction": None,
            "puid": puid(removal.content_id, public_id),
        }
        if tdb["decision_ground"] == "DECISION_GROUND_ILLEGAL_CONTENT":
            tdb["illegal_content_legal_ground"] = _clip(str(legal), _GROUND_MAX)
            tdb["illegal_content_explanation"] = _clip(why_illegal, _EXPLANATION_MAX)
        else:
            tdb["incompatible_content_ground"] = _clip(terms or _TERMS, _GROUND_MAX)
            tdb["incompatible_content_explanation"] = _clip(why_terms, _EXPLANATION_MAX)
            tdb["incompatible_content_illegal"] = "Yes" if legal is not None else "No"
        if kind == "trusted_flagger" and request is not None and request.flagger_name:
            tdb["source_identity"] = _clip(request.flagger_name, 500)  # an organisation
        return {
            "public_id": public_id,
            "content_id": removal.content_id,
            "platform": platform,
            "issued_at": now.isoformat(),
            "appeal_until": until.isoformat(),
            "removal_id": removal.id,
            "copy_of": removal.source_removal_id,
            "synthetic": synthetic,
            "ai_evidence": ai_sources,
            "art17": art17,
            "tdb": tdb,
        }

    def _facts(
        self,
        removal: Removal,
        request: TakedownRequest | None,
        source: Removal | None,
        source_body: dict[str, Any],
        kind: str,
        signals: dict[str, Any],
        decision: dict[str, Any],
    ) -> str:
        """Art. 17(3)(b) in plain words; no personal data (it goes to the TDB too)."""
        day = _day(removal.created_at)
        parts: list[str] = []
        if removal.reason.startswith("copy_"):
            if removal.reason == "copy_exact":
                what = "an identical copy (the same file)"
            elif removal.reason == "copy_video":
                what = (
                    "a video that shows the same footage (at least three consecutive seconds "
                    "of it, matched frame by frame by perceptual hashes)"
                )
            elif removal.reason == "copy_frame":
                what = "a video that shows the same picture in one of its frames"
            elif removal.reason == "copy_still":
                what = "a picture of one of the frames of a video"
            else:
                what = (
                    "a visually near-identical copy (perceptual hash distance "
                    f"{removal.distance} of 256 bits; up to {self.settings.sweep_pdq_threshold} "
                    "counts as a copy)"
                )
            origin = "after review"
            if source is not None and source.request_id is not None:
                origin = "after a takedown request"
            parent = source_body.get("public_id")
            parts.append(
                f"This file is {what} of content removed on "
                f"{_day(source.created_at) if source is not None else day} {origin}"
                + (f" (statement {parent})" if parent else "")
                + "."
            )
            if source is not None and source.request_id is not None:
                parts.append(
                    "The US TAKE IT DOWN Act requires reasonable efforts to remove known "
                    "identical copies of content removed on a valid request."
                )
        elif request is not None:
            channel = (
                "a trusted flagger (DSA Art. 22)"
                if request.channel == "flagger"
                else "the platform's takedown form (a notice under DSA Art. 16 and the TAKE "
                "IT DOWN Act)"
            )
            parts.append(
                f"Takedown request {request.ticket}, received on {_day(request.received_at)} "
                f"through {channel}, reported this content as an intimate image published "
                "without the consent of the person shown."
            )
            if request.ai_made.strip().lower() in AI_MADE:
                parts.append("The request says the image was made or altered with AI.")
            parts.append(f"A reviewer checked the request and removed the content on {day}.")
        else:
            statement = decision.get("statement") if isinstance(decision, dict) else None
            policy_facts = statement.get("facts") if isinstance(statement, dict) else None
            words = " ".join(str(f) for f in policy_facts or [] if f)
            parts.append(
                "Automated checks flagged this content for review when it was uploaded"
                + (f": {words}" if words else ".")
            )
            parts.append(f"A reviewer looked at it and removed it on {day}.")
        sources = sorted(
            {str(e.get("source")) for e in signals.get("ai_evidence") or [] if isinstance(e, dict)}
        )
        if sources:
            parts.append(
                "The file carries evidence that AI made or altered it (" + ", ".join(sources) + ")."
            )
        return " ".join(parts)

    # -- reading -------------------------------------------------------------------------
    def get_statement(self, public_id: str) -> dict[str, Any]:
        """A statement as its public page shows it: the Art. 17 fields, the deadline, whether an
        appeal can be filed, and the latest appeal's state. ``statement.not_found`` (404)."""
        with self.db.session() as s:
            row = self._statement(s, public_id)
            return self._public(s, row)

    def _statement(self, s: Session, public_id: str) -> Statement:
        row = (
            s.scalars(select(Statement).where(Statement.public_id == public_id)).first()
            if 0 < len(public_id) <= 32
            else None
        )
        if row is None:
            raise NoticeNotFound("no such statement of reasons", code="statement.not_found")
        return row

    def _public(self, s: Session, row: Statement) -> dict[str, Any]:
        body = json_object(row.body)
        appeal = s.scalars(
            select(Appeal).where(Appeal.statement_id == row.id).order_by(Appeal.id.desc())
        ).first()
        removal = s.get(Removal, row.removal_id) if row.removal_id is not None else None
        now = self.clock.now()
        until = row.appeal_until
        return {
            "public_id": row.public_id,
            "content_id": row.content_id,
            "platform": body.get("platform", self.settings.platform_name),
            "issued_at": row.created_at.isoformat(),
            "appeal_until": until.isoformat(),
            "appeal_open": now <= until
            and (appeal is None or appeal.state != "open")
            and (removal is None or removal.restored_at is None),
            "restored_at": (
                removal.restored_at.isoformat()
                if removal is not None and removal.restored_at
                else None
            ),
            "appeal": (
                {
                    "state": appeal.state,
                    "received_at": appeal.received_at.isoformat(),
                    "decided_at": appeal.decided_at.isoformat() if appeal.decided_at else None,
                }
                if appeal is not None
                else None
            ),
            "synthetic": bool(body.get("synthetic")),
            "art17": body.get("art17", {}),
            "tdb": body.get("tdb", {}),
        }

    # -- appeals -------------------------------------------------------------------------
    def appeal(self, public_id: str, code: str, text: str) -> dict[str, Any]:
        """File an appeal against the statement's removal: right code, inside the window, one
        open appeal at a time. Writes the appeal, a review item (kind ``appeal``, priority 1),
        an ``appeal.received`` event and an audit record together."""
        text = text.strip()
        if not text or len(text) > MAX_APPEAL_TEXT or "\x00" in text:
            raise NoticeRefused(
                f"say why the decision is wrong in 1 to {MAX_APPEAL_TEXT} characters",
                code="appeal.bad_text",
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise NoticeRefused("the text is not valid Unicode", code="appeal.bad_text") from exc

        def apply(s: Session) -> dict[str, Any]:
            from dignity.actions.outbox import emit_event

            row = self._statement(s, public_id)
            if not hmac.compare_digest(code_hash(code.strip()), row.appeal_hash):
                raise NoticeForbidden(
                    "the appeal code does not match this statement", code="appeal.bad_code"
                )
            now = self.clock.now()
            removal = s.get(Removal, row.removal_id) if row.removal_id is not None else None
            if removal is not None and removal.restored_at is not None:
                raise NoticeConflict(
                    "the content was restored already: there is nothing to appeal",
                    code="appeal.restored",
                )
            if now > row.appeal_until:
                raise NoticeConflict(
                    f"the appeal window closed on {row.appeal_until.date().isoformat()}",
                    code="appeal.window_closed",
                )
            # Lock the statement so two appeals filed at once cannot both be the open one.
            s.execute(
                update(Statement).where(Statement.id == row.id).values(appeal_hash=row.appeal_hash)
            )
            open_one = s.scalar(
                select(Appeal.id).where(Appeal.statement_id == row.id, Appeal.state == "open")
            )
            if open_one is not None:
                raise NoticeConflict(
                    "an appeal against this decision is already being reviewed",
                    code="appeal.already_open",
                )
            appeal = Appeal(statement_id=row.id, text=text, state="open", received_at=now)
            s.add(appeal)
            s.flush()
            item = ReviewItem(
                kind="appeal", appeal_id=appeal.id, priority=1, state="open", created_at=now
            )
            s.add(item)
            s.flush()
            emit_event(
                s,
                "appeal.received",
                {
                    "appeal_id": appeal.id,
                    "statement_id": row.public_id,
                    "content_id": row.content_id,
                    "removal_id": row.removal_id,
                    "received_at": now.isoformat(),
                },
            )
            audit.record(
                s,
                "appeal.received",
                f"appeal:{appeal.id}",
                {"appeal_id": appeal.id, "statement": row.public_id, "review_item_id": item.id},
                actor="uploader",
            )
            return {
                "appeal_id": appeal.id,
                "state": "open",
                "received_at": now.isoformat(),
                "review_item_id": item.id,
                "statement": row.public_id,
            }

        return self.db.retrying(apply)

    def decide_appeal(
        self, appeal_id: int, outcome: str, *, actor: str, note: str = ""
    ) -> dict[str, Any]:
        """Uphold the removal or reverse it (the content is restored). Refused to whoever
        decided the removal (``appeal.same_reviewer``): an appeal is reviewed by someone else.
        Writes the decision, the restore, the ``appeal.outcome`` event, the review item and
        the audit record in one transaction. Deciding again the same way changes nothing."""
        if outcome not in ("uphold", "reverse"):
            raise NoticeRefused(
                f"an appeal is decided with uphold or reverse; got {outcome!r}",
                code="appeal.bad_outcome",
            )
        who = actor.strip()[:200]
        if not who:
            raise NoticeRefused("say who decides the appeal", code="appeal.no_actor")
        note = note.strip()[:4000]
        state = "upheld" if outcome == "uphold" else "reversed"

        def apply(s: Session) -> dict[str, Any]:
            from dignity.actions.outbox import emit_event
            from dignity.takedown.removal import RemovalService

            appeal = s.get(Appeal, appeal_id)
            if appeal is None:
                raise NoticeNotFound(f"no appeal {appeal_id}", code="appeal.not_found")
            statement = s.get(Statement, appeal.statement_id)
            assert statement is not None  # appeals cascade with their statement
            removal = (
                s.get(Removal, statement.removal_id) if statement.removal_id is not None else None
            )
            if appeal.state != "open":
                if appeal.state == state:
                    return self._appeal_dict(appeal, statement, already=True)
                raise NoticeConflict(
                    f"appeal {appeal_id} was already decided ({appeal.state})",
                    code="appeal.already_decided",
                    state=appeal.state,
                )
            if removal is not None and removal.decided_by and removal.decided_by == who:
                raise NoticeForbidden(
                    "you took the removal decision, so another reviewer must decide the appeal "
                    "(DSA Art. 20)",
                    code="appeal.same_reviewer",
                )
            now = self.clock.now()
            claimed = s.execute(
                update(Appeal)
                .where(Appeal.id == appeal_id, Appeal.state == "open")
                .values(state=state, decided_by=who, decided_at=now, note=note)
            )
            if not cast(CursorResult[Any], claimed).rowcount:
                raise NoticeConflict(
                    f"appeal {appeal_id} was decided meanwhile", code="appeal.already_decided"
                )
            restored = None
            if outcome == "reverse" and removal is not None:
                restored = RemovalService(self.db, self.settings, self.clock).restore_in(
                    s, removal.id, who=who, now=now, why="appeal reversed"
                )
                if removal.request_id is not None:
                    request = s.get(TakedownRequest, removal.request_id)
                    if request is not None:
                        notify_requester(
                            s,
                            request,
                            "restored",
                            "After an appeal by the uploader, a reviewer found the removal of "
                            f"{removal.content_id} was not justified and restored it.",
                            content_id=removal.content_id,
                        )
            s.execute(
                update(ReviewItem)
                .where(
                    ReviewItem.appeal_id == appeal_id,
                    ReviewItem.state.in_(("open", "deciding")),
                )
                .values(state="decided", outcome=outcome, decided_by=who, decided_at=now, note=note)
            )
            emit_event(
                s,
                "appeal.outcome",
                {
                    "appeal_id": appeal_id,
                    "statement_id": statement.public_id,
                    "content_id": statement.content_id,
                    "uploader": statement.uploader,
                    "removal_id": statement.removal_id,
                    "outcome": outcome,
                    "restored": restored is not None and not restored["already_done"],
                    "decided_at": now.isoformat(),
                },
            )
            audit.record(
                s,
                "appeal.decided",
                f"appeal:{appeal_id}",
                {
                    "appeal_id": appeal_id,
                    "statement": statement.public_id,
                    "outcome": outcome,
                    "removal_id": statement.removal_id,
                },
                actor=who,
            )
            s.flush()
            s.refresh(appeal)
            return self._appeal_dict(appeal, statement)

        return self.db.retrying(apply)

    @staticmethod
    def _appeal_dict(
        appeal: Appeal, statement: Statement, *, already: bool = False
    ) -> dict[str, Any]:
        return {
            "appeal_id": appeal.id,
            "statement": statement.public_id,
            "content_id": statement.content_id,
            "state": appeal.state,
            "text": appeal.text,
            "received_at": appeal.received_at.isoformat(),
            "decided_by": appeal.decided_by,
            "decided_at": appeal.decided_at.isoformat() if appeal.decided_at else None,
            "note": appeal.note,
            "already_done": already,
        }

    def list_appeals(
        self, *, state: str | None = None, limit: int = 100, after_id: int = 0
    ) -> list[dict[str, Any]]:
        """Appeals in id order, optionally of one state (open, upheld, reversed)."""
        if state is not None and state not in ("open", "upheld", "reversed"):
            raise NoticeRefused(
                f"state is open, upheld or reversed; got {state!r}", code="appeal.bad_state"
            )
        with self.db.session() as s:
            q = select(Appeal, Statement).join(Statement, Statement.id == Appeal.statement_id)
            q = q.where(Appeal.id > after_id)
            if state is not None:
                q = q.where(Appeal.state == state)
            rows = s.execute(q.order_by(Appeal.id).limit(max(1, min(limit, 10_000)))).all()
            return [self._appeal_dict(a, st) for a, st in rows]

    def reissue_code(self, public_id: str) -> dict[str, Any]:
        """A new appeal code for a statement (the old one stops working), for a platform that
        pulls removals instead of receiving ``notice.statement`` events; audited."""

        def apply(s: Session) -> dict[str, Any]:
            row = self._statement(s, public_id)
            code = secrets.token_urlsafe(12)
            row.appeal_hash = code_hash(code)
            audit.record(
                s, "statement.code_reissued", f"statement:{public_id}", {"statement": public_id}
            )
            return {
                "statement_id": public_id,
                "url": statement_path(public_id),
                "appeal_code": code,
                "appeal_until": row.appeal_until.isoformat(),
            }

        return self.db.retrying(apply)

    # -- the DSA Transparency Database -----------------------------------------------------
    def export(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[dict[str, Any]]:
        """Statements issued in [since, until), oldest first, each exactly as the Transparency
        Database's ``POST /api/v1/statement`` takes it (no personal data)."""
        with self.db.session() as s:
            q = select(Statement.body).order_by(Statement.created_at, Statement.id)
            if since is not None:
                q = q.where(Statement.created_at >= since)
            if until is not None:
                q = q.where(Statement.created_at < until)
            for body in s.scalars(q.execution_options(yield_per=500)):
                tdb = json_object(body).get("tdb")
                if isinstance(tdb, dict):
                    yield tdb


__all__ = [
    "AI_MADE",
    "TERRITORIAL_SCOPE",
    "NoticeError",
    "NoticeService",
    "code_hash",
    "notify_requester",
    "puid",
    "statement_path",
]
