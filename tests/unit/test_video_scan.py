"""Scanning a video: the same object as for an image (kind, hashes, matches, signals,
decision), signals over sampled frames with injected classifier scores (as the nudity tests
inject them: synthetic frames, no real classifier), container tags and C2PA boxes, the policy's
video facts, and the synchronous length limit."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from dignity.errors import MediaTooLarge
from dignity.matching.banks import BankService, NewEntry
from dignity.matching.engine import MatchEngine, MatchOutcome
from dignity.media import Media
from dignity.policy import BUILTIN_NAMESPACES, fact_checker, facts_of, parse_policy
from dignity.scanning import Scanner
from dignity.settings import Settings
from dignity.signals.base import ClassifierReport
from dignity.signals.c2pa import create as c2pa_checks
from dignity.signals.generators import create as generator_checks
from dignity.signals.runner import SignalSuite
from dignity.storage.db import Database, open_database
from dignity.video.analysis import FrameSampler, _bmff_c2pa, generator_from_tags
from dignity.video.decode import DecodedFrame
from tests.unit.test_video_hostile import MS, _pattern, _steady, _write


class _BrightIsNude:
    """Stands in for a nudity model: a frame whose mean is over 200 scores 0.95, others 0.05."""

    name = "injected"
    signal = "nudity"
    version = "1"

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def classify(self, media: Media) -> ClassifierReport:
        self.seen.append((media.width, media.height))
        bright = float(np.asarray(media.image).mean()) > 200
        return ClassifierReport(0.95 if bright else 0.05, {})


def _half_bright(path: Path, seconds: int = 4) -> Path:
    """A synthetic clip whose second half is a flat bright frame (what the stand-in flags)."""
    times = _steady(seconds)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height = 64, 48
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = MS
        for index, stamp in enumerate(times):
            pixels = _pattern(index) if index < len(times) // 2 else np.full((48, 64, 3), 240)
            frame = av.VideoFrame.from_ndarray(pixels.astype(np.uint8), format="rgb24")
            frame.pts, frame.time_base = stamp, MS
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    yield database
    database.close()


def _scanner(db: Database, tmp_path: Path, suite: SignalSuite, **settings: object) -> Scanner:
    engine = MatchEngine(db)
    engine.load()
    config = Settings(data_dir=tmp_path, nudity_classifier="none").model_copy(update=settings)
    return Scanner(config, engine, suite=suite)


def test_a_video_scan_has_the_image_scan_shape_and_video_facts(
    db: Database, tmp_path: Path
) -> None:
    clip = _half_bright(tmp_path / "clip.mp4")
    clf = _BrightIsNude()
    scanner = _scanner(db, tmp_path, SignalSuite([], [clf]))
    out = scanner.scan(clip).to_dict()
    assert out["kind"] == "video"
    assert out["duration_s"] == pytest.approx(4.0)
    assert [f["frame"] for f in out["vpdq"]] == [0, 25, 50, 75]
    assert [f["timestamp"] for f in out["vpdq"]] == [0.0, 1.0, 2.0, 3.0]
    assert out["partial"] is False
    assert out["matches"] == []
    signals = out["signals"]
    assert signals["nudity"] == 0.95
    video = signals["video"]
    assert video["duration_s"] == pytest.approx(4.0)
    assert 8 <= video["sampled_frames"] <= 16
    assert len(clf.seen) == video["sampled_frames"]
    nudity = video["nudity"]
    assert nudity["max"] == 0.95
    assert nudity["share"] == pytest.approx(0.5, abs=0.15)
    assert nudity["threshold"] == 0.8
    assert signals["classifiers"]["injected"]["frames"] == video["sampled_frames"]
    # The default policy's rules see the max as `nudity`: no AI evidence, so nothing fires.
    assert out["decision"]["action"] == "allow"


def test_policy_rules_on_video_facts(db: Database, tmp_path: Path) -> None:
    text = """
[policy]
name = "video-test"

