"""Column types shared by every models module: :class:`UtcDateTime`, a timestamp that goes into
the database as UTC and always comes out as an aware UTC datetime, and :func:`utc`, the one rule
for turning any datetime (a value from a clock, a parsed query string, a line of an export) into
that form.

SQLite has no time zone type: SQLAlchemy writes the wall-clock digits of whatever datetime it is
given and reads them back naive, so an aware non-UTC value would be stored as the wrong instant
and every reader had to re-attach UTC by hand. PostgreSQL's ``timestamptz`` keeps the instant but
hands it back in the connection's time zone. :class:`UtcDateTime` wraps
``DateTime(timezone=True)`` (the DDL the migrations already create, so no schema change) and
normalises both directions, so model attributes, ``select(...)`` column tuples and
``func.min``/``func.max`` of a column (which keep the column's type) are aware UTC on both
backends, and a bound time in any offset compares as the instant it is. An expression that loses
the type (``text()``, ``case()``, arithmetic) needs ``type_coerce(..., UtcDateTime())``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Dialect
from sqlalchemy.types import TypeDecorator

from dignity.errors import error_class


def utc(at: datetime) -> datetime:
    """``at`` as an aware UTC datetime; a naive one is taken to be UTC already (every time
    dignity stores or exchanges is UTC, and the host's local zone never means anything here)."""
    if at.tzinfo is None:
        return at.replace(tzinfo=UTC)
    return at.astimezone(UTC)


def parse_utc(text: str, *, what: str, code: str) -> datetime:
    """``text``, an ISO 8601 date or time (naive means UTC), as an aware UTC datetime; anything
    else is the error that owns ``code`` (:func:`~dignity.errors.error_class`), naming ``what``
    (an option, a field)."""
    try:
        return utc(datetime.fromisoformat(text.strip()))
    except ValueError as exc:
        raise error_class(code)(
            f"{what} must be an ISO 8601 date or time (2026-07-01 or 2026-07-01T12:00Z), "
            f"not {text[:40]!r}",
            code=code,
        ) from exc


def isoformat(at: datetime | None) -> str | None:
    """``at`` in ISO 8601, or None for no time: how answers show a nullable timestamp."""
    return None if at is None else at.isoformat()


def json_default(value: object) -> str:
    """``json.dumps``'s ``default`` for stored JSON (events, job results, scan details): a time
    as timezone-aware ISO 8601 (UTC when naive), anything else as its text."""
    if isinstance(value, datetime):
        return utc(value).isoformat()
    return str(value)


class UtcDateTime(TypeDecorator[datetime]):
    """A ``DateTime(timezone=True)`` column whose values are aware UTC datetimes both ways."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"a UtcDateTime column takes a datetime, not {type(value).__name__}")
        return utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else utc(value)


__all__ = ["UtcDateTime", "isoformat", "parse_utc", "utc"]
