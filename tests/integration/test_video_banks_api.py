"""The native API's bank and match routes with videos, against a live server (SQLite file;
PostgreSQL where set): a video uploaded to a bank is one vpdq entry with its MD5; entries can
be given as frames or as py-tx text; ``/v1/match`` takes a video upload or a vpdq / video_md5
hash and reports percentages and segments; banks carry the vPDQ rule."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dignity.hashing.digests import md5_hex
from dignity.video.formats import frames_to_json, vpdq_digest, vpdq_pytx_json
from dignity.video.vpdq import vpdq_hash
from tests.integration.server import LiveServer
from tests.video_samples import write_video


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = Path(tmp_path_factory.mktemp("api-videos"))
    return {
        "original": write_video(d / "o.mp4", [(11, 8)]),
        "inside": write_video(d / "i.mkv", [(12, 10), (11, 4), (13, 10)], codec="mpeg4"),
        "other": write_video(d / "x.mp4", [(14, 6)]),
    }


@pytest.fixture(scope="module")
def curator(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client("curator") as c:
        yield c


@pytest.fixture(scope="module")
def platform(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client("platform") as c:
        yield c


def test_video_banks_and_matching(
    curator: httpx.Client, platform: httpx.Client, clips: dict[str, Path]
) -> None:
    r = curator.post("/v1/banks", json={"name": "api-videos", "vpdq_min_segment_s": 3})
    assert r.status_code == 201, r.text
    assert r.json()["vpdq_query_percent"] == 80.0
    data = clips["original"].read_bytes()
    r = curator.post("/v1/banks/api-videos/entries", files={"file": ("o.mp4", data, "video/mp4")})
    assert r.status_code == 201, r.text
    (eid,) = r.json()["entry_ids"]
    (entry,) = curator.get("/v1/banks/api-videos/entries").json()
    assert entry["signal"] == "vpdq" and entry["video_md5"] == md5_hex(data)

    r = platform.post("/v1/match", files={"file": ("o.mp4", data, "video/mp4")})
    assert r.status_code == 200, r.text
    signals = {m["signal"]: m for m in r.json()["matches"]}
    assert set(signals) == {"vpdq", "video_md5"}
    assert signals["vpdq"]["query_match_percent"] == 100.0 and signals["vpdq"]["segments"]

    inside = clips["inside"].read_bytes()
    r = platform.post("/v1/match", files={"file": ("i.mkv", inside, "video/x-matroska")})
    (m,) = r.json()["matches"]
    assert m["entry_id"] == eid and m["query_match_percent"] < 80
    assert m["segments"][0]["query_start"] == 10.0 and m["segments"][0]["entry_start"] == 0.0

    other = clips["other"].read_bytes()
    assert (
        platform.post("/v1/match", files={"file": ("x.mp4", other, "video/mp4")}).json()["matches"]
        == []
    )

    # Hashes: a video's MD5 and its vPDQ as py-tx text.
    frames = vpdq_hash(clips["original"]).frames
    r = platform.post(
        "/v1/match",
        json={
            "hashes": [
                {"signal": "video_md5", "value": md5_hex(data)},
                {"signal": "vpdq", "value": vpdq_pytx_json(frames)},
            ]
        },
    )
    assert r.status_code == 200, r.text
    assert {(m["signal"], m["entry_id"]) for m in r.json()["matches"]} == {
        ("video_md5", eid),
        ("vpdq", eid),
    }
    r = platform.post("/v1/match", json={"hashes": [{"signal": "vpdq", "value": "[1]"}]})
    assert r.status_code in (400, 422), r.text


def test_video_entries_as_json(curator: httpx.Client, clips: dict[str, Path]) -> None:
    r = curator.post("/v1/banks", json={"name": "json-videos"})
    assert r.status_code == 201, r.text
    frames = vpdq_hash(clips["other"]).frames
    body = {
        "entries": [
            {"signal": "vpdq", "frames": frames_to_json(frames), "video_md5": "a" * 32},
            {"signal": "video_md5", "value": "b" * 32},
        ]
    }
    r = curator.post("/v1/banks/json-videos/entries", json=body)
    assert r.status_code == 201, r.text
    entries = {e["signal"]: e for e in curator.get("/v1/banks/json-videos/entries").json()}
    assert entries["vpdq"]["value"] == vpdq_digest(frames)
    assert entries["vpdq"]["video_md5"] == "a" * 32
    # The same frames as py-tx text are numbered afresh, so another entry; bad frames are 4xx
    # and write nothing.
    r = curator.post(
        "/v1/banks/json-videos/entries",
        json={"entries": [{"signal": "vpdq", "value": vpdq_pytx_json(frames)}]},
    )
    assert r.status_code == 201, r.text
    bad = {
        "entries": [
            {
                "signal": "vpdq",
                "frames": [{"frame": 0, "timestamp": 0, "pdq": "z" * 64, "quality": 50}],
            }
        ]
    }
    r = curator.post("/v1/banks/json-videos/entries", json=bad)
    assert r.status_code in (400, 422), r.text
    r = curator.post("/v1/banks/json-videos/entries", json={"entries": [{"signal": "vpdq"}]})
    assert r.status_code in (400, 422), r.text
    assert len(curator.get("/v1/banks/json-videos/entries").json()) == 3
    assert json.loads(r.text)["code"]
