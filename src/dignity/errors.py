"""The one exception tree dignity's library raises, each class with a stable ``code``.

Callers (the CLI, later the HTTP API) map codes to exit statuses or HTTP statuses in one place
each, so a code, once published, never changes meaning. The tree::

    DignityError                      dignity.error; also request.*, rate.limited, server.busy
    ├── MediaError                    media.*      (bad or unsupported input bytes)
    ├── HashError                     hash.*       (malformed hash strings, unknown signal types)
    ├── BankError                     bank.*       (bank names, thresholds, duplicates)
    │   └── NotFoundError             *.not_found  (a bank, entry, key, webhook or event)
    ├── ImportFormatError             import.*     (a line of a bulk import that cannot be read)
    ├── StorageError                  storage.*    (database unreachable or schema out of date)
    ├── AuthError (keys.py)           auth.*       (no key, bad or revoked key, wrong role)
    ├── UrlError (fetch.py)           url.*        (hash-by-URL refused or failed)
    ├── WebhookError, EventError,     webhook.*, event.*  (actions/: webhooks and the outbox)
    │   SignatureError (actions/)
    ├── PolicyError (policy/rules.py) policy.invalid (a policy file with mistakes, all listed)
    ├── CaseError (cases/service.py)  case.*       (bad hashes, wrong number/PIN, locked case)
    ├── ExchangeError (exchanges/)    exchange.*   (exchange config, credentials, busy, feedback)
    ├── SourceError, FeatureError     source.*     (derivatives/: consent record, photo too plain)
    ├── SignalConfigError             config.signals (signal plug-ins that cannot be set up)
    │   (signals/runner.py)
    ├── TakedownError (takedown/)     takedown.*   (requests: bad form, wrong code, suspended)
    ├── RemovalError, NoticeError     removal.*, statement.*, appeal.*  (removals, statements,
    │   (takedown/)                   appeals: unknown, closed, same reviewer, window over)
    ├── ReviewError, SessionError     review.*, session.*  (review queue decisions, previews,
    │   (takedown/)                   reviewer sign-in)
    ├── ReportError (takedown/)       report.*     (transparency report periods, output)
    └── AuditError (audit/)           audit.*      (a broken chain, bad anchors, no head row)

Each lives next to the code that raises it; ``api/errors.py`` maps every code to an HTTP status.
"""

from __future__ import annotations

from typing import Any


class DignityError(Exception):
    """Base of every error dignity raises on purpose: a stable ``code`` and a ``message``."""

    default_code = "dignity.error"

    def __init__(self, message: str, *, code: str | None = None, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.detail: dict[str, Any] = detail

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail:
            out["detail"] = self.detail
        return out

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class MediaError(DignityError):
    """The bytes could not be turned into pixels: empty, too big, not an image, truncated, ..."""

    default_code = "media.invalid"


class HashError(DignityError):
    """A hash value or signal type is malformed."""

    default_code = "hash.invalid"


class BankError(DignityError):
    """A bank operation was refused (bad name, threshold out of range, name taken)."""

    default_code = "bank.invalid"


class NotFoundError(BankError):
    """A bank or entry named by the caller does not exist."""

    default_code = "bank.not_found"


class ImportFormatError(DignityError):
    """A line of a bulk import file could not be parsed; nothing from that file was written."""

    default_code = "import.invalid"


class StorageError(DignityError):
    """The database could not be opened or migrated."""

    default_code = "storage.error"
