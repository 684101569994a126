"""Cryptographic digests of the submitted bytes (MD5, SHA-256) for exact-copy matching.

MD5 is what StopNCII and NCMEC exchange for videos and exact files; SHA-256 is the stronger
exact identifier. Both are over the bytes as received, so they match only byte-identical copies.
"""

from __future__ import annotations

import hashlib


def md5_digest(data: bytes) -> bytes:
    # usedforsecurity=False: MD5 here identifies files for interop, it protects nothing, and
    # FIPS-mode OpenSSL builds refuse it otherwise.
    return hashlib.md5(data, usedforsecurity=False).digest()


def sha256_digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def md5_hex(data: bytes) -> str:
    return md5_digest(data).hex()


def sha256_hex(data: bytes) -> str:
    return sha256_digest(data).hex()
