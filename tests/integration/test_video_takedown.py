"""Videos in the takedown workflow, on an SQLite file and on PostgreSQL.

* A scanned video is logged by MD5 / SHA-256 with its vPDQ frames (``scan_video``), which go
  with their scan when it is purged.
* The sweep of a removed video finds its earlier copies: the same bytes (``copy_exact``), a
  re-encode at another size, codec and frame rate, a 4 s clip inside a longer compilation, and
  a mirrored copy (through the dihedral variants of either side), each ``copy_video`` with the
  matched time ranges; an unrelated video and a 2 s clip are not copies.
* A removed image finds the video that shows it (``copy_frame``, with the frame's time).
* A takedown request naming a video removes it and its copies, the events carrying the time
  ranges; a video never scanned is fetched from the platform over HTTP into a temporary file,
  hashed with vPDQ and swept like a scanned one; a video over the byte limit is removed by id.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dignity.hashing.signals import ImageHashes
from dignity.samples import encode
from dignity.scanning import Analysis
from dignity.settings import Settings
from dignity.storage.db import Database
from dignity.takedown.clock import FixedClock
from dignity.takedown.models import ScanRecord, ScanVideo
from dignity.takedown.scanlog import HashSet, VideoFrames, hashset_of
from dignity.takedown.videos import hash_video
from dignity.video.vpdq import VpdqResult
from tests.integration.test_removal import World, _Platform, events, make_request, subscribe
from tests.videos import film_frame, mirrored, write_video


def with_dihedral(path: Path, settings: Settings) -> VpdqResult:
    """The video's vPDQ with each frame's 8 dihedral variants (what a scan computes)."""
    result = hash_video(path, settings)
    assert all(f.dihedral is not None for f in result.frames)
    return result


def strip(result: VpdqResult) -> VpdqResult:
    """The same result without dihedral variants."""
    return replace(result, frames=tuple(replace(f, dihedral=None) for f in result.frames))


class Videos:
    """The films of these tests, written once per module into a temporary directory."""

    def __init__(self, directory: Path) -> None:
        d = directory
        self.orig = write_video(d / "orig.mp4", [(1, 0, 12)])
        self.same = d / "same.mp4"
        self.same.write_bytes(self.orig.read_bytes())
        # Another size, codec, container and frame rate.
        self.reencoded = write_video(
            d / "reencoded.mkv", [(1, 0, 12)], fps=15, size=(192, 144), codec="mpeg4"
        )
        # 4 s of the original (seconds 3 to 7) inside 14 s of other footage.
        self.compilation = write_video(d / "compilation.mp4", [(7, 0, 5), (1, 3, 7), (8, 0, 5)])
        self.mirror = write_video(d / "mirror.mp4", [(1, 0, 12)], transform=mirrored)
        self.short = write_video(d / "short.mp4", [(9, 0, 4), (1, 5, 7), (9, 4, 8)])
        self.other = write_video(d / "other.mp4", [(2, 0, 12)])
        self.still = encode(film_frame(1, 5.0).resize((320, 240)), "JPEG", quality=92)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Videos:
    return Videos(Path(tmp_path_factory.mktemp("videos")))


def scan_video(world: World, video: VpdqResult, content_id: str) -> int:
    """A video scan through the scanner's matching half and the scan log, as /v1/scan does."""
    analysis = Analysis(
        ImageHashes(None, video.md5, video.sha256, video.width, video.height, "mp4"),
        {},
        kind="video",
        video=video,
    )
    world.engine.refresh()
    return world.log.record(world.scanner.finish(analysis), None, content_id=content_id)


@pytest.fixture
def world(db: Database, settings: Settings) -> World:
    return World(db, settings)


def test_a_scanned_video_is_logged_with_its_frames(
    db: Database, settings: Settings, videos: Videos
) -> None:
    clock = FixedClock()
    w = World(db, settings, clock)
    video = with_dihedral(videos.orig, settings)
    scan_id = scan_video(w, video, "v-1")
    got = w.log.get(scan_id)
    assert got["kind"] == "video" and got["video"] == {"duration": 12.0, "frames": 12}
    assert got["hashes"]["md5"] == video.md5 and got["hashes"]["pdq"] is None
    assert got["detail"]["media"]["kind"] == "video"
    with db.session() as s:
        row = s.get(ScanVideo, scan_id)
        assert row is not None and row.frame_count == 12
        assert len(row.frames) == 12 * 41 and row.dihedral is not None
        assert len(row.dihedral) == 12 * 7 * 32
        record = s.get(ScanRecord, scan_id)
        assert record is not None
        query = hashset_of(s, record)
    assert query.video is not None
    assert query.video.hashes == bytes.fromhex("".join(f.pdq_hex for f in video.frames))
    assert query.video.times == tuple(round(f.timestamp, 3) for f in video.frames)
    # Purged with its scan (the frames have no life of their own).
    clock.advance(timedelta(days=settings.scan_log_retention_days + 1))
    assert w.log.purge() == 1
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(ScanVideo)) == 0


