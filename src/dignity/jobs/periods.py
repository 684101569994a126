"""Once per period across processes: before a shared periodic task (the takedown clock, the
scan-log purge, exchange fetches) ticks, its process claims the period by inserting the row
(task, period number); the insert that loses the race finds the row and the tick is skipped.

Periods are numbered from the epoch (``floor(now / interval)``), so every machine agrees on them
without talking to the others; two API processes and two workers on one database therefore run
each shared tick at most once per interval, and whichever process is alive runs it.
"""

from __future__ import annotations

import math
import time

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from dignity.jobs.models import PeriodClaim
from dignity.storage.db import Database

# Claims older than this many periods are deleted now and then (they only ever block a period
# that is over).
_KEEP_PERIODS = 100


def period_of(interval_s: float, now: float | None = None) -> int:
    return math.floor((time.time() if now is None else now) / max(interval_s, 1e-3))


def claim_period(
    db: Database, task: str, interval_s: float, owner: str, *, now: float | None = None
) -> bool:
    """True when this caller is the first to claim the current period of ``task`` (it should
    tick); False when another process claimed it already."""
    now = time.time() if now is None else now
    period = period_of(interval_s, now)
    try:
        # Insert first, no read: the primary key decides, and an SQLite transaction that read
        # first could be refused its write by a concurrent claim.
        with db.session() as s:
            s.add(PeriodClaim(task=task[:64], period=period, owner=owner[:128], claimed_at=now))
            s.flush()
            if period % _KEEP_PERIODS == 0:
                s.execute(
                    delete(PeriodClaim).where(
                        PeriodClaim.task == task, PeriodClaim.period < period - _KEEP_PERIODS
                    )
                )
    except IntegrityError:
        return False
    return True


def claims(db: Database, task: str) -> list[tuple[int, str]]:
    """(period, owner) of every recorded claim of ``task``, oldest first (tests, diagnostics)."""
    with db.session() as s:
        rows = s.execute(
            select(PeriodClaim.period, PeriodClaim.owner)
            .where(PeriodClaim.task == task)
            .order_by(PeriodClaim.period)
        )
        return [(int(p), str(o)) for p, o in rows]
