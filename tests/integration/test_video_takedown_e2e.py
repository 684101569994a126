"""A takedown of a video over HTTP, from the public intake to the platform's removal calls.

A real server (SQLite file and PostgreSQL), a local "platform" serving its videos by content id
and receiving webhooks. The platform scanned earlier uploads through ``/v1/scan`` (a
compilation holding 4 s of the reported video, and an unrelated video), which logs their vPDQ
frames; the reported video itself was never scanned. The
person files a request on ``/takedown/api/requests`` naming the video's URL; a reviewer opens
the item (a video: its preview is a blurred contact sheet, fetched from the platform), and
removes it. The server fetches the video into a temporary file, hashes it with vPDQ, logs it
and sweeps: the platform receives ``content.remove`` for the video and for the compilation
(``copy_video``, with the matched time ranges), and not for the unrelated video; the keyed
API lists the item as a video; a re-upload of the video is blocked; the requester's status
says removed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from sqlalchemy import select

from dignity.storage.db import open_database
from dignity.takedown.models import ScanRecord, ScanVideo
from tests.integration.conftest import database_for
from tests.integration.server import LiveServer
from tests.integration.test_removal import SECRET, Receiver
from tests.integration.test_review_ui import Reviewer
from tests.videos import mirrored, write_video

EVENTS = ["content.remove", "takedown.outcome"]


class Videos:
    """The platform's media service: videos by content id."""

    def __init__(self) -> None:
        self.items: dict[str, bytes] = {}
        self.fetched: list[str] = []
        media = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                content_id = unquote(self.path.rsplit("/", 1)[-1])
                body = media.items.get(content_id)
                media.fetched.append(content_id)
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def platform(backend: str) -> Iterator[tuple[Videos, Receiver]]:
    media, hooks = Videos(), Receiver()
    yield media, hooks
    media.close()
    hooks.close()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, backend: str, platform: tuple[Videos, Receiver]
) -> Iterator[LiveServer]:
    media, _ = platform
    directory = Path(tmp_path_factory.mktemp("video-e2e"))
    with database_for(backend, directory) as url:
        live = LiveServer(
            directory,
            env={
                "DIGNITY_DATABASE_URL": url,
                "DIGNITY_CONTENT_URL_PATTERN": r"https://social\.example/v/(?P<content_id>[\w-]+)",
                "DIGNITY_PREVIEW_URL_TEMPLATE": media.base + "/media/{content_id}",
                "DIGNITY_OUTBOX_POLL_S": "0.2",
            },
        )
        live.start()
        yield live
        live.stop()


