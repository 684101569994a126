"""Tests for dignity.media: every format and pixel mode, orientation, limits and hostile input.

Every fixture is synthesised here with Pillow or by hand (a few PNG and TIFF files Pillow
cannot write), so the expected pixels are known exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import struct
import time
import warnings
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from PIL import ExifTags, Image, ImageFile

from dignity import media
from dignity.errors import MediaError
from dignity.media import Media, decode, read_limits
from dignity.settings import Settings

LIMITS: dict[str, Any] = {"max_bytes": 50 * 1024 * 1024, "max_pixels": 100_000_000}
RNG_SEED = 20240601


# --- builders ---------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def noise(width: int, height: int, seed: int = RNG_SEED) -> NDArray[np.uint8]:
    """Random RGB pixels: asymmetric, so any wrong flip or turn shows."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def gradient(width: int, height: int) -> NDArray[np.uint8]:
    """A smooth image that lossy codecs keep close to the original."""
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = (np.arange(width) * 255 // max(1, width - 1)).astype(np.uint8)[None, :]
    pixels[..., 1] = (np.arange(height) * 255 // max(1, height - 1)).astype(np.uint8)[:, None]
    pixels[..., 2] = 128
    return pixels


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, rows: list[bytes]) -> bytes:
    """A PNG written by hand, for the 16-bit colour layouts Pillow cannot save."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def tiff_bytes(
    width: int,
    height: int,
    bits: tuple[int, ...],
    photometric: int,
    pixels: bytes,
    extra_samples: int | None = None,
) -> bytes:
    """A little-endian, single-strip, uncompressed TIFF, for layouts Pillow cannot save."""
    short, long_ = 3, 4
    tags: dict[int, tuple[int, list[int]]] = {
        256: (long_, [width]),
        257: (long_, [height]),
        258: (short, list(bits)),
        259: (short, [1]),
        262: (short, [photometric]),
        273: (long_, [0]),  # strip offset, filled in below
        277: (short, [len(bits)]),
        278: (long_, [height]),
        279: (long_, [len(pixels)]),
    }
    if extra_samples is not None:
        tags[338] = (short, [extra_samples])
    overflow_at = 8 + 2 + 12 * len(tags) + 4
    overflow = b""
    if 2 * len(bits) > 4:
        overflow = struct.pack(f"<{len(bits)}H", *bits)
    tags[273] = (long_, [overflow_at + len(overflow)])
    ifd = struct.pack("<H", len(tags))
    for tag, (kind, values) in sorted(tags.items()):
        packed = struct.pack(f"<{len(values)}{'H' if kind == short else 'I'}", *values)
        value = packed.ljust(4, b"\x00") if len(packed) <= 4 else struct.pack("<I", overflow_at)
        ifd += struct.pack("<HHI", tag, kind, len(values)) + value
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00\x00\x00\x00" + overflow + pixels


def with_png_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite a PNG's IHDR to declare another size, with a valid CRC: a decompression bomb."""
    ihdr = struct.pack(">II", width, height) + data[24:29]
    return data[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + data[33:]


def exif_with(orientation: int | None = None, **tags: Any) -> Image.Exif:
    exif = Image.Exif()
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    for name, value in tags.items():
        exif[ExifTags.Base[name]] = value
    return exif


def refused(data: bytes, code: str, **kwargs: Any) -> MediaError:
    with pytest.raises(MediaError) as caught:
        decode(data, **(LIMITS | kwargs))
    assert caught.value.code == code, caught.value
    assert "\n" not in caught.value.message
    return caught.value


def gray_values(result: Media) -> list[int]:
    """The single channel of a gray result, after checking the three channels agree."""
    pixels = result.pixels
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    return [int(v) for v in pixels[..., 0].ravel()]


def rgb_values(result: Media) -> list[tuple[int, int, int]]:
    return [(int(r), int(g), int(b)) for r, g, b in result.pixels.reshape(-1, 3)]


# --- formats ----------------------------------------------------------------------------------

LOSSLESS: dict[str, dict[str, Any]] = {
    "PNG": {},
    "BMP": {},
    "TIFF": {},
    "WEBP": {"lossless": True},
}


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_each_format_decodes_with_its_size(fmt: str) -> None:
    original = gradient(37, 23)
    result = decode(encode(Image.fromarray(original), fmt, **LOSSLESS.get(fmt, {})), **LIMITS)

    assert (result.width, result.height, result.format) == (37, 23, fmt)
    assert result.pixels.shape == (23, 37, 3)
    assert result.pixels.dtype == np.uint8
    assert result.pixels.flags.c_contiguous
    assert (result.orientation, result.frames, result.reduced) == (1, 1, False)
    if fmt in LOSSLESS:
        np.testing.assert_array_equal(result.pixels, original)
    else:  # JPEG's chroma subsampling, GIF's 256-colour palette
        assert np.abs(result.pixels.astype(int) - original).mean() < 8


def test_media_is_immutable() -> None:
    result = decode(encode(Image.fromarray(gradient(8, 8)), "PNG"), **LIMITS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.width = 1  # type: ignore[misc]
    with pytest.raises(ValueError):
        result.pixels[0, 0, 0] = 1


def test_mpo_is_reported_as_jpeg_with_its_first_image() -> None:
    first = Image.new("RGB", (16, 16), (200, 0, 0))
    second = Image.new("RGB", (16, 16), (0, 0, 200))
    data = encode(first, "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(data)).format == "MPO"

    result = decode(data, **LIMITS)

    assert (result.format, result.frames) == ("JPEG", 2)
    assert np.abs(result.pixels.astype(int) - (200, 0, 0)).max() < 8


@pytest.mark.parametrize(
    ("fmt", "params"),
    [("GIF", {}), ("WEBP", {"lossless": True}), ("TIFF", {})],
)
def test_animation_and_pages_decode_the_first_frame(fmt: str, params: dict[str, Any]) -> None:
    colours = [(200, 0, 0), (0, 200, 0), (0, 0, 200)]
    frames = [Image.new("RGB", (12, 10), colour) for colour in colours]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], **params)

    result = decode(data, **LIMITS)

    assert result.frames == 3
    assert (result.width, result.height) == (12, 10)
    assert set(rgb_values(result)) == {(200, 0, 0)}


# --- pixel modes ------------------------------------------------------------------------------


def palette_image(mode: str = "P") -> Image.Image:
    image = Image.new(mode, (3, 1))
    image.putpalette([10, 20, 30, 200, 100, 50, 0, 255, 0] + [0] * (768 - 9))
    for x in range(3):
        image.putpixel((x, 0), x if mode == "P" else (x, 255 if x != 1 else 0))
    return image


def test_mode_1_is_black_and_white() -> None:
    image = Image.new("1", (3, 1))
    image.putpixel((1, 0), 1)
    result = decode(encode(image, "PNG"), **LIMITS)
    assert result.mode == "1"
    assert gray_values(result) == [0, 255, 0]


def test_mode_l() -> None:
    image = Image.frombytes("L", (3, 1), bytes([0, 77, 255]))
    result = decode(encode(image, "PNG"), **LIMITS)
    assert result.mode == "L"
    assert gray_values(result) == [0, 77, 255]


def test_mode_la_drops_alpha_and_keeps_transparent_gray() -> None:
    image = Image.frombytes("LA", (2, 1), bytes([77, 0, 150, 255]))
    result = decode(encode(image, "PNG"), **LIMITS)
    assert result.mode == "LA"
    assert gray_values(result) == [77, 150]


def test_mode_rgba_drops_alpha_instead_of_compositing() -> None:
    image = Image.frombytes("RGBA", (2, 1), bytes([10, 200, 30, 0, 40, 50, 60, 128]))
    result = decode(encode(image, "PNG"), **LIMITS)
    assert result.mode == "RGBA"
    assert rgb_values(result) == [(10, 200, 30), (40, 50, 60)]


def test_mode_p() -> None:
    result = decode(encode(palette_image(), "PNG"), **LIMITS)
    assert result.mode == "P"
    assert rgb_values(result) == [(10, 20, 30), (200, 100, 50), (0, 255, 0)]


@pytest.mark.parametrize(
    ("fmt", "transparency"),
    [("PNG", 1), ("PNG", bytes([255, 0, 128])), ("GIF", 1)],
)
def test_mode_p_with_transparency_keeps_palette_colours(fmt: str, transparency: Any) -> None:
    data = encode(palette_image(), fmt, transparency=transparency)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow warns when P with tRNS goes straight to RGB
        result = decode(data, **LIMITS)
    assert result.mode == "P"
    assert rgb_values(result) == [(10, 20, 30), (200, 100, 50), (0, 255, 0)]


def test_mode_pa_drops_alpha() -> None:
    result = decode(encode(palette_image("PA"), "TIFF"), **LIMITS)
    assert result.mode == "PA"
    assert rgb_values(result) == [(10, 20, 30), (200, 100, 50), (0, 255, 0)]


def test_cmyk_tiff_converts_exactly() -> None:
    image = Image.new("CMYK", (2, 1), (0, 255, 255, 0))
    image.putpixel((1, 0), (0, 0, 0, 255))
    result = decode(encode(image, "TIFF"), **LIMITS)
    assert result.mode == "CMYK"
    assert rgb_values(result) == [(255, 0, 0), (0, 0, 0)]


def test_cmyk_jpeg_with_adobe_inversion_gives_plausible_rgb() -> None:
    image = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red
    image.paste((255, 0, 255, 0), (8, 0, 16, 16))  # pure green on the right half
    data = encode(image, "JPEG", quality=95)
    assert "adobe" in Image.open(io.BytesIO(data)).info  # Photoshop-style inverted CMYK

    result = decode(data, **LIMITS)

    assert result.mode == "CMYK"
    assert np.abs(result.pixels[8, 2].astype(int) - (255, 0, 0)).max() < 16
    assert np.abs(result.pixels[8, 13].astype(int) - (0, 255, 0)).max() < 16


def test_ycbcr_tiff() -> None:
    result = decode(encode(Image.new("YCbCr", (8, 8), (100, 128, 128)), "TIFF"), **LIMITS)
    assert result.mode == "YCbCr"
    assert all(abs(v - 100) <= 2 for v in gray_values(result))


def sixteen_bit_gray(byteorder: str) -> bytes:
    return np.array([[0, 32768, 65535, 300]], dtype=f"{byteorder}u2").tobytes()


@pytest.mark.parametrize(
    ("name", "data", "mode"),
    [
        ("png", png_bytes(4, 1, 16, 0, [sixteen_bit_gray(">")]), "I;16"),
        ("tiff", encode(Image.frombytes("I;16", (4, 1), sixteen_bit_gray("<")), "TIFF"), "I;16"),
        (
            "tiff big-endian",
            encode(Image.frombytes("I;16B", (4, 1), sixteen_bit_gray(">")), "TIFF"),
            "I;16B",
        ),
    ],
)
def test_16_bit_gray_is_scaled_not_clipped(name: str, data: bytes, mode: str) -> None:
    result = decode(data, **LIMITS)
    assert result.mode == mode, name
    assert gray_values(result) == [0, 128, 255, 1]


def test_16_bit_rgb_png_and_alpha_dropped() -> None:
    rgb = np.array([[65535, 32768, 256, 0, 255, 65280]], dtype=">u2").tobytes()
    rgba = np.array([[65535, 32768, 256, 0]], dtype=">u2").tobytes()
    assert rgb_values(decode(png_bytes(2, 1, 16, 2, [rgb]), **LIMITS)) == [
        (255, 128, 1),
        (0, 0, 255),
    ]
    assert rgb_values(decode(png_bytes(1, 1, 16, 6, [rgba]), **LIMITS)) == [(255, 128, 1)]


def test_16_bit_rgb_tiff() -> None:
    samples = np.array([[65535, 32768, 256, 0, 255, 65280]], dtype="<u2").tobytes()
    result = decode(tiff_bytes(2, 1, (16, 16, 16), 2, samples), **LIMITS)
    assert rgb_values(result) == [(255, 128, 1), (0, 0, 255)]


def test_premultiplied_gray_alpha_tiff() -> None:
    result = decode(tiff_bytes(2, 1, (8, 8), 1, bytes([100, 255, 40, 255]), 1), **LIMITS)
    assert result.mode == "La"
    assert gray_values(result) == [100, 40]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0, 100, 255], [0, 100, 255]),  # 8-bit data in a 32-bit mode: kept as is
        ([0, 65535, 32768, 70000, -5], [0, 255, 128, 255, 0]),  # 16-bit data: shifted
    ],
)
def test_mode_i_is_judged_by_its_range(values: list[int], expected: list[int]) -> None:
    image = Image.fromarray(np.array([values], dtype=np.int32))
    result = decode(encode(image, "TIFF"), **LIMITS)
    assert result.mode == "I"
    assert gray_values(result) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.0, 0.5, 1.0, 0.25], [0, 128, 255, 64]),  # unit range: scaled
        ([-3.0, 12.4, 300.0, float("nan")], [0, 12, 255, 0]),  # anything else: clipped
    ],
)
def test_mode_f(values: list[float], expected: list[int]) -> None:
    image = Image.fromarray(np.array([values], dtype=np.float32))
    result = decode(encode(image, "TIFF"), **LIMITS)
    assert result.mode == "F"
    assert gray_values(result) == expected


