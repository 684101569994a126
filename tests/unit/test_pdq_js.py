"""The browser's PDQ and MD5 (src/dignity/web/static/*.js) under Node's test runner.

``node --test tests/js/`` checks the JavaScript against vectors whose hashes come from the
server's own PDQ (checked here too, so the two cannot drift apart silently), against the
RFC 1321 MD5 suite, and, through DIGNITY_PDQ_FILE_VECTORS, against every shared fixture photo
decoded by the server: the same pixels must give the same hash bit for bit; video frames are
hashed at full size (pdq-full-size-vectors.json). vpdq.js must read the frame rate the server
picks vPDQ frames by from MP4, MOV, WebM and Matroska files. The page itself, with the
browser's decoder, is measured in tests/integration/test_portal.py and test_portal_video.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from dignity.hashing.pdq import pdq_from_full_pixels, pdq_from_pixels
from dignity.media import decode
from tests.conftest import ROOT, shared_fixture

JS_TESTS = ROOT / "tests" / "js"
VECTORS = JS_TESTS / "pdq-vectors.json"
FULL_SIZE_VECTORS = JS_TESTS / "pdq-full-size-vectors.json"


def synthetic(kind: str, w: int, h: int, seed: int) -> NDArray[np.uint8]:
    """The integer-defined test images of tests/js/pdq.test.mjs's ``synthetic()``."""
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    if kind == "pattern":
        r = (x * x // (seed + 3) + y * 3 + seed * 17) % 256
        g = ((x // (seed + 1)) ^ (y // (seed + 2))) * 5 % 256
        b = (x * y // (7 + seed)) % 256
    else:
        r = x * 255 // max(1, w - 1)
        g = y * 255 // max(1, h - 1)
        b = (x + y) * seed % 7 + 120
    return np.stack([r, g, b], axis=2).astype(np.uint8)


def test_vectors_are_the_servers_hashes() -> None:
    for v in json.loads(VECTORS.read_text()):
        got = pdq_from_pixels(synthetic(v["kind"], v["width"], v["height"], v["seed"]))
        assert got.quality == v["quality"], v
        if v["quality"] > 0:
            assert got.hex == v["hash"], v
        else:
            # A quality-0 image (here 5 x 5) has DCT coefficients equal up to rounding, so a
            # few of its bits follow the BLAS kernel's summation order: 2 of 256 differ between
            # an AVX-512 Xeon and an AVX2 EPYC. The engine never matches on it (quality < 50).
            flipped = bin(int(got.hex, 16) ^ int(v["hash"], 16)).count("1")
            assert flipped <= 8, v


def test_full_size_vectors_are_the_servers_frame_hashes() -> None:
    # pdq.js's pdqHashFullSize (the portal's vPDQ frames) is checked against these under Node.
    vectors = json.loads(FULL_SIZE_VECTORS.read_text())
    assert any(v["width"] > 512 for v in vectors)
    for v in vectors:
        got = pdq_from_full_pixels(synthetic(v["kind"], v["width"], v["height"], v["seed"]))
        assert (got.hex, got.quality) == (v["hash"], v["quality"]), v


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have node (>= 18) for the JavaScript tests")
        pytest.skip("node is not installed: the JavaScript PDQ/MD5 tests did not run")
    return node


def test_node_vector_tests(tmp_path: Path) -> None:
    node = _node()
    cases = []
    root = shared_fixture("pdq")
    for n, path in enumerate(sorted(root.rglob("*.*g"))):
        # Full decode (no JPEG draft): Node gets exactly the pixels the server hashes.
        pixels = np.asarray(decode(path.read_bytes(), max_bytes=1 << 30, max_pixels=1 << 30).image)
        rgba = np.dstack([pixels, np.full(pixels.shape[:2], 255, np.uint8)])
        raw = tmp_path / f"{n}.rgba"
        raw.write_bytes(rgba.tobytes())
        want = pdq_from_pixels(pixels)
        cases.append(
            {
                "name": str(path.relative_to(root)),
                "path": str(raw),
                "width": int(pixels.shape[1]),
                "height": int(pixels.shape[0]),
                "hash": want.hex,
                "quality": want.quality,
            }
        )
    assert len(cases) >= 20
    listing = tmp_path / "cases.json"
    listing.write_text(json.dumps(cases))
    result = subprocess.run(
        [node, "--test", str(JS_TESTS)],
        env={**os.environ, "DIGNITY_PDQ_FILE_VECTORS": str(listing)},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "# fail 0" in result.stdout and "# skipped 0" in result.stdout, result.stdout[-3000:]


def _write_clip(path: Path, codec: str, rate: Fraction, frames: int) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            picture = synthetic("pattern", 64, 48, i % 7)
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_vpdq_js_reads_the_frame_rate_the_server_picks_frames_by(tmp_path: Path) -> None:
    """vpdq.js's containerTiming (the page's only source of a video's frame rate) against
    PyAV's average rate and frame count, which the server's vPDQ picks frames by, in MP4, MOV,
    WebM and Matroska at common rates."""
    from dignity.video.decode import open_video

    node = _node()
    clips: list[dict[str, Any]] = []
    for n, (suffix, codec, rate, count) in enumerate(
        [
            ("mp4", "libx264", Fraction(30), 45),
            ("mp4", "libx264", Fraction(30000, 1001), 40),
            ("mov", "libx264", Fraction(25), 30),
            ("webm", "libvpx-vp9", Fraction(24), 30),
            ("webm", "libvpx", Fraction(60), 70),
            ("mkv", "libx264", Fraction(15), 20),
        ]
    ):
        path = tmp_path / f"clip-{n}.{suffix}"
        _write_clip(path, codec, rate, count)
        with open_video(path) as video:
            info = video.info
            decoded = sum(1 for _ in video.frames())
        clips.append(
            {"path": str(path), "rate": info.frame_rate, "frames": decoded, "made": float(rate)}
        )
    script = (
        "import { readFileSync } from 'node:fs';"
        "import { containerTiming, frameStep } from './src/dignity/web/static/vpdq.js';"
        "const out = [];"
        "for (const c of JSON.parse(process.argv[1])) {"
        "  const t = await containerTiming(new Blob([readFileSync(c.path)]));"
        "  out.push(t && {...t, step: frameStep(1, t.frameRate)});"
        "}"
        "console.log(JSON.stringify(out));"
    )
    result = subprocess.run(
        [node, "--input-type=module", "-e", script, json.dumps(clips)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    for clip, got in zip(clips, json.loads(result.stdout), strict=True):
        assert got is not None, clip
        assert got["frameRate"] == pytest.approx(clip["rate"], rel=1e-6), (clip, got)
        assert got["step"] == max(1, int(clip["rate"])), (clip, got)
        if got["frameCount"] is not None:
            assert got["frameCount"] == clip["frames"], (clip, got)
