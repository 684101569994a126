"""Provenance check: the invisible DWT watermark that Stable Diffusion's reference code embeds.

The reference scripts mark every picture they save with the ``invisible-watermark`` package's
``dwtDct`` method: SD 1.x (CompVis ``scripts/txt2img.py``) the 136 bits of the bytes
``StableDiffusionV1``, SD 2.x (Stability-AI ``stablediffusion``) the 32 bits of ``SDV2``, and
SDXL (Stability-AI ``generative-models`` and diffusers' ``StableDiffusionXLWatermarker``) the
48 bits of 0xB3EC907BB19E. This module re-implements that package's decoder in whole-image
numpy (Pillow for the colour matrix), bit for bit, and reports how many decoded bits agree with
each known payload. What the package does, as read from its 0.2.0 source: OpenCV's BGR->YUV,
only the U plane (its scales are ``[0, 36, 36]`` but it loops over channels 0 and 1 only), one
Haar level's approximation band, cut into 4 x 4 blocks in raster order, block *n* carrying bit
``n % length``; a block's bit is whether the largest magnitude among its 15 non-first
coefficients lies in the upper half of its 36-wide quantisation cell, and each bit is the
majority of its blocks, a tie counting as 1. There is no DCT in this path despite its name.
Two facts of the reference code decide how an image must be read. SD 1.x and 2.x hand the
encoder uint8 BGR, but SDXL code hands it float32 (values 0-255), for which OpenCV centres U
on 0.5 instead of 128: that moves every coefficient and flips or scrambles the bits unless it
is decoded the same way. And diffusers before its PR #7013 (February 2024) and
generative-models before its PR #25 passed RGB where BGR was expected, so SDXL is read in both
channel orders. The mark does not survive resizing, nor JPEG with the usual 4:2:0 chroma
(4:4:4 at quality 90-95 keeps it), and the scheme loses it on smooth pictures even
losslessly: found, it shows a Stable Diffusion origin; absent, it says nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from dignity.media import Media
from dignity.settings import Settings
from dignity.signals.base import Evidence, ProvenanceCheck, ProvenanceReport

__all__ = [
    "MIN_AGREEING_BITS",
    "PAYLOADS",
    "DecodedBits",
    "WatermarkCheck",
    "agreement",
    "create",
    "decode_bits",
]


def _bits_of_bytes(text: bytes) -> NDArray[np.uint8]:
    return np.unpackbits(np.frombuffer(text, dtype=np.uint8))


def _bits_of_int(value: int) -> NDArray[np.uint8]:
    # As the SDXL code builds them: bin(value)[2:], so no leading zeros (0xB3... has none).
    return np.array([int(c) for c in bin(value)[2:]], dtype=np.uint8)


# The payloads, most significant bit first, as the encoder's set_watermark() unpacks them.
PAYLOADS: Final[dict[str, NDArray[np.uint8]]] = {
    "sd1": _bits_of_bytes(b"StableDiffusionV1"),
    "sd2": _bits_of_bytes(b"SDV2"),
    "sdxl": _bits_of_int(0xB3EC907BB19E),
}
_LABELS: Final = {
    "sd1": "Stable Diffusion 1.x",
    "sd2": "Stable Diffusion 2.x",
    "sdxl": "Stable Diffusion XL",
}

# How each payload is read: (payload, domain, channel order). "uint8" is OpenCV's integer
# BGR->YUV with U centred on 128, "float" its float32 conversion with U centred on 0.5. Only
# the ways the reference code actually embedded are tried: every extra reading is one more
# chance for a photo to match by luck.
_READINGS: Final = (
    ("sd1", "uint8", "bgr"),
    ("sd2", "uint8", "bgr"),
    ("sdxl", "float", "bgr"),
    ("sdxl", "float", "rgb"),
)

# Fewest agreeing bits that count as found, per payload (SDXL: in either channel order).
# Measured with bench/watermark.py: 4384 benign decoder inputs (crops, rescalings, flips and
# PNG / JPEG q70-98 / WebP copies of 97 photos and 40 generated scenes at SD sizes) reached at
# most sd1 89/136, sd2 24/32, sdxl 34/48: 0 false positives, 95% upper bound 6.8e-4. Photos
# behave like coin flips here (sd1 p99.9 0.630, fair coins 0.632), so each threshold sits
# where a coin-flip reading passes with probability 2e-8 (sd1), 1e-5 (sd2), 2e-6 per channel
# order (sdxl). The price is recall, bounded by the scheme itself: of lossless watermarked
# photo crops 72% are found for sd1, 57% for sd2 and 74-87% for sdxl (the rest are smooth
# pictures, where the encoder lowers a block's largest coefficient below a neighbour's, or
# clipped ones); JPEG q90-95 with 4:4:4 chroma keeps about as many, with 4:2:0 0-28%.
MIN_AGREEING_BITS: Final[dict[str, int]] = {
    "sd1": 100,  # of 136
    "sd2": 28,  # of 32
    "sdxl": 40,  # of 48
}

# The encoder refuses images under 256 x 256 pixels, so no reference output is smaller.
_MIN_PIXELS: Final = 256 * 256
# No Stable Diffusion script writes more than 4096 x 4096 (the x4 upscaler of a 1024 image);
# the decoder's cost grows with the area, so bigger uploads are not read.
_MAX_PIXELS: Final = 4096 * 4096

# Pixels decoded per band of block rows (256 rows of a 1024-wide image).
_BAND_PIXELS: Final = 256 * 1024

_SCALE: Final = 36.0
# pywt's Haar filter tap, float(sqrt(0.5)); the approximation is h*x1 + h*x0 per axis.
_HAAR: Final = 0.7071067811865476

# OpenCV's fixed-point BGR->YUV for uint8 (yuv_shift 14): Y = (1868 B + 9617 G + 4899 R)
# rounded, U = ((B - Y) * 8061 + 128 << 14) rounded. Every intermediate fits float32's 24-bit
# mantissa exactly, so Pillow's float matrix conversion, which adds 0.5 and truncates, gives
# OpenCV's integers to the bit (checked over all 2^24 colours against cv2 5.0 in the tests).
_Q: Final = 16384.0
_Y_BGR: Final = (4899 / _Q, 9617 / _Q, 1868 / _Q, 0.0)  # Pillow feeds R, G, B
_U_FROM_BLUE_Y: Final = (8061 / _Q, -8061 / _Q, 0.0, 128.0)

# OpenCV's float BGR->YUV coefficients (single precision constants).
_KB: Final = float(np.float32(0.114))
_KG: Final = float(np.float32(0.587))
_KR: Final = float(np.float32(0.299))
_KU: Final = float(np.float32(0.492))


@dataclass(frozen=True)
class DecodedBits:
    """The bits the package's decoder would return for each reading of one image."""

    readings: dict[tuple[str, str, str], NDArray[np.bool_]]
    blocks: int