# --- orientation ------------------------------------------------------------------------------

# What to do to the upright picture so that a viewer applying the tag shows it upright again.
STORED_AS: dict[int, Image.Transpose | None] = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", sorted(STORED_AS))
@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_exif_orientation_gives_the_upright_pixels(fmt: str, orientation: int) -> None:
    upright = noise(7, 5)
    method = STORED_AS[orientation]
    stored = Image.fromarray(upright)
    if method is not None:
        stored = stored.transpose(method)
    data = encode(stored, fmt, exif=exif_with(orientation), **LOSSLESS[fmt])

    result = decode(data, **LIMITS)

    assert result.orientation == orientation
    assert (result.width, result.height) == (7, 5)
    assert result.pixels.flags.c_contiguous
    np.testing.assert_array_equal(result.pixels, upright)


@pytest.mark.parametrize("value", [0, 9, 65535])
def test_out_of_range_orientation_is_ignored(value: int) -> None:
    upright = noise(7, 5)
    data = encode(Image.fromarray(upright), "PNG", exif=exif_with(value))
    result = decode(data, **LIMITS)
    assert result.orientation == 1
    np.testing.assert_array_equal(result.pixels, upright)


def test_huge_exif_description_decodes() -> None:
    exif = exif_with(3, ImageDescription="A" * 60_000)
    data = encode(Image.fromarray(gradient(16, 8)), "JPEG", exif=exif)
    assert len(data) > 60_000
    result = decode(data, **LIMITS)
    assert (result.orientation, result.width, result.height) == (3, 16, 8)


