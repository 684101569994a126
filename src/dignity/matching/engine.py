"""The match engine: an in-memory view of every active entry, kept current from the change log.

Each signal type of the registry (:mod:`dignity.hashing.registry`) says how its entries are
held: a distance-matched one (PDQ) in the :class:`~dignity.matching.protocol.MatchIndex` its
type makes (tag = bank id), an exact one (MD5, SHA-256) in an :class:`ExactStore` keyed by the
hash's bytes; hex is read from the database and parsed once, never per query. ``load`` reads
every active entry and the log's high-water mark in one snapshot; ``refresh`` replays only
newer log rows (through the shared :class:`~dignity.storage.changelog.Replayer`, one refresh at
a time), so an add or withdrawal made by any process is effective at the next refresh without
rebuilding anything. A query
image is matched with all 8 dihedral PDQ hashes when available, so a rotated or mirrored copy
is found whichever way round either side was stored. Matches in an ``allow`` bank suppress
block/review matches.

With a ``snapshot_dir``, the PDQ index is also saved there (in a background thread, after a load
from the database and after every ``snapshot_every`` changes), stamped with the log sequence it
contains, the database's URL and a sample of its entries. ``load`` then reads the snapshot and
replays only newer log rows, which at ten million entries takes seconds instead of a full
read; a snapshot that is missing, damaged, from another database, or too far behind is ignored
and the index is read from the database as before, so a snapshot can never change a result.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection, Row, func, select

from dignity.background import Spawn, spawn_thread
from dignity.hashing.pdq import DIHEDRAL_NAMES
from dignity.hashing.registry import DistanceSignalType, signal_types
from dignity.hashing.signals import ImageHashes
from dignity.matching.index import MihIndex
from dignity.matching.protocol import MatchIndex
from dignity.storage.changelog import ChangeLog, Replayer
from dignity.storage.db import Database
from dignity.storage.models import Bank, Entry, IndexLog

if TYPE_CHECKING:
    from dignity.video.vpdq import VpdqResult

INDEX_LOG = ChangeLog(IndexLog.seq, IndexLog.entry_id, IndexLog.op)

# The signal type whose index is kept in snapshots (the one that grows to 1e7 entries), and the
# one ImageHashes.pdq holds; every other type is read from the database at a load.
SNAPSHOT_SIGNAL = "pdq"

# Entries whose stored values a snapshot must reproduce before it is trusted.
_SNAPSHOT_SAMPLE = 32

log = logging.getLogger("dignity.matching")


@dataclass(frozen=True)
class Match:
    bank: str
    purpose: str
    entry_id: int
    signal: str
    distance: int
    transform: str = "original"

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "bank": self.bank,
            "entry_id": self.entry_id,
            "signal": self.signal,
            "distance": self.distance,
            "purpose": self.purpose,
        }
        if self.transform != "original":
            out["transform"] = self.transform
        return out


@dataclass(frozen=True)
class MatchOutcome:
    """``matches`` stand; ``suppressed`` were cancelled by ``allowed_by`` (allow-bank matches)."""

    matches: list[Match] = field(default_factory=list)
    suppressed: list[Match] = field(default_factory=list)
    allowed_by: list[Match] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"matches": [m.to_dict() for m in self.matches]}
        if self.allowed_by:
            out["allowed_by"] = [m.to_dict() for m in self.allowed_by]
            out["suppressed"] = [m.to_dict() for m in self.suppressed]
        if self.notes:
            out["notes"] = list(self.notes)
        return out


@dataclass(frozen=True)
class _BankView:
    id: int
    name: str
    purpose: str
    threshold: int
    enabled: bool


_EntryRow: TypeAlias = "Row[int, int, str, str]"  # id, bank id, signal, value
_NO_ENTRIES: dict[int, int] = {}


class ExactStore:
    """The active entries of one exactly matched signal type, by the bytes of their hash."""

    def __init__(self) -> None:
        self._by_value: dict[bytes, dict[int, int]] = {}  # hash -> {entry id: bank id}
        self._by_entry: dict[int, bytes] = {}

    def __len__(self) -> int:
        return len(self._by_entry)

    def add(self, entry_id: int, bank_id: int, value: bytes) -> None:
        self._by_value.setdefault(value, {})[entry_id] = bank_id
        self._by_entry[entry_id] = value

    def remove(self, entry_id: int) -> None:
        value = self._by_entry.pop(entry_id, None)
        if value is not None:
            group = self._by_value[value]
            del group[entry_id]
            if not group:
                del self._by_value[value]

    def get(self, value: bytes) -> dict[int, int]:
        """{entry id: bank id} of the entries holding ``value`` (do not modify)."""
        return self._by_value.get(value, _NO_ENTRIES)


@dataclass(frozen=True)
class _Loaded:
    """Everything a load read, built off the lock and then swapped in whole."""

    indexes: dict[str, MatchIndex]
    exact: dict[str, ExactStore]
    banks: dict[int, _BankView]


@dataclass(frozen=True)
class _Changes:
    """What a refresh read for the entries its log rows named."""

    banks: dict[int, _BankView]
    adds: list[int]
    rows: list[_EntryRow]  # the added entries still active


def _hex_rows(values: Sequence[str], width: int = 32) -> NDArray[np.uint8]:
    if not values:
        return np.zeros((0, width), dtype=np.uint8)
    return np.frombuffer(bytes.fromhex("".join(values)), dtype=np.uint8).reshape(-1, width)


def _by_signal(rows: Iterable[_EntryRow]) -> dict[str, list[_EntryRow]]:
    out: dict[str, list[_EntryRow]] = {}
    for row in rows:
        out.setdefault(row[2], []).append(row)
    return out


def _index_rows(index: MatchIndex, signal: DistanceSignalType, rows: Sequence[_EntryRow]) -> None:
    if rows:
        ids, tags, _, hexes = zip(*rows, strict=True)
        index.add(
            np.asarray(ids, dtype=np.int64),
            _hex_rows(hexes, signal.byte_length),
            np.asarray(tags, dtype=np.int32),
        )


class MatchEngine:
    """Matches hashes against all enabled banks. Safe to query from many threads."""

    def __init__(
        self,
        db: Database,
        *,
        min_quality: int = 50,
        index_factory: Callable[[], MatchIndex] | None = None,
        snapshot_dir: Path | None = None,
        snapshot_every: int = 100_000,
        spawn: Spawn = spawn_thread,
    ) -> None:
        """``index_factory``: the index for every distance-matched signal type (default: the
        one each type's ``new_index`` makes). ``snapshot_dir``: where to keep the PDQ index
        snapshot (None: never); used only with an index that has ``capture``/
        ``write_snapshot``/``load`` (``MihIndex`` does). ``spawn``: who runs snapshot writes
        and index merges in the background (a service passes its supervisor's)."""
        self.db = db
        self.min_quality = min_quality
        self._index_factory = index_factory
        self._snapshot_dir = snapshot_dir
        self._snapshot_every = snapshot_every
        self._spawn = spawn
        self._changes_since_snapshot = 0
        self._snapshot_thread: threading.Thread | None = None
        self.loaded_from_snapshot = False
        self._lock = threading.RLock()
        self._signals = signal_types()
        # The exact types an image's own bytes give, asked for on every match_image.
        self._photo_exact = [t.name for t in self._signals.exact() if "photo" in t.content]
        self._widths = {t.name: t.byte_length for t in self._signals.distance()}
        empty = self._build({}, [])
        self._indexes: dict[str, MatchIndex] = empty.indexes
        self._exact: dict[str, ExactStore] = empty.exact
        self._banks: dict[int, _BankView] = {}
        # Serialises loads and refreshes and holds the log position; self._lock only guards
        # the swap of what queries read.
        self.replayer = Replayer(db, INDEX_LOG)
        self.loaded = False

    # -- keeping current -----------------------------------------------------------------
    def load(self) -> None:
        """Read every active entry into a fresh index: from the index snapshot plus the log rows
        after it when there is a usable one, else from the database (one consistent read)."""
        with self.replayer.lock:  # a refresh must not interleave with the swap of the index
            if self._snapshot_dir is not None and self._snapshot_capable():
                try:
                    if self._load_snapshot(self._snapshot_dir):
                        return
                except Exception:  # any doubt about a snapshot means the database is read instead
                    log.exception("index snapshot unusable; loading from the database")
            self.replayer.load(self._read_all, lambda got: self._install(self._build(*got)))
        if self._snapshot_dir is not None and self._snapshot_capable():
            self._snapshot_async()

    def _read_all(self, conn: Connection) -> tuple[dict[int, _BankView], Sequence[_EntryRow]]:
        rows = conn.execute(
            select(Entry.id, Entry.bank_id, Entry.signal, Entry.value).where(
                Entry.status == "active"
            )
        ).all()
        return self._read_banks(conn), rows

    def _build(
        self,
        banks: dict[int, _BankView],
        rows: Iterable[_EntryRow],
        snapshot: MatchIndex | None = None,
    ) -> _Loaded:
        """Indexes and exact stores over ``rows``; ``snapshot`` is the snapshot's PDQ index,
        whose entries ``rows`` then leave out."""
        grouped = _by_signal(rows)
        indexes: dict[str, MatchIndex] = {}
        for t in self._signals.distance():
            if t.name == SNAPSHOT_SIGNAL and snapshot is not None:
                indexes[t.name] = snapshot
                continue
            indexes[t.name] = self._new_index(t)
            _index_rows(indexes[t.name], t, grouped.get(t.name, []))
        exact: dict[str, ExactStore] = {}
        for e in self._signals.exact():
            store = exact[e.name] = ExactStore()
            for eid, bank_id, _, value in grouped.get(e.name, []):
                store.add(eid, bank_id, bytes.fromhex(value))
        return _Loaded(indexes, exact, banks)

    def _new_index(self, signal: DistanceSignalType) -> MatchIndex:
        if self._index_factory is not None:
            return self._adopt(self._index_factory())
        return self._adopt(signal.new_index() or MihIndex())

    def _adopt(self, index: MatchIndex) -> MatchIndex:
        """Hand an index that merges in the background (``MihIndex``) this engine's spawner."""
        if hasattr(index, "spawn"):
            index.spawn = self._spawn
        return index

    @property
    def _index(self) -> MatchIndex:
        """The PDQ index: the one kept in snapshots."""
        return self._indexes[SNAPSHOT_SIGNAL]

    def _install(self, loaded: _Loaded, *, from_snapshot: bool = False, behind: int = 0) -> None:
        with self._lock:
            self._indexes, self._exact = loaded.indexes, loaded.exact
            self._banks = loaded.banks
            self._changes_since_snapshot = behind
            self.loaded_from_snapshot = from_snapshot
            self.loaded = True

    # -- snapshots ---------------------------------------------------------------------------
    def _snapshot_capable(self) -> bool:
        index = self._index
        return all(hasattr(index, name) for name in ("capture", "write_snapshot", "load"))

    def _db_label(self) -> str:
        return self.db.engine.url.render_as_string(hide_password=True)

    def save_snapshot(self) -> Path | None:
        """Write the PDQ index snapshot now (e.g. at shutdown); None without a snapshot_dir."""
        if self._snapshot_dir is None or not self._snapshot_capable() or not self.loaded:
            return None
        with self._lock:
            index: Any = self._index
            captured = index.capture()
            # A refresh applies under self._lock and only then advances its position, so the
            # position read here is never ahead of the captured index (behind is harmless:
            # replaying an applied change again leaves the index as it is).
            seq, gaps = self.replayer.position()
            self._changes_since_snapshot = 0
        meta: dict[str, Any] = {"db": self._db_label(), "seq": seq, "gaps": gaps, "log": None}
        with self.db.engine.connect() as conn:
            if seq:
                row = conn.execute(
                    select(IndexLog.entry_id, IndexLog.op).where(IndexLog.seq == seq)
                ).first()
                meta["log"] = None if row is None else [int(row[0]), str(row[1])]
        meta["sample"] = _sample_entries(captured)
        path: Path = index.write_snapshot(captured, self._snapshot_dir, meta)
        return path

    def _snapshot_async(self) -> None:
        with self._lock:
            if self._snapshot_thread is not None and self._snapshot_thread.is_alive():
                return
            # A failure (a full disk) is logged and reported by the spawner; matching goes on,
            # and the next load reads the database.
            self._snapshot_thread = self._spawn("index-snapshot", self.save_snapshot)

    def wait_for_snapshot(self, timeout: float | None = None) -> None:
        """Block until a background snapshot write has finished (tests, benchmarks, shutdown)."""
        thread = self._snapshot_thread
        if thread is not None:
            thread.join(timeout)

    def _load_snapshot(self, directory: Path) -> bool:
        from dignity.matching.index import SnapshotError

        loader: Any = type(self._index)
        try:
            index, meta = loader.load(directory)
            self._adopt(index)
        except SnapshotError as exc:
            log.info("no usable index snapshot: %s", exc)
            return False
        seq = meta.get("seq")
        if meta.get("db") != self._db_label() or not isinstance(seq, int) or seq < 0:
            log.info("index snapshot belongs to another database; ignoring it")
            return False
        sample = meta.get("sample") or []
        with self.db.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                # The log row the snapshot ends at must be the same row here: a database
                # recreated under the same URL has other rows (or none) at that sequence.
                if seq:
                    row = conn.execute(
                        select(IndexLog.entry_id, IndexLog.op).where(IndexLog.seq == seq)
                    ).first()
                    if row is None or [int(row[0]), str(row[1])] != meta.get("log"):
                        log.info("index snapshot does not match this database's log")
                        return False
                elif len(index):
                    return False
                ids = [int(eid) for eid, _ in sample]
                stored = dict(
                    conn.execute(
                        select(Entry.id, Entry.value).where(
                            Entry.id.in_(ids), Entry.signal == SNAPSHOT_SIGNAL
                        )
                    ).all()
                )
                if any(stored.get(int(eid)) != value for eid, value in sample):
                    log.info("index snapshot entries differ from this database's")
                    return False
                behind = conn.execute(
                    select(func.count()).select_from(IndexLog).where(IndexLog.seq > seq)
                ).scalar_one()
                if behind > max(self._snapshot_every, len(index) // 4):
                    log.info("index snapshot is %d changes behind; reading the database", behind)
                    return False
                banks = self._read_banks(conn)
                rows = conn.execute(
                    select(Entry.id, Entry.bank_id, Entry.signal, Entry.value).where(
                        Entry.status == "active", Entry.signal != SNAPSHOT_SIGNAL
                    )
                ).all()
        self._install(self._build(banks, rows, index), from_snapshot=True, behind=int(behind))
        self.replayer.resume(seq, [int(g) for g in meta.get("gaps") or []])
        self.refresh()  # the log rows written after the snapshot
        return True

    @staticmethod
    def _read_banks(conn: Connection) -> dict[int, _BankView]:
        return {
            b.id: _BankView(b.id, b.name, b.purpose, b.threshold, b.enabled)
            for b in conn.execute(
                select(Bank.id, Bank.name, Bank.purpose, Bank.threshold, Bank.enabled)
            ).all()
        }

    def refresh(self) -> int:
        """Apply log rows newer than the last one seen; returns how many entries changed.
        Refreshes run one at a time (see :class:`~dignity.storage.changelog.Replayer`)."""
        with self.replayer.lock:
            if not self.loaded:
                self.load()
                return 0
            changed = self.replayer.refresh(self._read_changes, self._apply)
            due = self._changes_since_snapshot >= self._snapshot_every
        if due and self._snapshot_dir is not None and self._snapshot_capable():
            self._snapshot_async()
        return changed

    def _read_changes(self, conn: Connection, final: dict[int, str]) -> _Changes:
        adds = [eid for eid, op in final.items() if op == "add"]
        rows: list[_EntryRow] = []
        for i in range(0, len(adds), 500):
            rows += conn.execute(
                select(Entry.id, Entry.bank_id, Entry.signal, Entry.value).where(
                    Entry.id.in_(adds[i : i + 500]), Entry.status == "active"
                )
            ).all()
        return _Changes(self._read_banks(conn), adds, rows)

    def _apply(self, changes: _Changes, final: dict[int, str]) -> None:
        grouped = _by_signal(changes.rows)
        removed = [e for e, op in final.items() if op == "remove"]
        # An entry re-added after a removal must leave the index first, or add() refuses it.
        gone = removed + changes.adds
        gone_ids = np.asarray(gone, dtype=np.int64)
        with self._lock:
            self._banks = changes.banks
            for index in self._indexes.values():
                index.remove(gone_ids)
            for store in self._exact.values():
                for eid in gone:
                    store.remove(eid)
            for t in self._signals.distance():
                _index_rows(self._indexes[t.name], t, grouped.get(t.name, []))
            for name, store in self._exact.items():
                for eid, bank_id, _, value in grouped.get(name, []):
                    store.add(eid, bank_id, bytes.fromhex(value))
            self._changes_since_snapshot += len(final)

    def __len__(self) -> int:
        return sum(len(i) for i in self._indexes.values()) + sum(
            len(s) for s in self._exact.values()
        )

    # -- matching ------------------------------------------------------------------------
    def match_image(self, hashes: ImageHashes, *, dihedral: bool = True) -> MatchOutcome:
        """Match every hash of one image; PDQ below the quality floor is skipped, with a note."""
        notes: list[str] = []
        near: list[tuple[str, bytes]] = []
        if hashes.pdq is not None:
            if hashes.pdq.quality < self.min_quality:
                notes.append(
                    f"pdq not matched: quality {hashes.pdq.quality} is below {self.min_quality}"
                )
            else:
                near.append((SNAPSHOT_SIGNAL, hashes.pdq.query_bytes(dihedral=dihedral)))
        digests = hashes.digests
        exact = [
            (name, digests[name] if name in digests else bytes.fromhex(hashes.hexes()[name]))
            for name in self._photo_exact
        ]
        return self._match(near, exact, notes)

    def match_hashes(self, values: Sequence[tuple[str, str]]) -> MatchOutcome:
        """Match bare (signal, hex) pairs, e.g. hashes a victim computed on their own device."""
        near: list[tuple[str, bytes]] = []
        exact: list[tuple[str, bytes]] = []
        for signal, value in values:
            sig, val = self._signals.normalize(signal, value)
            found = self._signals.get(sig)
            (near if found is not None and found.matched_by_distance else exact).append(
                (sig, bytes.fromhex(val))
            )
        outcome = self._match([], exact, [])
        # Each bare hash is its own query (no dihedral family to take the minimum over).
        merged = list(outcome.matches) + list(outcome.suppressed) + list(outcome.allowed_by)
        for query in near:
            part = self._match([query], [], [])
            merged += part.matches + part.suppressed + part.allowed_by
        return self._decide(_best(merged), [])

    def _match(
        self,
        near: Sequence[tuple[str, bytes]],
        exact: Sequence[tuple[str, bytes]],
        notes: list[str],
    ) -> MatchOutcome:
        """``near``: (distance signal, one or more hashes back to back; 8 are a dihedral family
        matched as one image); ``exact``: (exact signal, hash)."""
        with self._lock:
            banks = self._banks
            indexes = self._indexes
            found: list[Match] = []
            for signal, value in exact:
                store = self._exact.get(signal)
                if store is None:
                    continue
                for eid, bank_id in store.get(value).items():
                    bank = banks.get(bank_id)
                    if bank is not None and bank.enabled:
                        found.append(Match(bank.name, bank.purpose, eid, signal, 0))
        for signal, packed in near:
            index = indexes.get(signal)
            thresholds = [b.threshold for b in banks.values() if b.enabled]
            if index is None or not thresholds or not len(index):
                continue
            queries = np.frombuffer(packed, dtype=np.uint8).reshape(-1, self._widths[signal])
            hits = index.search(queries, max(thresholds))
            family = queries.shape[0] == len(DIHEDRAL_NAMES)
            best: dict[int, tuple[int, int, int]] = {}
            for q, eid, tag, dist in zip(
                hits.query.tolist(),
                hits.ids.tolist(),
                hits.tags.tolist(),
                hits.distances.tolist(),
                strict=True,
            ):
                if eid not in best or dist < best[eid][0]:
                    best[eid] = (dist, tag, q)
            for eid, (dist, tag, q) in best.items():
                bank = banks.get(tag)
                if bank is None or not bank.enabled or dist > bank.threshold:
                    continue
                transform = DIHEDRAL_NAMES[q] if family else "original"
                found.append(Match(bank.name, bank.purpose, eid, signal, dist, transform))
        return self._decide(found, notes)

    @staticmethod
    def _decide(found: list[Match], notes: list[str]) -> MatchOutcome:
        found.sort(key=lambda m: (m.distance, m.bank, m.entry_id))
        allow = [m for m in found if m.purpose == "allow"]
        rest = [m for m in found if m.purpose != "allow"]
        if allow:
            return MatchOutcome(matches=[], suppressed=rest, allowed_by=allow, notes=notes)
        return MatchOutcome(matches=rest, notes=notes)

    # -- PLACEHOLDER (video-media branch): the video-core branch writes the real match_video
    # (vPDQ frames, segments, frames against image entries). This stand-in matches only the
    # file digests exactly, so that the scan path runs; the lead replaces it at merge.
    def match_video(self, video: VpdqResult, *, dihedral: bool = True) -> MatchOutcome:
        """PLACEHOLDER: match a video's MD5 and SHA-256 exactly (``dihedral`` is unused)."""
        del dihedral
        exact = [
            (name, bytes.fromhex(video.md5 if name in ("md5", "video_md5") else video.sha256))
            for name in ("md5", "video_md5", "sha256")
            if name in self._exact
        ]
        return self._match([], exact, [])


def _best(matches: list[Match]) -> list[Match]:
    """Keep each entry once, at its smallest distance."""
    best: dict[tuple[int, str], Match] = {}
    for m in matches:
        key = (m.entry_id, m.signal)
        if key not in best or m.distance < best[key].distance:
            best[key] = m
    return list(best.values())


def _sample_entries(captured: Any) -> list[list[object]]:
    """Up to _SNAPSHOT_SAMPLE (id, hex) pairs spread over a captured index state."""
    state = getattr(captured, "state", None)
    out: list[list[object]] = []
    if state is None:
        return out
    sources = [(s.ids.unpack(), s.hashes) for s in state.segments if s.size]
    if state.tail_ids.shape[0]:
        sources.append((state.tail_ids, state.tail_hashes))
    per = max(1, _SNAPSHOT_SAMPLE // max(1, len(sources)))
    for ids, hashes in sources:
        for row in np.linspace(0, ids.shape[0] - 1, num=min(per, ids.shape[0])).astype(int):
            out.append([int(ids[row]), hashes[row].tobytes().hex()])
    return out
