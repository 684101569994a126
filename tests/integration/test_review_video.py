"""A video in the review UI, against a real server (SQLite file and PostgreSQL) and in Chromium.

The local "platform" serves small synthetic videos by content id. A takedown request names one
that a scan logged: the item says it is a video, lists the other videos sharing its footage with
the time ranges, and its preview is a contact sheet of six frames made by the server, blurred
and greyscale until the reviewer reveals it (audited); no page ever holds a ``<video>``. The
reviewer removes it by keyboard, and the copy in a compilation goes with it.
"""

from __future__ import annotations

import http.server
import io
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image, ImageFilter
from sqlalchemy import delete, select

from dignity.settings import Settings
from dignity.storage.db import Database, open_database
from dignity.takedown.models import Removal, ReviewItem
from dignity.takedown.scanlog import ScanLog
from dignity.takedown.videos import hash_video
from tests.integration.browser import browser, save_screenshot
from tests.integration.conftest import database_for
from tests.integration.server import LiveServer
from tests.integration.test_review_ui import Reviewer, add_takedown, audits
from tests.videos import write_video

__all__ = ["browser"]


class _Files:
    content: ClassVar[dict[str, bytes]] = {}


class _Platform(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = _Files.content.get(self.path.rsplit("/", 1)[-1])
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "video/mp4" if body else "text/plain")
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def films(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = Path(tmp_path_factory.mktemp("films"))
    return {
        "orig": write_video(d / "orig.mp4", [(1, 0, 12)], size=(320, 240)),
        "compilation": write_video(d / "compilation.mp4", [(7, 0, 5), (1, 3, 7), (8, 0, 5)]),
        "other": write_video(d / "other.mp4", [(2, 0, 10)]),
    }


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, backend: str, films: dict[str, Path]
) -> Iterator[LiveServer]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Platform)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    directory = Path(tmp_path_factory.mktemp("review-video"))
    try:
        with database_for(backend, directory) as url:
            live = LiveServer(
                directory,
                env={
                    "DIGNITY_DATABASE_URL": url,
                    "DIGNITY_PREVIEW_URL_TEMPLATE": (
                        f"http://127.0.0.1:{httpd.server_address[1]}/media/{{content_id}}"
                    ),
                },
            )
            live.start()
            yield live
            live.stop()
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def store(server: LiveServer) -> Iterator[Database]:
    db = open_database(server.url)
    yield db
    db.close()


@pytest.fixture
def reviewer(server: LiveServer) -> Iterator[Reviewer]:
    r = Reviewer(server)
    yield r
    r.close()


def logged_takedown(
    store: Database, films: dict[str, Path], tmp: Path
) -> tuple[int, dict[str, str]]:
    """Scans of a compilation, an unrelated video and the reported video; a takedown of the
    last. Returns the review item's id and each film's content id."""
    tag = secrets.token_hex(3)
    settings = Settings(data_dir=tmp)
    log = ScanLog(store, settings)
    ids = {name: f"{name}-{tag}" for name in films}
    for name, path in films.items():
        _Files.content[ids[name]] = path.read_bytes()
        log.record_video(hash_video(path, settings), content_id=ids[name], decision="allow")
    item, _ = add_takedown(store, [ids["orig"]], priority=0, due_in=timedelta(hours=30))
    return item, ids


def _detail(data: bytes) -> float:
    """Fine detail inside the first frame's tile, away from its time label and borders: how
    far the picture is from a slightly blurred copy of itself."""
    img = Image.open(io.BytesIO(data)).convert("L").crop((40, 30, 220, 170))
    soft = img.filter(ImageFilter.GaussianBlur(2))
    return float(np.abs(np.asarray(img, np.float64) - np.asarray(soft, np.float64)).mean())


