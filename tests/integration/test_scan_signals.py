"""``dignity scan FILE...`` and ``POST /v1/scan`` end to end: hashes, matches, signals, decision.

Runs the real CLI in a subprocess on a real SQLite file: the C2PA fixtures report what their
README says, generated images carrying generator metadata or a Stable Diffusion watermark
(embedded with the invisible-watermark package, as the SD scripts do) are labelled, benign
photos are allowed with no evidence, and policy files are checked before use.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import PngImagePlugin

from dignity.samples import encode, landscape
from tests.conftest import shared_fixture
from tests.integration.test_cli import Cli
from tests.unit.test_watermark import marked

ROW_KEYS = {"path", "status", "pdq", "quality", "md5", "sha256", "matches", "signals", "decision"}


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "data")


def scan(cli: Cli, *paths: Path, code: int = 0) -> dict[str, dict[str, Any]]:
    r = cli("scan", "--workers", "1", *map(str, paths))
    assert r.returncode == code, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == len(paths)
    return {Path(row["path"]).name: row for row in rows}


def test_c2pa_fixtures_report_their_provenance(cli: Cli) -> None:
    folder = shared_fixture("c2pa")
    names = ["A.jpg", "C.jpg", "C_with_CAWG_data.jpg", "cloud.jpg", "XCA.jpg"]
    rows = scan(cli, *(folder / n for n in names))
    for row in rows.values():
        assert set(row) >= ROW_KEYS, set(row)
    state = {n: rows[n]["signals"]["c2pa"]["state"] for n in names}
    assert state == {
        "A.jpg": "none",
        "C.jpg": "valid",
        "C_with_CAWG_data.jpg": "valid",
        "cloud.jpg": "remote",
        "XCA.jpg": "invalid",
    }
    c = rows["C.jpg"]
    assert "algorithmicMedia" in c["signals"]["c2pa"]["digital_source_types"]
    assert [e["source"] for e in c["signals"]["ai_evidence"]] == ["c2pa"]
    assert c["decision"]["action"] == "label" and c["decision"]["labels"] == ["AI-generated"]
    assert {r["rule"] for r in c["decision"]["reasons"]} == {"ai-label"}
    camera = rows["C_with_CAWG_data.jpg"]
    assert camera["signals"]["c2pa"]["digital_source_types"] == ["digitalCapture"]
    assert camera["signals"]["ai_evidence"] == [] and camera["decision"]["action"] == "allow"
    for name in ("A.jpg",):
        assert rows[name]["signals"]["ai_evidence"] == []
        assert rows[name]["decision"]["action"] == "allow"


def _png(parameters: dict[str, str], seed: int = 5) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in parameters.items():
        info.add_text(key, value)
    buf = io.BytesIO()
    landscape(seed, size=(512, 512)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def test_generated_images_are_labelled_and_photos_are_not(cli: Cli, tmp_path: Path) -> None:
    prompt = "a watercolor lighthouse at dawn, soft light"
    files = {
        "a1111.png": _png(
            {
                "parameters": f"{prompt}\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, "
                "Size: 512x512, Model: sd_xl_base_1.0"
            }
        ),
        "comfy.png": _png({"prompt": json.dumps({"3": {"class_type": "KSampler", "inputs": {}}})}),
        # Marked as the SDXL pipeline and the SD 1.x script do (see tests/unit/test_watermark.py).
        "sdxl.png": encode(marked("sdxl", "bgr", 3, (1024, 1024)), "PNG"),
        "sd1.png": encode(marked("sd1", "script", 5, (512, 512)), "PNG"),
        "photo.jpg": encode(landscape(12, size=(1024, 768)), "JPEG", quality=90),
        "photo.png": encode(landscape(13, size=(1024, 1024)), "PNG"),
    }
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    rows = scan(cli, *paths)
    sources = {n: [e["source"] for e in r["signals"]["ai_evidence"]] for n, r in rows.items()}
    assert sources == {
        "a1111.png": ["metadata"],
        "comfy.png": ["metadata"],
        "sdxl.png": ["watermark"],
        "sd1.png": ["watermark"],
        "photo.jpg": [],
        "photo.png": [],
    }
    for name in ("a1111.png", "comfy.png", "sdxl.png", "sd1.png"):
        assert rows[name]["decision"]["action"] == "label", name
    for name in ("photo.jpg", "photo.png"):
        assert rows[name]["decision"]["action"] == "allow", name
        assert rows[name]["signals"]["nudity"] < 0.2
    assert rows["sdxl.png"]["signals"]["watermark"]["found"] == "sdxl"
    assert rows["sd1.png"]["signals"]["watermark"]["found"] == "sd1"
    # Prompts are never stored or reported, only their hash.
    assert prompt not in json.dumps(rows)
    # The hash fields are those of `dignity hash` for the same file.
    hashed = cli.lines("hash", *map(str, paths))
    for h in hashed:
        row = rows[Path(str(h["path"])).name]
        assert {k: row[k] for k in ("pdq", "quality", "md5", "sha256")} == {
            k: h[k] for k in ("pdq", "quality", "md5", "sha256")
        }


def test_block_bank_match_blocks_with_a_statement(cli: Cli, tmp_path: Path) -> None:
    original = tmp_path / "known.jpg"
    original.write_bytes(encode(landscape(21), quality=92))
    copy = tmp_path / "copy.png"
    copy.write_bytes(encode(landscape(21).resize((600, 450)), "PNG"))
    cli.lines("bank", "create", "ncii", "--purpose", "block")
    cli.lines("bank", "add", "ncii", str(original))
    row = scan(cli, copy)["copy.png"]
    d = row["decision"]
    assert (d["action"], d["priority"], d["rules"]) == ("block", 100, ["bank-block"])
    assert d["reasons"][0]["signal"] == "match.block"
    assert d["reasons"][0]["value"][0]["bank"] == "ncii"
    st = d["statement"]
    assert st["automated_decision"] is True and st["redress"] and st["legal_ground"]
    assert row["matches"][0]["bank"] == "ncii"


def test_bad_files_are_reported_and_the_rest_scanned(cli: Cli, tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    good.write_bytes(encode(landscape(2, size=(200, 100)), "PNG"))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    rows = scan(cli, good, bad, code=1)
    assert rows["bad.jpg"]["status"] == "error"
    assert rows["bad.jpg"]["error"]["code"].startswith("media.")
    assert rows["good.png"]["decision"]["action"] == "allow"
    r = cli("scan", str(tmp_path / "missing.jpg"))
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_policy_files_are_checked(cli: Cli, tmp_path: Path) -> None:
    good = tmp_path / "strict.toml"
    good.write_text(
        "[policy]\nname = 'strict'\nversion = '1'\n\n[[rule]]\nid = 'png-ai'\n"
        "when = ['generator.generator']\naction = 'review'\npriority = 'high'\n"
    )
    r = cli("policy", "check", str(good))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] and out["rules"] == [
        {"id": "png-ai", "action": "review", "priority": 75, "line": 5}
    ]
    bad = tmp_path / "bad.toml"
    bad.write_text("[[rule]]\nid = 'x'\nwhen = ['nudity >= 0.8', 'ai_evidnce']\naction = 'block'\n")
    r = cli("policy", "check", str(bad))
    assert r.returncode == 3
    assert f"{bad}:1: rule 'x': unknown fact 'ai_evidnce'" in r.stderr
    # A scan refuses to run under a broken policy rather than decide wrongly.
    img = tmp_path / "a.png"
    img.write_bytes(_png({"parameters": "x\nSteps: 20, Sampler: Euler, Seed: 3"}))
    cli.env["DIGNITY_POLICY_FILE"] = str(bad)
    r = cli("scan", str(img))
    assert r.returncode == 3 and "unknown fact" in r.stderr
    cli.env["DIGNITY_POLICY_FILE"] = str(good)
    row = scan(cli, img)["a.png"]
    assert (row["decision"]["action"], row["decision"]["policy"]) == ("review", "strict 1")
    r = cli("policy", "default")
    assert r.returncode == 0 and "[[rule]]" in r.stdout


def test_signals_lists_plugins(cli: Cli) -> None:
    infos = cli.lines("signals")
    assert {i["name"] for i in infos} >= {"c2pa", "xmp", "generator", "watermark", "opennsfw"}
    assert all(i["version"] for i in infos)


def test_serve_refuses_a_broken_policy(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[rule]]\nid = 'x'\nwhen = ['match.block']\naction = 'delete'\n")
    cli.env["DIGNITY_POLICY_FILE"] = str(bad)
    r = cli("serve", "--port", "1")  # never reached: the policy is checked before binding
    assert r.returncode == 3
    assert "policy.invalid" in r.stderr and f"{bad}:1: rule 'x': action must be" in r.stderr
