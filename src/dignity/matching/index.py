"""Exact in-memory PDQ indexes behind ``MatchIndex``: ``MihIndex`` and ``BruteForceIndex``.

``MihIndex`` is an exact multi-index-hashing index: the 256 bits are split into 16 chunks of 16
bits, and by the pigeonhole principle an entry within distance ``d`` of a query has at least one
chunk close to the query's chunk, so a search only enumerates the buckets near each query chunk,
gathers the rows listed there and verifies every candidate with a popcount of the XOR. Buckets are
compact CSR arrays (an offsets table per chunk plus one flat array of row positions), never Python
containers, so a million entries take about 105 bytes each, hashes included. Updates are LSM
style: new entries go to a small brute-force tail, a full tail is frozen into an immutable MIH
segment, and segments of similar size are merged (large merges in a background thread), so an add
costs amortised O(log n) and never waits for a rebuild of the whole index. Removals are tombstones
that merges and compactions drop. Mutations run under a lock and publish a new immutable snapshot,
so a concurrent search always sees one consistent state without locking. Whenever enumerating
buckets would cost more than reading every row (large distances, or a query that lands in hugely
popular buckets), a segment is scanned exhaustively instead, so results stay exact at any
distance. ``BruteForceIndex`` is the deliberately simple reference the tests compare against.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dignity.matching.protocol import HASH_BYTES, IndexHits

__all__ = ["BruteForceIndex", "MihIndex"]

MAX_DISTANCE = HASH_BYTES * 8
_WORDS = HASH_BYTES // 8  # uint64 words per hash
_CHUNKS = 16
_CHUNK_BITS = MAX_DISTANCE // _CHUNKS

# Rough costs in nanoseconds, measured with numpy 2.4 on one core, that decide between walking the
# buckets and scanning a segment. Only their ratios matter, and only for speed, never correctness.
_COST_SEGMENT = 35_000.0  # fixed numpy call overhead of one MIH pass over one segment
_COST_KEY = 8.0  # one enumerated bucket key: offsets lookups and range expansion
_COST_CANDIDATE = 24.0  # one candidate row: posting and hash gathers (cache misses), verification
_COST_SCAN_FIXED = 10_000.0
_COST_SCAN_ROW = 4.5  # one row of an exhaustive scan, per query

# Bounds on temporaries: rows per scan block, (query, row) pairs per scan step, keys and
# candidates per MIH step. Temporaries of a few MB stay in cache; larger ones measured slower.
_SCAN_ROWS = 1 << 14
_SCAN_PAIRS = 1 << 16
_STEP_KEYS = 1 << 16
_STEP_CANDIDATES = 1 << 16

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


def _check_batch(ids: object, hashes: object, tags: object) -> tuple[I64, U64, I32]:
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
    return ids_, hashes_.view(np.uint64), tags_


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


def _sorted_hits(query: I64, ids: I64, tags: I32, distances: I32) -> IndexHits:
    # A stable, documented order (query, then distance, then id) keeps callers and tests simple.
    order = np.lexsort((ids, distances, query))
    return IndexHits(
        query=query[order], ids=ids[order], tags=tags[order], distances=distances[order]
    )


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
        ids_, hashes64, tags_ = _check_batch(ids, hashes, tags)
        with self._lock:
            table = self._table
            clash = np.isin(ids_, table.ids)
            if clash.any():
                raise ValueError(f"id {int(ids_[clash][0])} is already in the index")
            self._table = _Table(
                np.concatenate([table.ids, ids_]),
                np.concatenate([table.hashes, hashes64.view(np.uint8)]),
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
        return _sorted_hits(query, table.ids[rows], table.tags[rows], dists)

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


def _expand_ranges(starts: AnyInt, lengths: AnyInt) -> AnyInt:
    """Concatenation of ``arange(s, s + l)`` for each (s, l), without a Python loop.

    Computed in the dtype of ``starts`` (int32 for all but giant segments: half the traffic).
    """
    ends = np.cumsum(lengths, dtype=starts.dtype)
    total = int(ends[-1]) if ends.shape[0] else 0
    out = np.arange(total, dtype=starts.dtype)
    out += np.repeat(starts - (ends - lengths), lengths)
    return out


@lru_cache(maxsize=32)
def _masks(bits: int) -> tuple[NDArray[np.uint16], tuple[int, ...]]:
    """All ``bits``-bit XOR masks ordered by popcount, and how many have popcount <= r."""
    values = np.arange(1 << bits, dtype=np.uint16)
    weights = np.bitwise_count(values)
    order = np.argsort(weights, kind="stable")
    counts = np.bincount(weights, minlength=bits + 1)
    return values[order], tuple(int(c) for c in np.cumsum(counts))


def _radius_plan(d: int) -> tuple[tuple[int, int], ...]:
    """Per chunk (chunk, radius) pairs that cannot miss an entry within ``d``.

    If every chunk ``i`` differed from the query's in more than ``r_i`` bits, the total distance
    would be at least ``sum(r_i + 1)``. So radii with ``sum(r_i + 1) = d + 1`` are enough: this
    generalises the classic ``floor(d / m)`` and is strictly cheaper for ``d + 1`` not a multiple
    of 16 (at d = 0 only one chunk is probed at all). Chunks with radius -1 are skipped.
    """
    base, extra = divmod(d + 1, _CHUNKS)
    return tuple((c, base if c < extra else base - 1) for c in range(_CHUNKS))


# ---------------------------------------------------------------------------------------------
# MIH segments


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


@dataclass(frozen=True, slots=True)
class _Segment:
    """An immutable MIH segment. Rows are sorted by id, so id lookups are binary searches.

    ``offsets[c * (2**bits + 1) + key]`` is where bucket ``key`` of chunk ``c`` starts in
    ``postings``; a bucket key is the top ``bits`` bits of a 16-bit chunk, fewer than 16 for small
    segments so the offsets table does not outweigh the rows. ``dead`` holds the sorted row
    positions removed since the segment was built.
    """

    ids: _Column
    tags: _Column
    hashes: U64
    bits: int
    offsets: AnyInt
    postings: AnyInt
    dead: I64
    uid: int  # kept by tombstoned copies, so maintenance can recognise its sources

    @property
    def size(self) -> int:
        return int(self.hashes.shape[0])

    @property
    def live(self) -> int:
        return self.size - int(self.dead.shape[0])

    def nbytes(self) -> int:
        arrays = (
            self.ids.values,
            self.tags.values,
            self.hashes,
            self.offsets,
            self.postings,
            self.dead,
        )
        return int(sum(a.nbytes for a in arrays))

    def find(self, ids: I64) -> I64:
        """Row of each id if it is live here, else -1."""
        pos = self.ids.search_sorted(ids)
        if self.dead.shape[0]:
            pos[_in_sorted(pos, self.dead)] = -1
        return pos

    def without(self, rows: I64) -> _Segment:
        """A copy with these (live, distinct) rows tombstoned; O(tombstones), no full copy."""
        rows = np.sort(rows)
        return replace(self, dead=np.insert(self.dead, np.searchsorted(self.dead, rows), rows))

    def live_rows(self) -> tuple[I64, U64, I32]:
        ids, tags = self.ids.unpack(), self.tags.unpack().astype(np.int32)
        if not self.dead.shape[0]:
            return ids, self.hashes, tags
        keep = np.ones(self.size, dtype=bool)
        keep[self.dead] = False
        return ids[keep], self.hashes[keep], tags[keep]


def _in_sorted(values: I64, sorted_set: I64) -> NDArray[np.bool_]:
    pos = np.searchsorted(sorted_set, values)
    pos[pos == sorted_set.shape[0]] = 0
    hit: NDArray[np.bool_] = sorted_set[pos] == values
    return hit


def _bucket_bits(n: int) -> int:
    # About eight rows per bucket: a denser offsets table costs more memory per entry than it
    # saves in candidates. 16 is the chunk width, so a big segment uses the chunk itself.
    return max(1, min(_CHUNK_BITS, n.bit_length() - 3))


_segment_uids = itertools.count()


def _build_segment(ids: I64, hashes: U64, tags: I32) -> _Segment:
    n = ids.shape[0]
    if n > 1 and not bool(np.all(ids[1:] > ids[:-1])):
        order = np.argsort(ids, kind="stable")
        ids, hashes, tags = ids[order], hashes[order], tags[order]
    else:
        # Our own copy: the caller may reuse its buffer (ids and tags are copied when packed).
        hashes = hashes.copy()
    bits = _bucket_bits(n)
    shift = _CHUNK_BITS - bits
    width = (1 << bits) + 1
    offset_type = np.int32 if n * _CHUNKS < 2**31 else np.int64
    posting_type = np.uint16 if n <= 1 << 16 else np.uint32
    offsets = np.empty(_CHUNKS * width, dtype=offset_type)
    postings = np.empty(_CHUNKS * n, dtype=posting_type)
    # One transposing copy makes every chunk's keys contiguous for the sorts below. (A real copy:
    # for one row the transpose is already contiguous, and the shift must not touch the hashes.)
    all_keys = hashes.view(np.uint16).T.copy()
    if shift:
        all_keys >>= shift
    for c in range(_CHUNKS):
        keys = all_keys[c]
        # numpy sorts 16-bit keys with a stable radix sort: linear time, so building a segment
        # of a million rows takes a fraction of a second.
        postings[c * n : (c + 1) * n] = np.argsort(keys, kind="stable")
        counts = np.bincount(keys, minlength=1 << bits)
        offsets[c * width] = c * n
        offsets[c * width + 1 : (c + 1) * width] = np.cumsum(counts) + c * n
    return _Segment(
        _Column.pack(ids),
        _Column.pack(tags),
        hashes,
        bits,
        offsets,
        postings,
        _EMPTY_I64,
        next(_segment_uids),
    )


@dataclass(frozen=True, slots=True)
class _Probe:
    """The bucket keys one search enumerates, for one bucket width, shared by all segments."""

    chunks: NDArray[np.intp]  # chunk of each key column
    masks: NDArray[np.uint16]  # XOR mask of each key column
    per_query: int

    def slot_base(self, bits: int) -> NDArray[np.intp]:
        """Where each key column's chunk starts in a segment's offsets table."""
        base: NDArray[np.intp] = self.chunks * ((1 << bits) + 1)
        return base


@lru_cache(maxsize=512)
def _probe(d: int, bits: int) -> _Probe | None:
    mask_table, cumulative = _masks(bits)
    chunks: list[NDArray[np.intp]] = []
    masks: list[NDArray[np.uint16]] = []
    for chunk, radius in _radius_plan(d):
        if radius < 0:
            continue
        if radius >= bits:
            return None  # every bucket of this chunk: nothing to gain over a scan
        count = cumulative[radius]
        chunks.append(np.full(count, chunk, dtype=np.intp))
        masks.append(mask_table[:count])
    chunk_col = np.concatenate(chunks)
    return _Probe(chunk_col, np.concatenate(masks), int(chunk_col.shape[0]))


def _search_segment(
    seg: _Segment, queries: U64, d: int
) -> tuple[I64, I64, NDArray[np.uint32]] | None:
    """(query, row, distance) for live rows of ``seg`` within ``d``; None when nothing matches."""
    n = seg.size
    nq = queries.shape[0]
    probe = _probe(d, seg.bits)
    scan_cost = _COST_SCAN_FIXED + _COST_SCAN_ROW * n * nq
    if probe is None or _COST_SEGMENT + _COST_KEY * probe.per_query * nq >= scan_cost:
        qi, rows, dist = _scan(seg.hashes, queries, d)
    else:
        qi, rows, dist = _walk(seg, probe, queries, d)
    if qi.shape[0] == 0:
        return None
    if seg.dead.shape[0]:
        alive = ~_in_sorted(rows, seg.dead)
        qi, rows, dist = qi[alive], rows[alive], dist[alive]
    return qi, rows, dist


def _walk(
    seg: _Segment, probe: _Probe, queries: U64, d: int
) -> tuple[I64, I64, NDArray[np.uint32]]:
    """MIH search of one segment, vectorised over queries, falling back to a scan per query."""
    n = seg.size
    nq = queries.shape[0]
    shift = _CHUNK_BITS - seg.bits
    chunk_values = queries.view(np.uint16)
    out_q: list[I64] = []
    out_r: list[I64] = []
    out_d: list[NDArray[np.uint32]] = []
    scan_queries: list[I64] = []
    max_candidates = (_COST_SCAN_ROW * n) / _COST_CANDIDATE
    step = max(1, _STEP_KEYS // probe.per_query)
    slot_base = probe.slot_base(seg.bits)
    for q0 in range(0, nq, step):
        keys = np.take(chunk_values[q0 : q0 + step], probe.chunks, axis=1)
        if shift:
            keys >>= shift
        keys ^= probe.masks
        slots = keys.astype(np.intp)
        slots += slot_base
        starts = np.take(seg.offsets, slots)
        slots += 1
        lengths = np.take(seg.offsets, slots)
        lengths -= starts
        # A query in hugely popular buckets (skewed or clustered data) costs more to walk than
        # to scan; scanning keeps the worst case bounded at one pass over the segment.
        heavy = lengths.sum(axis=1) > max_candidates
        if heavy.any():
            scan_queries.append(np.flatnonzero(heavy).astype(np.int64) + q0)
            lengths[heavy] = 0
        # Only non-empty buckets matter; small segments have many empty ones.
        flat_len = lengths.reshape(-1)
        nonempty = np.flatnonzero(flat_len)
        if not nonempty.shape[0]:
            continue
        flat_len = flat_len[nonempty]
        flat_start = starts.reshape(-1)[nonempty]
        key_query = None if keys.shape[0] == 1 else nonempty // probe.per_query + q0
        # Verify in pieces of about _STEP_CANDIDATES rows so temporaries stay in cache.
        cumulative = np.cumsum(flat_len)
        pieces = int(cumulative[-1]) // _STEP_CANDIDATES + 1
        cuts = [0]
        if pieces > 1:
            targets = np.arange(1, pieces) * _STEP_CANDIDATES
            cuts += np.searchsorted(cumulative, targets, side="right").tolist()
        cuts.append(flat_len.shape[0])
        for k0, k1 in itertools.pairwise(cuts):
            if k0 < k1:
                _verify(
                    seg,
                    queries,
                    q0,
                    None if key_query is None else key_query[k0:k1],
                    flat_start[k0:k1],
                    flat_len[k0:k1],
                    d,
                    out_q,
                    out_r,
                    out_d,
                )
    if out_q:
        qi, rows, dist = _dedupe(out_q, out_r, out_d, n)
        out_q, out_r, out_d = [qi], [rows], [dist]
    if scan_queries:
        which = np.concatenate(scan_queries)
        qi, rows, dist = _scan(seg.hashes, np.take(queries, which, axis=0), d)
        out_q.append(which[qi])
        out_r.append(rows)
        out_d.append(dist)
    if not out_q:
        return _EMPTY_I64, _EMPTY_I64, np.zeros(0, np.uint32)
    if len(out_q) == 1:
        return out_q[0], out_r[0], out_d[0]
    return np.concatenate(out_q), np.concatenate(out_r), np.concatenate(out_d)


def _dedupe(
    out_q: list[I64], out_r: list[I64], out_d: list[NDArray[np.uint32]], n: int
) -> tuple[I64, I64, NDArray[np.uint32]]:
    """Drop repeated (query, row) hits: a row near the query in several chunks is found once
    per such chunk."""
    qi = np.concatenate(out_q) if len(out_q) > 1 else out_q[0]
    rows = np.concatenate(out_r) if len(out_r) > 1 else out_r[0]
    dist = np.concatenate(out_d) if len(out_d) > 1 else out_d[0]
    if qi.shape[0] < 2:
        return qi, rows, dist
    _, first = np.unique(qi * n + rows, return_index=True)
    return qi[first], rows[first], dist[first]


def _verify(
    seg: _Segment,
    queries: U64,
    q0: int,
    key_query: I64 | None,
    starts: AnyInt,
    lengths: AnyInt,
    d: int,
    out_q: list[I64],
    out_r: list[I64],
    out_d: list[NDArray[np.uint32]],
) -> None:
    """Gather the rows of the given buckets and keep those within ``d`` of their query.

    ``key_query`` is each bucket's query; None means every bucket belongs to query ``q0``.
    """
    positions = _expand_ranges(starts, lengths)
    rows = np.take(seg.postings, positions)
    cand = np.take(seg.hashes, rows, axis=0)
    # XOR with same-shape contiguous operands: a tiled query beats broadcasting over 4 words.
    if key_query is None:
        cand_q = None
        np.bitwise_xor(cand, np.tile(queries[q0 : q0 + 1], (rows.shape[0], 1)), out=cand)
    else:
        cand_q = np.repeat(key_query, lengths)
        np.bitwise_xor(cand, np.take(queries, cand_q, axis=0), out=cand)
    hit, dist = _within(cand, d)
    if hit.shape[0] == 0:
        return
    if cand_q is None:
        out_q.append(np.full(hit.shape[0], q0, dtype=np.int64))
    else:
        out_q.append(cand_q[hit])
    out_r.append(rows[hit].astype(np.int64))
    out_d.append(dist)


# ---------------------------------------------------------------------------------------------
# MihIndex


@dataclass(frozen=True, slots=True)
class _State:
    """One immutable snapshot: frozen segments plus the brute-force tail of recent adds."""

    segments: tuple[_Segment, ...]
    tail_ids: I64
    tail_hashes: U64
    tail_tags: I32

    @property
    def live(self) -> int:
        return sum(s.live for s in self.segments) + int(self.tail_ids.shape[0])

    def with_segments(self, segments: Sequence[_Segment]) -> _State:
        return _State(tuple(segments), self.tail_ids, self.tail_hashes, self.tail_tags)


def _empty_tail() -> tuple[I64, U64, I32]:
    return _EMPTY_I64, np.zeros((0, _WORDS), dtype=np.uint64), _EMPTY_I32


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


class MihIndex:
    """Exact, incremental multi-index-hashing index over 256-bit hashes (see the module doc).

    ``tail_limit``: how many recent adds the brute-force tail holds before it is frozen into an
    MIH segment. ``merge_ratio``: a segment is merged with its newer neighbour while it holds at
    most this many times as many live rows, so sizes grow geometrically and there are about
    ``log(n / tail_limit) / log(merge_ratio)`` segments. ``compact_fraction``: a segment whose
    tombstoned fraction exceeds this is rebuilt without them. ``background``: merges and
    compactions of more than ``inline_rows`` rows run in a worker thread, so no single add or
    remove waits for a large rebuild (a million rows take about a second); searches keep using
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
        self._tail_limit = tail_limit
        self._merge_ratio = merge_ratio
        self._compact_fraction = compact_fraction
        self._background = background
        self._inline_rows = inline_rows
        self._lock = threading.Lock()
        self._state = _State((), *_empty_tail())
        self._worker: threading.Thread | None = None
        self._worker_error: BaseException | None = None

    @classmethod
    def from_arrays(
        cls,
        ids: I64,
        hashes: U8,
        tags: I32,
        **options: Any,
    ) -> MihIndex:
        """Build an index holding these entries in one segment (the startup load from storage).

        ``options`` are the constructor's keyword arguments.
        """
        index = cls(**options)
        ids_, hashes64, tags_ = _check_batch(ids, hashes, tags)
        if ids_.shape[0] > index._tail_limit:
            index._state = _State((_build_segment(ids_, hashes64, tags_),), *_empty_tail())
        elif ids_.shape[0]:
            index._state = _State((), ids_, hashes64, tags_)
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
        ids_, hashes64, tags_ = _check_batch(ids, hashes, tags)
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
            tail_hashes = np.concatenate([state.tail_hashes, hashes64])
            tail_tags = np.concatenate([state.tail_tags, tags_])
            if tail_ids.shape[0] <= self._tail_limit:
                self._state = _State(state.segments, tail_ids, tail_hashes, tail_tags)
                return
            frozen = _build_segment(tail_ids, tail_hashes, tail_tags)
            self._state = _State((*state.segments, frozen), *_empty_tail())
            self._maintain()

    def remove(self, ids: I64) -> int:
        """Remove entries by id (unknown ids are ignored); returns how many were live."""
        ids_ = np.sort(_check_ints(ids, "ids", np.int64))
        if ids_.size == 0:
            return 0
        ids_ = ids_[np.concatenate([[True], ids_[1:] != ids_[:-1]])]
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

        Hits are ordered by query row, then distance, then id.
        """
        queries_ = _check_hashes(queries, "queries")
        d = _check_distance(max_distance)
        state = self._state  # one consistent snapshot for the whole search
        if queries_.shape[0] == 0 or state.live == 0:
            return _empty_hits()
        q64 = queries_.view(np.uint64)
        out_q: list[I64] = []
        out_ids: list[I64] = []
        out_tags: list[I32] = []
        out_d: list[NDArray[np.uint32]] = []
        for seg in state.segments:
            found = _search_segment(seg, q64, d)
            if found is not None:
                qi, rows, dist = found
                out_q.append(qi)
                out_ids.append(seg.ids.take(rows))
                out_tags.append(seg.tags.take(rows).astype(np.int32))
                out_d.append(dist)
        if state.tail_ids.shape[0]:
            qi, rows, dist = _scan(state.tail_hashes, q64, d)
            if qi.shape[0]:
                out_q.append(qi)
                out_ids.append(state.tail_ids[rows])
                out_tags.append(state.tail_tags[rows])
                out_d.append(dist)
        if not out_q:
            return _empty_hits()
        return _sorted_hits(
            np.concatenate(out_q),
            np.concatenate(out_ids),
            np.concatenate(out_tags),
            np.concatenate(out_d).astype(np.int32),
        )

    def memory_bytes(self) -> int:
        """Bytes held in numpy arrays (hashes, ids, tags, buckets, tombstones).

        Excludes fixed per-object Python overhead, the small shared XOR mask tables and, while a
        background merge runs, the segment it is building.
        """
        state = self._state
        tail = state.tail_ids.nbytes + state.tail_hashes.nbytes + state.tail_tags.nbytes
        return int(tail + sum(seg.nbytes() for seg in state.segments))

    # -- maintenance: everything below runs with self._lock held, except _work's builds ---------

    def _plan(self) -> tuple[_Segment, ...] | None:
        """The next merge or compaction the segment list needs, if any."""
        segs = self._state.segments
        for seg in segs:
            if seg.live == 0 or seg.dead.shape[0] > self._compact_fraction * seg.size:
                return (seg,)
        # Newest first: merging the small segments first is what keeps sizes geometric.
        for i in range(len(segs) - 2, -1, -1):
            if segs[i].live <= self._merge_ratio * segs[i + 1].live:
                return segs[i], segs[i + 1]
        return None

    def _maintain(self) -> None:
        if self._worker is not None:
            return  # the worker plans again when its job is installed
        while (job := self._plan()) is not None:
            if self._background and sum(s.live for s in job) > self._inline_rows:
                self._worker = threading.Thread(
                    target=self._work, args=(job,), name="mih-index-maintenance", daemon=True
                )
                self._worker.start()
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
            # Unmerged segments are still exact, just slower; report it on the next wait.
            with self._lock:
                self._worker_error = exc
                self._worker = None

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
