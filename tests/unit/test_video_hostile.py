"""Bad and hostile videos, built with PyAV from synthetic frames (flat colours and gradients):
each gives a clear ``media.*`` error within the limits, or the frames read before the damage
marked partial; plus variable frame rate, broken timestamps, animations, dihedral variants and
telling videos from images by their first bytes. Every file is a few KB and decodes in
milliseconds, so the limits are shown to bite before any real work is done."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av.video.stream import VideoStream
from numpy.typing import NDArray
from PIL import Image

from dignity.errors import MediaRefused, MediaTooLarge
from dignity.hashing.pdq import DIHEDRAL_NAMES
from dignity.video import is_animation, looks_like_video
from dignity.video.decode import DecodedFrame, open_video
from dignity.video.vpdq import _timestamp, vpdq_hash

MS = Fraction(1, 1000)


def _pattern(index: int, size: tuple[int, int] = (64, 48)) -> NDArray[np.uint8]:
    """A benign synthetic picture: a gradient with a bright block that moves with ``index``."""
    width, height = size
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)
    base = (x[None, :] * 0.6 + y[:, None] * 0.4).astype(np.uint8)
    frame = np.stack([base, base[::-1], np.roll(base, index * 3, axis=1)], axis=2).copy()
    left = (index * 5) % max(1, width - 16)
    frame[8:24, left : left + 16] = 255
    return frame


def _write(
    path: Path,
    times_ms: Sequence[int],
    *,
    fmt: str = "mp4",
    codec: str = "mpeg4",
    size: tuple[int, int] = (64, 48),
    options: dict[str, str] | None = None,
    extra_streams: int = 0,
    mirror: bool = False,
) -> Path:
    with av.open(str(path), "w", format=fmt, options=options or {}) as out:
        stream = out.add_stream(codec, rate=25)
        assert isinstance(stream, VideoStream)
        stream.width, stream.height = size
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.codec_context.time_base = MS
        extras = []
        for _ in range(extra_streams):
            extra = out.add_stream("mpeg4", rate=25)
            assert isinstance(extra, VideoStream)
            extra.width, extra.height = 16, 16
            extra.pix_fmt = "yuv420p"
            extra.codec_context.time_base = MS
            extras.append(extra)
        for index, stamp in enumerate(times_ms):
            pixels = _pattern(index, size)
            if mirror:
                pixels = np.ascontiguousarray(pixels[:, ::-1])
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = stamp, MS
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        for extra in extras:
            tiny = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
            tiny.pts, tiny.time_base = 0, MS
            for packet in [*extra.encode(tiny), *extra.encode()]:
                out.mux(packet)
    return path


def _steady(seconds: float, fps: int = 25) -> list[int]:
    return [round(i * 1000 / fps) for i in range(round(seconds * fps))]


def test_a_ten_hour_black_video_of_a_few_kb_is_refused_by_its_header(tmp_path: Path) -> None:
    # Two frames ten hours apart: the container says 36 000 s; nothing is decoded.
    path = _write(tmp_path / "long.mp4", [0, 36_000_000], size=(16, 16))
    assert path.stat().st_size < 10_000
    started = time.perf_counter()
    with pytest.raises(MediaTooLarge) as caught:
        open_video(path)
    assert caught.value.code == "media.too_long"
    assert caught.value.detail["seconds"] == pytest.approx(36_000, abs=1)
    assert time.perf_counter() - started < 1.0


def test_a_long_video_whose_header_says_nothing_is_stopped_at_the_limit(tmp_path: Path) -> None:
    # A live Matroska has no duration: the frame past the limit stops decoding.
    path = _write(
        tmp_path / "live.mkv", [0, 1000, 36_000_000], fmt="matroska", options={"live": "1"}
    )
    with open_video(path) as video:
        assert video.info.duration is None
    with pytest.raises(MediaTooLarge) as caught:
        vpdq_hash(path, max_seconds=60)
    assert caught.value.code == "media.too_long"


def test_huge_frames_are_refused_from_the_header(tmp_path: Path) -> None:
    path = _write(tmp_path / "big.mkv", [0], fmt="matroska", codec="mjpeg", size=(640, 480))
    with pytest.raises(MediaTooLarge) as caught:
        vpdq_hash(path, max_frame_pixels=640 * 480 - 1)
    assert caught.value.code == "media.too_many_pixels"
    assert (caught.value.detail["width"], caught.value.detail["height"]) == (640, 480)


def test_byte_limit_and_decode_time_limit(tmp_path: Path) -> None:
    path = _write(tmp_path / "clip.mp4", _steady(2))
    with pytest.raises(MediaTooLarge) as caught:
        vpdq_hash(path, max_bytes=path.stat().st_size - 1)
    assert caught.value.code == "media.too_large"
    with pytest.raises(MediaTooLarge) as caught:
        vpdq_hash(path, decode_seconds=1e-9)
    assert caught.value.code == "media.decode_timeout"
    assert vpdq_hash(path, decode_seconds=30).frames_decoded == 50


def test_many_streams_are_refused_and_a_few_are_ignored(tmp_path: Path) -> None:
    crowded = _write(tmp_path / "crowded.mkv", _steady(1), fmt="matroska", extra_streams=70)
    with pytest.raises(MediaTooLarge) as caught:
        vpdq_hash(crowded)
    assert caught.value.code == "media.too_many_streams"
    few = _write(tmp_path / "few.mkv", _steady(1), fmt="matroska", extra_streams=3)
    alone = _write(tmp_path / "alone.mkv", _steady(1), fmt="matroska")
    # The first video stream is hashed; the others are dropped unread.
    assert [f.pdq_hex for f in vpdq_hash(few).frames] == [
        f.pdq_hex for f in vpdq_hash(alone).frames
    ]


def test_a_truncated_video_gives_its_frames_so_far_marked_partial(tmp_path: Path) -> None:
    path = _write(tmp_path / "whole.mp4", _steady(4), options={"movflags": "faststart"})
    data = path.read_bytes()
    cut = data[: len(data) * 3 // 5]
    with pytest.raises(MediaRefused) as caught:
        vpdq_hash(cut)
    assert caught.value.code == "media.truncated"
    got = vpdq_hash(cut, allow_partial=True)
    assert got.partial == "media.truncated"
    assert 0 < got.frames_decoded < 100
    assert [f.frame_number for f in got.frames] == list(range(0, got.frames_decoded, 25))
    whole = vpdq_hash(data)
    assert whole.partial is None
    assert got.frames == whole.frames[: len(got.frames)]
    assert got.duration < whole.duration


def test_garbage_and_empty_and_lying_extensions(tmp_path: Path) -> None:
    for data in (b"\x00" * 4096, b"RIFF\x10\x00\x00\x00AVI LIST" + bytes(64), b"not a video"):
        with pytest.raises(MediaRefused) as caught:
            vpdq_hash(data)
        assert caught.value.code in ("media.not_a_video", "media.corrupt", "media.truncated")
    with pytest.raises(MediaRefused) as caught:
        vpdq_hash(b"")
    assert caught.value.code == "media.empty"
    # A video named .jpg is a video all the same: the bytes decide.
    named = _write(tmp_path / "holiday.jpg", _steady(1), fmt="mp4")
    assert looks_like_video(named.read_bytes()[:512])
    assert vpdq_hash(named).frames_decoded == 25


def test_variable_frame_rate_keeps_true_timestamps(tmp_path: Path) -> None:
    times = [0, 40, 80, 1500, 1540, 3000, 3040, 3080]
    path = _write(tmp_path / "vfr.mkv", times, fmt="matroska")
    got = vpdq_hash(path, seconds_per_hash=0)
    assert [round(f.timestamp, 3) for f in got.frames] == [t / 1000 for t in times]


def test_broken_timestamps_never_run_backwards() -> None:
    frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
    period = 0.04
    stamps: list[float] = []
    last = None
    for index, when in enumerate([0.0, 0.04, None, 0.02, 5.0, 4.0]):
        item = DecodedFrame(index=index, time=when, frame=frame)
        last = _timestamp(item, 0.0, last, period)
        stamps.append(round(last, 3))
    # None falls back to index x period; going backwards moves one period on instead.
    assert stamps == [0.0, 0.04, 0.08, 0.12, 5.0, 5.04]
    assert stamps == sorted(stamps)


def test_dihedral_variants_find_a_mirrored_copy(tmp_path: Path) -> None:
    original = vpdq_hash(_write(tmp_path / "a.mp4", _steady(3)), dihedral=True)
    mirrored = vpdq_hash(_write(tmp_path / "b.mp4", _steady(3), mirror=True))
    assert mirrored.frames[0].dihedral is None
    flip = DIHEDRAL_NAMES.index("flip_horizontal") if "flip_horizontal" in DIHEDRAL_NAMES else None
    for ours, theirs in zip(original.frames, mirrored.frames, strict=True):
        assert ours.dihedral is not None and len(ours.dihedral) == 8 * 32
        assert ours.dihedral[:32].hex() == ours.pdq_hex  # the original comes first
        variants = [ours.dihedral[i * 32 : (i + 1) * 32] for i in range(8)]
        target = int(theirs.pdq_hex, 16)
        distances = [(int.from_bytes(v, "big") ^ target).bit_count() for v in variants]
        assert min(distances) <= 16 < distances[0]
        if flip is not None:
            assert distances[flip] == min(distances)
    # Same frames, same choice, same timestamps with or without the variants.
    plain = vpdq_hash(_write(tmp_path / "c.mp4", _steady(3)))
    assert [(f.frame_number, f.pdq_hex) for f in plain.frames] == [
        (f.frame_number, f.pdq_hex) for f in original.frames
    ]


def _animation(fmt: str, frames: int) -> bytes:
    images = [Image.fromarray(_pattern(i)) for i in range(frames)]
    buffer = io.BytesIO()
    if frames == 1:
        images[0].save(buffer, fmt)
    else:
        images[0].save(buffer, fmt, save_all=True, append_images=images[1:], duration=100, loop=0)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animations_are_videos_and_stills_are_images(fmt: str) -> None:
    still = _animation(fmt, 1)
    moving = _animation(fmt, 30)
    assert not is_animation(still)
    assert is_animation(moving)
    assert not looks_like_video(moving[:512])
    got = vpdq_hash(moving, dihedral=True)
    assert got.frames_decoded == 30
    assert got.duration == pytest.approx(3.0, abs=0.05)
    assert [round(f.timestamp, 2) for f in got.frames] == [0.0, 1.0, 2.0]


def test_an_animation_too_long_is_refused_before_decoding() -> None:
    images = [Image.fromarray(_pattern(i)) for i in range(3)]
    buffer = io.BytesIO()
    # Three frames shown for over four hours each.
    images[0].save(
        buffer, "WEBP", save_all=True, append_images=images[1:], duration=2**24 - 1, loop=0
    )
    with pytest.raises(MediaTooLarge) as caught:
        vpdq_hash(buffer.getvalue(), max_seconds=3600)
    assert caught.value.code == "media.too_long"


def test_looks_like_video_knows_containers_and_not_images(tmp_path: Path) -> None:
    for fmt, name in (("mp4", "a.mp4"), ("matroska", "a.mkv"), ("avi", "a.avi"), ("mov", "a.mov")):
        head = _write(tmp_path / name, _steady(0.2), fmt=fmt).read_bytes()[:512]
        assert looks_like_video(head), fmt
    png = io.BytesIO()
    Image.fromarray(_pattern(0)).save(png, "PNG")
    assert not looks_like_video(png.getvalue()[:512])
    assert not looks_like_video(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00")
    assert not looks_like_video(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00")
    assert looks_like_video(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00")


def _rotation_clip(path: Path, *, matrix: int = 0, turn: int = 0) -> Path:
    """The synthetic clip with a display matrix of ``matrix`` degrees, or with its pixels
    turned ``turn`` quarter turns counter-clockwise (what a re-encode that applies it stores)."""
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=25)
        assert isinstance(stream, VideoStream)
        width, height = (48, 64) if turn % 2 else (64, 48)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = MS
        if matrix:
            stream.set_display_rotation(matrix)
        for index, stamp in enumerate(_steady(2)):
            pixels = np.ascontiguousarray(np.rot90(_pattern(index), k=turn))
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = stamp, MS
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_rotation_metadata_exchange_hashes_stay_coded_and_dihedral_finds_upright(
    tmp_path: Path,
) -> None:
    from dignity.video.analysis import FrameSampler

    plain = vpdq_hash(_rotation_clip(tmp_path / "plain.mp4"))
    phone = _rotation_clip(tmp_path / "phone.mp4", matrix=90)
    applied = vpdq_hash(_rotation_clip(tmp_path / "applied.mp4", turn=1))
    got = vpdq_hash(phone, dihedral=True)
    assert got.rotation == 90
    # Exchange hashes are of the coded frames, as Meta's vpdq computes them.
    assert [f.pdq_hex for f in got.frames] == [f.pdq_hex for f in plain.frames]
    upright = vpdq_hash(phone, honour_rotation=True)
    for ours, up, theirs in zip(got.frames, upright.frames, applied.frames, strict=True):
        assert (int(up.pdq_hex, 16) ^ int(theirs.pdq_hex, 16)).bit_count() <= 16
        assert ours.dihedral is not None
        variants = [ours.dihedral[i * 32 : (i + 1) * 32] for i in range(8)]
        target = int(theirs.pdq_hex, 16)
        distances = [(int.from_bytes(v, "big") ^ target).bit_count() for v in variants]
        # One dihedral variant of the coded frame is the upright copy's hash.
        assert min(distances) <= 16 < distances[0]
    # Frames for the classifiers are turned upright.
    sampler = FrameSampler(4)
    vpdq_hash(phone, on_frame=sampler.offer)
    assert sampler.kept[0][1].shape[:2] == (64, 48)
