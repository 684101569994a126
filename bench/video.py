"""Video benchmark (issue 16's targets), one core, every anchor measured in the same run.

(a) **Hashing**: vPDQ of 1 minute of 720p H.264 (30 fps, x264 ``veryfast``) at 1 frame/s with
    dignity (``dignity.video.vpdq.vpdq_hash``), with Meta's ``vpdq`` binding (``computeHash``,
    ``thread_count=1``) and with PyAV decoding every frame alone (what hashing cost before
    dignity learnt to leave unneeded frames undecoded: non-reference frames not hashed, and
    runs before an IDR frame after the last hashed one). Rounds alternate the three, and
    the ratios are per round and of the best times, so load from other processes on the machine
    hits all three alike. Targets: >= 2x faster than vpdq, <= 1.5x PyAV's decode.
(b) **Memory**: peak RSS growth (sampled every 2 ms) and tracemalloc's peak while hashing 1 minute
    and a long video (15 minutes by default, 640 x 360, low bitrate), each in a fresh process
    that has already hashed a 2 s video (so FFmpeg's and numpy's one-off allocations are in the
    baseline). Flat means the long video's growth is about the short one's.
(c) **Matching** on the corpus of ``bench/video_corpus.py`` (edited copies of originals, and
    unrelated videos): the anchor is vPDQ with HMA's rule as python-threatexchange's vPDQ
    index applies it (frames of quality >= 50 only, identical hashes counted once, a query
    frame matches when a banked frame lies within 31 bits, a match when >= 80% of the query's
    frames match); dignity is ``MatchEngine.match_video`` over a SQLite bank of the originals.
    Counts: copies found (of their own original) and false matches (an unrelated video, or a
    copy matched to another original).
(d) **Index cost**: a 10-minute video's 600 frames x 8 dihedral variants (4,800 PDQ queries)
    against 1e7 banked frame hashes (uniform random PDQ, as bench/matching.py's "uniform", plus
    the video's own frames) with ``MihIndex.search`` at distance 31, in one batch. Target <= 1 s.

One core: the process pins itself to one CPU (``sched_setaffinity``), which FFmpeg's automatic
thread count follows, and numpy's BLAS gets one thread (threadpoolctl). Videos are cached in
bench/.cache/video-corpus. Run: ``python bench/video.py [--parts hash,memory,match,index]
[--long-minutes 15] [--index-size 10000000] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import dignity  # noqa: F401
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import video_corpus as vc
from dignity.video.vpdq import VpdqFrame, VpdqResult, vpdq_hash

HMA_QUALITY = 50  # VPDQ_QUALITY_THRESHOLD
HMA_DISTANCE = 31  # VPDQ_DISTANCE_THRESHOLD (a match when distance <= 31)
HMA_QUERY_PERCENT = 80.0  # VPDQ_QUERY_MATCH_THRESHOLD_PERCENT
HMA_INDEX_PERCENT = 0.0  # VPDQ_INDEX_MATCH_THRESHOLD_PERCENT

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def pin_one_core() -> int:
    """Run on one CPU (the first this process may use): FFmpeg sizes its thread pools by the
    affinity mask, and numpy's BLAS is held to one thread as well."""
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    threadpool_limits(1)
    return cpu


def load_line() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- (a) hashing speed ---------------------------------------------------------------------------