def test_a_video_takedown_from_intake_to_the_removal_of_its_copy(
    server: LiveServer, platform: tuple[Videos, Receiver], tmp_path: Path
) -> None:
    media, hooks = platform
    with server.client("admin") as admin:
        r = admin.post("/v1/webhooks", json={"url": hooks.url, "secret": SECRET, "events": EVENTS})
        assert r.status_code == 201, r.text
    reported = write_video(tmp_path / "reported.mp4", [(1, 0, 12)])
    compilation = write_video(tmp_path / "compilation.mp4", [(7, 0, 5), (1, 3, 7), (8, 0, 5)])
    other = write_video(tmp_path / "other.mp4", [(2, 0, 10)])
    media.items.update(
        {
            "vid-1": reported.read_bytes(),
            "vid-2": compilation.read_bytes(),
            "vid-3": other.read_bytes(),
        }
    )
    # Earlier uploads, scanned through /v1/scan (not the reported video): logged with frames.
    with server.client("platform") as p:
        for content_id in ("vid-2", "vid-3"):
            r = p.post(
                "/v1/scan",
                params={"content_id": content_id, "uploader": f"user-{content_id}"},
                files={"file": ("upload.mp4", media.items[content_id], "video/mp4")},
            )
            assert r.status_code == 200, r.text
            assert r.json()["kind"] == "video" and r.json()["decision"]["action"] == "allow"
    db = open_database(server.url)
    try:
        with db.session() as s:
            logged = s.scalars(select(ScanRecord).where(ScanRecord.content_id == "vid-2")).one()
            frames = s.get(ScanVideo, logged.id)
            assert frames is not None and frames.frame_count == 14
            assert frames.dihedral is not None  # the scan's dihedral variants are kept
    finally:
        db.close()

    # 1. The request, through the public intake.
    with httpx.Client(base_url=server.base, timeout=30) as public:
        receipt = public.post(
            "/takedown/api/requests",
            json={
                "requester_kind": "self",
                "requester_name": "Sam Example",
                "requester_contact": "sam@example.org",
                "content": ["https://social.example/v/vid-1"],
                "description": "A video of me, intimate, posted without my consent.",
                "good_faith": True,
                "signature_name": "Sam Example",
                "signature_confirmed": True,
                "ai_made": "real",
                "jurisdiction": "US",
            },
        )
        assert receipt.status_code == 201, receipt.text
        ticket, code = receipt.json()["ticket"], receipt.json()["access_code"]
        assert receipt.json()["state"] == "valid"

    # 2. The reviewer: a video item, previewed as a blurred contact sheet, then removed.
    reviewer = Reviewer(server)
    try:
        queue = reviewer.get("/review/api/queue").json()["items"]
        (item,) = [i for i in queue if i["kind"] == "takedown"]
        shot = reviewer.get(f"/review/api/items/{item['id']}/preview")
        assert shot.status_code == 200, shot.text
        assert shot.headers["x-dignity-preview-kind"] == "video"
        assert shot.headers["x-dignity-preview"] == "blurred"
        assert "vid-1" in media.fetched  # from the platform, never from storage
        decided = reviewer.decide(item["id"], "remove")
        assert decided.status_code == 200, decided.text
        result = decided.json()["result"]
    finally:
        reviewer.close()
    by_id = {r["content_id"]: r for r in result["removals"]}
    assert set(by_id) == {"vid-1", "vid-2"}
    assert by_id["vid-1"]["reason"] == "reported" and result["unhashed"] == []
    assert by_id["vid-2"]["reason"] == "copy_video"
    segments = [{"source_start": 3.0, "source_end": 6.0, "copy_start": 5.0, "copy_end": 8.0}]
    assert by_id["vid-2"]["segments"] == segments

    # 3. The platform's removal calls: the video and its copy, with the time ranges.
    hooks.wait("content.remove", 2)
    time.sleep(1.0)  # a third (wrong) removal would have arrived by now
    calls = {e["content_id"]: e for e in hooks.of("content.remove")}
    assert set(calls) == {"vid-1", "vid-2"}
    assert calls["vid-2"]["reason"] == "copy_video" and calls["vid-2"]["segments"] == segments
    assert calls["vid-2"]["copy_of"] == by_id["vid-1"]["id"]

    # 4. The keyed API says the reported item is a video (the fetch logged it as one).
    with server.client("reviewer") as staff:
        request = staff.get(f"/v1/takedowns/{ticket}")
        assert request.status_code == 200, request.text
        (reported_item,) = request.json()["items"]
        assert reported_item["content_id"] == "vid-1" and reported_item["kind"] == "video"
        assert reported_item["state"] == "removed"

    # 5. The removed video's bytes are blocked: a re-upload is refused by its MD5.
    with server.client("platform") as p:
        again = p.post(
            "/v1/scan",
            params={"content_id": "vid-9"},
            files={"file": ("again.mp4", media.items["vid-1"], "video/mp4")},
        )
        assert again.status_code == 200, again.text
        assert again.json()["decision"]["action"] == "block", again.text
        # ... and so is a mirrored re-encode of its middle never seen before: the removed video's
        # frames went to the takedown bank with its digests.
        edited = write_video(
            tmp_path / "edited.mp4", [(1, 2, 10)], size=(320, 240), transform=mirrored
        )
        edit = p.post(
            "/v1/scan",
            params={"content_id": "vid-10"},
            files={"file": ("edited.mp4", edited.read_bytes(), "video/mp4")},
        )
        assert edit.status_code == 200, edit.text
        body = edit.json()
        assert body["decision"]["action"] == "block", body["matches"]
        assert any(m["signal"] == "vpdq" for m in body["matches"]), body["matches"]

    # 6. The requester's status says removed.
    with httpx.Client(base_url=server.base, timeout=30) as public:
        status = public.post("/takedown/api/status", json={"ticket": ticket, "access_code": code})
        assert status.status_code == 200, status.text
        assert status.json()["state"] == "removed"
