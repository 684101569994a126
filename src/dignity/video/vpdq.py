"""vPDQ: a PDQ hash per sampled video frame, computed the way Meta's ``vpdq`` computes it.

Meta's hasher (``vpdq/cpp``, ``hashVideoFile``) picks frames by their decode index, not by
time: with ``frame_mod = int(seconds_per_hash * frame_rate)`` (at least 1), frame ``i`` is hashed
when ``i % frame_mod == 0``, where the rate is the stream's average frame rate. Each picked frame
is converted to RGB24 by swscale with ``SWS_AREA`` (and scaled to ``-d WxH`` when asked), and its
PDQ is computed over the whole frame (no 512 px resize, unlike still images). We do the same with
PyAV and dignity's own PDQ, so the hashes agree with Meta's up to decoder rounding; the tests
measure how far. Timestamps come from the frames' presentation times, so a variable frame rate
gives true times, while selection keeps vpdq's index rule so that both pick the same frames.
Broken timestamps (missing, not finite, or going backwards) are replaced by the previous frame's
time plus one frame period, so timestamps never run backwards and segments stay ordered.

Rotation: a phone video stores upright pixels turned, with a display matrix saying how to show
them. The hashes here are of the coded (unrotated) frames by default, as Meta's vpdq computes
them, because they are exchanged with vpdq's users (HMA, StopNCII-style hash lists) and must
agree with theirs. Dignity's own matching does not need an upright copy on top: with
``dihedral=True`` each frame carries its 8 dihedral PDQ variants (:attr:`VpdqFrame.dihedral`),
one of which is the upright frame's hash for any 90-degree turn or mirror, so a rotated
upload, a re-encode that applied the rotation, and a mirrored copy all meet the banked frames
through the same index query. Only the signals that look at pictures (nudity, derivatives)
turn frames upright first (:func:`upright_rgb`).

Speed: H.264 and HEVC predict frames from each other, so a picked frame cannot be had without
the frames it refers to, but the others need no decoding: the reader
(:meth:`dignity.video.decode.VideoReader.frames` with ``wanted``) leaves undecoded the
non-reference frames not picked and the runs before an IDR frame after the last picked one,
knowing each frame's vpdq index from the packets' timestamps, and decodes everything again
where a stream is too irregular to be sure (the hashes are the same either way; the tests
compare). Only picked frames are converted to RGB and hashed, and FFmpeg decodes with its frame
and slice threads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray

from dignity.errors import MediaRefused
from dignity.hashing.pdq import pdq_from_full_pixels
from dignity.video.bars import BarFinder, Bars
from dignity.video.decode import (
    DECODE_SECONDS,
    MAX_BYTES,
    MAX_FRAME_PIXELS,
    MAX_SECONDS,
    DecodedFrame,
    SkipNotExact,
    open_video,
)

DEFAULT_SECONDS_PER_HASH = 1.0


@dataclass(frozen=True)
class VpdqFrame:
    """One hashed frame: its 0-based decode index, its time in seconds from the first frame,
    its PDQ (64 lowercase hex) and that hash's quality (0-100). ``dihedral``, when asked for,
    holds the frame's 8 dihedral PDQ variants back to back (8 x 32 bytes, in
    :data:`dignity.hashing.pdq.DIHEDRAL_NAMES` order, the original first). ``trimmed``, only
    for dignity's own matching and never exchanged, is the PDQ of the frame with the video's
    letterbox/pillarbox bars cut off (:mod:`dignity.video.bars`), with its 8 dihedral variants
    the same way when ``dihedral`` is there; None where the video has no bars."""

    frame_number: int
    timestamp: float
    pdq_hex: str
    quality: int
    dihedral: bytes | None = None
    trimmed: bytes | None = None


@dataclass(frozen=True)
class VpdqResult:
    """A video's vPDQ frames with what was learnt on the way: ``duration`` in seconds (the
    container's, else the last frame's end), the frame rate frames were picked by, the number
    of frames decoded, and the MD5 / SHA-256 of the file's bytes (hex). ``partial`` is None for
    a whole video, else the ``media.*`` code of the damage that ended decoding early (only
    with ``allow_partial``): the frames are those read before it. ``rotation`` is the display
    matrix's turn in degrees counter-clockwise (0, 90, 180, 270). ``bars``: the bars found
    (pixels of the hashed frames) when they were looked for, else None."""

    frames: tuple[VpdqFrame, ...]
    duration: float
    frame_rate: float
    frames_decoded: int
    width: int
    height: int
    md5: str
    sha256: str
    partial: str | None = None
    rotation: int = 0
    container: str = ""
    tags: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    bars: Bars | None = None


def frame_step(seconds_per_hash: float, frame_rate: float) -> int:
    """vpdq's ``frame_mod``: hash every n-th frame; 0 seconds (or a rate under one frame per
    ``seconds_per_hash``) means every frame."""
    if seconds_per_hash < 0:
        raise ValueError("seconds_per_hash must be 0 or more")
    return max(1, int(seconds_per_hash * frame_rate))


def vpdq_hash(
    source: Path | str | bytes | BinaryIO,
    *,
    seconds_per_hash: float = DEFAULT_SECONDS_PER_HASH,
    downscale: tuple[int, int] | None = None,
    honour_rotation: bool = False,
    dihedral: bool = False,
    trim_bars: bool | None = None,
    max_seconds: float = MAX_SECONDS,
    max_frame_pixels: int = MAX_FRAME_PIXELS,
    max_bytes: int = MAX_BYTES,
    decode_seconds: float = DECODE_SECONDS,
    allow_partial: bool = False,
    on_frame: Callable[[DecodedFrame, float], None] | None = None,
    on_frame_wants: Callable[[int], bool] | None = None,
) -> VpdqResult:
    """The vPDQ of a video file (path or seekable binary file) or its bytes, streaming (a few
    frames in memory at a time).

    ``downscale`` is vpdq's ``-d WIDTHxHEIGHT``: frames are area-scaled to that size before PDQ.
    ``honour_rotation`` turns frames upright by their display matrix first; off by default
    because Meta's vpdq hashes the coded frames, and hashes are exchanged with its users (see
    the module docstring for why ``dihedral`` covers matching). ``dihedral`` fills each
    frame's 8 variants. ``trim_bars`` (default: as ``dihedral``, since both serve dignity's own
    matching) looks for letterbox bars over the first frames and fills each frame's
    ``trimmed`` hash where there are any (the raw hashes stay Meta's). ``allow_partial`` keeps
    the frames read before a corrupt or truncated part instead of raising (the result says
    ``partial``). ``on_frame(frame, timestamp)`` sees
    every decoded frame (for sampling frames for other signals in the same pass); with
    ``on_frame_wants(index)``, saying which frames it needs, the others may be left undecoded
    (as every frame not hashed is without ``on_frame``).
    Raises the ``media.*`` errors of :func:`dignity.video.decode.open_video`, and
    ``media.not_a_video`` for a stream without a frame rate or without a single frame.
    """
    if downscale is not None and (downscale[0] <= 0 or downscale[1] <= 0):
        raise ValueError("downscale needs a positive width and height")
    with open_video(
        source,
        max_seconds=max_seconds,
        max_frame_pixels=max_frame_pixels,
        max_bytes=max_bytes,
        decode_seconds=decode_seconds,
        allow_partial=allow_partial,
    ) as video:
        info = video.info
        if info.frame_rate <= 0:
            raise MediaRefused("the video stream has no frame rate", code="media.not_a_video")
        step = frame_step(seconds_per_hash, info.frame_rate)
        period = 1 / info.frame_rate
        finding = dihedral if trim_bars is None else trim_bars

        def hash_pass(wanted: Callable[[int], bool] | None) -> _Pass:
            finder = BarFinder() if finding else None
            run = _Pass(step, period, downscale, honour_rotation, dihedral, finder, on_frame)
            for item in video.frames(wanted):
                run.see(item)
            return run.finish()

        # Only the frames hashed or wanted by on_frame (and those the codec needs to decode
        # them) are decoded; a stream too irregular to be sure which frame is which is
        # decoded again in full.
        wanted: Callable[[int], bool] | None = None
        if on_frame is None:
            wanted = lambda index: index % step == 0  # noqa: E731
        elif on_frame_wants is not None:
            wants = on_frame_wants
            wanted = lambda index: index % step == 0 or wants(index)  # noqa: E731
        try:
            run = hash_pass(wanted)
        except SkipNotExact:
            video.rewind()
            run = hash_pass(None)
        if video.frame_count == 0:
            raise MediaRefused("the video has no frames", code="media.not_a_video")
        last_time = run.last_time
        skipped_tail = run.last_index + 1 < video.frame_count
        if run.first_time is not None and video.end_time is not None and skipped_tail:
            # The last frames were left undecoded: the stream's last timestamp ends it.
            last_time = video.end_time - run.first_time
        partial = video.partial
        digests = video.digests()
    end = (last_time or 0.0) + period
    duration = end if partial is not None or info.duration is None else info.duration
    return VpdqResult(
        frames=tuple(run.hashed),
        duration=duration,
        frame_rate=info.frame_rate,
        frames_decoded=video.frame_count,
        width=info.width,
        height=info.height,
        md5=digests.md5,
        sha256=digests.sha256,
        partial=partial,
        rotation=run.rotation,
        container=info.container,
        tags=info.tags,
        bars=run.bars,
    )


@dataclass
class _Pass:
    """One pass over a video's decoded frames: hashes the picked ones (every ``step``-th by
    index), keeps the timestamps and finds the bars (with a ``finder``)."""

    step: int
    period: float
    downscale: tuple[int, int] | None
    honour_rotation: bool
    dihedral: bool
    finder: BarFinder | None
    on_frame: Callable[[DecodedFrame, float], None] | None
    hashed: list[VpdqFrame] = field(default_factory=list)
    rotation: int = 0
    first_time: float | None = None
    last_time: float | None = None
    last_index: int = -1
    bars: Bars | None = None
    # Bars are decided over the first informative frames; until then the frames hashed are
    # kept (shrunk to PDQ's 512 px working size at most) to be trimmed once decided.
    waiting: list[tuple[int, NDArray[np.uint8], int]] = field(default_factory=list)

    def see(self, item: DecodedFrame) -> None:
        if item.time is not None and self.first_time is None:
            self.first_time = item.time
        timestamp = _timestamp(item, self.first_time, self.last_time, self.period)
        self.last_time = timestamp
        self.last_index = item.index
        if self.on_frame is not None:
            self.on_frame(item, timestamp)
        if item.index % self.step:
            return  # decoded (the codec needs it) but never converted nor hashed
        if not self.hashed:
            self.rotation = item.rotation()
        pixels = _rgb(item, self.downscale, honour_rotation=self.honour_rotation)
        pdq = pdq_from_full_pixels(pixels, dihedral=self.dihedral)
        self.hashed.append(
            VpdqFrame(
                item.index,
                timestamp,
                pdq.hex,
                pdq.quality,
                pdq.packed if self.dihedral else None,
            )
        )
        if self.finder is None:
            return
        if self.bars is None:
            self.finder.see(pixels)
            self.waiting.append((len(self.hashed) - 1, *_shrunk(pixels)))
            if self.finder.ready or len(self.waiting) >= _MAX_WAITING:
                self.bars = self.finder.decide()
                _trim_waiting(self.hashed, self.waiting, self.bars, self.dihedral)
        elif self.bars:
            self.hashed[-1] = replace(
                self.hashed[-1], trimmed=_trimmed(pixels, self.bars, self.dihedral)
            )

    def finish(self) -> _Pass:
        if self.finder is not None and self.bars is None:
            self.bars = self.finder.decide()
            _trim_waiting(self.hashed, self.waiting, self.bars, self.dihedral)
        return self


_MAX_WAITING = 32  # frames kept while bars are undecided (a long black intro decides "none")
_WORKING_SIDE = 512


def _shrunk(pixels: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], int]:
    """A frame kept while bars are undecided, with the factor it was shrunk by: PDQ blurs a
    frame down to 64 x 64, so a copy of at most about 512 px a side hashes the same but for a
    bit or two, and memory stays flat whatever the frame size."""
    factor = -(-max(pixels.shape[:2]) // _WORKING_SIDE)
    if factor <= 1:
        return pixels, 1
    from PIL import Image

    small = np.asarray(Image.fromarray(pixels).reduce(factor), dtype=np.uint8)
    return small, factor


def _trimmed(pixels: NDArray[np.uint8], bars: Bars, dihedral: bool) -> bytes:
    pdq = pdq_from_full_pixels(np.ascontiguousarray(bars.crop(pixels)), dihedral=dihedral)
    return pdq.packed if dihedral else bytes.fromhex(pdq.hex)


def _trim_waiting(
    hashed: list[VpdqFrame],
    waiting: list[tuple[int, NDArray[np.uint8], int]],
    bars: Bars,
    dihedral: bool,
) -> None:
    if bars:
        for i, pixels, factor in waiting:
            hashed[i] = replace(hashed[i], trimmed=_trimmed(pixels, bars.scaled(factor), dihedral))
    waiting.clear()


def _timestamp(
    item: DecodedFrame, first_time: float | None, last: float | None, period: float
) -> float:
    if item.time is None or first_time is None:
        stamp = item.index * period
    else:
        # Relative to the first frame: vpdq's timestamps start at 0 even where an edit list or
        # a stream start offset makes the first presentation time non-zero.
        stamp = item.time - first_time
    if last is not None and stamp < last:
        # A timestamp going backwards (broken muxing, B-frames without reordering info):
        # keep time moving forward by one frame period.
        stamp = last + period
    return stamp


def upright_rgb(item: DecodedFrame, max_side: int | None = None) -> NDArray[np.uint8]:
    """A decoded frame as upright RGB (display matrix applied), for the signals that look at
    pictures; ``max_side`` area-scales it down first so that a 4K frame costs a classifier no
    more than it needs."""
    width, height = item.frame.width, item.frame.height
    size: tuple[int, int] | None = None
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return _rgb(item, size, honour_rotation=True)


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