def pyav_decode(path: Path) -> int:
    """Decode every frame with PyAV and nothing else (the floor any hasher pays)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        return sum(1 for _ in container.decode(stream))


def meta_vpdq(path: Path) -> list[Any]:
    import vpdq  # type: ignore[import-not-found,unused-ignore]

    return list(vpdq.computeHash(str(path), seconds_per_hash=1.0, thread_count=1))


def bits(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``fn()``, its wall seconds and the process's CPU seconds (every thread) meanwhile. On a
    machine shared with other work, CPU seconds are the steadier measure; both are printed."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def part_hash(cache: Path, rounds: int) -> None:
    path = vc.synthetic_video(cache / "hash-720p-60s.mp4", 60.0, size=(1280, 720), fps=30.0)
    try:
        import vpdq  # type: ignore[import-not-found,unused-ignore]  # noqa: F401

        have_vpdq = True
    except ImportError as exc:
        have_vpdq = False
        print(f"(a) Meta's vpdq binding not importable ({exc}): its column is skipped")
    wall: dict[str, list[float]] = {"dignity": [], "vpdq": [], "pyav": []}
    cpu: dict[str, list[float]] = {"dignity": [], "vpdq": [], "pyav": []}
    ours: VpdqResult | None = None
    theirs: list[Any] = []
    decoded = 0
    for _ in range(rounds):
        ours, w, c = timed(lambda: vpdq_hash(path))
        wall["dignity"].append(w)
        cpu["dignity"].append(c)
        if have_vpdq:
            theirs, w, c = timed(lambda: meta_vpdq(path))
            wall["vpdq"].append(w)
            cpu["vpdq"].append(c)
        decoded, w, c = timed(lambda: pyav_decode(path))
        wall["pyav"].append(w)
        cpu["pyav"].append(c)
    assert ours is not None
    print(
        f"(a) vPDQ of {path.name}: 1280x720 H.264, {decoded} frames, {ours.duration:.1f} s, "
        f"{len(ours.frames)} frames hashed; {rounds} rounds alternating; best / median seconds"
    )
    for name in wall:
        if wall[name]:
            print(
                f"    {name:<8} wall {min(wall[name]):6.2f} / {statistics.median(wall[name]):6.2f}"
                f"  cpu {min(cpu[name]):6.2f} / {statistics.median(cpu[name]):6.2f}"
            )
    pairs = [("dignity / PyAV decode", "dignity", "pyav", "<= 1.5x")]
    if have_vpdq:
        pairs.append(("vpdq / dignity (speed-up)", "vpdq", "dignity", ">= 2x"))
    for title, num, den, target in pairs:
        cells = []
        for kind, runs in (("wall", wall), ("cpu", cpu)):
            per_round = ", ".join(f"{a / b:.2f}" for a, b in zip(runs[num], runs[den], strict=True))
            cells.append(
                f"{kind} {min(runs[num]) / min(runs[den]):.2f}x of the best (rounds {per_round})"
            )
        print(f"    {title}: {'; '.join(cells)}; target {target}")
    if have_vpdq:
        same = [f.frame_number for f in ours.frames] == [f.frame_number for f in theirs]
        dist = [
            bits(a.pdq_hex, b.hex)
            for a, b in zip(ours.frames, theirs, strict=False)
            if min(a.quality, b.quality) >= HMA_QUALITY
        ]
        if dist:
            print(
                f"    agreement with vpdq: same frames {same}; over {len(dist)} frames of "
                f"quality >= {HMA_QUALITY}, PDQ bits apart: median {statistics.median(dist)}, "
                f"max {max(dist)}"
            )


# -- (b) memory ----------------------------------------------------------------------------------


def memory_child(path: Path, warm: Path, impl: str) -> None:
    """In a fresh process: hash a short video, then measure what hashing ``path`` adds."""
    pin_one_core()
    run: Callable[[Path], int]
    if impl == "vpdq":

        def run(p: Path) -> int:
            return len(meta_vpdq(p))
    else:

        def run(p: Path) -> int:
            return len(vpdq_hash(p).frames)

    run(warm)
    # ru_maxrss is the whole life's peak (imports included, often higher than hashing), so the
    # resident size is also sampled every few milliseconds while hashing.
    sampler = RssSampler()
    before = sampler.current()
    max_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    traced = impl == "dignity"
    if traced:
        tracemalloc.start()
    sampler.start()
    t0 = time.perf_counter()
    frames = run(path)
    seconds = time.perf_counter() - t0
    sampler.stop()
    peak = tracemalloc.get_traced_memory()[1] if traced else 0
    print(
        json.dumps(
            {
                "rss_before": before,
                "rss_peak": sampler.peak,
                "maxrss_growth_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                - max_before,
                "traced_peak_bytes": peak,
                "frames": frames,
                "seconds": seconds,
            }
        )
    )


class RssSampler:
    """The process's resident size (``/proc/self/statm``), its peak sampled every 2 ms from a
    thread (decoding and PDQ release the GIL, so the samples keep coming)."""

    def __init__(self) -> None:
        self._page = os.sysconf("SC_PAGE_SIZE")
        self.peak = self.current()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def current(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _loop(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self.current())

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


def part_memory(cache: Path, long_minutes: float) -> None:
    size, fps = (640, 360), 10.0
    enc = vc.Encoding(fps=fps, options=(("preset", "veryfast"), ("crf", "30")))
    warm = vc.synthetic_video(cache / "mem-2s.mp4", 2.0, size=size, fps=fps, seed=3, enc=enc)
    videos = [
        vc.synthetic_video(cache / "mem-1min.mp4", 60.0, size=size, fps=fps, seed=4, enc=enc),
        vc.synthetic_video(
            cache / f"mem-{long_minutes:g}min.mp4",
            long_minutes * 60.0,
            size=size,
            fps=fps,
            seed=5,
            enc=enc,
        ),
    ]
    impls = ["dignity"]
    try:
        import vpdq  # type: ignore[import-not-found,unused-ignore]  # noqa: F401

        impls.append("vpdq")
    except ImportError:
        pass
    print(
        f"(b) memory while hashing (fresh process each, after a 2 s warm-up; 640x360 H.264 at "
        f"{fps:g} fps, crf 30); tracemalloc for dignity only (Python/numpy allocations)"
    )
    for impl in impls:
        for video in videos:
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", str(video), str(warm), impl],
                check=True,
                capture_output=True,
                text=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            delta = (r["rss_peak"] - r["rss_before"]) / 2**20
            traced = (
                f", tracemalloc peak {r['traced_peak_bytes'] / 2**20:.1f} MiB"
                if impl == "dignity"
                else ""
            )
            mb = video.stat().st_size / 2**20
            print(
                f"    {impl:<8} {video.name:<16} ({mb:5.1f} MiB, {r['frames']:>4} hashes, "
                f"{r['seconds']:6.1f} s): RSS {r['rss_before'] / 2**20:6.1f} MiB before, peak "
                f"growth while hashing {delta:5.1f} MiB (ru_maxrss growth "
                f"{r['maxrss_growth_kib'] / 1024:.1f} MiB){traced}"
            )


# -- (c) matching: the anchor (HMA's rule) and dignity ------------------------------------------


def _rows(frames: Sequence[tuple[str, int]]) -> NDArray[np.uint8]:
    if not frames:
        return np.zeros((0, 32), np.uint8)
    return np.frombuffer(bytes.fromhex("".join(h for h, _ in frames)), np.uint8).reshape(-1, 32)


def hma_prepare(frames: Sequence[VpdqFrame]) -> NDArray[np.uint8]:
    """py-tx's prepare step: frames under the quality floor dropped, each distinct hash once."""
    seen: dict[str, int] = {}
    for f in frames:
        if f.quality >= HMA_QUALITY:
            seen.setdefault(f.pdq_hex, f.quality)
    return _rows(list(seen.items()))