def test_the_sweep_finds_copies_of_a_video_with_their_segments(
    db: Database, settings: Settings, videos: Videos
) -> None:
    w = World(db, settings)
    plain = {
        name: hash_video(getattr(videos, name), settings)
        for name in ("same", "reencoded", "compilation", "short", "other")
    }
    for name, video in plain.items():
        scan_video(w, video, f"up-{name}")
    mirror = with_dihedral(videos.mirror, settings)
    scan_video(w, strip(mirror), "up-mirror")  # logged without variants: the query's find it
    scan_video(w, hash_video(videos.orig, settings), "removed")

    query = HashSet(
        None,
        *_digests(videos.orig),
        None,
        VideoFrames.from_vpdq(with_dihedral(videos.orig, settings)),
    )
    found = {c.content_id: c for c in w.log.find_copies([query], exclude_content_ids={"removed"})}
    assert set(found) == {"up-same", "up-reencoded", "up-compilation", "up-mirror"}, found
    assert found["up-same"].reason == "copy_exact"
    for name in ("up-reencoded", "up-compilation", "up-mirror"):
        assert found[name].reason == "copy_video", found[name]
    whole = found["up-reencoded"].segments
    # The whole length (a frame or two the re-encode pushed over the threshold may split it).
    assert whole[0].query_start <= 1.0 and whole[-1].query_end >= 10.0, whole
    assert sum(seg.seconds for seg in whole) >= 8.0, whole
    (clip,) = found["up-compilation"].segments
    # Seconds 3-6 of the removed video are seconds 5-8 of the compilation.
    assert (clip.query_start, clip.query_end) == (3.0, 6.0)
    assert (clip.entry_start, clip.entry_end) == (5.0, 8.0)
    assert found["up-compilation"].query_match_percent is not None
    assert found["up-compilation"].query_match_percent < 80  # HMA's rule alone misses it
    assert found["up-mirror"].orientation in ("flipx", "flipy"), found["up-mirror"]
    evidence = found["up-compilation"].to_dict()
    assert evidence["segments"] == [
        {"source_start": 3.0, "source_end": 6.0, "copy_start": 5.0, "copy_end": 8.0}
    ]

    # Without the query's variants, the mirrored copy's own variants find it.
    w2 = World(db, settings)
    scan_video(w2, mirror, "up-mirror-2")
    bare = HashSet(None, "0" * 32, "0" * 64, None, VideoFrames.from_vpdq(plain["same"]))
    again = {c.content_id: c for c in w2.log.find_copies([bare])}
    assert "up-mirror-2" in again and again["up-mirror-2"].reason == "copy_video", again
    assert "up-other" not in again and "up-short" not in again, again


def _digests(path: Path) -> tuple[str, str]:
    import hashlib

    data = path.read_bytes()
    return hashlib.md5(data, usedforsecurity=False).hexdigest(), hashlib.sha256(data).hexdigest()


def test_a_removed_image_finds_the_video_that_shows_it(
    db: Database, world: World, videos: Videos, settings: Settings
) -> None:
    scan_video(world, hash_video(videos.compilation, settings), "up-compilation")
    scan_video(world, hash_video(videos.other, settings), "up-other")
    image_scan = world.scan(videos.still, "photo-1")
    with db.session() as s:
        row = s.get(ScanRecord, image_scan)
        assert row is not None
        query = hashset_of(s, row)
    found = world.log.find_copies([query], exclude_content_ids={"photo-1"})
    assert [(c.content_id, c.reason) for c in found] == [("up-compilation", "copy_frame")]
    # Second 5 of film 1 is second 7 of the compilation.
    assert found[0].timestamp == 7.0 and found[0].distance <= settings.sweep_pdq_threshold


def test_a_removed_video_finds_a_still_of_it_posted_as_an_image(
    db: Database, world: World, videos: Videos, settings: Settings
) -> None:
    world.scan(videos.still, "photo-1")  # second 5 of the film, as a picture
    world.scan(encode(film_frame(2, 5.0), "JPEG", quality=92), "photo-2")  # another film
    query = HashSet(
        None, *_digests(videos.orig), None, VideoFrames.from_vpdq(hash_video(videos.orig, settings))
    )
    found = world.log.find_copies([query])
    assert [(c.content_id, c.reason) for c in found] == [("photo-1", "copy_still")]
    assert found[0].source_timestamp == 5.0
    assert found[0].to_dict()["source_timestamp"] == 5.0
    assert world.log.find_copies([query], stills=False) == []


