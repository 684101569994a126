"""What a takedown request lacks, under the US TAKE IT DOWN Act and under the EU DSA Art. 16(2):
a pure check of a :class:`RequestForm` (no I/O), listing each missing element with a stable key,
the form field it concerns and a short message a person under stress can act on.

A request is *valid* when it is complete under either regime; it then starts the 48-hour clock.
Otherwise it is kept as *incomplete* and the requester completes it from the status page.

**TAKE IT DOWN Act** (Pub. L. 119-12, sec. 3(a)(1)(B); 47 U.S.C. 223a(a)(1)(B)): a notification
and request for removal "shall include, in writing" --

(i) "a physical or electronic signature of the identifiable individual (or an authorized person
    acting on behalf of such individual)" -> keys ``signature`` (the typed full name) and
    ``signature_confirmed`` (the person confirms that typing it is their signature), and, for a
    representative, ``authority`` (on what authority they act);
(ii) "an identification of, and information reasonably sufficient for the covered platform to
    locate, the intimate visual depiction" -> ``location`` (links to, or content ids of, the
    content on this platform);
(iii) "a brief statement that the identifiable individual has a good faith belief that any
    intimate visual depiction identified ... is not consensual, including any relevant
    information for the covered platform to determine [it] was published without the consent of
    the identifiable individual" -> ``good_faith``;
(iv) "information sufficient to enable the covered platform to contact the identifiable
    individual (or an authorized person acting on behalf of such individual)" -> ``contact``.

Sec. 3(a)(3) then requires removal "as soon as possible, but not later than 48 hours after
receiving such a request", and reasonable efforts to remove known identical copies.

**DSA Art. 16(2)** (Regulation (EU) 2022/2065): notice mechanisms must facilitate notices
containing --

(a) "a sufficiently substantiated explanation of the reasons why the individual or entity
    alleges the information in question to be illegal content" -> ``explanation``;
(b) "a clear indication of the exact electronic location of that information, such as the exact
    URL or URLs" -> ``exact_location`` (a URL on the platform, or the platform's own content
    id: an id names the exact item as precisely as its URL does, and the form offers both);
(c) "the name and email address of the individual or entity submitting the notice" -> ``name``,
    ``email``;
(d) "a statement confirming the bona fide belief of the individual or entity submitting the
    notice that the information and allegations contained therein are accurate and complete"
    -> ``accuracy``.

**Per item.** Each content line is judged on its own (:class:`ItemProblem`): a link that the
platform's ``content_url_pattern`` does not recognise is not on the platform. Such a line does
not hold back the rest: the location elements are met by the lines that are fine, the clock
starts for those, and each bad line is listed (``item_problems``) with what to fix.

The DSA does not itself ask a representative for their authority; dignity does (``authority``
under both regimes), because the outcome goes to the representative and it is the depicted
person's consent that is at stake. Malformed input (a value outside a choice list, a field over
its length cap, more than :data:`MAX_ITEMS` content lines, an unreadable line) is not "missing":
:func:`normalize` refuses it with a :class:`TakedownError`, so nothing is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from typing import Any

from dignity.errors import Conflict, DignityError, Forbidden, NotFound, Refused, Unavailable
from dignity.settings import Settings

REQUESTER_KINDS = ("self", "representative")
AI_MADE = ("real", "ai", "unknown")
JURISDICTIONS = ("US", "EU", "UK", "other")
MAX_ITEMS = 50
# Caps on each text field, in characters: generous for a person, small for a flood.
MAX_LENGTHS: dict[str, int] = {
    "requester_name": 200,
    "requester_contact": 320,
    "authority_statement": 4000,
    "description": 8000,
    "signature_name": 200,
}
MAX_REF = 2048
MAX_CONTENT_ID = 255
MIN_EXPLANATION = 30
MIN_AUTHORITY = 10

_SCHEME = re.compile(r"\A([A-Za-z][A-Za-z0-9+.\-]*)://")
_EMAIL = re.compile(r"[^@\s,;<>()]+@[^@\s,;<>()]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"\+?[\d][\d\s().\-]{5,}\d")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # newlines and tabs are fine


class TakedownError(DignityError):
    """A takedown request or action was refused: malformed input, wrong ticket or access code,
    suspended requester, a request already closed, an unknown request."""


class TakedownRefused(TakedownError, Refused):
    """A takedown form or action that is malformed or does not fit the request."""

    codes = (
        "takedown.invalid",
        "takedown.bad_content",
        "takedown.bad_fingerprint",
        "takedown.bad_state",
        "takedown.reason_required",
        "takedown.too_long",
        "takedown.too_many_items",
        "takedown.unknown_field",
    )


class TakedownForbidden(TakedownError, Forbidden):
    """A wrong ticket or access code, or a suspended requester."""

    codes = ("takedown.bad_credentials", "takedown.suspended")


class TakedownConflict(TakedownError, Conflict):
    """A request already closed, or not waiting for more information."""

    codes = ("takedown.closed", "takedown.not_incomplete")


class TakedownNotFound(TakedownError, NotFound):
    """No takedown request (or flag) with that id."""

    codes = ("takedown.not_found", "takedown.flag_not_found")


class TakedownUnavailable(TakedownError, Unavailable):
    """Takedowns cannot be taken now: the server is busy or not set up for them."""

    codes = ("takedown.busy", "takedown.bad_setting")


@dataclass(frozen=True)
class RequestForm:
    """What a requester (or a trusted flagger) sends. ``content`` lists URLs or content ids."""

    requester_kind: str = "self"
    requester_name: str = ""
    requester_contact: str = ""
    authority_statement: str = ""
    content: tuple[str, ...] = ()
    description: str = ""
    good_faith: bool = False
    signature_name: str = ""
    signature_confirmed: bool = False
    ai_made: str = "unknown"
    jurisdiction: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.content, tuple):  # a list from JSON; keep the value hashable
            object.__setattr__(self, "content", tuple(self.content))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RequestForm:
        """Build a form from a mapping of its field names; an unknown name is refused."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise TakedownRefused(
                f"unknown field(s): {', '.join(unknown)[:200]}",
                code="takedown.unknown_field",
                fields=unknown[:20],
            )
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["content"] = list(self.content)
        return out