def test_huge_exif_user_comment_decodes() -> None:
    exif = exif_with(6)
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] = b"ASCII\0\0\0" + b"u" * 60_000
    data = encode(Image.fromarray(gradient(16, 8)), "JPEG", exif=exif)
    result = decode(data, **LIMITS)
    assert (result.orientation, result.width, result.height) == (6, 8, 16)


def test_megabytes_of_exif_in_png_decode() -> None:
    exif = exif_with(8, ImageDescription="B" * 1_000_000)
    result = decode(encode(Image.fromarray(gradient(16, 8)), "PNG", exif=exif), **LIMITS)
    assert (result.orientation, result.width, result.height) == (8, 8, 16)


GARBAGE_EXIF = [
    b"Exif\x00\x00" + noise(50, 50).tobytes()[:5000],
    b"Exif\x00\x00II*\x00\xff\xff\xff\x7f",  # first IFD far past the end
    b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff",  # 65535 entries promised, none there
    b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x05\x00\x01\x00\x00\x00\x99\x99\x00\x00",
    noise(40, 40).tobytes()[:3000],  # no header at all
]


@pytest.mark.parametrize("blob", GARBAGE_EXIF, ids=range(len(GARBAGE_EXIF)))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_garbage_exif_means_no_orientation(fmt: str, blob: bytes) -> None:
    data = encode(Image.fromarray(gradient(16, 8)), fmt, exif=blob)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = decode(data, **LIMITS)
    assert (result.orientation, result.width, result.height) == (1, 16, 8)