def hamming(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> NDArray[np.int64]:
    """All pairwise PDQ distances, ``len(a)`` x ``len(b)``."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]), np.int64)
    x = np.bitwise_xor(a[:, None, :], b[None, :, :])
    out: NDArray[np.int64] = _POPCOUNT[x].sum(axis=2, dtype=np.int64)
    return out


@dataclass(frozen=True)
class AnchorResult:
    query_percent: float
    compared_percent: float

    @property
    def is_match(self) -> bool:
        return (
            self.query_percent >= HMA_QUERY_PERCENT and self.compared_percent >= HMA_INDEX_PERCENT
        )


def hma_anchor(query: NDArray[np.uint8], banked: NDArray[np.uint8]) -> AnchorResult:
    """HMA's vPDQ rule for one query against one banked video (both prepared): the share of
    the query's frames with a banked frame within 31 bits, and the share of banked frames hit.
    No match at all (or nothing of quality) gives 0 %, as the index then returns no entry."""
    if query.shape[0] == 0 or banked.shape[0] == 0:
        return AnchorResult(0.0, 0.0)
    near = hamming(query, banked) <= HMA_DISTANCE
    if not near.any():
        return AnchorResult(0.0, 0.0)
    return AnchorResult(
        100.0 * near.any(axis=1).sum() / query.shape[0],
        100.0 * near.any(axis=0).sum() / banked.shape[0],
    )


def hash_clip(clip: vc.Clip) -> VpdqResult:
    # With each frame's 8 dihedral hashes, as a scan hashes a video (mirrored copies match).
    return vpdq_hash(Path(clip.path), dihedral=True)


def part_match(cache: Path) -> None:
    corpus = vc.build_corpus(cache)
    t0 = time.perf_counter()
    hashed = {c.name: hash_clip(c) for c in corpus.clips}
    hash_s = time.perf_counter() - t0
    originals = corpus.originals()
    queries = corpus.copies() + corpus.unrelated()
    total_s = sum(c.seconds for c in corpus.clips)
    print(
        f"(c) matching on the corpus: {len(originals)} originals, {len(corpus.copies())} edited "
        f"copies, {len(corpus.unrelated())} unrelated videos ({total_s / 60:.1f} min in all; "
        f"built in {corpus.build_seconds:.0f} s, hashed in {hash_s:.0f} s)"
    )
    prepared = {name: hma_prepare(r.frames) for name, r in hashed.items()}
    anchor: dict[str, set[str]] = {}
    detail: dict[str, float] = {}
    for q in queries:
        anchor[q.name] = set()
        for o in originals:
            r = hma_anchor(prepared[q.name], prepared[o.name])
            if r.is_match:
                anchor[q.name].add(o.name)
            if o.name == q.source:
                detail[q.name] = r.query_percent
    report("anchor (vPDQ, HMA's 80% rule)", anchor, queries, detail)
    ours = dignity_matches(originals, queries, hashed)
    if ours is None:
        print("    dignity: dignity matcher not available (MatchEngine.match_video is missing)")
    else:
        found, per_query = ours
        report("dignity (MatchEngine.match_video)", found, queries, None)
        print(f"      {per_query * 1e3:.1f} ms per query video through match_video")


def report(
    title: str,
    found: dict[str, set[str]],
    queries: Sequence[vc.Clip],
    percent: dict[str, float] | None,
) -> None:
    copies = [q for q in queries if q.role == "copy"]
    hit = [q for q in copies if q.source in found[q.name]]
    false = sum(len(found[q.name] - {q.source}) for q in queries)
    unrelated_false = sum(len(found[q.name]) for q in queries if q.role == "unrelated")
    print(
        f"    {title}: {len(hit)} of {len(copies)} copies found; false matches {false} "
        f"({unrelated_false} from {sum(q.role == 'unrelated' for q in queries)} unrelated videos)"
    )
    by_edit: dict[str, list[vc.Clip]] = {}
    for q in copies:
        by_edit.setdefault(q.edit or "?", []).append(q)
    cells = []
    for edit, qs in by_edit.items():
        n = sum(q.source in found[q.name] for q in qs)
        cell = f"{edit} {n}/{len(qs)}"
        if percent is not None:
            cell += " (" + ",".join(f"{percent.get(q.name, 0):.0f}%" for q in qs) + ")"
        cells.append(cell)
    print("      by edit: " + "; ".join(cells))


def dignity_matches(
    originals: Sequence[vc.Clip], queries: Sequence[vc.Clip], hashed: dict[str, VpdqResult]
) -> tuple[dict[str, set[str]], float] | None:
    """Bank the originals in a SQLite database and ask ``MatchEngine.match_video`` about every
    query: the originals each query matched, and the seconds per query. None while the engine
    has no ``match_video`` (another branch is adding it)."""
    from dignity.matching import BankService, MatchEngine, NewEntry
    from dignity.storage.db import open_database

    if not hasattr(MatchEngine, "match_video"):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(f"sqlite:///{tmp}/bench.sqlite3")
        svc = BankService(db)
        svc.create_bank("videos")
        names: dict[int, str] = {}
        for o in originals:
            video = hashed[o.name]
            # As `dignity bank add` banks a video: one vpdq entry, its frames and file MD5.
            entry = NewEntry(  # type: ignore[call-arg,unused-ignore]
                "vpdq", "", origin_ref=o.name, frames=video.frames, video_md5=video.md5
            )
            res = svc.add_entries("videos", [entry])
            for entry_id in res.added + res.reactivated + res.already_active:
                names[entry_id] = o.name
        engine = MatchEngine(db)
        engine.load()
        found: dict[str, set[str]] = {}
        t0 = time.perf_counter()
        for q in queries:
            outcome = engine.match_video(hashed[q.name], dihedral=True)
            found[q.name] = {names[m.entry_id] for m in outcome.matches if m.entry_id in names}
        per_query = (time.perf_counter() - t0) / max(1, len(queries))
        db.close()
    return found, per_query


# -- (d) index cost ------------------------------------------------------------------------------


def video_dihedral_rows(path: Path, frames: int) -> NDArray[np.uint8]:
    """The 8 dihedral PDQ variants of a video's first ``frames`` one-a-second frames."""
    result = vpdq_hash(path, dihedral=True)
    packed = [f.dihedral or b"" for f in result.frames[:frames]]
    return np.frombuffer(b"".join(packed), np.uint8).reshape(-1, 32)


def part_index(cache: Path, size: int, rounds: int, long_minutes: float) -> None:
    from dignity.matching.index import MihIndex

    minutes = max(10.0, long_minutes)
    size_px, fps = (640, 360), 10.0
    enc = vc.Encoding(fps=fps, options=(("preset", "veryfast"), ("crf", "30")))
    path = vc.synthetic_video(
        cache / f"mem-{minutes:g}min.mp4", minutes * 60, size=size_px, fps=fps, seed=5, enc=enc
    )
    queries = video_dihedral_rows(path, 600)
    rng = np.random.default_rng(16)
    t0 = time.perf_counter()
    hashes = rng.integers(0, 256, size=(size, 32), dtype=np.uint8)
    # The video's own frames are banked too (as one banked copy of it), so there are hits.
    originals = queries[::8]
    hashes[: originals.shape[0]] = originals
    ids = np.arange(size, dtype=np.int64)
    index = MihIndex.from_arrays(ids, hashes, np.zeros(size, np.int32))
    build_s = time.perf_counter() - t0
    del hashes
    walls: list[float] = []
    cpus: list[float] = []
    hits = 0
    for _ in range(rounds):
        found, w, c = timed(lambda: index.search(queries, HMA_DISTANCE))
        walls.append(w)
        cpus.append(c)
        hits = int(found.ids.shape[0])
    print(
        f"(d) {queries.shape[0]} PDQ queries ({queries.shape[0] // 8} frames, 10 minutes of a "
        f"{minutes:g}-minute video, x 8 dihedral variants) against {size:,} banked frame "
        f"hashes, MihIndex.search at distance {HMA_DISTANCE} in one batch ({hits} hits; index "
        f"built in {build_s:.0f} s), {rounds} rounds: wall best {min(walls):.2f} s, median "
        f"{statistics.median(walls):.2f} s; cpu best {min(cpus):.2f} s, median "
        f"{statistics.median(cpus):.2f} s; {min(cpus) / 10 * 1e3:.0f} ms cpu per minute of "
        "video (target <= 1 s for the 10 minutes)"
    )


# -- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="hash,memory,match,index")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--long-minutes", type=float, default=15.0)
    parser.add_argument("--index-size", type=int, default=10_000_000)
    parser.add_argument("--cache", type=Path, default=vc.DEFAULT_CACHE)
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if args.memory_child:
        path, warm, impl = args.memory_child
        memory_child(Path(path), Path(warm), impl)
        return
    cpu = pin_one_core()
    print(
        f"bench/video.py: one core (pinned to CPU {cpu}), PyAV {av.__version__}; load average at "
        f"start {load_line()} (other processes share this machine: compare ratios within a run)",
        flush=True,
    )
    started = time.perf_counter()
    parts = args.parts.split(",")
    if "hash" in parts:
        part_hash(args.cache, args.rounds)
    if "memory" in parts:
        part_memory(args.cache, args.long_minutes)
    if "match" in parts:
        part_match(args.cache)
    if "index" in parts:
        part_index(args.cache, args.index_size, args.rounds, args.long_minutes)
    print(
        f"total {time.perf_counter() - started:.0f} s; load average at end {load_line()}",
        flush=True,
    )


if __name__ == "__main__":
    main()
