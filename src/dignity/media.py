"""Safe decoding of submitted bytes into a :class:`Media` value: RGB pixels plus what we learnt.

Everything a user uploads passes through :func:`decode` before any signal is computed, so this
is where hostile input is stopped: the byte size is checked before anything is parsed, the
pixel count is checked from the header before anything is decompressed, frames and pages are
counted by a capped walk over the container's structure (Pillow's ``n_frames`` is quadratic in
pages: 40k TIFF pages took 13 s), the memory the decode will take is estimated in bytes from the
mode and bit depth before any pixel is read, only six formats' Pillow plugins are ever
consulted, and every failure leaves as a :class:`MediaError` with a stable code. The time a
decode takes is bounded elsewhere: :mod:`dignity.decode_pool` runs risky decodes in a
process it can kill. The pixels follow the conventions of Meta's PDQ reference so that hashes agree
with it: EXIF orientation applied, alpha dropped rather than composited, high bit depths
scaled (not clipped) to 8 bits. JPEGs can be decoded in the DCT domain at a reduced size when
the caller only needs ``min_size`` pixels a side, which is most of the cost of hashing a photo.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import struct
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from PIL import ExifTags, Image, ImageFile, JpegImagePlugin, TiffImagePlugin

from dignity.errors import MediaError, MediaRefused, MediaTooLarge
from dignity.settings import Settings, get_settings

__all__ = ["Media", "count_frames", "decode", "decode_cost", "read_limits", "too_many_frames"]

# Bytes per pixel of Pillow's in-memory storage by mode: every 3- and 4-band mode, and the
# 32-bit I and F, take 4 bytes a pixel; the 16-bit modes 2; the rest 1.
_STORAGE_BYTES: Final = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}

# Rows converted at once from a 16/32-bit or float image to 8 bits: the temporaries stay a few
# MB instead of int64/float copies of the whole image (a 100 MP mode-I TIFF took 2.1 GB).
_BAND_ROWS: Final = 256

# Image.open tries these in order and nothing else. MPO is not listed: Pillow has no opener
# registered under that name (asking for it raises KeyError); the JPEG opener returns MPO
# files itself.
_FORMATS: Final = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")

# Registering the plugins up front keeps Image.open from calling Image.init(), which would
# import every plugin Pillow has (WebP and TIFF are not among those its preinit() loads).
for _plugin in ("Bmp", "Gif", "Jpeg", "Png", "Tiff", "WebP"):
    with contextlib.suppress(ImportError):  # a Pillow built without libwebp still decodes the rest
        importlib.import_module(f"PIL.{_plugin}ImagePlugin")

# Formats we recognise only to say why we refuse them; none of them reaches a Pillow plugin.
_UNSUPPORTED_SIGNATURES: Final[tuple[tuple[int, bytes, str], ...]] = (
    (0, b"\x00\x00\x01\x00", "ICO"),
    (0, b"\x00\x00\x02\x00", "CUR"),
    (0, b"%PDF-", "PDF"),
    (0, b"8BPS", "PSD"),
    (0, b"%!PS", "EPS"),
    (0, b"\xc5\xd0\xd3\xc6", "EPS"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG2000"),
    (0, b"\xff\x4f\xff\x51", "JPEG2000"),
    (0, b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEGXL"),
    (0, b"\xff\x0a", "JPEGXL"),
    (4, b"ftypavif", "AVIF"),
    (4, b"ftypavis", "AVIF"),
    (4, b"ftypheic", "HEIF"),
    (4, b"ftypheix", "HEIF"),
    (4, b"ftyphevc", "HEIF"),
    (4, b"ftypmif1", "HEIF"),
    (4, b"ftypmsf1", "HEIF"),
    (0, b"icns", "ICNS"),
    (0, b"DDS ", "DDS"),
    (0, b"qoif", "QOI"),
    (0, b"gimp xcf", "XCF"),
    (0, b"\xd7\xcd\xc6\x9a", "WMF"),
    (0, b"\x59\xa6\x6a\x95", "SUN"),
    (0, b"\x01\xda", "SGI"),
    (0, b"SIMPLE  =", "FITS"),
    (0, b"BLP1", "BLP"),
    (0, b"BLP2", "BLP"),
)
_PNM_MAGIC: Final = frozenset(b"1234567")

# The EXIF orientation tag's values and the turn that shows each upright, as in exif_transpose.
_TRANSPOSE: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Pillow's messages for a stream that stopped before the image did. "broken data stream" is
# deliberately absent: Pillow reports it for damaged compressed data (a flipped byte in a PNG's
# IDAT), which is corruption, not a short file.
_TRUNCATION_MARKERS: Final = (
    "truncated",
    "end of file",
    "premature end",
    "not enough data",
    "unexpected end",
    "incomplete",
    "requires a buffer",  # struct.unpack ran past the end of the data
)


@dataclass(frozen=True, eq=False)  # eq=False: images compare by identity, not pixel by pixel
class Media:
    """Decoded media: ``image`` is the upright RGB picture; ``pixels`` the same as an array.

    The array is made on first use only: most signals want the Pillow image (PDQ samples 512 px
    from it in C), and turning a 12 MP photo into an array costs a third of decoding it.
    """

    image: Image.Image
    width: int
    height: int
    format: str
    mode: str
    orientation: int
    frames: int
    reduced: bool
    # The bytes as uploaded and the container's metadata as Pillow read it (PNG text chunks,
    # ``exif``, ``xmp``, ...), for the signals that read what the file says about itself.
    data: bytes = b""
    info: Mapping[str, Any] = field(default_factory=dict)

    @cached_property
    def pixels(self) -> NDArray[np.uint8]:
        """Read-only C-contiguous H x W x 3 uint8 RGB array of ``image``."""
        array = np.asarray(self.image, dtype=np.uint8)
        array.flags.writeable = False
        return array


def read_limits(settings: Settings) -> tuple[int, int]:
    """The ``(max_bytes, max_pixels)`` pair that :func:`decode` enforces under ``settings``."""
    return settings.max_bytes, settings.max_pixels


def decode(
    data: bytes,
    *,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
    min_size: int | None = None,
    reduce_above: int = 0,
    max_frames: int | None = None,
    max_decode_bytes: int | None = None,
) -> Media:
    """Decode ``data`` into RGB pixels, refusing anything too big, unsupported or damaged.

    ``max_bytes``, ``max_pixels``, ``max_frames`` (frames or pages in the file) and
    ``max_decode_bytes`` (the memory the decode may take, estimated before it starts by
    :func:`decode_cost`) default to the process settings. With ``min_size``, a JPEG
    may be decoded at 1/2, 1/4 or 1/8 scale as long as both sides stay at least ``min_size``
    (``reduced`` then says so); ``width`` and ``height`` always describe the full image.
    ``reduce_above`` keeps images of that many pixels or fewer at full size even so.
    Raises :class:`MediaError` (``media.*`` codes) and nothing else for bad input.
    """
    if max_bytes is None or max_pixels is None or max_frames is None or max_decode_bytes is None:
        settings = get_settings()
        default_bytes, default_pixels = read_limits(settings)
        max_bytes = default_bytes if max_bytes is None else max_bytes
        max_pixels = default_pixels if max_pixels is None else max_pixels
        max_frames = settings.max_frames if max_frames is None else max_frames
        max_decode_bytes = (
            settings.max_decode_bytes if max_decode_bytes is None else max_decode_bytes
        )

    size = len(data)
    if size == 0:
        raise MediaRefused("The file is empty.", code="media.empty")
    if size > max_bytes:
        raise MediaTooLarge(
            f"The file is {size} bytes, more than the {max_bytes} accepted.",
            code="media.too_large",
            size=size,
            limit=max_bytes,
        )

    # catch_warnings() rather than Pillow's globals: our own limit replaces its bomb warning,
    # and its UserWarnings about odd metadata in untrusted files are log noise, not our bugs.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.simplefilter("ignore", UserWarning)
        # Counted before Pillow sees the file, from the structure alone and stopping one past
        # the limit: a 1.1 MB TIFF holds 10k pages, a 50 MB one 450k.
        walked = count_frames(data, max_frames + 1)
        if walked is not None and walked[0] > max_frames:
            raise too_many_frames(max_frames)
        stream = _ShortReadStream(data)
        image = _open(stream, data, max_pixels)
        # Not closed: Pillow's close() frees the pixels, and the RGB image we return may be
        # this very object. The stream is in memory, so no file handle is held.
        return _read(
            image,
            stream,
            data,
            max_pixels,
            min_size,
            reduce_above,
            walked,
            max_frames,
            max_decode_bytes,
        )


def _open(stream: _ShortReadStream, data: bytes, max_pixels: int) -> ImageFile.ImageFile:
    try:
        return Image.open(stream, formats=_FORMATS)
    except Image.DecompressionBombError as exc:
        # Pillow refuses past 2 x MAX_IMAGE_PIXELS inside open(), before we see the size.
        raise _too_many_pixels(_header_size(data), max_pixels) from exc
    except MemoryError:
        raise
    except Exception as exc:  # UnidentifiedImageError, but also EOFError, OSError, ValueError...
        raise _diagnose(data, exc) from exc


def _read(
    image: ImageFile.ImageFile,
    stream: _ShortReadStream,
    data: bytes,
    max_pixels: int,
    min_size: int | None,
    reduce_above: int,
    walked: tuple[int, bool] | None,
    max_frames: int,
    max_decode_bytes: int,
) -> Media:
    fmt = image.format or "unknown"
    if fmt == "MPO":  # a JPEG with more JPEGs appended (stereo pairs, phone depth maps)
        fmt = "JPEG"
    width, height = image.size
    if width * height > max_pixels:
        raise _too_many_pixels((width, height), max_pixels)
    if width == 0 or height == 0:
        raise MediaRefused(f"The {fmt} image has no pixels.", code="media.corrupt", format=fmt)
    mode = image.mode
    try:
        reduced = False
        if (
            min_size is not None
            and width * height > reduce_above
            and isinstance(image, JpegImagePlugin.JpegImageFile)
        ):
            side = max(1, min_size)
            # A square request: the guarantee holds whichever way the orientation turns it.
            image.draft("RGB", (side, side))
            reduced = image.size != (width, height)
        # Recent Pillow turns TIFFs itself while loading (size included) and then drops the
        # tag, so the tag is read before and after: each image is turned exactly once.
        stored = _orientation(image) if isinstance(image, TiffImagePlugin.TiffImageFile) else None
        # PNG's and WebP's getexif() load the whole image: only JPEG's and TIFF's turn is
        # known beforehand (the others' turn is within the budget's slack).
        is_jpeg = isinstance(image, JpegImagePlugin.JpegImageFile)
        turn_before = stored or (_orientation(image) if is_jpeg else 1)
        cost = decode_cost(image, (width, height), turn_before, len(data))
        if cost > max_decode_bytes:
            raise MediaTooLarge(
                f"Decoding this {fmt} image ({width} x {height}, mode {mode}) would take about "
                f"{cost >> 20} MiB, more than the {max_decode_bytes >> 20} MiB allowed.",
                code="media.too_costly",
                format=fmt,
                mode=mode,
                cost=cost,
                limit=max_decode_bytes,
            )
        image.load()
        orientation = _orientation(image)
        turn = orientation
        if stored is not None and stored != orientation:
            orientation, turn = stored, 1
        # Turned before the conversion: Pillow's transpose is blocked C, several times faster
        # than a strided numpy copy, and a palette image has a quarter of RGB's bytes to move.
        upright = image if turn == 1 else image.transpose(_TRANSPOSE[turn])
        try:
            rgb = _to_rgb(upright)
        except ValueError as exc:  # Pillow: "conversion from X to Y not supported"
            raise MediaRefused(
                f"{fmt} images in mode {mode} are not supported.",
                code="media.unsupported_format",
                format=fmt,
                mode=mode,
            ) from exc
    except MediaError:
        raise
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels((width, height), max_pixels) from exc
    except MemoryError:
        raise
    except Exception as exc:
        raise _failure(exc, data, fmt) from exc

    if walked is not None:
        # The walk before decoding counted them; one that ran off the end of the data means the
        # file was cut after its first frame.
        frames, ran_out = walked
        if ran_out:
            raise _failure(None, data, fmt, ran_out=True)
    else:
        # PNG (APNG's acTL) and MPO say their frame count in a header: no walk needed. Asked
        # after decoding, as seeking may re-arm the first frame's decoder.
        stream.ran_out = False
        try:
            frames = int(getattr(image, "n_frames", 1))
        except MemoryError:
            raise
        except Exception as exc:
            raise _failure(exc, data, fmt, ran_out=stream.ran_out) from exc
        if frames > max_frames:
            raise too_many_frames(max_frames)

    if turn >= 5:
        width, height = height, width
    return Media(
        image=rgb,
        width=width,
        height=height,
        format=fmt,
        mode=mode,
        orientation=orientation,
        frames=frames,
        reduced=reduced,
        data=data,
        info={str(k): v for k, v in image.info.items()},
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "I" or mode == "F" or mode.startswith("I;16"):
        return Image.fromarray(_gray_to_8bit(image)).convert("RGB")
    if mode == "La":  # premultiplied, from TIFF; Pillow converts it to nothing but LA
        image = image.convert("LA")
    elif mode == "PA" or (mode == "P" and "transparency" in image.info):
        # Through RGBA, as Pillow asks for palettes with transparency; the alpha is dropped.
        image = image.convert("RGBA")
    if image.mode != "RGB":
        # Pillow's RGBA/LA -> RGB keeps the colour of transparent pixels, as the PDQ
        # reference does; compositing on a background would change the hash.
        image = image.convert("RGB")
    return image


def _bands(image: Image.Image) -> Iterator[tuple[int, NDArray[Any]]]:
    """``image`` as row bands of at most ``_BAND_ROWS`` rows, each a small writable array:
    ``np.asarray(image)`` would copy the whole image (through ``tobytes``) at once."""
    width, height = image.size
    for top in range(0, height, _BAND_ROWS):
        bottom = min(height, top + _BAND_ROWS)
        yield top, np.array(image.crop((0, top, width, bottom)))


def _gray_to_8bit(image: Image.Image) -> NDArray[np.uint8]:
    # Pillow's own convert() clips 16-bit values at 255, turning most of an image white.
    mode = image.mode
    width, height = image.size
    out = np.empty((height, width), dtype=np.uint8)
    if mode.startswith("I;16"):
        for top, band in _bands(image):
            out[top : top + band.shape[0]] = band.astype(np.uint16, copy=False) >> 8
        return out
    if mode == "F":
        # Two passes: the first finds whether the values are 0..1 (scaled to 0..255) or not.
        unit = True
        for _, band in _bands(image):
            floats = _finite(band)
            if floats.size and (floats.min() < 0.0 or floats.max() > 1.0):
                unit = False
                break
        for top, band in _bands(image):
            floats = _finite(band)
            if unit:
                floats *= 255.0
            np.clip(floats, 0.0, 255.0, out=floats)
            out[top : top + band.shape[0]] = np.rint(floats)
        return out
    # Mode I carries 8-bit, 16-bit and 32-bit data alike; its range is the only hint.
    # getextrema() runs in C over the image without a copy.
    extrema = image.getextrema()
    high = extrema[1] if isinstance(extrema, tuple) else 0
    shift = isinstance(high, (int, float)) and high > 255
    for top, band in _bands(image):
        ints = band.astype(np.int32, copy=False)
        if shift:
            ints >>= 8
        np.clip(ints, 0, 255, out=ints)
        out[top : top + band.shape[0]] = ints
    return out


def _finite(band: NDArray[Any]) -> NDArray[np.float32]:
    floats = band.astype(np.float32, copy=False)
    return np.nan_to_num(floats, copy=False, nan=0.0, posinf=255.0, neginf=0.0)


def decode_cost(
    image: Image.Image, full_size: tuple[int, int], orientation: int = 1, data_size: int = 0
) -> int:
    """The bytes decoding ``image`` (opened, not loaded; after any JPEG draft) to RGB takes at
    its peak, from its mode and size: Pillow keeps 4 bytes a pixel for every 3- and 4-band mode
    and for I/F, 2 for 16-bit; a conversion holds the source and the RGB result at once (and
    the 8-bit gray step for I/F/16-bit); an EXIF turn copies the source; a progressive JPEG
    keeps all its DCT coefficients (see :func:`_coefficient_bytes`)."""
    width, height = image.size
    pixels = width * height
    mode = image.mode
    source = _STORAGE_BYTES.get(mode, 4) * pixels
    cost = source + data_size  # libtiff and others read the whole file into a buffer of their own
    if orientation != 1:
        cost += source
    if mode == "I" or mode == "F" or mode.startswith("I;16"):
        # The 8-bit gray image, its RGB copy, and the band temporaries (measured: a 5000 x 5000
        # mode-I TIFF peaked at 220 MiB, 3% over the images alone).
        cost += pixels + 4 * pixels + 16 * _BAND_ROWS * width
    elif mode != "RGB":
        cost += 4 * pixels
        if mode in ("PA", "La") or (mode == "P" and "transparency" in image.info):
            cost += 4 * pixels  # through RGBA (or LA) first
    if isinstance(image, JpegImagePlugin.JpegImageFile) and image.info.get("progressive"):
        cost += _coefficient_bytes(image, full_size)
    return cost


def _coefficient_bytes(image: JpegImagePlugin.JpegImageFile, size: tuple[int, int]) -> int:
    """What libjpeg holds for a progressive JPEG: every 8x8 block's 64 coefficients, 2 bytes
    each, per component at its own sampling (4:2:0 chroma has a quarter of the blocks), for the
    full image whatever the draft scale."""
    layers = getattr(image, "layer", None) or [(0, 1, 1, 0)] * len(image.getbands())
    h_max = max(int(layer[1]) for layer in layers) or 1
    v_max = max(int(layer[2]) for layer in layers) or 1
    width, height = size
    total = 0
    for _, h, v, _ in layers:
        blocks_x = -(-width * int(h) // (h_max * 8))
        blocks_y = -(-height * int(v) // (v_max * 8))
        total += blocks_x * blocks_y * 64 * 2
    return total


def count_frames(data: bytes | memoryview, cap: int) -> tuple[int, bool] | None:
    """``(frames, ran_out)`` of a GIF, TIFF or WebP counted from its structure, stopping at
    ``cap``; ``ran_out`` says the walk went past the end of ``data`` (the file was cut).
    None for the formats that state their count in a header (PNG, JPEG/MPO) or none (BMP)."""
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return _gif_frames(data, cap)
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _tiff_pages(data, cap)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_frames(data, cap)
    return None


def _gif_frames(data: bytes | memoryview, cap: int) -> tuple[int, bool]:
    size = len(data)
    if size < 13:
        return 0, True
    pos = 13
    if data[10] & 0x80:  # a global colour table follows the screen descriptor
        pos += 3 << ((data[10] & 7) + 1)
    frames = 0
    while frames < cap:
        if pos >= size:
            return frames, True
        kind = data[pos]
        if kind == 0x2C:  # "," image descriptor, optional local colour table, LZW data
            if pos + 10 > size:
                return frames, True
            packed = data[pos + 9]
            pos += 10
            if packed & 0x80:
                pos += 3 << ((packed & 7) + 1)
            pos += 1  # LZW minimum code size
            frames += 1
        elif kind == 0x21:  # "!" extension: label, then sub-blocks
            pos += 2
        else:  # trailer ";", or garbage after the last frame (Pillow stops there too)
            return frames, False
        while True:  # sub-blocks, up to the empty one
            if pos >= size:
                return frames, True
            length = data[pos]
            pos += 1 + length
            if length == 0:
                break
    return frames, False


def _tiff_pages(data: bytes | memoryview, cap: int) -> tuple[int, bool]:
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    size = len(data)
    try:
        offset = struct.unpack_from(order + ("Q" if big else "I"), data, 8 if big else 4)[0]
    except struct.error:
        return 0, True
    pages = 0
    seen: set[int] = set()
    while offset and pages < cap:
        if offset in seen:  # a loop of IFDs: Pillow stops at the repeat as well
            break
        seen.add(offset)
        try:
            if big:
                (count,) = struct.unpack_from(order + "Q", data, offset)
                offset = struct.unpack_from(order + "Q", data, offset + 8 + 20 * count)[0]
            else:
                (count,) = struct.unpack_from(order + "H", data, offset)
                offset = struct.unpack_from(order + "I", data, offset + 2 + 12 * count)[0]
        except struct.error:
            return pages + 1 if pages == 0 else pages, True
        pages += 1
        if offset >= size:
            return pages, True
    return pages, False


def _webp_frames(data: bytes | memoryview, cap: int) -> tuple[int, bool]:
    frames = 0
    offset = 12
    size = len(data)
    while offset + 8 <= size and frames < cap:
        (length,) = struct.unpack_from("<I", data, offset + 4)
        if data[offset : offset + 4] == b"ANMF":
            frames += 1
        offset += 8 + length + (length & 1)
    ran_out = offset > size and frames < cap
    return max(frames, 1), ran_out


def too_many_frames(limit: int) -> MediaError:
    """The refusal of a file holding more than ``limit`` frames or pages."""
    return MediaTooLarge(
        f"The file holds more than the {limit} frames or pages accepted.",
        code="media.too_many_frames",
        limit=limit,
    )


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # EXIF is untrusted metadata: unreadable means "as stored"
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _allowed_format(data: bytes) -> str | None:
    """The first of our formats whose Pillow signature check accepts ``data``, if any."""
    prefix = data[:16]
    for fmt in _FORMATS:
        entry = Image.OPEN.get(fmt)
        if entry is None:
            continue
        accept = entry[1]
        result = True if accept is None else accept(prefix)
        if result and not isinstance(result, str):
            return fmt
    return None


def _unsupported_format(data: bytes) -> str | None:
    for offset, magic, name in _UNSUPPORTED_SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return name
    if len(data) >= 3 and data[0:1] == b"P" and data[1] in _PNM_MAGIC and data[2] in b" \t\r\n":
        return "PPM"
    if len(data) >= 44 and data[:4] == b"\x01\x00\x00\x00" and data[40:44] == b" EMF":
        return "EMF"
    head = data[:4096].removeprefix(b"\xef\xbb\xbf").lstrip()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "SVG"
    return None


def _header_size(data: bytes) -> tuple[int, int] | None:
    """The declared size, read by calling the plugin directly to bypass Pillow's bomb check."""
    fmt = _allowed_format(data)
    if fmt is None:
        return None
    try:
        with Image.OPEN[fmt][0](io.BytesIO(data), "") as image:
            return image.size
    except Exception:
        # WebP's opener runs the bomb check itself, so its header is read here instead.
        return _webp_size(data) if fmt == "WEBP" else None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        return width, int.from_bytes(data[27:30], "little") + 1
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    return None


