"""Banks, entries and the match engine on a real SQLite file."""

from __future__ import annotations

import json
import random

import pytest
from sqlalchemy import func, select

from dignity.errors import BankError, BankNotFound, HashError, ImportFormatError
from dignity.hashing import hash_bytes
from dignity.matching import BankService, MatchEngine, NewEntry
from dignity.samples import edited_copies, encode, landscape
from dignity.storage.db import Database
from dignity.storage.models import Entry, IndexLog


def _hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def _flip(value: str, bits: int, rng: random.Random) -> str:
    v = int(value, 16)
    for b in rng.sample(range(256), bits):
        v ^= 1 << b
    return f"{v:064x}"


def _counts(db: Database) -> tuple[int, int]:
    with db.session() as s:
        return (
            s.scalar(select(func.count()).select_from(Entry)) or 0,
            s.scalar(select(func.count()).select_from(IndexLog)) or 0,
        )


def test_bank_lifecycle(db: Database) -> None:
    svc = BankService(db)
    b = svc.create_bank("ncii-block", threshold=20, description="d")
    assert (b.purpose, b.threshold, b.enabled) == ("block", 20, True)
    with pytest.raises(BankError) as e:
        svc.create_bank("ncii-block")
    assert e.value.code == "bank.exists"
    for bad in ("", "has space", "x" * 65, "-lead"):
        with pytest.raises(BankError):
            svc.create_bank(bad)
    with pytest.raises(BankError):
        svc.create_bank("t", threshold=64)
    with pytest.raises(BankError):
        svc.create_bank("t", purpose="nope")
    svc.update_bank("ncii-block", enabled=False, threshold=40)
    assert svc.get_bank("ncii-block").threshold == 40
    assert [x.name for x in svc.list_banks()] == ["ncii-block"]
    with pytest.raises(BankNotFound):
        svc.get_bank("missing")
    svc.add_entries("ncii-block", [NewEntry("pdq", "a" * 64)])
    assert svc.delete_bank("ncii-block") == 1
    assert svc.list_banks() == []
    assert _counts(db)[0] == 0


def test_add_is_idempotent_and_withdraw_reactivates(db: Database) -> None:
    svc = BankService(db)
    svc.create_bank("b")
    r1 = svc.add_entries("b", [NewEntry("pdq", "AB" * 32), NewEntry("md5", "c" * 32)])
    assert len(r1.added) == 2
    r2 = svc.add_entries("b", [NewEntry("pdq", "ab" * 32)])  # same hash, other case
    assert r2.already_active == r1.added[:1] and not r2.added
    assert svc.withdraw("b", [r1.added[0]]) == 1
    assert svc.withdraw("b", [r1.added[0]]) == 0  # already withdrawn: nothing changes
    info = svc.get_bank("b")
    assert (info.active_entries, info.withdrawn_entries) == (1, 1)
    r3 = svc.add_entries("b", [NewEntry("pdq", "ab" * 32)])
    assert r3.reactivated == r1.added[:1]
    with pytest.raises(BankNotFound):
        svc.withdraw("b", [999999])


def test_bad_entry_writes_nothing(db: Database) -> None:
    svc = BankService(db)
    svc.create_bank("b")
    before = _counts(db)
    with pytest.raises(HashError):
        svc.add_entries("b", [NewEntry("pdq", "a" * 64), NewEntry("pdq", "zz")])
    with pytest.raises(HashError):
        svc.add_entries("b", [NewEntry("vpdq", "a" * 64)])
    with pytest.raises(BankError):
        svc.add_entries("b", [NewEntry("pdq", "a" * 64, origin_kind="martian")])
    assert _counts(db) == before


def test_import_export_round_trip(db: Database) -> None:
    svc = BankService(db)
    svc.create_bank("src")
    svc.create_bank("dst")
    rng = random.Random(1)
    lines = [f"pdq {_hex(rng)}" for _ in range(50)] + ["", "# comment", "md5 " + "0" * 32]
    lines.append(json.dumps({"signal": "sha256", "value": "f" * 64, "note": "n"}))
    res = svc.import_lines("src", lines)
    assert len(res.added) == 52
    text = list(svc.export_lines("src", "text"))
    assert len(text) == 52 and all(len(t.split()) == 2 for t in text)
    jsonl = list(svc.export_lines("src", "jsonl"))
    assert len(svc.import_lines("dst", jsonl).added) == 52
    exported = {(e.signal, e.value, e.note) for e in svc.iter_entries("dst")}
    assert ("sha256", "f" * 64, "n") in exported


@pytest.mark.parametrize(
    "bad",
    [
        "pdq 1234",
        "pdq " + "g" * 64,
        "vpdq " + "a" * 64,
        "pdq " + "a" * 64 + " extra",
        "{not json",
        '{"signal": "pdq"}',
        "abc",
    ],
)
def test_bad_import_line_writes_nothing(db: Database, bad: str) -> None:
    svc = BankService(db)
    svc.create_bank("b")
    before = _counts(db)
    with pytest.raises(ImportFormatError) as e:
        svc.import_lines("b", ["pdq " + "a" * 64, bad, "pdq " + "b" * 64])
    assert e.value.detail["line"] == 2
    assert _counts(db) == before


