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


def hash_bytes(
    data: bytes, *, settings: Settings | None = None, dihedral: bool = False
) -> ImageHashes:
    """Decode ``data`` once (JPEGs in the DCT domain down to >= 512 px) and compute every hash."""
    s = settings or get_settings()
    # The reference resamples to 512 px anyway, so a JPEG never needs more than 512 px a side.
    media = decode(data, max_bytes=s.max_bytes, max_pixels=s.max_pixels, min_size=PDQ_DOWNSAMPLE)
    return hash_media(media, data, dihedral=dihedral)