class _ShortReadStream(io.BytesIO):
    """A stream that remembers whether a read came back short, i.e. the file ran out."""

    ran_out = False

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        if size is not None and size > 0 and len(chunk) < size:
            self.ran_out = True
        return chunk


def _diagnose(data: bytes, exc: Exception | None = None) -> MediaError:
    """Why Image.open refused ``data``: not an image, not one of ours, short, or damaged."""
    fmt = _allowed_format(data)
    if fmt is None:
        unsupported = _unsupported_format(data)
        if unsupported is None:
            return MediaRefused("The file is not an image.", code="media.not_an_image")
        return MediaRefused(
            f"{unsupported} files are not accepted; send JPEG, PNG, WebP, GIF, BMP or TIFF.",
            code="media.unsupported_format",
            format=unsupported,
        )
    # One of our signatures, yet the header did not parse. Image.open swallows the plugin's
    # own error, so ask the plugin once more, directly, on a stream that notices the end.
    stream = _ShortReadStream(data)
    try:
        with Image.OPEN[fmt][0](stream, ""):
            pass
    except Exception as direct:
        exc = direct
    return _failure(exc, data, fmt, ran_out=stream.ran_out)


def _failure(
    exc: BaseException | None, data: bytes, fmt: str, *, ran_out: bool = False
) -> MediaError:
    if ran_out or _is_truncation(exc, data, fmt):
        return MediaRefused(
            f"The {fmt} file ends early; it was probably cut off in transfer.",
            code="media.truncated",
            format=fmt,
        )
    return MediaRefused(
        f"The {fmt} file is damaged and cannot be decoded.", code="media.corrupt", format=fmt
    )


