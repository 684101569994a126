"""Change-log replay on SQLite and PostgreSQL: refreshes that overlap, and gaps in the log.

The interleaving tests hold one refresh between its read of the log and its apply (the
replayer's ``before_apply`` hook), commit a withdrawal, start a second refresh, and only then
let the first go on. Whatever the first one read, the withdrawal must hold once a refresh that
started after it has returned. The control runs the same steps with the lock taken away and
shows the withdrawn entry coming back: the steps do reach the race the lock closes.

The gap tests write log rows with chosen sequence numbers, the way PostgreSQL leaves them when
a transaction that drew a lower number commits after one that drew a higher number.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

import pytest
from sqlalchemy import delete, func, insert, select

from dignity.derivatives.models import DerivativeLog
from dignity.derivatives.service import NewSource, SourceIndex, SourceService
from dignity.matching import BankService, MatchEngine, NewEntry
from dignity.media import decode
from dignity.samples import encode, landscape
from dignity.storage.changelog import Replayer
from dignity.storage.db import Database
from dignity.storage.models import Entry, IndexLog

WAIT_S = 30.0
LOG = IndexLog.__table__
ENTRIES = Entry.__table__


class _WatchedLock:
    """The replayer's lock, noting when a thread finds it held by another."""

    def __init__(self) -> None:
        self.inner = threading.RLock()
        self.contended = threading.Event()

    def __enter__(self) -> None:
        if not self.inner.acquire(blocking=False):
            self.contended.set()
            self.inner.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.inner.release()


class _Interleaving:
    """Refresh A reads the log, then waits; the test changes the database and starts refresh B;
    A is let go once B has finished or is waiting for A."""

    def __init__(self, replayer: Replayer, refresh: Callable[[], int], *, locked: bool) -> None:
        self.refresh = refresh
        self.lock = _WatchedLock()
        replayer.lock = self.lock if locked else contextlib.nullcontext()
        self.read = threading.Event()
        self.go = threading.Event()
        self.first = True
        replayer.before_apply = self._hold_first
        self.pool = ThreadPoolExecutor(2)

    def _hold_first(self) -> None:
        if self.first:
            self.first = False
            self.read.set()
            assert self.go.wait(WAIT_S)

    def start_a(self) -> Future[int]:
        a = self.pool.submit(self.refresh)
        assert self.read.wait(WAIT_S), "refresh A never read the log"
        return a

    def start_b(self) -> Future[int]:
        b = self.pool.submit(self.refresh)
        deadline = time.monotonic() + WAIT_S
        while not (b.done() or self.lock.contended.is_set()):
            assert time.monotonic() < deadline, "refresh B neither finished nor waited"
            time.sleep(0.001)
        self.go.set()
        return b


@pytest.fixture
def pool() -> Iterator[list[_Interleaving]]:
    made: list[_Interleaving] = []
    yield made
    for run in made:
        run.go.set()
        run.pool.shutdown(wait=True)


def _pdq(seed: int) -> str:
    return f"{random.Random(seed).getrandbits(256):064x}"


def _last_seq(db: Database, seq: object) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(select(func.max(seq))).scalar_one())


def _engine_race(db: Database, pool: list[_Interleaving], *, locked: bool) -> bool:
    """Add an entry, race two refreshes around its withdrawal; whether it matches at the end."""
    banks = BankService(db)
    banks.create_bank("b")
    engine = MatchEngine(db)
    engine.load()
    value = _pdq(1)
    entry = banks.add_entries("b", [NewEntry("pdq", value)]).added[0]
    run = _Interleaving(engine.replayer, engine.refresh, locked=locked)
    pool.append(run)
    a = run.start_a()  # has read the add and the entry's row, not yet applied them
    assert engine.match_hashes([("pdq", value)]).matches == []
    banks.withdraw("b", [entry])
    b = run.start_b()
    assert b.result(WAIT_S) == 1  # B started after the withdrawal: the withdrawal is acknowledged
    matched_after_b = bool(engine.match_hashes([("pdq", value)]).matches)
    a.result(WAIT_S)
    matched = bool(engine.match_hashes([("pdq", value)]).matches)
    if locked:
        assert not matched_after_b
        assert engine.replayer.position() == (_last_seq(db, IndexLog.seq), [])
    return matched


@pytest.mark.parametrize("locked", [True, False], ids=["replayer", "control-without-lock"])
def test_withdrawn_entry_never_matches_after_a_slower_refresh(
    db: Database, pool: list[_Interleaving], locked: bool
) -> None:
    assert _engine_race(db, pool, locked=locked) is not locked


