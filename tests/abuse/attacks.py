"""Hostile but synthetic files and requests for the abuse suite (issue 18): built byte by byte,
none of them a picture of anything. Sizes are parameters: the suite in ``make test`` uses small
ones, ``make abuse`` (``DIGNITY_ABUSE_FULL=1``) the issue's targets.
"""

from __future__ import annotations

import io
import os
import struct
import zlib

from PIL import Image

FULL = os.environ.get("DIGNITY_ABUSE_FULL") == "1"


def many_page_tiff(pages: int) -> bytes:
    """A little-endian TIFF of ``pages`` 1x1 gray pages sharing one strip byte: ~100 bytes a page,
    so 30k pages are 3 MB (Pillow's n_frames took seconds on such files, quadratically)."""
    entries = 8
    ifd_size = 2 + 12 * entries + 4
    out = bytearray(b"II*\x00")
    first = 8 + 1  # the header, then one pixel byte at offset 8
    out += struct.pack("<I", first)
    out += b"\x80"
    for page in range(pages):
        offset = first + page * ifd_size
        following = offset + ifd_size if page + 1 < pages else 0
        tags = [
            (256, 3, 1, 1),  # ImageWidth
            (257, 3, 1, 1),  # ImageLength
            (258, 3, 1, 8),  # BitsPerSample
            (259, 3, 1, 1),  # Compression: none
            (262, 3, 1, 1),  # Photometric: black is zero
            (273, 4, 1, 8),  # StripOffsets
            (278, 3, 1, 1),  # RowsPerStrip
            (279, 4, 1, 1),  # StripByteCounts
        ]
        out += struct.pack("<H", entries)
        for tag, kind, count, value in tags:
            if kind == 3:
                out += struct.pack("<HHIHH", tag, kind, count, value, 0)
            else:
                out += struct.pack("<HHII", tag, kind, count, value)
        out += struct.pack("<I", following)
    return bytes(out)


def many_frame_gif(frames: int) -> bytes:
    """A 1x1 GIF of ``frames`` frames, 12 bytes each (1M frames: 12 MB)."""
    head = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return head + frame * frames + b";"


def big_tiff(mode: str, width: int, height: int) -> bytes:
    """A deflate TIFF of a flat image in ``mode`` (I, F, I;16): tiny on disk, large in memory."""
    image = Image.new(mode, (width, height), 7)
    buffer = io.BytesIO()
    image.save(buffer, "TIFF", compression="tiff_adobe_deflate")
    return buffer.getvalue()


def png_16bit_rgba(width: int, height: int) -> bytes:
    """A flat 16-bit RGBA PNG written by hand (Pillow does not write 16-bit RGBA)."""
    row = b"\x00" + b"\x10\x00" * 4 * width
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
