"""The match engine's index snapshot on a real database: restart from it, replay the log rows
written after it, and refuse it (reading the database instead) when it is damaged, stale, or
belongs to another database."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from dignity.matching import BankService, MatchEngine, NewEntry
from dignity.matching.index import MihIndex, SnapshotError
from dignity.storage.db import Database, open_database


def _hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def _matches(engine: MatchEngine, value: str) -> set[int]:
    return {m.entry_id for m in engine.match_hashes([("pdq", value)]).matches}


def _fill(db: Database, n: int, seed: int) -> tuple[BankService, list[str], list[int]]:
    svc = BankService(db)
    svc.create_bank("b")
    rng = random.Random(seed)
    values = [_hex(rng) for _ in range(n)]
    res = svc.add_entries("b", [NewEntry("pdq", v) for v in values])
    svc.add_entries("b", [NewEntry("md5", "2" * 32)])
    return svc, values, list(res.added)


def test_restart_from_snapshot_replays_newer_changes(db: Database, tmp_path: Path) -> None:
    snap = tmp_path / "index"
    svc, values, ids = _fill(db, 300, 1)
    first = MatchEngine(db, snapshot_dir=snap)
    first.load()
    first.wait_for_snapshot()
    assert not first.loaded_from_snapshot and (snap / "CURRENT").exists()
    # Changes after the snapshot: a withdrawal, an add, a re-add.
    svc.withdraw("b", [ids[3]])
    new = _hex(random.Random(9))
    added = svc.add_entries("b", [NewEntry("pdq", new)]).added
    svc.withdraw("b", [ids[4]])
    svc.add_entries("b", [NewEntry("pdq", values[4])])
    second = MatchEngine(db, snapshot_dir=snap)
    second.load()
    assert second.loaded_from_snapshot
    fresh = MatchEngine(db)
    fresh.load()
    for value in (values[3], values[4], values[5], new):
        assert _matches(second, value) == _matches(fresh, value)
    assert _matches(second, values[3]) == set()
    assert _matches(second, new) == set(added)
    assert second.match_hashes([("md5", "2" * 32)]).matches
    assert len(second) == len(fresh)


def test_damaged_snapshot_falls_back_to_the_database(db: Database, tmp_path: Path) -> None:
    snap = tmp_path / "index"
    _, values, _ = _fill(db, 200, 2)
    engine = MatchEngine(db, snapshot_dir=snap)
    engine.load()
    engine.wait_for_snapshot()
    gen = snap / (snap / "CURRENT").read_text()
    victim = next(gen.glob("*hashes.npy"))
    raw = bytearray(victim.read_bytes())
    raw[-1] ^= 0xFF  # one flipped bit of one stored hash
    victim.write_bytes(bytes(raw))
    with pytest.raises(SnapshotError, match="corrupt"):
        MihIndex.load(snap)
    again = MatchEngine(db, snapshot_dir=snap)
    again.load()
    assert not again.loaded_from_snapshot
    assert all(_matches(again, v) for v in values[-5:])
    (snap / "CURRENT").write_text("gen-missing")
    third = MatchEngine(db, snapshot_dir=snap)
    third.load()
    assert not third.loaded_from_snapshot and _matches(third, values[0])


def test_snapshot_of_another_database_is_refused(tmp_path: Path) -> None:
    snap = tmp_path / "index"
    one = open_database(f"sqlite:///{tmp_path}/one.sqlite3")
    _, values, _ = _fill(one, 50, 3)
    engine = MatchEngine(one, snapshot_dir=snap)
    engine.load()
    engine.wait_for_snapshot()
    one.close()
    # Same URL, recreated database with other entries: the log and sample checks refuse it.
    (tmp_path / "one.sqlite3").unlink()
    two = open_database(f"sqlite:///{tmp_path}/one.sqlite3")
    _, other_values, _ = _fill(two, 50, 4)
    reopened = MatchEngine(two, snapshot_dir=snap)
    reopened.load()
    assert not reopened.loaded_from_snapshot
    assert _matches(reopened, values[0]) == set()
    assert _matches(reopened, other_values[0])
    two.close()


@pytest.mark.parametrize("key_bits", [16, 19])
def test_index_snapshot_round_trip(tmp_path: Path, key_bits: int) -> None:
    """Every segment kind survives a save and load; 19-bit keys are what 1e7 entries get."""
    rng = np.random.default_rng(5)
    n = 3000
    hashes = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    ids = np.arange(n, dtype=np.int64) * 5
    tags = (ids % 3).astype(np.int32)
    from dignity.matching import index as index_module

    saved = index_module._MIH_MIN_ROWS, index_module._key_bits
    index_module._MIH_MIN_ROWS = 1000  # a probed segment, a scanned one and a tail
    index_module._key_bits = lambda n: key_bits  # type: ignore[assignment]
    try:
        mih = MihIndex.from_arrays(ids[:2000], hashes[:2000], tags[:2000], tail_limit=100)
        mih.add(ids[2000:2500], hashes[2000:2500], tags[2000:2500])
        mih.add(ids[2500:2550], hashes[2500:2550], tags[2500:2550])
        mih.remove(ids[10:20])
        mih.wait_for_maintenance()
        mih.save(tmp_path / "s", {"seq": 7})
        back, meta = MihIndex.load(tmp_path / "s")
    finally:
        index_module._MIH_MIN_ROWS, index_module._key_bits = saved
    assert meta == {"seq": 7}
    assert back.segment_sizes() == mih.segment_sizes()
    kinds = [s.key_bits for s in back._state.segments]
    assert kinds == [s.key_bits for s in mih._state.segments] and key_bits in kinds
    queries = hashes[:50].copy()
    queries[:, 3] ^= 0x11
    for d in (0, 31, 63):
        a, b = mih.search(queries, d), back.search(queries, d)
        assert a.ids.tolist() == b.ids.tolist() and a.distances.tolist() == b.distances.tolist()
    # The loaded index stays fully usable: remove and re-add.
    assert back.remove(ids[30:40]) == 10
    back.add(ids[30:31], hashes[30:31], tags[30:31])
    assert 150 in back.search(hashes[30:31], 0).ids.tolist()
