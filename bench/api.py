"""HTTP service throughput: POST /v1/scan vs the library in-process, and /m/lookup at 1e6 entries.

1. The same photos are scanned (decode, hashes, signals, match, decide) by the library in
   2 worker processes (in-process throughput on 2 cores), then through `dignity serve
   --workers 2` by 16 concurrent clients; prints images/s for both, the ratio (target >= 0.8),
   and p50/p99 request latency. Client and server share the machine's 2 cores, so the client's
   own CPU counts against the server: the ratio is a floor.
2. 1e6 random PDQ hashes are imported into a bank over HTTP (streamed), then 16 clients send
   GET /m/lookup?signal=...&signal_type=pdq (half near a stored hash): lookups/s, p50/p99.

    python bench/api.py [--photos 48] [--lookup-entries 1000000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import glob
import io
import multiprocessing
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from PIL import Image
from tests.integration.server import LiveServer

from dignity.samples import landscape


def photos(n: int, size: tuple[int, int]) -> list[bytes]:
    files = sorted(glob.glob("/usr/share/wallpapers/*/contents/images/*.jpg"))
    out = []
    for i in range(n):
        img = Image.open(files[i % len(files)]).convert("RGB") if files else landscape(i, size)
        buf = io.BytesIO()
        img.resize(size, Image.Resampling.BICUBIC).save(buf, "JPEG", quality=88)
        out.append(buf.getvalue())
    return out


_scanner = None


def _init(url: str) -> None:
    global _scanner
    from dignity.matching import MatchEngine
    from dignity.scanning import Scanner
    from dignity.settings import Settings
    from dignity.storage.db import open_database

    engine = MatchEngine(open_database(url))
    engine.load()
    # The very pipeline /v1/scan runs: decode, hashes, every signal plug-in, match, policy.
    _scanner = Scanner(Settings(database_url=url, match_dihedral=True), engine)


def _scan(data: bytes) -> str:
    assert _scanner is not None
    return _scanner.scan(data).decision.action


def in_process(url: str, datas: list[bytes], rounds: int) -> float:
    with multiprocessing.get_context("fork").Pool(2, initializer=_init, initargs=(url,)) as pool:
        pool.map(_scan, datas[:4])
        t0 = time.perf_counter()
        for _ in range(rounds):
            pool.map(_scan, datas, chunksize=2)
        return rounds * len(datas) / (time.perf_counter() - t0)


def load(
    base: str, key: str, make: Callable[[httpx.Client, int], httpx.Response], seconds: float
) -> tuple[float, list[float], int]:
    stop = time.monotonic() + seconds
    lat: list[float] = []
    errors = 0
    lock = threading.Lock()

    def client(k: int) -> None:
        nonlocal errors
        i = k
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as c:
            while time.monotonic() < stop:
                t = time.perf_counter()
                r = make(c, i)
                dt = time.perf_counter() - t
                with lock:
                    if r.status_code == 200:
                        lat.append(dt)
                    else:
                        errors += 1
                i += 16

    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(lat) / (time.perf_counter() - t0), lat, errors


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))] * 1000 if s else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=48)
    ap.add_argument("--size", default="2016x1512", help="photo size (3 MP by default)")
    ap.add_argument("--lookup-entries", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    datas = photos(args.photos, (w, h))
    with tempfile.TemporaryDirectory() as tmp:
        # The same launcher the integration tests use: a real `dignity serve` subprocess.
        server = LiveServer(
            Path(tmp),
            workers=2,
            env={
                "DIGNITY_RATE_PER_MINUTE": "100000000",
                "DIGNITY_MAX_CONCURRENCY": "8",
                "DIGNITY_INDEX_REFRESH_S": "0.5",
            },
        )
        server.start()
        try:
            with server.client("admin", timeout=600) as c:
                c.post("/v1/banks", json={"name": "bench"})
                rng = random.Random(1)
                stored = [f"{rng.getrandbits(256):064x}" for _ in range(args.lookup_entries)]

                def body() -> Iterator[bytes]:
                    for i in range(0, len(stored), 20000):
                        yield "".join(f"pdq {v}\n" for v in stored[i : i + 20000]).encode()

                t0 = time.perf_counter()
                r = c.post("/v1/banks/bench/import", content=body())
                t_import = time.perf_counter() - t0
                assert r.status_code == 200, r.text
            rate_lib = in_process(server.url, datas, rounds=3)
            rate_http, lat, errs = load(
                server.base,
                server.keys["admin"],
                lambda c, i: c.post(
                    "/v1/scan", files={"file": ("p.jpg", datas[i % len(datas)], "image/jpeg")}
                ),
                args.seconds,
            )
            print(f"scan, {w}x{h} JPEGs, 2 cores, index of {len(stored):,} entries")
            print(f"  library in-process (2 processes): {rate_lib:7.1f} images/s")
            print(
                f"  POST /v1/scan, 16 clients:       {rate_http:7.1f} images/s "
                f"(p50 {pct(lat, 0.5):.0f} ms, p99 {pct(lat, 0.99):.0f} ms, {errs} errors)"
            )
            print(f"  ratio HTTP / library: {rate_http / rate_lib:.2f} (target >= 0.80)")

            def near(i: int) -> str:
                v = int(stored[(i * 7919) % len(stored)], 16)
                if i % 2:
                    for b in random.Random(i).sample(range(256), 8):
                        v ^= 1 << b
                else:
                    v = random.Random(i).getrandbits(256)
                return f"{v:064x}"

            queries = [near(i) for i in range(4096)]
            rate_lookup, lat2, errs2 = load(
                server.base,
                server.keys["admin"],
                lambda c, i: c.get(
                    "/m/lookup", params={"signal": queries[i % 4096], "signal_type": "pdq"}
                ),
                args.seconds,
            )
            print(
                f"GET /m/lookup at {len(stored):,} entries (import {len(stored) / t_import:,.0f}/s)"
            )
            print(
                f"  16 clients: {rate_lookup:7.1f} lookups/s "
                f"(p50 {pct(lat2, 0.5):.1f} ms, p99 {pct(lat2, 0.99):.1f} ms, {errs2} errors)"
            )
        finally:
            server.stop()
    _ = statistics


if __name__ == "__main__":
    main()
