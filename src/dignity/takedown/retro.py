"""Retro-matching: when a hash is added to a block or review bank, find the past uploads it
matches in the scan log and send them to review (or remove them, where the bank says so).

Every way a hash enters a bank (a curator, an import, an exchange fetch, a portal case, a
removal's own hashes) goes through :class:`~dignity.matching.banks.BankService`, which appends an
``add`` row to the bank change log ``index_log`` in the same transaction. :class:`RetroMatcher`
follows that log with a cursor kept in the database (``retro_cursor``), so it sees every addition
once whichever process made it, and for each new active entry of an enabled block or review bank
searches the scan log's hashes within the retention window:

- PDQ entries, within the bank's threshold, against the logged images' PDQ, the pictures found
  inside logged uploads (``scan_regions``) and the logged videos' frames (``copy_frame``), in all
  8 orientations. The log keeps only each upload's own hash, so the entry's dihedral variants
  are derived from its hash: each orientation is a transpose and sign pattern of the 16 x 16
  DCT block PDQ thresholds at its median (:mod:`dignity.hashing.pdq`), so transposing the bit
  grid and flipping the bits of negated coefficients gives the variant's hash, exact except for
  coefficients near the median (6 bits on average, at most 18, on the sample scenes; a mirrored
  copy is still found well inside the default threshold of 31);
- MD5 and SHA-256 entries (and a video entry's file MD5) against the logged digests (indexed
  columns);
- video (vPDQ) entries against the logged videos, by shared segments as a takedown sweep
  compares them (:meth:`~dignity.takedown.scanlog.ScanLog.find_copies`), and their frames
  against the logged images (``copy_still``).

The PDQ side is an exact in-memory index (:class:`~dignity.matching.index.MihIndex`, the bank
index's) over the scan log, built once per process and caught up by scan id on each run
(:class:`ScanIndex`), so a new entry costs a few index probes, not a pass over the log. Hits
are checked against the log before anything is written (still there, not removed, with a
content id, inside the retention window). Each hit (entry, scan) is recorded once in
``retro_hits`` (unique), with, in the same transaction, a review item (the scan's open item if
it has one) and a ``scan.retro_match`` event carrying the evidence; a block bank named in
``retro_remove_banks`` removes the upload at once through
:meth:`~dignity.takedown.removal.RemovalService.remove_scan` (statement, copy sweep, bank
entries), checked against ``retro_hits`` first so that a removal reversed on appeal is not
redone. Media is never touched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import (
    BigInteger,
    CursorResult,
    Integer,
    String,
    UniqueConstraint,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from dignity import audit
from dignity.actions.outbox import emit_event
from dignity.hashing.pdq import _DIHEDRAL, DIHEDRAL_NAMES
from dignity.matching.index import MihIndex, sorted_hits
from dignity.matching.protocol import IndexHits
from dignity.settings import Settings
from dignity.storage.changelog import GapRule
from dignity.storage.db import Database
from dignity.storage.models import Bank, Base, BigId, Entry, EntryFrame, IndexLog, utcnow
from dignity.storage.types import UtcDateTime
from dignity.takedown.clock import Clock, SystemClock
from dignity.takedown.models import ReviewItem, ScanRecord, ScanRegion, ScanVideo
from dignity.takedown.scanlog import VIDEO_MIN_QUALITY, HashSet, ScanLog, VideoFrames

log = logging.getLogger("dignity.retro")

CURSOR_NAME = "retro-match"
LOAD_BATCH = 50_000  # scan-log rows per read while building or catching up the index
# A catch-up reads again this many ids below the last one it saw: on PostgreSQL an id is handed
# out before its transaction commits, so a scan can appear after a higher id was read. Rows the
# index already holds are skipped. (Videos: fewer, as each carries many frames.)
LOOKBACK = 1000
LOOKBACK_VIDEOS = 50
LOG_BATCH = 2_000  # change-log rows per step of a run
_KIND_SCAN, _KIND_REGION, _KIND_FRAME = 0, 1, 2
_FRAME_BITS = 20  # frames per logged video the id packs (a day at one frame a second fits)
_ACTIVE_PURPOSES = ("block", "review")
# Queue priority of a retro-match (0 urgent .. 3 low): known NCII first.
_PRIORITY = {"block": 0, "review": 1}


class RetroHit(Base):
    """One past upload found by one bank entry; unique, so it is acted on once."""

    __tablename__ = "retro_hits"
    __table_args__ = (UniqueConstraint("entry_id", "scan_id", name="uq_retro_hits_entry_scan"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    entry_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    scan_id: Mapped[int] = mapped_column(BigInteger, nullable=False, index=True)
    bank_id: Mapped[int] = mapped_column(Integer, nullable=False)
    signal: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str] = mapped_column(String(16), nullable=False)
    distance: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    action: Mapped[str] = mapped_column(String(16), nullable=False)
    review_item_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    removal_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    event_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[Any] = mapped_column(UtcDateTime(), default=utcnow)


class RetroCursor(Base):
    """How far into ``index_log`` retro-matching has gone."""

    __tablename__ = "retro_cursor"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    updated_at: Mapped[Any] = mapped_column(UtcDateTime(), default=utcnow)


# -- hashes ------------------------------------------------------------------------------------


def _hex_rows(values: Sequence[str]) -> NDArray[np.uint8]:
    return np.frombuffer(bytes.fromhex("".join(values)), dtype=np.uint8).reshape(-1, 32)


def pdq_variants(hex_hash: str) -> NDArray[np.uint8]:
    """The 8 dihedral variants of a PDQ hash (``DIHEDRAL_NAMES`` order, the hash first), as
    (8, 32) rows, derived from the hash alone (see the module doc: approximate)."""
    raw = np.frombuffer(bytes.fromhex(hex_hash), dtype=np.uint8)
    # Bit k = i * 16 + j of the DCT grid is stored last-first (bit 255 is the first bit).
    grid = np.unpackbits(raw)[::-1].reshape(16, 16).astype(bool)
    rows = []
    for transpose, signs in _DIHEDRAL:
        bits = grid.T if transpose else grid
        negated = (signs.T if transpose else signs) < 0
        rows.append(np.packbits((bits ^ negated).ravel()[::-1]))
    return np.ascontiguousarray(np.stack(rows))


def _pack_id(kind: int, ref: int) -> int:
    return (ref << 2) | kind


def _frame_ref(scan_id: int, frame: int) -> int:
    return (scan_id << _FRAME_BITS) | frame


# -- the index over the scan log --------------------------------------------------------------


class ScanIndex:
    """An exact PDQ index over the scan log (images, regions, video frames), caught up by id.

    Rows that the log has since removed or purged stay in the index until the next rebuild:
    every hit is checked against the log, so they cost memory only. ``rebuild_every_s`` bounds
    that (a purge deletes a day's rows at a time)."""

    def __init__(self, *, frames: bool = True, rebuild_every_s: float = 7 * 24 * 3600.0) -> None:
        self.frames = frames
        self.rebuild_every_s = rebuild_every_s
        self.index = MihIndex(background=False)
        self.last_scan = 0
        self.last_region = 0
        self.last_video = 0
        self.built_at = 0.0
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.index)

    def search(
        self, queries: NDArray[np.uint8], max_distance: int, *, threads: int = 1
    ) -> IndexHits:
        """Every indexed row within ``max_distance`` of each query; with ``threads`` > 1 the
        queries are split between threads (the index's kernel releases the GIL, so they run on
        that many cores)."""
        index = self.index
        n = int(queries.shape[0])
        if threads <= 1 or n < 2 * threads:
            return index.search(queries, max_distance)
        step = -(-n // threads)
        with ThreadPoolExecutor(threads, thread_name_prefix="retro-search") as pool:
            parts = list(
                pool.map(
                    lambda start: (
                        start,
                        index.search(queries[start : start + step], max_distance),
                    ),
                    range(0, n, step),
                )
            )
        return sorted_hits(
            np.concatenate([h.query + start for start, h in parts]),
            np.concatenate([h.ids for _, h in parts]),
            np.concatenate([h.tags for _, h in parts]),
            np.concatenate([h.distances for _, h in parts]),
        )

    def catch_up(self, db: Database, min_quality: int) -> int:
        """Add the rows logged since the last call (all of them the first time, or when the
        index is due for a rebuild); returns how many were added."""
        with self.lock:
            if self.built_at and time.time() - self.built_at > self.rebuild_every_s:
                self.index = MihIndex(background=False)
                self.last_scan = self.last_region = self.last_video = 0
                self.built_at = 0.0
            ids: list[NDArray[np.int64]] = []
            rows: list[NDArray[np.uint8]] = []
            with db.session() as s:
                for part_ids, part_rows in self._read(s, min_quality):
                    ids.append(part_ids)
                    rows.append(part_rows)
            if not ids:
                self.built_at = self.built_at or time.time()
                return 0
            all_ids = np.concatenate(ids)
            all_rows = np.ascontiguousarray(np.concatenate(rows))
            tags = np.zeros(all_ids.shape[0], dtype=np.int32)
            if not self.built_at:
                self.index = MihIndex.from_arrays(all_ids, all_rows, tags, background=False)
                self.built_at = time.time()
            else:
                known, _hashes, _tags = self.index.lookup(all_ids)
                fresh = ~known
                all_ids, all_rows, tags = all_ids[fresh], all_rows[fresh], tags[fresh]
                self.index.add(all_ids, np.ascontiguousarray(all_rows), tags)
            return int(all_ids.shape[0])

    def _read(
        self, s: Session, floor: int
    ) -> Iterable[tuple[NDArray[np.int64], NDArray[np.uint8]]]:
        # The driver's cursor directly: ORM rows would cost more than the index (the scan
        # log's own sweep does the same). The statements hold only integers we computed.
        back = LOOKBACK if self.built_at else 0
        cursor = s.connection().connection.cursor()
        try:
            low = max(0, self.last_scan - back)
            while True:
                cursor.execute(
                    f"SELECT id, pdq FROM scan_log WHERE id > {low:d} AND pdq IS NOT NULL"
                    f" AND (pdq_quality IS NULL OR pdq_quality >= {int(floor):d})"
                    f" ORDER BY id LIMIT {LOAD_BATCH:d}"
                )
                batch = cursor.fetchall()
                if not batch:
                    break
                low = int(batch[-1][0])
                self.last_scan = max(self.last_scan, low)
                yield (
                    np.asarray([_pack_id(_KIND_SCAN, int(r[0])) for r in batch], dtype=np.int64),
                    _hex_rows([str(r[1]) for r in batch]),
                )
            low = max(0, self.last_region - back)
            while True:
                cursor.execute(
                    f"SELECT id, pdq FROM scan_regions WHERE id > {low:d}"
                    f" AND pdq_quality >= {int(floor):d} ORDER BY id LIMIT {LOAD_BATCH:d}"
                )
                batch = cursor.fetchall()
                if not batch:
                    break
                low = int(batch[-1][0])
                self.last_region = max(self.last_region, low)
                yield (
                    np.asarray([_pack_id(_KIND_REGION, int(r[0])) for r in batch], dtype=np.int64),
                    _hex_rows([str(r[1]) for r in batch]),
                )
        finally:
            cursor.close()
        if self.frames:
            yield from self._read_frames(s, floor)

    def _read_frames(
        self, s: Session, floor: int
    ) -> Iterable[tuple[NDArray[np.int64], NDArray[np.uint8]]]:
        quality = max(floor, VIDEO_MIN_QUALITY)
        low = max(0, self.last_video - (LOOKBACK_VIDEOS if self.built_at else 0))
        while True:
            videos = s.execute(
                select(ScanVideo.scan_id, ScanVideo.frames)
                .where(ScanVideo.scan_id > low)
                .order_by(ScanVideo.scan_id)
                .limit(256)
            ).all()
            if not videos:
                return
            low = int(videos[-1][0])
            self.last_video = max(self.last_video, low)
            for scan_id, packed in videos:
                frames = VideoFrames.unpack(bytes(packed), None, 0.0)
                keep = [
                    k
                    for k in range(min(frames.count, 1 << _FRAME_BITS))
                    if frames.qualities[k] >= quality
                ]
                if not keep:
                    continue
                rows = frames.rows()[keep]
                yield (
                    np.asarray(
                        [_pack_id(_KIND_FRAME, _frame_ref(int(scan_id), k)) for k in keep],
                        dtype=np.int64,
                    ),
                    np.ascontiguousarray(rows),
                )


_SHARED: dict[str, ScanIndex] = {}
_SHARED_LOCK = threading.Lock()


def shared_index(db: Database) -> ScanIndex:
    """This process's index over ``db``'s scan log (built on first use, kept between runs)."""
    key = db.engine.url.render_as_string(hide_password=True)
    with _SHARED_LOCK:
        found = _SHARED.get(key)
        if found is None:
            found = _SHARED[key] = ScanIndex()
        return found


# -- finding and acting -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    id: int
    signal: str
    value: str
    video_md5: str | None
    bank_id: int
    bank: str
    purpose: str
    threshold: int


@dataclass
class _Found:
    """The best evidence that one entry matches one logged scan."""

    entry: _Entry
    scan_id: int
    reason: str
    distance: int
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class RetroSummary:
    """What one run did."""

    entries: int = 0
    hits: int = 0
    review_items: int = 0
    removals: int = 0
    cursor: int = 0
    index_rows: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "entries": self.entries,
            "hits": self.hits,
            "review_items": self.review_items,
            "removals": self.removals,
            "cursor": self.cursor,
            "index_rows": self.index_rows,
        }


