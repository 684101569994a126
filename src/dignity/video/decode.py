"""Streaming video decoding with PyAV (FFmpeg inside its wheel), refusing bad input early.

:func:`open_video` reads the container's header, refuses a file whose size, declared duration,
stream count or frame size is over its limits before a single frame is decoded, and returns a
:class:`VideoReader` whose :meth:`~VideoReader.frames` yields one decoded frame at a time, so
memory holds a few frames whatever the length. Every read of the input goes through a digesting
file object, so the MD5 and SHA-256 of the bytes come out of the same pass (plus a catch-up read
of whatever the demuxer skipped).

Hostile input is bounded three ways: by the header (``media.too_large`` bytes,
``media.too_long`` declared duration, ``media.too_many_pixels``, ``media.too_many_streams``), by
what the frames say while decoding (a frame's size or time over the limits, however the header
lied: a 10-hour black video of a few KB is refused by its container duration, or by the time
of the first frame past the limit when the container says nothing), and by the wall clock
(``media.decode_timeout`` once decoding has run ``decode_seconds``). Failures become ``media.*``
errors: ``media.not_a_video`` when FFmpeg finds no video stream, ``media.truncated`` when
decoding fails or stops short at the end of the input, ``media.corrupt`` for any other decoding
failure; with ``allow_partial`` the last two instead end the frames early and leave their code
in :attr:`VideoReader.partial`, so a caller can use the frames read so far and say so.
Broken timestamps (missing, going backwards) are repaired by the caller from the frame index;
see :mod:`dignity.video.vpdq`.
"""

from __future__ import annotations

import hashlib
import heapq
import io
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, cast

import av
import av.container
import av.error
import av.packet
import av.stream
import av.video.stream
from av.video.frame import VideoFrame

from dignity.errors import MediaRefused, MediaTooLarge

MAX_SECONDS = 3 * 3600.0
MAX_FRAME_PIXELS = 40_000_000
MAX_BYTES = 2 * 1024**3
DECODE_SECONDS = 600.0
# A real video has a handful of streams (video, audio tracks, subtitles, timecode); hundreds
# are only there to make the demuxer work.
MAX_STREAMS = 64
_CHUNK = 1 << 20
_MAX_TAGS = 64
_MIN_FRAME_MS = 20.0
_MAX_TAG_TEXT = 64 * 1024
# Codecs whose FFmpeg decoder drops non-reference frames on skip_frame = NONREF.
_SKIPPABLE_CODECS = frozenset({"h264", "hevc"})
# Packets read ahead before the earliest timestamp among them is ranked: more than any
# B-frame reordering seen in practice (x264's deepest pyramid reorders by a few frames).
_RANK_WINDOW = 16
_MAX_WAITING_PACKETS = 4 * _RANK_WINDOW


if TYPE_CHECKING:
    _VideoPacket = av.packet.Packet[av.video.stream.VideoStream]


# Packets held before sending when whole runs before an IDR frame may be left out: enough to
# see an IDR frame up to a second and a bit (the usual hashing step) ahead at 30 fps.
_HOLD_PACKETS = 48
_HOLD_BYTES = 64 * 1024 * 1024  # and no more bytes than this: huge packets are sent sooner


