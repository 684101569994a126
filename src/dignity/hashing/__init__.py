"""Hashing: turn decoded media (and its bytes) into hash signals, one decode serving all hashes.

The public entry point is :func:`hash_bytes`, which decodes once and returns PDQ (with quality
and optionally the 8 dihedral hashes), MD5 and SHA-256. Hash values travel as lowercase hex,
most significant bit first, exactly as python-threatexchange writes them, so banks exported
from HMA or py-tx interoperate with ours without conversion.
"""

from __future__ import annotations

from dignity.hashing.digests import md5_hex, sha256_hex
from dignity.hashing.pdq import (
    DIHEDRAL_NAMES,
    PDQ_DOWNSAMPLE,
    PdqHash,
    pdq_from_image,
    pdq_from_pixels,
)
from dignity.hashing.signals import (
    SIGNAL_TYPES,
    ImageHashes,
    hash_bytes,
    hash_media,
    hex_to_bytes,
    normalize_hash,
    pdq_distance,
)

__all__ = [
    "DIHEDRAL_NAMES",
    "PDQ_DOWNSAMPLE",
    "SIGNAL_TYPES",
    "ImageHashes",
    "PdqHash",
    "hash_bytes",
    "hash_media",
    "hex_to_bytes",
    "md5_hex",
    "normalize_hash",
    "pdq_distance",
    "pdq_from_image",
    "pdq_from_pixels",
    "sha256_hex",
]
