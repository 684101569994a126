"""Videos on the victim portal, in real Chromium against a real server on 127.0.0.1.

* The page's vPDQ (frames read through a ``<video>`` element, hashed by pdq.js at full size)
  agrees with the server's ``vpdq_hash`` on Meta's sample videos (../shared/fixtures/vpdq, H.264
  MP4, which Debian's Chromium plays), on a VP9 WebM made here from synthetic frames and on
  H.264 clips with a display rotation (hashed as coded, as vpdq does): the
  same frames (numbers and timestamps), and each frame of quality >= 50 within the bounds
  tests/unit/test_video.py holds the server to against Meta's references (at most 24 bits, under
  Meta's regtest tolerance of 31; median at most 4).
* A video this browser cannot decode (MPEG-4 Part 2 in MP4, or bytes that are no video) keeps
  its MD5 and says clearly that only exact copies can be matched.
* Every request the page makes while hashing and submitting a video is intercepted: bodies are
  JSON of codes and form fields only, and carry no run of the file's bytes.
* A video case end to end: the server stores the vPDQ with its frames as one bank entry, and
  ``dignity match`` of the same file finds the case by vPDQ (every frame) and by MD5. This one
  needs the video signal types, ``NewEntry.frames`` and video matching of the video-core branch.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import subprocess
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dignity import samples
from dignity.video.vpdq import vpdq_hash
from tests.conftest import shared_fixture
from tests.integration.browser import browser
from tests.integration.server import LiveServer
from tests.integration.test_portal import _check_requests, _open_page, _wait

__all__ = ["browser"]  # the module-scoped Chromium fixture, used by name

META_DISTANCE = 31  # vpdq/cpp/regtest.py's matchDistanceTolerance
META_QUALITY = 50  # and its quality floor: flatter frames are not compared
MAX_BITS = 24  # tests/unit/test_video.py's MAX_BITS_FULL: the server against Meta
MEDIAN_BITS = 4


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(Path(tmp_path_factory.mktemp("portal-video")))
    server.start()
    yield server
    server.stop()


def _write_video(
    path: Path, codec: str, *, fps: int = 25, seconds: int = 4, rotation: int = 0
) -> Path:
    """A benign synthetic clip: a slow pan across generated landscapes, a new one each second;
    ``rotation`` sets a display matrix, as a phone does for a video taken upright."""
    import av

    width, height = 320, 240
    scenes = [np.asarray(samples.landscape(40 + s, (480, 240))) for s in range(seconds)]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=Fraction(fps))
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        for i in range(fps * seconds):
            scene = scenes[i // fps]
            shift = (i % fps) * 4
            picture = np.ascontiguousarray(scene[:, shift : shift + width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _hash_videos(page: Any, files: list[Path], timeout: float = 180) -> list[dict[str, Any]]:
    page.set_input_files("#files", [str(f) for f in files])
    # Polled from here: the page's CSP forbids the eval that wait_for_function uses.
    _wait(
        page,
        f"() => document.querySelectorAll('#items li').length === {len(files)} && "
        "![...document.querySelectorAll('#items li')].some(li => li.dataset.state === 'working')",
        timeout=timeout,
    )
    items: list[dict[str, Any]] = page.eval_on_selector_all(
        "#items li",
        "els => els.map(li => ({state: li.dataset.state, note: li.dataset.note || null, "
        "vpdq: li.dataset.vpdq ? JSON.parse(li.dataset.vpdq) : null, text: li.innerText, "
        "codes: [...li.querySelectorAll('code')].map(c => [c.dataset.signal, c.dataset.value])}))",
    )
    return items


def _bits(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def test_page_vpdq_agrees_with_server(
    browser: Any, portal: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = sorted(shared_fixture("vpdq").glob("*.mp4"))
    files.append(_write_video(tmp_path / "landscapes-vp9.webm", "libvpx-vp9"))
    # A phone's upright video: the browser shows it turned, the page hashes it as coded, as
    # vpdq does and as partners exchange it (the server's dihedral variants find it upright).
    for rotation in (90, 180, 270):
        path = tmp_path / f"landscapes-rotated-{rotation}.mp4"
        files.append(_write_video(path, "libx264", seconds=3, rotation=rotation))
    context, page, seen = _open_page(browser, portal)
    try:
        items = _hash_videos(page, files)
    finally:
        context.close()
    rows = []
    compared: list[int] = []
    for path, item in zip(files, items, strict=True):
        assert item["state"] == "ready" and item["note"] == "full", (path.name, item)
        server = vpdq_hash(path)
        codes = dict(item["codes"])
        assert codes["video_md5"] == server.md5
        page_frames = item["vpdq"]
        assert [f["frame"] for f in page_frames] == [f.frame_number for f in server.frames]
        assert [f["timestamp"] for f in page_frames] == [
            round(f.timestamp, 3) for f in server.frames
        ]
        for got, want in zip(page_frames, server.frames, strict=True):
            bits = _bits(got["pdq"], want.pdq_hex)
            both = min(got["quality"], want.quality) >= META_QUALITY
            rows.append((path.name, got["frame"], bits, got["quality"], want.quality, both))
            if both:
                compared.append(bits)
    report = "\n".join(
        f"{n:30s} frame {fr:4d} {d:3d} bits  quality page {qp:3d} server {qs:3d}"
        + ("" if both else "  (not compared: quality < 50)")
        for n, fr, d, qp, qs, both in rows
    )
    with capsys.disabled():
        print(f"\nbrowser vs server vPDQ ({len(files)} videos, {len(rows)} frames):\n{report}")
        print(
            f"compared {len(compared)}: median {statistics.median(compared)}, max {max(compared)}"
        )
    assert len(compared) >= 60
    assert max(compared) <= MAX_BITS < META_DISTANCE, report
    assert statistics.median(compared) <= MEDIAN_BITS, report
    _check_requests(seen, portal.base)


def test_a_video_the_browser_cannot_decode_keeps_its_md5(
    browser: Any, portal: LiveServer, tmp_path: Path
) -> None:
    # MPEG-4 Part 2 in an MP4: the container (and its frame rate) reads, the codec does not play
    # in Chromium. And bytes that merely claim to be a video.
    mpeg4 = _write_video(tmp_path / "old-codec.mp4", "mpeg4", seconds=2)
    junk = tmp_path / "not-really.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 64)
    files = [mpeg4, junk]
    context, page, seen = _open_page(browser, portal)
    try:
        items = _hash_videos(page, files, timeout=60)
        page.get_by_label("I am 18 or older").check()
        page.get_by_label("These images show me").check()
        assert not page.is_disabled("#submit")  # the MD5 alone still makes a case
    finally:
        context.close()
    for path, item in zip(files, items, strict=True):
        assert item["state"] == "ready" and item["note"] == "unreadable", (path.name, item)
        assert item["codes"] == [["video_md5", hashlib.md5(path.read_bytes()).hexdigest()]]
        assert "cannot play this video" in item["text"]
        assert "only exact copies" in item["text"]
    _check_requests(seen, portal.base)


def _submit(page: Any) -> str:
    page.get_by_label("I am 18 or older").check()
    page.get_by_label("These images show me").check()
    page.get_by_role("button", name="Create my case").click()
    # A failure goes to its own alert (#submit-error), which stays until the person acts.
    page.wait_for_selector("#submit-status:has-text('created'), #submit-error:visible")
    error = page.locator("#submit-error")
    if error.is_visible():
        return "Not sent: " + str(error.inner_text())
    return str(page.locator("#submit-status").inner_text())


def _no_file_bytes(seen: list[dict[str, Any]], files: list[Path]) -> None:
    """No body holds any 12-byte run of a file, raw or as hex (probed every 997 bytes)."""
    bodies = [r["body"] for r in seen if r["body"]]
    assert bodies
    for path in files:
        data = path.read_bytes()
        for at in range(0, len(data) - 12, 997):
            run = data[at : at + 12]
            if len(set(run)) < 4:  # padding and zeros say nothing about the file
                continue
            for body in bodies:
                assert run not in body and run.hex().encode() not in body, (path.name, at)


def test_video_requests_carry_only_codes(browser: Any, portal: LiveServer) -> None:
    files = [shared_fixture("vpdq", "chair-19-sd-bar.mp4")]
    context, page, seen = _open_page(browser, portal)
    try:
        items = _hash_videos(page, files)
        assert items[0]["note"] == "full"
        _submit(page)  # the server's answer does not matter here: what was sent does
    finally:
        context.close()
    posts = [r for r in seen if r["method"] == "POST"]
    assert len(posts) == 1 and posts[0]["url"].endswith("/portal/api/cases")
    payload = json.loads(posts[0]["body"])
    signals = [h["signal"] for h in payload["hashes"]]
    assert signals == ["video_md5", "vpdq"]
    vpdq = payload["hashes"][1]
    assert set(vpdq) == {"signal", "frames"} and len(vpdq["frames"]) == 19
    for frame in vpdq["frames"]:
        assert set(frame) == {"frame", "timestamp", "pdq", "quality"}
        assert isinstance(frame["frame"], int) and isinstance(frame["quality"], int)
        assert len(frame["pdq"]) == 64 and int(frame["pdq"], 16) >= 0
    assert len(posts[0]["body"]) < 4096  # 19 codes, nothing else
    _check_requests(seen, portal.base)
    _no_file_bytes(seen, files)


def test_video_case_end_to_end(browser: Any, portal: LiveServer) -> None:
    """Needs the video-core branch (vpdq/video_md5 signals, NewEntry.frames, entry frames)."""
    formats = pytest.importorskip("dignity.video.formats", reason="needs the video-core branch")
    from dignity.matching.banks import BankService
    from dignity.storage.db import open_database

    path = shared_fixture("vpdq", "pattern-hd-no-bar.mp4")
    context, page, seen = _open_page(browser, portal)
    try:
        items = _hash_videos(page, [path])
        status = _submit(page)
        assert "Your case is created" in status, status
        assert page.locator("#case-count").inner_text() == "2"
    finally:
        context.close()
    _check_requests(seen, portal.base)
    frames = formats.frames_from_json(items[0]["vpdq"])
    db = open_database(portal.url)
    try:
        entries = {e.signal: e for e in BankService(db).list_entries("cases")}
    finally:
        db.close()
    assert entries["video_md5"].value == hashlib.md5(path.read_bytes()).hexdigest()
    assert entries["vpdq"].value == formats.vpdq_digest(frames)
    assert entries["vpdq"].origin_kind == "case"
    # The server's own hash of the same file finds the case: by its frames and by its bytes.
    out = subprocess.run(
        [sys.executable, "-m", "dignity", "match", str(path)],
        env=portal.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    matches = json.loads(out.stdout)["matches"]
    found = {m["signal"] for m in matches if m["bank"] == "cases"}
    assert found >= {"vpdq", "video_md5"}, matches
    vpdq_match = next(m for m in matches if m["signal"] == "vpdq")
    assert vpdq_match["query_match_percent"] == 100.0, vpdq_match


def test_a_video_removed_while_it_is_hashed_stays_removed(browser: Any, portal: LiveServer) -> None:
    context, page, _ = _open_page(browser, portal)
    try:
        page.set_input_files("#files", [str(shared_fixture("vpdq", "chair-20-sd-bar.mp4"))])
        # The file's MD5 first, then the frames, each with a progress bar.
        page.wait_for_selector("#items li:has-text('of 21 frames') progress")
        page.get_by_role("button", name="Remove item 1").click()
        page.wait_for_timeout(1500)  # longer than a few frames take
        assert page.locator("#items li").count() == 0
        assert page.locator("#submit-status").inner_text() == ""
    finally:
        context.close()
