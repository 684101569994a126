"""The one exception tree dignity raises on purpose: each class owns stable ``codes``, and its
place in the tree says what happened, which fixes the HTTP status and the CLI exit status.

Two axes meet in a raised class. The *category* (what happened) is one of the classes directly
under :class:`DignityError`; it carries ``http_status`` and ``exit_code``, so ``api/errors.py``
and the CLI read both from the exception and keep no table of codes. The *domain* (where it
happened: a bank, a case, a review item, ...) is an optional second base to catch by; domains
own no codes and are never raised themselves. A code belongs to exactly one class, the one that
lists it in its own ``codes`` (the first is its default); raising a class with a code it does
not own is a ``TypeError``, and two classes claiming one code fail at import. The tree, each
category with its status, each class with its codes (``.x`` repeats the prefix before it)::

    DignityError                500, exit 3; never raised itself
    ├── BadRequest              400  http.error (a refusal the web framework answered itself)
    │   ├── InputError          input.not_found, .unreadable (files named on the command line)
    │   ├── PolicyError         policy.invalid (policy/rules.py)
    │   ├── SignalConfigError   config.signals (signals/runner.py)
    │   ├── ExchangeError       exchange.* (exchanges/base.py: CLI and workers only)
    │   └── AuditBadRequest     audit.bad_anchor, .bad_since, .bad_output, .broken
    ├── Refused                 422  the input was read but breaks a rule
    │   ├── MediaRefused        media.not_an_image, .empty, .unsupported_format, .truncated,
    │   │                       .corrupt, .not_a_video
    │   ├── XmpError            media.bad_xmp (signals/xmp.py; recorded, never answered)
    │   ├── HashError           hash.invalid, .malformed, .unknown_signal, .low_quality
    │   ├── BankRefused         bank.bad_name, .bad_purpose, .bad_threshold, .bad_text,
    │   │                       .bad_origin, .bad_format, .bad_ratio
    │   ├── ImportFormatError   import.bad_line
    │   ├── RequestRefused      request.invalid, .bad_text, .bad_content_id, .bad_uploader
    │   ├── UrlRefused          url.invalid, .forbidden_host, .forbidden_address, .unresolvable,
    │   │                       .too_many_redirects, .too_large, .unavailable
    │   ├── KeyRefused          key.bad_role, .bad_rate (keys.py)
    │   ├── WebhookRefused      webhook.bad_url, .bad_secret, .bad_events, .bad_text
    │   ├── SignatureError      webhook.bad_signature, .bad_timestamp, .stale_timestamp
    │   ├── EventRefused        event.bad_type, .bad_status (actions/)
    │   ├── CaseRefused         case.bad_hash, .no_hashes, .too_many_hashes, .low_quality,
    │   │                       .not_adult, .internal (cases/service.py)
    │   ├── SourceRefused       source.bad_subject, .bad_consent_by, .bad_for_whom
    │   ├── FeatureError        source.too_plain (derivatives/)
    │   ├── TakedownRefused     takedown.invalid, .bad_content, .bad_fingerprint, .bad_state,
    │   │                       .reason_required, .too_long, .too_many_items, .unknown_field
    │   ├── RemovalRefused      removal.no_content
    │   ├── NoticeRefused       appeal.bad_text, .bad_outcome, .bad_state, .no_actor;
    │   │                       statement.bad_period
    │   ├── ReviewRefused       review.bad_kind, .bad_outcome, .note_required, .note_too_long,
    │   │                       .gone
    │   ├── ReportError         report.bad_period, .bad_date, .output (takedown/)
    │   └── JobRefused          job.bad_kind, .bad_payload, .bad_filter (jobs/)
    ├── Unauthenticated         401
    │   ├── AuthUnauthenticated auth.invalid_key, .missing_key (keys.py)
    │   └── SessionUnauthenticated  session.missing, .expired, .revoked, .bad_key
    ├── Forbidden               403
    │   ├── AuthForbidden       auth.forbidden
    │   ├── SessionForbidden    session.role; review.csrf
    │   ├── CaseForbidden       case.bad_credentials
    │   ├── TakedownForbidden   takedown.bad_credentials, .suspended
    │   └── NoticeForbidden     appeal.bad_code, .same_reviewer
    ├── NotFound                404  not_found (a page, asset or route)
    │   ├── BankNotFound        bank.not_found; entry.not_found
    │   ├── ScanNotFound        scan.not_found
    │   ├── KeyNotFound         key.not_found
    │   ├── WebhookNotFound     webhook.not_found
    │   ├── EventNotFound       event.not_found
    │   ├── CaseNotFound        case.not_found
    │   ├── SourceNotFound      source.not_found
    │   ├── TakedownNotFound    takedown.not_found, .flag_not_found
    │   ├── RemovalNotFound     removal.not_found
    │   ├── NoticeNotFound      statement.not_found; appeal.not_found
    │   ├── ReviewNotFound      review.not_found, .no_preview, .preview_missing
    │   └── JobNotFound         job.not_found
    ├── MethodNotAllowed        405  method_not_allowed
    ├── Conflict                409
    │   ├── BankExists          bank.exists
    │   ├── TakedownConflict    takedown.closed, .not_incomplete
    │   ├── RemovalConflict     removal.request_incomplete, .request_closed
    │   ├── NoticeConflict      appeal.window_closed, .already_open, .already_decided, .restored
    │   ├── ReviewConflict      review.decided
    │   └── JobConflict         job.finished
    ├── TooLarge                413
    │   ├── MediaTooLarge       media.too_large, .too_many_pixels, .too_long,
    │   │                       .too_many_streams, .decode_timeout, .video_too_long_for_sync,
    │   │                       .too_many_frames, .too_costly
    │   └── RequestTooLarge     request.too_large
    ├── UnsupportedMediaType    415
    │   └── RequestUnsupported  request.unsupported_media_type
    ├── RateLimited             429  rate.limited
    │   └── CaseLocked          case.locked
    ├── Internal                500  internal (any exception that is not a DignityError)
    │   └── AuditInternal       audit.bad_action
    ├── UpstreamFailed          502  a server dignity fetched from failed
    │   ├── UrlFailed           url.fetch_failed, .http_error
    │   ├── RemovalFailed       removal.fetch_failed
    │   ├── ReviewFailed        review.preview_failed, .preview_too_large
    │   └── UpstreamTimeout     504
    │       ├── UrlTimeout      url.timeout
    │       └── ReviewTimeout   review.preview_timeout
    └── Unavailable             503  server.busy
        ├── RequestTimeout      request.timeout
        ├── TakedownUnavailable takedown.busy, .bad_setting
        ├── AuditUnavailable    audit.no_head
        ├── SnapshotError       index.bad_snapshot (matching/index.py; the engine rebuilds)
        └── StorageError        storage.unavailable, .bad_url: exit 4, the only one

The domains (second bases): MediaError (MediaRefused, MediaTooLarge, XmpError), BankError,
RequestError, UrlError, AuthError, SessionError, WebhookError, EventError, CaseError,
SourceError, TakedownError, RemovalError, NoticeError, ReviewError, AuditError, each over the
classes named after it. Categories and the core domains (media, hashes, banks, requests, URLs,
storage) live here, so they are always registered; the others live next to the code that
raises them. README's "Error codes are stable" list names every code, and
tests/unit/test_errors.py checks list, source and tree against each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Final

EXIT_REFUSED: Final = 3
"""The CLI's exit status for a refused request (see README, "Exit statuses")."""
EXIT_STORAGE: Final = 4
"""The CLI's exit status when the database cannot be used."""

