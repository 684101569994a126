"""Matching one video against banked video frames: the cost of ``MatchEngine.match_frames`` for a
10-minute video (600 frames at one a second, each with its 8 dihedral hashes: 4,800 queries in
one batch search per index, the two side by side) against N banked frame hashes (videos of 600
frames each) and N banked images (``--images``: another multiple, 0 for none).

The frames are random 256-bit hashes (as bench/engine.py's entries are): random hashes spread
evenly, the index's easy case at small distances, while real PDQ clusters somewhat. A tenth of
the query's frames are near frames of one banked video (so a match, its percentages and a
segment are computed), the rest are unrelated. The index is built in memory, not read from a
database (bench/engine.py measures loading); what is timed is the query through the engine:
the two batch searches (video frames, image entries), the per-entry comparison and segments.

    python bench/video_match.py [--sizes 1000000,10000000] [--repeat 5] [--images 1]

Figures of 2026-12-06 on this project's 2-vCPU machine, shared with other sessions (load average
8-19 during the runs, so these are upper bounds): per 10-minute video (4,800 queries) against
1e6 frames + 1e6 images 11.5-12.8 s (frame index alone 4.1-5.5 s; with no images, match_video
takes what its one search takes: the engine adds nothing measurable); against 1e7 frames + 1e7
images 88-144 s, 12.6 s per minute of video. The cost is the exact index's search at distance
31, far from the issue's 1 s target at 1e7.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from dignity.hashing.pdq import DIHEDRAL_NAMES
from dignity.matching import MatchEngine
from dignity.matching.engine import FRAME_BITS, ExactStore, _BankView, _Loaded, _Video
from dignity.matching.index import MihIndex
from dignity.storage.db import open_database
from dignity.video.vpdq import VpdqFrame

FRAMES_PER_VIDEO = 600


def flip(rows: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
    out = rows.copy()
    for r in range(out.shape[0]):
        for b in rng.choice(256, size=bits, replace=False):
            out[r, b // 8] ^= np.uint8(1 << (7 - b % 8))
    return out


def build(engine: MatchEngine, n: int, images: int, rng: np.random.Generator) -> np.ndarray:
    videos = n // FRAMES_PER_VIDEO
    hashes = rng.integers(0, 256, size=(videos * FRAMES_PER_VIDEO, 32), dtype=np.uint8)
    entry = np.repeat(np.arange(1, videos + 1, dtype=np.int64), FRAMES_PER_VIDEO)
    pos = np.tile(np.arange(FRAMES_PER_VIDEO, dtype=np.int64), videos)
    frames = MihIndex()
    frames.add((entry << FRAME_BITS) | pos, hashes, np.ones(entry.shape[0], dtype=np.int32))
    times = np.arange(FRAMES_PER_VIDEO, dtype=np.float64)
    groups = np.arange(FRAMES_PER_VIDEO, dtype=np.int32)
    table = {
        eid: _Video(1, times, groups, FRAMES_PER_VIDEO, 1.0, None) for eid in range(1, videos + 1)
    }
    image_index = MihIndex()
    if images:
        image_index.add(
            np.arange(10**9, 10**9 + images, dtype=np.int64),
            rng.integers(0, 256, size=(images, 32), dtype=np.uint8),
            np.ones(images, dtype=np.int32),
        )
    frames.wait_for_maintenance()
    image_index.wait_for_maintenance()
    bank = {1: _BankView(1, "b", "block", 31, True)}
    engine._install(
        _Loaded({"pdq": image_index}, {}, bank, frames, table, ExactStore())  # type: ignore[arg-type]
    )
    return hashes[:FRAMES_PER_VIDEO]  # the first banked video's frames


def query(banked: np.ndarray, rng: np.random.Generator) -> list[VpdqFrame]:
    rows = rng.integers(0, 256, size=(FRAMES_PER_VIDEO, len(DIHEDRAL_NAMES), 32), dtype=np.uint8)
    # A 60 s stretch of the first banked video, 8 bits off, as the mirrored variant.
    flipx = DIHEDRAL_NAMES.index("flipx")
    rows[100:160, flipx] = flip(banked[200:260], 8, rng)
    return [
        VpdqFrame(i * 30, float(i), rows[i, 0].tobytes().hex(), 90, rows[i].tobytes())
        for i in range(FRAMES_PER_VIDEO)
    ]


def run(n: int, images: int, repeat: int) -> None:
    rng = np.random.default_rng(n)
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(f"sqlite:///{tmp}/bench.sqlite3")
        engine = MatchEngine(db)
        engine.load()
        t0 = time.perf_counter()
        banked = build(engine, n, images, rng)
        t_build = time.perf_counter() - t0
        video = query(banked, rng)
        engine.match_frames(video)  # warm up
        times = []
        minute = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            outcome = engine.match_frames(video)
            times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            engine.match_frames(video[100:160])  # one minute of it
            minute.append(time.perf_counter() - t0)
        queries = np.frombuffer(b"".join(f.dihedral or b"" for f in video), np.uint8)
        queries = queries.reshape(-1, 32)
        t0 = time.perf_counter()
        engine._frames.search(queries, 31)
        t_search = time.perf_counter() - t0
        (m,) = [m for m in outcome.matches if m.signal == "vpdq"]
        assert m.entry_id == 1 and m.transform == "flipx" and m.segments, m
        median = statistics.median(times)
        print(
            f"n={n:>10,} banked frames (+{images:,} images): build {t_build:6.1f} s | "
            f"match_video 600 frames x 8 = {queries.shape[0]} queries: median {median:.3f} s "
            f"(min {min(times):.3f}), frame-index search alone {t_search:.3f} s | "
            f"one minute (60 frames x 8): median {statistics.median(minute):.3f} s | segment "
            f"{m.segments[0].query_start:.0f}-{m.segments[0].query_end:.0f} s, "
            f"query {m.query_match_percent}% | load {os.getloadavg()[0]:.1f}"
        )
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--images", type=float, default=1.0, help="banked images, as a multiple of the frames"
    )
    args = parser.parse_args()
    for n in (int(x) for x in args.sizes.split(",")):
        run(n, int(n * args.images), args.repeat)


if __name__ == "__main__":
    main()