def _is_truncation(exc: BaseException | None, data: bytes, fmt: str) -> bool:
    if isinstance(exc, EOFError):
        return True
    if exc is not None and any(marker in str(exc).lower() for marker in _TRUNCATION_MARKERS):
        return True
    # Pillow's message does not always say so (libwebp: "could not create decoder object"),
    # but most of our formats declare their own end.
    if fmt == "JPEG":
        return not data.endswith(b"\xff\xd9")
    if fmt == "PNG":
        return not data.endswith(b"IEND\xaeB`\x82")
    if fmt == "GIF":
        return not data.endswith(b";")
    if fmt == "WEBP" and len(data) >= 8:
        return bool(struct.unpack_from("<I", data, 4)[0] + 8 > len(data))
    if fmt == "BMP" and len(data) >= 6:
        return bool(struct.unpack_from("<I", data, 2)[0] > len(data))
    return False


def _too_many_pixels(size: tuple[int, int] | None, max_pixels: int) -> MediaError:
    limit = max_pixels
    if Image.MAX_IMAGE_PIXELS is not None:
        # Pillow's own refusal, which we must not switch off globally, caps ours.
        limit = min(limit, 2 * Image.MAX_IMAGE_PIXELS)
    if size is None:
        width = height = None
        message = f"The image has more than the {limit} pixels accepted."
    else:
        width, height = size
        message = f"The image is {width} x {height} pixels, more than the {limit} accepted."
    return MediaTooLarge(
        message, code="media.too_many_pixels", width=width, height=height, limit=limit
    )
