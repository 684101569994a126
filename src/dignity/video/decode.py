"""Streaming video decoding with PyAV (FFmpeg inside its wheel), refusing bad input early.

:func:`open_video` reads the container's header, refuses a file whose declared duration or frame
size is over its limits before a single frame is decoded, and returns a :class:`VideoReader`
whose :meth:`~VideoReader.frames` yields one decoded frame at a time, so memory holds a few
frames whatever the length. Every read of the input goes through a digesting file object, so
the MD5 and SHA-256 of the bytes come out of the same pass (plus a catch-up read of whatever the
demuxer skipped). Failures become ``media.*`` errors: ``media.not_a_video`` when FFmpeg finds no
video stream, ``media.truncated`` when decoding fails or stops short at the end of the input,
``media.corrupt`` for any other decoding failure.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import av
import av.container
import av.error
import av.stream
import av.video.stream
from av.video.frame import VideoFrame

from dignity.errors import MediaRefused, MediaTooLarge

MAX_SECONDS = 3 * 3600.0
MAX_FRAME_PIXELS = 40_000_000
_CHUNK = 1 << 20


@dataclass(frozen=True)
class VideoInfo:
    """What the container declares about the first video stream, read before decoding.

    ``frame_rate`` is the stream's average rate (its base rate when that is unset), the rate
    vpdq selects frames by; ``duration`` and ``frame_count`` are None where the container does
    not say. ``width`` x ``height`` is the coded frame size, before any rotation.
    """

    width: int
    height: int
    frame_rate: float
    duration: float | None
    frame_count: int | None
    codec: str


@dataclass(frozen=True)
class Digests:
    """MD5 and SHA-256 of the input's bytes, as lowercase hex."""

    md5: str
    sha256: str


