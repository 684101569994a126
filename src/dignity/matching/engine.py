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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection, Row, func, select

from dignity.background import Spawn, spawn_thread
from dignity.hashing.pdq import DIHEDRAL_NAMES
from dignity.hashing.registry import DistanceSignalType, has_frames, signal_types
from dignity.hashing.signals import ImageHashes, Region
from dignity.matching.index import MihIndex, scan_rows, sorted_hits
from dignity.matching.protocol import IndexHits, MatchIndex
from dignity.storage.changelog import ChangeLog, Replayer
from dignity.storage.db import Database
from dignity.storage.models import Bank, Entry, EntryFrame, IndexLog
from dignity.video.compare import FramePair, Segment, compare

if TYPE_CHECKING:
    from dignity.video.vpdq import VpdqFrame, VpdqResult

if TYPE_CHECKING:
    from dignity.video.vpdq import VpdqResult

INDEX_LOG = ChangeLog(IndexLog.seq, IndexLog.entry_id, IndexLog.op)

# The signal type whose index is kept in snapshots (the one that grows to 1e7 entries), and the
# one ImageHashes.pdq holds; every other type is read from the database at a load.
SNAPSHOT_SIGNAL = "pdq"

# Entries whose stored values a snapshot must reproduce before it is trusted.
_SNAPSHOT_SAMPLE = 32

# A video entry's frames sit in the frame index under id (entry id << FRAME_BITS | position), so
# an entry's frames come and go with it by its id alone (formats.MAX_FRAMES = 1 << FRAME_BITS).
FRAME_BITS = 20
_FRAME_MASK = (1 << FRAME_BITS) - 1
# Matching a video's frames against video entries is two-staged: its 4,800 query rows (600 frames
# x 8 orientations) are searched at this radius, which at 1e7 entries costs about a twentieth of a
# search at 31, and the video entries found are then compared with every query row at the banks'
# threshold, so their percentages and segments are exact. What the first stage cannot find is an
# entry none of whose frames lies within this radius of any query frame in any orientation,
# however many lie within the threshold. Every edited copy in bench/video.py's corpus that
# matches at all has 3 or more frames within 16 (re-encodes, container and fps changes have
# frames at distance 0, resize, trim, mirror and a 4 s clip their nearest at 2-12). None: one
# exact search at the threshold, as before. Frames against image entries have no second stage
# (an image is one hash), so a radius there (``image_seed_distance``) simply matches images at
# it; they stay at the threshold unless an operator trades that for speed (on that corpus, with
# every third frame of the originals banked as an image, radius 16 finds 288 of the 314 frame-image
# matches, 20 finds 305, 24 finds 309).
VIDEO_SEED_DISTANCE = 16
# A banked frame's hash with the video's letterbox bars trimmed sits beside the raw one under
# the raw id with this bit set (ids must be distinct); a hit on it counts for the same frame.
TRIMMED_BIT = 1 << 62
# The MD5 of a file's bytes, by both of its names.
_FILE_MD5 = ("md5", "video_md5")

log = logging.getLogger("dignity.matching")


@dataclass(frozen=True)
class Match:
    """One entry matched. A video adds: ``timestamp`` (seconds into the query video of the frame
    that matched an image entry), the two vPDQ percentages and the matching ``segments``."""

    bank: str
    purpose: str
    entry_id: int
    signal: str
    distance: int
    transform: str = "original"
    timestamp: float | None = None
    query_match_percent: float | None = None
    compared_match_percent: float | None = None
    segments: tuple[Segment, ...] = ()
    # Where in the upload the matched picture is, when it was found inside it (a screenshot,
    # a collage; dignity.regions) rather than as the whole image.
    region: Region | None = None

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
        if self.timestamp is not None:
            out["timestamp"] = round(self.timestamp, 3)
        if self.query_match_percent is not None:
            out["query_match_percent"] = self.query_match_percent
        if self.compared_match_percent is not None:
            out["compared_match_percent"] = self.compared_match_percent
        if self.segments:
            out["segments"] = [seg.to_dict() for seg in self.segments]
        if self.region is not None:
            out["region"] = self.region.to_dict()
        return out


