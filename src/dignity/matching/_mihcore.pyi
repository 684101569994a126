"""Type stubs of the compiled kernels (``_mihcore.c``); every result is packed int64 bytes."""

from typing import Any

NCHUNK: int
MIN_KEY_BITS: int
MAX_KEY_BITS: int
MAX_RADIUS: tuple[int, ...]  # per key width: the largest radius its mask tables cover

def search(
    hashes: Any,
    off0: Any,
    offs: Any,
    posts: Any,
    n: int,
    key_bits: int,
    queries: Any,
    d: int,
    radii: tuple[int, ...] | None,
) -> bytes: ...
def bucketize(hashes: Any, chunk: int, key_bits: int, offsets: Any, posts: Any) -> float: ...
def scan(hashes: Any, queries: Any, d: int) -> bytes: ...
def find(values: Any, itemsize: int, wanted: Any) -> bytes: ...
