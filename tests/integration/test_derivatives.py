"""Source photos end to end: the real CLI on an SQLite file, the service on SQLite and
PostgreSQL, and the HTTP API on a live server (register, list, scan, remove, roles).

Removal is proven from the database itself: the row is gone and, on SQLite, the descriptor
bytes are nowhere in the database file or its write-ahead log.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from dignity.derivatives.models import DerivativeLog, DerivativeSource
from dignity.derivatives.service import NewSource, SourceIndex, SourceService
from dignity.errors import NotFound
from dignity.media import decode
from dignity.samples import encode, landscape
from dignity.storage.db import Database
from tests.integration.server import LiveServer
from tests.integration.test_cli import Cli
from tests.unit.test_derivatives import derivative


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "data")


def _write(path: Path, img: Image.Image, fmt: str = "JPEG") -> Path:
    path.write_bytes(encode(img, fmt, **({"quality": 92} if fmt == "JPEG" else {})))
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "img"
    d.mkdir()
    return {
        "mine": _write(d / "mine.jpg", landscape(3)),
        "mine2": _write(d / "mine2.jpg", landscape(4)),
        "edited": _write(d / "edited.jpg", derivative(3, "flat")),
        "unrelated": _write(d / "unrelated.jpg", landscape(77)),
        "plain": _write(d / "plain.png", Image.new("RGB", (400, 300), (80, 80, 80)), "PNG"),
    }


def _scan(cli: Cli, *paths: Path) -> dict[str, dict[str, Any]]:
    rows = cli.lines("scan", "--workers", "2", *map(str, paths))
    return {Path(str(r["path"])).name: r for r in rows}  # type: ignore[misc]


def test_cli_register_scan_remove(cli: Cli, files: dict[str, Path]) -> None:
    added = cli.lines(
        "source", "add", "--subject", "p-17", "--consent-by", "the person", "--for", "helpline",
        str(files["mine"]), str(files["mine2"]),
    )  # fmt: skip
    assert [a["path"] for a in added] == [str(files["mine"]), str(files["mine2"])]
    ids = [int(str(a["source_id"])) for a in added]
    assert all(int(str(a["stored_bytes"])) <= 4096 for a in added)
    assert all(float(str(a["coverage"])) > 0.5 and a["warning"] is None for a in added)

    rows = _scan(cli, files["edited"], files["unrelated"])
    found = rows["edited.jpg"]["signals"]["derivative_of"]
    assert found["source_id"] == ids[0] and found["subject"] == "p-17"
    # The scan object of /v1/scan, field for field: `timestamp` (a video frame's) is null here.
    assert set(found) == {
        "source_id",
        "subject",
        "confidence",
        "matched_area",
        "changed_region",
        "timestamp",
    }
    assert found["timestamp"] is None
    decision = rows["edited.jpg"]["decision"]
    assert decision["action"] == "review" and decision["rules"] == ["derivative"]
    assert {r["rule"] for r in decision["reasons"]} == {"derivative"}
    assert rows["unrelated.jpg"]["signals"]["derivative_of"] is None
    assert rows["unrelated.jpg"]["decision"]["action"] == "allow"

    listed = cli.lines("source", "list", "--json")
    assert [x["source_id"] for x in listed] == ids
    assert listed[0]["consent"]["by"] == "the person" and listed[0]["consent"]["for"] == "helpline"

    con = sqlite3.connect(cli.db)
    try:
        query = "SELECT features FROM derivative_sources WHERE id=?"
        (blob,) = con.execute(query, (ids[0],)).fetchone()
    finally:
        con.close()
    assert cli.lines("source", "remove", str(ids[0])) == [
        {"source_id": ids[0], "subject": "p-17", "removed": True}
    ]
    con = sqlite3.connect(cli.db)
    try:
        query = "SELECT count(*) FROM derivative_sources WHERE id=?"
        assert con.execute(query, (ids[0],)).fetchone() == (0,)
        log = con.execute("SELECT op FROM derivative_log WHERE source_id=? ORDER BY seq", (ids[0],))
        assert [r[0] for r in log] == ["add", "remove"]
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    raw = cli.db.read_bytes()
    wal = cli.db.with_name(cli.db.name + "-wal")
    raw += wal.read_bytes() if wal.exists() else b""
    assert bytes(blob)[12:200] not in raw  # the descriptors are gone from the file itself
    assert _scan(cli, files["edited"])["edited.jpg"]["signals"]["derivative_of"] is None
    assert [x["source_id"] for x in cli.lines("source", "list", "--json")] == ids[1:]


def test_cli_refusals_change_nothing(cli: Cli, files: dict[str, Path]) -> None:
    cli.lines("source", "list", "--json")  # creates the database
    before = cli.snapshot()
    r = cli("source", "add", "--subject", "p", str(files["mine"]), str(files["plain"]))
    assert r.returncode == 1, r.stderr
    failed = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(f["path"], f["error"]["code"]) for f in failed] == [
        (str(files["plain"]), "source.too_plain")
    ]
    assert "nothing was registered" in r.stderr
    r = cli("source", "add", "--subject", "  ", str(files["mine"]))
    assert r.returncode == 1 and "source.bad_subject" in r.stdout
    assert cli("source", "add", str(files["mine"])).returncode == 2  # --subject is required
    r = cli("source", "remove", "12345")
    assert r.returncode == 3 and "source.not_found" in r.stderr
    assert cli.snapshot() == before


def test_service_and_refresh_across_processes(db: Database) -> None:
    service = SourceService(db)
    one, two = SourceIndex(db), SourceIndex(db)
    one.load()
    two.load()
    media = decode(encode(landscape(5)))
    info = service.register([service.prepare(NewSource(media, "s", "them", "org"))])[0]
    assert info.stored_bytes <= 4096 and info.consent_by == "them" and info.for_whom == "org"
    assert two.refresh() == 1 and info.id in two.matcher
    probe = derivative(5, "inpaint")
    found = two.matcher.match(probe)
    assert found is not None and found.source_id == info.id
    assert service.get(info.id).subject == "s"
    assert [i.id for i in service.list(subject="s")] == [info.id]
    assert service.list(subject="nobody") == []
    service.remove(info.id)
    with pytest.raises(NotFound):
        service.get(info.id)
    with pytest.raises(NotFound):
        service.remove(info.id)
    assert two.refresh() == 1 and info.id not in two.matcher
    assert two.matcher.match(probe) is None
    one.refresh()  # saw the add and the remove at once: ends without it
    assert len(one.matcher) == 0
    with db.session() as s:
        assert s.query(DerivativeSource).count() == 0
        assert [r.op for r in s.query(DerivativeLog).order_by(DerivativeLog.seq)] == [
            "add",
            "remove",
        ]


def test_api_sources(live: LiveServer, tmp_path: Path) -> None:
    mine = encode(landscape(8), quality=92)
    edited = encode(derivative(8, "flat"), quality=90)
    with (
        live.client("curator") as curator,
        live.client("reviewer") as reviewer,
        live.client("platform") as platform,
    ):
        r = curator.post(
            "/v1/sources",
            files={"file": ("mine.jpg", mine, "image/jpeg")},
            data={"subject": "api-person", "consent_by": "them", "for_whom": "helpline"},
        )
        assert r.status_code == 201, r.text
        source = r.json()
        sid = source["source_id"]
        assert source["consent"]["by"] == "them" and source["stored_bytes"] <= 4096
        assert reviewer.get(f"/v1/sources/{sid}").json()["subject"] == "api-person"
        listed = reviewer.get("/v1/sources", params={"subject": "api-person"}).json()
        assert [x["source_id"] for x in listed] == [sid]
        assert listed[0]["coverage"] == source["coverage"] > 0.5 and source["warning"] is None
        r = platform.post("/v1/scan", files={"file": ("e.jpg", edited, "image/jpeg")})
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["signals"]["derivative_of"]["source_id"] == sid
        assert got["decision"]["action"] == "review"
        # Refusals: wrong roles, a plain photo, no subject, an unknown id.
        files = {"file": ("m.jpg", mine, "image/jpeg")}
        r = reviewer.post("/v1/sources", files=files, data={"subject": "x"})
        assert r.status_code == 403
        assert platform.get("/v1/sources").status_code == 403
        assert reviewer.delete(f"/v1/sources/{sid}").status_code == 403
        plain = encode(Image.new("RGB", (300, 200), (50, 50, 50)), "PNG")
        r = curator.post("/v1/sources", files={"file": ("p.png", plain)}, data={"subject": "x"})
        assert (r.status_code, r.json()["code"]) == (422, "source.too_plain")
        assert curator.post("/v1/sources", files=files).status_code == 422
        assert curator.delete("/v1/sources/999999").status_code == 404
        # Removal: gone at once for this process's scans.
        assert curator.delete(f"/v1/sources/{sid}").status_code == 200
        assert reviewer.get(f"/v1/sources/{sid}").status_code == 404
        r = platform.post("/v1/scan", files={"file": ("e.jpg", edited, "image/jpeg")})
        assert r.json()["signals"]["derivative_of"] is None

        # Written by another process (here: this test, straight into the database): the
        # server's matcher picks it up from the log within a refresh interval.
        from dignity.storage.db import open_database

        other = open_database(live.url)
        try:
            service = SourceService(other)
            media = decode(mine)
            new = service.register([service.prepare(NewSource(media, "p2"))])[0]
        finally:
            other.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = platform.post("/v1/scan", files={"file": ("e.jpg", edited, "image/jpeg")})
            found = r.json()["signals"]["derivative_of"]
            if found is not None:
                break
            time.sleep(0.2)
        assert found is not None and found["source_id"] == new.id