@dataclass(frozen=True)
class MatchOutcome:
    """``matches`` stand; ``suppressed`` were cancelled by ``allowed_by`` (allow-bank matches)."""

    matches: list[Match] = field(default_factory=list)
    suppressed: list[Match] = field(default_factory=list)
    allowed_by: list[Match] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def matches_all(self) -> list[Match]:
        """Every match found, whether it stands, was suppressed, or suppressed others."""
        return list(self.matches) + list(self.suppressed) + list(self.allowed_by)

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
    vpdq_query_percent: float = 80.0
    vpdq_min_segment_s: float = 3.0


@dataclass(frozen=True)
class _Video:
    """What matching needs of a banked video beside its indexed frames: every frame's time (by
    position), which frames are indexed (quality at the floor or over), per position the group
    of identical hashes (HMA counts repeated frames once) and the number of such groups among
    the indexed frames, the sampling step, and the video file's MD5 if known."""

    bank_id: int
    times: NDArray[np.float64]
    groups: NDArray[np.int32]
    unique: int
    step: float
    md5: bytes | None
    trimmed: bool = False  # frames also indexed with the video's letterbox bars trimmed


@dataclass(frozen=True)
class _VideoRows:
    """Frames read for video entries: entry id -> (positions, times, pdq hexes, qualities), and
    the video MD5s."""

    frames: dict[int, tuple[list[float], list[str], list[int]]]
    md5: dict[int, str | None]
    # entry id -> {position: PDQ hex of the frame with the video's bars trimmed}
    trimmed: dict[int, dict[int, str]] = field(default_factory=dict)


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
    frames: MatchIndex
    videos: dict[int, _Video]
    video_md5: ExactStore


@dataclass(frozen=True)
class _Changes:
    """What a refresh read for the entries its log rows named."""

    banks: dict[int, _BankView]
    adds: list[int]
    rows: list[_EntryRow]  # the added entries still active
    videos: _VideoRows


def _step(times: NDArray[np.float64]) -> float:
    """The sampling interval of a frame sequence: the median gap (1 s when unknown)."""
    if times.shape[0] < 2:
        return 1.0
    gaps = np.diff(times)
    gaps = gaps[gaps > 0]
    return float(np.median(gaps)) if gaps.shape[0] else 1.0


