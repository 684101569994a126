"""Matching a video in two stages (``MatchEngine.video_seed_distance``): the query rows are searched
at a small radius, and the video entries found are compared with every query row at the bank's
threshold. These tests hold the two-stage engine to the single exact search: the same outcome,
percentages and segments included, whenever an entry has one frame within the seed radius (a
re-encoded copy with most frames far off, a 3 s mirrored clip inside a longer video); the one
thing it can miss (an entry whose every frame is beyond the seed radius but within the
threshold); frames against image entries, exact unless ``image_seed_distance`` says otherwise;
and the fall back to the full search for an index that cannot hand out its hashes. Frames are
random 256-bit hashes, moved a chosen number of bits."""

from __future__ import annotations

import random

import numpy as np
import pytest

from dignity.hashing.pdq import DIHEDRAL_NAMES
from dignity.matching import BankService, MatchEngine, NewEntry
from dignity.matching.engine import VIDEO_SEED_DISTANCE, Match
from dignity.matching.index import BruteForceIndex
from dignity.matching.protocol import IndexHits
from dignity.storage.db import Database
from dignity.video.vpdq import VpdqFrame


def _hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def _flip(value: str, bits: int, rng: random.Random) -> str:
    v = int(value, 16)
    for b in rng.sample(range(256), bits):
        v ^= 1 << b
    return f"{v:064x}"


def _video(n: int, seed: int) -> tuple[VpdqFrame, ...]:
    rng = random.Random(seed)
    return tuple(VpdqFrame(i * 25, float(i), _hex(rng), 90) for i in range(n))


def _retime(hexes: list[str]) -> tuple[VpdqFrame, ...]:
    return tuple(VpdqFrame(i * 25, float(i), h, 90) for i, h in enumerate(hexes))


def _dicts(matches: list[Match]) -> list[dict[str, object]]:
    return sorted((m.to_dict() for m in matches), key=lambda d: (d["signal"], d["entry_id"]))


@pytest.fixture
def bank(db: Database) -> tuple[tuple[VpdqFrame, ...], int, str, int]:
    """Two banked videos (the first is the one the queries copy) and an image entry."""
    svc = BankService(db)
    svc.create_bank("videos")
    frames = _video(20, 1)
    eid = svc.add_entries("videos", [NewEntry("vpdq", "", frames=frames)]).added[0]
    svc.add_entries("videos", [NewEntry("vpdq", "", frames=_video(20, 2))])
    image = _hex(random.Random(5))
    img_id = svc.add_entries("videos", [NewEntry("pdq", image)]).added[0]
    return frames, eid, image, img_id


def _engines(db: Database) -> tuple[MatchEngine, MatchEngine]:
    two = MatchEngine(db)
    one = MatchEngine(db, video_seed_distance=None)
    two.load()
    one.load()
    assert two.video_seed_distance == VIDEO_SEED_DISTANCE == 16
    return two, one


def test_second_stage_counts_every_frame_within_the_threshold(
    db: Database, bank: tuple[tuple[VpdqFrame, ...], int, str, int]
) -> None:
    frames, eid, _, _ = bank
    rng = random.Random(9)
    # One frame 6 bits off (the seed), the other 19 between 24 and 30 bits off: beyond the first
    # stage's radius, so only the second stage can count them.
    copy = [_flip(f.pdq_hex, 6 if i == 3 else 24 + i % 7, rng) for i, f in enumerate(frames)]
    two, one = _engines(db)
    got, want = two.match_frames(_retime(copy)), one.match_frames(_retime(copy))
    assert _dicts(got.matches) == _dicts(want.matches)
    (m,) = got.matches
    assert (m.entry_id, m.query_match_percent, m.compared_match_percent) == (eid, 100.0, 100.0)
    assert m.segments and (m.segments[0].query_start, m.segments[0].query_end) == (0.0, 19.0)
    assert m.distance == 6


def test_short_mirrored_clip_inside_a_longer_video_is_still_found(
    db: Database, bank: tuple[tuple[VpdqFrame, ...], int, str, int]
) -> None:
    frames, eid, _, _ = bank
    rng = random.Random(4)
    flip = DIHEDRAL_NAMES.index("flipx")
    # 60 s of other footage with 3 s (frames 30-32) of the banked video's frames 5-7, mirrored
    # (its "flipx" variants are the banked frames, 10, 22 and 27 bits off): under 80%, a segment.
    query = []
    for i in range(60):
        variants = [bytes.fromhex(_hex(rng)) for _ in DIHEDRAL_NAMES]
        if 30 <= i <= 32:
            bits = (10, 22, 27)[i - 30]
            variants[flip] = bytes.fromhex(_flip(frames[i - 25].pdq_hex, bits, rng))
        query.append(VpdqFrame(i * 25, float(i), variants[0].hex(), 90, b"".join(variants)))
    two, one = _engines(db)
    got, want = two.match_frames(query), one.match_frames(query)
    assert _dicts(got.matches) == _dicts(want.matches)
    (m,) = got.matches
    assert (m.entry_id, m.transform, m.distance) == (eid, "flipx", 10)
    assert m.query_match_percent is not None and m.query_match_percent == 5.0
    (seg,) = m.segments
    assert (seg.query_start, seg.query_end, seg.entry_start, seg.entry_end) == (30, 32, 5, 7)


