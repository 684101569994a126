"""Frame skipping in vPDQ hashing: only the frames hashed (and sampled for signals) are decoded
where the codec allows, with results identical to decoding every frame.

H.264 with B-frames (x264's default, as the corpus encodes) has about half its frames
non-reference: :meth:`dignity.video.decode.VideoReader.frames` with ``wanted`` leaves those
undecoded unless wanted, and falls back to decoding every frame (``SkipNotExact`` then
``rewind``) when the stream is too irregular to be sure of every frame's index. The plain path
is forced here by emptying the set of skippable codecs, so each test compares both.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from bench.video_corpus import Encoding, synthetic_video

import dignity.video.decode as decode
from dignity.errors import MediaTooLarge
from dignity.video.analysis import FrameSampler
from dignity.video.decode import DecodedFrame, open_video
from dignity.video.vpdq import VpdqResult, vpdq_hash
from tests.conftest import shared_fixture

FPS = 24


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Seed 16, as the corpus: scenes PDQ rates highly; 6 s at 24 fps, x264 with B-frames.
    path = tmp_path_factory.mktemp("skip") / "slideshow.mp4"
    return synthetic_video(path, 6.0, size=(320, 176), fps=FPS, seed=16)


@pytest.fixture(scope="module")
def hevc_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # x265 (in PyAV's FFmpeg) with its default B-frames: HEVC's non-reference pictures.
    path = tmp_path_factory.mktemp("skip") / "slideshow-hevc.mp4"
    enc = Encoding(
        codec="libx265", options=(("preset", "ultrafast"), ("x265-params", "log-level=0"))
    )
    return synthetic_video(path, 6.0, size=(320, 176), fps=FPS, seed=16, enc=enc)


def _plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode, "_SKIPPABLE_CODECS", frozenset())


def _same(a: VpdqResult, b: VpdqResult) -> None:
    assert a.frames == b.frames
    assert (a.frames_decoded, a.duration, a.partial, a.md5) == (
        b.frames_decoded,
        b.duration,
        b.partial,
        b.md5,
    )


def test_only_wanted_and_reference_frames_are_decoded(clip: Path) -> None:
    with open_video(clip) as video:
        got = [item.index for item in video.frames(lambda index: index % FPS == 0)]
        total = video.frame_count
    assert total == 6 * FPS
    # Every wanted frame comes out, in order, and about half the others are never decoded.
    assert set(range(0, total, FPS)) <= set(got)
    assert got == sorted(got)
    assert len(got) < 0.75 * total


@pytest.mark.parametrize("seconds_per_hash", [1.0, 0.25, 0.0])
def test_skipping_gives_the_same_hashes_as_decoding_every_frame(
    clip: Path, seconds_per_hash: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = vpdq_hash(clip, seconds_per_hash=seconds_per_hash, dihedral=True)
    _plain(monkeypatch)
    _same(fast, vpdq_hash(clip, seconds_per_hash=seconds_per_hash, dihedral=True))


def test_hevc_skips_and_hashes_the_same(hevc_clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_video(hevc_clip) as video:
        assert video.info.codec == "hevc"
        got = [item.index for item in video.frames(lambda index: index % FPS == 0)]
        assert len(got) < video.frame_count
    fast = vpdq_hash(hevc_clip, seconds_per_hash=0.5)
    _plain(monkeypatch)
    _same(fast, vpdq_hash(hevc_clip, seconds_per_hash=0.5))


def test_meta_sample_videos_hash_the_same_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [shared_fixture("vpdq", f"{n}.mp4") for n in ("chair-19-sd-bar", "pattern-hd-no-bar")]
    fast = [vpdq_hash(p) for p in paths]
    _plain(monkeypatch)
    for p, f in zip(paths, fast, strict=True):
        _same(f, vpdq_hash(p))


def test_a_stream_too_irregular_to_skip_is_decoded_again_in_full(
    clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = vpdq_hash(clip)
    # With no window, B-frames' reordering breaks the ranking assumption mid-stream, after
    # some frames were hashed: the reader starts again and decodes everything.
    monkeypatch.setattr(decode, "_RANK_WINDOW", 0)
    rewinds: list[int] = []
    rewind = decode.VideoReader.rewind

    def counting(self: decode.VideoReader) -> None:
        rewinds.append(1)
        rewind(self)

    monkeypatch.setattr(decode.VideoReader, "rewind", counting)
    _same(vpdq_hash(clip), expected)
    assert rewinds == [1]


def test_the_signal_sampler_keeps_the_same_frames_and_needs_fewer(
    clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def sample(wants: bool) -> tuple[list[float], int]:
        sampler = FrameSampler(4)
        offered: list[int] = []

        def offer(item: DecodedFrame, timestamp: float) -> None:
            offered.append(item.index)
            sampler.offer(item, timestamp)

        vpdq_hash(clip, on_frame=offer, on_frame_wants=sampler.wants if wants else None)
        return [t for t, _ in sampler.kept], len(offered)

    kept, offered = sample(wants=True)
    all_kept, all_offered = sample(wants=False)
    assert kept == all_kept and len(kept) >= 3
    assert all_offered == 6 * FPS and offered < 0.75 * all_offered
    # Decoding that starts again from the first frame (the fallback above, after frames were
    # offered) starts the sample again: two passes sample as one.
    sampler = FrameSampler(4)
    vpdq_hash(clip, on_frame=sampler.offer, on_frame_wants=sampler.wants)
    vpdq_hash(clip, on_frame=sampler.offer)  # the fallback decodes every frame
    assert [t for t, _ in sampler.kept] == all_kept


def test_the_decode_time_limit_holds_while_skipping(clip: Path) -> None:
    with open_video(clip, decode_seconds=0.05) as video:
        frames = video.frames(lambda index: index % FPS == 0)
        next(frames)
        time.sleep(0.1)
        with pytest.raises(MediaTooLarge) as timeout:
            list(frames)
    assert timeout.value.code == "media.decode_timeout"


def test_frames_before_an_idr_frame_after_the_last_wanted_one_are_left_out(
    clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def decoded() -> list[int]:
        with open_video(clip) as video:
            return [item.index for item in video.frames(lambda index: index % FPS == 0)]

    with_idr = decoded()
    monkeypatch.setattr(decode, "_avcc_nal_length", lambda stream: 0)
    without = decoded()
    # The wanted frames come out either way; runs of reference frames nothing wanted needs
    # (before an IDR frame, and at the end) are not decoded at all.
    assert set(range(0, 6 * FPS, FPS)) <= set(with_idr) < set(without)
    assert max(with_idr) == 5 * FPS


def test_held_packets_are_bounded_in_bytes_too(clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = vpdq_hash(clip, seconds_per_hash=0.5)
    # With no room to hold packets, each is sent as soon as it is ranked: fewer runs can be
    # left out, and the hashes stay the same.
    monkeypatch.setattr(decode, "_HOLD_BYTES", 0)
    with open_video(clip) as video:
        got = [item.index for item in video.frames(lambda index: index % FPS == 0)]
        assert len(got) < video.frame_count
    _same(vpdq_hash(clip, seconds_per_hash=0.5), expected)