[[rule]]
id = "mostly-nude"
when = ["nudity.share >= 0.3", "nudity.max >= 0.9"]
action = "review"

[[rule]]
id = "long"
when = ["video.duration_s > 3"]
action = "label"
label = "long video"

[[rule]]
id = "segments"
when = ["match.segments"]
action = "block"
"""
    policy = parse_policy(text, "test.toml", fact_checker(BUILTIN_NAMESPACES))
    engine = MatchEngine(db)
    engine.load()
    settings = Settings(data_dir=tmp_path, nudity_classifier="none")
    scanner = Scanner(settings, engine, suite=SignalSuite([], [_BrightIsNude()]), policy=policy)
    decision = scanner.scan(_half_bright(tmp_path / "clip.mp4")).decision
    assert decision.action == "review"
    assert set(decision.rules) == {"mostly-nude"}
    assert decision.labels == ["long video"]
    facts = facts_of(MatchOutcome(), {"nudity": 0.7})
    assert (facts["nudity.max"], facts["nudity.share"], facts["video.duration_s"]) == (
        0.7,
        None,
        None,
    )
    assert facts["match.segments"] == []


def test_a_banked_video_md5_blocks(db: Database, tmp_path: Path) -> None:
    import hashlib

    clip = _write(tmp_path / "known.mp4", _steady(2))
    banks = BankService(db)
    banks.create_bank("ncii")
    banks.add_entries("ncii", [NewEntry("md5", hashlib.md5(clip.read_bytes()).hexdigest())])
    scanner = _scanner(db, tmp_path, SignalSuite([], []))
    result = scanner.scan(clip.read_bytes())
    assert [(m.bank, m.signal) for m in result.outcome.matches] == [("ncii", "md5")]
    assert result.decision.action == "block"
    assert result.to_dict()["kind"] == "video"
    # The scan log and events read the digests where they read an image's.
    assert result.analysis.hashes.md5 == hashlib.md5(clip.read_bytes()).hexdigest()
    assert result.analysis.hashes.pdq is None


def test_the_sync_limit_refuses_long_videos_from_the_header(db: Database, tmp_path: Path) -> None:
    clip = _write(tmp_path / "long.mp4", [0, 120_000], size=(16, 16))
    scanner = _scanner(db, tmp_path, SignalSuite([], []), video_sync_max_seconds=60)
    with pytest.raises(MediaTooLarge) as caught:
        scanner.scan(clip, sync=True)
    assert caught.value.code == "media.video_too_long_for_sync"
    assert caught.value.http_status == 413
    # Outside a request only DIGNITY_VIDEO_MAX_SECONDS applies.
    assert scanner.scan(clip).to_dict()["duration_s"] == pytest.approx(120, abs=1)


def test_truncated_video_is_scanned_up_to_the_damage(db: Database, tmp_path: Path) -> None:
    clip = _write(tmp_path / "whole.mp4", _steady(4), options={"movflags": "faststart"})
    data = clip.read_bytes()
    scanner = _scanner(db, tmp_path, SignalSuite([], []))
    out = scanner.scan(data[: len(data) * 3 // 5]).to_dict()
    assert out["partial"] is True
    assert out["signals"]["video"]["partial_reason"] == "media.truncated"
    assert out["vpdq"]


def test_animated_gif_is_a_video_and_a_still_gif_an_image(db: Database, tmp_path: Path) -> None:
    frames = [Image.fromarray(_pattern(i)) for i in range(20)]
    moving, still = io.BytesIO(), io.BytesIO()
    frames[0].save(moving, "GIF", save_all=True, append_images=frames[1:], duration=100)
    frames[0].save(still, "GIF")
    scanner = _scanner(db, tmp_path, SignalSuite([], []))
    assert scanner.scan(moving.getvalue()).to_dict()["kind"] == "video"
    image = scanner.scan(still.getvalue()).to_dict()
    assert image["kind"] == "image"
    assert image["pdq"] is not None


def test_generator_tags_are_evidence(db: Database, tmp_path: Path) -> None:
    assert generator_from_tags({"encoder": "Lavf61.7.100"})[1] is None
    assert generator_from_tags({"encoder": "Pikachu Cam"})[1] is None
    data, found = generator_from_tags({"stream:handler_name": "Kling 1.6 VideoHandler"})
    assert data["generator"] == "Kling" and data["field"] == "video:stream:handler_name"
    assert found is not None and found.source == "metadata"
    data, _ = generator_from_tags({"comment": "Generated by Runway Gen-3 Alpha"})
    assert data["generator"] == "Runway"
    # Garbage JSON in a text tag is no evidence and no error.
    assert generator_from_tags({"comment": "{" * 5000})[1] is None

    path = tmp_path / "tagged.mp4"
    with av.open(str(path), "w", format="mp4") as out:
        out.metadata["comment"] = "made with Sora"
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(25):
            frame = av.VideoFrame.from_ndarray(_pattern(index), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    suite = SignalSuite([*generator_checks(Settings()), *c2pa_checks(Settings())], [])
    out_dict = _scanner(db, tmp_path, suite).scan(path).to_dict()
    assert out_dict["signals"]["generator"]["generator"] == "OpenAI Sora"
    assert out_dict["signals"]["ai_evidence"][0]["source"] == "metadata"
    assert out_dict["decision"]["action"] == "label"


def test_c2pa_boxes_are_found_by_walking_the_top_level(tmp_path: Path) -> None:
    plain = _write(tmp_path / "plain.mp4", _steady(1)).read_bytes()
    assert _bmff_c2pa(io.BytesIO(plain)) is False
    assert _bmff_c2pa(io.BytesIO(b"\x1a\x45\xdf\xa3" + bytes(64))) is None
    # A C2PA uuid box with a garbage store: found, handed to c2pa, reported invalid, no crash.
    payload = bytes.fromhex("d8fec3d61b0e483c92975828877ec481") + b"\x00" * 4 + b"junk" * 8
    box = (8 + len(payload)).to_bytes(4, "big") + b"uuid" + payload
    forged = plain + box
    assert _bmff_c2pa(io.BytesIO(forged)) is True
    checks = c2pa_checks(Settings())
    if not checks:
        pytest.skip("c2pa-python is not installed")
    report = checks[0].check_stream("video/mp4", io.BytesIO(forged))  # type: ignore[attr-defined]
    assert report.data["state"] in ("invalid", "none")
    assert not report.evidence
    # A box claiming a size past the end, or zero, ends the walk.
    lying = plain + (2**31).to_bytes(4, "big") + b"free"
    assert _bmff_c2pa(io.BytesIO(lying)) is False


def test_frame_sampler_stays_bounded_and_spread() -> None:
    frame = av.VideoFrame.from_ndarray(np.zeros((600, 800, 3), np.uint8), format="rgb24")

    sampler = FrameSampler(16)
    for index in range(10_000):
        sampler.offer(DecodedFrame(index, None, frame), index / 25)
    assert 8 < len(sampler.kept) <= 16
    times = [t for t, _ in sampler.kept]
    gaps = {round(b - a, 3) for a, b in itertools.pairwise(times)}
    assert len(gaps) == 1  # evenly spread
    assert max(sampler.kept[0][1].shape[:2]) == 512  # scaled down for the classifiers


def test_scanning_metas_fixture_gives_its_vpdq(db: Database, tmp_path: Path) -> None:
    from dignity.video.vpdq import vpdq_hash
    from tests.conftest import shared_fixture

    path = shared_fixture("vpdq", "chair-19-sd-bar.mp4")  # skips visibly when absent
    out = _scanner(db, tmp_path, SignalSuite([], [])).scan(path).to_dict()
    reference = vpdq_hash(path)
    assert [(f["frame"], f["pdq"]) for f in out["vpdq"]] == [
        (f.frame_number, f.pdq_hex) for f in reference.frames
    ]
    assert out["md5"] == reference.md5 and out["duration_s"] == pytest.approx(18.8, abs=0.05)
