"""The victim portal in real Chromium against real servers on 127.0.0.1.

* The page's PDQ (our JavaScript, on pixels the browser decoded, EXIF orientation applied)
  agrees with the server's ``dignity hash`` within 10 bits on every shared fixture and on our own
  set (EXIF orientations 1-8, PNG, WebP, GIF, BMP, large JPEGs), median <= 2.
* Every request the page makes is intercepted: bodies carry only hashes and the form fields
  (videos: tests/integration/test_portal_video.py).
* The whole loop: hash on the page, case number + PIN, a second dignity instance fed from
  ``/v1/feed`` blocks an upload, the case is withdrawn on the page, and both allow it again.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from dignity import samples
from dignity.hashing.signals import hash_bytes, pdq_distance
from dignity.settings import Settings
from tests.conftest import shared_fixture
from tests.integration.server import LiveServer

CHROMIUM = "/usr/bin/chromium"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}
ALLOWED_BODY_KEYS = {
    "/portal/api/cases": {"hashes", "adult"},
    "/portal/api/cases/status": {"case_number", "pin"},
    "/portal/api/cases/withdraw": {"case_number", "pin"},
}


def _chromium() -> str:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have {CHROMIUM}")
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM}")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(Path(tmp_path_factory.mktemp("portal")))
    server.start()
    yield server
    server.stop()


def _own_images(directory: Path) -> list[Path]:
    """Benign test images the fixtures lack: every EXIF orientation, other formats, big JPEGs."""
    directory.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    base = samples.landscape(11, (1200, 900))
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[274] = orientation
        path = directory / f"exif-orientation-{orientation}.jpg"
        base.save(path, "JPEG", quality=90, exif=exif.tobytes())
        out.append(path)
    small = samples.landscape(12, (700, 500))
    for fmt, suffix in (("PNG", "png"), ("WEBP", "webp"), ("GIF", "gif"), ("BMP", "bmp")):
        path = directory / f"landscape-700x500.{suffix}"
        small.save(path, fmt)
        out.append(path)
    tall = samples.landscape(13, (480, 1400))
    tall.save(directory / "landscape-480x1400.jpg", "JPEG", quality=88)
    out.append(directory / "landscape-480x1400.jpg")
    tiny = samples.landscape(14, (300, 200))
    tiny.save(directory / "landscape-300x200.png", "PNG")
    out.append(directory / "landscape-300x200.png")
    for wallpaper in (
        "/usr/share/wallpapers/FallenLeaf/contents/images/2560x1600.jpg",
        "/usr/share/wallpapers/Flow/contents/images/720x1440.jpg",
        "/usr/share/wallpapers/Kay/contents/images/1080x1920.png",
    ):
        if Path(wallpaper).exists():  # Debian wallpapers where installed; generated ones always
            target = directory / ("wallpaper-" + Path(wallpaper).parent.parent.parent.name)
            target = target.with_suffix(Path(wallpaper).suffix)
            shutil.copyfile(wallpaper, target)
            out.append(target)
    big = samples.landscape(15, (3000, 2000))  # over 2 MP: the server decodes it in draft mode
    big.save(directory / "landscape-3000x2000.jpg", "JPEG", quality=90)
    out.append(directory / "landscape-3000x2000.jpg")
    return out


def _fixture_images() -> list[Path]:
    root = shared_fixture("pdq")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _open_page(browser: Any, server: LiveServer) -> tuple[Any, Any, list[dict[str, Any]]]:
    context = browser.new_context()
    page = context.new_page()
    seen: list[dict[str, Any]] = []

    def record(route: Any) -> None:
        request = route.request
        seen.append(
            {"method": request.method, "url": request.url, "body": request.post_data_buffer}
        )
        route.continue_()

    page.route("**/*", record)
    page.goto(server.base + "/portal")
    page.wait_for_selector("html[data-portal-ready='1']")
    return context, page, seen


def _wait(page: Any, predicate: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not page.evaluate(predicate):
        assert time.monotonic() < deadline, f"timed out waiting for {predicate}"
        time.sleep(0.05)


def _hash_on_page(page: Any, files: list[Path]) -> list[dict[str, Any]]:
    page.set_input_files("#files", [str(f) for f in files])
    # Polled from here: the page's CSP forbids the eval that wait_for_function uses.
    _wait(
        page,
        f"() => document.querySelectorAll('#items li').length === {len(files)} && "
        "![...document.querySelectorAll('#items li')].some(li => li.dataset.state === 'working')",
        timeout=120,
    )
    items: list[dict[str, Any]] = page.eval_on_selector_all(
        "#items li",
        "els => els.map(li => ({state: li.dataset.state, pdq: li.dataset.pdq || null, "
        "quality: li.dataset.quality ? Number(li.dataset.quality) : null, "
        "codes: [...li.querySelectorAll('code')].map(c => [c.dataset.signal, c.dataset.value])}))",
    )
    return items


def _check_requests(seen: list[dict[str, Any]], base: str) -> None:
    """Every request stays on our origin; every body is JSON of hashes and form fields only."""
    assert seen
    for r in seen:
        assert r["url"].startswith(base + "/"), r["url"]
        body = r["body"]
        if r["method"] == "GET":
            assert not body, r
            continue
        assert r["method"] == "POST", r
        path = r["url"][len(base) :]
        assert path in ALLOWED_BODY_KEYS, r["url"]
        assert body is not None and len(body) < 64 * 1024, (path, len(body or b""))
        payload = json.loads(body)
        assert set(payload) <= ALLOWED_BODY_KEYS[path], payload.keys()
        if path == "/portal/api/cases":
            assert payload["adult"] is True
            for h in payload["hashes"]:
                if h["signal"] == "vpdq":  # a video: one code a second, nothing else
                    assert set(h) == {"signal", "frames"}, h
                    for f in h["frames"]:
                        assert set(f) == {"frame", "timestamp", "pdq", "quality"}, f
                        assert all(isinstance(f[k], int) for k in ("frame", "quality")), f
                        assert isinstance(f["timestamp"], int | float), f
                        assert len(f["pdq"]) == 64 and int(f["pdq"], 16) >= 0, f
                    continue
                assert set(h) <= {"signal", "value", "quality"}, h
                assert h["signal"] in ("pdq", "md5", "video_md5")
                want = 64 if h["signal"] == "pdq" else 32
                assert len(h["value"]) == want and int(h["value"], 16) >= 0
        else:
            assert all(isinstance(v, str) and len(v) <= 20 for v in payload.values()), payload


def test_page_pdq_agrees_with_server(
    browser: Any, portal: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _fixture_images() + _own_images(tmp_path / "own")
    context, page, seen = _open_page(browser, portal)
    try:
        items = _hash_on_page(page, files)
    finally:
        context.close()
    settings = Settings(data_dir=tmp_path / "data")
    rows = []
    for path, item in zip(files, items, strict=True):
        server = hash_bytes(path.read_bytes(), settings=settings)
        assert item["state"] == "ready", (path, item)
        assert server.pdq is not None
        distance = pdq_distance(item["pdq"], server.pdq.hex)
        rows.append((path.name, distance, item["quality"], server.pdq.quality))
    distances = [d for _, d, _, _ in rows]
    report = "\n".join(
        f"{n:40s} {d:3d} bits  quality page {qp} server {qs}" for n, d, qp, qs in rows
    )
    with capsys.disabled():
        print(f"\nbrowser vs server PDQ ({len(rows)} images):\n{report}")
        print(f"median {statistics.median(distances)}, max {max(distances)}")
    out = os.environ.get("DIGNITY_PORTAL_REPORT")
    if out:
        Path(out).write_text(json.dumps(rows, indent=1))
    assert max(distances) <= 10, report
    assert statistics.median(distances) <= 2, report
    _check_requests(seen, portal.base)


def _scan(server: LiveServer, data: bytes) -> dict[str, Any]:
    with server.client("platform") as c:
        r = c.post("/v1/scan", files={"file": ("upload.jpg", data, "image/jpeg")})
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result


def _blocked(server: LiveServer, data: bytes) -> bool:
    return bool(_scan(server, data)["decision"]["action"] == "block")


def _subscribe(helpline: LiveServer, platform: LiveServer) -> tuple[Any, Any]:
    """The platform subscribes to the helpline's partner feed through the real exchange adapter
    (``dignity_feed``), exactly as ``dignity exchange add/fetch`` would; returns (db, fetch)."""
    from dignity.exchanges.service import ExchangeService
    from dignity.settings import Settings
    from dignity.storage.db import open_database

    db = open_database(platform.url)
    svc = ExchangeService(db, Settings(data_dir=platform.data, database_url=platform.url))
    svc.add(
        "helpline", "dignity_feed", base_url=helpline.base, credentials=helpline.keys["partner"]
    )
    return db, lambda: svc.fetch("helpline").to_dict()


def _until(predicate: Any, timeout: float = 5.0) -> bool:
    """Poll: another process's server replays the database's change log every tick."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_whole_loop_two_instances(browser: Any, tmp_path: Path) -> None:
    helpline = LiveServer(tmp_path / "helpline")
    platform = LiveServer(tmp_path / "platform")
    helpline.start()
    platform.start()
    try:
        files = _fixture_images()
        upload = (shared_fixture("pdq") / "bridge-mods" / "aaa-orig.jpg").read_bytes()
        assert not _blocked(helpline, upload) and not _blocked(platform, upload)

        context, page, seen = _open_page(browser, helpline)
        page.on("dialog", lambda d: d.accept())
        try:
            _hash_on_page(page, files)
            page.get_by_label("I am 18 or older").check()
            page.get_by_label("These images show me").check()
            page.get_by_role("button", name="Create my case").click()
            page.wait_for_selector("#created:not([hidden])")
            number = page.locator("#case-number").inner_text()
            pin = page.locator("#case-pin").inner_text()
            count = int(page.locator("#case-count").inner_text())
            assert count >= 10

            db, fetch = _subscribe(helpline, platform)
            out = fetch()
            assert out["status"] == "complete" and out["records"] == count, out
            assert _blocked(helpline, upload)
            assert _until(lambda: _blocked(platform, upload))

            page.fill("#manage-number", number.lower())  # typed loosely: still accepted
            page.fill("#manage-pin", pin)
            page.get_by_role("button", name="Check status").click()
            _wait(
                page,
                "() => document.getElementById('manage-status').textContent.includes('active')",
            )
            page.get_by_role("button", name="Withdraw my case").click()
            _wait(
                page,
                "() => document.getElementById('manage-status').textContent.includes('withdrawn')",
            )
            withdrawn = time.monotonic()
        finally:
            context.close()
        assert not _blocked(helpline, upload)
        out = fetch()
        assert out["status"] == "complete" and sum(out["withdrawn"].values()) >= 1, out
        assert _until(lambda: not _blocked(platform, upload))
        assert time.monotonic() - withdrawn < 10
        db.close()
        _check_requests(seen, helpline.base)
    finally:
        helpline.stop()
        platform.stop()