def _groups(hexes: Sequence[str], keep: NDArray[np.bool_]) -> tuple[NDArray[np.int32], int]:
    """Per position, a number shared by identical hashes; and how many distinct hashes the kept
    positions hold (HMA's dedupe before counting)."""
    seen: dict[str, int] = {}
    out = np.empty(len(hexes), dtype=np.int32)
    for i, h in enumerate(hexes):
        out[i] = seen.setdefault(h, len(seen))
    unique = len({int(g) for g in out[keep]}) if len(hexes) else 0
    return out, unique


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
        video_seed_distance: int | None = VIDEO_SEED_DISTANCE,
        image_seed_distance: int | None = None,
    ) -> None:
        """``index_factory``: the index for every distance-matched signal type (default: the
        one each type's ``new_index`` makes). ``snapshot_dir``: where to keep the PDQ index
        snapshot (None: never); used only with an index that has ``capture``/
        ``write_snapshot``/``load`` (``MihIndex`` does). ``spawn``: who runs snapshot writes
        and index merges in the background (a service passes its supervisor's).
        ``video_seed_distance``: the first-stage radius of matching a video's frames against
        video entries (see ``VIDEO_SEED_DISTANCE``; None: one exact search).
        ``image_seed_distance``: the radius of a video's frames against image entries (None:
        the banks' threshold; smaller is faster and misses images only that far)."""
        self.db = db
        self.min_quality = min_quality
        self._index_factory = index_factory
        self._snapshot_dir = snapshot_dir
        self._snapshot_every = snapshot_every
        self._spawn = spawn
        self.video_seed_distance = video_seed_distance
        self.image_seed_distance = image_seed_distance
        self._changes_since_snapshot = 0
        self._snapshot_thread: threading.Thread | None = None
        self.loaded_from_snapshot = False
        self._lock = threading.RLock()
        self._signals = signal_types()
        # The exact types an image's own bytes give, asked for on every match_image.
        self._photo_exact = [t.name for t in self._signals.exact() if "photo" in t.content]
        self._widths = {t.name: t.byte_length for t in self._signals.distance()}
        # The exact types a video file's bytes give (md5, sha256, video_md5), and the types
        # whose entries carry frames (vpdq).
        self._video_exact = [
            t.name for t in self._signals.exact() if "video" in t.content and not has_frames(t)
        ]
        self._frame_signals = [t.name for t in self._signals if has_frames(t)]
        empty = self._build({}, [])
        self._indexes: dict[str, MatchIndex] = empty.indexes
        self._exact: dict[str, ExactStore] = empty.exact
        self._frames: MatchIndex = empty.frames
        self._videos: dict[int, _Video] = empty.videos
        self._video_md5: ExactStore = empty.video_md5
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

    def _read_all(
        self, conn: Connection
    ) -> tuple[dict[int, _BankView], Sequence[_EntryRow], _VideoRows]:
        rows = conn.execute(
            select(Entry.id, Entry.bank_id, Entry.signal, Entry.value).where(
                Entry.status == "active"
            )
        ).all()
        return self._read_banks(conn), rows, self._read_videos(conn, None)

    def _read_videos(self, conn: Connection, ids: Sequence[int] | None) -> _VideoRows:
        """Frames and video MD5s of the active video entries (``ids``: only those; None: all)."""
        names = self._frame_signals
        out = _VideoRows({}, {})
        if not names or (ids is not None and not ids):
            return out
        base = (
            select(
                Entry.id,
                Entry.video_md5,
                EntryFrame.timestamp,
                EntryFrame.pdq,
                EntryFrame.quality,
                EntryFrame.trimmed_pdq,
            )
            .join(EntryFrame, EntryFrame.entry_id == Entry.id)
            .where(Entry.status == "active", Entry.signal.in_(names))
            .order_by(Entry.id, EntryFrame.position)
        )
        chunks = [None] if ids is None else [ids[i : i + 500] for i in range(0, len(ids), 500)]
        for chunk in chunks:
            q = base if chunk is None else base.where(Entry.id.in_(chunk))
            for eid, md5, timestamp, pdq, quality, trimmed in conn.execute(q):
                got = out.frames.get(eid)
                if got is None:
                    got = out.frames[eid] = ([], [], [])
                    out.md5[eid] = md5
                if trimmed:
                    out.trimmed.setdefault(eid, {})[len(got[0])] = trimmed
                got[0].append(float(timestamp))
                got[1].append(pdq)
                got[2].append(int(quality))
        return out

    def _add_videos(
        self,
        rows: Iterable[_EntryRow],
        found: _VideoRows,
        frames: MatchIndex,
        videos: dict[int, _Video],
        md5s: ExactStore,
    ) -> None:
        """Index the frames of the video entries among ``rows`` (those at the quality floor or
        over), and remember their times, groups and MD5."""
        ids: list[NDArray[np.int64]] = []
        hashes: list[str] = []
        tags: list[NDArray[np.int32]] = []
        for eid, bank_id, signal, _ in rows:
            if signal not in self._frame_signals or eid not in found.frames:
                continue
            times, hexes, qualities = found.frames[eid]
            keep = np.asarray(qualities, dtype=np.int32) >= self.min_quality
            groups, unique = _groups(hexes, keep)
            t = np.asarray(times, dtype=np.float64)
            md5 = found.md5.get(eid)
            positions = np.flatnonzero(keep).astype(np.int64)
            trimmed = found.trimmed.get(eid, {})
            cut = [p for p in positions.tolist() if p in trimmed]
            videos[eid] = _Video(
                bank_id,
                t,
                groups,
                unique,
                _step(t),
                bytes.fromhex(md5) if md5 else None,
                bool(cut),
            )
            if md5:
                md5s.add(eid, bank_id, bytes.fromhex(md5))
            if positions.shape[0]:
                ids.append((np.int64(eid) << FRAME_BITS) | positions)
                hashes += [hexes[p] for p in positions.tolist()]
                tags.append(np.full(positions.shape[0], bank_id, dtype=np.int32))
            if cut:
                ids.append((np.int64(eid) << FRAME_BITS) | np.asarray(cut, np.int64) | TRIMMED_BIT)
                hashes += [trimmed[p] for p in cut]
                tags.append(np.full(len(cut), bank_id, dtype=np.int32))
        if ids:
            frames.add(np.concatenate(ids), _hex_rows(hashes), np.concatenate(tags))

    def _build(
        self,
        banks: dict[int, _BankView],
        rows: Sequence[_EntryRow],
        videos_found: _VideoRows | None = None,
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
        frames = self._new_frame_index()
        videos: dict[int, _Video] = {}
        md5s = ExactStore()
        if videos_found is not None:
            self._add_videos(rows, videos_found, frames, videos, md5s)
        return _Loaded(indexes, exact, banks, frames, videos, md5s)

    def _new_frame_index(self) -> MatchIndex:
        pdq = self._signals.get(SNAPSHOT_SIGNAL)
        if isinstance(pdq, DistanceSignalType):
            return self._new_index(pdq)
        return self._adopt(self._index_factory() if self._index_factory else MihIndex())

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
            self._frames, self._videos = loaded.frames, loaded.videos
            self._video_md5 = loaded.video_md5
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
                found = self._read_videos(conn, None)
        self._install(
            self._build(banks, rows, found, index), from_snapshot=True, behind=int(behind)
        )
        self.replayer.resume(seq, [int(g) for g in meta.get("gaps") or []])
        self.refresh()  # the log rows written after the snapshot
        return True

    @staticmethod
    def _read_banks(conn: Connection) -> dict[int, _BankView]:
        return {
            b.id: _BankView(
                b.id,
                b.name,
                b.purpose,
                b.threshold,
                b.enabled,
                float(b.vpdq_query_percent),
                float(b.vpdq_min_segment_s),
            )
            for b in conn.execute(
                select(
                    Bank.id,
                    Bank.name,
                    Bank.purpose,
                    Bank.threshold,
                    Bank.enabled,
                    Bank.vpdq_query_percent,
                    Bank.vpdq_min_segment_s,
                )
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
        video_ids = [r[0] for r in rows if r[2] in self._frame_signals]
        return _Changes(self._read_banks(conn), adds, rows, self._read_videos(conn, video_ids))

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
            # A video entry's frames leave and come back with it (ids derive from its id);
            # the dict is replaced, not changed, as queries read it without the lock.
            videos = dict(self._videos)
            leaving = [eid for eid in gone if eid in videos]
            if leaving:
                self._frames.remove(_frame_ids(leaving, videos))
                for eid in leaving:
                    del videos[eid]
                    self._video_md5.remove(eid)
            self._add_videos(changes.rows, changes.videos, self._frames, videos, self._video_md5)
            self._videos = videos
            self._changes_since_snapshot += len(final)

    def __len__(self) -> int:
        return sum(len(i) for i in self._indexes.values()) + sum(
            len(s) for s in self._exact.values()
        )

    def index_sizes(self) -> dict[str, int]:
        """Active entries held per signal type, a video once under ``vpdq`` (HMA's
        ``/m/index/status`` reports them)."""
        with self._lock:
            sizes = {name: len(index) for name, index in self._indexes.items()}
            sizes.update((name, len(store)) for name, store in self._exact.items())
            sizes["vpdq"] = len(self._videos)
        return sizes

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
        outcome = self._match(near, exact, notes)
        if hashes.regions:
            outcome = self._with_regions(outcome, hashes, dihedral=dihedral)
        return outcome

    def _with_regions(
        self, outcome: MatchOutcome, hashes: ImageHashes, *, dihedral: bool
    ) -> MatchOutcome:
        """Add the matches of the pictures inside the image (each proposal's PDQ matched as
        a whole image's is, quality floor included, as shown and mirrored). An entry the whole
        image matched is not repeated; an entry found in several regions is kept at its
        nearest. An allow-bank match of a region cancels that region's other matches only: a
        cleared picture pasted beside a banked one must not clear the collage."""
        seen = {m.entry_id for m in outcome.matches + outcome.suppressed + outcome.allowed_by}
        best: dict[int, Match] = {}
        for rh in hashes.regions:
            if rh.pdq.quality < self.min_quality:
                continue
            # A picture inside a screenshot is shown upright, perhaps mirrored: of the dihedral
            # family only those two are asked, a quarter of the chances of a false match.
            packed = rh.pdq.query_bytes(dihedral=dihedral)
            names: tuple[str, ...] = ("original",)
            if len(packed) == 32 * len(DIHEDRAL_NAMES):
                flip = DIHEDRAL_NAMES.index("flipx")
                packed = packed[:32] + packed[32 * flip : 32 * (flip + 1)]
                names = ("original", "flipx")
            part = self._match([(SNAPSHOT_SIGNAL, packed)], [], [], names)
            for m in part.matches:
                if m.entry_id in seen:
                    continue
                old = best.get(m.entry_id)
                if old is None or m.distance < old.distance:
                    best[m.entry_id] = replace(m, region=rh.region)
        if not best:
            return outcome
        found = sorted(best.values(), key=lambda m: (m.distance, m.bank, m.entry_id))
        if outcome.allowed_by:  # the whole image is cleared: so is everything inside it
            return replace(outcome, suppressed=outcome.suppressed + found)
        return replace(outcome, matches=outcome.matches + found)

    def match_video(self, video: VpdqResult, *, dihedral: bool = True) -> MatchOutcome:
        """Match a hashed video: its file digests exactly (``video_md5``, ``md5``, ``sha256``
        entries, and the MD5 of banked videos), its vPDQ frames against video entries (HMA's
        percentages and the bank's rule, plus segments: a run of matching frames of at least the
        bank's ``vpdq_min_segment_s`` matches however short a part of either video it is), and
        its frames against image entries (signal ``pdq``, with the frame's ``timestamp``).
        With ``dihedral``, frames that carry their 8 dihedral hashes are matched in every
        orientation, so a mirrored or rotated copy matches too. Frames against video entries
        are matched in two stages (``VIDEO_SEED_DISTANCE``: what that can miss)."""
        return self.match_frames(
            video.frames, md5=video.md5, sha256=video.sha256, dihedral=dihedral
        )

    def match_frames(
        self,
        frames: Sequence[VpdqFrame],
        *,
        md5: str | None = None,
        sha256: str | None = None,
        dihedral: bool = True,
    ) -> MatchOutcome:
        """:meth:`match_video` from frames (and the file's digests when known)."""
        exact: list[tuple[str, bytes]] = []
        digests = {"md5": md5, "video_md5": md5, "sha256": sha256}
        for name in self._video_exact:
            value = digests.get(name)
            if value:
                exact.append((name, bytes.fromhex(value)))
        notes: list[str] = []
        with self._lock:
            banks, videos = self._banks, self._videos
            frame_index, pdq_index = self._frames, self._indexes.get(SNAPSHOT_SIGNAL)
        found = self._video_md5_matches(bytes.fromhex(md5)) if md5 else []
        found += self._match([], exact, []).matches_all()
        kept = [f for f in frames if f.quality >= self.min_quality]
        if len(kept) < len(frames):
            notes.append(
                f"{len(frames) - len(kept)} of {len(frames)} frames not matched: quality below "
                f"{self.min_quality}"
            )
        thresholds = [b.threshold for b in banks.values() if b.enabled]
        if kept and thresholds:
            queries, rows_frame, rows_transform = _frame_queries(kept, dihedral=dihedral)
            # Repeated frames (a still scene, black frames) and symmetric pictures give equal
            # rows: each distinct row is searched once and its hits handed to every copy.
            unique, inverse = np.unique(queries, axis=0, return_inverse=True)
            top = max(thresholds)
            seed = _radius(self.video_seed_distance, top)
            radius = {id(frame_index): seed, id(pdq_index): _radius(self.image_seed_distance, top)}
            targets = [i for i in (frame_index, pdq_index) if i is not None and len(i)]
            # One batch search per index, the two side by side: the kernels release the GIL.
            results: list[IndexHits] = []
            if len(targets) == 2:
                with ThreadPoolExecutor(max_workers=1) as pool:
                    other = pool.submit(targets[1].search, unique, radius[id(targets[1])])
                    results = [targets[0].search(unique, radius[id(targets[0])]), other.result()]
            elif targets:
                results = [targets[0].search(unique, radius[id(targets[0])])]
            if seed < top and frame_index in targets:
                # Second stage: the video entries found, against every query row at the top.
                at = targets.index(frame_index)
                results[at] = _verify_frames(frame_index, unique, results[at], videos, top)
            for index, raw in zip(targets, results, strict=True):
                hits = _expand(raw, inverse.reshape(-1), unique.shape[0])
                if index is frame_index:
                    found += _video_matches(kept, hits, rows_frame, rows_transform, banks, videos)
                else:
                    found += _image_matches(kept, hits, rows_frame, rows_transform, banks)
        return self._decide(_best(found), notes)

    def _video_md5_matches(self, digest: bytes) -> list[Match]:
        """Video entries banked with this file MD5 (reported as signal ``video_md5``)."""
        with self._lock:
            banks = self._banks
            found = []
            for eid, bank_id in self._video_md5.get(digest).items():
                bank = banks.get(bank_id)
                if bank is not None and bank.enabled:
                    found.append(Match(bank.name, bank.purpose, eid, "video_md5", 0))
        return found

    def match_hashes(self, values: Sequence[tuple[str, str]]) -> MatchOutcome:
        """Match bare (signal, hex) pairs, e.g. hashes a victim computed on their own device.
        A ``vpdq`` value is its frames (Meta's hash-file text or py-tx's JSON), as HMA's
        ``/m/lookup`` takes it."""
        near: list[tuple[str, bytes]] = []
        exact: list[tuple[str, bytes]] = []
        videos: list[Match] = []
        for signal, value in values:
            if signal.strip().lower() in self._frame_signals:
                from dignity.video.formats import parse_vpdq_text

                part = self.match_frames(parse_vpdq_text(value), dihedral=False)
                videos += part.matches + part.suppressed + part.allowed_by
                continue
            sig, val = self._signals.normalize(signal, value)
            found = self._signals.get(sig)
            if sig in _FILE_MD5:
                # One digest of the file's bytes under two names (md5; video_md5 as StopNCII
                # and NCMEC call it): a lookup by either finds entries of both, and videos
                # banked with their MD5.
                digest = bytes.fromhex(val)
                exact += [(name, digest) for name in _FILE_MD5]
                videos += self._video_md5_matches(digest)
                continue
            (near if found is not None and found.matched_by_distance else exact).append(
                (sig, bytes.fromhex(val))
            )
        outcome = self._match([], exact, [])
        # Each bare hash is its own query (no dihedral family to take the minimum over).
        merged = outcome.matches_all() + videos
        for query in near:
            part = self._match([query], [], [])
            merged += part.matches + part.suppressed + part.allowed_by
        return self._decide(_best(merged), [])

    def _match(
        self,
        near: Sequence[tuple[str, bytes]],
        exact: Sequence[tuple[str, bytes]],
        notes: list[str],
        transforms: Sequence[str] | None = None,
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
                if transforms is not None:  # the caller's own subset of the family
                    transform = transforms[q]
                else:
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


def _expand(hits: IndexHits, inverse: NDArray[np.intp], distinct: int) -> IndexHits:
    """Hits of the distinct query rows as hits of every query row (``inverse``: row ->
    distinct row, as ``np.unique`` gives it)."""
    if not len(hits):
        return hits
    counts = np.bincount(inverse, minlength=distinct)
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    per_hit = counts[hits.query]
    which = np.repeat(np.arange(hits.query.shape[0]), per_hit)
    within = np.arange(which.shape[0]) - np.repeat(np.cumsum(per_hit) - per_hit, per_hit)
    rows = order[starts[hits.query][which] + within]
    return IndexHits(
        query=rows.astype(np.int64),
        ids=hits.ids[which],
        tags=hits.tags[which],
        distances=hits.distances[which],
    )


def _radius(seed: int | None, top: int) -> int:
    return top if seed is None else max(0, min(seed, top))


def _verify_frames(
    index: MatchIndex,
    queries: NDArray[np.uint8],
    seeds: IndexHits,
    videos: dict[int, _Video],
    distance: int,
) -> IndexHits:
    """The second stage of matching a video's frames: every hit within ``distance`` between
    ``queries`` and the frames of the video entries the first stage (``seeds``, a search at a
    smaller radius) found, exactly as a search of the whole index at ``distance`` would give
    them for those entries, in the same order. The candidates' frames come out of the index
    (``lookup``) and are compared with every query row by the compiled scan. An index without
    ``lookup``, or candidates with more frames than an eighth of the index (where scanning them
    would cost about what searching the index does), get the full search instead."""
    # A trimmed frame's id (TRIMMED_BIT) names the same entry.
    entries = (
        np.unique((seeds.ids & ~np.int64(TRIMMED_BIT)) >> FRAME_BITS)
        if len(seeds)
        else np.zeros(0, np.int64)
    )
    known = [int(e) for e in entries.tolist() if int(e) in videos]
    lookup = getattr(index, "lookup", None)
    ids = _frame_ids(known, videos)
    if lookup is None or ids.shape[0] > max(4096, len(index) // 8):
        return index.search(queries, distance)
    if not known:
        return seeds
    found, hashes, tags = lookup(ids)
    ids, hashes, tags = ids[found], np.ascontiguousarray(hashes[found]), tags[found]
    qi, rows, dist = scan_rows(hashes, queries, distance)
    return sorted_hits(qi.astype(np.int64), ids[rows], tags[rows], dist.astype(np.int32))


def _frame_queries(
    frames: Sequence[VpdqFrame], *, dihedral: bool
) -> tuple[NDArray[np.uint8], NDArray[np.int64], NDArray[np.int64]]:
    """The query rows for a video's frames (each frame's 8 dihedral hashes where it has them
    and ``dihedral`` is on, else its hash), with each row's frame and transform; a frame with
    its letterbox bars trimmed (``VpdqFrame.trimmed``) adds the same rows for that hash, so a
    copy with bars added meets the banked frames without them."""
    packed: list[bytes] = []
    rows_frame: list[int] = []
    rows_transform: list[int] = []
    for i, f in enumerate(frames):
        variants: bytes | None = getattr(f, "dihedral", None) if dihedral else None
        if variants and len(variants) == 32 * len(DIHEDRAL_NAMES):
            packed.append(variants)
            rows_frame += [i] * len(DIHEDRAL_NAMES)
            rows_transform += range(len(DIHEDRAL_NAMES))
        else:
            packed.append(bytes.fromhex(f.pdq_hex))
            rows_frame.append(i)
            rows_transform.append(0)
        trimmed: bytes | None = getattr(f, "trimmed", None)
        if trimmed and len(trimmed) % 32 == 0:
            n = len(DIHEDRAL_NAMES) if dihedral and len(trimmed) == len(variants or b"") else 1
            packed.append(trimmed[: 32 * n])
            rows_frame += [i] * n
            rows_transform += range(n)
    queries = np.frombuffer(b"".join(packed), dtype=np.uint8).reshape(-1, 32)
    return queries, np.asarray(rows_frame, np.int64), np.asarray(rows_transform, np.int64)


def _video_matches(
    frames: Sequence[VpdqFrame],
    hits: Any,
    rows_frame: NDArray[np.int64],
    rows_transform: NDArray[np.int64],
    banks: dict[int, _BankView],
    videos: dict[int, _Video],
) -> list[Match]:
    """Video entries matched by a video's frames: per entry and orientation, HMA's percentages
    over distinct hashes and the segments; an entry matches in its best orientation when the
    query percentage reaches its bank's rule or a segment is long enough."""
    if not len(hits):
        return []
    qrows = hits.query
    dist = hits.distances.astype(np.int64)
    thresholds = np.zeros(max(banks) + 1 if banks else 1, dtype=np.int64) - 1
    for b in banks.values():
        if b.enabled:
            thresholds[b.id] = b.threshold
    tags = hits.tags.astype(np.int64)
    ok = (tags < thresholds.shape[0]) & (dist <= thresholds[np.minimum(tags, len(thresholds) - 1)])
    ids = hits.ids[ok] & ~np.int64(TRIMMED_BIT)  # a trimmed banked hash: the same frame
    entry = (ids >> FRAME_BITS).tolist()
    pos = (ids & _FRAME_MASK).tolist()
    qf = rows_frame[qrows[ok]].tolist()
    tf = rows_transform[qrows[ok]].tolist()
    dl = dist[ok].tolist()
    pairs: dict[tuple[int, int], dict[tuple[int, int], int]] = {}
    for e, p, q, t, d in zip(entry, pos, qf, tf, dl, strict=True):
        group = pairs.setdefault((e, t), {})
        if (q, p) not in group or d < group[(q, p)]:
            group[(q, p)] = d
    query_times = [f.timestamp for f in frames]
    qstep = _step(np.asarray(query_times, dtype=np.float64))
    query_group: dict[str, int] = {}
    qgroups = [query_group.setdefault(f.pdq_hex, len(query_group)) for f in frames]
    query_unique = len(query_group)
    best: dict[int, tuple[tuple[float, float], Match]] = {}
    for (eid, t), group in pairs.items():
        video = videos.get(eid)
        bank = banks.get(video.bank_id) if video is not None else None
        if video is None or bank is None:
            continue
        comparison = compare(
            query_times,
            video.times.tolist(),
            [FramePair(q, p, d) for (q, p), d in group.items()],
            min_segment_seconds=bank.vpdq_min_segment_s,
            step=max(qstep, video.step),
        )
        # HMA's percentages: distinct hashes on each side that have a match on the other.
        q_pct = _percent(len({qgroups[q] for q, _ in group}), query_unique)
        c_pct = _percent(len({int(video.groups[p]) for _, p in group}), video.unique)
        if q_pct < bank.vpdq_query_percent and not comparison.segments:
            continue
        longest = max((seg.seconds for seg in comparison.segments), default=0.0)
        match = Match(
            bank.name,
            bank.purpose,
            eid,
            "vpdq",
            comparison.distance,
            DIHEDRAL_NAMES[t],
            query_match_percent=q_pct,
            compared_match_percent=c_pct,
            segments=comparison.segments,
        )
        score = (q_pct, longest)
        if eid not in best or score > best[eid][0]:
            best[eid] = (score, match)
    return [m for _, m in best.values()]


def _image_matches(
    frames: Sequence[VpdqFrame],
    hits: Any,
    rows_frame: NDArray[np.int64],
    rows_transform: NDArray[np.int64],
    banks: dict[int, _BankView],
) -> list[Match]:
    """Image entries a video's frames matched: each at its nearest frame, with that frame's
    time (the earliest such frame on a tie)."""
    best: dict[int, tuple[int, float, int, int]] = {}
    for row, eid, tag, d in zip(
        hits.query.tolist(),
        hits.ids.tolist(),
        hits.tags.tolist(),
        hits.distances.tolist(),
        strict=True,
    ):
        bank = banks.get(tag)
        if bank is None or not bank.enabled or d > bank.threshold:
            continue
        f = int(rows_frame[row])
        key = (d, frames[f].timestamp, int(rows_transform[row]), tag)
        if eid not in best or key < best[eid]:
            best[eid] = key
    out = []
    for eid, (d, timestamp, t, tag) in best.items():
        bank = banks[tag]
        out.append(
            Match(bank.name, bank.purpose, eid, "pdq", d, DIHEDRAL_NAMES[t], timestamp=timestamp)
        )
    return out


def _percent(part: int, whole: int) -> float:
    return 0.0 if whole <= 0 else round(100.0 * min(part, whole) / whole, 2)


def _frame_ids(entry_ids: Sequence[int], videos: dict[int, _Video]) -> NDArray[np.int64]:
    """Every frame id the given video entries can have in the frame index."""
    parts = [
        (np.int64(eid) << FRAME_BITS) | np.arange(videos[eid].times.shape[0], dtype=np.int64)
        for eid in entry_ids
    ]
    # Their letterbox-trimmed hashes, for the entries that have them.
    cut = [p | TRIMMED_BIT for e, p in zip(entry_ids, parts, strict=True) if videos[e].trimmed]
    parts += cut
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


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