def decode_bits(image: Image.Image) -> DecodedBits:
    """Decode ``image`` (RGB) every way in :data:`_READINGS`, as ``WatermarkDecoder`` would.

    ``uint8`` readings equal the package's ``decode`` of the uint8 BGR array bit for bit;
    ``float`` readings its ``decode`` of the same array as float32, to float rounding.
    """
    width, height = image.size
    block_rows, block_cols = height // 8, width // 8
    blocks = block_rows * block_cols
    readings: dict[tuple[str, str, str], NDArray[np.bool_]] = {}
    if not blocks:
        return DecodedBits(readings=readings, blocks=0)
    # Only whole 8 x 8 pixel tiles reach a block; the package drops the rest the same way.
    # Blocks are numbered in raster order, so bands of block rows can be read one at a time;
    # that keeps each intermediate image small enough for the allocator to reuse its memory
    # (whole-image temporaries are fresh mmaps, and their page faults doubled the time).
    band_rows = max(1, _BAND_PIXELS // (block_cols * 64))
    parts: dict[tuple[str, str], list[NDArray[np.bool_]]] = {}
    for top in range(0, block_rows, band_rows):
        rows = min(band_rows, block_rows - top)
        box = (0, top * 8, block_cols * 8, (top + rows) * 8)
        region = image if box == (0, 0, *image.size) else image.crop(box)
        if region.mode != "RGB":
            region = region.convert("RGB")
        bands = region.split()  # Pillow's planes are contiguous, unlike strided numpy channels
        parts.setdefault(("uint8", "bgr"), []).append(
            _uint8_scores(region, bands[2], rows, block_cols)
        )
        for order, score in _float_scores(bands, rows, block_cols).items():
            parts.setdefault(("float", order), []).append(score)
    scores = {key: np.concatenate(chunks) for key, chunks in parts.items()}
    for payload, domain, order in _READINGS:
        length = len(PAYLOADS[payload])
        if blocks >= length:
            readings[(payload, domain, order)] = _majority(scores[(domain, order)], length)
    return DecodedBits(readings=readings, blocks=blocks)


def agreement(bits: NDArray[np.bool_], payload: str) -> int:
    """How many of ``bits`` equal the payload's."""
    return int(np.count_nonzero(bits == PAYLOADS[payload].astype(bool)))


def _pair_sums(plane: NDArray[np.uint8]) -> NDArray[np.uint16]:
    """Sum of each 2 x 2 pixel cell: twice the Haar approximation coefficient, exactly."""
    rows = plane[0::2].astype(np.uint16)
    rows += plane[1::2]
    sums: NDArray[np.uint16] = rows[:, 0::2] + rows[:, 1::2]
    return sums


def _chroma(region: Image.Image, blue: Image.Image) -> NDArray[np.uint8]:
    """OpenCV's uint8 BGR->YUV U plane of ``region`` (RGB), whose blue band is ``blue``."""
    luma = region.convert("L", _Y_BGR)
    mixed = Image.merge("RGB", (blue, luma, luma))
    return np.asarray(mixed.convert("L", _U_FROM_BLUE_Y))


def _uint8_scores(
    region: Image.Image, blue: Image.Image, block_rows: int, block_cols: int
) -> NDArray[np.bool_]:
    """Per-block bit of the uint8 BGR reading, in raster order."""
    chroma = _chroma(region, blue)
    peak = _block_peak(_pair_sums(chroma), block_rows, block_cols)
    score: NDArray[np.bool_] = (peak % 72) > 36
    # pywt's float result differs from sum/2 by an ulp or so; that decides the bit only when
    # the peak sits on a cell edge (sum/2 a multiple of 18), so there the float is rebuilt the
    # way pywt computes it, from the block's own 8 x 8 pixels.
    edge = np.flatnonzero(peak % 36 == 0)
    if edge.size:
        row, col = np.divmod(edge, block_cols)
        tiles = chroma.reshape(block_rows, 8, block_cols, 8)[row, :, col, :].astype(np.float64)
        half = _HAAR * tiles[:, 1::2] + _HAAR * tiles[:, 0::2]
        approx = _HAAR * half[:, :, 1::2] + _HAAR * half[:, :, 0::2]
        value = approx.reshape(-1, 16)[:, 1:].max(axis=1)
        score[edge] = np.remainder(value, _SCALE) > _SCALE / 2
    return score


def _float_scores(
    bands: tuple[Image.Image, ...], block_rows: int, block_cols: int
) -> dict[str, NDArray[np.bool_]]:
    """Per-block bits of the float32 readings, BGR and RGB order, in raster order."""
    red, green, blue = (_pair_sums(np.asarray(band)).astype(np.float32) for band in bands)
    # The Haar approximation of U = (B' - Y) * 0.492 + 0.5 is half the 2 x 2 sum of U, i.e.
    # 0.246 * ((1 - 0.114) B' - 0.299 R' - 0.587 G) + 1 in sums; float32 like OpenCV's.
    green *= np.float32(_KG * _KU / 2)
    green -= np.float32(1.0)
    own, other = np.float32((1.0 - _KB) * _KU / 2), np.float32(_KR * _KU / 2)
    out: dict[str, NDArray[np.bool_]] = {}
    for order, (b, r) in (("bgr", (blue, red)), ("rgb", (red, blue))):
        approx = b * own
        approx -= r * other
        approx -= green
        np.abs(approx, out=approx)
        peak = _block_peak(approx, block_rows, block_cols)
        out[order] = np.remainder(peak, np.float32(_SCALE)) > _SCALE / 2
    return out


def _block_peak(coeffs: NDArray[Any], block_rows: int, block_cols: int) -> NDArray[Any]:
    """Largest of each 4 x 4 block's coefficients but its first, blocks in raster order."""
    grid = coeffs[: block_rows * 4, : block_cols * 4].reshape(block_rows, 4, block_cols, 4)
    peak = np.maximum(grid[:, :, :, 1], grid[:, :, :, 2])
    np.maximum(peak, grid[:, :, :, 3], out=peak)
    best = peak.max(axis=1)
    np.maximum(best, grid[:, 1:, :, 0].max(axis=1), out=best)
    flat: NDArray[Any] = best.reshape(-1)
    return flat


def _majority(score: NDArray[np.bool_], length: int) -> NDArray[np.bool_]:
    slot = np.arange(score.size) % length
    ones = np.bincount(slot, weights=score, minlength=length)
    votes = np.bincount(slot, minlength=length)
    # The package's rule, evaluated the same way: mean * 255 > 127, so a tie reads as 1.
    bits: NDArray[np.bool_] = (ones / votes) * 255 > 127
    return bits


class WatermarkCheck:
    """Finds the Stable Diffusion reference scripts' invisible watermark in the pixels."""

    name = "watermark"
    version = "1"

    def check(self, media: Media) -> ProvenanceReport:
        try:
            return self._check(media)
        except MemoryError:
            raise
        except Exception as exc:  # a check never raises; say what went wrong instead
            error = f"{type(exc).__name__}: {exc}"
            return ProvenanceReport({"checked": False, "found": None, "error": error})

    def _check(self, media: Media) -> ProvenanceReport:
        width, height = media.image.size
        if media.reduced:
            return _unchecked("decoded at reduced scale; the watermark does not survive scaling")
        if width * height < _MIN_PIXELS or (height // 8) * (width // 8) < len(PAYLOADS["sd1"]):
            return _unchecked("too small: the watermark encoder refuses images under 256 x 256")
        if width * height > _MAX_PIXELS:
            return _unchecked("larger than any Stable Diffusion reference output")
        decoded = decode_bits(media.image)
        best: dict[str, tuple[int, str]] = {}
        for (payload, _domain, order), bits in decoded.readings.items():
            agree = agreement(bits, payload)
            if payload not in best or agree > best[payload][0]:
                best[payload] = (agree, order)
        found: str | None = None
        for payload, (agree, _order) in best.items():
            if agree >= MIN_AGREEING_BITS[payload] and (
                found is None
                or agree / len(PAYLOADS[payload]) > best[found][0] / len(PAYLOADS[found])
            ):
                found = payload
        data: dict[str, Any] = {
            "checked": True,
            "found": found,
            "agreement": {p: round(a / len(PAYLOADS[p]), 3) for p, (a, _o) in best.items()},
            "threshold": {p: round(n / len(PAYLOADS[p]), 3) for p, n in MIN_AGREEING_BITS.items()},
            "order": best[found][1] if found else None,
        }
        if found is None:
            return ProvenanceReport(data)
        agree, _order = best[found]
        detail = (
            f"{_LABELS[found]} invisible watermark (DWT-DCT), "
            f"{agree}/{len(PAYLOADS[found])} bits agree"
        )
        return ProvenanceReport(data, (Evidence("watermark", detail),))


def _unchecked(reason: str) -> ProvenanceReport:
    return ProvenanceReport({"checked": False, "found": None, "reason": reason})


def create(settings: Settings) -> list[ProvenanceCheck]:
    """The watermark check; it needs nothing beyond numpy and Pillow."""
    return [WatermarkCheck()]