def test_a_takedown_of_a_video_removes_its_copies_with_the_time_ranges(
    db: Database, world: World, videos: Videos, settings: Settings
) -> None:
    scan_video(world, hash_video(videos.compilation, settings), "up-compilation")
    scan_video(world, hash_video(videos.reencoded, settings), "up-reencoded")
    scan_video(world, hash_video(videos.other, settings), "up-other")
    scan_video(world, hash_video(videos.orig, settings), "reported-video")
    subscribe(db)
    summary = world.removals.remove_request(make_request(db, ["reported-video"]), actor="rv")
    got = {r.content_id: r for r in summary.removals}
    assert set(got) == {"reported-video", "up-compilation", "up-reencoded"}
    assert got["up-compilation"].reason == "copy_video"
    assert got["up-compilation"].to_dict()["segments"][0]["copy_start"] == 5.0
    removes = {e["content_id"]: e for e in events(db, "content.remove")}
    assert removes["up-compilation"]["segments"] == [
        {"source_start": 3.0, "source_end": 6.0, "copy_start": 5.0, "copy_end": 8.0}
    ]
    assert "segments" not in removes["reported-video"]
    # The reported video's bytes are blocked: the takedown bank holds its MD5 and SHA-256.
    again = hash_video(videos.orig, settings)
    analysis = Analysis(
        ImageHashes(None, again.md5, again.sha256, again.width, again.height, "mp4"),
        {},
        kind="video",
        video=again,
    )
    world.engine.refresh()
    assert world.scanner.finish(analysis).decision.action == "block"
    statements = {r.content_id: r.statement for r in summary.removals}
    assert statements["up-compilation"]


def test_a_never_scanned_video_is_fetched_hashed_and_swept(
    db: Database, settings: Settings, videos: Videos
) -> None:
    platform = _Platform(
        {
            "fresh-video": videos.orig.read_bytes(),
            "huge-video": videos.reencoded.read_bytes(),
        }
    )
    try:
        configured = settings.model_copy(
            update={"preview_url_template": platform.base + "/content/{content_id}"}
        )
        w = World(db, configured)
        scan_video(w, hash_video(videos.compilation, settings), "up-compilation")
        summary = w.removals.remove_request(make_request(db, ["fresh-video"]), actor="rv")
    finally:
        platform.server.shutdown()
        platform.server.server_close()
    got = {r.content_id: r.reason for r in summary.removals}
    assert got == {"fresh-video": "reported", "up-compilation": "copy_video"}
    with db.session() as s:
        row = s.scalars(select(ScanRecord).where(ScanRecord.content_id == "fresh-video")).one()
        assert row.decision == "fetched" and row.md5 == _digests(videos.orig)[0]
        frames = s.get(ScanVideo, row.id)
        assert frames is not None and frames.frame_count == 12
    assert json.loads(row.detail)["media"]["kind"] == "video"


def test_frames_pack_and_unpack() -> None:
    frames = VideoFrames(
        numbers=(0, 30, 60),
        times=(0.0, 1.001, 2.5),
        qualities=(100, 40, 77),
        hashes=bytes(range(32)) * 3,
        dihedral=None,
        duration=3.0,
    )
    back = VideoFrames.unpack(frames.pack(), None, 3.0)
    assert back == frames
    assert back.step == pytest.approx(1.001) or back.step == pytest.approx(1.499)
    assert back.usable().tolist() == [0, 2]
    # A damaged variants column is dropped, the originals still sweep.
    assert VideoFrames.unpack(frames.pack(), b"\0" * 5, 3.0).dihedral is None
    assert len(frames.pack()) == 3 * 41


def test_fetched_media_streams_videos_within_their_own_limit(
    settings: Settings, videos: Videos, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dignity.errors import DignityError
    from dignity.takedown import content

    video = videos.orig.read_bytes()
    platform = _Platform({"clip": video, "photo": videos.still})
    try:
        configured = settings.model_copy(
            update={
                "preview_url_template": platform.base + "/content/{content_id}",
                "max_bytes": len(videos.still) - 1,  # the photo is one byte too many
            }
        )
        monkeypatch.setattr(content, "video_max_bytes", lambda _: len(video))
        with content.fetched_media(configured, "clip") as got:
            assert got.kind == "video" and got.size == len(video)
            assert got.read() == video
            path = got.path
        assert not path.exists()  # fetched media is never kept
        with pytest.raises(DignityError) as err, content.fetched_media(configured, "photo"):
            pass
        assert err.value.code == "url.too_large"
        monkeypatch.setattr(content, "video_max_bytes", lambda _: len(video) - 1)
        with pytest.raises(DignityError) as err, content.fetched_media(configured, "clip"):
            pass
        assert err.value.code == "url.too_large"
    finally:
        platform.server.shutdown()
        platform.server.server_close()
