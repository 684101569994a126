"""Letterboxed copies of banked videos, end to end through a real database and the match
engine: a copy with bars added, and a copy of a barred original with its bars cut off, are
both found (raw frames against the banked trimmed ones, trimmed against raw), while unrelated
videos, barred or not, match nothing; the takedown copy sweep over the scan log finds them the
same way. The trimmed hashes stay out of what is exported. Videos
are small synthetic ones (benign generated landscapes, tests/video_samples.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from dignity.matching import BankService, MatchEngine, NewEntry
from dignity.matching.banks import read_frames
from dignity.settings import Settings
from dignity.storage.db import Database
from dignity.storage.models import EntryFrame
from dignity.takedown.models import ScanVideo
from dignity.takedown.scanlog import HashSet, VideoFrames
from dignity.video.vpdq import VpdqResult, vpdq_hash
from tests.video_samples import write_video


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, VpdqResult]:
    d = tmp_path_factory.mktemp("letterbox")
    paths = {
        "plain": write_video(d / "plain.mp4", [(1, 10)]),
        "barred": write_video(d / "barred.mp4", [(2, 10)], bars=40),
        # Bars added to the plain original, in a colour; the barred one's bars cut off.
        "bars-added": write_video(d / "added.mp4", [(1, 10)], bars=48, bar_colour=(30, 30, 90)),
        "bars-removed": write_video(d / "removed.mp4", [(2, 10)], codec="mpeg4"),
        "unrelated": write_video(d / "unrelated.mp4", [(7, 10)]),
        "unrelated-barred": write_video(d / "unrelated-barred.mp4", [(8, 10)], bars=40),
    }
    return {name: vpdq_hash(p, dihedral=True) for name, p in paths.items()}


def test_letterboxed_copies_match_and_unrelated_do_not(
    db: Database, videos: dict[str, VpdqResult]
) -> None:
    svc = BankService(db)
    svc.create_bank("videos")
    ids: dict[int, str] = {}
    for name in ("plain", "barred"):
        v = videos[name]
        res = svc.add_entries("videos", [NewEntry("vpdq", "", frames=v.frames, video_md5=v.md5)])
        ids[res.added[0]] = name
    engine = MatchEngine(db)
    engine.load()

    def found(name: str) -> set[str]:
        outcome = engine.match_video(videos[name], dihedral=True)
        return {ids[m.entry_id] for m in outcome.matches if m.signal == "vpdq"}

    assert found("bars-added") == {"plain"}
    assert found("bars-removed") == {"barred"}
    assert found("unrelated") == set()
    assert found("unrelated-barred") == set()

    # Only the barred video's frames have trimmed hashes stored; exports read raw frames.
    with db.session() as s:
        stored = {
            (eid, trimmed is not None)
            for eid, trimmed in s.execute(select(EntryFrame.entry_id, EntryFrame.trimmed_pdq))
        }
        frames = read_frames(s, list(ids))
    by_name = {name: eid for eid, name in ids.items()}
    assert stored == {(by_name["plain"], False), (by_name["barred"], True)}
    assert all(f.trimmed is None for fs in frames.values() for f in fs)
    assert [f.pdq_hex for f in frames[by_name["barred"]]] == [
        f.pdq_hex for f in videos["barred"].frames
    ]


def test_without_trimmed_hashes_letterboxed_copies_are_missed(
    db: Database, videos: dict[str, VpdqResult]
) -> None:
    # The case the trimmed hashes are for: raw frames alone do not meet.
    from dataclasses import replace

    svc = BankService(db)
    svc.create_bank("videos")
    raw = {n: tuple(replace(f, trimmed=None) for f in v.frames) for n, v in videos.items()}
    svc.add_entries("videos", [NewEntry("vpdq", "", frames=raw["plain"])])
    engine = MatchEngine(db)
    engine.load()
    outcome = engine.match_frames(raw["bars-added"], dihedral=True)
    assert not [m for m in outcome.matches if m.signal == "vpdq"]


def test_trimmed_frames_follow_refresh_and_withdrawal(
    db: Database, videos: dict[str, VpdqResult]
) -> None:
    svc = BankService(db)
    svc.create_bank("videos")
    engine = MatchEngine(db)
    engine.load()
    barred = videos["barred"].frames
    eid = svc.add_entries("videos", [NewEntry("vpdq", "", frames=barred)]).added[0]
    engine.refresh()  # read through the index log, not a full load

    def hits() -> list[int]:
        outcome = engine.match_video(videos["bars-removed"], dihedral=True)
        return [m.entry_id for m in outcome.matches if m.signal == "vpdq"]

    assert hits() == [eid]
    svc.withdraw("videos", [eid])
    engine.refresh()
    assert hits() == []
    svc.add_entries("videos", [NewEntry("vpdq", "", frames=barred)])  # reactivated
    engine.refresh()
    assert hits() == [eid]


def test_the_copy_sweep_finds_letterboxed_copies(
    db: Database, settings: Settings, videos: dict[str, VpdqResult]
) -> None:
    # The scan log keeps each frame's trimmed hash too: a removed video finds a logged copy
    # with bars added (logged trimmed vs query raw) and one with its bars cut off (query
    # trimmed vs logged raw), and no unrelated video.
    from tests.integration.test_removal import World
    from tests.integration.test_video_takedown import scan_video

    w = World(db, settings)
    for name in ("bars-added", "bars-removed", "unrelated", "unrelated-barred"):
        scan_video(w, videos[name], f"up-{name}")
    with db.session() as s:
        logged = dict(s.execute(select(ScanVideo.scan_id, ScanVideo.trimmed)).all())
    assert sum(t is not None for t in logged.values()) == 2  # bars-added, unrelated-barred

    def swept(name: str) -> set[str]:
        query = HashSet(None, "0" * 32, "0" * 64, None, VideoFrames.from_vpdq(videos[name]))
        return {c.content_id for c in w.log.find_copies([query]) if c.reason == "copy_video"}

    assert swept("plain") == {"up-bars-added"}
    assert swept("barred") == {"up-bars-removed"}