_OWNERS: dict[str, type[DignityError]] = {}


class DignityError(Exception):
    """Base of every error dignity raises on purpose: a stable ``code`` and a ``message``.

    Subclasses list the codes they own in ``codes``; the first is the default. ``detail`` is
    JSON-ready context (a field name, a limit, ``retry_after`` seconds) sent with the error.
    """

    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = EXIT_REFUSED
    codes: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for code in cls.__dict__.get("codes", ()):
            owner = _OWNERS.setdefault(code, cls)
            # A module imported twice (importlib.reload) redefines the same class: not a clash.
            same = (owner.__module__, owner.__qualname__) == (cls.__module__, cls.__qualname__)
            if not same:
                raise TypeError(
                    f"error code {code!r} belongs to {owner.__qualname__} and "
                    f"{cls.__qualname__}; a code has exactly one class"
                )
            _OWNERS[code] = cls

    def __init__(self, message: str, *, code: str | None = None, **detail: Any) -> None:
        own: tuple[str, ...] = type(self).__dict__.get("codes", ())
        if not own:
            raise TypeError(
                f"{type(self).__qualname__} owns no error code; raise one of its subclasses"
            )
        if code is None:
            code = own[0]
        elif code not in own:
            raise TypeError(
                f"error code {code!r} does not belong to {type(self).__qualname__} "
                f"(its codes: {', '.join(own)})"
            )
        super().__init__(message)
        self.message = message
        self.code = code
        self.detail: dict[str, Any] = detail

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail:
            out["detail"] = self.detail
        return out

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def error_class(code: str) -> type[DignityError]:
    """The class that owns ``code``, for helpers that take a code (``clean_text``); LookupError
    for a code that no imported class owns, since a class registers when its module loads."""
    try:
        return _OWNERS[code]
    except KeyError:
        raise LookupError(f"no error class owns the code {code!r}") from None


