"""Video: streaming decoding with PyAV (:mod:`.decode`), Meta-compatible vPDQ hashing
(:mod:`.vpdq`) and the signals of a video scan (:mod:`.analysis`).

This module only tells videos from images by their first bytes, without decoding anything:
:func:`looks_like_video` knows the containers FFmpeg reads that no image format shares, and
:func:`is_animation` says whether a GIF or WebP holds many frames (a still GIF or WebP stays an
image, hashed by PDQ; an animation is hashed as a video, one frame a second).
"""

from __future__ import annotations

import io
import struct
from typing import Final

__all__ = ["ANIMATION_MIN_FRAMES", "is_animation", "looks_like_video"]

# An animation with at least this many frames is scanned as a video. Two frames already show
# two pictures, and the image path would hash the first one only.
ANIMATION_MIN_FRAMES: Final = 2

# ISO-BMFF brands that are still images (HEIF, AVIF), not videos, although they share "ftyp".
_IMAGE_BRANDS: Final = frozenset(
    {b"avif", b"avis", b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"mif2"}
)
# Top-level QuickTime atoms an old .mov may start with instead of "ftyp".
_QT_ATOMS: Final = frozenset({b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"})
_ASF: Final = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")


def looks_like_video(head: bytes) -> bool:
    """Whether the first bytes (16 or more; 400 lets MPEG-TS be seen) are those of a video
    container: ISO-BMFF (MP4, MOV, M4V, 3GP), Matroska/WebM, AVI, FLV, MPEG-TS/PS, Ogg, ASF.
    GIF and WebP are images here; see :func:`is_animation`."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return head[8:12] not in _IMAGE_BRANDS
    if len(head) >= 8 and head[4:8] in _QT_ATOMS:
        return True
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: Matroska, WebM
        return True
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return True
    if head.startswith((b"FLV\x01", b"OggS", b"\x00\x00\x01\xba", _ASF)):
        return True
    # MPEG transport stream: a sync byte every 188 bytes.
    return len(head) >= 377 and head[0] == head[188] == head[376] == 0x47


def is_animation(data: bytes, min_frames: int = ANIMATION_MIN_FRAMES) -> bool:
    """Whether ``data`` is a GIF or a WebP with at least ``min_frames`` frames, counted from
    the container's structure alone (no pixel is decoded; the walk stops at ``min_frames``)."""
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return _gif_frames(data, min_frames) >= min_frames
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_frames(data, min_frames) >= min_frames
    return False


def _gif_frames(data: bytes, stop: int) -> int:
    """Image descriptors in a GIF, walking its blocks; a malformed file counts what it has."""
    stream = io.BytesIO(data)
    stream.seek(10)
    packed = stream.read(1)
    if not packed:
        return 0
    stream.seek(13)
    if packed[0] & 0x80:  # a global colour table follows the screen descriptor
        stream.seek(3 << ((packed[0] & 7) + 1), io.SEEK_CUR)
    frames = 0
    while frames < stop:
        kind = stream.read(1)
        if kind == b",":  # image descriptor, optional local colour table, LZW data
            desc = stream.read(9)
            if len(desc) < 9:
                return frames
            if desc[8] & 0x80:
                stream.seek(3 << ((desc[8] & 7) + 1), io.SEEK_CUR)
            stream.read(1)  # LZW minimum code size
            frames += 1
            if not _skip_sub_blocks(stream):
                return frames
        elif kind == b"!":  # extension: label, then sub-blocks
            stream.read(1)
            if not _skip_sub_blocks(stream):
                return frames
        else:  # trailer ";", or garbage
            return frames
    return frames


def _skip_sub_blocks(stream: io.BytesIO) -> bool:
    while True:
        size = stream.read(1)
        if not size:
            return False
        if size[0] == 0:
            return True
        stream.seek(size[0], io.SEEK_CUR)


def _webp_frames(data: bytes, stop: int) -> int:
    """ANMF chunks of an animated WebP (a still WebP has none and counts as one frame)."""
    frames = 0
    offset = 12
    while offset + 8 <= len(data) and frames < stop:
        tag = data[offset : offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        if tag == b"ANMF":
            frames += 1
        offset += 8 + size + (size & 1)
    return max(frames, 1)
