"""Exact in-memory PDQ indexes behind ``MatchIndex``: ``MihIndex`` and ``BruteForceIndex``.

``MihIndex`` is an exact multi-index-hashing index built to stay under 64 bytes per entry, hashes
included, at ten million entries. A large segment picks a key width K (16 bits, up to 20 for the
largest segments, so that a bucket holds about 14 rows), orders its rows by their first K bits
(chunk 0, whose buckets are then contiguous row ranges, verified in place) and keeps posting lists
for six more chunks of K + 8 bits each: a K-bit bucket key plus an 8-bit filter stored beside the
row number in one uint32, so a probe rejects most rows without touching their hashes. By the
generalised pigeonhole principle an entry within distance ``d`` is within radius ``r_c`` of the
query in some chunk whenever ``sum(r_c + 1) >= d + 1``, whatever the split; the kernel picks the
radii for each query from the sizes of the buckets around it (a dense chunk gets a small radius, a
sparse one a large one), or scans when that is cheaper, as at large distances (the rest of the bits
are only verified). The kernels are C (``_mihcore.c``) and release the GIL. Updates are LSM style:
new entries go to a small brute-force tail, a full tail is frozen into an immutable segment (small
segments are just scanned), and segments of similar size are merged (large merges in a background
thread), so an add never waits for a rebuild of the whole index. Removals are tombstones that merges
and compactions drop. Mutations run under a lock and publish a new immutable state, so a concurrent
search always sees one consistent state without locking. ``save``/``load`` persist the arrays as
checksummed snapshot files. ``BruteForceIndex`` is the simple reference the tests compare against.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import secrets
import shutil
import threading
import time
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dignity.background import Spawn, spawn_thread
from dignity.errors import Unavailable
from dignity.matching.protocol import HASH_BYTES, IndexHits

try:
    from dignity.matching import _mihcore as _core
except ImportError:  # pragma: no cover - a checkout whose extension was never compiled
    _core = None  # type: ignore[assignment]
    warnings.warn(
        "dignity.matching._mihcore is not built (pip install -e . compiles it): PDQ searches "
        "fall back to a slow numpy scan",
        RuntimeWarning,
        stacklevel=1,
    )

__all__ = ["BruteForceIndex", "MihIndex", "SnapshotError"]

MAX_DISTANCE = HASH_BYTES * 8
_WORDS = HASH_BYTES // 8  # uint64 words per hash
_NCHUNK = 6  # posting chunks of K + 8 bits (K-bit bucket + 8-bit filter), after chunk 0
_MIN_KEY_BITS = 16
_MAX_KEY_BITS = 20
# Key width: buckets of about this many rows on average. Wider keys mean fewer, shorter buckets
# to read per query; each key bit doubles the seven offset tables (4 bytes a bucket), so this
# also caps them near 2 bytes per entry.
_ROWS_PER_BUCKET = 14
# Segments smaller than this are scanned: their bucket tables (1.8 MB) would outweigh their rows,
# and a compiled scan of 128k rows takes about a tenth of a millisecond.
_MIH_MIN_ROWS = 1 << 17
_MAX_SEGMENT_ROWS = (1 << 24) - 1  # a posting entry keeps 24 bits for the row
_SNAPSHOT_FORMAT = 2
_PER_QUERY: tuple[int, ...] = ()  # a plan that leaves the radii to the kernel, query by query

# Costs in nanoseconds, measured with _mihcore on one core of the 2-vCPU EPYC this was built on,
# that decide between probing and scanning a segment (the kernel's per-query plan uses the same
# figures). Only their ratios matter, and only for speed, never correctness.
_COST_VISIT = 30.0  # one probed bucket: offsets lookup and a cache miss at its start
_COST_ROW_SEQ = 3.5  # one chunk-0 row verified in place (sequential)
_COST_POSTING = 0.7  # one posting entry read and filtered
_COST_CANDIDATE = 12.0  # one candidate verified by random access into the hashes
_COST_SCAN_ROW = 1.3  # one row of a compiled scan

# Bounds on temporaries of the numpy scan (the fallback without the compiled kernels).
_SCAN_ROWS = 1 << 14
_SCAN_PAIRS = 1 << 16

I64 = NDArray[np.int64]
I32 = NDArray[np.int32]
U64 = NDArray[np.uint64]
U8 = NDArray[np.uint8]
AnyInt = NDArray[Any]

_EMPTY_I64: I64 = np.zeros(0, dtype=np.int64)
_EMPTY_I32: I32 = np.zeros(0, dtype=np.int32)


# ---------------------------------------------------------------------------------------------
# Input validation shared by both indexes


def _check_hashes(hashes: object, name: str) -> U8:
    if not isinstance(hashes, np.ndarray):
        raise ValueError(f"{name} must be a numpy array of shape (n, {HASH_BYTES}), uint8")
    if hashes.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8, got {hashes.dtype}")
    if hashes.ndim != 2 or hashes.shape[1] != HASH_BYTES:
        raise ValueError(f"{name} must have shape (n, {HASH_BYTES}), got {hashes.shape}")
    return np.ascontiguousarray(hashes)


def _check_ints(values: object, name: str, dtype: type[np.signedinteger[Any]]) -> AnyInt:
    if not isinstance(values, np.ndarray):
        raise ValueError(f"{name} must be a 1-D numpy integer array")
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {values.shape}")
    # Only lossless integer conversions: a float or uint64 id silently rounded would be a
    # different entry.
    if values.dtype.kind not in "iu" or not np.can_cast(values.dtype, dtype):
        raise ValueError(f"{name} must be an integer array castable to {np.dtype(dtype)}")
    return np.ascontiguousarray(values, dtype=dtype)


def _check_batch(ids: object, hashes: object, tags: object) -> tuple[I64, U8, I32]:
    ids_ = _check_ints(ids, "ids", np.int64)
    hashes_ = _check_hashes(hashes, "hashes")
    tags_ = _check_ints(tags, "tags", np.int32)
    if not ids_.shape[0] == hashes_.shape[0] == tags_.shape[0]:
        raise ValueError(
            "ids, hashes and tags must have the same length, got "
            f"{ids_.shape[0]}, {hashes_.shape[0]}, {tags_.shape[0]}"
        )
    if _has_duplicates(ids_):
        raise ValueError("ids contains duplicates")
    return ids_, hashes_, tags_


def _has_duplicates(ids: I64) -> bool:
    # Loads from storage arrive sorted by id; checking that first skips a sort. (np.unique
    # hashes int64 in numpy 2.x, an order of magnitude slower than sorting here.)
    if ids.shape[0] < 2 or bool(np.all(ids[1:] > ids[:-1])):
        return False
    ordered = np.sort(ids)
    return bool(np.any(ordered[1:] == ordered[:-1]))


def _check_distance(max_distance: object) -> int:
    if isinstance(max_distance, bool) or not isinstance(max_distance, int | np.integer):
        raise ValueError(f"max_distance must be an int, got {type(max_distance).__name__}")
    if not 0 <= max_distance <= MAX_DISTANCE:
        raise ValueError(f"max_distance must be in 0..{MAX_DISTANCE}, got {max_distance}")
    return int(max_distance)


def _empty_hits() -> IndexHits:
    return IndexHits(query=_EMPTY_I64, ids=_EMPTY_I64, tags=_EMPTY_I32, distances=_EMPTY_I32)


def sorted_hits(query: I64, ids: I64, tags: I32, distances: I32) -> IndexHits:
    # A stable, documented order (query, then distance, then id) keeps callers and tests simple.
    order = np.lexsort((ids, distances, query))
    return IndexHits(
        query=query[order], ids=ids[order], tags=tags[order], distances=distances[order]
    )


def _lookup_sorted(ids: I64, have: I64, hashes: U8, tags: I32) -> tuple[NDArray[np.bool_], U8, I32]:
    """Rows of ``have`` (unsorted, distinct ids) matching ``ids``: found mask, hashes, tags."""
    found = np.zeros(ids.shape[0], dtype=bool)
    out_h = np.zeros((ids.shape[0], HASH_BYTES), dtype=np.uint8)
    out_t = np.zeros(ids.shape[0], dtype=np.int32)
    if have.shape[0] and ids.shape[0]:
        order = np.argsort(have, kind="stable")
        pos = np.minimum(np.searchsorted(have, ids, sorter=order), have.shape[0] - 1)
        rows = order[pos]
        found = have[rows] == ids
        out_h[found] = hashes[rows[found]]
        out_t[found] = tags[rows[found]]
    return found, out_h, out_t


# ---------------------------------------------------------------------------------------------
# BruteForceIndex


@dataclass(frozen=True, slots=True)
class _Table:
    ids: I64
    hashes: U8
    tags: I32


class BruteForceIndex:
    """Exact index that compares every query with every entry; the oracle for ``MihIndex``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._table = _Table(np.zeros(0, np.int64), np.zeros((0, HASH_BYTES), np.uint8), _EMPTY_I32)

    def __len__(self) -> int:
        return int(self._table.ids.shape[0])

    def add(self, ids: I64, hashes: U8, tags: I32) -> None:
        ids_, hashes_, tags_ = _check_batch(ids, hashes, tags)
        with self._lock:
            table = self._table
            clash = np.isin(ids_, table.ids)
            if clash.any():
                raise ValueError(f"id {int(ids_[clash][0])} is already in the index")
            self._table = _Table(
                np.concatenate([table.ids, ids_]),
                np.concatenate([table.hashes, hashes_]),
                np.concatenate([table.tags, tags_]),
            )

    def remove(self, ids: I64) -> int:
        ids_ = _check_ints(ids, "ids", np.int64)
        with self._lock:
            table = self._table
            keep = ~np.isin(table.ids, ids_)
            removed = int(table.ids.shape[0] - keep.sum())
            if removed:
                self._table = _Table(table.ids[keep], table.hashes[keep], table.tags[keep])
            return removed

    def lookup(self, ids: I64) -> tuple[NDArray[np.bool_], U8, I32]:
        """Each id's hash and tag where it is live (``found``), as ``MihIndex.lookup``."""
        ids_ = _check_ints(ids, "ids", np.int64)
        table = self._table
        return _lookup_sorted(ids_, table.ids, table.hashes, table.tags)

    def search(self, queries: U8, max_distance: int) -> IndexHits:
        queries_ = _check_hashes(queries, "queries")
        d = _check_distance(max_distance)
        table = self._table
        n = table.ids.shape[0]
        if n == 0 or queries_.shape[0] == 0:
            return _empty_hits()
        step = max(1, (1 << 22) // (n * HASH_BYTES))
        parts: list[tuple[I64, I64, I32]] = []
        for start in range(0, queries_.shape[0], step):
            block = queries_[start : start + step]
            dist = np.bitwise_count(block[:, None, :] ^ table.hashes[None, :, :]).sum(
                axis=2, dtype=np.int32
            )
            q, rows = np.nonzero(dist <= d)
            parts.append((q.astype(np.int64) + start, rows.astype(np.int64), dist[q, rows]))
        query = np.concatenate([p[0] for p in parts])
        rows = np.concatenate([p[1] for p in parts])
        dists = np.concatenate([p[2] for p in parts])
        return sorted_hits(query, table.ids[rows], table.tags[rows], dists)

    def memory_bytes(self) -> int:
        table = self._table
        return int(table.ids.nbytes + table.hashes.nbytes + table.tags.nbytes)


# ---------------------------------------------------------------------------------------------
# Vectorised kernels


def _within(xored: U64, d: int) -> tuple[I64, NDArray[np.uint32]]:
    """Rows of XORed hashes (``(t, 4)`` uint64) with at most ``d`` bits set, and their counts."""
    counts = np.bitwise_count(xored)
    # Multiplying the four per-word counts, packed as bytes, by 0x01010101 sums them into the
    # top byte in two cheap passes (a third of the work of a sum over a length-4 axis). The sum
    # is modulo 256, so only a distance of 256 (every bit differs, each count 64) wraps, to 0.
    total = counts.view(np.uint32).reshape(-1) * np.uint32(0x01010101)
    total >>= 24
    hit = np.flatnonzero(total <= d)
    dist = total[hit]
    zero = np.flatnonzero(dist == 0)
    if zero.shape[0]:
        wrapped = zero[counts[hit[zero], 0] != 0]
        if wrapped.shape[0]:
            if d >= MAX_DISTANCE:
                dist[wrapped] = MAX_DISTANCE
            else:
                hit, dist = np.delete(hit, wrapped), np.delete(dist, wrapped)
    return hit, dist


def _scan(hashes: U64, queries: U64, d: int) -> tuple[I64, I64, NDArray[np.uint32]]:
    """Every (query, row, distance) with distance <= d, comparing each query with each row."""
    n = hashes.shape[0]
    nq = queries.shape[0]
    flat = hashes.reshape(-1)
    rows_per_block = min(n, _SCAN_ROWS)
    queries_per_step = max(1, _SCAN_PAIRS // rows_per_block)
    out_q: list[I64] = []
    out_r: list[I64] = []
    out_d: list[NDArray[np.uint32]] = []
    for q0 in range(0, nq, queries_per_step):
        qblock = queries[q0 : q0 + queries_per_step]
        # One tiled copy of the queries serves every row block, making the XOR a flat loop:
        # numpy broadcasting over a length-4 inner axis is several times slower.
        tiled = np.tile(qblock, (1, rows_per_block))
        for r0 in range(0, n, rows_per_block):
            r1 = min(n, r0 + rows_per_block)
            width = r1 - r0
            x = np.bitwise_xor(flat[None, r0 * _WORDS : r1 * _WORDS], tiled[:, : width * _WORDS])
            hit, dist = _within(x.reshape(-1, _WORDS), d)
            if hit.shape[0]:
                qi, ri = np.divmod(hit, width)
                out_q.append(qi + q0)
                out_r.append(ri + r0)
                out_d.append(dist)
    if not out_q:
        return _EMPTY_I64, _EMPTY_I64, np.zeros(0, np.uint32)
    return np.concatenate(out_q), np.concatenate(out_r), np.concatenate(out_d)


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Column:
    """Integers kept as offsets from ``base`` in the narrowest unsigned type that holds them.

    Database ids are mostly dense and tags are a handful of bank ids, so this usually halves the
    ids and quarters the tags. Both are only widened for hits, lookups and merges.
    """

    base: int
    values: AnyInt

    @staticmethod
    def pack(values: AnyInt) -> _Column:
        if values.shape[0] == 0:
            return _Column(0, np.zeros(0, dtype=np.uint8))
        low = int(values.min())
        span = int(values.max()) - low
        for narrow in (np.uint8, np.uint16, np.uint32):
            if span <= np.iinfo(narrow).max:
                # values - low cannot overflow: it is at most span.
                return _Column(low, (values.astype(np.int64) - low).astype(narrow))
        return _Column(0, values.astype(np.int64))

    def take(self, rows: AnyInt) -> I64:
        out = np.take(self.values, rows).astype(np.int64)
        if self.base:
            out += self.base
        return out

    def unpack(self) -> I64:
        out = self.values.astype(np.int64)
        if self.base:
            out += self.base
        return out

    def search_sorted(self, wanted: I64) -> I64:
        """Position of each wanted value in these (sorted, distinct) values, else -1."""
        n = self.values.shape[0]
        if n == 0:
            return np.full(wanted.shape[0], -1, dtype=np.int64)
        if self.values.dtype == np.int64:
            in_range = np.ones(wanted.shape[0], dtype=bool)
            rel = wanted
        else:
            top = self.base + int(np.iinfo(self.values.dtype).max)
            in_range = (wanted >= self.base) & (wanted <= top)
            # Only in-range values are shifted, so the subtraction cannot overflow.
            rel = np.zeros(wanted.shape[0], dtype=np.int64)
            rel[in_range] = wanted[in_range] - self.base
        key = rel.astype(self.values.dtype)
        pos = np.searchsorted(self.values, key)
        pos[pos == n] = 0
        found = in_range & (self.values[pos] == key)
        return np.where(found, pos, -1).astype(np.int64)


def _in_sorted(values: I64, sorted_set: I64) -> NDArray[np.bool_]:
    pos = np.searchsorted(sorted_set, values)
    pos[pos == sorted_set.shape[0]] = 0
    hit: NDArray[np.bool_] = sorted_set[pos] == values
    return hit


def _triples(raw: bytes) -> tuple[I64, I64, I64]:
    """The kernels' flat (query, row, distance) int64 output as three columns."""
    flat = np.frombuffer(raw, dtype=np.int64).reshape(-1, 3)
    return flat[:, 0], flat[:, 1], flat[:, 2]


def scan_rows(hashes: U8, queries: U8, d: int) -> tuple[I64, I64, I64]:
    if _core is not None:
        return _triples(_core.scan(hashes, queries, d))
    q, r, x = _scan(hashes.view(np.uint64), queries.view(np.uint64), d)
    return q, r, x.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# The search plan: which radius to probe in each chunk


def _comb(n: int, k: int) -> int:
    return math.comb(n, k) if 0 <= k <= n else 0


# Fraction of uniformly random filter bytes within distance a of the query's.
_FILTER_PASS = [sum(_comb(8, f) for f in range(min(a, 8) + 1)) / 256.0 for a in range(64)]


def _key_bits(n: int) -> int:
    """Key width of a segment of ``n`` rows (see ``_ROWS_PER_BUCKET``)."""
    bits = (max(1, n) // _ROWS_PER_BUCKET).bit_length() - 1
    return min(_MAX_KEY_BITS, max(_MIN_KEY_BITS, bits))


def _radius_cap(key_bits: int, chunk: int) -> int:
    """Largest radius the kernel probes chunk ``chunk`` at (its mask tables' reach)."""
    reach = _core.MAX_RADIUS[key_bits] if _core is not None else -1
    if chunk == 0 or reach < key_bits:
        return reach
    return key_bits + 8


@lru_cache(maxsize=4096)
def _plan(n: int, key_bits: int, stats: tuple[float, ...], d: int) -> tuple[int, ...] | None:
    """How to search a segment at distance ``d``: None to scan it, else ``_PER_QUERY`` (the
    kernel picks each query's radii from the buckets around it) or fixed radii (tests).

    The decision uses the kernel's cost model for a typical query: ``stats[c]`` is the expected
    size of the bucket a query drawn from the data lands in (``sum(count**2) / n``, many times
    the mean on clustered data), the other levels are taken at the mean. Greedy: each step
    raises by one the radius whose next level costs least until ``sum(r + 1) = d + 1``.
    """
    mean = n / (1 << key_bits)

    def cost(c: int, r: int) -> float:
        total = 0.0
        for h in range(min(r, key_bits) + 1):
            rows = stats[c] if h == 0 else _comb(key_bits, h) * mean
            total += _comb(key_bits, h) * _COST_VISIT
            if c == 0:
                total += rows * _COST_ROW_SEQ
            else:
                total += rows * (_COST_POSTING + _FILTER_PASS[r - h] * _COST_CANDIDATE)
        return total

    radii = [-1] * (_NCHUNK + 1)
    spent = [0.0] * (_NCHUNK + 1)
    total = 0.0
    for _ in range(d + 1):
        best, best_step = -1, math.inf
        for c in range(_NCHUNK + 1):
            if radii[c] + 1 <= _radius_cap(key_bits, c):
                step = cost(c, radii[c] + 1) - spent[c]
                if step < best_step:
                    best, best_step = c, step
        if best < 0:
            return None
        radii[best] += 1
        spent[best] += best_step
        total += best_step
        if total >= _COST_SCAN_ROW * n:
            return None
    return _PER_QUERY


# ---------------------------------------------------------------------------------------------
# Segments


@dataclass(frozen=True, slots=True)
class _Segment:
    """An immutable segment: a small one is scanned, a large one carries the MIH arrays.

    MIH layout (see ``_mihcore.c``), with ``K = key_bits`` and ``T = 2**K + 1``: rows ordered by
    their first K bits, ``off0[k]`` the first row of chunk-0 bucket ``k``; posting chunk ``j``
    covers bits ``K + j * (K + 8)`` on, a K-bit key then an 8-bit filter; ``offs[j * T + key]``
    starts bucket ``key`` in ``posts[j * n:(j + 1) * n]``, whose entries are
    ``row << 8 | filter byte``. Scanned segments keep rows sorted by id instead, so id lookups
    are binary searches; MIH segments look ids up with one compiled pass. ``dead`` holds the
    sorted rows removed since the segment was built.
    """

    ids: _Column
    tags: _Column
    hashes: U8
    off0: NDArray[np.uint32] | None
    offs: NDArray[np.uint32] | None
    posts: NDArray[np.uint32] | None
    stats: tuple[float, ...]
    dead: I64
    uid: int  # kept by tombstoned copies, so maintenance can recognise its sources
    # Smallest and largest id: new ids (database sequences) mostly fall outside, which settles
    # an add's duplicate check without a pass over a large segment's unsorted ids.
    id_lo: int
    id_hi: int

    @property
    def size(self) -> int:
        return int(self.hashes.shape[0])

    @property
    def live(self) -> int:
        return self.size - int(self.dead.shape[0])

    @property
    def is_mih(self) -> bool:
        return self.off0 is not None

    def arrays(self) -> dict[str, AnyInt]:
        out: dict[str, AnyInt] = {
            "ids": self.ids.values,
            "tags": self.tags.values,
            "hashes": self.hashes,
            "dead": self.dead,
        }
        if self.off0 is not None and self.offs is not None and self.posts is not None:
            out.update(off0=self.off0, offs=self.offs, posts=self.posts)
        return out

    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.arrays().values()))

    def find(self, ids: I64) -> I64:
        """Row of each id if it is live here, else -1."""
        if self.size == 0 or not bool(np.any((ids >= self.id_lo) & (ids <= self.id_hi))):
            return np.full(ids.shape[0], -1, dtype=np.int64)
        pos = self._find_unsorted(ids) if self.is_mih else self.ids.search_sorted(ids)
        if self.dead.shape[0]:
            pos[_in_sorted(pos, self.dead)] = -1
        return pos

    def _find_unsorted(self, ids: I64) -> I64:
        col = self.ids
        wanted = np.unique(ids)
        if col.values.dtype != np.int64:
            top = col.base + int(np.iinfo(col.values.dtype).max)
            wanted = wanted[(wanted >= col.base) & (wanted <= top)] - col.base
        out = np.full(ids.shape[0], -1, dtype=np.int64)
        if wanted.shape[0] == 0:
            return out
        if _core is not None:
            raw = _core.find(col.values, col.values.dtype.itemsize, wanted)
            rows = np.frombuffer(raw, dtype=np.int64)
        else:
            rows = np.flatnonzero(np.isin(col.values, wanted))
        if rows.shape[0]:
            found_ids = col.take(rows)
            order = np.argsort(found_ids)
            found_ids, rows = found_ids[order], rows[order]
            pos = np.searchsorted(found_ids, ids)
            pos[pos == found_ids.shape[0]] = 0
            hit = found_ids[pos] == ids
            out[hit] = rows[pos[hit]]
        return out

    def without(self, rows: I64) -> _Segment:
        """A copy with these (live, distinct) rows tombstoned; O(tombstones), no full copy."""
        rows = np.sort(rows)
        return replace(self, dead=np.insert(self.dead, np.searchsorted(self.dead, rows), rows))

    def live_rows(self) -> tuple[I64, U8, I32]:
        ids, tags = self.ids.unpack(), self.tags.unpack().astype(np.int32)
        if not self.dead.shape[0]:
            return ids, self.hashes, tags
        keep = np.ones(self.size, dtype=bool)
        keep[self.dead] = False
        return ids[keep], self.hashes[keep], tags[keep]

    @property
    def key_bits(self) -> int:
        # Implied by the table size, so a snapshot cannot make the two disagree.
        return 0 if self.off0 is None else int(self.off0.shape[0] - 1).bit_length() - 1

    def search(self, queries: U8, d: int) -> tuple[I64, I64, I64]:
        """(query, row, distance) of the live rows within ``d``."""
        plan = None
        if self.is_mih and _core is not None:
            plan = _plan(self.size, self.key_bits, self.stats, d)
        if plan is None:
            qi, rows, dist = scan_rows(self.hashes, queries, d)
        else:
            raw = _core.search(
                self.hashes,
                self.off0,
                self.offs,
                self.posts,
                self.size,
                self.key_bits,
                queries,
                d,
                plan or None,
            )
            qi, rows, dist = _triples(raw)
        if self.dead.shape[0] and rows.shape[0]:
            alive = ~_in_sorted(rows, self.dead)
            qi, rows, dist = qi[alive], rows[alive], dist[alive]
        return qi, rows, dist


_segment_uids = itertools.count()


def _id_range(ids: AnyInt) -> tuple[int, int]:
    return (int(ids.min()), int(ids.max())) if ids.shape[0] else (0, -1)


def _build_segment(ids: I64, hashes: U8, tags: I32) -> _Segment:
    n = ids.shape[0]
    if n < _MIH_MIN_ROWS or _core is None:
        if n > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            order = np.argsort(ids, kind="stable")
            ids, hashes, tags = ids[order], hashes[order], tags[order]
        else:
            # Our own copy: the caller may reuse its buffer (ids and tags are copied when packed).
            hashes = hashes.copy()
        return _Segment(
            _Column.pack(ids),
            _Column.pack(tags),
            hashes,
            None,
            None,
            None,
            (),
            _EMPTY_I64,
            next(_segment_uids),
            *_id_range(ids),
        )
    if n > _MAX_SEGMENT_ROWS:
        raise ValueError(f"a segment holds at most {_MAX_SEGMENT_ROWS} rows, got {n}")
    # Counting sorts in C: linear time, about 0.1 s per chunk at ten million rows.
    k = _key_bits(n)
    table = (1 << k) + 1
    off0 = np.empty(table, dtype=np.uint32)
    order = np.empty(n, dtype=np.uint32)
    stats = [_core.bucketize(hashes, 0, k, off0, order)]
    hashes = hashes[order]
    ids, tags = ids[order], tags[order]
    del order
    offs = np.empty(_NCHUNK * table, dtype=np.uint32)
    posts = np.empty(_NCHUNK * n, dtype=np.uint32)
    for j in range(_NCHUNK):
        stats.append(
            _core.bucketize(
                hashes, j + 1, k, offs[j * table : (j + 1) * table], posts[j * n : (j + 1) * n]
            )
        )
    return _Segment(
        _Column.pack(ids),
        _Column.pack(tags),
        hashes,
        off0,
        offs,
        posts,
        tuple(stats),
        _EMPTY_I64,
        next(_segment_uids),
        *_id_range(ids),
    )


# ---------------------------------------------------------------------------------------------
# MihIndex


@dataclass(frozen=True, slots=True)
class _State:
    """One immutable snapshot: frozen segments plus the brute-force tail of recent adds."""

    segments: tuple[_Segment, ...]
    tail_ids: I64
    tail_hashes: U8
    tail_tags: I32

    @property
    def live(self) -> int:
        return sum(s.live for s in self.segments) + int(self.tail_ids.shape[0])

    def with_segments(self, segments: Sequence[_Segment]) -> _State:
        return _State(tuple(segments), self.tail_ids, self.tail_hashes, self.tail_tags)


def _empty_tail() -> tuple[I64, U8, I32]:
    return _EMPTY_I64, np.zeros((0, HASH_BYTES), dtype=np.uint8), _EMPTY_I32


def _rebuild(sources: Sequence[_Segment]) -> _Segment | None:
    """One segment holding the live rows of ``sources``; None if none is live."""
    parts = [s.live_rows() for s in sources if s.live]
    if not parts:
        return None
    if len(parts) == 1:
        return _build_segment(*parts[0])
    return _build_segment(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


class SnapshotError(Unavailable):
    """A snapshot directory is missing, unreadable, corrupt or of another format. The engine
    catches it and rebuilds the index from the database instead."""

    codes = ("index.bad_snapshot",)


@dataclass(frozen=True)
class Captured:
    """An index state taken at one instant, to be written by ``MihIndex.write_snapshot``."""

    state: _State


class MihIndex:
    """Exact, incremental multi-index-hashing index over 256-bit hashes (see the module doc).

    ``tail_limit``: how many recent adds the brute-force tail holds before it is frozen into a
    segment. ``merge_ratio``: a segment is merged with its newer neighbour while it holds at
    most this many times as many live rows, so sizes grow geometrically and there are about
    ``log(n / tail_limit) / log(merge_ratio)`` segments. ``compact_fraction``: a segment whose
    tombstoned fraction exceeds this is rebuilt without them. ``background``: merges and
    compactions of more than ``inline_rows`` rows run in a worker thread, so no single add or
    remove waits for a large rebuild (ten million rows take several seconds); searches keep using
    the old segments until the new one is swapped in. Small ones run inline, which is cheaper
    than a thread hand-off.
    """

    def __init__(
        self,
        *,
        tail_limit: int = 4096,
        merge_ratio: float = 4.0,
        compact_fraction: float = 0.5,
        background: bool = True,
        inline_rows: int = 1 << 16,
    ) -> None:
        if tail_limit < 1:
            raise ValueError(f"tail_limit must be >= 1, got {tail_limit}")
        if merge_ratio < 1.0:
            raise ValueError(f"merge_ratio must be >= 1, got {merge_ratio}")
        if not 0.0 < compact_fraction <= 1.0:
            raise ValueError(f"compact_fraction must be in (0, 1], got {compact_fraction}")
        self._options: dict[str, Any] = {
            "tail_limit": tail_limit,
            "merge_ratio": merge_ratio,
            "compact_fraction": compact_fraction,
            "background": background,
            "inline_rows": inline_rows,
        }
        self._tail_limit = tail_limit
        self._merge_ratio = merge_ratio
        self._compact_fraction = compact_fraction
        self._background = background
        self._inline_rows = inline_rows
        self._lock = threading.Lock()
        self._state = _State((), *_empty_tail())
        self._worker: threading.Thread | None = None
        self._worker_error: BaseException | None = None
        # Who runs background merges: a plain thread, or the owning process's supervisor
        # (the match engine hands its own down), which names and reports them.
        self.spawn: Spawn = spawn_thread

    @classmethod
    def from_arrays(
        cls,
        ids: I64,
        hashes: U8,
        tags: I32,
        **options: Any,
    ) -> MihIndex:
        """Build an index holding these entries (the startup load from storage).

        ``options`` are the constructor's keyword arguments.
        """
        index = cls(**options)
        ids_, hashes_, tags_ = _check_batch(ids, hashes, tags)
        n = ids_.shape[0]
        if n > index._tail_limit:
            segments = [
                _build_segment(
                    ids_[s : s + _MAX_SEGMENT_ROWS],
                    hashes_[s : s + _MAX_SEGMENT_ROWS],
                    tags_[s : s + _MAX_SEGMENT_ROWS],
                )
                for s in range(0, n, _MAX_SEGMENT_ROWS)
            ]
            index._state = _State(tuple(segments), *_empty_tail())
        elif n:
            index._state = _State((), ids_, hashes_.copy(), tags_)
        return index

    def __len__(self) -> int:
        return self._state.live

    def segment_sizes(self) -> list[int]:
        """Live rows per frozen segment, oldest first, then the tail's (for tests and metrics)."""
        state = self._state
        return [s.live for s in state.segments] + [int(state.tail_ids.shape[0])]

    def wait_for_maintenance(self, timeout: float | None = None) -> None:
        """Block until background merges are done; re-raises a failure of one of them."""
        while True:
            with self._lock:
                worker = self._worker
                error, self._worker_error = self._worker_error, None
            if error is not None:
                raise RuntimeError("background index maintenance failed") from error
            if worker is None:
                return
            worker.join(timeout)
            if timeout is not None:
                return

    def add(self, ids: I64, hashes: U8, tags: I32) -> None:
        """Add entries; visible to the next search. An id already live raises ``ValueError``."""
        ids_, hashes_, tags_ = _check_batch(ids, hashes, tags)
        if ids_.shape[0] == 0:
            return
        with self._lock:
            state = self._state
            clash = np.isin(ids_, state.tail_ids)
            for seg in state.segments:
                clash |= seg.find(ids_) >= 0
            if clash.any():
                raise ValueError(f"id {int(ids_[clash][0])} is already in the index")
            tail_ids = np.concatenate([state.tail_ids, ids_])
            tail_hashes = np.concatenate([state.tail_hashes, hashes_])
            tail_tags = np.concatenate([state.tail_tags, tags_])
            if tail_ids.shape[0] <= self._tail_limit:
                self._state = _State(state.segments, tail_ids, tail_hashes, tail_tags)
                return
            frozen = [
                _build_segment(
                    tail_ids[s : s + _MAX_SEGMENT_ROWS],
                    tail_hashes[s : s + _MAX_SEGMENT_ROWS],
                    tail_tags[s : s + _MAX_SEGMENT_ROWS],
                )
                for s in range(0, tail_ids.shape[0], _MAX_SEGMENT_ROWS)
            ]
            self._state = _State((*state.segments, *frozen), *_empty_tail())
            self._maintain()

    def remove(self, ids: I64) -> int:
        """Remove entries by id (unknown ids are ignored); returns how many were live."""
        ids_ = np.unique(_check_ints(ids, "ids", np.int64))
        if ids_.shape[0] == 0:
            return 0
        with self._lock:
            state = self._state
            removed = 0
            segments: list[_Segment] = []
            for seg in state.segments:
                rows = seg.find(ids_)
                rows = rows[rows >= 0]
                if rows.shape[0]:
                    removed += int(rows.shape[0])
                    seg = seg.without(rows)
                segments.append(seg)
            keep = ~np.isin(state.tail_ids, ids_)
            tail_removed = int(keep.shape[0] - np.count_nonzero(keep))
            if not removed and not tail_removed:
                return 0
            if tail_removed:
                tail = (state.tail_ids[keep], state.tail_hashes[keep], state.tail_tags[keep])
            else:
                tail = (state.tail_ids, state.tail_hashes, state.tail_tags)
            self._state = _State(tuple(segments), *tail)
            if removed:
                self._maintain()
            return removed + tail_removed

    def search(self, queries: U8, max_distance: int) -> IndexHits:
        """Every live entry within ``max_distance`` (0..256) of each query row, exactly.

        Hits are ordered by query row, then distance, then id. Many queries per call (a bulk
        scan) cost less per query than one call each.
        """
        queries_ = _check_hashes(queries, "queries")
        d = _check_distance(max_distance)
        state = self._state  # one consistent snapshot for the whole search
        if queries_.shape[0] == 0 or state.live == 0:
            return _empty_hits()
        out_q: list[I64] = []
        out_ids: list[I64] = []
        out_tags: list[I32] = []
        out_d: list[I64] = []
        for seg in state.segments:
            qi, rows, dist = seg.search(queries_, d)
            if qi.shape[0]:
                out_q.append(qi)
                out_ids.append(seg.ids.take(rows))
                out_tags.append(seg.tags.take(rows).astype(np.int32))
                out_d.append(dist)
        if state.tail_ids.shape[0]:
            qi, rows, dist = scan_rows(state.tail_hashes, queries_, d)
            if qi.shape[0]:
                out_q.append(qi)
                out_ids.append(state.tail_ids[rows])
                out_tags.append(state.tail_tags[rows])
                out_d.append(dist)
        if not out_q:
            return _empty_hits()
        return sorted_hits(
            np.concatenate(out_q).astype(np.int64),
            np.concatenate(out_ids),
            np.concatenate(out_tags),
            np.concatenate(out_d).astype(np.int32),
        )

    def lookup(self, ids: I64) -> tuple[NDArray[np.bool_], U8, I32]:
        """The hash and tag of each id that is live (``found`` True), zeros for the others.

        Verifying a few known entries against many queries (the second stage of matching a
        video) needs their hashes, which the index already holds. One compiled pass per large
        segment finds the rows.
        """
        ids_ = _check_ints(ids, "ids", np.int64)
        state = self._state
        found = np.zeros(ids_.shape[0], dtype=bool)
        hashes = np.zeros((ids_.shape[0], HASH_BYTES), dtype=np.uint8)
        tags = np.zeros(ids_.shape[0], dtype=np.int32)
        for seg in state.segments:
            rows = seg.find(ids_)
            hit = rows >= 0
            if hit.any():
                found |= hit
                hashes[hit] = seg.hashes[rows[hit]]
                tags[hit] = seg.tags.take(rows[hit]).astype(np.int32)
        if state.tail_ids.shape[0]:
            t_found, t_hashes, t_tags = _lookup_sorted(
                ids_, state.tail_ids, state.tail_hashes, state.tail_tags
            )
            found |= t_found
            hashes[t_found] = t_hashes[t_found]
            tags[t_found] = t_tags[t_found]
        return found, hashes, tags

    def memory_bytes(self) -> int:
        """Bytes held in numpy arrays (hashes, ids, tags, buckets, tombstones).

        Excludes fixed per-object Python overhead, the small shared mask table and, while a
        background merge runs, the segment it is building.
        """
        state = self._state
        tail = state.tail_ids.nbytes + state.tail_hashes.nbytes + state.tail_tags.nbytes
        return int(tail + sum(seg.nbytes() for seg in state.segments))

    # -- persistence ---------------------------------------------------------------------------

    def capture(self) -> Captured:
        """This instant's state, cheaply (arrays are immutable), for ``write_snapshot``."""
        return Captured(self._state)

    @staticmethod
    def write_snapshot(captured: Captured, directory: Path, meta: dict[str, Any]) -> Path:
        """Write a captured state and ``meta`` (JSON) as a new snapshot generation.

        A generation is a directory of raw ``.npy`` files plus a manifest with their CRC-32s;
        ``CURRENT`` names the newest and is replaced atomically, so a crash mid-write leaves the
        previous snapshot in force and a reader never sees a half-written one.
        """
        directory.mkdir(parents=True, exist_ok=True)
        gen = directory / f"gen-{time.time_ns():x}-{os.getpid()}-{secrets.token_hex(4)}"
        gen.mkdir()
        files: dict[str, dict[str, Any]] = {}

        def put(name: str, array: AnyInt) -> None:
            array = np.ascontiguousarray(array)
            path = gen / f"{name}.npy"
            with open(path, "wb") as f:
                np.lib.format.write_array(f, array, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
            files[name] = {
                "crc32": zlib.crc32(array.reshape(-1).view(np.uint8).data),
                "bytes": array.nbytes,
            }

        state = captured.state
        segments: list[dict[str, Any]] = []
        try:
            for i, seg in enumerate(state.segments):
                for key, array in seg.arrays().items():
                    put(f"s{i}-{key}", array)
                segments.append(
                    {
                        "ids_base": seg.ids.base,
                        "tags_base": seg.tags.base,
                        "mih": seg.is_mih,
                        "stats": list(seg.stats),
                    }
                )
            put("tail-ids", state.tail_ids)
            put("tail-hashes", state.tail_hashes)
            put("tail-tags", state.tail_tags)
            manifest = {
                "format": _SNAPSHOT_FORMAT,
                "layout": {"nchunk": _NCHUNK},
                "segments": segments,
                "files": files,
                "meta": meta,
            }
            (gen / "manifest.json").write_text(json.dumps(manifest))
            pointer = directory / f"CURRENT.{secrets.token_hex(4)}.tmp"
            pointer.write_text(gen.name)
            os.replace(pointer, directory / "CURRENT")
        except BaseException:
            shutil.rmtree(gen, ignore_errors=True)
            raise
        # Older generations are no longer named by CURRENT; a reader that is still loading one
        # holds open files, which stay readable after the unlink.
        for old in directory.glob("gen-*"):
            if old.name != gen.name:
                shutil.rmtree(old, ignore_errors=True)
        return gen

    def save(self, directory: Path, meta: dict[str, Any]) -> Path:
        """Write this index's current state as a snapshot (see ``write_snapshot``)."""
        return self.write_snapshot(self.capture(), directory, meta)

    @classmethod
    def load(cls, directory: Path, **options: Any) -> tuple[MihIndex, dict[str, Any]]:
        """The index and ``meta`` of the newest snapshot; ``SnapshotError`` if there is none or
        it is damaged (every file's length and CRC-32 is checked while it is read)."""
        try:
            gen = directory / (directory / "CURRENT").read_text().strip()
            manifest = json.loads((gen / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise SnapshotError(f"no readable snapshot in {directory}: {exc}") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != _SNAPSHOT_FORMAT:
            raise SnapshotError("snapshot of another format")
        if manifest.get("layout") != {"nchunk": _NCHUNK}:
            raise SnapshotError("snapshot of another index layout")
        files = manifest["files"]

        def get(name: str) -> AnyInt:
            info = files.get(name)
            if info is None:
                raise SnapshotError(f"snapshot lacks {name}")
            try:
                # Read into anonymous memory rather than memory-map: numpy asks for huge pages
                # there, which the random reads of verification need (page-cache mappings get
                # 4 KB pages), and reading a GB from the page cache takes well under a second.
                array = np.load(gen / f"{name}.npy", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise SnapshotError(f"snapshot file {name} unreadable: {exc}") from exc
            if (
                array.nbytes != info["bytes"]
                or zlib.crc32(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)
                != info["crc32"]
            ):
                raise SnapshotError(f"snapshot file {name} is corrupt")
            return np.asarray(array)

        index = cls(**options)
        try:
            segments: list[_Segment] = []
            for i, info in enumerate(manifest["segments"]):
                mih = bool(info["mih"])
                hashes = get(f"s{i}-hashes")
                ids = _Column(int(info["ids_base"]), get(f"s{i}-ids"))
                lo, hi = _id_range(ids.values)
                seg = _Segment(
                    ids,
                    _Column(int(info["tags_base"]), get(f"s{i}-tags")),
                    hashes,
                    get(f"s{i}-off0") if mih else None,
                    get(f"s{i}-offs") if mih else None,
                    get(f"s{i}-posts") if mih else None,
                    tuple(float(x) for x in info["stats"]),
                    get(f"s{i}-dead").astype(np.int64),
                    next(_segment_uids),
                    ids.base + lo,
                    ids.base + hi,
                )
                _check_segment(seg)
                segments.append(seg)
            tail_ids = get("tail-ids").astype(np.int64)
            tail_hashes = get("tail-hashes")
            tail_tags = get("tail-tags").astype(np.int32)
            if tail_hashes.shape != (tail_ids.shape[0], HASH_BYTES) or tail_tags.shape != (
                tail_ids.shape
            ):
                raise SnapshotError("snapshot tail arrays disagree")
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"snapshot manifest is malformed: {exc}") from exc
        index._state = _State(tuple(segments), tail_ids, tail_hashes, tail_tags)
        meta = manifest.get("meta")
        return index, meta if isinstance(meta, dict) else {}

    # -- maintenance: everything below runs with self._lock held, except _work's builds ---------

    def _plan(self) -> tuple[_Segment, ...] | None:
        """The next merge or compaction the segment list needs, if any."""
        segs = self._state.segments
        for seg in segs:
            if seg.live == 0 or seg.dead.shape[0] > self._compact_fraction * seg.size:
                return (seg,)
        # Newest first: merging the small segments first is what keeps sizes geometric.
        for i in range(len(segs) - 2, -1, -1):
            merged = segs[i].live + segs[i + 1].live
            if segs[i].live <= self._merge_ratio * segs[i + 1].live and merged <= (
                _MAX_SEGMENT_ROWS
            ):
                return segs[i], segs[i + 1]
        return None

    def _maintain(self) -> None:
        if self._worker is not None:
            return  # the worker plans again when its job is installed
        while (job := self._plan()) is not None:
            if self._background and sum(s.live for s in job) > self._inline_rows:
                self._worker = self.spawn("index-merge", lambda: self._work(job))
                return
            self._install(job, _rebuild(job))

    def _work(self, job: tuple[_Segment, ...]) -> None:
        current: tuple[_Segment, ...] | None = job
        try:
            while current is not None:
                built = _rebuild(current)  # the slow part, without the lock
                with self._lock:
                    self._install(current, built)
                    current = self._plan()
                    if current is None:
                        self._worker = None
        except BaseException as exc:
            # Unmerged segments are still exact, just slower; report it on the next wait, and
            # to whoever runs the thread.
            with self._lock:
                self._worker_error = exc
                self._worker = None
            raise

    def _install(self, job: tuple[_Segment, ...], built: _Segment | None) -> None:
        """Replace ``job``'s segments, whose tombstoned copies may have replaced them since."""
        segs = list(self._state.segments)
        uids = {s.uid for s in job}
        where = [i for i, s in enumerate(segs) if s.uid in uids]
        # Nothing else reorders or merges segments while a job is out, so they are still there,
        # adjacent; only new segments were appended.
        assert len(where) == len(job) and where[-1] - where[0] == len(job) - 1
        if built is not None:
            # Rows removed while the job was building: tombstone them in the result too.
            gone = [
                old.ids.take(np.setdiff1d(now.dead, old.dead, assume_unique=True))
                for old, now in zip(job, segs[where[0] : where[-1] + 1], strict=True)
                if now.dead.shape[0] != old.dead.shape[0]
            ]
            if gone:
                rows = built.find(np.concatenate(gone))
                built = built.without(rows[rows >= 0])
        segs[where[0] : where[-1] + 1] = [built] if built is not None and built.live else []
        self._state = self._state.with_segments(segs)


def _check_segment(seg: _Segment) -> None:
    """Refuse arrays the compiled kernels would read out of bounds (a damaged snapshot)."""
    n = seg.size
    if seg.hashes.dtype != np.uint8 or seg.hashes.shape != (n, HASH_BYTES):
        raise SnapshotError("snapshot hashes have the wrong shape")
    if seg.ids.values.shape != (n,) or seg.tags.values.shape != (n,):
        raise SnapshotError("snapshot ids or tags disagree with its hashes")
    dead = seg.dead
    if dead.shape[0] and (dead[0] < 0 or dead[-1] >= n or np.any(dead[1:] <= dead[:-1])):
        raise SnapshotError("snapshot tombstones are out of range")
    if seg.off0 is None:
        return
    if seg.offs is None or seg.posts is None or n > _MAX_SEGMENT_ROWS:
        raise SnapshotError("snapshot segment lacks its bucket arrays")
    if len(seg.stats) != _NCHUNK + 1:
        raise SnapshotError("snapshot segment statistics are malformed")
    table = seg.off0.shape[0] if seg.off0.ndim == 1 else 0
    if table not in {(1 << k) + 1 for k in range(_MIN_KEY_BITS, _MAX_KEY_BITS + 1)}:
        raise SnapshotError("snapshot bucket offsets have the wrong shape")
    tables = (
        [seg.off0, *np.split(seg.offs, _NCHUNK)] if seg.offs.shape == (_NCHUNK * table,) else []
    )
    if len(tables) != _NCHUNK + 1 or seg.posts.shape != (_NCHUNK * n,):
        raise SnapshotError("snapshot bucket arrays have the wrong shape")
    for part in tables:
        if part.dtype != np.uint32 or part.shape != (table,):
            raise SnapshotError("snapshot bucket offsets have the wrong shape")
        if part[0] != 0 or part[-1] != n or np.any(part[1:] < part[:-1]):
            raise SnapshotError("snapshot bucket offsets are inconsistent")
    if seg.posts.dtype != np.uint32 or (n and int(seg.posts.max() >> 8) >= n):
        raise SnapshotError("snapshot postings point outside the segment")