def test_page_is_keyboard_usable_and_labelled(browser: Any, portal: LiveServer) -> None:
    context, page, _ = _open_page(browser, portal)
    try:
        for control in ("#files", "#adult", "#consent", "#manage-number", "#manage-pin"):
            label = page.locator(f"label[for='{control[1:]}']")
            assert label.count() == 1 and label.inner_text().strip(), control
        text = page.locator("body").inner_text()
        for phrase in (
            "never leave this device",
            "What is a hash?",
            "Who sees what",
            "How to withdraw",
            "Where to get help",
            "takeitdown.ncmec.org",
        ):
            assert phrase in text, phrase
        page.focus("#adult")
        page.keyboard.press("Space")
        assert page.is_checked("#adult")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "consent"
        assert page.is_disabled("#submit")  # nothing hashed yet
    finally:
        context.close()


def test_portal_headers(portal: LiveServer) -> None:
    r = httpx.get(portal.base + "/portal")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "connect-src 'self'" in csp and "default-src 'none'" in csp
    assert r.headers["referrer-policy"] == "no-referrer"
    for name in ("pdq.js", "keep.js"):
        assert httpx.get(f"{portal.base}/portal/static/{name}").status_code == 200
    assert httpx.get(portal.base + "/portal/static/..%2Fportal.html").status_code == 404
    assert httpx.get(portal.base + "/portal/static/nope.js").status_code == 404
    root = httpx.get(portal.base + "/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/portal"
