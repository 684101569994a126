"""HMA's routes with videos, against a live server (SQLite file; PostgreSQL where set): ``/h/hash``
gives a video's ``video_md5`` and ``vpdq`` (py-tx's JSON list of ``"pdq_hex,quality,timestamp"``),
a video uploaded to a bank is one entry, ``/m/lookup`` finds it by upload, by its vPDQ and by its
MD5, and ``/c/bank/.../signal`` takes a vpdq signal as py-tx writes it. Videos are small
synthetic ones (benign generated landscapes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dignity.hashing.digests import md5_hex
from tests.integration.server import LiveServer
from tests.video_samples import write_video


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = Path(tmp_path_factory.mktemp("hma-videos"))
    return {
        "original": write_video(d / "o.mp4", [(3, 8)]).read_bytes(),
        "copy": write_video(d / "c.webm", [(4, 6), (3, 8)], codec="libvpx").read_bytes(),
        "other": write_video(d / "x.mp4", [(9, 6)]).read_bytes(),
    }


@pytest.fixture(scope="module")
def curator(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client("curator") as c:
        yield c


@pytest.fixture(scope="module")
def platform(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client("platform") as c:
        yield c


def test_hash_a_video(platform: httpx.Client, clips: dict[str, bytes]) -> None:
    r = platform.post("/h/hash", files={"video": ("v.mp4", clips["original"], "video/mp4")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"video_md5", "vpdq"} and body["video_md5"] == md5_hex(clips["original"])
    frames = json.loads(body["vpdq"])
    assert len(frames) == 8
    pdq, quality, timestamp = frames[1].split(",")
    assert len(pdq) == 64 and 0 <= int(quality) <= 100 and float(timestamp) == 1.0
    # Asked for by name, a vpdq of bytes that are no video is the client's error.
    fake = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8
    r = platform.post("/h/hash?types=vpdq", files={"video": ("v.mp4", fake, "video/mp4")})
    assert r.status_code == 400, r.text


def test_bank_and_look_up_videos(
    curator: httpx.Client, platform: httpx.Client, clips: dict[str, bytes]
) -> None:
    r = curator.post("/c/banks", json={"name": "VIDEO_BANK"})
    assert r.status_code == 201, r.text
    r = curator.post(
        "/c/bank/VIDEO_BANK/content",
        files={"video": ("o.mp4", clips["original"], "video/mp4")},
    )
    assert r.status_code == 200, r.text
    added = r.json()
    cid = added["id"]
    assert set(added["signals"]) == {"video_md5", "vpdq"}
    r = curator.get(f"/c/bank/VIDEO_BANK/content/{cid}", params={"include_signals": "true"})
    assert r.status_code == 200, r.text
    signals = r.json()["signals"]
    assert signals["video_md5"] == md5_hex(clips["original"])
    assert json.loads(signals["vpdq"]) == json.loads(added["signals"]["vpdq"])

    # The same file: by MD5 and by frames, one entry.
    r = platform.post("/m/lookup", files={"video": ("o.mp4", clips["original"], "video/mp4")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["video_md5"] == {"VIDEO_BANK": [{"bank_content_id": cid, "distance": "0"}]}
    (hit,) = body["vpdq"]["VIDEO_BANK"]
    assert hit["bank_content_id"] == cid and hit["query_match_percent"] == 100.0
    # A re-encoded copy with 6 s of other footage before it: no MD5, found by its frames.
    r = platform.post("/m/lookup", files={"video": ("c.webm", clips["copy"], "video/webm")})
    body = r.json()
    assert body["video_md5"] == {} and body["vpdq"]["VIDEO_BANK"][0]["bank_content_id"] == cid
    r = platform.post("/m/lookup", files={"video": ("x.mp4", clips["other"], "video/mp4")})
    assert r.json() == {"video_md5": {}, "vpdq": {}}
    # By hash, as HMA clients send them.
    r = platform.get(
        "/m/lookup", params={"signal_type": "vpdq", "signal": added["signals"]["vpdq"]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["VIDEO_BANK"][0]["bank_content_id"] == cid
    r = platform.get(
        "/m/lookup",
        params={"signal_type": "video_md5", "signal": md5_hex(clips["original"])},
    )
    assert r.json() == {"VIDEO_BANK": [{"bank_content_id": cid, "distance": "0"}]}
    r = platform.get("/m/lookup", params={"signal_type": "vpdq", "signal": '["nope"]'})
    assert r.status_code == 400


def test_add_a_vpdq_signal(
    curator: httpx.Client, platform: httpx.Client, clips: dict[str, bytes]
) -> None:
    r = curator.post("/c/banks", json={"name": "SIGNAL_VIDEOS"})
    assert r.status_code == 201, r.text
    hashed = platform.post(
        "/h/hash", files={"video": ("x.mp4", clips["other"], "video/mp4")}
    ).json()
    r = curator.post("/c/bank/SIGNAL_VIDEOS/signal", json={"vpdq": hashed["vpdq"]})
    assert r.status_code == 200, r.text
    cid = r.json()["id"]
    r = platform.post("/m/lookup", files={"video": ("x.mp4", clips["other"], "video/mp4")})
    assert r.json()["vpdq"] == {
        "SIGNAL_VIDEOS": [
            {
                "bank_content_id": cid,
                "distance": "0",
                "query_match_percent": 100.0,
                "compared_match_percent": 100.0,
            }
        ]
    }
    r = curator.post("/c/bank/SIGNAL_VIDEOS/signal", json={"vpdq": "[1, 2]"})
    assert r.status_code == 400