class SkipNotExact(Exception):
    """The stream is not regular enough for :meth:`VideoReader.frames` to skip frames and
    be sure of the indices: decode it again without skipping."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container declares about the chosen video stream, read before decoding.

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
    # The container's format name and its and the video stream's metadata tags (encoder,
    # handler, comment, ...), bounded: what a generator may have written into the file.
    container: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)


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
    :meth:`digests`. Use as a context manager; it closes the container and the file.

    :attr:`partial` is None until :meth:`frames` stopped early on a damaged stream with
    ``allow_partial``; then it holds the ``media.*`` code that would have been raised."""

    def __init__(
        self,
        reader: _DigestingReader,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        info: VideoInfo,
        *,
        max_seconds: float,
        max_frame_pixels: int,
        decode_seconds: float,
        allow_partial: bool = False,
        threads: bool = True,
    ) -> None:
        self._reader = reader
        self._container = container
        self._stream = stream
        self.info = info
        self._max_seconds = max_seconds
        self._max_frame_pixels = max_frame_pixels
        self._decode_seconds = decode_seconds
        self._allow_partial = allow_partial
        self._threads = threads
        self._deadline: float | None = None
        self.partial: str | None = None
        self.frame_count = 0
        self.end_time: float | None = None

    def frames(self, wanted: Callable[[int], bool] | None = None) -> Iterator[DecodedFrame]:
        """Decode the chosen video stream, one frame at a time, checking the limits again
        against what the frames themselves say (a header can lie) and the clock after every
        packet, so that neither a long stream nor a slow one runs past the limits.

        ``wanted(index)`` says which frames the caller needs: where the codec can drop
        frames nothing else refers to (H.264 and HEVC's non-reference frames, about half the
        frames of a stream with B-frames), the others may then be left undecoded and are not
        yielded; the frames yielded are the same pixels, with the same indices, as without.
        This relies on the stream being regular (every packet one frame, unique timestamps
        reordered within a short window): where it is not, :class:`SkipNotExact` is raised,
        possibly after some frames, and the caller starts again with :meth:`rewind` and no
        ``wanted``. After the frames end, :attr:`frame_count` is the number of frames in the
        stream and :attr:`end_time` the presentation time of the last one (None if unknown),
        skipped or not."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self._decode_seconds
        if wanted is not None and self.info.codec in _SKIPPABLE_CODECS:
            return self._skipping_frames(wanted, self._deadline)
        return self._all_frames(self._deadline)

    def _all_frames(self, deadline: float) -> Iterator[DecodedFrame]:
        rate = self.info.frame_rate
        index = 0
        try:
            for packet in self._container.demux(self._stream):
                if time.monotonic() > deadline:
                    raise _too_slow(self._decode_seconds, index)
                for frame in packet.decode():
                    if frame.width * frame.height > self._max_frame_pixels:
                        raise _too_many_pixels(frame.width, frame.height, self._max_frame_pixels)
                    frame_time: float | None = frame.time
                    if frame_time is not None and not math.isfinite(frame_time):
                        frame_time = None
                    # Without timestamps, the index says how far in we are.
                    elapsed = frame_time if frame_time is not None else index / (rate or 1.0)
                    if elapsed > self._max_seconds:
                        raise _too_long(elapsed, self._max_seconds)
                    self.end_time = frame_time
                    yield DecodedFrame(index=index, time=frame_time, frame=frame)
                    index += 1
                    self.frame_count = index
        except av.error.FFmpegError as exc:
            if self._reader.reached_end:
                error = MediaRefused(
                    "the video ends before its last frame (truncated?)",
                    code="media.truncated",
                    frames=index,
                )
            else:
                error = MediaRefused(
                    f"the video could not be decoded after {index} frames",
                    code="media.corrupt",
                    frames=index,
                )
            if self._allow_partial and index:
                self.partial = error.code
                return
            raise error from exc
        declared = self.info.frame_count
        if declared is not None and index < declared and self._reader.reached_end:
            # The index promised more frames than the bytes held: the tail is missing.
            if self._allow_partial and index:
                self.partial = "media.truncated"
                return
            raise MediaRefused(
                f"the video ends after {index} of its {declared} frames (truncated?)",
                code="media.truncated",
                frames=index,
                declared=declared,
            )

    def _skipping_frames(
        self, wanted: Callable[[int], bool], deadline: float
    ) -> Iterator[DecodedFrame]:
        """:meth:`frames` leaving unwanted non-reference frames undecoded.

        A frame's index is its rank by presentation time (vpdq counts frames as the decoder
        outputs them, in presentation order, one per packet on a regular stream). Packets are
        read a window ahead, so a packet's rank is known before it is sent to the decoder:
        sent to be dropped if it is a non-reference frame (``skip_frame = NONREF``, for that
        packet only) when its index is not wanted, decoded as usual otherwise. Every
        assumption is checked (timestamps present, unique and reordered within the window;
        every packet sent to be kept comes out, in rank order); a failure raises
        :class:`SkipNotExact`, as does any decoding error, so that damage is judged by the
        plain path, which reports it exactly as before."""
        context = self._stream.codec_context
        time_base = self._stream.time_base
        if time_base is None:
            raise SkipNotExact("no time base")
        tick = float(time_base)  # for the length limit only (Fraction arithmetic is slow)
        window: list[int] = []  # timestamps read but not yet ranked (a heap)
        unsent: dict[int, int] = {}  # timestamp -> index, ranked, its packet not yet sent
        sent: dict[int, int] = {}  # timestamp -> index, sent, its frame not yet out
        order: list[tuple[int, int]] = []  # (index, timestamp) of those sent (a heap)
        waiting: deque[_VideoPacket] = deque()  # read, not yet sent (decode order)
        expected: list[int] = []  # indices sent to be decoded, not yet out (a heap)
        count = 0
        last_out = -1
        last_ranked: int | None = None
        skipping = False
        # Past the last wanted frame before an IDR frame (after which no frame refers to an
        # earlier one), nothing needs decoding at all: packets are held a little longer to
        # see the next IDR coming. H.264 in MP4/MOV/MKV (length-prefixed NAL units) only.
        nal_length = _avcc_nal_length(self._stream)
        hold = _HOLD_PACKETS if nal_length else 0
        held = 0  # bytes of the packets waiting
        drop_next = 0  # packets at the head of waiting to leave out (before an IDR frame)
        send_next = 0  # packets at the head of waiting to send without looking again
        # PyAV's empty end-of-stream packet flushes the decoder (a packet, not None, so that
        # the last frames get the stream's time base as in the plain path).
        end = cast("_VideoPacket", av.packet.Packet())
        end.time_base = time_base

        def rank_one() -> None:
            nonlocal count, last_ranked
            pts = heapq.heappop(window)
            if last_ranked is not None and pts <= last_ranked:
                raise SkipNotExact("repeated timestamps")
            unsent[pts] = count
            count += 1
            last_ranked = pts

        def out(frame: VideoFrame) -> DecodedFrame:
            nonlocal last_out
            if frame.width * frame.height > self._max_frame_pixels:
                raise _too_many_pixels(frame.width, frame.height, self._max_frame_pixels)
            index = sent.get(frame.pts) if frame.pts is not None else None
            if index is None or index <= last_out:
                raise SkipNotExact("a frame came out of rank order")
            if expected and expected[0] < index:
                raise SkipNotExact("a frame sent to be decoded never came out")
            if expected and expected[0] == index:
                heapq.heappop(expected)
            while order and order[0][0] <= index:  # before it: out, or dropped undecoded
                del sent[heapq.heappop(order)[1]]
            last_out = index
            return DecodedFrame(index=index, time=frame.time, frame=frame)

        def plan(at_end: bool) -> None:
            """How many head packets to send, or to drop, before looking again."""
            nonlocal drop_next, send_next
            for position, packet in enumerate(waiting):
                index = unsent.get(cast(int, packet.pts))
                if position and nal_length and _is_idr(packet, nal_length):
                    drop_next = position
                    return
                if index is None or wanted(index):
                    send_next = position + 1
                    return
            if at_end:  # nothing wanted after these: the tail of the video needs no decoding
                drop_next = len(waiting)
            else:
                send_next = len(waiting)

        def release(at_end: bool) -> Iterator[DecodedFrame]:
            nonlocal drop_next, send_next, held
            while (
                waiting
                and waiting[0].pts in unsent
                and (at_end or len(waiting) > hold or held > _HOLD_BYTES)
            ):
                if not (drop_next or send_next):
                    plan(at_end)
                packet = waiting.popleft()
                held -= packet.size
                if drop_next:
                    drop_next -= 1
                    del unsent[cast(int, packet.pts)]
                else:
                    send_next -= 1
                    yield from send(packet)

        def send(packet: _VideoPacket, flush: bool = False) -> Iterator[DecodedFrame]:
            nonlocal skipping
            if not flush:
                pts = cast(int, packet.pts)
                index = unsent.pop(pts)
                if index <= last_out:
                    raise SkipNotExact("a frame sent after a later one came out")
                sent[pts] = index
                heapq.heappush(order, (index, pts))
                keep = wanted(index)
                if keep:
                    heapq.heappush(expected, index)
                if skipping == keep:  # read by the decoder per packet; set on change only
                    skipping = not keep
                    context.skip_frame = "NONREF" if skipping else "DEFAULT"
            for frame in packet.decode():
                yield out(frame)

        try:
            for packet in self._container.demux(self._stream):
                if time.monotonic() > deadline:
                    raise _too_slow(self._decode_seconds, count)
                pts = packet.pts
                if pts is None and packet.size == 0:
                    end = packet  # the decoder is flushed with it below
                    continue
                if (
                    pts is None
                    or packet.is_corrupt
                    or packet.is_discard
                    or (last_ranked is not None and pts <= last_ranked)
                    or (count == 0 and not window and not packet.is_keyframe)
                ):
                    raise SkipNotExact("an irregular packet")
                seconds = pts * tick
                if seconds > self._max_seconds:
                    raise _too_long(seconds, self._max_seconds)
                heapq.heappush(window, pts)
                waiting.append(packet)
                held += packet.size
                while len(window) > _RANK_WINDOW:
                    rank_one()
                yield from release(at_end=False)
                if len(waiting) > hold + _MAX_WAITING_PACKETS:
                    raise SkipNotExact("timestamps reordered beyond the window")
            while window:
                rank_one()
            yield from release(at_end=True)
            context.skip_frame = "DEFAULT"
            yield from send(end, flush=True)
        except av.error.FFmpegError as exc:
            raise SkipNotExact("a decoding error") from exc
        if expected:
            raise SkipNotExact("a frame sent to be decoded never came out")
        declared = self.info.frame_count
        if declared is not None and count < declared and self._reader.reached_end:
            raise SkipNotExact("fewer frames than declared")  # truncated: said as before
        self.frame_count = count
        self.end_time = None if last_ranked is None else float(last_ranked * time_base)

    def rewind(self) -> None:
        """Open the input again from its start (after :class:`SkipNotExact`), to decode every
        frame; the decode time limit keeps running."""
        index = self._stream.index
        self._container.close()
        self._reader.seek(0)
        remaining = max(1.0, (self._deadline or time.monotonic()) - time.monotonic())
        self._container = av.open(self._reader, mode="r", timeout=remaining)
        self._stream = cast(av.video.stream.VideoStream, self._container.streams[index])
        _prepare(self._container, self._stream, threads=self._threads)
        self.partial = None
        self.frame_count = 0
        self.end_time = None

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
    source: Path | str | bytes | BinaryIO,
    *,
    max_seconds: float = MAX_SECONDS,
    max_frame_pixels: int = MAX_FRAME_PIXELS,
    max_bytes: int = MAX_BYTES,
    decode_seconds: float = DECODE_SECONDS,
    allow_partial: bool = False,
    threads: bool = True,
) -> VideoReader:
    """Open a video file (path, or a seekable binary file object, which is then closed with
    the reader) or the bytes of one, and check its header against the limits.

    ``threads`` lets FFmpeg decode with frame and slice threads; results are the same either
    way. Raises :class:`MediaRefused` (``media.empty``, ``media.not_a_video``) or
    :class:`MediaTooLarge` (``media.too_large``, ``media.too_long``, ``media.too_many_pixels``,
    ``media.too_many_streams``); :meth:`VideoReader.frames` may raise the decoding errors and
    ``media.decode_timeout``.
    """
    raw: BinaryIO
    if isinstance(source, bytes):
        raw = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        raw = open(source, "rb")  # noqa: SIM115 (closed by the reader)
    else:
        raw = source
    reader = _DigestingReader(raw)
    try:
        head = reader.read(12)
        reader.seek(0)
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            # FFmpeg decodes still WebP only; an animated one is read by Pillow instead.
            return _AnimationReader(
                reader,
                max_seconds=max_seconds,
                max_frame_pixels=max_frame_pixels,
                max_bytes=max_bytes,
                decode_seconds=decode_seconds,
                allow_partial=allow_partial,
            )
        return _open(
            reader,
            max_seconds=max_seconds,
            max_frame_pixels=max_frame_pixels,
            max_bytes=max_bytes,
            decode_seconds=decode_seconds,
            allow_partial=allow_partial,
            threads=threads,
        )
    except BaseException:
        reader.close()
        raise


def _size_within(reader: _DigestingReader, max_bytes: int) -> int:
    """The file's size, read by seeking (nothing is read yet); ``media.too_large`` over
    ``max_bytes``."""
    reader.seek(0, io.SEEK_END)
    size = reader.tell()
    reader.seek(0)
    if size > max_bytes:
        raise MediaTooLarge(
            f"the video is {size} bytes, over the {max_bytes} byte limit",
            code="media.too_large",
            size=size,
            limit=max_bytes,
        )
    return size


def _open(
    reader: _DigestingReader,
    *,
    max_seconds: float,
    max_frame_pixels: int,
    max_bytes: int,
    decode_seconds: float,
    allow_partial: bool,
    threads: bool,
) -> VideoReader:
    if _size_within(reader, max_bytes) == 0:
        raise MediaRefused("the file is empty", code="media.empty")
    started = time.monotonic()
    try:
        # The timeout interrupts FFmpeg's own reads too (probing, demuxing), where a crafted
        # file could otherwise make it spin between two of our checks.
        container = av.open(reader, mode="r", timeout=decode_seconds)
    except av.error.FFmpegError as exc:
        if time.monotonic() - started > decode_seconds:
            raise _too_slow(decode_seconds, 0) from exc
        raise MediaRefused("not a video FFmpeg can read", code="media.not_a_video") from exc
    try:
        if time.monotonic() - started > decode_seconds:
            raise _too_slow(decode_seconds, 0)
        if len(container.streams) > MAX_STREAMS:
            raise MediaTooLarge(
                f"the file holds {len(container.streams)} streams, over the {MAX_STREAMS} limit",
                code="media.too_many_streams",
                streams=len(container.streams),
                limit=MAX_STREAMS,
            )
        stream = _video_stream(container)
        info = _info(container, stream)
        if info.width <= 0 or info.height <= 0:
            raise MediaRefused("the video stream has no frame size", code="media.not_a_video")
        if info.width * info.height > max_frame_pixels:
            raise _too_many_pixels(info.width, info.height, max_frame_pixels)
        if info.duration is not None and info.duration > max_seconds:
            raise _too_long(info.duration, max_seconds)
        _prepare(container, stream, threads=threads)
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
        decode_seconds=decode_seconds - (time.monotonic() - started),
        allow_partial=allow_partial,
        threads=threads,
    )


def _avcc_nal_length(stream: av.video.stream.VideoStream) -> int:
    """The NAL length field size of an H.264 stream stored as length-prefixed NAL units (its
    extradata an avcC record: version 1, the size minus one in the low 2 bits of byte 4),
    else 0 (Annex B start codes, another codec, no extradata)."""
    extra = stream.codec_context.extradata
    if stream.codec_context.name != "h264" or not extra or len(extra) < 7 or extra[0] != 1:
        return 0
    return (extra[4] & 3) + 1


def _is_idr(packet: _VideoPacket, nal_length: int) -> bool:
    """Whether a length-prefixed H.264 packet is an IDR picture (its first slice NAL unit of
    type 5): no frame after it in decode order refers to one before it. Only the NAL
    headers are read, through a view of the packet."""
    if not packet.is_keyframe:
        return False
    data = memoryview(packet)
    position, size = 0, len(data)
    while position + nal_length < size:
        length = int.from_bytes(data[position : position + nal_length], "big")
        kind = data[position + nal_length] & 0x1F
        if kind in (1, 5):  # the first slice says what the picture is
            return kind == 5
        position += nal_length + length
    return False


def _prepare(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, *, threads: bool
) -> None:
    if threads:
        stream.thread_type = "AUTO"
    # Packets of every other stream (audio, subtitles, more video) are dropped by the
    # demuxer unread where the container allows, and never decoded.
    for other in container.streams:
        if other.index != stream.index:
            other.discard = av.stream.Discard.all


class _AnimationReader(VideoReader):
    """An animated WebP as a video, decoded by Pillow (FFmpeg has no animated WebP decoder):
    each frame becomes an RGB :class:`VideoFrame` stamped with its start time in ms, so that
    hashing and sampling treat it as any decoded video frame. The same limits apply; frames
    shorter than 20 ms count as 20 ms, as browsers show them, so a flood of zero-length frames
    still reaches the duration limit."""

    def __init__(
        self,
        reader: _DigestingReader,
        *,
        max_seconds: float,
        max_frame_pixels: int,
        max_bytes: int,
        decode_seconds: float,
        allow_partial: bool,
    ) -> None:
        from PIL import Image

        _size_within(reader, max_bytes)
        try:
            image = Image.open(cast(BinaryIO, reader), formats=("WEBP",))
        except Exception as exc:
            raise MediaRefused("not a WebP Pillow can read", code="media.not_a_video") from exc
        width, height = image.size
        if width * height > max_frame_pixels:
            raise _too_many_pixels(width, height, max_frame_pixels)
        durations = _webp_durations(cast(BinaryIO, reader))
        reader.seek(0)
        count = len(durations)
        duration = sum(durations) / 1000
        if not count:
            raise MediaRefused("the WebP holds no frame", code="media.not_a_video")
        if duration > max_seconds:
            raise _too_long(duration, max_seconds)
        self._reader = reader
        self._image = image
        self._count = count
        self._durations = durations
        self.info = VideoInfo(
            width=width,
            height=height,
            frame_rate=count / duration if duration else 0.0,
            duration=duration,
            frame_count=count,
            codec="webp",
            container="webp",
            tags={},
        )
        self._max_seconds = max_seconds
        self._max_frame_pixels = max_frame_pixels
        self._decode_seconds = decode_seconds
        self._allow_partial = allow_partial
        self.partial = None
        self.frame_count = 0
        self.end_time = None

    def frames(self, wanted: Callable[[int], bool] | None = None) -> Iterator[DecodedFrame]:
        # Pillow decodes every frame of an animation: ``wanted`` cannot save anything here.
        from fractions import Fraction

        import numpy as np

        deadline = time.monotonic() + self._decode_seconds
        elapsed_ms = 0.0
        for index in range(self._count):
            if time.monotonic() > deadline:
                raise _too_slow(self._decode_seconds, index)
            try:
                self._image.seek(index)
                rgb = np.asarray(self._image.convert("RGB"))
            except Exception as exc:
                if self._allow_partial and index:
                    self.partial = "media.corrupt"
                    return
                raise MediaRefused(
                    f"the animation could not be decoded after {index} frames",
                    code="media.corrupt",
                    frames=index,
                ) from exc
            frame = VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = round(elapsed_ms)
            frame.time_base = Fraction(1, 1000)
            self.end_time = elapsed_ms / 1000
            yield DecodedFrame(index=index, time=elapsed_ms / 1000, frame=frame)
            self.frame_count = index + 1
            elapsed_ms += self._durations[index]

    def close(self) -> None:
        self._image.close()
        self._reader.close()


def _webp_durations(stream: BinaryIO) -> list[float]:
    """Each frame's display time in ms from a WebP's ANMF chunk headers (seeking past the
    pixels), at least _MIN_FRAME_MS each; a still WebP is one frame of _MIN_FRAME_MS."""
    stream.seek(12)
    durations: list[float] = []
    still = False
    while True:
        header = stream.read(8)
        if len(header) < 8:
            break
        tag, size = header[:4], int.from_bytes(header[4:], "little")
        start = stream.tell()
        if tag == b"ANMF":
            frame = stream.read(16)
            if len(frame) < 16:
                break
            durations.append(max(float(int.from_bytes(frame[12:15], "little")), _MIN_FRAME_MS))
        elif tag in (b"VP8 ", b"VP8L"):
            still = True
        stream.seek(start + size + (size & 1))
    if not durations and still:
        durations.append(_MIN_FRAME_MS)
    return durations


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    """The first video stream that is a moving picture: an MP4's or MKV's cover art is a
    video stream too (disposition ``attached_pic``), one frame, and not the video."""
    videos = list(container.streams.video)
    if not videos:
        raise MediaRefused("the file holds no video stream", code="media.not_a_video")
    for stream in videos:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return videos[0]


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
        container=container.format.name if container.format is not None else "",
        tags=_tags(container.metadata, stream.metadata),
    )


def _tags(*sources: Mapping[str, str]) -> dict[str, str]:
    """Container tags then stream tags (a stream's ``handler_name`` is kept as
    ``stream:handler_name``), at most _MAX_TAGS of them, each value cut to _MAX_TAG_TEXT."""
    out: dict[str, str] = {}
    for position, tags in enumerate(sources):
        for key, value in list(tags.items())[:_MAX_TAGS]:
            name = f"stream:{key}" if position else key
            out[name.lower()[:64]] = str(value)[:_MAX_TAG_TEXT]
    return out


def _too_many_pixels(width: int, height: int, limit: int) -> MediaTooLarge:
    return MediaTooLarge(
        f"a {width} x {height} frame is over the {limit} pixel limit",
        code="media.too_many_pixels",
        width=width,
        height=height,
        limit=limit,
    )


def _too_slow(limit: float, frames: int) -> MediaTooLarge:
    return MediaTooLarge(
        f"decoding the video took over {limit:.0f} s (after {frames} frames)",
        code="media.decode_timeout",
        limit=limit,
        frames=frames,
    )


def _too_long(seconds: float, limit: float) -> MediaTooLarge:
    return MediaTooLarge(
        f"the video runs {seconds:.1f} s, over the {limit:.0f} s limit",
        code="media.too_long",
        seconds=round(seconds, 3),
        limit=limit,
    )
