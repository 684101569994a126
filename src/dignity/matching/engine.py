"""The match engine: an in-memory view of every active entry, kept current from the change log.

PDQ entries live in a :class:`~dignity.matching.protocol.MatchIndex` (tag = bank id); MD5 and
SHA-256 entries in a dict. ``load`` reads every active entry and the log's high-water mark in
one snapshot; ``refresh`` replays only newer log rows, so an add or withdrawal made by any
process is effective at the next refresh without rebuilding anything. A query image is matched
with all 8 dihedral PDQ hashes when available, so a rotated or mirrored copy is found whichever
way round either side was stored. Matches in an ``allow`` bank suppress block/review matches.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection, func, select

from dignity.hashing.pdq import DIHEDRAL_NAMES
from dignity.hashing.signals import DISTANCE_SIGNALS, ImageHashes, normalize_hash
from dignity.matching.protocol import MatchIndex
from dignity.storage.db import Database
from dignity.storage.models import Bank, Entry, IndexLog

# A gap in log sequence numbers may be a transaction that has not committed yet (PostgreSQL
# hands out sequence values before commit); we look for it again for this long.
_GAP_PATIENCE_S = 60.0


def default_index() -> MatchIndex:
    from dignity.matching.index import MihIndex

    return MihIndex()


@dataclass(frozen=True)
class Match:
    bank: str
    purpose: str
    entry_id: int
    signal: str
    distance: int
    transform: str = "original"

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "bank": self.bank,
            "entry_id": self.entry_id,
            "signal": self.signal,
            "distance": self.distance,
            "purpose": self.purpose,
        }
        if self.transform != "original":
            out["transform"] = self.transform
        return out


@dataclass(frozen=True)
class MatchOutcome:
    """``matches`` stand; ``suppressed`` were cancelled by ``allowed_by`` (allow-bank matches)."""

    matches: list[Match] = field(default_factory=list)
    suppressed: list[Match] = field(default_factory=list)
    allowed_by: list[Match] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"matches": [m.to_dict() for m in self.matches]}
        if self.allowed_by:
            out["allowed_by"] = [m.to_dict() for m in self.allowed_by]
            out["suppressed"] = [m.to_dict() for m in self.suppressed]
        if self.notes:
            out["notes"] = list(self.notes)
        return out


@dataclass(frozen=True)
class _BankView:
    id: int
    name: str
    purpose: str
    threshold: int
    enabled: bool


def _hex_rows(values: Sequence[str]) -> NDArray[np.uint8]:
    if not values:
        return np.zeros((0, 32), dtype=np.uint8)
    return np.frombuffer(bytes.fromhex("".join(values)), dtype=np.uint8).reshape(-1, 32)


class MatchEngine:
    """Matches hashes against all enabled banks. Safe to query from many threads."""

    def __init__(
        self,
        db: Database,
        *,
        min_quality: int = 50,
        index_factory: Callable[[], MatchIndex] = default_index,
    ) -> None:
        self.db = db
        self.min_quality = min_quality
        self._index_factory = index_factory
        self._lock = threading.RLock()
        self._index: MatchIndex = index_factory()
        self._exact: dict[tuple[str, str], dict[int, int]] = {}  # (signal, hex) -> {entry: bank}
        self._exact_keys: dict[int, tuple[str, str]] = {}
        self._banks: dict[int, _BankView] = {}
        self._last_seq = 0
        self._gaps: dict[int, float] = {}
        self.loaded = False

    # -- keeping current -----------------------------------------------------------------
    def load(self) -> None:
        """Read every active entry (one consistent snapshot) into a fresh index."""
        with self.db.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                last = conn.execute(select(func.max(IndexLog.seq))).scalar() or 0
                banks = self._read_banks(conn)
                rows = conn.execute(
                    select(Entry.id, Entry.bank_id, Entry.signal, Entry.value).where(
                        Entry.status == "active"
                    )
                ).all()
        index = self._index_factory()
        pdq = [(r[0], r[1], r[3]) for r in rows if r[2] == "pdq"]
        if pdq:
            ids, tags, hexes = zip(*pdq, strict=True)
            index.add(
                np.asarray(ids, dtype=np.int64),
                _hex_rows(hexes),
                np.asarray(tags, dtype=np.int32),
            )
        exact: dict[tuple[str, str], dict[int, int]] = {}
        exact_keys: dict[int, tuple[str, str]] = {}
        for eid, bank_id, signal, value in rows:
            if signal not in DISTANCE_SIGNALS:
                exact.setdefault((signal, value), {})[eid] = bank_id
                exact_keys[eid] = (signal, value)
        with self._lock:
            self._index, self._exact, self._exact_keys = index, exact, exact_keys
            self._banks, self._last_seq, self._gaps = banks, int(last), {}
            self.loaded = True

    @staticmethod
    def _read_banks(conn: Connection) -> dict[int, _BankView]:
        return {
            b.id: _BankView(b.id, b.name, b.purpose, b.threshold, b.enabled)
            for b in conn.execute(
                select(Bank.id, Bank.name, Bank.purpose, Bank.threshold, Bank.enabled)
            ).all()
        }

    def refresh(self) -> int:
        """Apply log rows newer than the last one seen; returns how many entries changed."""
        if not self.loaded:
            self.load()
            return 0
        now = time.monotonic()
        with self._lock:
            last = self._last_seq
            gaps = [s for s, t in self._gaps.items() if now - t < _GAP_PATIENCE_S]
        with self.db.engine.connect() as conn:
            banks = self._read_banks(conn)
            cond = IndexLog.seq > last
            if gaps:
                cond = cond | IndexLog.seq.in_(gaps)
            log = conn.execute(
                select(IndexLog.seq, IndexLog.entry_id, IndexLog.op)
                .where(cond)
                .order_by(IndexLog.seq)
            ).all()
            final: dict[int, str] = {}
            for _seq, eid, op in log:
                final[eid] = op
            adds = [eid for eid, op in final.items() if op == "add"]
            rows: list[Any] = []
            for i in range(0, len(adds), 500):
                rows += conn.execute(
                    select(Entry.id, Entry.bank_id, Entry.signal, Entry.value).where(
                        Entry.id.in_(adds[i : i + 500]), Entry.status == "active"
                    )
                ).all()
        with self._lock:
            self._banks = banks
            seen = {seq for seq, _, _ in log}
            for seq in gaps:
                if seq in seen:
                    self._gaps.pop(seq, None)
            top = max(seen, default=last)
            for seq in range(last + 1, top):
                if seq not in seen:
                    self._gaps.setdefault(seq, now)
            for seq in [s for s, t in self._gaps.items() if now - t >= _GAP_PATIENCE_S]:
                del self._gaps[seq]
            self._last_seq = max(last, top)
            removed = np.asarray([e for e, op in final.items() if op == "remove"], dtype=np.int64)
            # An entry re-added after a removal must leave the index first, or add() refuses it.
            self._index.remove(np.concatenate([removed, np.asarray(adds, dtype=np.int64)]))
            for eid in removed.tolist() + adds:
                key = self._exact_keys.pop(eid, None)
                if key is not None:
                    group = self._exact.get(key, {})
                    group.pop(eid, None)
                    if not group:
                        self._exact.pop(key, None)
            pdq = [(r[0], r[1], r[3]) for r in rows if r[2] == "pdq"]
            if pdq:
                ids, tags, hexes = zip(*pdq, strict=True)
                self._index.add(
                    np.asarray(ids, dtype=np.int64),
                    _hex_rows(hexes),
                    np.asarray(tags, dtype=np.int32),
                )
            for eid, bank_id, signal, value in rows:
                if signal not in DISTANCE_SIGNALS:
                    self._exact.setdefault((signal, value), {})[eid] = bank_id
                    self._exact_keys[eid] = (signal, value)
        return len(final)

    def __len__(self) -> int:
        return len(self._index) + len(self._exact_keys)

    # -- matching ------------------------------------------------------------------------
    def match_image(self, hashes: ImageHashes, *, dihedral: bool = True) -> MatchOutcome:
        """Match every hash of one image; PDQ below the quality floor is skipped, with a note."""
        notes: list[str] = []
        pdq: list[str] = []
        if hashes.pdq is not None:
            if hashes.pdq.quality < self.min_quality:
                notes.append(
                    f"pdq not matched: quality {hashes.pdq.quality} is below {self.min_quality}"
                )
            elif dihedral and hashes.pdq.dihedral:
                pdq = list(hashes.pdq.dihedral)
            else:
                pdq = [hashes.pdq.hex]
        exact = [("md5", hashes.md5), ("sha256", hashes.sha256)]
        return self._match(pdq, exact, notes)

    def match_hashes(self, values: Sequence[tuple[str, str]]) -> MatchOutcome:
        """Match bare (signal, hex) pairs, e.g. hashes a victim computed on their own device."""
        pdq: list[str] = []
        exact: list[tuple[str, str]] = []
        for signal, value in values:
            sig, val = normalize_hash(signal, value)
            if sig in DISTANCE_SIGNALS:
                pdq.append(val)
            else:
                exact.append((sig, val))
        outcome = self._match([], exact, [])
        # Each bare PDQ is its own query (no dihedral family to take the minimum over).
        merged = list(outcome.matches) + list(outcome.suppressed) + list(outcome.allowed_by)
        for value in pdq:
            part = self._match([value], [], [])
            merged += part.matches + part.suppressed + part.allowed_by
        return self._decide(_best(merged), [])

    def _match(
        self, pdq: Sequence[str], exact: Sequence[tuple[str, str]], notes: list[str]
    ) -> MatchOutcome:
        with self._lock:
            banks = self._banks
            index = self._index
            found: list[Match] = []
            for signal, value in exact:
                for eid, bank_id in self._exact.get((signal, value), {}).items():
                    bank = banks.get(bank_id)
                    if bank is not None and bank.enabled:
                        found.append(Match(bank.name, bank.purpose, eid, signal, 0))
        if pdq:
            thresholds = [b.threshold for b in banks.values() if b.enabled]
            if thresholds and len(index):
                hits = index.search(_hex_rows(pdq), max(thresholds))
                best: dict[int, tuple[int, int, int]] = {}
                for q, eid, tag, dist in zip(
                    hits.query.tolist(),
                    hits.ids.tolist(),
                    hits.tags.tolist(),
                    hits.distances.tolist(),
                    strict=True,
                ):
                    if eid not in best or dist < best[eid][0]:
                        best[eid] = (dist, tag, q)
                for eid, (dist, tag, q) in best.items():
                    bank = banks.get(tag)
                    if bank is None or not bank.enabled or dist > bank.threshold:
                        continue
                    transform = DIHEDRAL_NAMES[q] if len(pdq) == len(DIHEDRAL_NAMES) else "original"
                    found.append(Match(bank.name, bank.purpose, eid, "pdq", dist, transform))
        return self._decide(found, notes)

    @staticmethod
    def _decide(found: list[Match], notes: list[str]) -> MatchOutcome:
        found.sort(key=lambda m: (m.distance, m.bank, m.entry_id))
        allow = [m for m in found if m.purpose == "allow"]
        rest = [m for m in found if m.purpose != "allow"]
        if allow:
            return MatchOutcome(matches=[], suppressed=rest, allowed_by=allow, notes=notes)
        return MatchOutcome(matches=rest, notes=notes)


def _best(matches: list[Match]) -> list[Match]:
    """Keep each entry once, at its smallest distance."""
    best: dict[tuple[int, str], Match] = {}
    for m in matches:
        key = (m.entry_id, m.signal)
        if key not in best or m.distance < best[key].distance:
            best[key] = m
    return list(best.values())
