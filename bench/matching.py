"""Benchmark MihIndex against python-threatexchange's PDQIndex and faiss brute force, one core.

For each size and data kind it builds all three indexes over the same hashes, runs the same
queries one at a time (and, for ours and faiss flat, as one batch), checks that every index
returns exactly the match set of ``IndexBinaryFlat`` and prints one table. Data kinds:

* uniform: every bit independent and fair, the best case for multi-index hashing;
* clustered: groups of near-duplicates (a centre plus a few flipped bits, as re-encodes and
  crops of one image give) around centres whose bits are skewed (bit ``i`` is set with a fixed
  probability between 0.2 and 0.5), which fills some buckets far more than others, as real PDQ
  banks do.

Queries: half are stored entries with 1 to 10 bits flipped (so there are real matches), half are
fresh hashes of the same kind. PDQIndex is used the way its own ``query`` works (hex in, faiss
``IndexBinaryMultiHash`` with 16 tables and ``nflip = threshold // 16``); for thresholds other than
its fixed 31 we call the same underlying ``search_with_distance_in_result`` with that threshold.
Our single-query timings include decoding the same hex string to bytes. Memory: ours is
``memory_bytes()`` (numpy arrays it holds); the others are the process RSS growth across building
them (``/proc/self/statm``), which for PDQIndex includes its Python list of (hex, id) entries and
id map, since it holds those.

Run: ``python bench/matching.py [--sizes 100000,1000000] [--queries 200]``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

try:
    from dignity.matching.index import MihIndex
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from dignity.matching.index import MihIndex

import faiss
from threatexchange.signal_type.pdq.pdq_index import PDQIndex

Hashes = NDArray[np.uint8]
MatchSet = set[tuple[int, int, int]]  # (query, id, distance)


def rss_bytes() -> int:
    """Resident set size, after handing freed heap pages back to the OS so that memory freed
    earlier (data generation temporaries) is not silently reused by the next build."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def flip_random_bits(rng: np.random.Generator, hashes: Hashes, counts: NDArray[Any]) -> Hashes:
    """Flip ``counts[i]`` random bits of row i (a repeated position flips back; rare)."""
    out = hashes.copy()
    rows = np.repeat(np.arange(hashes.shape[0]), counts)
    bits = rng.integers(0, 256, size=rows.shape[0])
    np.bitwise_xor.at(out.reshape(-1), rows * 32 + bits // 8, (1 << (bits % 8)).astype(np.uint8))
    return out


def skewed_hashes(rng: np.random.Generator, n: int, p_one: NDArray[np.float64]) -> Hashes:
    out = np.empty((n, 32), dtype=np.uint8)
    for start in range(0, n, 1 << 12):
        stop = min(n, start + (1 << 12))
        out[start:stop] = np.packbits(rng.random((stop - start, 256)) < p_one, axis=1)
    return out


@dataclass
class Data:
    kind: str
    hashes: Hashes
    fresh: Callable[[int], Hashes]


def make_data(rng: np.random.Generator, n: int, kind: str) -> Data:
    if kind == "uniform":
        return Data(
            kind,
            rng.integers(0, 256, size=(n, 32), dtype=np.uint8),
            lambda k: rng.integers(0, 256, size=(k, 32), dtype=np.uint8),
        )
    p_one = rng.uniform(0.2, 0.5, size=256)
    centres = skewed_hashes(rng, max(1, n // 8), p_one)
    members = centres[rng.integers(0, centres.shape[0], size=n)]
    hashes = flip_random_bits(rng, members, rng.integers(0, 17, size=n))
    return Data(kind, hashes, lambda k: skewed_hashes(rng, k, p_one))


def make_queries(rng: np.random.Generator, data: Data, count: int) -> Hashes:
    near = data.hashes[rng.integers(0, data.hashes.shape[0], size=count // 2)]
    near = flip_random_bits(rng, near, rng.integers(1, 11, size=(count // 2,)))
    mixed = np.concatenate([near, data.fresh(count - near.shape[0])])
    return mixed[rng.permutation(count)]  # any prefix is a mix of both halves


@dataclass
class Timing:
    per_query_s: list[float] = field(default_factory=list)
    batch_qps: float | None = None

    def qps(self) -> float:
        return len(self.per_query_s) / sum(self.per_query_s)

    def pct_ms(self, p: float) -> float:
        return float(np.percentile(self.per_query_s, p)) * 1e3


def time_single(fn: Callable[[int], MatchSet], count: int) -> tuple[Timing, MatchSet]:
    timing = Timing()
    found: MatchSet = set()
    for i in range(count):
        t0 = time.perf_counter()
        hits = fn(i)
        timing.per_query_s.append(time.perf_counter() - t0)
        found |= hits
    return timing, found


def flat_matches(flat: Any, queries: Hashes, d: int) -> MatchSet:
    lims, dist, labels = flat.range_search(queries, d + 1)
    out: MatchSet = set()
    for q in range(queries.shape[0]):
        for j in range(lims[q], lims[q + 1]):
            out.add((q, int(labels[j]), int(dist[j])))
    return out


def run_case(n: int, kind: str, n_queries: int, thresholds: list[int], seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    data = make_data(rng, n, kind)
    queries = make_queries(rng, data, n_queries)
    query_hex = [q.tobytes().hex() for q in queries]
    ids = np.arange(n, dtype=np.int64)  # same labels as faiss positions, so sets compare
    tags = (ids % 7).astype(np.int32)
    lines: list[str] = []

    rss0 = rss_bytes()
    t0 = time.perf_counter()
    ours = MihIndex.from_arrays(ids, data.hashes, tags)
    ours_build = time.perf_counter() - t0
    ours_rss = (rss_bytes() - rss0) / n
    ours_mem = ours.memory_bytes() / n

    rss0 = rss_bytes()
    t0 = time.perf_counter()
    flat = faiss.IndexBinaryFlat(256)
    flat.add(data.hashes)
    flat_build = time.perf_counter() - t0
    flat_rss = (rss_bytes() - rss0) / n

    rss0 = rss_bytes()
    t0 = time.perf_counter()
    pdq = PDQIndex.build([(h.tobytes().hex(), i) for i, h in enumerate(data.hashes)])
    pdq_build = time.perf_counter() - t0
    pdq_rss = (rss_bytes() - rss0) / n

    def ours_one(d: int) -> Callable[[int], MatchSet]:
        def run(i: int) -> MatchSet:
            q = np.frombuffer(bytes.fromhex(query_hex[i]), dtype=np.uint8).reshape(1, 32)
            hits = ours.search(q, d)
            return {(i, int(e), int(x)) for e, x in zip(hits.ids, hits.distances, strict=True)}

        return run

    pdq_threshold = PDQIndex.get_match_threshold()  # type: ignore[no-untyped-call]

    def pdq_one(d: int) -> Callable[[int], MatchSet]:
        def run(i: int) -> MatchSet:
            if d == pdq_threshold:
                res = pdq.query(query_hex[i])
                return {(i, int(m.metadata), int(m.similarity_info.distance)) for m in res}
            found = pdq.index.search_with_distance_in_result([query_hex[i]], d)
            return {(i, int(e), int(x)) for e, _, x in found[query_hex[i]]}

        return run

    def flat_one(d: int) -> Callable[[int], MatchSet]:
        def run(i: int) -> MatchSet:
            return {(i, e, x) for _, e, x in flat_matches(flat, queries[i : i + 1], d)}

        return run

    for d in thresholds:
        count = n_queries if d == 31 else max(10, n_queries // 4)
        expected = flat_matches(flat, queries[:count], d)
        t_ours, got_ours = time_single(ours_one(d), count)
        t0 = time.perf_counter()
        batch = ours.search(queries[:count], d)
        t_ours.batch_qps = count / (time.perf_counter() - t0)
        got_batch = set(
            zip(
                batch.query.tolist(),
                batch.ids.tolist(),
                batch.distances.tolist(),
                strict=True,
            )
        )
        t_pdq, got_pdq = time_single(pdq_one(d), count)
        t_flat, _ = time_single(flat_one(d), count)
        t0 = time.perf_counter()
        flat.range_search(queries[:count], d + 1)
        t_flat.batch_qps = count / (time.perf_counter() - t0)

        ok_ours = got_ours == expected and got_batch == expected
        ok_pdq = got_pdq == expected
        ratio = t_ours.qps() / t_pdq.qps()
        rows = [
            ("ours (MihIndex)", ours_build, ours_mem, t_ours, ok_ours, f"{ratio:.1f}x"),
            ("PDQIndex", pdq_build, pdq_rss, t_pdq, ok_pdq, "1.0x"),
            ("faiss BinaryFlat", flat_build, flat_rss, t_flat, True, ""),
        ]
        for name, build, mem, t, ok, rel in rows:
            batch_s = f"{t.batch_qps:,.0f}" if t.batch_qps else "-"
            lines.append(
                f"{n:>9,} {kind:<9} {d:>3} {name:<16} {build:>7.2f} {mem:>7.1f} "
                f"{t.qps():>9,.0f} {t.pct_ms(50):>7.3f} {t.pct_ms(99):>8.3f} {batch_s:>9} "
                f"{rel:>6} {'OK' if ok else 'MISMATCH':>8}  ({count} q, {len(expected)} hits)"
            )

    # Updates at full size, one entry per call (tail freezes and small merges included).
    fresh = data.fresh(5000)
    add_s: list[float] = []
    del_s: list[float] = []
    for i in range(5000):  # more than tail_limit, so one tail freeze is included
        t0 = time.perf_counter()
        ours.add(np.array([n + i], np.int64), fresh[i : i + 1], tags[:1])
        add_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ours.remove(np.array([i * 37 % n], np.int64))
        del_s.append(time.perf_counter() - t0)
    ours.wait_for_maintenance()
    lines.append(
        f"{'':>9} {kind:<9} ours at {n:,}, one entry per call: add p50 "
        f"{np.median(add_s) * 1e3:.3f} ms, p99 {np.percentile(add_s, 99) * 1e3:.2f} ms, "
        f"max {max(add_s) * 1e3:.1f} ms; withdraw p50 {np.median(del_s) * 1e3:.3f} ms, "
        f"p99 {np.percentile(del_s, 99) * 1e3:.2f} ms, max {max(del_s) * 1e3:.1f} ms"
    )
    # The rare big merge (newer segments reaching a quarter of the base): it runs in a
    # background thread, so single adds and withdraws made meanwhile stay fast.
    big = n // 4 + 1
    bulk_ids = np.arange(10 * n, 10 * n + big, dtype=np.int64)
    t0 = time.perf_counter()
    ours.add(bulk_ids, data.fresh(big), np.zeros(big, np.int32))
    bulk_s = time.perf_counter() - t0
    during: list[float] = []
    merge_start = time.perf_counter()
    i = 0
    while ours.segment_sizes()[0] <= n and i < 100_000:
        t0 = time.perf_counter()
        ours.add(np.array([20 * n + i], np.int64), fresh[i % 5000 : i % 5000 + 1], tags[:1])
        ours.remove(np.array([10 * n + i], np.int64))
        during.append(time.perf_counter() - t0)
        i += 1
    ours.wait_for_maintenance()
    merge_s = time.perf_counter() - merge_start
    during_s = (
        f"{len(during)} add+withdraw pairs meanwhile, max {max(during) * 1e3:.1f} ms"
        if during
        else "no adds meanwhile"
    )
    lines.append(
        f"{'':>9} {kind:<9} ours bulk add of {big:,} {bulk_s:.2f} s, then a background merge "
        f"into the base of {merge_s:.2f} s; {during_s}; segments now {ours.segment_sizes()}"
    )
    t0 = time.perf_counter()
    pdq.add(fresh[0].tobytes().hex(), n)
    pdq_add = time.perf_counter() - t0
    lines.append(
        f"{'':>9} {kind:<9} PDQIndex at {n:,}: one add {pdq_add * 1e3:.0f} ms (it rebuilds its "
        f"id map on every add); no withdraw API. Our RSS growth while building: "
        f"{ours_rss:.1f} B/entry"
    )
    pdq.dispose()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--kinds", default="uniform,clustered")
    parser.add_argument("--thresholds", default="31,47,63")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--case", help=argparse.SUPPRESS)  # SIZE:KIND, run in a child process
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    thresholds = [int(t) for t in args.thresholds.split(",")]
    if args.case:
        size, kind = args.case.split(":")
        for line in run_case(int(size), kind, args.queries, thresholds, args.seed):
            print(line, flush=True)
        return
    header = (
        f"{'entries':>9} {'data':<9} {'thr':>3} {'index':<16} {'build s':>7} {'B/entry':>7} "
        f"{'single q/s':>9} {'p50 ms':>7} {'p99 ms':>8} {'batch q/s':>9} {'vs PDQ':>6} "
        f"{'check':>8}"
    )
    print(
        "one thread (faiss.omp_set_num_threads(1)); B/entry: ours memory_bytes()/n, the others "
        "RSS growth while building; 'check' compares the match set with IndexBinaryFlat"
    )
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    for size in args.sizes.split(","):
        for kind in args.kinds.split(","):
            # A fresh process per case, so RSS growth is not blurred by memory freed earlier.
            child = [sys.executable, __file__, "--case", f"{size}:{kind}"]
            child += ["--queries", str(args.queries), "--thresholds", args.thresholds]
            child += ["--seed", str(args.seed)]
            subprocess.run(child, check=True)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
