"""Benchmark backfill throughput with 1 and 2 worker processes on this machine.

Writes ``--items`` benign generated images (:mod:`dignity.samples`, 640 x 480 JPEG) into a
directory, then for each worker count: a fresh SQLite database, one ``backfill`` job of that
directory (``--batch`` items a batch), and N worker processes, each running the loop every engine
runs (``JobService.claim_next``, then ``run_claimed``). Workers load the index and warm the
signal plug-ins (the nudity model) before the clock starts, as a long-running worker has. The
clock stops when the run and all its batches have ended. Prints items per second, and the
per-item cost in worker-seconds (wall time x workers / items) and in CPU-seconds (the workers'
own CPU time / items: what a loaded machine cannot inflate), from which N machines' throughput
follows (about N x cores / CPU cost per item, while the database keeps up).

Run: ``python bench/backfill.py [--items 400] [--workers 1,2] [--batch 20]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from dignity.samples import encode, landscape


def _settings(db_url: str, data: Path) -> Any:
    from dignity.settings import Settings

    return Settings(data_dir=data, database_url=db_url)


def worker(db_url: str, data: str, name: str, ready: Any, go: Any, run_id: str, cpu: Any) -> None:
    from dignity.services import CLI, Services
    from dignity.worker.tasks import run_claimed

    services = Services(_settings(db_url, Path(data)), profile=CLI)
    services.engine.load()
    services.scanner.warm()
    ready.release()
    go.wait()
    start = os.times()
    jobs = services.jobs
    while True:
        job = jobs.claim_next(name)
        if job is not None:
            run_claimed(services, jobs, job, name)
            continue
        run = jobs.get(run_id)
        counts = jobs.counts(parent_id=run_id)
        if run.final and counts["queued"] == 0 and counts["running"] == 0:
            break
        time.sleep(0.05)
    end = os.times()
    cpu.put(end.user - start.user + end.system - start.system)
    services.close()


def one(n_workers: int, images: Path, tmp: Path, batch: int) -> tuple[float, float, dict[str, Any]]:
    from dignity.backfill import BackfillService, parse_source
    from dignity.services import CLI, Services

    data = tmp / f"data-{n_workers}"
    db_url = f"sqlite:///{data / 'dignity.sqlite3'}"
    services = Services(_settings(db_url, data), profile=CLI)
    job, _ = services.jobs.submit(
        "backfill", {"source": parse_source(str(images)), "page_size": batch}
    )
    ctx = mp.get_context("spawn")
    ready = ctx.Semaphore(0)
    go = ctx.Event()
    cpu = ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(db_url, str(data), f"w{i}", ready, go, job.id, cpu))
        for i in range(n_workers)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire()
    t0 = time.perf_counter()
    go.set()
    used = sum(float(cpu.get()) for _ in procs)
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - t0
    summary = BackfillService(services.db).run_summary(job.id)
    services.close()
    return elapsed, used, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--batch", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        images = tmp / "archive"
        for k in range(args.items):
            sub = images / f"{k % 10:02d}"
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"{k:05d}.jpg").write_bytes(encode(landscape(k, (640, 480)), quality=85))
        print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.1f}")
        for n in [int(w) for w in args.workers.split(",")]:
            elapsed, used, summary = one(n, images, tmp, args.batch)
            assert summary["scanned"] == args.items, summary
            print(
                f"{n} worker(s): {args.items} items in {elapsed:.1f} s = "
                f"{args.items / elapsed:.1f} items/s; per-item cost "
                f"{elapsed * n / args.items * 1000:.0f} worker-ms wall, "
                f"{used / args.items * 1000:.0f} CPU-ms (load average {os.getloadavg()[0]:.1f})"
            )


if __name__ == "__main__":
    main()