def test_a_video_item_has_a_blurred_contact_sheet_and_the_copies_evidence(
    store: Database, reviewer: Reviewer, films: dict[str, Path], tmp_path: Path
) -> None:
    item, ids = logged_takedown(store, films, tmp_path)
    orig = ids["orig"]
    got = reviewer.get(f"/review/api/items/{item}").json()
    assert got["content_kinds"] == {orig: "video"}
    (copy,) = got["video_copies"]
    assert copy["content_id"].startswith("compilation-") and copy["reason"] == "copy_video"
    assert copy["segments"] == [
        {"source_start": 3.0, "source_end": 6.0, "copy_start": 5.0, "copy_end": 8.0}
    ]
    assert copy["copy_of"] == orig

    before = len(audits(store, "review.revealed"))
    blurred = reviewer.get(f"/review/api/items/{item}/preview")
    assert blurred.status_code == 200, blurred.text
    assert blurred.headers["content-type"] == "image/jpeg"
    assert blurred.headers["x-dignity-preview"] == "blurred"
    assert blurred.headers["x-dignity-preview-kind"] == "video"
    times = [float(t) for t in blurred.headers["x-dignity-frames"].split(",")]
    assert times == [1.0, 3.0, 5.0, 7.0, 9.0, 11.0]
    sheet = Image.open(io.BytesIO(blurred.content))
    assert sheet.size == (3 * 240 + 2 * 4, 2 * 180 + 4)  # 3 x 2 tiles of 4:3 frames
    pixels = np.asarray(sheet.convert("RGB"), dtype=np.int16)
    # Greyscale (the white time labels are grey too), and no frame's detail survives.
    assert int(np.abs(pixels[..., 0] - pixels[..., 2]).max()) <= 12
    assert len(audits(store, "review.revealed")) == before

    revealed = reviewer.get(f"/review/api/items/{item}/preview", params={"reveal": 1})
    assert revealed.status_code == 200 and revealed.headers["x-dignity-preview"] == "revealed"
    assert _detail(blurred.content) < 0.5 < 1.5 < _detail(revealed.content)
    colour = np.asarray(Image.open(io.BytesIO(revealed.content)).convert("RGB"), np.int16)
    assert int(np.abs(colour[..., 0] - colour[..., 2]).max()) > 60
    shown = audits(store, "review.revealed")
    assert len(shown) == before + 1


def test_a_video_takedown_in_the_browser(
    server: LiveServer,
    store: Database,
    browser: Any,
    backend: str,
    films: dict[str, Path],
    tmp_path: Path,
) -> None:
    item, ids = logged_takedown(store, films, tmp_path)
    orig = ids["orig"]
    with store.session() as s:  # a queue of this item alone
        s.execute(delete(ReviewItem).where(ReviewItem.id != item))
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        page.goto(server.base + "/review/login")
        page.fill("#key", server.keys["reviewer"])
        page.keyboard.press("Enter")
        page.wait_for_url("**/review")
        page.wait_for_selector(f".queue-item[data-id='{item}']")
        page.keyboard.press("j")
        page.wait_for_selector(f"#item[data-id='{item}'][data-kind='Takedown']")
        page.wait_for_function(
            "() => { const i = document.querySelector('figure.preview.video img');"
            " return i && i.complete && i.naturalWidth > 0; }"
        )
        caption = page.inner_text("#previews figcaption")
        assert "video, 6 frames at 0:01, 0:03, 0:05, 0:07, 0:09, 0:11" in caption
        assert "blurred" in caption and "not played" in caption
        assert page.locator("video").count() == 0  # never a player
        evidence = page.inner_text("#evidence-body")
        # This test's compilation (and the earlier test's, also still up).
        assert "Copies in other videos (" in evidence and ids["compilation"] in evidence
        assert ids["other"] not in evidence
        assert "shared footage" in evidence and "0:03–0:06" in evidence and "0:05–0:08" in evidence
        assert "video" in page.inner_text("#evidence-body table")
        if backend == "sqlite":
            save_screenshot(page, "review-video-blurred")
        page.keyboard.press("v")
        page.wait_for_function(
            "() => { const i = document.querySelector('figure.preview.video.revealed img');"
            " return i && i.complete && i.naturalWidth > 0; }"
        )
        assert "(revealed; the video is not played)" in page.inner_text("#previews figcaption")
        page.keyboard.press("r")
        page.wait_for_selector("#confirm[open]")
        page.keyboard.press("Enter")
        page.wait_for_selector("#item-decided:has-text('Decided: remove by test-reviewer')")
        assert page.locator("video").count() == 0
        assert not problems, problems
    finally:
        context.close()
    with store.session() as s:
        removed = {
            r.content_id: r.reason
            for r in s.scalars(select(Removal).where(Removal.decided_by == "test-reviewer"))
            if r.created_at >= datetime.now(UTC) - timedelta(minutes=5)
        }
    assert removed[orig] == "reported"
    assert removed[ids["compilation"]] == "copy_video"
    assert not any(c.startswith("other-") for c in removed)
