"""Video entries in banks and the match engine, on a real database (SQLite file; PostgreSQL
where DIGNITY_TEST_POSTGRES_URL is set): a vpdq entry keeps its frames in entry_frames (gone
with the entry), matches by its frames (HMA's percentages, segments, orientations) and by its
video MD5, and keeps doing so through refreshes, withdrawals and an index snapshot. Frames are
random 256-bit hashes: what matters here is the bookkeeping, not the pictures."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dignity.errors import HashError, ImportFormatError
from dignity.hashing.pdq import DIHEDRAL_NAMES
from dignity.matching import BankService, MatchEngine, NewEntry
from dignity.storage.db import Database
from dignity.storage.models import EntryFrame
from dignity.video.formats import frames_to_json, vpdq_digest, vpdq_pytx_json
from dignity.video.vpdq import VpdqFrame

MD5 = "0123456789abcdef" * 2


def _hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def _flip(value: str, bits: int, rng: random.Random) -> str:
    v = int(value, 16)
    for b in rng.sample(range(256), bits):
        v ^= 1 << b
    return f"{v:064x}"


def _video(n: int, seed: int, quality: int = 90) -> tuple[VpdqFrame, ...]:
    rng = random.Random(seed)
    return tuple(VpdqFrame(i * 25, float(i), _hex(rng), quality) for i in range(n))


def _frame_rows(db: Database) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(EntryFrame)) or 0


def _vpdq(m: list[object]) -> list[object]:
    return [x for x in m if getattr(x, "signal", None) == "vpdq"]


@pytest.fixture
def banked(db: Database) -> tuple[BankService, tuple[VpdqFrame, ...], int]:
    svc = BankService(db)
    svc.create_bank("videos")
    frames = _video(20, 1)
    res = svc.add_entries("videos", [NewEntry("vpdq", "", frames=frames, video_md5=MD5.upper())])
    return svc, frames, res.added[0]


def test_entry_keeps_frames_and_they_go_with_it(
    db: Database, banked: tuple[BankService, tuple[VpdqFrame, ...], int]
) -> None:
    svc, frames, eid = banked
    (entry,) = svc.list_entries("videos")
    assert (entry.signal, entry.value, entry.video_md5) == ("vpdq", vpdq_digest(frames), MD5)
    assert entry.to_dict()["video_md5"] == MD5
    assert _frame_rows(db) == 20
    # The same frames again are the same entry.
    again = svc.add_entries("videos", [NewEntry("vpdq", vpdq_digest(frames), frames=frames)])
    assert again.already_active == [eid] and _frame_rows(db) == 20
    svc.delete_entries("videos", [eid])
    assert _frame_rows(db) == 0
    svc.add_entries("videos", [NewEntry("vpdq", "", frames=frames)])
    svc.delete_bank("videos")
    assert _frame_rows(db) == 0


def test_bad_video_entries_write_nothing(
    db: Database, banked: tuple[BankService, tuple[VpdqFrame, ...], int]
) -> None:
    svc = banked[0]
    with pytest.raises(HashError):
        svc.add_entries("videos", [NewEntry("vpdq", "a" * 64)])  # no frames
    with pytest.raises(HashError):
        svc.add_entries("videos", [NewEntry("vpdq", "a" * 64, frames=_video(3, 2))])  # digest
    good = json.dumps({"signal": "vpdq", "frames": frames_to_json(_video(4, 3))})
    bad = json.dumps({"signal": "vpdq", "frames": [{"frame": 0, "pdq": "zz", "quality": 1}]})
    with pytest.raises(ImportFormatError) as e:
        svc.import_lines("videos", [good, bad])
    assert e.value.detail["line"] == 2
    assert _frame_rows(db) == 20 and len(svc.list_entries("videos")) == 1


def test_import_export_round_trip(
    db: Database, banked: tuple[BankService, tuple[VpdqFrame, ...], int]
) -> None:
    svc, frames, _ = banked
    svc.add_entries("videos", [NewEntry("video_md5", "f" * 32)])
    jsonl = list(svc.export_lines("videos"))
    text = list(svc.export_lines("videos", "text"))
    assert json.loads(jsonl[0])["frames"] == frames_to_json(frames)
    assert text[0] == f"vpdq {vpdq_pytx_json(frames)}"
    assert text[1] == f"video_md5 {MD5}" and text[2] == "video_md5 " + "f" * 32
    svc.create_bank("copy")
    svc.create_bank("copy-text")
    assert svc.import_lines("copy", jsonl).to_dict()["added"] == 2
    assert next(iter(svc.export_lines("copy"))).count(vpdq_digest(frames)) == 1
    # py-tx text has no frame numbers: the frames are renumbered, so it is its own entry.
    assert svc.import_lines("copy-text", text).to_dict()["added"] == 3
    (copied,) = [e for e in svc.list_entries("copy") if e.signal == "vpdq"]
    assert copied.video_md5 == MD5


def test_engine_matches_videos(
    db: Database, banked: tuple[BankService, tuple[VpdqFrame, ...], int]
) -> None:
    svc, frames, eid = banked
    rng = random.Random(7)
    image = frames[7].pdq_hex
    img_id = svc.add_entries("videos", [NewEntry("pdq", _flip(image, 4, rng))]).added[0]
    engine = MatchEngine(db)
    engine.load()

    # The same video re-encoded: every frame a few bits off.
    copy = tuple(
        VpdqFrame(f.frame_number, f.timestamp, _flip(f.pdq_hex, 5, rng), 80) for f in frames
    )
    out = engine.match_frames(copy, md5="9" * 32)
    (video,) = _vpdq(out.matches)
    assert (video.entry_id, video.query_match_percent, video.compared_match_percent) == (
        eid,
        100.0,
        100.0,
    )
    assert video.segments and video.segments[0].query_start == 0.0
    found = {(m.signal, m.entry_id) for m in out.matches}
    assert ("pdq", img_id) in found  # frame 7 is the banked image
    (img,) = [m for m in out.matches if m.signal == "pdq"]
    assert img.timestamp == 7.0 and img.to_dict()["timestamp"] == 7.0
    assert "timestamp" not in video.to_dict() and video.to_dict()["query_match_percent"] == 100.0

    # The file itself: by its MD5 too.
    by_md5 = engine.match_frames(copy[:1], md5=MD5)
    assert ("video_md5", eid) in {(m.signal, m.entry_id) for m in by_md5.matches}

    # A 5 s clip of it inside a 60 s video of other footage: far under 80%, found as a segment.
    other = _video(60, 99)
    clip = [*other[:30], *copy[10:15], *other[35:]]
    mixed = tuple(VpdqFrame(i * 25, float(i), f.pdq_hex, 90) for i, f in enumerate(clip))
    (seg_match,) = _vpdq(engine.match_frames(mixed).matches)
    assert seg_match.query_match_percent is not None and seg_match.query_match_percent < 10
    (seg,) = seg_match.segments
    assert (seg.query_start, seg.query_end, seg.entry_start, seg.entry_end) == (30, 34, 10, 14)
    # Two frames is no segment, and 2 of 60 frames is no match.
    short = tuple(
        VpdqFrame(i * 25, float(i), f.pdq_hex, 90)
        for i, f in enumerate([*other[:30], *copy[10:12], *other[32:]])
    )
    assert not _vpdq(engine.match_frames(short).matches)
    # Unrelated video: nothing.
    assert not engine.match_frames(_video(30, 1234)).matches

    # Low-quality query frames are left out, with a note.
    dull = tuple(VpdqFrame(f.frame_number, f.timestamp, f.pdq_hex, 10) for f in copy)
    nothing = engine.match_frames(dull)
    assert not nothing.matches and "quality below" in nothing.notes[0]


def test_mirrored_frames_match_through_their_dihedral_hashes(
    db: Database, banked: tuple[BankService, tuple[VpdqFrame, ...], int]
) -> None:
    _, frames, eid = banked
    rng = random.Random(3)
    # A mirrored copy: its own hashes differ; its "flipx" variant is the original's hash.
    flip = DIHEDRAL_NAMES.index("flipx")
    mirrored = []
    for f in frames:
        variants = [bytes.fromhex(_hex(rng)) for _ in DIHEDRAL_NAMES]
        variants[flip] = bytes.fromhex(f.pdq_hex)
        mirrored.append(
            VpdqFrame(f.frame_number, f.timestamp, variants[0].hex(), 90, b"".join(variants))
        )
    engine = MatchEngine(db)
    engine.load()
    (m,) = engine.match_frames(mirrored).matches
    assert (m.entry_id, m.transform, m.query_match_percent) == (eid, "flipx", 100.0)
    assert m.to_dict()["transform"] == "flipx"
    assert not engine.match_frames(mirrored, dihedral=False).matches


def test_frames_follow_withdrawal_refresh_and_snapshot(
    db: Database, banked: tuple[BankService, tuple[VpdqFrame, ...], int], tmp_path: Path
) -> None:
    svc, frames, eid = banked
    snap = tmp_path / "index"
    svc.add_entries("videos", [NewEntry("pdq", _hex(random.Random(5)))])
    engine = MatchEngine(db, snapshot_dir=snap)
    engine.load()
    engine.wait_for_snapshot()
    assert _vpdq(engine.match_frames(frames).matches)
    svc.withdraw("videos", [eid])
    engine.refresh()
    assert not engine.match_frames(frames, md5=MD5).matches
    second = svc.add_entries("videos", [NewEntry("vpdq", "", frames=_video(10, 8))]).added[0]
    svc.add_entries("videos", [NewEntry("vpdq", "", frames=frames)])  # reactivated
    engine.refresh()
    assert {m.entry_id for m in _vpdq(engine.match_frames(frames).matches)} == {eid}
    assert {m.entry_id for m in _vpdq(engine.match_frames(_video(10, 8)).matches)} == {second}
    # A restart from the snapshot (taken before these changes) sees the same.
    restarted = MatchEngine(db, snapshot_dir=snap)
    restarted.load()
    assert restarted.loaded_from_snapshot
    assert {m.entry_id for m in _vpdq(restarted.match_frames(frames).matches)} == {eid}
    assert restarted.match_frames(frames[:1], md5=MD5).matches
    # A bank's rule: 100% of the query's frames required, and no segment shorter than 30 s.
    svc.update_bank("videos", vpdq_query_percent=100, vpdq_min_segment_s=30)
    restarted.refresh()
    half = (*frames[:10], *_video(10, 77))
    assert not _vpdq(restarted.match_frames(half).matches)
    # By py-tx's vpdq JSON, as HMA's /m/lookup gives it.
    hits = restarted.match_hashes([("vpdq", vpdq_pytx_json(frames))]).matches
    assert {m.entry_id for m in _vpdq(hits)} == {eid}
