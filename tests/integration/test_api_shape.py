"""One API shape (issue 19.4): the CLI and the HTTP API give the same objects, errors and times.

The scan object of ``dignity scan`` and ``/v1/scan`` compared field by field on one image; one
withdraw reply; one ``request.invalid`` detail; unknown signals and thresholds refused with
their own codes on both; timestamps with a zone in every reply; settings errors as one line
and exit 3; a busy port refused before startup; the help texts whole. A live server and the
real ``dignity`` command in a subprocess, on the same database.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from dignity.keys import ROLES
from dignity.samples import encode, landscape
from tests.integration.server import LiveServer

PHOTO = encode(landscape(41), quality=90)
OTHER = encode(landscape(42), quality=90)


def dignity(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dignity", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def lines(r: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]


@pytest.fixture(scope="module")
def curator(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client("curator") as c:
        yield c


@pytest.fixture(scope="module")
def banked(live: LiveServer, curator: httpx.Client) -> str:
    """A block bank holding PHOTO and an allow bank holding it too, so that a scan of it has
    matches, suppressed matches and allowed_by: every list of the scan object filled."""
    for name, purpose in (("shape-block", "block"), ("shape-allow", "allow")):
        assert curator.post("/v1/banks", json={"name": name, "purpose": purpose}).status_code == 201
        r = curator.post(f"/v1/banks/{name}/entries", files={"file": ("p.jpg", PHOTO)})
        assert r.status_code == 201, r.text
    return "shape-block"


def _without_timings(obj: Any) -> Any:
    """The scan object less what differs between two runs of the same scan: plug-in timings."""
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if k != "ms"}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    return obj


# -- the scan object ----------------------------------------------------------------------------
def test_cli_and_api_scan_give_the_same_object(
    live: LiveServer, banked: str, tmp_path: Path
) -> None:
    del banked
    path = tmp_path / "photo.jpg"
    path.write_bytes(PHOTO)
    with live.client("platform") as plat:
        r = plat.post("/v1/scan", files={"file": ("photo.jpg", PHOTO)})
    assert r.status_code == 200, r.text
    api = r.json()
    (cli,) = lines(dignity("scan", str(path), env=live.env))
    assert sorted(cli) == sorted(api)  # the same fields, none missing on either side
    assert {"path", "status", "suppressed", "allowed_by", "scan_id"} <= set(api)
    assert (cli["path"], api["path"]) == (str(path), None)
    assert isinstance(api["scan_id"], int) and cli["scan_id"] is None  # the CLI logs no scans
    assert api["status"] == cli["status"] == "no_match"  # every match cancelled by the allow bank
    assert api["suppressed"] and api["allowed_by"]
    for field in sorted(set(api) - {"path", "scan_id"}):
        assert _without_timings(cli[field]) == _without_timings(api[field]), field


def test_scan_status_matched(live: LiveServer, curator: httpx.Client, tmp_path: Path) -> None:
    assert curator.post("/v1/banks", json={"name": "shape-only"}).status_code == 201
    r = curator.post("/v1/banks/shape-only/entries", files={"file": ("o.jpg", OTHER)})
    assert r.status_code == 201, r.text
    path = tmp_path / "other.jpg"
    path.write_bytes(OTHER)
    with live.client("platform") as plat:
        api = plat.post("/v1/scan", files={"file": ("o.jpg", OTHER)}).json()
    (cli,) = lines(dignity("scan", str(path), env=live.env))
    assert api["status"] == cli["status"] == "matched"
    assert api["suppressed"] == cli["suppressed"] == [] and api["allowed_by"] == []


# -- withdraw -----------------------------------------------------------------------------------
def test_withdraw_by_id_or_hash_one_reply_on_both(live: LiveServer, curator: httpx.Client) -> None:
    assert curator.post("/v1/banks", json={"name": "shape-w"}).status_code == 201
    values = ["1" * 64, "2" * 64, "3" * 64, "4" * 64]
    added = curator.post(
        "/v1/banks/shape-w/entries",
        json={"entries": [{"signal": "pdq", "value": v} for v in values]},
    ).json()
    ids = added["entry_ids"]
    by_id = curator.post("/v1/banks/shape-w/withdraw", json={"entry_ids": [ids[0]]})
    by_hash = curator.post("/v1/banks/shape-w/withdraw", json={"values": [values[1]]})
    assert by_id.json() == by_hash.json() == {"bank": "shape-w", "withdrawn": 1}
    (cli_id,) = lines(dignity("bank", "withdraw", "shape-w", str(ids[2]), env=live.env))
    (cli_hash,) = lines(dignity("bank", "withdraw", "shape-w", values[3], env=live.env))
    assert cli_id == cli_hash == {"bank": "shape-w", "withdrawn": 1}


# -- errors -------------------------------------------------------------------------------------
def test_request_invalid_detail_is_one_shape(curator: httpx.Client) -> None:
    # A body FastAPI validates (a JSON route) and one the upload reader validates (a route
    # taking a file or JSON): both answer detail {"errors": [{loc, msg}]}.
    framework = curator.post("/v1/banks", json={"name": 5})
    reader = curator.post("/v1/banks/x/entries", json={"entries": "nope"})
    for r in (framework, reader):
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["code"] == "request.invalid"
        assert set(body["detail"]) == {"errors"}, body
        assert body["detail"]["errors"] and {"loc", "msg"} == set(body["detail"]["errors"][0])


def test_unknown_signal_is_hash_unknown_signal(
    live: LiveServer, curator: httpx.Client, banked: str
) -> None:
    with live.client("platform") as plat:
        r = plat.post("/v1/match", json={"hashes": [{"signal": "phash", "value": "ab"}]})
    assert (r.status_code, r.json()["code"]) == (422, "hash.unknown_signal"), r.text
    r = curator.post(
        f"/v1/banks/{banked}/entries", json={"entries": [{"signal": "phash", "value": "ab" * 32}]}
    )
    assert (r.status_code, r.json()["code"]) == (422, "hash.unknown_signal"), r.text
    r = dignity("bank", "add", banked, "phash:" + "ab" * 32, env=live.env)
    assert r.returncode != 0 and "hash.unknown_signal" in r.stdout + r.stderr


def test_threshold_out_of_range_is_bank_bad_threshold(
    live: LiveServer, curator: httpx.Client
) -> None:
    r = curator.post("/v1/banks", json={"name": "shape-t", "threshold": 99})
    assert (r.status_code, r.json()["code"]) == (422, "bank.bad_threshold"), r.text
    assert curator.post("/v1/banks", json={"name": "shape-t"}).status_code == 201
    r = curator.patch("/v1/banks/shape-t", json={"threshold": -1})
    assert (r.status_code, r.json()["code"]) == (422, "bank.bad_threshold"), r.text
    r = dignity("bank", "create", "shape-t2", "--threshold", "99", env=live.env)
    assert r.returncode == 3, r.stderr
    assert r.stderr.startswith("dignity: error: bank.bad_threshold: ")


# -- times --------------------------------------------------------------------------------------
_TIME = re.compile(r"\A\d{4}-\d\d-\d\d[T ]\d\d:\d\d")


def _times(obj: Any, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _times(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for v in obj:
            yield from _times(v, f"{where}[]")
    elif isinstance(obj, str) and _TIME.match(obj):
        yield where, obj


def test_every_timestamp_has_a_zone(live: LiveServer, banked: str) -> None:
    del banked
    found: list[tuple[str, str]] = []
    with live.client("admin") as admin:
        hook = {"url": "https://hooks.example.org/d", "secret": "s" * 32, "events": ["*"]}
        assert admin.post("/v1/webhooks", json=hook).status_code == 201
        assert admin.post("/v1/scan", files={"file": ("p.jpg", PHOTO)}).status_code == 200
        for url in (
            "/v1/banks",
            "/v1/banks/shape-block",
            "/v1/banks/shape-block/entries",
            "/v1/webhooks",
            "/v1/events",
            "/v1/audit",
            "/v1/report",
        ):
            r = admin.get(url)
            found += [(url + w, t) for w, t in _times(r.json())]
    for args in (["key", "list"], ["bank", "list", "--json"], ["events", "list"]):
        for line in lines(dignity(*args, env=live.env)):
            found += [(" ".join(args) + w, t) for w, t in _times(line)]
    assert len({w for w, _ in found}) >= 8, found  # the sweep still finds times
    for where, text in found:
        assert "T" in text and datetime.fromisoformat(text).tzinfo is not None, (where, text)


def test_cli_json_writes_times_as_iso_with_a_zone() -> None:
    from dignity.cli.app import _json_default

    assert _json_default(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05+00:00"


# -- settings -----------------------------------------------------------------------------------
@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    out = {**os.environ, "DIGNITY_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    for name in list(out):
        if name.startswith("DIGNITY_") and name != "DIGNITY_DATA_DIR":
            del out[name]
    return out


@pytest.mark.parametrize(
    ("name", "value", "code", "args"),
    [
        ("DIGNITY_MAX_BYTES", "50MB", "config.max_bytes", ("bank", "list")),
        ("DIGNITY_PORT", "eighty", "config.port", ("bank", "list")),
        ("DIGNITY_NUDITY_CLASSIFIER", "resnet", "config.nudity_classifier", ("bank", "list")),
        ("DIGNITY_TAKEDOWN_ESCALATE_H", "soon", "config.takedown_escalate_h", ("bank", "list")),
        ("DIGNITY_TRUSTED_PROXIES", "not-a-net", "config.trusted_proxies", ("bank", "list")),
        ("DIGNITY_SIGNALS_DISABLED", '["watermak"]', "config.signals_disabled", ("signals",)),
        ("DIGNITY_SIGNALS_DISABLED", "c2pa,watermak", "config.signals_disabled", ("signals",)),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_3(
    env: dict[str, str], name: str, value: str, code: str, args: tuple[str, ...]
) -> None:
    r = dignity(*args, env={**env, name: value})
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f"dignity: error: {code}: {name}: "), r.stderr


@pytest.mark.parametrize("value", ["watermark", '["watermark"]', " watermark , xmp "])
def test_list_settings_take_json_or_commas(env: dict[str, str], value: str) -> None:
    running = {p["name"] for p in lines(dignity("signals", env=env))}
    assert "watermark" in running
    off = {
        p["name"] for p in lines(dignity("signals", env={**env, "DIGNITY_SIGNALS_DISABLED": value}))
    }
    assert "watermark" not in off and off < running


def test_a_busy_port_is_one_line_before_startup(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = dignity("serve", "--port", str(port), env=env, timeout=60)
        r_env = dignity("serve", env={**env, "DIGNITY_PORT": str(port)}, timeout=60)
    for got in (r, r_env):
        assert got.returncode == 3, (got.stdout, got.stderr)
        assert "startup complete" not in got.stdout + got.stderr
        assert got.stderr.startswith("dignity: error: config.port: "), got.stderr
        assert f"127.0.0.1:{port}" in got.stderr and len(got.stderr.strip().splitlines()) == 1


# -- help ---------------------------------------------------------------------------------------
def test_help_lists_whole_descriptions_and_every_role(env: dict[str, str]) -> None:
    top = dignity("--help", env=env)
    assert top.returncode == 0
    listed = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^  (\w+)\s+(.+)$", top.stdout.split("Commands:")[1], re.M)
    }
    for command in ("appeal", "statement"):
        # click cut these at "Art." (its first ". "), mid-sentence.
        assert not listed[command].endswith("Art."), listed[command]
        assert listed[command].endswith("."), listed[command]
    key = dignity("key", "--help", env=env).stdout
    for role in ROLES:
        assert re.search(rf"^\s+{role}\s+\S", key, re.M), (role, key)
