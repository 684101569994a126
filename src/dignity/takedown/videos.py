"""Videos in the takedown workflow: hashing fetched videos, and the reviewer's contact sheet.

:func:`hash_video` hashes a video the platform sent (already in a temporary file) with
:func:`dignity.video.vpdq.vpdq_hash`, streaming from the file, with dihedral variants, so the
sweep finds mirrored copies of it. :func:`contact_sheet` is what a
reviewer sees of a video instead of playing it: :data:`SHEET_FRAMES` frames evenly spread over
its length (the middle of each sixth, reached by seeking, so a long video costs a few decodes),
each greyscaled and blurred on its own like an image preview unless the reviewer revealed it,
tiled into one JPEG with each frame's time written on top after the blur, so the times stay
readable while the pictures do not. Nothing is ever played, and nothing is stored.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np
from PIL import Image, ImageDraw

from dignity.errors import MediaRefused, MediaTooLarge
from dignity.settings import Settings
from dignity.video.vpdq import VpdqResult, vpdq_hash

SHEET_FRAMES = 6
SHEET_COLUMNS = 3
TILE = 240  # longest side of one frame on the sheet, in pixels
_DECODE_PER_FRAME = 600  # frames decoded at most after a seek, looking for the wanted time
_SEQUENTIAL_STEP = 25  # without a known duration: every n-th frame, from the start


def _limits(settings: Settings) -> tuple[float, int]:
    """The longest video and the largest frame a contact sheet is made of."""
    return settings.video_max_seconds, settings.video_max_pixels


def hash_video(path: Path, settings: Settings) -> VpdqResult:
    """vPDQ (one frame a second, with each frame's dihedral variants, so the sweep finds
    mirrored and turned copies), MD5 and SHA-256 of the video at ``path``, streamed from the
    file within the video limits (``media.*`` errors past them)."""
    return vpdq_hash(
        path,
        dihedral=True,
        max_seconds=settings.video_max_seconds,
        max_frame_pixels=settings.video_max_pixels,
        max_bytes=settings.video_max_bytes,
        decode_seconds=settings.video_decode_seconds,
    )


@dataclass(frozen=True)
class ContactSheet:
    """A rendered contact sheet: JPEG bytes, the frames' times, blurred unless ``revealed``."""

    data: bytes
    times: tuple[float, ...]
    revealed: bool
    width: int
    height: int


def contact_sheet(
    path: Path, settings: Settings, *, reveal: bool, frames: int = SHEET_FRAMES
) -> ContactSheet:
    """:data:`SHEET_FRAMES` evenly spaced frames of the video at ``path`` tiled into one JPEG,
    each greyscaled and blurred unless ``reveal``. Raises ``media.not_a_video``,
    ``media.corrupt`` or ``media.too_many_pixels``."""
    from dignity.takedown.review import render_preview

    max_seconds, max_pixels = _limits(settings)
    picked = _frames(path, frames, max_seconds=max_seconds, max_pixels=max_pixels)
    if not picked:
        raise MediaRefused("the video has no frames to show", code="media.not_a_video")
    tiles = []
    for _, image in picked:
        small = image.convert("RGB")
        small.thumbnail((TILE, TILE), Image.Resampling.LANCZOS)
        tiles.append(render_preview(small, reveal=reveal).convert("RGB"))
    cols = min(SHEET_COLUMNS, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    cell_w = max(t.width for t in tiles)
    cell_h = max(t.height for t in tiles)
    gap = 4
    sheet = Image.new(
        "RGB", (cols * cell_w + (cols - 1) * gap, rows * cell_h + (rows - 1) * gap), (32, 32, 32)
    )
    draw = ImageDraw.Draw(sheet)
    for n, (tile, (time, _)) in enumerate(zip(tiles, picked, strict=True)):
        x = (n % cols) * (cell_w + gap) + (cell_w - tile.width) // 2
        y = (n // cols) * (cell_h + gap) + (cell_h - tile.height) // 2
        sheet.paste(tile, (x, y))
        # Written after the blur: the reviewer reads where each frame is, not what it shows.
        label = _clock(time)
        box = draw.textbbox((x + 4, y + 4), label)
        draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=(0, 0, 0))
        draw.text((x + 4, y + 4), label, fill=(255, 255, 255))
    buf = io.BytesIO()
    sheet.save(buf, "JPEG", quality=85)
    return ContactSheet(
        buf.getvalue(), tuple(t for t, _ in picked), reveal, sheet.width, sheet.height
    )


def _clock(seconds: float) -> str:
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _frames(
    path: Path, count: int, *, max_seconds: float, max_pixels: int
) -> list[tuple[float, Image.Image]]:
    """(time, picture) of ``count`` frames spread over the video: the middle of each of
    ``count`` equal parts, found by seeking to the keyframe before it and decoding on."""
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise MediaRefused(
            "the file is not a video that can be read", code="media.not_a_video"
        ) from exc
    try:
        # FFmpeg reads a still picture as a one-frame video (image2, *_pipe demuxers): a
        # picture is previewed as one, not as a sheet.
        name = container.format.name
        if not container.streams.video or name == "image2" or name.endswith("_pipe"):
            raise MediaRefused("the file has no video stream", code="media.not_a_video")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > max_pixels:
            raise MediaTooLarge(
                f"a {width} x {height} frame is over the {max_pixels} pixel limit",
                code="media.too_many_pixels",
            )
        duration = _duration(container, stream)
        if duration is not None and duration > max_seconds:
            raise MediaTooLarge(
                f"the video runs {duration:.0f} s, over the {max_seconds:.0f} s limit",
                code="media.too_long",
            )
        if duration is None or duration <= 0 or stream.time_base is None:
            return _sequential(container, stream, count)
        out: list[tuple[float, Image.Image]] = []
        start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        for n in range(count):
            wanted = start + (n + 0.5) * duration / count
            container.seek(int(wanted / stream.time_base), stream=stream, backward=True)
            for decoded, frame in enumerate(container.decode(stream)):
                at = frame.time
                if at is None or at >= wanted - 1e-3 or decoded >= _DECODE_PER_FRAME:
                    out.append(
                        (max(0.0, (at if at is not None else wanted) - start), _picture(frame))
                    )
                    break
        return out
    except av.error.FFmpegError as exc:
        raise MediaRefused("the video could not be decoded", code="media.corrupt") from exc
    finally:
        container.close()


def _picture(frame: Any) -> Image.Image:
    """The frame as an upright-agnostic RGB picture (the coded frame, as vpdq hashes it)."""
    return Image.fromarray(np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8))


def _duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000
    return None


def _sequential(container: Any, stream: Any, count: int) -> list[tuple[float, Image.Image]]:
    out: list[tuple[float, Image.Image]] = []
    for n, frame in enumerate(container.decode(stream)):
        if n % _SEQUENTIAL_STEP == 0:
            out.append((float(frame.time or 0.0), _picture(frame)))
            if len(out) >= count:
                break
    return out


__all__ = ["SHEET_FRAMES", "ContactSheet", "contact_sheet", "hash_video"]
