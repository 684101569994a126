"""vPDQ: a PDQ hash per sampled video frame, computed the way Meta's ``vpdq`` computes it.

Meta's hasher (``vpdq/cpp``, ``hashVideoFile``) picks frames by their decode index, not by
time: with ``frame_mod = int(seconds_per_hash * frame_rate)`` (at least 1), frame ``i`` is hashed
when ``i % frame_mod == 0``, where the rate is the stream's average frame rate. Each picked frame
is converted to RGB24 by swscale with ``SWS_AREA`` (and scaled to ``-d WxH`` when asked), and its
PDQ is computed over the whole frame (no 512 px resize, unlike still images). We do the same with
PyAV and dignity's own PDQ, so the hashes agree with Meta's up to decoder rounding; the tests
measure how far. Timestamps come from the frames' presentation times, so a variable frame rate
gives true times, while selection keeps vpdq's index rule so that both pick the same frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from dignity.errors import MediaRefused
from dignity.hashing.pdq import pdq_from_full_pixels
from dignity.video.decode import MAX_FRAME_PIXELS, MAX_SECONDS, DecodedFrame, open_video

DEFAULT_SECONDS_PER_HASH = 1.0


@dataclass(frozen=True)
class VpdqFrame:
    """One hashed frame: its 0-based decode index, its time in seconds from the first frame,
    its PDQ (64 lowercase hex) and that hash's quality (0-100)."""

    frame_number: int
    timestamp: float
    pdq_hex: str
    quality: int


@dataclass(frozen=True)
class VpdqResult:
    """A video's vPDQ frames with what was learnt on the way: ``duration`` in seconds (the
    container's, else the last frame's end), the frame rate frames were picked by, the number
    of frames decoded, and the MD5 / SHA-256 of the file's bytes (hex)."""

    frames: tuple[VpdqFrame, ...]
    duration: float
    frame_rate: float
    frames_decoded: int
    width: int
    height: int
    md5: str
    sha256: str


def frame_step(seconds_per_hash: float, frame_rate: float) -> int:
    """vpdq's ``frame_mod``: hash every n-th frame; 0 seconds (or a rate under one frame per
    ``seconds_per_hash``) means every frame."""
    if seconds_per_hash < 0:
        raise ValueError("seconds_per_hash must be 0 or more")
    return max(1, int(seconds_per_hash * frame_rate))


def vpdq_hash(
    source: Path | str | bytes,
    *,
    seconds_per_hash: float = DEFAULT_SECONDS_PER_HASH,
    downscale: tuple[int, int] | None = None,
    honour_rotation: bool = False,
    max_seconds: float = MAX_SECONDS,
    max_frame_pixels: int = MAX_FRAME_PIXELS,
) -> VpdqResult:
    """The vPDQ of a video file or its bytes, streaming (a few frames in memory at a time).

    ``downscale`` is vpdq's ``-d WIDTHxHEIGHT``: frames are area-scaled to that size before PDQ.
    ``honour_rotation`` turns frames upright by their display matrix first; off by default
    because Meta's vpdq hashes the coded frames, and hashes are exchanged with its users.
    Raises the ``media.*`` errors of :func:`dignity.video.decode.open_video`, and
    ``media.not_a_video`` for a stream without a frame rate or without a single frame.
    """
    if downscale is not None and (downscale[0] <= 0 or downscale[1] <= 0):
        raise ValueError("downscale needs a positive width and height")
    with open_video(source, max_seconds=max_seconds, max_frame_pixels=max_frame_pixels) as video:
        info = video.info
        if info.frame_rate <= 0:
            raise MediaRefused("the video stream has no frame rate", code="media.not_a_video")
        step = frame_step(seconds_per_hash, info.frame_rate)
        hashed: list[VpdqFrame] = []
        decoded = 0
        first_time: float | None = None
        last_time = 0.0
        for item in video.frames():
            decoded += 1
            if item.time is not None and first_time is None:
                first_time = item.time
            timestamp = _timestamp(item, first_time, info.frame_rate)
            last_time = timestamp
            if item.index % step:
                continue
            pdq = pdq_from_full_pixels(_rgb(item, downscale, honour_rotation=honour_rotation))
            hashed.append(VpdqFrame(item.index, timestamp, pdq.hex, pdq.quality))
        if decoded == 0:
            raise MediaRefused("the video has no frames", code="media.not_a_video")
        digests = video.digests()
    duration = info.duration if info.duration is not None else last_time + 1 / info.frame_rate
    return VpdqResult(
        frames=tuple(hashed),
        duration=duration,
        frame_rate=info.frame_rate,
        frames_decoded=decoded,
        width=info.width,
        height=info.height,
        md5=digests.md5,
        sha256=digests.sha256,
    )


def _timestamp(item: DecodedFrame, first_time: float | None, frame_rate: float) -> float:
    if item.time is None or first_time is None:
        return item.index / frame_rate
    # Relative to the first frame: vpdq's timestamps start at 0 even where an edit list or a
    # stream start offset makes the first presentation time non-zero.
    return item.time - first_time


def _rgb(
    item: DecodedFrame, downscale: tuple[int, int] | None, *, honour_rotation: bool
) -> NDArray[np.uint8]:
    width, height = downscale if downscale is not None else (None, None)
    # SWS_AREA is vpdq's DOWNSAMPLE_METHOD; swscale uses it for the YUV->RGB step too, which
    # moves a few bits when chroma is upsampled, so we ask for it even at full size.
    rgb = item.frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="AREA")
    # rgb24 always gives uint8 (the stub's return type is a union over formats): no copy.
    pixels: NDArray[np.uint8] = np.asarray(rgb, dtype=np.uint8)
    if honour_rotation:
        turns = item.rotation() // 90
        if turns:
            # np.rot90 turns counter-clockwise, as the display matrix's angle does.
            pixels = np.ascontiguousarray(np.rot90(pixels, k=turns))
    return pixels