Progress = Callable[[int, int | None, dict[str, int]], None]


class RetroMatcher:
    """Follows ``index_log`` and acts on the past uploads each new entry matches."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        index: ScanIndex | None = None,
        clock: Clock | None = None,
        settle_s: float | None = None,
        remove: Callable[[int], int | None] | None = None,
        threads: int = 1,
    ) -> None:
        self.db = db
        self.settings = settings
        self.index = index if index is not None else shared_index(db)
        self.clock: Clock = clock or SystemClock()
        self.scan_log = ScanLog(db, settings, self.clock)
        # An entry is matched once every process's index has it (a scan racing the add is
        # then matched at scan time): twice the refresh interval after its log row.
        self.settle_s = 2 * settings.index_refresh_s if settle_s is None else settle_s
        # How a removal is made (scan id -> removal id): RemovalService.remove_scan's.
        self.remove = remove
        self.rule = GapRule()
        # Cores for the PDQ search: 1e4 new entries in 8 orientations against 1e7 logged
        # hashes take about two CPU-minutes (docs/backfill.md).
        self.threads = max(1, threads)

    # -- the cursor -------------------------------------------------------------------------
    def cursor(self) -> int:
        with self.db.session() as s:
            row = s.get(RetroCursor, CURSOR_NAME)
            return int(row.seq) if row is not None else 0

    def _advance(self, old: int, new: int) -> bool:
        with self.db.session() as s:
            if s.get(RetroCursor, CURSOR_NAME) is None:
                try:
                    with s.begin_nested():
                        s.add(RetroCursor(name=CURSOR_NAME, seq=0, updated_at=utcnow()))
                except IntegrityError:
                    pass
            moved = s.execute(
                update(RetroCursor)
                .where(RetroCursor.name == CURSOR_NAME, RetroCursor.seq == old)
                .values(seq=new, updated_at=utcnow())
            )
            return bool(cast(CursorResult[Any], moved).rowcount)

    def start_at_end(self) -> int:
        """Skip the log as it is now (an installation that does not want its existing banks
        matched against its existing log); returns the new cursor."""
        with self.db.session() as s:
            top = int(s.scalar(select(IndexLog.seq).order_by(IndexLog.seq.desc()).limit(1)) or 0)
        self._advance(self.cursor(), top)
        return top

    def _pending(self, after: int) -> list[tuple[int, int, str]]:
        """Log rows after ``after`` that are settled: no open gap below them, and old enough."""
        now = utcnow()
        with self.db.session() as s:
            rows = s.execute(
                select(IndexLog.seq, IndexLog.entry_id, IndexLog.op, IndexLog.at)
                .where(IndexLog.seq > after)
                .order_by(IndexLog.seq)
                .limit(LOG_BATCH)
            ).all()
        aged = [(int(r[0]), (now - r[3]).total_seconds()) for r in rows]
        taken = self.rule.settled(aged, after)
        out: list[tuple[int, int, str]] = []
        for (seq, entry_id, op, _at), (_, age) in zip(rows[:taken], aged[:taken], strict=True):
            if age < self.settle_s:
                break
            out.append((int(seq), int(entry_id), str(op)))
        return out

    # -- a run --------------------------------------------------------------------------------
    def run(self, *, max_rows: int = 100_000, progress: Progress | None = None) -> RetroSummary:
        """Process the change log from the cursor (at most ``max_rows`` rows)."""
        summary = RetroSummary()
        floor = self.settings.pdq_min_quality
        self.index.catch_up(self.db, floor)
        summary.index_rows = len(self.index)
        done = 0
        while done < max_rows:
            start = self.cursor()
            rows = self._pending(start)
            if not rows:
                summary.cursor = start
                break
            added = sorted({entry_id for _, entry_id, op in rows if op == "add"})
            entries = self._entries(added)
            summary.entries += len(entries)
            for found in self._find(entries):
                self._act(found, summary)
            done += len(rows)
            if not self._advance(start, rows[-1][0]):
                # Another run moved the cursor meanwhile; its hits and ours are recorded once.
                summary.cursor = self.cursor()
                break
            summary.cursor = rows[-1][0]
            if progress is not None:
                progress(done, None, summary.to_dict())
        return summary

    def _entries(self, ids: Sequence[int]) -> list[_Entry]:
        out: list[_Entry] = []
        with self.db.session() as s:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                q = (
                    select(
                        Entry.id,
                        Entry.signal,
                        Entry.value,
                        Entry.video_md5,
                        Bank.id,
                        Bank.name,
                        Bank.purpose,
                        Bank.threshold,
                    )
                    .join(Bank, Bank.id == Entry.bank_id)
                    .where(
                        Entry.id.in_(chunk),
                        Entry.status == "active",
                        Bank.enabled.is_(True),
                        Bank.purpose.in_(_ACTIVE_PURPOSES),
                    )
                )
                out.extend(
                    _Entry(
                        id=int(r[0]),
                        signal=str(r[1]),
                        value=str(r[2]),
                        video_md5=r[3],
                        bank_id=int(r[4]),
                        bank=str(r[5]),
                        purpose=str(r[6]),
                        threshold=int(r[7]),
                    )
                    for r in s.execute(q)
                )
        return out

    def _find(self, entries: Sequence[_Entry]) -> list[_Found]:
        best: dict[tuple[int, int], _Found] = {}

        def keep(found: _Found) -> None:
            key = (found.entry.id, found.scan_id)
            old = best.get(key)
            if old is None or found.distance < old.distance:
                best[key] = found

        pdq = [e for e in entries if e.signal == "pdq"]
        for found in self._near(pdq):
            keep(found)
        for found in self._exact(entries):
            keep(found)
        for entry in (e for e in entries if e.signal == "vpdq"):
            for found in self._video(entry):
                keep(found)
        if not best:
            return []
        return self._live(list(best.values()))

    def _near(self, entries: Sequence[_Entry]) -> list[_Found]:
        """PDQ entries in their 8 orientations against the index, each within its bank's
        threshold."""
        if not entries:
            return []
        queries = np.concatenate([pdq_variants(e.value) for e in entries])
        top = max(e.threshold for e in entries)
        hits = self.index.search(queries, top, threads=self.threads)
        out: list[_Found] = []
        for row, ident, dist in zip(
            hits.query.tolist(), hits.ids.tolist(), hits.distances.tolist(), strict=True
        ):
            entry = entries[row // 8]
            if dist > entry.threshold:
                continue
            variant = row % 8
            kind, ref = ident & 3, ident >> 2
            evidence: dict[str, Any] = {}
            if variant:
                evidence["orientation"] = DIHEDRAL_NAMES[variant]
            if kind == _KIND_SCAN:
                out.append(_Found(entry, ref, "copy_pdq", int(dist), evidence))
            elif kind == _KIND_REGION:
                out.append(_Found(entry, -ref, "copy_pdq", int(dist), evidence))  # resolved later
            else:
                scan_id, frame = ref >> _FRAME_BITS, ref & ((1 << _FRAME_BITS) - 1)
                evidence["frame"] = frame
                out.append(_Found(entry, scan_id, "copy_frame", int(dist), evidence))
        return self._regions(out)

    def _regions(self, found: list[_Found]) -> list[_Found]:
        """Region hits carry the region id (negated) in ``scan_id``: resolve to the scan."""
        region_ids = [-f.scan_id for f in found if f.scan_id < 0]
        if not region_ids:
            return found
        with self.db.session() as s:
            where = {
                int(r[0]): r
                for r in s.execute(
                    select(
                        ScanRegion.id,
                        ScanRegion.scan_id,
                        ScanRegion.x,
                        ScanRegion.y,
                        ScanRegion.w,
                        ScanRegion.h,
                    ).where(ScanRegion.id.in_(region_ids))
                )
            }
        out = []
        for f in found:
            if f.scan_id >= 0:
                out.append(f)
                continue
            r = where.get(-f.scan_id)
            if r is None:
                continue  # purged with its scan
            f.scan_id = int(r[1])
            f.evidence["region"] = {"x": int(r[2]), "y": int(r[3]), "w": int(r[4]), "h": int(r[5])}
            out.append(f)
        return out

    def _exact(self, entries: Sequence[_Entry]) -> list[_Found]:
        by_md5: dict[str, list[_Entry]] = {}
        by_sha: dict[str, list[_Entry]] = {}
        for e in entries:
            if e.signal == "md5":
                by_md5.setdefault(e.value.lower(), []).append(e)
            elif e.signal == "sha256":
                by_sha.setdefault(e.value.lower(), []).append(e)
            if e.video_md5:
                by_md5.setdefault(e.video_md5.lower(), []).append(e)
        out: list[_Found] = []
        with self.db.session() as s:
            for column, wanted in ((ScanRecord.md5, by_md5), (ScanRecord.sha256, by_sha)):
                keys = list(wanted)
                for start in range(0, len(keys), 500):
                    for scan_id, value in s.execute(
                        select(ScanRecord.id, column).where(column.in_(keys[start : start + 500]))
                    ):
                        for e in wanted.get(str(value), []):
                            out.append(_Found(e, int(scan_id), "copy_exact", 0))
        return out

    def _video(self, entry: _Entry) -> list[_Found]:
        """A video entry: logged videos sharing its footage (as a takedown sweep finds them),
        and logged images showing one of its frames."""
        with self.db.session() as s:
            frames = s.execute(
                select(
                    EntryFrame.frame_number,
                    EntryFrame.timestamp,
                    EntryFrame.quality,
                    EntryFrame.pdq,
                )
                .where(EntryFrame.entry_id == entry.id)
                .order_by(EntryFrame.position)
            ).all()
        if not frames:
            return []
        video = VideoFrames(
            numbers=tuple(int(f[0]) for f in frames),
            times=tuple(float(f[1]) for f in frames),
            qualities=tuple(int(f[2]) for f in frames),
            hashes=bytes.fromhex("".join(str(f[3]) for f in frames)),
            duration=max(float(f[1]) for f in frames),
        )
        out = [
            _Found(entry, c.scan_id, c.reason, c.distance, c.evidence())
            for c in self.scan_log.find_copies(
                [HashSet(None, "-", "-", video=video)], threshold=entry.threshold, stills=False
            )
        ]
        usable = [k for k, q in enumerate(video.qualities) if q >= self.settings.pdq_min_quality]
        if usable:
            hits = self.index.search(video.rows()[usable], entry.threshold)
            for row, ident, dist in zip(
                hits.query.tolist(), hits.ids.tolist(), hits.distances.tolist(), strict=True
            ):
                if ident & 3 == _KIND_SCAN:
                    at = round(video.times[usable[row]], 3)
                    out.append(
                        _Found(entry, ident >> 2, "copy_still", int(dist), {"source_timestamp": at})
                    )
        return out

    def _live(self, found: list[_Found]) -> list[_Found]:
        """The findings whose scan is still in the log, not removed, with a content id and
        inside the retention window; a frame's time is filled in."""
        cutoff = self.clock.now() - timedelta(days=self.settings.scan_log_retention_days)
        ids = sorted({f.scan_id for f in found})
        live: dict[int, ScanRecord] = {}
        with self.db.session() as s:
            for start in range(0, len(ids), 500):
                for row in s.scalars(
                    select(ScanRecord).where(
                        ScanRecord.id.in_(ids[start : start + 500]),
                        ScanRecord.removed_at.is_(None),
                        ScanRecord.content_id.is_not(None),
                        ScanRecord.created_at >= cutoff,
                    )
                ):
                    live[row.id] = row
            framed = {f.scan_id for f in found if "frame" in f.evidence and f.scan_id in live}
            times: dict[int, tuple[float, ...]] = {}
            if framed:
                for scan_id, packed in s.execute(
                    select(ScanVideo.scan_id, ScanVideo.frames).where(ScanVideo.scan_id.in_(framed))
                ):
                    times[int(scan_id)] = VideoFrames.unpack(bytes(packed), None, 0.0).times
        out = []
        for f in found:
            if f.scan_id not in live:
                continue
            if "frame" in f.evidence:
                k = int(f.evidence.pop("frame"))
                ts = times.get(f.scan_id, ())
                if k < len(ts):
                    f.evidence["timestamp"] = round(ts[k], 3)
            out.append(f)
        return sorted(out, key=lambda f: (f.entry.id, f.scan_id))

    def _act(self, found: _Found, summary: RetroSummary) -> None:
        entry = found.entry
        with self.db.session() as s:
            seen = s.scalar(
                select(RetroHit.id).where(
                    RetroHit.entry_id == entry.id, RetroHit.scan_id == found.scan_id
                )
            )
        if seen is not None:
            return
        removing = (
            entry.purpose == "block"
            and entry.bank in self.settings.retro_remove_banks
            and self.remove is not None
        )
        removal_id = self.remove(found.scan_id) if removing and self.remove else None
        try:
            with self.db.session() as s:
                self._record(s, found, removal_id, summary)
        except IntegrityError:
            return  # another run recorded this hit first

    def _record(
        self, s: Session, found: _Found, removal_id: int | None, summary: RetroSummary
    ) -> None:
        entry = found.entry
        scan = s.get(ScanRecord, found.scan_id)
        assert scan is not None
        now = self.clock.now()
        action = "remove" if removal_id is not None else "review"
        item_id: int | None = None
        if action == "review":
            item_id = s.scalar(
                select(ReviewItem.id).where(
                    ReviewItem.kind == "scan",
                    ReviewItem.scan_id == scan.id,
                    ReviewItem.state.in_(("open", "deciding")),
                )
            )
            if item_id is None:
                item = ReviewItem(
                    kind="scan",
                    scan_id=scan.id,
                    priority=_PRIORITY.get(entry.purpose, 1),
                    state="open",
                    note=(
                        f"retro-match: {entry.bank} entry {entry.id} ({entry.signal}, "
                        f"{found.reason}, distance {found.distance})"
                    ),
                    created_at=now,
                )
                s.add(item)
                s.flush()
                item_id = item.id
                summary.review_items += 1
        else:
            summary.removals += 1
        hit = RetroHit(
            entry_id=entry.id,
            scan_id=scan.id,
            bank_id=entry.bank_id,
            signal=entry.signal,
            reason=found.reason,
            distance=found.distance,
            action=action,
            review_item_id=item_id,
            removal_id=removal_id,
            created_at=now,
        )
        s.add(hit)
        s.flush()  # the unique (entry, scan) refuses a second recording here
        payload = {
            "scan_id": scan.id,
            "content_id": scan.content_id,
            "uploader": scan.uploader,
            "scanned_at": scan.created_at.isoformat(),
            "bank": entry.bank,
            "bank_id": entry.bank_id,
            "purpose": entry.purpose,
            "entry_id": entry.id,
            "signal": entry.signal,
            "reason": found.reason,
            "distance": found.distance,
            "action": action,
            "review_item_id": item_id,
            "removal_id": removal_id,
            **found.evidence,
        }
        hit.event_id = emit_event(s, "scan.retro_match", payload)
        audit.record(s, "scan.retro_match", f"scan:{scan.id}", payload)
        summary.hits += 1