@dataclass(frozen=True)
class Missing:
    """One element a regime needs that the request lacks."""

    key: str
    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"key": self.key, "field": self.field, "message": self.message}


@dataclass(frozen=True)
class ItemProblem:
    """One content line that cannot be acted on, and what to do about it (the shape of
    :class:`Missing`, so a page lists both the same way)."""

    ref: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"key": "content_item", "field": "content", "ref": self.ref, "message": self.message}


@dataclass(frozen=True)
class RegimeCheck:
    """The result for one legal regime."""

    regime: str
    title: str
    missing: tuple[Missing, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.missing

    def keys(self) -> tuple[str, ...]:
        return tuple(m.key for m in self.missing)

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "valid": self.valid,
            "missing": [m.to_dict() for m in self.missing],
        }


TAKE_IT_DOWN = "take_it_down"
DSA_ART16 = "dsa_art16"
TITLES = {
    TAKE_IT_DOWN: "US TAKE IT DOWN Act (47 U.S.C. 223a)",
    DSA_ART16: "EU Digital Services Act, Art. 16(2)",
}


@dataclass(frozen=True)
class Validity:
    """Both regimes' results; a request is valid when either is complete."""

    take_it_down: RegimeCheck
    dsa_art16: RegimeCheck
    # Content lines that cannot be acted on; the request may be valid without them.
    item_problems: tuple[ItemProblem, ...] = ()

    @property
    def valid(self) -> bool:
        return self.take_it_down.valid or self.dsa_art16.valid

    def problem_refs(self) -> set[str]:
        return {p.ref for p in self.item_problems}

    @property
    def missing(self) -> tuple[Missing, ...]:
        """Everything either regime lacks, each key once, in the order the form asks for it."""
        seen: dict[str, Missing] = {}
        for m in (*self.take_it_down.missing, *self.dsa_art16.missing):
            seen.setdefault(m.key, m)
        return tuple(seen.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            TAKE_IT_DOWN: self.take_it_down.to_dict(),
            DSA_ART16: self.dsa_art16.to_dict(),
            "item_problems": [p.to_dict() for p in self.item_problems],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Validity:
        def regime(name: str) -> RegimeCheck:
            part = data.get(name) or {}
            missing = tuple(
                Missing(str(m.get("key", "")), str(m.get("field", "")), str(m.get("message", "")))
                for m in part.get("missing", ())
                if isinstance(m, Mapping)
            )
            return RegimeCheck(name, str(part.get("title", TITLES[name])), missing)

        problems = tuple(
            ItemProblem(str(p.get("ref", "")), str(p.get("message", "")))
            for p in data.get("item_problems") or ()
            if isinstance(p, Mapping)
        )
        return cls(regime(TAKE_IT_DOWN), regime(DSA_ART16), problems)


@dataclass(frozen=True)
class ContentRef:
    """One content line: as given, whether it is a URL, and the content id it resolves to."""

    ref: str
    is_url: bool
    content_id: str | None = field(default=None)

    @property
    def on_platform(self) -> bool:
        """Whether we know which content of the platform this is."""
        return self.content_id is not None


@lru_cache(maxsize=8)
def _pattern(text: str) -> re.Pattern[str]:
    try:
        compiled = re.compile(text)
    except re.error as exc:
        raise TakedownUnavailable(
            f"the content_url_pattern setting is not a valid regular expression: {exc}",
            code="takedown.bad_setting",
        ) from exc
    if "content_id" not in compiled.groupindex:
        raise TakedownUnavailable(
            "the content_url_pattern setting needs a named group (?P<content_id>...)",
            code="takedown.bad_setting",
        )
    return compiled


def resolve(ref: str, settings: Settings) -> ContentRef:
    """What a (normalised) content line points at: a URL that matches the platform's
    ``content_url_pattern`` resolves to its content id; a URL that does not stays unresolved; any
    other line is taken to be a content id of the platform."""
    if not _SCHEME.match(ref):
        return ContentRef(ref, False, ref)
    if settings.content_url_pattern:
        m = _pattern(settings.content_url_pattern).match(ref)
        found = m.group("content_id") if m else None
        if found and len(found) <= MAX_CONTENT_ID:
            return ContentRef(ref, True, found)
    return ContentRef(ref, True, None)


def _text(name: str, value: object, *, multiline: bool) -> str:
    if not isinstance(value, str):
        raise TakedownRefused(f"{name} must be text", code="takedown.invalid", field=name)
    text = value.strip()
    if len(text) > MAX_LENGTHS[name]:
        raise TakedownRefused(
            f"{name.replace('_', ' ')} is longer than {MAX_LENGTHS[name]} characters",
            code="takedown.too_long",
            field=name,
            limit=MAX_LENGTHS[name],
        )
    bad = _CONTROL_TEXT if multiline else _CONTROL
    if bad.search(text):
        raise TakedownRefused(
            f"{name.replace('_', ' ')} contains control characters",
            code="takedown.invalid",
            field=name,
        )
    return text


def _choice(name: str, value: object, allowed: Sequence[str], *, fold: bool = False) -> str:
    if not isinstance(value, str):
        raise TakedownRefused(f"{name} must be text", code="takedown.invalid", field=name)
    text = value.strip()
    if fold:
        lookup = {a.lower(): a for a in allowed}
        text = lookup.get(text.lower(), text)
    if text not in allowed:
        raise TakedownRefused(
            f"{name.replace('_', ' ')} must be one of {', '.join(allowed)}; got {text[:40]!r}",
            code="takedown.invalid",
            field=name,
            allowed=list(allowed),
        )
    return text


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TakedownRefused(f"{name} must be true or false", code="takedown.invalid", field=name)
    return value


def normalize_refs(lines: Iterable[object]) -> tuple[str, ...]:
    """Content lines trimmed, blank ones dropped, duplicates dropped (first kept), checked."""
    out: list[str] = []
    seen: set[str] = set()
    for n, raw in enumerate(lines, start=1):
        if not isinstance(raw, str):
            raise TakedownRefused(
                f"content line {n} must be text", code="takedown.bad_content", line=n
            )
        ref = raw.strip()
        if not ref:
            continue
        if ref.lower().startswith("www."):
            ref = "https://" + ref  # what people paste from an address bar
        scheme = _SCHEME.match(ref)
        limit = MAX_REF if scheme else MAX_CONTENT_ID
        if len(ref) > limit:
            raise TakedownRefused(
                f"content line {n} is longer than {limit} characters",
                code="takedown.bad_content",
                line=n,
            )
        if scheme and scheme.group(1).lower() not in ("http", "https"):
            raise TakedownRefused(
                f"content line {n}: only http and https links can be reported",
                code="takedown.bad_content",
                line=n,
            )
        if any(c.isspace() for c in ref) or _CONTROL.search(ref):
            raise TakedownRefused(
                f"content line {n} has spaces in it: put one link or content id on each line",
                code="takedown.bad_content",
                line=n,
            )
        if ref not in seen:
            seen.add(ref)
            out.append(ref)
        if len(out) > MAX_ITEMS:
            raise TakedownRefused(
                f"at most {MAX_ITEMS} links or content ids in one request",
                code="takedown.too_many_items",
                limit=MAX_ITEMS,
            )
    return tuple(out)


def normalize(form: RequestForm) -> RequestForm:
    """The form with text trimmed, choices canonical and content lines checked; raises
    :class:`TakedownError` (nothing written) when a value is malformed rather than missing."""
    content = form.content
    if isinstance(content, str):
        content = tuple(content.splitlines())
    if not isinstance(content, Sequence):
        raise TakedownRefused("content must be a list", code="takedown.invalid", field="content")
    return replace(
        form,
        requester_kind=_choice("requester_kind", form.requester_kind, REQUESTER_KINDS, fold=True),
        requester_name=_text("requester_name", form.requester_name, multiline=False),
        requester_contact=_text("requester_contact", form.requester_contact, multiline=False),
        authority_statement=_text("authority_statement", form.authority_statement, multiline=True),
        content=normalize_refs(content),
        description=_text("description", form.description, multiline=True),
        good_faith=_bool("good_faith", form.good_faith),
        signature_name=_text("signature_name", form.signature_name, multiline=False),
        signature_confirmed=_bool("signature_confirmed", form.signature_confirmed),
        ai_made=_choice("ai_made", form.ai_made, AI_MADE, fold=True),
        jurisdiction=_jurisdiction(form.jurisdiction),
    )


def _jurisdiction(value: object) -> str:
    """One of :data:`JURISDICTIONS`, or empty when the requester did not say."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return ""
    return _choice("jurisdiction", value, JURISDICTIONS, fold=True)


def email_in(contact: str) -> str | None:
    m = _EMAIL.search(contact)
    return m.group(0) if m else None


def phone_in(contact: str) -> str | None:
    m = _PHONE.search(contact)
    if m is None:
        return None
    digits = re.sub(r"\D", "", m.group(0))
    return m.group(0) if len(digits) >= 7 else None


def _few(refs: Sequence[str]) -> str:
    shown = ", ".join(refs[:3])
    return shown + (f" and {len(refs) - 3} more" if len(refs) > 3 else "")


def item_problems(content: Sequence[str], settings: Settings) -> tuple[ItemProblem, ...]:
    """The content lines that cannot be acted on, each with what to fix: a link that the
    platform's ``content_url_pattern`` says is not on the platform. Without a pattern every
    link is taken as given (the reviewer sees it), and any other line is a content id."""
    if not settings.content_url_pattern:
        return ()
    platform = settings.platform_name
    return tuple(
        ItemProblem(
            r.ref,
            f"This link is not to a post on {platform}: check that it is the address of the "
            f"post on {platform} itself, or give its content id instead.",
        )
        for r in (resolve(ref, settings) for ref in content)
        if r.is_url and not r.on_platform
    )


def check(form: RequestForm, settings: Settings) -> Validity:
    """What ``form`` (already :func:`normalize`\\ d) lacks under each regime. Pure."""
    platform = settings.platform_name
    problems = item_problems(form.content, settings)
    bad = {p.ref for p in problems}
    # Only the lines that can be acted on count towards the location elements.
    refs = [resolve(r, settings) for r in form.content if r not in bad]
    representative = form.requester_kind == "representative"

    signature = (
        []
        if form.signature_name
        else [
            Missing(
                "signature",
                "signature_name",
                "Type your full name as your signature"
                + (
                    " (your own name, as the authorised representative)." if representative else "."
                ),
            )
        ]
    )
    if not form.signature_confirmed:
        signature.append(
            Missing(
                "signature_confirmed",
                "signature_confirmed",
                "Tick the box to confirm that your typed name is your signature.",
            )
        )
    authority = (
        [
            Missing(
                "authority",
                "authority_statement",
                "Say on what authority you act for the person shown (for example: their "
                "lawyer, their parent or guardian, or with their written permission).",
            )
        ]
        if representative and len(form.authority_statement) < MIN_AUTHORITY
        else []
    )

    # TAKE IT DOWN (ii): enough to identify and locate the content on this platform.
    if not refs:
        location = [
            Missing(
                "location",
                "content",
                f"List at least one link to, or content id of, the image or video on {platform}"
                + (f" (these are not on {platform}: {_few(sorted(bad))})." if bad else "."),
            )
        ]
    else:
        location = []
    good_faith = (
        []
        if form.good_faith
        else [
            Missing(
                "good_faith",
                "good_faith",
                "Tick the box to confirm you believe in good faith that the content was "
                "published without the consent of the person shown.",
            )
        ]
    )
    contact = (
        []
        if email_in(form.requester_contact) or phone_in(form.requester_contact)
        else [
            Missing(
                "contact",
                "requester_contact",
                "Give an email address or phone number where we can reach you about this request.",
            )
        ]
    )
    take_it_down = RegimeCheck(
        TAKE_IT_DOWN,
        TITLES[TAKE_IT_DOWN],
        tuple([*signature, *authority, *location, *good_faith, *contact]),
    )

    explanation = (
        []
        if len(form.description) >= MIN_EXPLANATION
        else [
            Missing(
                "explanation",
                "description",
                "Explain in a sentence or two why the content is illegal (for example: an "
                "intimate image of me, shared without my consent, or an AI-made fake of me).",
            )
        ]
    )
    exact = (
        [
            Missing(
                "exact_location",
                "content",
                f"Give the exact web address (URL) or content id on {platform} of each image "
                "or video.",
            )
        ]
        if not refs
        else []
    )
    name = (
        []
        if form.requester_name
        else [
            Missing(
                "name",
                "requester_name",
                "Give your name (or your organisation's name).",
            )
        ]
    )
    email = (
        []
        if email_in(form.requester_contact)
        else [
            Missing(
                "email",
                "requester_contact",
                "Give an email address (the EU Digital Services Act asks for a name and an email).",
            )
        ]
    )
    accuracy = (
        []
        if form.good_faith
        else [
            Missing(
                "accuracy",
                "good_faith",
                "Tick the box to confirm you believe the information in this request is "
                "accurate and complete.",
            )
        ]
    )
    dsa = RegimeCheck(
        DSA_ART16,
        TITLES[DSA_ART16],
        tuple([*explanation, *exact, *name, *email, *accuracy, *authority]),
    )
    return Validity(take_it_down, dsa, problems)


__all__ = [
    "AI_MADE",
    "DSA_ART16",
    "JURISDICTIONS",
    "MAX_ITEMS",
    "MAX_LENGTHS",
    "REQUESTER_KINDS",
    "TAKE_IT_DOWN",
    "ContentRef",
    "ItemProblem",
    "Missing",
    "RegimeCheck",
    "RequestForm",
    "TakedownError",
    "Validity",
    "check",
    "email_in",
    "item_problems",
    "normalize",
    "normalize_refs",
    "phone_in",
    "resolve",
]