# --- JPEG draft decoding ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    return encode(Image.fromarray(gradient(4000, 3000)), "JPEG", quality=90)


def test_draft_decodes_jpeg_at_a_reduced_scale(big_jpeg: bytes) -> None:
    result = decode(big_jpeg, min_size=512, **LIMITS)

    assert result.reduced
    assert (result.width, result.height) == (4000, 3000)
    height, width, _ = result.pixels.shape
    assert height >= 512 and width >= 512
    assert height * width <= 4000 * 3000 // 4
    assert (height, width) == (750, 1000)  # 1/4: 1/8 would leave 375 rows
    assert abs(float(result.pixels.mean()) - float(gradient(1000, 750).mean())) < 2


def test_without_min_size_jpeg_decodes_in_full(big_jpeg: bytes) -> None:
    result = decode(big_jpeg, **LIMITS)
    assert not result.reduced
    assert result.pixels.shape == (3000, 4000, 3)


@pytest.mark.parametrize("min_size", [3000, 5000])
def test_draft_never_goes_below_min_size(big_jpeg: bytes, min_size: int) -> None:
    result = decode(big_jpeg, min_size=min_size, **LIMITS)
    assert not result.reduced
    assert result.pixels.shape == (3000, 4000, 3)


def test_draft_with_orientation_reports_the_turned_full_size() -> None:
    data = encode(Image.fromarray(gradient(2048, 1536)), "JPEG", exif=exif_with(6))
    result = decode(data, min_size=256, **LIMITS)
    assert result.reduced
    assert (result.width, result.height, result.orientation) == (1536, 2048, 6)
    assert result.pixels.shape == (512, 384, 3)


