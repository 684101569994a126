"""Pictures inside pictures end to end: a banked photo posted inside a phone screenshot or a
collage is found by ``dignity match`` and ``dignity scan`` (real CLI, real SQLite), by
``/v1/scan`` and HMA's ``/m/lookup`` on a live server, with ``region`` in each such match; the
scan log keeps the regions' PDQ, so a takedown's copy sweep finds a screenshot posted earlier.
All images are generated layouts of benign landscapes."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from dignity.hashing.signals import hash_bytes
from dignity.matching.banks import BankService, NewEntry
from dignity.matching.engine import MatchEngine
from dignity.regions import hash_upload
from dignity.sample_layouts import LAYOUTS
from dignity.samples import encode, landscape
from dignity.scanning import Scanner
from dignity.settings import Settings
from dignity.storage.db import open_database
from dignity.takedown.removal import RemovalService
from dignity.takedown.scanlog import HashSet, ScanLog
from tests.integration.server import LiveServer
from tests.integration.test_cli import Cli

PHOTO = landscape(61, (900, 650))
ORIGINAL = encode(PHOTO, "JPEG", quality=92)
OTHERS = [landscape(62, (800, 600)), landscape(63, (700, 500))]
SHOT, SHOT_BOX = LAYOUTS["phone-dark"](PHOTO, random.Random(1), OTHERS)
SHOT_JPEG = encode(SHOT, "JPEG", quality=85)
COLLAGE, COLLAGE_BOX = LAYOUTS["collage-2x2"](PHOTO, random.Random(2), OTHERS)
COLLAGE_PNG = encode(COLLAGE, "PNG")
UNRELATED, _ = LAYOUTS["phone-light"](landscape(64, (900, 650)), random.Random(3), OTHERS)
UNRELATED_JPEG = encode(UNRELATED, "JPEG", quality=85)


def near(region: dict[str, int], box: tuple[int, int, int, int], tol: int = 6) -> bool:
    got = (region["x"], region["y"], region["x"] + region["w"], region["y"] + region["h"])
    return all(abs(a - b) <= tol for a, b in zip(got, box, strict=True))


def test_cli_match_and_scan_report_the_region(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "data")
    files = {
        "orig.jpg": ORIGINAL,
        "shot.jpg": SHOT_JPEG,
        "collage.png": COLLAGE_PNG,
        "other.jpg": UNRELATED_JPEG,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    # The bank is set up in-process (on the same SQLite file): the CLI under test is match/scan.
    cli.db.parent.mkdir(parents=True)
    db = open_database(f"sqlite:///{cli.db}")
    BankService(db).create_bank("ncii")
    orig = hash_bytes(ORIGINAL)
    BankService(db).add_entries("ncii", [NewEntry("pdq", orig.pdq.hex)])  # type: ignore[union-attr]
    db.close()
    rows = {
        Path(str(r["path"])).name: r
        for r in cli.lines("match", *(str(tmp_path / n) for n in files))
    }
    whole = rows["orig.jpg"]["matches"]
    assert whole and all("region" not in m for m in whole)  # type: ignore[union-attr]
    for name, box in (("shot.jpg", SHOT_BOX), ("collage.png", COLLAGE_BOX)):
        matches = rows[name]["matches"]
        assert isinstance(matches, list) and len(matches) == 1, rows[name]
        assert matches[0]["signal"] == "pdq" and near(matches[0]["region"], box)
    assert rows["other.jpg"]["matches"] == []
    scanned = cli("scan", "--workers", "1", str(tmp_path / "shot.jpg"))
    assert scanned.returncode == 0, scanned.stderr
    row = json.loads(scanned.stdout)
    assert row["status"] == "matched" and row["decision"]["action"] == "block"
    assert near(row["matches"][0]["region"], SHOT_BOX)
    # Whole-image PDQ alone (what HMA and StopNCII match on) sees nothing in the screenshot.
    db = open_database(f"sqlite:///{cli.db}")
    engine = MatchEngine(db)
    engine.load()
    assert engine.match_image(hash_bytes(SHOT_JPEG, dihedral=True)).matches == []
    db.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(Path(tmp_path_factory.mktemp("regions")))
    live.start()
    yield live
    live.stop()


def test_v1_scan_and_hma_lookup_report_the_region(server: LiveServer) -> None:
    with server.client("curator") as cur, server.client("platform") as plat:
        assert cur.post("/v1/banks", json={"name": "ncii"}).status_code == 201
        added = cur.post(
            "/v1/banks/ncii/entries", files={"file": ("o.jpg", ORIGINAL, "image/jpeg")}
        )
        assert added.status_code == 201
        scan = plat.post(
            "/v1/scan",
            files={"file": ("s.jpg", SHOT_JPEG, "image/jpeg")},
            params={"content_id": "post-1"},
        ).json()
        assert scan["decision"]["action"] == "block", scan
        assert near(scan["matches"][0]["region"], SHOT_BOX)
        clean = plat.post("/v1/scan", files={"file": ("u.jpg", UNRELATED_JPEG, "image/jpeg")})
        assert clean.json()["matches"] == []
        m = plat.post("/v1/match", files={"file": ("c.png", COLLAGE_PNG, "image/png")}).json()
        assert near(m["matches"][0]["region"], COLLAGE_BOX)
        hma = plat.post("/m/lookup", files={"photo": ("c.png", COLLAGE_PNG, "image/png")})
        assert hma.status_code == 200, hma.text
        found = hma.json()["pdq"]["ncii"]
        assert len(found) == 1 and near(found[0]["region"], COLLAGE_BOX)
        assert int(found[0]["distance"]) <= 31


def test_scan_log_sweep_finds_a_picture_posted_inside_a_screenshot(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    db = open_database(f"sqlite:///{tmp_path / 'd.sqlite3'}")
    banks = BankService(db)
    banks.create_bank("cleared", purpose="allow")
    engine = MatchEngine(db, min_quality=settings.pdq_min_quality)
    engine.load()
    scanner = Scanner(settings, engine)
    log = ScanLog(db, settings)
    # Earlier: the photo posted inside a screenshot, and an unrelated screenshot.
    shot_id = log.record(scanner.scan(SHOT_JPEG), None, content_id="shot-1")
    log.record(scanner.scan(UNRELATED_JPEG), None, content_id="other-1")
    stored = log.get(shot_id)
    assert stored["detail"]["matches"] == []
    original = hash_bytes(ORIGINAL)
    assert original.pdq is not None
    query = HashSet(original.pdq.hex, original.md5, original.sha256, original.pdq.quality)
    copies = log.find_copies([query])
    assert [c.content_id for c in copies] == ["shot-1"]
    assert copies[0].reason == "copy_pdq" and near(copies[0].to_dict()["region"], SHOT_BOX)
    # A takedown of the original (scanned later) removes the screenshot as a known copy.
    orig_id = log.record(scanner.scan(ORIGINAL), None, content_id="orig-1")
    summary = RemovalService(db, settings).remove_scan(orig_id, actor="reviewer")
    removed = {r.content_id: r.reason for r in summary.removals}
    assert removed == {"orig-1": "reviewed", "shot-1": "copy_pdq"}
    # An allow-bank match of a region clears that region only, never the rest of a collage.
    other_cell = landscape(62, (800, 600))
    banks.add_entries("cleared", [NewEntry("pdq", hash_bytes(encode(other_cell)).pdq.hex)])  # type: ignore[union-attr]
    banks.create_bank("ncii")
    banks.add_entries("ncii", [NewEntry("pdq", original.pdq.hex)])
    engine.refresh()
    outcome = engine.match_image(hash_upload(COLLAGE_PNG, settings, dihedral=True))
    # (The takedown above banked the original's hash too.)
    assert {m.bank for m in outcome.matches} == {"ncii", "takedowns"}
    assert all(m.region is not None for m in outcome.matches)
    db.close()
