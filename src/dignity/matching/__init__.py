"""Matching: the index protocol, the bank service, and the engine that matches hashes to banks.

``MatchIndex`` (protocol.py) is the replaceable nearest-neighbour structure; ``BankService``
(banks.py) owns banks and entries in the database; ``MatchEngine`` (engine.py) keeps an
in-memory view of every active entry, replays the database's change log to stay current, and
turns a set of query hashes into per-bank matches with allow-bank suppression applied.
"""

from __future__ import annotations

from dignity.matching.banks import (
    BANK_PURPOSES,
    ORIGIN_KINDS,
    AddResult,
    BankInfo,
    BankService,
    EntryInfo,
    NewEntry,
)
from dignity.matching.engine import Match, MatchEngine, MatchOutcome
from dignity.matching.protocol import IndexHits, MatchIndex

__all__ = [
    "BANK_PURPOSES",
    "ORIGIN_KINDS",
    "AddResult",
    "BankInfo",
    "BankService",
    "EntryInfo",
    "IndexHits",
    "Match",
    "MatchEngine",
    "MatchIndex",
    "MatchOutcome",
    "NewEntry",
]
