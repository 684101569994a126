"""dignity's vPDQ against Meta's own ``vpdq`` Python binding, used as a test oracle.

The binding (``pip install vpdq``, the ``oracle`` extra) is built against the system's FFmpeg
development packages, which .ci/run installs; elsewhere these tests skip visibly. It hashes
with another FFmpeg than PyAV's, so hashes agree up to decoder rounding: we hold to the bounds
tests/unit/test_video.py holds against Meta's reference files (same frames and timestamps,
quality within 6 points, over frames of quality >= 50 a median of <= 4 bits and at most 24
apart), on Meta's sample videos in ../shared/fixtures/vpdq and on one synthetic corpus video
(bench/video_corpus.py) in each of H.264/MP4 and VP9/WebM.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest
from bench.video_corpus import Encoding, synthetic_video

from dignity.video.vpdq import VpdqFrame, vpdq_hash
from tests.conftest import shared_fixture
from tests.unit.test_video import MAX_BITS_FULL, MEDIAN_BITS, META_QUALITY, QUALITY_POINTS

vpdq = pytest.importorskip(
    "vpdq",
    reason="Meta's vpdq binding is not installed (pip install '.[oracle]' after FFmpeg's dev "
    "packages; .ci/run does both)",
)


def _oracle(path: Path, seconds_per_hash: float) -> list[Any]:
    return list(vpdq.computeHash(str(path), seconds_per_hash=seconds_per_hash, thread_count=1))


def _agree(ours: tuple[VpdqFrame, ...], theirs: list[Any]) -> None:
    assert [f.frame_number for f in ours] == [f.frame_number for f in theirs]
    for f, t in zip(ours, theirs, strict=True):
        assert f.timestamp == pytest.approx(t.timestamp, abs=0.0015)
        assert abs(f.quality - t.quality) <= QUALITY_POINTS
    compared = [
        (int(f.pdq_hex, 16) ^ int(t.hex, 16)).bit_count()
        for f, t in zip(ours, theirs, strict=True)
        if min(f.quality, t.quality) >= META_QUALITY
    ]
    assert compared, "no frame of quality >= 50 to compare"
    assert statistics.median(compared) <= MEDIAN_BITS
    assert max(compared) <= MAX_BITS_FULL


@pytest.mark.parametrize(
    "name",
    [
        "chair-19-sd-bar",
        "chair-20-sd-bar",
        "doorknob-hd-no-bar",
        "pattern-hd-no-bar",
        "pattern-sd-grey-bar",
        "test-padded-dimensions",
    ],
)
def test_one_hash_a_second_agrees_with_the_vpdq_binding(name: str) -> None:
    path = shared_fixture("vpdq", f"{name}.mp4")
    _agree(vpdq_hash(path).frames, _oracle(path, 1.0))


def test_every_frame_agrees_with_the_vpdq_binding() -> None:
    path = shared_fixture("vpdq", "doorknob-hd-no-bar.mp4")
    _agree(vpdq_hash(path, seconds_per_hash=0).frames, _oracle(path, 0))


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_a_corpus_video_agrees_with_the_vpdq_binding(suffix: str, tmp_path: Path) -> None:
    enc = Encoding()
    if suffix == ".webm":
        enc = Encoding(codec="libvpx-vp9", options=(("deadline", "realtime"), ("cpu-used", "8")))
    # Seed 16 (as the corpus): scenes PDQ rates 100, so every frame's bits are compared.
    path = synthetic_video(
        tmp_path / f"slideshow{suffix}", 8.0, size=(320, 176), fps=24, seed=16, enc=enc
    )
    ours = vpdq_hash(path)
    assert len(ours.frames) == 8
    _agree(ours.frames, _oracle(path, 1.0))