class _DigestingReader(io.RawIOBase):
    """A read-only, seekable view of a binary file that hashes each byte once, in order.

    The demuxer may seek (an MP4's index can sit at the end) and re-read; only reads that
    extend the hashed prefix feed the hashes, and :meth:`digests` reads whatever stayed past it.
    """

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha256 = hashlib.sha256()
        self._hashed = 0
        self.reached_end = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        start = self._raw.tell()
        data = self._raw.read(len(buffer))
        count = len(data)
        buffer[:count] = data
        if count < len(buffer):
            self.reached_end = True
        if start <= self._hashed < start + count:
            fresh = memoryview(data)[self._hashed - start :]
            self._md5.update(fresh)
            self._sha256.update(fresh)
            self._hashed = start + count
        return count

    def digests(self) -> Digests:
        position = self._raw.tell()
        self._raw.seek(self._hashed)
        while chunk := self._raw.read(_CHUNK):
            self._md5.update(chunk)
            self._sha256.update(chunk)
            self._hashed += len(chunk)
        self._raw.seek(position)
        return Digests(md5=self._md5.hexdigest(), sha256=self._sha256.hexdigest())

    def close(self) -> None:
        self._raw.close()
        super().close()


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded frame: its decode-order ``index`` (0-based, as vpdq counts), its
    presentation time in seconds (None if the stream has no timestamps), and the frame."""

    index: int
    time: float | None
    frame: VideoFrame

    def rotation(self) -> int:
        """Degrees counter-clockwise the display matrix turns this frame (0, 90, 180, 270)."""
        return round(self.frame.rotation / 90.0) * 90 % 360


class VideoReader:
    """An open video: its :attr:`info`, a one-pass :meth:`frames` iterator and the input's
    :meth:`digests`. Use as a context manager; it closes the container and the file."""

    def __init__(
        self,
        reader: _DigestingReader,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        info: VideoInfo,
        *,
        max_seconds: float,
        max_frame_pixels: int,
    ) -> None:
        self._reader = reader
        self._container = container
        self._stream = stream
        self.info = info
        self._max_seconds = max_seconds
        self._max_frame_pixels = max_frame_pixels

    def frames(self) -> Iterator[DecodedFrame]:
        """Decode the first video stream, one frame at a time, checking the limits again
        against what the frames themselves say (a header can lie)."""
        index = 0
        try:
            for frame in self._container.decode(self._stream):
                if frame.width * frame.height > self._max_frame_pixels:
                    raise _too_many_pixels(frame.width, frame.height, self._max_frame_pixels)
                time = frame.time
                if time is not None and time > self._max_seconds:
                    raise _too_long(time, self._max_seconds)
                yield DecodedFrame(index=index, time=time, frame=frame)
                index += 1
        except av.error.FFmpegError as exc:
            if self._reader.reached_end:
                raise MediaRefused(
                    "the video ends before its last frame (truncated?)",
                    code="media.truncated",
                    frames=index,
                ) from exc
            raise MediaRefused(
                f"the video could not be decoded after {index} frames",
                code="media.corrupt",
                frames=index,
            ) from exc
        declared = self.info.frame_count
        if declared is not None and index < declared and self._reader.reached_end:
            # The index promised more frames than the bytes held: the tail is missing.
            raise MediaRefused(
                f"the video ends after {index} of its {declared} frames (truncated?)",
                code="media.truncated",
                frames=index,
                declared=declared,
            )

    def digests(self) -> Digests:
        """MD5 and SHA-256 of the whole input (reads only what decoding did not)."""
        return self._reader.digests()

    def close(self) -> None:
        self._container.close()
        self._reader.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_video(
    source: Path | str | bytes,
    *,
    max_seconds: float = MAX_SECONDS,
    max_frame_pixels: int = MAX_FRAME_PIXELS,
    threads: bool = True,
) -> VideoReader:
    """Open a video file (path) or the bytes of one and check its header against the limits.

    ``threads`` lets FFmpeg decode with frame and slice threads; results are the same either
    way. Raises :class:`MediaRefused` (``media.empty``, ``media.not_a_video``) or
    :class:`MediaTooLarge` (``media.too_long``, ``media.too_many_pixels``).
    """
    raw: BinaryIO = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    reader = _DigestingReader(raw)
    try:
        return _open(
            reader, max_seconds=max_seconds, max_frame_pixels=max_frame_pixels, threads=threads
        )
    except BaseException:
        reader.close()
        raise


def _open(
    reader: _DigestingReader, *, max_seconds: float, max_frame_pixels: int, threads: bool
) -> VideoReader:
    reader.seek(0, io.SEEK_END)
    empty = reader.tell() == 0
    reader.seek(0)
    if empty:
        raise MediaRefused("the file is empty", code="media.empty")
    try:
        container = av.open(reader, mode="r")
    except av.error.FFmpegError as exc:
        raise MediaRefused("not a video FFmpeg can read", code="media.not_a_video") from exc
    try:
        if not container.streams.video:
            raise MediaRefused("the file holds no video stream", code="media.not_a_video")
        stream = container.streams.video[0]
        info = _info(container, stream)
        if info.width <= 0 or info.height <= 0:
            raise MediaRefused("the video stream has no frame size", code="media.not_a_video")
        if info.width * info.height > max_frame_pixels:
            raise _too_many_pixels(info.width, info.height, max_frame_pixels)
        if info.duration is not None and info.duration > max_seconds:
            raise _too_long(info.duration, max_seconds)
        if threads:
            stream.thread_type = "AUTO"
    except BaseException:
        container.close()
        raise
    return VideoReader(
        reader,
        container,
        stream,
        info,
        max_seconds=max_seconds,
        max_frame_pixels=max_frame_pixels,
    )


def _info(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> VideoInfo:
    # vpdq takes avg_frame_rate and falls back to r_frame_rate when it is 0/0.
    rate = stream.average_rate or stream.base_rate
    frame_rate = float(rate) if rate else 0.0
    duration: float | None = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    if duration is not None and not math.isfinite(duration):
        duration = None
    return VideoInfo(
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        frame_rate=frame_rate,
        duration=duration,
        frame_count=stream.frames or None,
        codec=stream.codec_context.name,
    )


def _too_many_pixels(width: int, height: int, limit: int) -> MediaTooLarge:
    return MediaTooLarge(
        f"a {width} x {height} frame is over the {limit} pixel limit",
        code="media.too_many_pixels",
        width=width,
        height=height,
        limit=limit,
    )


def _too_long(seconds: float, limit: float) -> MediaTooLarge:
    return MediaTooLarge(
        f"the video runs {seconds:.1f} s, over the {limit:.0f} s limit",
        code="media.too_long",
        seconds=round(seconds, 3),
        limit=limit,
    )