def test_engine_matches_and_respects_thresholds(db: Database) -> None:
    svc = BankService(db)
    svc.create_bank("tight", threshold=10)
    svc.create_bank("loose", threshold=40, purpose="review")
    rng = random.Random(3)
    base = _hex(rng)
    svc.add_entries("tight", [NewEntry("pdq", base)])
    svc.add_entries("loose", [NewEntry("pdq", base)])
    engine = MatchEngine(db)
    engine.load()
    near = _flip(base, 20, rng)
    got = engine.match_hashes([("pdq", near)])
    assert [(m.bank, m.distance) for m in got.matches] == [("loose", 20)]
    got = engine.match_hashes([("pdq", _flip(base, 5, rng))])
    assert sorted(m.bank for m in got.matches) == ["loose", "tight"]
    assert engine.match_hashes([("pdq", _flip(base, 41, rng))]).matches == []
    svc.update_bank("loose", enabled=False)
    engine.refresh()
    assert [m.bank for m in engine.match_hashes([("pdq", base)]).matches] == ["tight"]


def test_allow_bank_suppresses(db: Database) -> None:
    svc = BankService(db)
    svc.create_bank("block")
    svc.create_bank("known-benign", purpose="allow", threshold=10)
    data = encode(landscape(11), quality=90)
    h = hash_bytes(data, dihedral=True)
    assert h.pdq is not None
    svc.add_entries("block", [NewEntry("pdq", h.pdq.hex)])
    engine = MatchEngine(db)
    engine.load()
    assert engine.match_image(h).matches
    svc.add_entries("known-benign", [NewEntry("md5", h.md5)])
    engine.refresh()
    out = engine.match_image(h)
    assert out.matches == []
    assert [m.bank for m in out.allowed_by] == ["known-benign"]
    assert [m.bank for m in out.suppressed] == ["block"]


def test_edited_copies_match_with_dihedral(db: Database) -> None:
    svc = BankService(db)
    svc.create_bank("b")
    img = landscape(21)
    h = hash_bytes(encode(img, quality=92))
    assert h.pdq is not None
    svc.add_entries("b", [NewEntry("pdq", h.pdq.hex)])
    engine = MatchEngine(db)
    engine.load()
    for name, copy in edited_copies(img).items():
        q = hash_bytes(encode(copy, quality=80), dihedral=True)
        out = engine.match_image(q)
        assert out.matches, name
        if name == "rotated":
            assert out.matches[0].transform != "original"
        # Without the dihedral family a turned copy is far away.
        if name in ("rotated", "mirrored"):
            assert not engine.match_image(q, dihedral=False).matches, name


def test_low_quality_pdq_is_not_matched(db: Database) -> None:
    from PIL import Image

    svc = BankService(db)
    svc.create_bank("b")
    svc.add_entries("b", [NewEntry("pdq", "0" * 64)])
    engine = MatchEngine(db)
    engine.load()
    flat = hash_bytes(encode(Image.new("RGB", (200, 200), (9, 9, 9)), "PNG"))
    out = engine.match_image(flat)
    assert out.matches == [] and out.notes and "quality" in out.notes[0]


def test_changes_reach_another_engine_by_refresh(db: Database) -> None:
    svc = BankService(db)
    svc.create_bank("b")
    rng = random.Random(5)
    values = [_hex(rng) for _ in range(200)]
    other = MatchEngine(db)  # stands for another process holding its own index
    other.load()
    r = svc.add_entries("b", [NewEntry("pdq", v) for v in values])
    assert other.refresh() == 200
    assert other.match_hashes([("pdq", values[7])]).matches
    svc.withdraw("b", [r.added[7]])
    svc.add_entries("b", [NewEntry("md5", "1" * 32)])
    other.refresh()
    assert not other.match_hashes([("pdq", values[7])]).matches
    assert other.match_hashes([("md5", "1" * 32)]).matches
    svc.add_entries("b", [NewEntry("pdq", values[7])])  # re-activated
    other.refresh()
    assert other.match_hashes([("pdq", values[7])]).matches
    svc.delete_bank("b")
    other.refresh()
    assert len(other) == 0


def test_restart_reloads_without_rehashing(db: Database) -> None:
    svc = BankService(db)
    svc.create_bank("b")
    rng = random.Random(9)
    values = [_hex(rng) for _ in range(1000)]
    svc.add_entries("b", [NewEntry("pdq", v) for v in values])
    engine = MatchEngine(db)
    engine.load()
    assert len(engine) == 1000
    probe = _flip(values[500], 12, rng)
    assert [m.distance for m in engine.match_hashes([("pdq", probe)]).matches] == [12]


def test_rename_keeps_entries(db: Database) -> None:
    svc = BankService(db)
    svc.create_bank("old")
    svc.create_bank("taken")
    r = svc.add_entries("old", [NewEntry("md5", "2" * 32)])
    assert svc.rename_bank("old", "new").active_entries == 1
    with pytest.raises(BankNotFound):
        svc.get_bank("old")
    with pytest.raises(BankError) as e:
        svc.rename_bank("new", "taken")
    assert e.value.code == "bank.exists"
    with pytest.raises(BankError):
        svc.rename_bank("new", "bad name")
    assert [x.id for x in svc.list_entries("new")] == r.added
