"""Benchmark retro-matching: new bank entries against an index of the scan log's PDQ hashes.

Three figures, one core:

* build: the exact PDQ index (:class:`~dignity.matching.index.MihIndex`, as
  :class:`~dignity.takedown.retro.ScanIndex` holds it) over ``--logged`` random hashes, built in
  memory from arrays (the scan log's rows, already read), with its memory;
* search: ``--new`` new PDQ entries, each in its 8 derived dihedral variants
  (:func:`~dignity.takedown.retro.pdq_variants`, included in the time), against it at distance
  ``--threshold``; ``--planted`` of the entries are near copies (up to 12 bits flipped) of
  logged rows, and the run checks that every one is found;
* load: the rate at which :meth:`ScanIndex.catch_up` reads the scan log from an SQLite file
  (``--db-rows`` rows written first), which is what a worker pays once at start (then only the
  new rows each run); the figure for ``--logged`` rows is extrapolated from it.

Random hashes are the index's easy case (real logs hold clusters of near-duplicates, which
cost more per query: see bench/matching.py's clustered and real kinds).

Run: ``python bench/retro.py [--logged 10000000] [--new 10000] [--db-rows 200000]
[--threads 1] [--orientations 8]``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from dignity.matching.index import MihIndex
from dignity.storage.db import open_database
from dignity.takedown.retro import ScanIndex, pdq_variants


def build(n: int, rng: np.random.Generator) -> tuple[ScanIndex, np.ndarray, float]:
    rows = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    ids = np.arange(n, dtype=np.int64) << 2  # scan ids, as ScanIndex packs them
    c0 = time.process_time()
    index = ScanIndex(frames=False)
    index.index = MihIndex.from_arrays(ids, rows, np.zeros(n, dtype=np.int32), background=False)
    return index, rows, time.process_time() - c0


def entries(
    rows: np.ndarray, count: int, planted: int, rng: np.random.Generator
) -> tuple[list[str], list[int]]:
    out: list[str] = []
    truth: list[int] = []
    for k in range(count):
        if k < planted:
            r = int(rng.integers(0, rows.shape[0]))
            h = rows[r].copy()
            bits = np.unpackbits(h)
            bits[rng.choice(256, size=int(rng.integers(0, 13)), replace=False)] ^= 1
            out.append(np.packbits(bits).tobytes().hex())
            truth.append(r)
        else:
            out.append(secrets.token_hex(32))
    return out, truth


def search(
    index: ScanIndex, hexes: list[str], threshold: int, threads: int, orientations: int
) -> tuple[float, float, set[tuple[int, int]]]:
    """Wall and CPU seconds (the process's, all threads: on a shared machine the CPU time is
    what free cores would take), and the (entry, logged row) pairs found."""
    t0, c0 = time.perf_counter(), time.process_time()
    queries = np.concatenate([pdq_variants(h)[:orientations] for h in hexes])
    hits = index.search(queries, threshold, threads=threads)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    found = {
        (int(q) // orientations, int(i) >> 2) for q, i in zip(hits.query, hits.ids, strict=True)
    }
    return elapsed, cpu, found


def load_rate(n: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.sqlite3"
        db = open_database(f"sqlite:///{path}")
        now = datetime.now(UTC).isoformat()
        conn = sqlite3.connect(path)
        conn.executemany(
            "INSERT INTO scan_log (created_at, content_id, pdq, pdq_quality, md5, sha256,"
            " decision, detail) VALUES (?, ?, ?, 100, ?, ?, 'allow', '{}')",
            (
                (now, f"c{i}", secrets.token_hex(32), secrets.token_hex(16), secrets.token_hex(32))
                for i in range(n)
            ),
        )
        conn.commit()
        conn.close()
        index = ScanIndex(frames=False)
        c0 = time.process_time()
        added = index.catch_up(db, 50)
        elapsed = time.process_time() - c0
        db.close()
        return elapsed, added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logged", type=int, default=10_000_000)
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--planted", type=int, default=100)
    parser.add_argument("--threshold", type=int, default=31)
    parser.add_argument("--db-rows", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--threads", type=int, default=1, help="search threads (cores)")
    parser.add_argument(
        "--orientations", type=int, default=8, choices=(1, 8), help="1: the original only"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    index, rows, built = build(args.logged, rng)
    mem = index.index.memory_bytes()
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"build: {args.logged:,} logged hashes in {built:.1f} CPU-s, {mem / 2**20:.0f} MiB")
    hexes, truth = entries(rows, args.new, args.planted, rng)
    elapsed, cpu, found = search(index, hexes, args.threshold, args.threads, args.orientations)
    missed = [k for k, r in enumerate(truth) if (k, r) not in found]
    print(
        f"search: {args.new:,} new entries x {args.orientations} orientation(s) at distance "
        f"{args.threshold}, "
        f"{args.threads} thread(s): "
        f"{cpu:.2f} CPU-s ({cpu / args.new * 1e3:.2f} ms an entry; wall {elapsed:.2f} s), "
        f"{len(found)} hits, planted {len(truth)} found {len(truth) - len(missed)}; "
        f"1e4 entries: {cpu / args.new * 1e4:.0f} CPU-s"
    )
    assert not missed, f"planted copies not found: {missed[:5]}"
    del index, rows
    load_s, added = load_rate(args.db_rows)
    rate = added / load_s
    print(
        f"load: {added:,} scan-log rows from SQLite in {load_s:.2f} CPU-s ({rate:,.0f} rows/s); "
        f"{args.logged:,} rows would take {args.logged / rate:.0f} s"
    )


if __name__ == "__main__":
    main()
