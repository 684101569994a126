"""(skeleton, helper B) Injectable time source for the takedown clock.

Interface: ``class Clock(Protocol): def now(self) -> datetime`` (aware, UTC);
``SystemClock()``; ``FixedClock(start: datetime)`` with ``.advance(**timedelta_kwargs)`` and
``.set(dt)`` for tests. Every service in this package takes ``clock: Clock | None = None``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)