def owners() -> Mapping[str, type[DignityError]]:
    """Every code of the classes imported so far, with its class (read-only)."""
    return MappingProxyType(_OWNERS)


# -- categories: what happened ----------------------------------------------------------------


class BadRequest(DignityError):
    """Input or configuration refused by the CLI, a worker or a tool before it reached a rule
    with a status of its own; ``http.error`` is an HTTP refusal the framework answered itself."""

    http_status = 400
    codes: ClassVar[tuple[str, ...]] = ("http.error",)


class Refused(DignityError):
    """The input was read but breaks a rule: malformed, out of range, not allowed."""

    http_status = 422


class Unauthenticated(DignityError):
    """No credentials, or credentials that are not (or no longer) valid."""

    http_status = 401


class Forbidden(DignityError):
    """Known credentials that may not do this: wrong role, wrong code, suspended."""

    http_status = 403


class NotFound(DignityError):
    """The thing named does not exist (or is not offered here): a bank, case, page, ..."""

    http_status = 404
    codes: ClassVar[tuple[str, ...]] = ("not_found",)


class MethodNotAllowed(DignityError):
    """An HTTP method the route does not take."""

    http_status = 405
    codes: ClassVar[tuple[str, ...]] = ("method_not_allowed",)


class Conflict(DignityError):
    """The request is well formed but the thing's state refuses it: a name taken, a request
    already closed, a second decision."""

    http_status = 409


class TooLarge(DignityError):
    """A body, file or image over a configured limit."""

    http_status = 413


class UnsupportedMediaType(DignityError):
    """A body in a content type the route does not read."""

    http_status = 415


class RateLimited(DignityError):
    """Too many requests or tries; ``detail["retry_after"]`` says when to try again."""

    http_status = 429
    codes: ClassVar[tuple[str, ...]] = ("rate.limited",)


class Internal(DignityError):
    """A fault in dignity itself; ``internal`` is any unexpected exception, never a trace."""

    http_status = 500
    codes: ClassVar[tuple[str, ...]] = ("internal",)


class UpstreamFailed(DignityError):
    """A remote server that dignity fetched from failed or answered an error."""

    http_status = 502


class UpstreamTimeout(UpstreamFailed):
    """A remote server did not answer within the time budget."""

    http_status = 504


class Unavailable(DignityError):
    """This server cannot serve the request now (busy, not set up, missing state); a retry
    may succeed, ``detail["retry_after"]`` says when if known."""

    http_status = 503
    codes: ClassVar[tuple[str, ...]] = ("server.busy",)


CATEGORIES: Final[tuple[type[DignityError], ...]] = (
    BadRequest,
    Refused,
    Unauthenticated,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    TooLarge,
    UnsupportedMediaType,
    RateLimited,
    Internal,
    UpstreamFailed,
    Unavailable,
)
"""The classes directly under DignityError; every raised class descends from exactly one."""


# -- the core domains: where it happened -----------------------------------------------------


class InputError(BadRequest):
    """A file named on the command line is missing or cannot be read."""

    codes = ("input.not_found", "input.unreadable")


class MediaError(DignityError):
    """The bytes could not be turned into pixels: empty, too big, not an image, truncated, ..."""


