"""Hash signal values, hex validation, and the one-decode pipeline from bytes to all hashes.

A *hash signal* is a (type, value) pair that banks can hold and the index can match; the types
(``pdq`` perceptual and matched by Hamming distance, ``md5`` and ``sha256`` exact, and any a
plug-in adds) live in :mod:`dignity.hashing.registry`. Values travel as lowercase hex;
:func:`normalize_hash` is the single gate every externally supplied value passes through.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Set
from dataclasses import dataclass, field

from dignity.hashing.digests import md5_digest, sha256_digest
from dignity.hashing.pdq import PDQ_DOWNSAMPLE, PdqHash, pdq_from_image
from dignity.hashing.registry import signal_types
from dignity.media import Media, decode
from dignity.settings import Settings, get_settings


class _HexDigits(Mapping[str, int]):
    """Signal type -> number of hex digits: a view of the registry."""

    def __getitem__(self, name: str) -> int:
        found = signal_types().get(name)
        if found is None:
            raise KeyError(name)
        return 2 * found.byte_length

    def __iter__(self) -> Iterator[str]:
        return iter(signal_types().names())

    def __len__(self) -> int:
        return len(signal_types())


class _DistanceNames(Set[str]):
    """Names of the distance-matched signal types: a view of the registry."""

    def __contains__(self, name: object) -> bool:
        found = signal_types().get(name) if isinstance(name, str) else None
        return found is not None and found.matched_by_distance

    def __iter__(self) -> Iterator[str]:
        return iter([t.name for t in signal_types().distance()])

    def __len__(self) -> int:
        return len(signal_types().distance())


SIGNAL_TYPES: Mapping[str, int] = _HexDigits()
DISTANCE_SIGNALS: Set[str] = _DistanceNames()

# JPEGs up to this many pixels are decoded at full size, larger ones in the DCT domain at reduced
# size: generators' native outputs (SD 512-768 px, SDXL ~1 MP) keep the exact pixels that
# watermark decoding needs, and photos from cameras (2 MP and up) still hash fast.
FULL_SIZE_PIXELS = 2_000_000


def normalize_hash(signal: str, value: str) -> tuple[str, str]:
    """Validate a (signal, hex value) pair and return it lowercased; raise ``HashError``."""
    return signal_types().normalize(signal, value)


def hex_to_bytes(value: str) -> bytes:
    return bytes.fromhex(value)


def pdq_distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


@dataclass(frozen=True)
class Region:
    """A rectangle of an upload, in its pixels: ``x``, ``y`` the top-left corner."""

    x: int
    y: int
    w: int
    h: int

    def to_dict(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h}

    def box(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.x + self.w, self.y + self.h)


@dataclass(frozen=True)
class RegionHash:
    """The PDQ of a picture found inside an upload (:mod:`dignity.regions`): where it is in
    the upload (``region``), and the same rectangle as ``(x0, y0, x1, y1)`` in the decoded
    image's pixels (``box``; a reduced decode's differ)."""

    region: Region
    pdq: PdqHash
    box: tuple[int, int, int, int] = (0, 0, 0, 0)


@dataclass(frozen=True)
class ImageHashes:
    """Every hash of one image, from one decode; ``pdq`` is None only if hashing was skipped."""

    pdq: PdqHash | None
    md5: str
    sha256: str
    width: int
    height: int
    format: str
    # The exact digests as bytes, by signal type, for matching without a trip through hex.
    digests: Mapping[str, bytes] = field(default_factory=dict, compare=False, repr=False)
    # PDQ of the pictures inside this one (screenshots, collages, memes: dignity.regions adds
    # them), matched like the whole image's PDQ; empty unless asked for.
    regions: tuple[RegionHash, ...] = field(default=(), compare=False, repr=False)

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

    def hexes(self) -> dict[str, str]:
        """Hex value by signal type, for every hash this image has."""
        out = {"md5": self.md5, "sha256": self.sha256}
        if self.pdq is not None:
            out["pdq"] = self.pdq.hex
        return out

    def values(self, min_quality: int) -> list[tuple[str, str]]:
        """(signal, hex) pairs worth storing or matching, in the registry's order of the photo
        signal types; PDQ below ``min_quality`` is left out."""
        have = self.hexes()
        if self.pdq is not None and self.pdq.quality < min_quality:
            del have["pdq"]
        photo = signal_types().for_content("photo")
        return [(t.name, have[t.name]) for t in photo if t.name in have]


def hash_media(media: Media, data: bytes, *, dihedral: bool = False) -> ImageHashes:
    md5, sha256 = md5_digest(data), sha256_digest(data)
    return ImageHashes(
        pdq=pdq_from_image(media.image, dihedral=dihedral),
        md5=md5.hex(),
        sha256=sha256.hex(),
        width=media.width,
        height=media.height,
        format=media.format,
        digests={"md5": md5, "sha256": sha256},
    )


def decode_upload(data: bytes, settings: Settings) -> Media:
    """The one decode every upload gets, for hashing and for signals alike, so that ``dignity
    hash`` and ``dignity scan`` agree on the PDQ of the same file. In a server process a risky
    file (anything but a baseline JPEG) is decoded in the decode pool, where the time limit can
    stop it; the small and common case stays in the caller's thread."""
    from dignity import decode_pool

    options = {
        "max_bytes": settings.max_bytes,
        "max_pixels": settings.max_pixels,
        "min_size": PDQ_DOWNSAMPLE,
        "reduce_above": FULL_SIZE_PIXELS,
        "max_frames": settings.max_frames,
        "max_decode_bytes": settings.max_decode_bytes,
    }
    pool = decode_pool.active()
    # The byte limit is checked here too: an oversized file is refused without a trip.
    if pool is not None and len(data) <= settings.max_bytes and decode_pool.risky(data):
        return pool.decode(data, **options)
    return decode(data, **options)


def hash_bytes(
    data: bytes, *, settings: Settings | None = None, dihedral: bool = False
) -> ImageHashes:
    """Decode ``data`` once (JPEGs over ``FULL_SIZE_PIXELS`` in the DCT domain down to >= 512 px)
    and compute every hash."""
    media = decode_upload(data, settings or get_settings())
    return hash_media(media, data, dihedral=dihedral)