def test_min_size_leaves_other_formats_alone() -> None:
    result = decode(encode(Image.fromarray(gradient(640, 480)), "PNG"), min_size=64, **LIMITS)
    assert not result.reduced
    assert result.pixels.shape == (480, 640, 3)


# --- refusals ---------------------------------------------------------------------------------


def test_empty() -> None:
    refused(b"", "media.empty")


def test_text_is_not_an_image() -> None:
    refused(
        b"I am a sentence, not a picture, and no decoder should think otherwise.\n",
        "media.not_an_image",
    )


def test_too_many_bytes_are_refused_unread() -> None:
    data = encode(Image.fromarray(gradient(32, 32)), "PNG")
    error = refused(data, "media.too_large", max_bytes=len(data) - 1)
    assert error.detail == {"size": len(data), "limit": len(data) - 1}
    refused(b"\x00" * 101, "media.too_large", max_bytes=100)  # not parsed: not "not an image"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
@pytest.mark.parametrize("keep", [0.5, 0.9, 40])
def test_truncated_files(fmt: str, keep: float) -> None:
    data = encode(Image.fromarray(noise(64, 48)), fmt)
    cut = int(len(data) * keep) if keep < 1 else int(keep)
    error = refused(data[:cut], "media.truncated")
    assert error.detail["format"] == fmt


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "WEBP"])
def test_frames_cut_after_the_first_are_truncated(fmt: str) -> None:
    frames = [Image.fromarray(noise(32, 24, seed)) for seed in range(4)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:])
    assert decode(data, **LIMITS).frames == 4
    refused(data[: int(len(data) * 0.3)], "media.truncated")  # the first frame is all there


