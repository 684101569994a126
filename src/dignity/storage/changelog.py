"""Replaying an append-only change log whose sequence numbers may commit out of order.

The bank index (``index_log``), the source-photo registry (``derivative_log``) and the partner
case feed (``case_feed_log``) all follow a log by its sequence number. On PostgreSQL a number is
handed out before its transaction commits, so a reader can see row 12 before row 11: a number
missing below one already seen is a *gap*, and :class:`GapRule` is the one rule for it: a gap
may still fill until it has been known for ``patience_s``, after which it was a rolled-back
write. A reader that keeps state (:class:`Replayer`) skips over a gap and asks for it again on
every refresh; a reader that keeps only a cursor (the feed, whose cursor a partner holds) cannot
come back for it, so it stops before an open gap (:meth:`GapRule.settled`). :class:`Replayer`
keeps one in-memory view current: refreshes run one at a time, each reading the log and
applying what it read under one lock, so a refresh that read an entry's ``add`` can never apply
it after a later refresh applied the entry's ``remove``, and the cursor never moves back. It
does blocking database work, so callers on an event loop run it in a worker thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import ColumnElement, Connection, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from dignity.storage.db import Database

GAP_PATIENCE_S = 60.0
# A load records as gaps the numbers missing among this many below the high-water mark: writes
# still committing while the process reads everything would otherwise never be replayed.
LOAD_LOOKBACK = 100_000

T = TypeVar("T")


@dataclass(frozen=True)
class GapRule:
    """How long a skipped sequence number may still turn up."""

    patience_s: float = GAP_PATIENCE_S

    def open(self, since: float, now: float) -> bool:
        return now - since < self.patience_s

    def open_gaps(self, gaps: dict[int, float], now: float) -> list[int]:
        """The skipped sequence numbers still worth asking for, ascending."""
        return sorted(seq for seq, since in gaps.items() if self.open(since, now))

    def advance(self, last: int, gaps: dict[int, float], seen: Iterable[int], now: float) -> int:
        """Record the sequence numbers just read: fill gaps they close, note new gaps below the
        highest one, forget gaps past the patience; return the new last sequence (never lower)."""
        seen = set(seen)
        for seq in list(gaps):
            if seq in seen or not self.open(gaps[seq], now):
                del gaps[seq]
        top = max(seen, default=last)
        for seq in range(last + 1, top):
            if seq not in seen:
                gaps.setdefault(seq, now)
        return max(last, top)

    def settled(self, rows: Sequence[tuple[int, float]], cursor: int) -> int:
        """For a reader that keeps only ``cursor``: how many of ``rows`` (sequence ascending,
        each with its age in seconds) it may take. It stops before the first gap whose next row
        is younger than the patience, because a lower number may still commit and the cursor,
        once past it, would never return."""
        expected = cursor + 1
        for taken, (seq, age) in enumerate(rows):
            if seq != expected and age < self.patience_s:
                return taken
            expected = seq + 1
        return len(rows)


def _ranges(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """Ascending numbers as inclusive runs: a bulk import that is still committing leaves
    thousands of consecutive gaps, which must not become thousands of bound parameters."""
    runs: list[tuple[int, int]] = []
    for seq in seqs:
        if runs and runs[-1][1] == seq - 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


@dataclass(frozen=True)
class ChangeLog:
    """One log table: its sequence column, the id of what changed, and the operation."""

    seq: InstrumentedAttribute[int]
    key: InstrumentedAttribute[int]
    op: InstrumentedAttribute[str]

    def read(self, conn: Connection, after: int, gaps: Sequence[int]) -> list[tuple[int, int, str]]:
        """(seq, key, op) of every row after ``after`` or at one of ``gaps``, in order."""
        cond: ColumnElement[bool] = self.seq > after
        if gaps:
            cond = or_(cond, *(self.seq.between(lo, hi) for lo, hi in _ranges(gaps)))
        rows = conn.execute(select(self.seq, self.key, self.op).where(cond).order_by(self.seq))
        return [(int(seq), int(key), str(op)) for seq, key, op in rows]

    def position(self, conn: Connection) -> tuple[int, list[int]]:
        """The high-water mark and the numbers missing just below it, as seen by ``conn``."""
        last = int(conn.execute(select(func.coalesce(func.max(self.seq), 0))).scalar_one())
        low = max(1, last - LOAD_LOOKBACK + 1)
        # The database finds the holes (each row against the one before it), and a count tells
        # first whether there are any: a load must not pay for fetching a hundred thousand
        # numbers to learn that none is missing.
        present = conn.execute(select(func.count()).where(self.seq >= low)).scalar_one()
        if present >= last - low + 1:
            return last, []
        window = select(
            self.seq.label("seq"), func.lag(self.seq).over(order_by=self.seq).label("prev")
        ).where(self.seq >= low)
        holes = window.subquery()
        first = conn.execute(select(func.min(self.seq)).where(self.seq >= low)).scalar()
        missing = list(range(low, int(first if first is not None else last)))
        for prev, seq in conn.execute(
            select(holes.c.prev, holes.c.seq).where(holes.c.seq - holes.c.prev > 1)
        ):
            missing.extend(range(int(prev) + 1, int(seq)))
        return last, missing


class Replayer:
    """Keeps one process's in-memory view of a log's subject current.

    The view supplies two steps to :meth:`load` and :meth:`refresh`: a *read* that runs against
    the database (given, on refresh, each changed key's final operation) and an *install* or
    *apply* that changes memory. Both steps of one refresh run under :attr:`lock`, as does a
    load, so the view moves only forwards through the log.
    """

    def __init__(self, db: Database, log: ChangeLog, rule: GapRule | None = None) -> None:
        self.db = db
        self.log = log
        self.rule = rule or GapRule()
        # Reentrant: a view's load may replay the rows after a snapshot with a refresh.
        self.lock: AbstractContextManager[object] = threading.RLock()
        self.loaded = False
        # Called between a refresh's read and its apply; tests use it to interleave refreshes.
        self.before_apply: Callable[[], None] | None = None
        self._last = 0
        self._gaps: dict[int, float] = {}

    def position(self) -> tuple[int, list[int]]:
        """The last sequence applied and the gaps below it still being asked for."""
        return self._last, sorted(self._gaps)

    def load(self, read: Callable[[Connection], T], install: Callable[[T], None]) -> None:
        """Read the whole view and the log position in one consistent snapshot, then install."""
        with self.lock:
            now = time.monotonic()
            with self.db.engine.connect() as conn:
                if conn.dialect.name == "postgresql":
                    conn = conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    last, missing = self.log.position(conn)
                    data = read(conn)
            install(data)
            self._resume(last, missing, now)

    def resume(self, last: int, gaps: Iterable[int]) -> None:
        """Continue from a saved position (a snapshot's), under the lock of the caller's load."""
        with self.lock:
            self._resume(last, gaps, time.monotonic())

    def _resume(self, last: int, gaps: Iterable[int], now: float) -> None:
        self._last = last
        self._gaps = {int(seq): now for seq in gaps}
        self.loaded = True

    def refresh(
        self,
        read: Callable[[Connection, dict[int, str]], T],
        apply: Callable[[T, dict[int, str]], None],
    ) -> int:
        """Replay the rows not yet applied: ``read`` what the changed keys need, then ``apply``
        it; returns how many keys changed."""
        with self.lock:
            now = time.monotonic()
            last = self._last
            with self.db.engine.connect() as conn:
                rows = self.log.read(conn, last, self.rule.open_gaps(self._gaps, now))
                final: dict[int, str] = {}
                for _seq, key, op in rows:  # only the last operation on a key counts
                    final[key] = op
                data = read(conn, final)
            if self.before_apply is not None:
                self.before_apply()
            apply(data, final)
            self._last = self.rule.advance(last, self._gaps, (seq for seq, _, _ in rows), now)
            return len(final)
