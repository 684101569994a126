"""Bank engine end to end on a real SQLite file: import rate, restart (load) time, add/withdraw
latency to the next query, and matching throughput through MatchEngine.

python-threatexchange has no database-backed bank to compare with; the anchor here is HMA's
behaviour: it rebuilds its whole index on every change, so its add/withdraw latency is the
index build time that bench/matching.py prints for PDQIndex at the same size.

    python bench/engine.py [--sizes 100000,1000000]   (10000000 works: about 4 GB of SQLite)
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from dignity.matching import BankService, MatchEngine, NewEntry
from dignity.storage.db import open_database


def flip(value: int, bits: int, rng: random.Random) -> int:
    for b in rng.sample(range(256), bits):
        value ^= 1 << b
    return value


def run(n: int) -> None:
    rng = random.Random(n)
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(f"sqlite:///{tmp}/bench.sqlite3")
        svc = BankService(db)
        svc.create_bank("big")
        values = [rng.getrandbits(256) for _ in range(n)]
        lines = (f"pdq {v:064x}" for v in values)
        t0 = time.perf_counter()
        svc.import_lines("big", lines)
        t_import = time.perf_counter() - t0
        engine = MatchEngine(db, snapshot_dir=Path(tmp) / "index")
        t0 = time.perf_counter()
        engine.load()
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        engine.wait_for_snapshot()
        t_snap_write = time.perf_counter() - t0
        # A restart: a new engine finds the snapshot, checks it and replays newer log rows.
        t0 = time.perf_counter()
        restarted = MatchEngine(db, snapshot_dir=Path(tmp) / "index")
        restarted.load()
        t_restart = time.perf_counter() - t0
        assert restarted.loaded_from_snapshot and len(restarted) == len(engine)
        del restarted
        # add one entry, then how long until a query sees it (refresh is what a server polls)
        new = rng.getrandbits(256)
        t0 = time.perf_counter()
        res = svc.add_entries("big", [NewEntry("pdq", f"{new:064x}")])
        engine.refresh()
        seen = bool(engine.match_hashes([("pdq", f"{new:064x}")]).matches)
        t_add = time.perf_counter() - t0
        t0 = time.perf_counter()
        svc.withdraw("big", res.added)
        engine.refresh()
        gone = not engine.match_hashes([("pdq", f"{new:064x}")]).matches
        t_withdraw = time.perf_counter() - t0
        queries = [
            f"{flip(values[rng.randrange(n)], 10, rng):064x}"
            if i % 2
            else f"{rng.getrandbits(256):064x}"
            for i in range(400)
        ]
        t0 = time.perf_counter()
        hits = sum(bool(engine.match_hashes([("pdq", q)]).matches) for q in queries)
        t_match = time.perf_counter() - t0
        db.close()
    print(
        f"{n:>9,} entries: import {n / t_import:,.0f} entries/s; load from the DB {t_load:.2f} s "
        f"(snapshot written in the background, {t_snap_write:.1f} s more); restart from the "
        f"snapshot {t_restart:.2f} s; "
        f"add->visible {t_add * 1000:.1f} ms ({'ok' if seen else 'MISSING'}); "
        f"withdraw->gone {t_withdraw * 1000:.1f} ms ({'ok' if gone else 'STILL MATCHES'}); "
        f"match {len(queries) / t_match:,.0f} q/s through the engine ({hits} of "
        f"{len(queries)} matched, expected {len(queries) // 2})"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000")
    args = ap.parse_args()
    for n in (int(s) for s in args.sizes.split(",")):
        run(n)


if __name__ == "__main__":
    main()