def test_damaged_png_is_corrupt() -> None:
    data = bytearray(encode(Image.fromarray(noise(64, 48)), "PNG"))
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    refused(bytes(data), "media.corrupt")


def test_png_bomb_is_refused_from_its_header_at_once() -> None:
    bomb = with_png_size(encode(Image.new("1", (8, 8)), "PNG"), 40000, 40000)
    started = time.perf_counter()
    error = refused(bomb, "media.too_many_pixels")
    assert time.perf_counter() - started < 0.5
    assert error.detail == {"width": 40000, "height": 40000, "limit": 100_000_000}


def test_pillow_bomb_warning_does_not_leak() -> None:
    # 120 MP: past Pillow's warning threshold (~89 MP) but short of its error (~179 MP).
    data = with_png_size(encode(Image.new("1", (8, 8)), "PNG"), 12000, 10000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        error = refused(data, "media.too_many_pixels")
    assert error.detail == {"width": 12000, "height": 10000, "limit": 100_000_000}


def test_pixel_limit_is_ours() -> None:
    data = encode(Image.fromarray(gradient(64, 32)), "PNG")
    error = refused(data, "media.too_many_pixels", max_pixels=2047)
    assert error.detail == {"width": 64, "height": 32, "limit": 2047}
    assert decode(data, max_bytes=len(data), max_pixels=2048).pixels.shape == (32, 64, 3)


def patch_header(fmt: str, data: bytes) -> bytes:
    """Declare a huge size in the header of a small, valid file."""
    out = bytearray(data)
    if fmt == "GIF":
        out[6:10] = struct.pack("<HH", 65535, 65535)
    elif fmt == "BMP":
        out[18:26] = struct.pack("<ii", 60000, 60000)
    elif fmt == "JPEG":
        sof = out.index(b"\xff\xc0")
        out[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)
    elif fmt == "WEBP":
        assert out[12:16] == b"VP8X"
        out[24:30] = (16383 - 1).to_bytes(3, "little") * 2
    elif fmt == "TIFF":
        ifd = struct.unpack_from("<I", out, 4)[0]
        for entry in range(struct.unpack_from("<H", out, ifd)[0]):
            at = ifd + 2 + 12 * entry
            if struct.unpack_from("<H", out, at)[0] in (256, 257):
                out[at + 2 : at + 12] = struct.pack("<HII", 4, 1, 100000)
    return bytes(out)


@pytest.mark.parametrize(
    ("fmt", "size"),
    [
        ("GIF", (65535, 65535)),
        ("BMP", (60000, 60000)),
        ("JPEG", (60000, 60000)),
        ("WEBP", (16383, 16383)),
        ("TIFF", (100000, 100000)),
    ],
)
def test_huge_headers_of_other_formats(fmt: str, size: tuple[int, int]) -> None:
    params = {"exif": exif_with(1)} if fmt == "WEBP" else {}  # EXIF makes libwebp write VP8X
    data = patch_header(fmt, encode(Image.new("RGB", (16, 16)), fmt, **params))
    started = time.perf_counter()
    error = refused(data, "media.too_many_pixels")
    assert time.perf_counter() - started < 0.5
    assert (error.detail["width"], error.detail["height"]) == size


def test_pillow_refusal_caps_a_higher_limit() -> None:
    bomb = with_png_size(encode(Image.new("1", (8, 8)), "PNG"), 40000, 40000)
    error = refused(bomb, "media.too_many_pixels", max_pixels=10**10)
    assert Image.MAX_IMAGE_PIXELS is not None
    assert error.detail["limit"] == 2 * Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("ICO", lambda: encode(Image.new("RGB", (32, 32)), "ICO")),
        ("PDF", lambda: encode(Image.new("RGB", (32, 32)), "PDF")),
        ("PPM", lambda: encode(Image.new("RGB", (32, 32)), "PPM")),  # Pillow reads it; we don't
        ("SVG", lambda: b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>'),
    ],
)
def test_unsupported_formats_are_named(name: str, build: Callable[[], bytes]) -> None:
    error = refused(build(), "media.unsupported_format")
    assert error.detail == {"format": name}


