"""Reading an append-only change log whose sequence numbers may commit out of order.

The bank index (``index_log``) and the derivative registry (``derivative_log``) are kept
current the same way: each process remembers the last sequence it applied and asks only for
newer rows. On PostgreSQL a sequence number is handed out before its transaction commits, so a
reader can see row 12 before row 11; a number skipped that way is a *gap*, asked for again on
every refresh until it appears or ``GAP_PATIENCE_S`` passes (then it was a rolled-back write).
These two functions are that bookkeeping, shared so both logs follow one rule.
"""

from __future__ import annotations

GAP_PATIENCE_S = 60.0


def open_gaps(gaps: dict[int, float], now: float) -> list[int]:
    """The skipped sequence numbers still worth asking for."""
    return [seq for seq, since in gaps.items() if now - since < GAP_PATIENCE_S]


def advance(last: int, gaps: dict[int, float], seen: set[int], now: float) -> int:
    """Record the sequence numbers just read: fill gaps they close, note new gaps below the
    highest one, forget gaps older than the patience; return the new last sequence."""
    for seq in list(gaps):
        if seq in seen or now - gaps[seq] >= GAP_PATIENCE_S:
            del gaps[seq]
    top = max(seen, default=last)
    for seq in range(last + 1, top):
        if seq not in seen:
            gaps.setdefault(seq, now)
    return max(last, top)