def _source_race(db: Database, pool: list[_Interleaving], *, locked: bool) -> bool:
    service = SourceService(db)
    index = SourceIndex(db)
    index.load()
    media = decode(encode(landscape(5)))
    info = service.register([service.prepare(NewSource(media, "s"))])[0]
    run = _Interleaving(index.replayer, index.refresh, locked=locked)
    pool.append(run)
    a = run.start_a()
    service.remove(info.id)
    b = run.start_b()
    b.result(WAIT_S)
    if locked:
        assert info.id not in index.matcher
    a.result(WAIT_S)
    if locked:
        assert index.replayer.position() == (_last_seq(db, DerivativeLog.seq), [])
    return info.id in index.matcher


@pytest.mark.parametrize("locked", [True, False], ids=["replayer", "control-without-lock"])
def test_removed_source_never_matches_after_a_slower_refresh(
    db: Database, pool: list[_Interleaving], locked: bool
) -> None:
    assert _source_race(db, pool, locked=locked) is not locked


def test_a_gap_is_asked_for_again_until_it_fills(db: Database) -> None:
    banks = BankService(db)
    banks.create_bank("b")
    engine = MatchEngine(db)
    engine.load()
    low, high = _pdq(2), _pdq(3)
    banks.add_entries("b", [NewEntry("pdq", low), NewEntry("pdq", high)])
    with db.engine.begin() as conn:  # the lower row "still committing": not visible yet
        held = conn.execute(select(LOG).order_by(IndexLog.seq).limit(1)).mappings().one()
        conn.execute(delete(LOG).where(IndexLog.seq == held["seq"]))
    assert engine.refresh() == 1
    assert engine.replayer.position() == (held["seq"] + 1, [held["seq"]])
    assert not engine.match_hashes([("pdq", low)]).matches
    with db.engine.begin() as conn:
        conn.execute(insert(LOG).values(**held))
    assert engine.refresh() == 1
    assert engine.match_hashes([("pdq", low)]).matches
    assert engine.replayer.position() == (held["seq"] + 1, [])


def test_a_wide_gap_is_read_as_ranges(db: Database) -> None:
    """A bulk import still committing leaves its whole run of numbers as gaps: more than
    PostgreSQL accepts as bound parameters if asked for one by one."""
    banks = BankService(db)
    banks.create_bank("b")
    engine = MatchEngine(db)
    engine.load()
    first, later = _pdq(4), _pdq(5)
    ids = banks.add_entries("b", [NewEntry("pdq", first), NewEntry("pdq", later)]).added
    with db.engine.begin() as conn:
        rows = conn.execute(select(LOG).order_by(IndexLog.seq)).mappings().all()
        conn.execute(delete(LOG))
        # The later entry's row lands 70,000 numbers above the earlier one.
        conn.execute(insert(LOG).values(**{**rows[1], "seq": rows[0]["seq"] + 70_001}))
    assert engine.refresh() == 1
    assert len(engine.replayer.position()[1]) >= 70_000
    assert engine.match_hashes([("pdq", later)]).matches
    with db.engine.begin() as conn:
        conn.execute(insert(LOG).values(**rows[0]))
    assert engine.refresh() == 1
    assert [m.entry_id for m in engine.match_hashes([("pdq", first)]).matches] == [ids[0]]


def test_a_load_asks_for_numbers_missing_below_its_high_water_mark(db: Database) -> None:
    """An entry whose transaction drew a lower number but commits after a process loaded."""
    banks = BankService(db)
    banks.create_bank("b")
    early, late = _pdq(6), _pdq(7)
    banks.add_entries("b", [NewEntry("pdq", early), NewEntry("pdq", late)])
    with db.engine.begin() as conn:  # the early write is invisible: entry and log row both
        log = conn.execute(select(LOG).order_by(IndexLog.seq).limit(1)).mappings().one()
        entry = conn.execute(select(ENTRIES).where(Entry.id == log["entry_id"])).mappings().one()
        conn.execute(delete(LOG).where(IndexLog.seq == log["seq"]))
        conn.execute(delete(ENTRIES).where(Entry.id == entry["id"]))
    engine = MatchEngine(db)
    engine.load()
    assert engine.replayer.position() == (log["seq"] + 1, [log["seq"]])
    assert not engine.match_hashes([("pdq", early)]).matches
    with db.engine.begin() as conn:  # ... and now it commits
        conn.execute(insert(ENTRIES).values(**entry))
        conn.execute(insert(LOG).values(**log))
    assert engine.refresh() == 1
    assert engine.match_hashes([("pdq", early)]).matches
