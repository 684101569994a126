"""Hash signal types, hex validation, and the one-decode pipeline from bytes to all hashes.

A *hash signal* is a (type, value) pair that banks can hold and the index can match: ``pdq``
(perceptual, matched by Hamming distance), ``md5`` and ``sha256`` (exact). Values are lowercase
hex; :func:`normalize_hash` is the single gate every externally supplied value passes through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dignity.errors import HashError
from dignity.hashing.digests import md5_hex, sha256_hex
from dignity.hashing.pdq import PDQ_DOWNSAMPLE, PdqHash, pdq_from_image
from dignity.media import Media, decode
from dignity.settings import Settings, get_settings

# Signal type -> number of hex digits. pdq is the only distance-matched one.
SIGNAL_TYPES: dict[str, int] = {"pdq": 64, "md5": 32, "sha256": 64}
DISTANCE_SIGNALS = frozenset({"pdq"})

# JPEGs up to this many pixels are decoded at full size, larger ones in the DCT domain at reduced
# size: generators' native outputs (SD 512-768 px, SDXL ~1 MP) keep the exact pixels that
# watermark decoding needs, and photos from cameras (2 MP and up) still hash fast.
FULL_SIZE_PIXELS = 2_000_000

_HEX = re.compile(r"\A[0-9a-fA-F]+\Z")


def normalize_hash(signal: str, value: str) -> tuple[str, str]:
    """Validate a (signal, hex value) pair and return it lowercased; raise ``HashError``."""
    sig = signal.strip().lower()
    if sig not in SIGNAL_TYPES:
        raise HashError(
            f"unknown signal type {signal!r} (known: {', '.join(sorted(SIGNAL_TYPES))})",
            code="hash.unknown_signal",
            signal=signal,
        )
    val = value.strip()
    want = SIGNAL_TYPES[sig]
    if len(val) != want or not _HEX.match(val):
        raise HashError(
            f"a {sig} hash is {want} hex digits; got {val[:80]!r}",
            code="hash.malformed",
            signal=sig,
        )
    return sig, val.lower()


def hex_to_bytes(value: str) -> bytes:
    return bytes.fromhex(value)


def pdq_distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


@dataclass(frozen=True)
class ImageHashes:
    """Every hash of one image, from one decode; ``pdq`` is None only if hashing was skipped."""

    pdq: PdqHash | None
    md5: str
    sha256: str
    width: int
    height: int
    format: str

    def fields(self) -> dict[str, object]:
        """The hash fields of ``dignity hash`` output (and of scan results)."""
        return {
            "pdq": self.pdq.hex if self.pdq else None,
            "quality": self.pdq.quality if self.pdq else None,
            "md5": self.md5,
            "sha256": self.sha256,
            "width": self.width,
            "height": self.height,
            "format": self.format,
        }

    def values(self, min_quality: int, *, dihedral: bool = False) -> list[tuple[str, str]]:
        """(signal, hex) pairs worth storing or matching; PDQ below ``min_quality`` is left out."""
        out: list[tuple[str, str]] = []
        if self.pdq is not None and self.pdq.quality >= min_quality:
            out.append(("pdq", self.pdq.hex))
        out.append(("md5", self.md5))
        out.append(("sha256", self.sha256))
        return out


def hash_media(media: Media, data: bytes, *, dihedral: bool = False) -> ImageHashes:
    return ImageHashes(
        pdq=pdq_from_image(media.image, dihedral=dihedral),
        md5=md5_hex(data),
        sha256=sha256_hex(data),
        width=media.width,
        height=media.height,
        format=media.format,
    )


def decode_upload(data: bytes, settings: Settings) -> Media:
    """The one decode every upload gets, for hashing and for signals alike, so that ``dignity
    hash`` and ``dignity scan`` agree on the PDQ of the same file."""
    return decode(
        data,
        max_bytes=settings.max_bytes,
        max_pixels=settings.max_pixels,
        min_size=PDQ_DOWNSAMPLE,
        reduce_above=FULL_SIZE_PIXELS,
    )


def hash_bytes(
    data: bytes, *, settings: Settings | None = None, dihedral: bool = False
) -> ImageHashes:
    """Decode ``data`` once (JPEGs over ``FULL_SIZE_PIXELS`` in the DCT domain down to >= 512 px)
    and compute every hash."""
    media = decode_upload(data, settings or get_settings())
    return hash_media(media, data, dihedral=dihedral)
