"""Benchmark MihIndex against python-threatexchange's PDQIndex and faiss brute force, one core.

For each size and data kind it builds all three indexes over the same hashes, runs the same
queries one at a time (and as one batch), checks that every index returns exactly the match set
of ``IndexBinaryFlat`` and prints one table. Data kinds:

* uniform: every bit independent and fair, the best case for multi-index hashing;
* clustered: groups of near-duplicates (a centre plus a few flipped bits, as re-encodes and
  crops of one image give) around centres whose bits are skewed (bit ``i`` is set with a fixed
  probability between 0.2 and 0.5), which fills some buckets far more than others;
* real: PDQ hashes of every photo found (Debian wallpapers and backgrounds, ../shared/fixtures),
  each photo edited 40 ways (random crops, scales, JPEG re-encodes, small rotations, brightness,
  contrast, mirroring), each edit hashed with its 8 dihedral variants. Photos are split by
  subject: the first 20 edits of 4 in 5 subjects go into the index (all 8 variants); the other
  20 edits of those subjects are the near-duplicate queries (an edit the index has not seen),
  and the edits of the held-out fifth are the no-match queries. As a few thousand photos cannot
  fill 1e7 entries, the index is padded with "mosaic" hashes: each of their sixteen 16-bit
  pieces is copied from a random real hash (so every piece has the real bit statistics), plus
  0 to 8 random bit flips. The hashes are computed once and cached in bench/.cache/.

Queries, reported separately: "near" (uniform, clustered: a stored entry with 1 to 10 bits
flipped, so there are real matches; real: unseen edits of indexed photos) and "random" (fresh
hashes of the same kind, which match almost nothing). The issue's PDQIndex figure (19.8 ms at
1e7) was for random queries. PDQIndex is used the way its own ``query`` works (hex in, faiss
``IndexBinaryMultiHash`` with 16 tables and ``nflip = threshold // 16``); for thresholds other than
its fixed 31 we call the same underlying ``search_with_distance_in_result``, which also gives its
batch figure. Our single-query timings include decoding the same hex string to bytes. Memory:
ours is ``memory_bytes()`` (numpy arrays it holds); the others are the process RSS growth across
building them (``/proc/self/statm``), which for PDQIndex includes its Python list of (hex, id)
entries and id map, since it holds those.

Run: ``python bench/matching.py [--sizes 100000,1000000,10000000]
[--kinds uniform,clustered,real] [--thresholds 31,47,63] [--queries 200] [--no-updates]``;
each (size, kind) runs in its own process. The default takes about 15 minutes on 2 vCPUs.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import io
import os
import random
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageEnhance

try:
    from dignity.matching.index import MihIndex
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from dignity.matching.index import MihIndex

import faiss
from threatexchange.signal_type.pdq.pdq_index import PDQIndex

from dignity.hashing.pdq import pdq_from_image
from dignity.samples import landscape

Hashes = NDArray[np.uint8]
MatchSet = set[tuple[int, int, int]]  # (query, id, distance)

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench" / ".cache"
PHOTO_ROOTS = (
    Path("/usr/share/wallpapers"),
    Path("/usr/share/backgrounds"),
    REPO.parent / "shared" / "fixtures",
)
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
EDITS_PER_PHOTO = 40  # the first half indexed, the second half near-duplicate queries


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


# -- real PDQ hashes of photos ------------------------------------------------------------------


def photo_subject(path: Path) -> str:
    """Photos of one subject (a wallpaper's sizes and dark variant, the bridge fixtures) stay
    on one side of the indexed / held-out split, so a "random" query never has its twin indexed."""
    parts = path.parts
    if "wallpapers" in parts:
        return "wallpaper:" + parts[parts.index("wallpapers") + 1]
    stem = path.stem.lower()
    if "bridge" in stem or "bridge" in str(path.parent):
        return "bridge"
    for suffix in ("-l", "-d", "-day", "-night", "-dark", "-light", "-morning", "-evening"):
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def photo_paths() -> list[Path]:
    found: list[Path] = []
    for root in PHOTO_ROOTS:
        if root.is_dir():
            found += [p for p in root.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES]
    return sorted(found)


def edit(img: Image.Image, rng: random.Random) -> Image.Image:
    """One random everyday edit: crop, rescale, maybe rotate a little, mirror or re-tone, then
    always a JPEG re-encode at a random quality."""
    w, h = img.size
    keep = rng.uniform(0.75, 1.0)
    cw, ch = max(8, int(w * keep)), max(8, int(h * rng.uniform(keep, 1.0)))
    x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
    out = img.crop((x0, y0, x0 + cw, y0 + ch))
    scale = rng.uniform(0.3, 1.0)
    out = out.resize((max(8, int(cw * scale)), max(8, int(ch * scale))), Image.Resampling.BILINEAR)
    if rng.random() < 0.2:
        out = out.rotate(rng.uniform(-4, 4), resample=Image.Resampling.BILINEAR)
    if rng.random() < 0.15:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.3:
        out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.7, 1.3))
    if rng.random() < 0.3:
        out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.7, 1.4))
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=rng.randint(20, 95))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def hex_rows(hexes: list[str]) -> Hashes:
    return np.frombuffer(bytes.fromhex("".join(hexes)), dtype=np.uint8).reshape(-1, 32)


@dataclass
class RealHashes:
    indexed: Hashes  # first edits of indexed subjects, all 8 dihedral variants
    near: Hashes  # later edits of indexed subjects (as seen, no dihedral)
    held_out: Hashes  # edits of held-out subjects
    photos: int
    subjects: int
    source: str  # "photos", or "synthetic landscapes" where no photos were found


def load_photo(path: Path) -> Image.Image | None:
    try:
        with Image.open(path) as raw:
            raw.draft("RGB", (1024, 1024))  # JPEG: decode at a reduced scale
            img = raw.convert("RGB")
    except OSError:
        return None
    return img if min(img.size) >= 64 else None


def real_hashes() -> RealHashes:
    """PDQ hashes of every photo found, computed once (a minute or two) and cached.

    A machine without the Debian wallpapers or ../shared gets dignity's synthetic landscapes
    instead (the note printed with the figures says which)."""
    paths = photo_paths()
    sources: list[tuple[str, Callable[[], Image.Image | None]]]
    source = "photos"
    if len(paths) >= 10:
        sources = [(str(p), partial(load_photo, p)) for p in paths]
        listing = "\n".join(f"{p}:{p.stat().st_size}" for p in paths)
    else:
        print("# no photos found: using 60 synthetic landscapes", file=sys.stderr)
        sources = [(f"landscape-{i}", partial(landscape, i)) for i in range(60)]
        listing = "landscapes:60"
        source = "synthetic landscapes"
    listing += f"\n{EDITS_PER_PHOTO}\n"
    cache = CACHE / f"real-pdq-{zlib.crc32(listing.encode()):08x}.npz"
    if cache.exists():
        z = np.load(cache)
        return RealHashes(
            z["indexed"],
            z["near"],
            z["held_out"],
            int(z["photos"]),
            int(z["subjects"]),
            str(z["source"]),
        )
    indexed: list[str] = []
    near: list[str] = []
    held_out: list[str] = []
    subjects = {photo_subject(Path(name)) for name, _ in sources}
    photos = 0
    started = time.perf_counter()
    for name, load in sources:
        loaded = load()
        if loaded is None:
            continue
        img = loaded
        photos += 1
        img.thumbnail((1024, 1024))
        subject = photo_subject(Path(name))
        hold = zlib.crc32(subject.encode()) % 5 == 0
        rng = random.Random(name)
        for i in range(EDITS_PER_PHOTO):
            pdq = pdq_from_image(img if i == 0 else edit(img, rng), dihedral=True)
            if hold:
                held_out.append(pdq.hex)
            elif i < EDITS_PER_PHOTO // 2:
                assert pdq.dihedral is not None
                indexed += pdq.dihedral
            else:
                near.append(pdq.hex)
    print(
        f"# hashed {photos} photos x {EDITS_PER_PHOTO} edits in "
        f"{time.perf_counter() - started:.0f} s (cached in {cache})",
        file=sys.stderr,
    )
    out = RealHashes(
        hex_rows(indexed), hex_rows(near), hex_rows(held_out), photos, len(subjects), source
    )
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(
        cache,
        indexed=out.indexed,
        near=out.near,
        held_out=out.held_out,
        photos=out.photos,
        subjects=out.subjects,
        source=out.source,
    )
    return out


def mosaic(rng: np.random.Generator, real: Hashes, n: int) -> Hashes:
    """Hashes whose 16-bit pieces each come from a random real hash, plus 0-8 flipped bits."""
    pieces = real.view(np.uint16)  # (m, 16)
    out = np.empty((n, 16), dtype=np.uint16)
    cols = np.arange(16)
    for start in range(0, n, 1 << 18):
        stop = min(n, start + (1 << 18))
        picks = rng.integers(0, pieces.shape[0], size=(stop - start, 16))
        out[start:stop] = pieces[picks, cols]
    flat = out.view(np.uint8).reshape(n, 32)
    return flip_random_bits(rng, flat, rng.integers(0, 9, size=n))


# -- data and queries ---------------------------------------------------------------------------


@dataclass
class Data:
    kind: str
    hashes: Hashes
    fresh: Callable[[int], Hashes]  # new hashes of the same kind (random queries, adds)
    near: Callable[[int], Hashes]  # near-duplicate queries
    note: str = ""


def make_data(rng: np.random.Generator, n: int, kind: str) -> Data:
    def near_stored(hashes: Hashes) -> Callable[[int], Hashes]:
        def near(k: int) -> Hashes:
            picks = hashes[rng.integers(0, hashes.shape[0], size=k)]
            return flip_random_bits(rng, picks, rng.integers(1, 11, size=k))

        return near

    if kind == "uniform":
        hashes = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
        return Data(
            kind,
            hashes,
            lambda k: rng.integers(0, 256, size=(k, 32), dtype=np.uint8),
            near_stored(hashes),
        )
    if kind == "clustered":
        p_one = rng.uniform(0.2, 0.5, size=256)
        centres = skewed_hashes(rng, max(1, n // 8), p_one)
        members = centres[rng.integers(0, centres.shape[0], size=n)]
        hashes = flip_random_bits(rng, members, rng.integers(0, 17, size=n))
        return Data(kind, hashes, lambda k: skewed_hashes(rng, k, p_one), near_stored(hashes))
    if kind != "real":
        raise SystemExit(f"unknown data kind {kind!r}")
    real = real_hashes()
    base = real.indexed[: min(n, real.indexed.shape[0])]
    hashes = np.concatenate([base, mosaic(rng, real.indexed, n - base.shape[0])])
    hashes = hashes[rng.permutation(n)]

    def sample(pool: Hashes) -> Callable[[int], Hashes]:
        return lambda k: pool[rng.integers(0, pool.shape[0], size=k)]

    note = (
        f"real: {real.photos} {real.source} of {real.subjects} subjects, {base.shape[0]:,} PDQ "
        f"hashes indexed (+{n - base.shape[0]:,} mosaic), {real.near.shape[0]:,} near-duplicate "
        f"and {real.held_out.shape[0]:,} held-out query hashes"
    )
    return Data(kind, hashes, sample(real.held_out), sample(real.near), note)


def make_queries(data: Data, count: int) -> tuple[Hashes, Hashes]:
    """(near, random) query sets of ``count // 2`` each."""
    return data.near(count // 2), data.fresh(count - count // 2)


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


def run_case(
    n: int, kind: str, n_queries: int, thresholds: list[int], seed: int, updates: bool
) -> None:
    rng = np.random.default_rng(seed)
    data = make_data(rng, n, kind)
    near, rand = make_queries(data, n_queries)
    ids = np.arange(n, dtype=np.int64)  # same labels as faiss positions, so sets compare
    tags = (ids % 7).astype(np.int32)
    if data.note:
        print(f"{'':>10} {data.note}", flush=True)

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
    pdq_threshold = PDQIndex.get_match_threshold()  # type: ignore[no-untyped-call]

    def ours_one(hexes: list[str], d: int) -> Callable[[int], MatchSet]:
        def run(i: int) -> MatchSet:
            q = np.frombuffer(bytes.fromhex(hexes[i]), dtype=np.uint8).reshape(1, 32)
            hits = ours.search(q, d)
            return {(i, int(e), int(x)) for e, x in zip(hits.ids, hits.distances, strict=True)}

        return run

    def pdq_one(hexes: list[str], d: int) -> Callable[[int], MatchSet]:
        def run(i: int) -> MatchSet:
            if d == pdq_threshold:
                res = pdq.query(hexes[i])
                return {(i, int(m.metadata), int(m.similarity_info.distance)) for m in res}
            found = pdq.index.search_with_distance_in_result([hexes[i]], d)
            return {(i, int(e), int(x)) for e, _, x in found[hexes[i]]}

        return run

    def flat_one(qs: Hashes, d: int) -> Callable[[int], MatchSet]:
        def run(i: int) -> MatchSet:
            return {(i, e, x) for _, e, x in flat_matches(flat, qs[i : i + 1], d)}

        return run

    for d in thresholds:
        count = n_queries if d == 31 else max(10, n_queries // 10)
        sets = {"near": near[: count // 2], "random": rand[: count - count // 2]}
        for qkind, qs in sets.items():
            hexes = [q.tobytes().hex() for q in qs]
            expected = flat_matches(flat, qs, d)
            t_ours, got_ours = time_single(ours_one(hexes, d), qs.shape[0])
            t_pdq, got_pdq = time_single(pdq_one(hexes, d), qs.shape[0])
            t_flat, _ = time_single(flat_one(qs, d), qs.shape[0])
            rows = [
                ("ours (MihIndex)", ours_build, ours_mem, t_ours, got_ours == expected),
                ("PDQIndex", pdq_build, pdq_rss, t_pdq, got_pdq == expected),
                ("faiss BinaryFlat", flat_build, flat_rss, t_flat, True),
            ]
            for name, build, mem, t, ok in rows:
                rel = f"{t.qps() / t_pdq.qps():.1f}x"
                print(
                    f"{n:>10,} {kind:<9} {d:>3} {qkind:<6} {name:<16} {build:>7.2f} {mem:>7.1f} "
                    f"{t.qps():>9,.0f} {t.pct_ms(50):>7.3f} {t.pct_ms(99):>8.3f} {rel:>7} "
                    f"{'OK' if ok else 'MISMATCH':>8}  ({qs.shape[0]} q, {len(expected)} hits)",
                    flush=True,
                )
        # Batch: every query of both sets in one call (a bulk scan).
        mixed = np.concatenate(list(sets.values()))
        hexes = [q.tobytes().hex() for q in mixed]
        expected = flat_matches(flat, mixed, d)
        t0 = time.perf_counter()
        batch = ours.search(mixed, d)
        ours_qps = mixed.shape[0] / (time.perf_counter() - t0)
        got = set(
            zip(batch.query.tolist(), batch.ids.tolist(), batch.distances.tolist(), strict=False)
        )
        t0 = time.perf_counter()
        flat.range_search(mixed, d + 1)
        flat_qps = mixed.shape[0] / (time.perf_counter() - t0)
        pdq_s = "PDQIndex not run (as slow as one at a time)"
        if d == pdq_threshold:
            t0 = time.perf_counter()
            pdq.index.search_with_distance_in_result(hexes, d)
            pdq_qps = mixed.shape[0] / (time.perf_counter() - t0)
            pdq_s = f"PDQIndex {pdq_qps:,.0f} q/s (ours {ours_qps / pdq_qps:.1f}x)"
        print(
            f"{'':>10} {kind:<9} {d:>3} batch of {mixed.shape[0]} mixed queries: ours "
            f"{ours_qps:,.0f} q/s {'OK' if got == expected else 'MISMATCH'}, {pdq_s}, "
            f"faiss BinaryFlat {flat_qps:,.0f} q/s",
            flush=True,
        )
    if updates:
        update_figures(ours, pdq, data, n, kind, tags, ours_rss)
    pdq.dispose()


def update_figures(
    ours: MihIndex, pdq: Any, data: Data, n: int, kind: str, tags: NDArray[Any], ours_rss: float
) -> None:
    # Updates at full size, one entry per call (a tail freeze and small merges included).
    fresh = data.fresh(5000)
    add_s: list[float] = []
    del_s: list[float] = []
    for i in range(5000):  # more than tail_limit, so one tail freeze is included
        t0 = time.perf_counter()
        ours.add(np.array([n + i], np.int64), fresh[i : i + 1], tags[:1])
        add_s.append(time.perf_counter() - t0)
        if i % 5 == 0:  # a withdrawal passes over a large segment's ids: sample fewer
            t0 = time.perf_counter()
            ours.remove(np.array([i * 37 % n], np.int64))
            del_s.append(time.perf_counter() - t0)
    ours.wait_for_maintenance()
    print(
        f"{'':>10} {kind:<9} ours at {n:,}, one entry per call: add p50 "
        f"{np.median(add_s) * 1e3:.3f} ms, p99 {np.percentile(add_s, 99) * 1e3:.2f} ms, "
        f"max {max(add_s) * 1e3:.1f} ms; withdraw p50 {np.median(del_s) * 1e3:.3f} ms, "
        f"p99 {np.percentile(del_s, 99) * 1e3:.2f} ms, max {max(del_s) * 1e3:.1f} ms",
        flush=True,
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
    print(
        f"{'':>10} {kind:<9} ours bulk add of {big:,} {bulk_s:.2f} s, then a background merge "
        f"into the base of {merge_s:.2f} s; {during_s}; segments now {ours.segment_sizes()}",
        flush=True,
    )
    t0 = time.perf_counter()
    pdq.add(fresh[0].tobytes().hex(), n)
    pdq_add = time.perf_counter() - t0
    print(
        f"{'':>10} {kind:<9} PDQIndex at {n:,}: one add {pdq_add * 1e3:.0f} ms (it rebuilds its "
        f"id map on every add); no withdraw API. Our RSS growth while building: "
        f"{ours_rss:.1f} B/entry",
        flush=True,
    )
    # Restart: write a snapshot of the index as it is now, then load it as a new process would.
    with tempfile.TemporaryDirectory(dir=os.environ.get("DIGNITY_BENCH_TMP")) as tmp:
        t0 = time.perf_counter()
        ours.save(Path(tmp), {"seq": 0})
        save_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        back, _ = MihIndex.load(Path(tmp))
        load_s = time.perf_counter() - t0
        size = len(back)
        del back
    print(
        f"{'':>10} {kind:<9} ours snapshot of {size:,} entries: write {save_s:.2f} s, "
        f"load (read + CRC check + validation) {load_s:.2f} s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument("--queries", type=int, default=200, help="at 31; a tenth at others")
    parser.add_argument("--kinds", default="uniform,clustered,real")
    parser.add_argument("--thresholds", default="31,47,63")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-updates", action="store_true", help="skip add/withdraw/merge/snapshot figures"
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)  # SIZE:KIND, run in a child process
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    thresholds = [int(t) for t in args.thresholds.split(",")]
    if args.case:
        size, kind = args.case.split(":")
        run_case(int(size), kind, args.queries, thresholds, args.seed, not args.no_updates)
        return
    if "real" in args.kinds.split(","):
        real_hashes()  # once, before the cases (cached)
    header = (
        f"{'entries':>10} {'data':<9} {'thr':>3} {'query':<6} {'index':<16} {'build s':>7} "
        f"{'B/entry':>7} {'q/s':>9} {'p50 ms':>7} {'p99 ms':>8} {'vs PDQ':>7} {'check':>8}"
    )
    print(
        "one thread (faiss.omp_set_num_threads(1)), one query per call; B/entry: ours "
        "memory_bytes()/n, the others RSS growth while building; 'check' compares the match set "
        "with IndexBinaryFlat's; load average at start: "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    print(header)
    print("-" * len(header), flush=True)
    started = time.perf_counter()
    for size in args.sizes.split(","):
        for kind in args.kinds.split(","):
            # A fresh process per case, so RSS growth is not blurred by memory freed earlier.
            child = [sys.executable, __file__, "--case", f"{size}:{kind}"]
            child += ["--queries", str(args.queries), "--thresholds", args.thresholds]
            child += ["--seed", str(args.seed)]
            if args.no_updates:
                child.append("--no-updates")
            subprocess.run(child, check=True)
    print(
        f"total {time.perf_counter() - started:.0f} s; load average at end: "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )


if __name__ == "__main__":
    main()