# --- settings and Pillow globals --------------------------------------------------------------


def test_read_limits() -> None:
    assert read_limits(Settings(max_bytes=123, max_pixels=456)) == (123, 456)


def test_limits_default_to_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media, "get_settings", lambda: Settings(max_bytes=1000, max_pixels=100))
    data = encode(Image.fromarray(noise(64, 32)), "PNG")
    assert len(data) > 1000
    with pytest.raises(MediaError) as caught:
        decode(data)
    assert caught.value.detail == {"size": len(data), "limit": 1000}
    with pytest.raises(MediaError) as caught:
        decode(data, max_bytes=len(data))
    assert caught.value.detail == {"width": 64, "height": 32, "limit": 100}


def test_pillow_globals_are_left_alone(big_jpeg: bytes) -> None:
    before = (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS)
    for data in (big_jpeg[: len(big_jpeg) // 2], big_jpeg, b"nonsense"):
        with contextlib.suppress(MediaError):
            decode(data, min_size=512, **LIMITS)
    assert before == (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS)


# --- hostile input ----------------------------------------------------------------------------

FUZZ_LIMITS: dict[str, Any] = {"max_bytes": 1 << 20, "max_pixels": 1 << 20}
SIGNATURES = [
    b"",
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"RIFF\x00\x01\x00\x00WEBPVP8 ",
    b"RIFF\x00\x01\x00\x00WEBPVP8X",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
]


def _seed_files() -> list[bytes]:
    image = Image.fromarray(noise(24, 16))
    return [
        encode(image, "JPEG", exif=exif_with(6)),
        encode(image, "JPEG", progressive=True),
        encode(image, "PNG"),
        encode(image.convert("P"), "PNG", transparency=3),
        encode(image, "WEBP"),
        encode(image.convert("RGBA"), "WEBP", lossless=True),
        encode(image, "GIF", save_all=True, append_images=[image.rotate(90)]),
        encode(image, "BMP"),
        encode(image, "TIFF", exif=exif_with(5)),
        encode(image, "TIFF", compression="tiff_lzw"),
        encode(image, "TIFF", compression="tiff_deflate"),
    ]


SEED_FILES = _seed_files()


def decodes_or_refuses(data: bytes) -> None:
    try:
        result = decode(data, **FUZZ_LIMITS)
    except MediaError as error:
        assert error.code.startswith("media."), error
        return
    assert result.pixels.ndim == 3 and result.pixels.shape[2] == 3
    assert result.pixels.dtype == np.uint8 and result.pixels.flags.c_contiguous
    assert result.pixels.shape[:2] == (result.height, result.width)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SIGNATURES), st.binary(max_size=512))
def test_arbitrary_bytes_raise_nothing_but_media_error(signature: bytes, tail: bytes) -> None:
    decodes_or_refuses(signature + tail)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(SEED_FILES),
    st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=6),
    st.floats(0, 1),
)
def test_damaged_images_raise_nothing_but_media_error(
    data: bytes, edits: list[tuple[float, int]], keep: float
) -> None:
    damaged = bytearray(data)
    for where, value in edits:
        damaged[min(len(damaged) - 1, int(where * len(damaged)))] = value
    decodes_or_refuses(bytes(damaged[: max(1, int(keep * len(damaged) * 1.2))]))
