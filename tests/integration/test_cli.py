"""The real ``dignity`` command line in a subprocess, on a real SQLite file in a temp directory."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from dignity.samples import edited_copies, encode, landscape


class Cli:
    def __init__(self, data: Path) -> None:
        self.env = {**os.environ, "DIGNITY_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1"}
        self.env.pop("DIGNITY_DATABASE_URL", None)
        self.db = data / "dignity.sqlite3"

    def __call__(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dignity", *args],
            env=self.env,
            capture_output=True,
            text=True,
            input=input,
            timeout=120,
        )

    def lines(self, *args: str) -> list[dict[str, object]]:
        r = self(*args)
        assert r.returncode == 0, r.stderr
        return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]

    def snapshot(self) -> bytes:
        """Every row of the database, to prove a failed command changed nothing."""
        import sqlite3

        con = sqlite3.connect(self.db)
        try:
            dump = "\n".join(con.iterdump())
        finally:
            con.close()
        return dump.encode()


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "data")


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "img"
    d.mkdir()
    out: dict[str, Path] = {}
    for seed in (1, 2):
        out[f"orig{seed}"] = d / f"orig{seed}.jpg"
        out[f"orig{seed}"].write_bytes(encode(landscape(seed), quality=92))
    for name, img in edited_copies(landscape(1)).items():
        out[name] = d / f"{name}.jpg"
        out[name].write_bytes(encode(img, quality=80))
    out["unrelated"] = d / "unrelated.png"
    out["unrelated"].write_bytes(encode(landscape(77), "PNG"))
    return out


def _bad_inputs(d: Path) -> dict[str, Path]:
    files = {
        "empty": b"",
        "text.jpg": b"this is a text file, not a picture\n" * 10,
        "truncated.jpg": encode(landscape(3), quality=90)[:4000],
    }
    # A PNG that declares 40000 x 40000 pixels: refused from its header, never decoded.
    png = bytearray(encode(Image.new("L", (8, 8)), "PNG"))
    ihdr = struct.pack(">II", 40000, 40000) + bytes(png[24:29])
    png[16:29] = ihdr
    png[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    files["bomb.png"] = bytes(png)
    out = {}
    for name, data in files.items():
        out[name] = d / name
        out[name].write_bytes(data)
    return out


def test_hash_contract(cli: Cli, images: dict[str, Path]) -> None:
    rows = cli.lines("hash", "--dihedral", str(images["orig1"]), str(images["unrelated"]))
    assert [r["path"] for r in rows] == [str(images["orig1"]), str(images["unrelated"])]
    for r in rows:
        assert isinstance(r["pdq"], str) and len(r["pdq"]) == 64 and r["pdq"] == r["pdq"].lower()
        assert isinstance(r["quality"], int) and 0 <= r["quality"] <= 100
        assert len(str(r["md5"])) == 32 and len(str(r["sha256"])) == 64
        dih = r["pdq_dihedral"]
        assert isinstance(dih, list) and len(dih) == 8 and dih[0] == r["pdq"]
    plain = cli.lines("hash", str(images["orig1"]))[0]
    assert "pdq_dihedral" not in plain


def test_hash_reports_bad_files_and_exits_nonzero(cli: Cli, tmp_path: Path) -> None:
    bad = _bad_inputs(tmp_path)
    good = tmp_path / "good.png"
    good.write_bytes(encode(landscape(5), "PNG"))
    r = cli("hash", *map(str, bad.values()), str(good), str(tmp_path / "missing.jpg"))
    assert r.returncode == 1
    rows = {Path(str(x["path"])).name: x for x in map(json.loads, r.stdout.splitlines())}
    codes = {k: v.get("error", {}).get("code") for k, v in rows.items()}  # type: ignore[union-attr]
    assert codes == {
        "empty": "media.empty",
        "text.jpg": "media.not_an_image",
        "truncated.jpg": "media.truncated",
        "bomb.png": "media.too_many_pixels",
        "good.png": None,
        "missing.jpg": "input.unreadable",
    }
    assert "failed" in r.stderr


def test_bank_add_and_match_contract(cli: Cli, images: dict[str, Path]) -> None:
    created = cli.lines("bank", "create", "ncii", "--purpose", "block", "--threshold", "31")
    assert created[0]["name"] == "ncii"
    added = cli.lines("bank", "add", "ncii", str(images["orig1"]))
    assert {e["signal"] for e in added[0]["entries"]} == {"pdq", "md5"}  # type: ignore[union-attr]
    paths = [str(images[k]) for k in ("orig1", "resized", "rotated", "mirrored", "unrelated")]
    rows = cli.lines("match", *paths)
    by = {Path(str(r["path"])).stem: r for r in rows}
    for key in ("orig1", "resized", "rotated", "mirrored"):
        matches = by[key]["matches"]
        assert isinstance(matches, list) and matches, key
        m = matches[0]
        assert set(m) >= {"bank", "entry_id", "signal", "distance"}
        assert m["bank"] == "ncii" and m["signal"] in ("pdq", "md5")
    assert by["unrelated"]["matches"] == []
    exact = [m for m in by["orig1"]["matches"] if m["signal"] == "md5"]  # type: ignore[union-attr,index]
    assert exact and exact[0]["distance"] == 0


def test_bank_commands(cli: Cli, tmp_path: Path) -> None:
    cli.lines("bank", "create", "a", "--threshold", "20")
    cli.lines("bank", "add", "a", "pdq:" + "ab" * 32, "cd" * 16, "sha256:" + "ef" * 32)
    show = cli.lines("bank", "show", "a", "--entries", "10")[0]
    assert show["active_entries"] == 3 and len(show["entries"]) == 3  # type: ignore[arg-type]
    export = tmp_path / "a.txt"
    r = cli("bank", "export", "a", "--format", "text", "-o", str(export))
    assert r.returncode == 0, r.stderr
    assert sorted(export.read_text().split("\n")[:-1])[0].startswith("md5 ")
    cli.lines("bank", "create", "b")
    imp = cli.lines("bank", "import", "b", str(export))[0]
    assert imp["added"] == 3
    w = cli.lines("bank", "withdraw", "b", "ab" * 32)[0]
    assert w["withdrawn"] == 1
    assert cli.lines("bank", "show", "b")[0]["withdrawn_entries"] == 1
    listed = cli.lines("bank", "list", "--json")
    assert [b["name"] for b in listed] == ["a", "b"]
    r = cli("bank", "delete", "b")  # no --yes and no terminal: refused
    assert r.returncode == 3 and "--yes" in r.stderr
    assert cli.lines("bank", "delete", "b", "--yes")[0]["entries"] == 3
    table = cli("bank", "list")
    assert table.returncode == 0 and "a" in table.stdout


def test_errors_are_one_line_and_change_nothing(cli: Cli, tmp_path: Path) -> None:
    cli.lines("bank", "create", "a")
    cli.lines("bank", "add", "a", "pdq:" + "ab" * 32)
    before = cli.snapshot()
    bad = _bad_inputs(tmp_path)
    good = tmp_path / "good.jpg"
    good.write_bytes(encode(landscape(8)))
    cases = [
        (["bank", "create", "a"], 3, "bank.exists"),
        (["bank", "create", "bad name"], 3, "bank.bad_name"),
        (["bank", "create", "t", "--threshold", "64"], 3, "bank.bad_threshold"),
        (["bank", "create", "t", "--threshold", "99"], 3, "bank.bad_threshold"),
        (["bank", "update", "a", "--threshold", "-1"], 3, "bank.bad_threshold"),
        (["bank", "create", "t", "--vpdq-query-percent", "0"], 3, "bank.bad_threshold"),
        (["bank", "add", "nope", "pdq:" + "ab" * 32], 3, "bank.not_found"),
        (["bank", "add", "a", "pdq:xyz"], 1, ""),
        (["bank", "add", "a", "not-a-file-or-hash"], 1, ""),
        (["bank", "withdraw", "a", "424242"], 3, "entry.not_found"),
        (["bank", "show", "nope"], 3, "bank.not_found"),
    ]
    for name in bad:
        cases.append((["bank", "add", "a", str(good), str(bad[name])], 1, "nothing was added"))
    bad_import = tmp_path / "bad.txt"
    bad_import.write_text("pdq " + "a" * 64 + "\npdq nothex\n")
    cases.append((["bank", "import", "a", str(bad_import)], 3, "line 2"))
    for args, code, text in cases:
        r = cli(*args)
        assert r.returncode == code, (args, r.stdout, r.stderr)
        assert text in r.stderr, (args, r.stderr)
        if code == 3:
            assert len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert "Traceback" not in r.stderr
    assert cli.snapshot() == before


def test_bad_database_url_is_exit_4(cli: Cli) -> None:
    cli.env["DIGNITY_DATABASE_URL"] = "nosuchdialect://x"
    r = cli("bank", "list")
    assert r.returncode == 4 and r.stderr.startswith("dignity: error: storage.")


def test_scan_is_resumable(cli: Cli, tmp_path: Path, images: dict[str, Path]) -> None:
    cli.lines("bank", "create", "b")
    cli.lines("bank", "add", "b", str(images["orig1"]))
    tree = tmp_path / "tree" / "sub"
    tree.mkdir(parents=True)
    for name in ("resized", "rotated", "unrelated", "orig2"):
        (tree / images[name].name).write_bytes(images[name].read_bytes())
    (tree.parent / "notes.txt").write_text("not an image")
    (tree / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    report = tmp_path / "report.jsonl"
    r = cli("scan", str(tree.parent), "--report", str(report), "--workers", "2")
    assert r.returncode == 1, r.stderr  # the broken file
    rows = [json.loads(x) for x in report.read_text().splitlines()]
    assert len(rows) == 5
    status = {Path(x["path"]).name: x["status"] for x in rows}
    assert status == {
        "resized.jpg": "matched",
        "rotated.jpg": "matched",
        "unrelated.png": "no_match",
        "orig2.jpg": "no_match",
        "broken.jpg": "error",
    }
    assert "matched" in r.stderr and "errors" in r.stderr
    # Simulate a crash: drop two rows and tear the last line; the rerun scans only those.
    lines = report.read_text().splitlines()
    report.write_text("\n".join(lines[:3]) + "\n" + lines[3][:10])
    r = cli("scan", str(tree.parent), "--report", str(report))
    rows = [json.loads(x) for x in report.read_text().splitlines()]
    assert sorted(Path(x["path"]).name for x in rows) == sorted(status)
    csv_report = tmp_path / "report.csv"
    r = cli("scan", str(tree.parent), "--report", str(csv_report), "--format", "csv")
    text = csv_report.read_text().splitlines()
    assert text[0].startswith("path,status") and len(text) == 6


def test_demo_shows_a_match(cli: Cli) -> None:
    r = cli("demo")
    assert r.returncode == 0, r.stderr
    assert "MATCH" in r.stdout and "no match" in r.stdout
    # Piped (not a terminal), the printed curl command is one whole line, ready to paste.
    curl = [line for line in r.stdout.splitlines() if "curl -H" in line]
    assert len(curl) == 1 and curl[0].rstrip().endswith("/v1/scan"), r.stdout
    again = cli("demo")
    assert again.returncode == 0 and again.stdout.count("MATCH") == r.stdout.count("MATCH")


def test_exif_rotated_copy_matches_stored_upright(cli: Cli, tmp_path: Path) -> None:
    upright = landscape(31, (640, 480))
    up = tmp_path / "up.jpg"
    up.write_bytes(encode(upright, quality=92))
    cli.lines("bank", "create", "b")
    cli.lines("bank", "add", "b", "--signals", "pdq", str(up))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(buf, "JPEG", quality=90, exif=exif.tobytes())
    turned = tmp_path / "turned.jpg"
    turned.write_bytes(buf.getvalue())
    m = cli.lines("match", str(turned))[0]["matches"]
    assert isinstance(m, list) and m and m[0]["distance"] <= 31


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_db_upgrade_and_keys(cli: Cli, tmp_path: Path, backend: str) -> None:
    from contextlib import ExitStack

    from tests.conftest import postgres_schema

    with ExitStack() as stack:
        if backend == "postgresql":
            cli.env["DIGNITY_DATABASE_URL"] = stack.enter_context(postgres_schema())
        up = cli.lines("db", "upgrade")[0]
        assert up["status"] == "up to date"
        created = cli.lines("key", "create", "--role", "platform", "--name", "pipeline")[0]
        assert created["role"] == "platform" and str(created["key"]).startswith("dg_")
        listed = cli.lines("key", "list")
        assert [k["id"] for k in listed] == [created["id"]]
        assert "key" not in listed[0]  # the key itself is never shown again
        assert cli.lines("key", "revoke", str(created["id"]))[0]["revoked_at"]
        r = cli("key", "create", "--role", "root")
        assert r.returncode == 2
        r = cli("key", "revoke", "999")
        assert r.returncode == 3 and "key.not_found" in r.stderr


def test_ctrl_c_stops_the_server_with_the_interrupt_status(tmp_path: Path) -> None:
    # `dignity serve` (what `make run` leaves running) stops on Ctrl-C with the documented
    # status 130 and one line, not click's "Aborted!" and 1 (the partial-failure status).
    import signal

    from tests.integration.server import LiveServer

    server = LiveServer(tmp_path / "data")
    server.start()
    assert server.proc is not None
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(timeout=30) == 130
    log = server.log.read_text()
    assert "dignity: interrupted" in log and "Aborted!" not in log
