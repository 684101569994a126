"""MihIndex must agree exactly with BruteForceIndex, whatever the data, history and distance."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from dignity.matching import index as index_module
from dignity.matching.index import BruteForceIndex, MihIndex
from dignity.matching.protocol import IndexHits, MatchIndex

Hashes = NDArray[np.uint8]
Hit = tuple[int, int, int, int]

KINDS = ("uniform", "clustered", "skewed")
# Cost-model settings the searches run under: the default, every segment walked through its
# buckets (no scan, tiny verification pieces), and every query sent to the per-query scan.
MODES = ("default", "walk", "heavy")


def make_hashes(rng: np.random.Generator, n: int, kind: str) -> Hashes:
    """Uniform bits, near-duplicate groups around a few centres, or mostly-zero bits."""
    if kind == "uniform":
        return rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    if kind == "skewed":
        bits = rng.random((n, 256)) < 0.08
        return np.packbits(bits, axis=1)
    centres = rng.integers(0, 256, size=(3, 32), dtype=np.uint8)
    out = centres[rng.integers(0, 3, size=n)].copy()
    return flip_bits(rng, out, rng.integers(0, 12, size=n))


def flip_bits(rng: np.random.Generator, hashes: Hashes, counts: NDArray[Any]) -> Hashes:
    out = hashes.copy()
    for row, count in enumerate(counts.tolist()):
        bits = rng.choice(256, size=count, replace=False)
        np.bitwise_xor.at(out[row], bits // 8, (1 << (7 - bits % 8)).astype(np.uint8))
    return out


def make_queries(rng: np.random.Generator, stored: Hashes, n: int, kind: str) -> Hashes:
    """Half perturbed copies of stored hashes (real matches), half fresh ones."""
    fresh = make_hashes(rng, n - n // 2, kind)
    if stored.shape[0] == 0:
        return make_hashes(rng, n, kind)
    picks = stored[rng.integers(0, stored.shape[0], size=n // 2)]
    near = flip_bits(rng, picks, rng.integers(0, 40, size=n // 2))
    return np.concatenate([near, fresh])


def hit_set(hits: IndexHits) -> set[Hit]:
    return set(
        zip(
            hits.query.tolist(),
            hits.ids.tolist(),
            hits.tags.tolist(),
            hits.distances.tolist(),
            strict=True,
        )
    )


def naive_hits(entries: dict[int, tuple[Hashes, int]], queries: Hashes, d: int) -> set[Hit]:
    """Bit-by-bit reference, independent of both indexes."""
    out: set[Hit] = set()
    qbits = np.unpackbits(queries, axis=1)
    for eid, (h, tag) in entries.items():
        dist = (qbits != np.unpackbits(h)).sum(axis=1)
        for q in np.flatnonzero(dist <= d).tolist():
            out.add((q, eid, tag, int(dist[q])))
    return out


@contextmanager
def cost_mode(mode: str, step: int = 0, key_bits: int | None = None) -> Iterator[None]:
    """Steer segment kinds and plans so every code path gets exercised on small data.

    "default": as shipped (small segments are scanned, large ones planned query by query);
    "walk": every frozen segment gets the MIH arrays and is probed, never scanned, with random
    valid radii (``step`` seeds them); "heavy": MIH segments, but every search scans them;
    "probe": MIH segments with the shipped per-query plans. ``key_bits`` forces the bucket key
    width of segments built meanwhile (ten million entries get 19 bits).
    """
    saved = index_module._MIH_MIN_ROWS, index_module._plan, index_module._key_bits
    rng = np.random.default_rng(step)

    def random_plan(
        n: int, key_bits: int, stats: tuple[float, ...], d: int
    ) -> tuple[int, ...] | None:
        caps = [index_module._radius_cap(key_bits, c) for c in range(7)]
        if d + 1 > sum(cap + 1 for cap in caps):
            return None
        radii = [-1] * 7
        for _ in range(d + 1):  # each step raises one radius: sum(r + 1) = d + 1, no more
            c = int(rng.integers(0, 7))
            while radii[c] >= caps[c]:
                c = (c + 1) % 7
            radii[c] += 1
        return tuple(radii)

    try:
        if mode in ("walk", "heavy", "probe"):
            index_module._MIH_MIN_ROWS = 1
        if key_bits is not None:
            index_module._key_bits = lambda n: key_bits  # type: ignore[assignment]
        if mode == "walk":
            index_module._plan = random_plan  # type: ignore[assignment]
        elif mode == "heavy":
            index_module._plan = lambda n, k, stats, d: None  # type: ignore[assignment]
        elif mode == "probe":
            index_module._plan = lambda n, k, stats, d: ()  # type: ignore[assignment]
        yield
    finally:
        index_module._MIH_MIN_ROWS, index_module._plan, index_module._key_bits = saved


def assert_same(mih: MihIndex, ref: BruteForceIndex, queries: Hashes, d: int) -> None:
    got, want = mih.search(queries, d), ref.search(queries, d)
    assert hit_set(got) == hit_set(want)
    assert len(got) == len(hit_set(got)), "duplicate hits"
    # Documented order: query, then distance, then id.
    keys = list(zip(got.query.tolist(), got.distances.tolist(), got.ids.tolist(), strict=True))
    assert keys == sorted(keys)


distances = st.one_of(
    st.integers(0, 63), st.sampled_from([64, 70, 80, 95, 100, 128, 160, 200, 255, 256])
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(1, 40)),
        st.tuples(st.just("remove"), st.integers(1, 25)),
        st.tuples(st.just("search"), distances),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(KINDS),
    mode=st.sampled_from(MODES),
    tail_limit=st.sampled_from([1, 4, 16]),
    merge_ratio=st.sampled_from([1.0, 2.0, 4.0]),
    background=st.booleans(),
    ops=operations,
)
def test_mih_matches_brute_force(
    seed: int,
    kind: str,
    mode: str,
    tail_limit: int,
    merge_ratio: float,
    background: bool,
    ops: list[Any],
) -> None:
    rng = np.random.default_rng(seed)
    # In background mode every merge goes to the worker thread, racing the operations below.
    mih = MihIndex(
        tail_limit=tail_limit,
        merge_ratio=merge_ratio,
        compact_fraction=0.3,
        background=background,
        inline_rows=0,
    )
    ref = BruteForceIndex()
    live: dict[int, Hashes] = {}
    next_id = int(rng.integers(-(2**40), 2**40))
    with cost_mode(mode):
        for op, arg in ops:
            if op == "add":
                ids = np.arange(next_id, next_id + arg, dtype=np.int64)
                # Ids sometimes out of order, with gaps, to exercise sorting and lookups.
                ids = rng.permutation(ids * int(rng.integers(1, 1000)))
                next_id += arg
                hashes = make_hashes(rng, arg, kind)
                tags = rng.integers(0, 5, size=arg).astype(np.int32)
                mih.add(ids, hashes, tags)
                ref.add(ids, hashes, tags)
                live.update(zip(ids.tolist(), hashes, strict=True))
            elif op == "remove":
                known = np.fromiter(live, dtype=np.int64, count=len(live))
                chosen = rng.choice(known, size=min(arg, known.shape[0]), replace=False)
                unknown = np.array([next_id + 10**6], dtype=np.int64)
                gone = np.concatenate([chosen, unknown, chosen[:1]])
                assert mih.remove(gone) == ref.remove(gone) == chosen.shape[0]
                for eid in chosen.tolist():
                    del live[eid]
            else:
                stored = np.array(list(live.values()), dtype=np.uint8).reshape(-1, 32)
                assert_same(mih, ref, make_queries(rng, stored, 12, kind), arg)
            assert len(mih) == len(ref) == len(live)
        stored = np.array(list(live.values()), dtype=np.uint8).reshape(-1, 32)
        for d in (0, 8, 31, 47, 63):
            assert_same(mih, ref, make_queries(rng, stored, 16, kind), d)
        mih.wait_for_maintenance()
        assert len(mih) == len(live)
        assert_same(mih, ref, make_queries(rng, stored, 16, kind), 31)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("mode", "key_bits"),
    [*((mode, 16) for mode in MODES), ("probe", 16), ("walk", 19), ("probe", 19), ("probe", 20)],
)
def test_large_segment_against_brute_force(kind: str, mode: str, key_bits: int) -> None:
    """A bulk-built segment with full-width buckets, near the bank thresholds, at each key
    width (the per-query plans and the scan fallback included)."""
    rng = np.random.default_rng(7)
    n = 6000
    hashes = make_hashes(rng, n, kind)
    ids = rng.permutation(n).astype(np.int64) * 3 + 10**12
    tags = rng.integers(0, 3, size=n).astype(np.int32)
    with cost_mode(mode, step=2000, key_bits=key_bits):
        mih = MihIndex.from_arrays(ids, hashes, tags, tail_limit=100)
    if mode != "default":
        assert [s.key_bits for s in mih._state.segments] == [key_bits]
    ref = BruteForceIndex()
    ref.add(ids, hashes, tags)
    queries = make_queries(rng, hashes, 40, kind)
    with cost_mode(mode, step=2000, key_bits=key_bits):
        for d in (0, 1, 15, 16, 17, 31, 32, 40, 47, 63, 64, 70):
            assert_same(mih, ref, queries, d)
        # Removals hide entries at once and survive compaction.
        gone = ids[: n // 2]
        assert mih.remove(gone) == ref.remove(gone) == n // 2
        assert_same(mih, ref, queries, 31)


@pytest.mark.parametrize("n", [1, 2, 3, 9, 17, 100])
def test_tiny_segments(n: int) -> None:
    rng = np.random.default_rng(n)
    hashes = make_hashes(rng, n + 1, "uniform")
    kept = hashes.copy()
    ids = np.arange(n + 1, dtype=np.int64)
    tags = np.ones(n + 1, np.int32)
    mih = MihIndex.from_arrays(ids, hashes, tags, tail_limit=1, compact_fraction=1e-9)
    assert np.array_equal(hashes, kept), "building must not modify the caller's hashes"
    hashes[:] = 0  # nor keep using the caller's buffer
    mih.remove(ids[n:])  # compaction leaves a segment of exactly n rows
    assert mih.segment_sizes() == [n, 0]
    ref = BruteForceIndex()
    ref.add(ids[:n], kept[:n], tags[:n])
    hashes = kept[:n]
    queries = make_queries(rng, hashes, 8, "uniform")
    for mode in MODES:
        with cost_mode(mode):
            for d in (0, 9, 31, 64):
                assert_same(mih, ref, queries, d)


def test_index_owns_its_arrays() -> None:
    rng = np.random.default_rng(6)
    hashes = make_hashes(rng, 50, "uniform")
    kept = hashes.copy()
    ids = np.arange(50, dtype=np.int64)
    tags = np.zeros(50, np.int32)
    mih = MihIndex.from_arrays(ids, hashes, tags, tail_limit=10)
    tail = MihIndex(tail_limit=100)
    tail.add(ids, hashes, tags)
    hashes[:] = 0
    ids[:] = -1
    for index in (mih, tail):
        assert hit_set(index.search(kept, 0)) == {(i, i, 0, 0) for i in range(50)}


def test_brute_force_matches_naive() -> None:
    rng = np.random.default_rng(3)
    hashes = make_hashes(rng, 50, "clustered")
    ids = np.arange(50, dtype=np.int64)
    tags = (ids % 4).astype(np.int32)
    ref = BruteForceIndex()
    ref.add(ids, hashes, tags)
    entries = {i: (hashes[i], i % 4) for i in range(50)}
    queries = make_queries(rng, hashes, 10, "clustered")
    for d in (0, 10, 31, 256):
        assert hit_set(ref.search(queries, d)) == naive_hits(entries, queries, d)


def test_freezing_and_merging_keep_sizes_geometric() -> None:
    rng = np.random.default_rng(11)
    mih = MihIndex(tail_limit=8, merge_ratio=2.0)
    ref = BruteForceIndex()
    for start in range(0, 600, 5):
        ids = np.arange(start, start + 5, dtype=np.int64)
        hashes = make_hashes(rng, 5, "uniform")
        tags = np.zeros(5, dtype=np.int32)
        mih.add(ids, hashes, tags)
        ref.add(ids, hashes, tags)
        sizes = mih.segment_sizes()
        frozen = sizes[:-1]
        assert sizes[-1] <= 8
        assert all(a > 2.0 * b for a, b in itertools.pairwise(frozen)), sizes
    assert len(mih.segment_sizes()) > 2  # several segments did form
    assert_same(mih, ref, make_queries(rng, make_hashes(rng, 10, "uniform"), 20, "uniform"), 63)


def test_background_merge_keeps_updates_made_while_it_runs() -> None:
    """Removals, adds and re-adds that land while a merge is building are not lost."""
    rng = np.random.default_rng(4)
    release = threading.Event()
    entered = threading.Event()
    real_rebuild = index_module._rebuild

    def slow_rebuild(sources: Any) -> Any:
        if threading.current_thread().name == "index-merge":
            entered.set()
            assert release.wait(10)
        return real_rebuild(sources)

    mih = MihIndex(tail_limit=50, merge_ratio=2.0, inline_rows=0)
    ref = BruteForceIndex()
    hashes = make_hashes(rng, 400, "clustered")
    ids = np.arange(400, dtype=np.int64)
    tags = (ids % 3).astype(np.int32)
    index_module._rebuild = slow_rebuild
    try:
        mih.add(ids[:100], hashes[:100], tags[:100])  # frozen: [100]
        mih.add(ids[100:200], hashes[100:200], tags[100:200])  # [100, 100]: merge starts
        ref.add(ids[:200], hashes[:200], tags[:200])
        assert entered.wait(10)
        assert mih.segment_sizes() == [100, 100, 0]
        gone = np.array([0, 5, 150, 199], np.int64)
        assert mih.remove(gone) == ref.remove(gone) == 4
        mih.add(ids[200:400], hashes[200:400], tags[200:400])  # appended behind the job
        ref.add(ids[200:400], hashes[200:400], tags[200:400])
        mih.add(gone[:1], hashes[300:301], tags[:1])  # re-added while its old row merges
        ref.add(gone[:1], hashes[300:301], tags[:1])
        queries = make_queries(rng, hashes, 30, "clustered")
        assert_same(mih, ref, queries, 31)
        release.set()
        mih.wait_for_maintenance()
    finally:
        index_module._rebuild = real_rebuild
        release.set()
    sizes = mih.segment_sizes()
    assert sum(sizes) == len(ref) == 397
    assert all(a > 2.0 * b for a, b in itertools.pairwise(sizes[:-1])), sizes
    for d in (0, 31, 63):
        assert_same(mih, ref, queries, d)
    with pytest.raises(ValueError, match="already"):
        mih.add(gone[:1], hashes[:1], tags[:1])
    assert mih.remove(gone) == 1


def test_background_failure_is_reported() -> None:
    rng = np.random.default_rng(8)
    real_rebuild = index_module._rebuild

    def broken(sources: Any) -> Any:
        raise MemoryError("simulated")

    mih = MihIndex(tail_limit=10, merge_ratio=2.0, inline_rows=0)
    hashes = make_hashes(rng, 22, "uniform")
    ids = np.arange(22, dtype=np.int64)
    index_module._rebuild = broken
    try:
        mih.add(ids[:11], hashes[:11], np.zeros(11, np.int32))
        mih.add(ids[11:], hashes[11:], np.zeros(11, np.int32))
        with pytest.raises(RuntimeError, match="maintenance failed"):
            mih.wait_for_maintenance()
    finally:
        index_module._rebuild = real_rebuild
    # Unmerged segments still answer exactly.
    hits = mih.search(hashes, 0)
    assert sorted(hits.ids.tolist()) == list(range(22))


def test_compaction_drops_tombstones() -> None:
    rng = np.random.default_rng(5)
    hashes = make_hashes(rng, 1000, "uniform")
    ids = np.arange(1000, dtype=np.int64)
    mih = MihIndex.from_arrays(
        ids, hashes, np.zeros(1000, np.int32), tail_limit=100, compact_fraction=0.5
    )
    before = mih.memory_bytes()
    assert mih.remove(ids[:400]) == 400
    assert mih.segment_sizes() == [600, 0]
    assert mih.remove(ids[400:700]) == 300
    assert mih.segment_sizes() == [300, 0]
    assert mih.memory_bytes() < before / 2
    assert mih.remove(ids[700:]) == 300
    assert len(mih) == 0
    assert len(mih.search(hashes, 256)) == 0


def test_readd_after_remove() -> None:
    rng = np.random.default_rng(1)
    hashes = make_hashes(rng, 100, "uniform")
    ids = np.arange(100, dtype=np.int64)
    tags = np.zeros(100, np.int32)
    mih = MihIndex.from_arrays(ids, hashes, tags, tail_limit=10)
    mih.remove(ids[:5])
    mih.add(ids[:5], hashes[5:10], tags[:5] + 1)
    hits = mih.search(hashes[5:6], 0)
    assert sorted(hits.ids.tolist()) == [0, 5]
    assert sorted(hits.tags.tolist()) == [0, 1]
    with pytest.raises(ValueError, match="already"):
        mih.add(ids[:1], hashes[:1], tags[:1])


@pytest.mark.parametrize("cls", [MihIndex, BruteForceIndex])
def test_edge_cases(cls: type[MihIndex] | type[BruteForceIndex]) -> None:
    idx = cls()
    assert isinstance(idx, MatchIndex)
    q = np.zeros((3, 32), np.uint8)
    empty = idx.search(q, 256)
    assert len(empty) == 0
    assert empty.query.dtype == np.int64 and empty.ids.dtype == np.int64
    assert empty.tags.dtype == np.int32 and empty.distances.dtype == np.int32
    assert idx.remove(np.array([1, 2], np.int64)) == 0
    assert idx.memory_bytes() >= 0
    assert idx.remove(np.zeros(0, np.int64)) == 0

    ids = np.array([5, 9], np.int64)
    hashes = np.zeros((2, 32), np.uint8)
    hashes[1, :] = 0xFF
    tags = np.array([1, 2], np.int32)
    idx.add(ids, hashes, tags)
    assert len(idx) == 2
    assert len(idx.search(np.zeros((0, 32), np.uint8), 31)) == 0
    hits = idx.search(hashes[1:], 256)
    assert hit_set(hits) == {(0, 9, 2, 0), (0, 5, 1, 256)}
    assert hit_set(idx.search(hashes[1:], 255)) == {(0, 9, 2, 0)}
    idx.add(np.zeros(0, np.int64), np.zeros((0, 32), np.uint8), np.zeros(0, np.int32))

    with pytest.raises(ValueError, match="already"):
        idx.add(ids[:1], hashes[:1], tags[:1])
    with pytest.raises(ValueError, match="duplicates"):
        idx.add(np.array([7, 7], np.int64), hashes, tags)
    bad_adds: list[tuple[Any, Any, Any]] = [
        (np.array([7], np.int64), np.zeros((1, 31), np.uint8), tags[:1]),
        (np.array([7], np.int64), np.zeros(32, np.uint8), tags[:1]),
        (np.array([7], np.int64), np.zeros((1, 32), np.int16), tags[:1]),
        (np.array([7.0]), hashes[:1], tags[:1]),
        (np.array([7], np.uint64), hashes[:1], tags[:1]),
        (np.array([[7]], np.int64), hashes[:1], tags[:1]),
        (np.array([7], np.int64), hashes[:1], np.array([1], np.int64)),
        (np.array([7, 8], np.int64), hashes[:1], tags[:1]),
        ([7], hashes[:1], tags[:1]),
    ]
    for args in bad_adds:
        with pytest.raises(ValueError):
            idx.add(*args)
    for bad_q in (np.zeros((1, 16), np.uint8), np.zeros(32, np.uint8), np.zeros((1, 32), int)):
        with pytest.raises(ValueError):
            idx.search(bad_q, 3)
    for bad_d in (-1, 257, 3.0, True, None):
        with pytest.raises(ValueError, match="max_distance"):
            idx.search(q, bad_d)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        idx.remove(np.array([[5]], np.int64))
    assert len(idx) == 2  # nothing above changed the index
    assert idx.remove(np.array([5, 5, 6], np.int64)) == 1
    assert len(idx) == 1
    assert idx.remove(np.zeros(0, np.int64)) == 0  # nothing to remove on a non-empty index
    assert len(idx) == 1


def test_extreme_ids_and_tags() -> None:
    info64, info32 = np.iinfo(np.int64), np.iinfo(np.int32)
    ids = np.array([info64.min, -1, 0, info64.max], np.int64)
    tags = np.array([info32.min, 0, 7, info32.max], np.int32)
    hashes = np.arange(4 * 32, dtype=np.uint8).reshape(4, 32)
    mih = MihIndex.from_arrays(ids, hashes, tags, tail_limit=2)
    hits = mih.search(hashes, 0)
    assert hit_set(hits) == {(i, int(ids[i]), int(tags[i]), 0) for i in range(4)}
    with pytest.raises(ValueError, match="already"):
        mih.add(ids[3:], hashes[:1], tags[:1])
    assert mih.remove(np.array([info64.max, info64.min + 1], np.int64)) == 1
    assert len(mih) == 3


def test_memory_is_compact() -> None:
    rng = np.random.default_rng(2)
    n = 200_000
    ids = np.arange(n, dtype=np.int64) + 10**9
    mih = MihIndex.from_arrays(
        ids, make_hashes(rng, n, "uniform"), rng.integers(0, 9, n).astype(np.int32)
    )
    assert mih.segment_sizes() == [n, 0]
    # 32 hash + 6 x 4 postings + 4 id + 1 tag, plus 7 bucket tables of 2**K + 1 uint32.
    fixed = 7 * 65537 * 4
    assert mih.memory_bytes() == 61 * n + fixed
    # Wider keys for larger segments keep the tables near 2 bytes an entry at most, from a
    # million entries up to the largest segment (ten million entries: K = 19, 62.5 bytes).
    assert index_module._key_bits(10**7) == 19
    for size in [10**6, 10**7, (1 << 24) - 1, *(14 << k for k in range(16, 21))]:
        tables = 7 * ((1 << index_module._key_bits(size)) + 1) * 4
        assert (61 * size + tables) / size <= 64, size


def test_concurrent_search_during_updates() -> None:
    rng = np.random.default_rng(9)
    stable = make_hashes(rng, 300, "clustered")
    stable_ids = np.arange(300, dtype=np.int64)
    # inline_rows=0: every merge runs on the maintenance thread, a third thread in the mix.
    mih = MihIndex.from_arrays(
        stable_ids, stable, np.zeros(300, np.int32), tail_limit=16, inline_rows=0
    )
    ref = BruteForceIndex()
    ref.add(stable_ids, stable, np.zeros(300, np.int32))
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        try:
            wrng = np.random.default_rng(10)
            for step in range(150):
                ids = np.arange(1000 + step * 10, 1010 + step * 10, dtype=np.int64)
                hashes = make_hashes(wrng, 10, "clustered")
                mih.add(ids, hashes, np.ones(10, np.int32))
                ref.add(ids, hashes, np.ones(10, np.int32))
                if step % 3 == 0:
                    mih.remove(ids[:7])
                    ref.remove(ids[:7])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            stop.set()

    def reader() -> None:
        try:
            while not stop.is_set():
                hits = mih.search(stable[:20], 0)
                # The never-removed entries must be visible in every snapshot.
                found = set(zip(hits.query.tolist(), hits.ids.tolist(), strict=True))
                assert {(i, i) for i in range(20)} <= found
                mih.search(stable[:20], 40)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(mih) == len(ref)
    queries = make_queries(rng, stable, 30, "clustered")
    for d in (0, 31, 63):
        assert_same(mih, ref, queries, d)
    mih.wait_for_maintenance()
    for d in (0, 31, 63):
        assert_same(mih, ref, queries, d)


def chunk_bits(key_bits: int) -> list[range]:
    """Bit positions (0 = top bit of byte 0) of chunk 0 and the six posting chunks."""
    k = key_bits
    return [range(0, k)] + [range(k + j * (k + 8), k + (j + 1) * (k + 8)) for j in range(6)]


def flip_in(rng: np.random.Generator, row: Hashes, bits: range, count: int) -> None:
    for b in rng.choice(bits, size=count, replace=False).tolist():
        row[b // 8] ^= 1 << (7 - b % 8)


@pytest.mark.parametrize(
    ("key_bits", "plan", "fixed"),
    [
        (16, (1, 2, 2, 2, 2, 2, 2), True),  # d = 17 at most
        (16, (3, 4, 3, 4, 4, 3, 4), True),
        (16, (2, 5, 4, 4, 4, 4, 4), True),
        (16, (-1, 8, 9, 7, -1, 10, 0), True),
        (16, (0, -1, -1, -1, -1, -1, 24), True),
        (16, (16, 0, 0, 0, 0, 0, 0), True),
        (19, (3, 4, 3, 4, 4, 3, 4), True),  # about what ten million uniform hashes get at 31
        (19, (9, 0, 0, 0, 0, 0, 0), True),
        (19, (-1, 9, 9, -1, 2, 3, 0), True),
        (20, (7, 0, 1, 7, 0, 3, 7), True),
        (16, (3, 4, 3, 4, 4, 3, 4), False),  # the same entries, each query planned by the kernel
        (19, (3, 4, 3, 4, 4, 3, 4), False),
        (19, (1, 5, 2, 6, 4, 3, 4), False),
    ],
)
def test_entries_found_only_at_a_chunk_boundary(
    key_bits: int, plan: tuple[int, ...], fixed: bool
) -> None:
    """Entries within d whose only near chunk sits exactly at its probe radius are found.

    Each entry has exactly ``r_j`` flipped bits in one chunk (bucket and filter bits alike) and
    ``r_c + 1`` in every other chunk, so a probe that drops one mask, one filter value or one
    bucket row misses it; ``d`` is the largest distance the plan is valid for. With ``fixed``
    false the kernel picks its own radii for the same entries, which must not matter.
    """
    rng = np.random.default_rng(sum(plan) + 100 + key_bits)
    d = sum(r + 1 for r in plan) - 1
    chunks = chunk_bits(key_bits)
    unindexed = range(chunks[-1].stop, 256)
    query = rng.integers(0, 256, size=(1, 32), dtype=np.uint8)
    rows: list[Hashes] = []
    for _ in range(1500):
        j = int(rng.integers(0, 7))
        if plan[j] < 0:
            continue
        row = query[0].copy()
        for c, bits in enumerate(chunks):
            flips = plan[c] if c == j else plan[c] + 1
            flip_in(rng, row, bits, min(flips, len(bits)))
        extra = d - int(np.unpackbits(row ^ query[0]).sum())
        if extra > 0:
            flip_in(rng, row, unindexed, min(extra, len(unindexed)))
        rows.append(row)
    noise = make_hashes(rng, 3000, "uniform")
    hashes = np.concatenate([np.stack(rows), noise])
    ids = np.arange(hashes.shape[0], dtype=np.int64)
    tags = np.zeros(hashes.shape[0], np.int32)
    with cost_mode("probe", key_bits=key_bits):
        if fixed:
            index_module._plan = lambda n, k, stats, dist: plan  # type: ignore[assignment]
        mih = MihIndex.from_arrays(ids, hashes, tags, tail_limit=1)
        assert [s.key_bits for s in mih._state.segments] == [key_bits]
        ref = BruteForceIndex()
        ref.add(ids, hashes, tags)
        want = hit_set(ref.search(query, d))
        assert len(want) >= len(rows) // 2  # most built entries are within d
        assert hit_set(mih.search(query, d)) == want


@pytest.mark.parametrize("inline_rows", [16, 1 << 16])
def test_lookup_returns_live_hashes_and_tags(inline_rows: int) -> None:
    # Ids in MIH segments (inline_rows=16 makes every frozen segment a MIH one), in scanned
    # segments, in the tail, removed, re-added with another hash, and never added.
    rng = np.random.default_rng(11)
    hashes = make_hashes(rng, 3000, "uniform")
    ids = np.arange(10, 3010, dtype=np.int64) * 7
    tags = (np.arange(3000) % 5).astype(np.int32)
    mih = MihIndex(tail_limit=500, background=False, inline_rows=inline_rows)
    brute = BruteForceIndex()
    for index in (mih, brute):
        index.add(ids, hashes, tags)
        index.remove(ids[100:200])
        index.add(ids[150:160], hashes[:10], tags[:10] + 9)
    assert len(mih.segment_sizes()) > 1
    wanted = np.concatenate([ids[::3], ids[95:205], np.asarray([1, 3, 10**12], np.int64)])
    found, got, got_tags = mih.lookup(wanted)
    b_found, b_got, b_tags = brute.lookup(wanted)
    assert found.tolist() == b_found.tolist()
    assert np.array_equal(got, b_got) and got_tags.tolist() == b_tags.tolist()
    live = {int(i): (h.tobytes(), int(t)) for i, h, t in zip(ids, hashes, tags, strict=True)}
    for i in range(100, 200):
        del live[int(ids[i])]
    for k, i in enumerate(range(150, 160)):
        live[int(ids[i])] = (hashes[k].tobytes(), int(tags[k]) + 9)
    for i, f, h, t in zip(wanted.tolist(), found.tolist(), got, got_tags.tolist(), strict=True):
        assert f == (i in live)
        if f:
            assert (h.tobytes(), t) == live[i]
        else:
            assert not h.any() and t == 0
