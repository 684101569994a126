"""Videos over real HTTP (a server subprocess) and through the real CLI (a subprocess): scan
and hash give the image scan's object for videos, long ones are refused inside a request with a
stable code, uploads over the video byte limit are refused, and hostile files get clear errors.
Every video is synthetic (gradients and flat colours built with PyAV in a temp directory)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from dignity.samples import encode, landscape
from tests.integration.server import LiveServer
from tests.integration.test_cli import Cli
from tests.unit.test_video_hostile import MS, _steady, _write

SYNC_SECONDS = 5


def _noise(path: Path, seconds: float) -> Path:
    """Random pixels compress badly: a short clip of a few hundred KB."""
    rng = np.random.default_rng(7)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.codec_context.time_base = MS
        for index, stamp in enumerate(_steady(seconds)):
            pixels = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = stamp, MS
            del index
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    return {
        "clip": _write(root / "clip.mp4", _steady(3)),
        "long": _write(root / "long.mp4", [0, 30_000], size=(16, 16)),
        "ten_hours": _write(root / "ten-hours.mp4", [0, 36_000_000], size=(16, 16)),
        "noise": _noise(root / "noise.mp4", 1),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(
        tmp_path_factory.mktemp("video-live"),
        env={
            "DIGNITY_VIDEO_SYNC_MAX_SECONDS": str(SYNC_SECONDS),
            "DIGNITY_VIDEO_MAX_BYTES": "200000",
        },
    )
    live.start()
    yield live
    live.stop()


def _upload(path: Path, name: str | None = None) -> dict[str, tuple[str, bytes, str]]:
    return {"file": (name or path.name, path.read_bytes(), "application/octet-stream")}


def test_scan_and_hash_a_video_over_http(server: LiveServer, videos: dict[str, Path]) -> None:
    clip = videos["clip"]
    md5 = hashlib.md5(clip.read_bytes()).hexdigest()
    with server.client("platform") as plat, server.client("curator") as cur:
        # The name says JPEG; the bytes say MP4, and the bytes decide.
        r = plat.post("/v1/scan", files=_upload(clip, "holiday.jpg"))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["kind"] == "video" and body["md5"] == md5
        assert body["duration_s"] == pytest.approx(3.0)
        assert [f["timestamp"] for f in body["vpdq"]] == [0.0, 1.0, 2.0]
        assert body["partial"] is False and body["matches"] == []
        assert body["signals"]["video"]["sampled_frames"] >= 8
        assert 0 <= body["signals"]["nudity"] < 0.5  # the real classifier, on gradients
        assert body["decision"]["action"] == "allow" and body["scan_id"] > 0

        hashed = plat.post("/v1/hash", files=_upload(clip))
        assert hashed.status_code == 200, hashed.text
        assert hashed.json()["kind"] == "video"
        assert hashed.json()["vpdq"] == body["vpdq"]

        assert cur.post("/v1/banks", json={"name": "videos"}).status_code == 201
        added = cur.post(
            "/v1/banks/videos/entries", json={"entries": [{"signal": "md5", "value": md5}]}
        )
        assert added.status_code in (200, 201), added.text
        blocked = plat.post("/v1/scan", files=_upload(clip)).json()
        assert [m["signal"] for m in blocked["matches"]] == ["md5"]
        assert blocked["decision"]["action"] == "block"

        image = plat.post("/v1/scan", files={"file": ("x.png", encode(landscape(3), "PNG"))})
        assert image.status_code == 200 and image.json()["kind"] == "image"


def test_long_big_and_hostile_videos_get_clear_errors(
    server: LiveServer, videos: dict[str, Path]
) -> None:
    with server.client("platform") as plat:
        for route in ("/v1/scan", "/v1/hash"):
            r = plat.post(route, files=_upload(videos["long"]))
            assert r.status_code == 413, r.text
            assert r.json()["code"] == "media.video_too_long_for_sync"
            assert r.json()["detail"]["limit"] == SYNC_SECONDS
        r = plat.post("/v1/scan", files=_upload(videos["ten_hours"]))
        assert r.status_code == 413 and r.json()["code"] == "media.video_too_long_for_sync"
        assert videos["noise"].stat().st_size > 200_000
        r = plat.post("/v1/scan", files=_upload(videos["noise"]))
        assert r.status_code == 413 and r.json()["code"] == "request.too_large"
        data = videos["clip"].read_bytes()
        cut = plat.post("/v1/scan", files={"file": ("cut.mp4", data[: len(data) // 4])})
        assert cut.status_code in (200, 422), cut.text
        if cut.status_code == 422:
            assert cut.json()["code"] in ("media.truncated", "media.corrupt", "media.not_a_video")
        else:
            assert cut.json()["partial"] is True
        # The server is still well after all of that.
        assert plat.get("/healthz").json()["status"] == "ok"


def test_cli_scans_videos(tmp_path: Path, videos: dict[str, Path]) -> None:
    cli = Cli(tmp_path / "data")
    rows = cli.lines("scan", "--workers", "1", str(videos["clip"]))
    assert len(rows) == 1
    row = rows[0]
    assert row["kind"] == "video" and row["status"] == "no_match"
    assert row["duration_s"] == pytest.approx(3.0) and len(row["vpdq"]) == 3  # type: ignore[arg-type]

    folder = tmp_path / "upload-dir"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(videos["clip"].read_bytes())
    (folder / "b.png").write_bytes(encode(landscape(4), "PNG"))
    (folder / "c.mov").write_bytes(videos["ten_hours"].read_bytes())
    report = tmp_path / "report.jsonl"
    r = cli("scan", "--workers", "1", "--report", str(report), str(folder))
    assert r.returncode == 1, r.stderr  # one file refused: reported, the rest scanned
    got = {Path(str(x["path"])).name: x for x in map(json.loads, report.read_text().splitlines())}
    assert got["a.mp4"]["kind"] == "video" and got["b.png"]["kind"] == "image"
    # The CLI has no sync limit, but DIGNITY_VIDEO_MAX_SECONDS (3 h) still refuses 10 hours.
    assert got["c.mov"]["status"] == "error"
    assert got["c.mov"]["error"]["code"] == "media.too_long"