def test_what_the_first_stage_can_miss(
    db: Database, bank: tuple[tuple[VpdqFrame, ...], int, str, int]
) -> None:
    frames, eid, image, img_id = bank
    rng = random.Random(6)
    # Every frame 20 bits off: within the threshold (31), none within the seed radius (16).
    far = [_flip(f.pdq_hex, 20, rng) for f in frames]
    # Frame 4 is the banked image, 20 bits off.
    far[4] = _flip(image, 20, rng)
    two, one = _engines(db)
    exact = {(m.signal, m.entry_id) for m in one.match_frames(_retime(far)).matches}
    assert exact == {("vpdq", eid), ("pdq", img_id)}
    # The video entry is missed; image entries are matched at the threshold by default.
    assert {(m.signal, m.entry_id) for m in two.match_frames(_retime(far)).matches} == {
        ("pdq", img_id)
    }
    two.image_seed_distance = 16
    assert not two.match_frames(_retime(far)).matches
    two.image_seed_distance = 20
    (img,) = two.match_frames(_retime(far)).matches
    assert (img.entry_id, img.timestamp, img.distance) == (img_id, 4.0, 20)


class _NoLookup:
    """An index that cannot hand out its hashes (no ``lookup``)."""

    def __init__(self) -> None:
        self._inner = BruteForceIndex()

    def __len__(self) -> int:
        return len(self._inner)

    def add(self, ids: np.ndarray, hashes: np.ndarray, tags: np.ndarray) -> None:
        self._inner.add(ids, hashes, tags)

    def remove(self, ids: np.ndarray) -> int:
        return self._inner.remove(ids)

    def search(self, queries: np.ndarray, max_distance: int) -> IndexHits:
        return self._inner.search(queries, max_distance)


def test_an_index_without_lookup_gets_the_full_search(
    db: Database, bank: tuple[tuple[VpdqFrame, ...], int, str, int]
) -> None:
    frames, eid, _, _ = bank
    rng = random.Random(8)
    far = [_flip(f.pdq_hex, 6 if i == 0 else 26, rng) for i, f in enumerate(frames)]
    engine = MatchEngine(db, index_factory=_NoLookup)  # type: ignore[arg-type]
    engine.load()
    (m,) = engine.match_frames(_retime(far)).matches
    assert (m.entry_id, m.query_match_percent) == (eid, 100.0)


def test_second_stage_equals_the_full_search_for_the_entries_found() -> None:
    # 300 banked videos of 20 frames in one index; queries near frames of some of them.
    from dignity.matching.engine import FRAME_BITS, _verify_frames, _Video
    from dignity.matching.index import MihIndex

    rng = np.random.default_rng(3)
    n_videos, per = 300, 20
    hashes = rng.integers(0, 256, size=(n_videos * per, 32), dtype=np.uint8)
    entry = np.repeat(np.arange(1, n_videos + 1, dtype=np.int64), per)
    ids = (entry << FRAME_BITS) | np.tile(np.arange(per, dtype=np.int64), n_videos)
    index = MihIndex(tail_limit=1000, background=False, inline_rows=16)
    index.add(ids, hashes, (entry % 3).astype(np.int32))
    times = np.arange(per, dtype=np.float64)
    videos = {
        int(e): _Video(int(e) % 3, times, np.arange(per, dtype=np.int32), per, 1.0, None)
        for e in range(1, n_videos + 1)
    }
    bits = np.unpackbits(hashes, axis=1)
    queries = []
    for row, flips in [(5, 4), (6, 25), (47, 12), (48, 30), (900, 29), (4000, 10)]:
        b = bits[row].copy()
        b[rng.choice(256, size=flips, replace=False)] ^= 1
        queries.append(np.packbits(b))
    q = np.asarray(queries, dtype=np.uint8)
    full = index.search(q, 31)
    seeds = index.search(q, 16)
    found = set((seeds.ids >> FRAME_BITS).tolist())
    assert found == {1, 3, 201}  # rows 5 (4 bits), 47 (12 bits) and 4000 (10 bits)
    got = _verify_frames(index, q, seeds, videos, 31)
    keep = np.isin(full.ids >> FRAME_BITS, list(found))
    for name in ("query", "ids", "tags", "distances"):
        assert getattr(got, name).tolist() == getattr(full, name)[keep].tolist()
    # More candidate frames than the scan pays for (over 4096 here): the full search itself.
    many = index.search(rng.integers(0, 256, size=(1, 32), dtype=np.uint8), 256)
    got = _verify_frames(index, q, many, videos, 31)
    for name in ("query", "ids", "tags", "distances"):
        assert getattr(got, name).tolist() == getattr(full, name).tolist()