class MediaRefused(MediaError, Refused):
    """Bytes that are not a usable image or video."""

    codes = (
        "media.not_an_image",
        "media.empty",
        "media.unsupported_format",
        "media.truncated",
        "media.corrupt",
        "media.not_a_video",
    )


class MediaTooLarge(MediaError, TooLarge):
    """A file over the byte limit, an image or video frame over the pixel limit, a video over
    the duration limit, with too many streams, too slow to decode, or too long to scan in a
    synchronous request (``media.video_too_long_for_sync``: the background route takes it)."""

    codes = (
        "media.too_large",
        "media.too_many_pixels",
        "media.too_long",
        "media.too_many_streams",
        "media.decode_timeout",
        "media.video_too_long_for_sync",
        "media.too_many_frames",
        "media.too_costly",
    )


class HashError(Refused):
    """A hash value or signal type is malformed, unknown or of too low quality."""

    codes = ("hash.invalid", "hash.malformed", "hash.unknown_signal", "hash.low_quality")


class BankError(DignityError):
    """A bank or entry operation was refused."""


class BankRefused(BankError, Refused):
    """A bank name, purpose, threshold, text or format that is not allowed."""

    codes = (
        "bank.bad_name",
        "bank.bad_purpose",
        "bank.bad_threshold",
        "bank.bad_text",
        "bank.bad_origin",
        "bank.bad_format",
        "bank.bad_ratio",
    )


class BankNotFound(BankError, NotFound):
    """A bank or entry named by the caller does not exist."""

    codes = ("bank.not_found", "entry.not_found")


class BankExists(BankError, Conflict):
    """A bank of that name exists already."""

    codes = ("bank.exists",)


class ImportFormatError(Refused):
    """A line of a bulk import file could not be parsed; nothing from that file was written."""

    codes = ("import.bad_line",)


class RequestError(DignityError):
    """An HTTP request (or a query shared by HTTP and CLI) whose shape is refused."""


class RequestRefused(RequestError, Refused):
    """A request that is not valid: a bad field, body, cursor or identifier."""

    codes = (
        "request.invalid",
        "request.bad_text",
        "request.bad_content_id",
        "request.bad_uploader",
    )


class RequestTooLarge(RequestError, TooLarge):
    """A request body over its limit."""

    codes = ("request.too_large",)


class RequestUnsupported(RequestError, UnsupportedMediaType):
    """A request body in a content type the route does not read."""

    codes = ("request.unsupported_media_type",)


class RequestTimeout(RequestError, Unavailable):
    """The request ran past the server's time budget; the client may retry."""

    codes = ("request.timeout",)


class UrlError(DignityError):
    """A URL could not be fetched safely (``dignity.fetch``, whose dependencies are optional,
    so these live here). Codes (stable):

    ``url.invalid`` unparseable, not http(s), userinfo, bad port; ``url.forbidden_host`` host not
    on the allow-list; ``url.forbidden_address`` resolves to a non-public address;
    ``url.unresolvable`` DNS failed; ``url.too_many_redirects``; ``url.too_large`` body over the
    limit; ``url.timeout`` the overall deadline passed; ``url.http_error`` a final status that is
    not 2xx; ``url.fetch_failed`` connection, TLS or protocol failure.
    """


class UrlRefused(UrlError, Refused):
    """A URL refused before or while fetching: malformed, forbidden, unresolvable, too big,
    too many redirects, or no fetcher on this server (``url.unavailable``)."""

    codes = (
        "url.invalid",
        "url.forbidden_host",
        "url.forbidden_address",
        "url.unresolvable",
        "url.too_many_redirects",
        "url.too_large",
        "url.unavailable",
    )


class UrlFailed(UrlError, UpstreamFailed):
    """The remote server failed: connection, TLS, protocol, or a final status that is not 2xx."""

    codes = ("url.fetch_failed", "url.http_error")


class UrlTimeout(UrlError, UpstreamTimeout):
    """The fetch ran past its time budget."""

    codes = ("url.timeout",)


class ScanNotFound(NotFound):
    """A scan id that the scan log does not hold."""

    codes = ("scan.not_found",)


class StorageError(Unavailable):
    """The database could not be opened, reached or migrated: the one exit status 4."""

    exit_code = EXIT_STORAGE
    codes = ("storage.unavailable", "storage.bad_url")
