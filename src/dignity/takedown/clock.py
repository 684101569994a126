"""The takedown workflow's time source: one place that says what "now" is, so the 48-hour clock,
its escalations and the overdue list can be tested to the second without waiting.

Every service in :mod:`dignity.takedown` takes ``clock: Clock | None = None`` and reads the time
only through it. :class:`SystemClock` is the real one; :class:`FixedClock` stands still until a
test moves it (:meth:`FixedClock.set`, :meth:`FixedClock.advance`). Times are always aware and
in UTC, which is also how they are stored (:class:`dignity.storage.types.UtcDateTime`); :func:`utc`
turns any other datetime (a naive one is UTC) into that form.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

from dignity.storage.types import utc


class Clock(Protocol):
    """A source of the current time: aware, in UTC."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that only moves when told to; thread-safe, for tests and replays."""

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._now = utc(start) if start is not None else datetime.now(UTC)

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, at: datetime) -> None:
        """Jump to ``at`` (naive is taken as UTC)."""
        with self._lock:
            self._now = utc(at)

    def advance(
        self,
        delta: timedelta | None = None,
        *,
        days: float = 0,
        hours: float = 0,
        minutes: float = 0,
        seconds: float = 0,
        microseconds: float = 0,
    ) -> datetime:
        """Move forward by ``delta`` plus the keyword amounts; return the new time."""
        step = (delta or timedelta()) + timedelta(
            days=days, hours=hours, minutes=minutes, seconds=seconds, microseconds=microseconds
        )
        with self._lock:
            self._now = self._now + step
            return self._now


__all__ = ["Clock", "FixedClock", "SystemClock", "utc"]
