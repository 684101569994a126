"""The ``MatchIndex`` protocol: what any PDQ nearest-neighbour index must offer the bank service.

An index stores 256-bit hashes under caller-chosen integer ids, each with a small integer tag
(the bank's id), and answers "every stored hash within distance d of this query" exactly. The
bank service applies each bank's own threshold on top, so one index serves all banks. Keeping
the contract this small lets a faster index (a later issue takes it to 1e7 entries) replace the
built-in one without touching anything above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

HASH_BYTES = 32  # PDQ: 256 bits


@dataclass(frozen=True)
class IndexHits:
    """Flat result of a batch search: row ``k`` says query ``query[k]`` is near entry ``ids[k]``."""

    query: NDArray[np.int64]
    ids: NDArray[np.int64]
    tags: NDArray[np.int32]
    distances: NDArray[np.int32]

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@runtime_checkable
class MatchIndex(Protocol):
    """Exact Hamming-distance index over 256-bit hashes (rows of 32 uint8, MSB first)."""

    def __len__(self) -> int:
        """Number of live (added and not removed) entries."""
        ...

    def add(
        self, ids: NDArray[np.int64], hashes: NDArray[np.uint8], tags: NDArray[np.int32]
    ) -> None:
        """Add entries; visible to the next search. An id already live raises ``ValueError``."""
        ...

    def remove(self, ids: NDArray[np.int64]) -> int:
        """Remove entries by id (unknown ids are ignored); returns how many were live."""
        ...

    def search(self, queries: NDArray[np.uint8], max_distance: int) -> IndexHits:
        """Every live entry within ``max_distance`` (0..256) of each query row, exactly."""
        ...

    def memory_bytes(self) -> int:
        """Approximate bytes of memory the index holds, hashes included."""
        ...
