"""vPDQ serialisations: Meta's hash-file text, py-tx's JSON and dignity's JSON round-trip, and
bad input is refused with ``hash.malformed``; the registry knows the video signal types."""

from __future__ import annotations

import json
import random

import pytest

from dignity.errors import HashError
from dignity.hashing.registry import has_frames, signal_types
from dignity.video.formats import (
    frames_from_json,
    frames_to_json,
    parse_vpdq_text,
    vpdq_digest,
    vpdq_pytx_json,
    vpdq_text,
)
from dignity.video.vpdq import VpdqFrame
from tests.conftest import shared_fixture


def _frames(n: int = 5, seed: int = 1) -> tuple[VpdqFrame, ...]:
    rng = random.Random(seed)
    return tuple(
        VpdqFrame(i * 30, float(i), f"{rng.getrandbits(256):064x}", rng.randint(0, 100))
        for i in range(n)
    )


def test_registry_has_video_signals() -> None:
    reg = signal_types()
    vpdq, video_md5 = reg.get("vpdq"), reg.get("video_md5")
    assert vpdq is not None and video_md5 is not None
    assert vpdq.content == frozenset({"video"}) and has_frames(vpdq)
    assert not vpdq.matched_by_distance and vpdq.byte_length == 32
    assert video_md5.content == frozenset({"video"}) and video_md5.byte_length == 16
    assert not has_frames(video_md5)
    assert "video" in reg.get("md5").content  # type: ignore[union-attr]
    assert reg.normalize("VIDEO_MD5", "A" * 32) == ("video_md5", "a" * 32)


def test_text_round_trip_and_digest() -> None:
    frames = _frames()
    text = vpdq_text(frames)
    first = text.splitlines()[0].split(",")
    assert first[0] == "0" and first[2] == frames[0].pdq_hex and first[3] == "0.000"
    assert parse_vpdq_text(text) == frames
    # The other column order (hash before quality) reads the same.
    swapped = "\n".join(f"{f.frame_number},{f.pdq_hex},{f.quality},{f.timestamp}" for f in frames)
    assert parse_vpdq_text(swapped) == frames
    assert vpdq_digest(frames) == vpdq_digest(parse_vpdq_text(text))
    assert vpdq_digest(frames) != vpdq_digest(frames[:-1])
    assert len(vpdq_digest(frames)) == 64


def test_pytx_and_json_forms() -> None:
    frames = _frames()
    pytx = vpdq_pytx_json(frames)
    items = json.loads(pytx)
    assert items[1] == f"{frames[1].pdq_hex},{frames[1].quality},1.000"
    # py-tx carries no frame numbers: frames are numbered in order.
    back = parse_vpdq_text(pytx)
    assert [f.pdq_hex for f in back] == [f.pdq_hex for f in frames]
    assert [f.frame_number for f in back] == list(range(len(frames)))
    as_json = frames_to_json(frames)
    assert as_json[0] == {
        "frame": 0,
        "timestamp": 0.0,
        "pdq": frames[0].pdq_hex,
        "quality": frames[0].quality,
    }
    assert frames_from_json(as_json) == frames
    assert parse_vpdq_text(json.dumps(as_json)) == frames


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0,100,abc,0.0",
        "0,101," + "a" * 64 + ",0.0",
        "0,100," + "a" * 64 + ",-1",
        "0,100," + "a" * 64 + ",nan",
        "1,100," + "a" * 64 + ",0.0\n1,100," + "b" * 64 + ",1.0",
        "x,100," + "a" * 64 + ",0.0",
        "0,100," + "a" * 64,
        "[1, 2]",
        '["' + "a" * 64 + ',100"]',
        "{}",
        "[{}]",
    ],
)
def test_bad_input_is_malformed(text: str) -> None:
    with pytest.raises(HashError) as e:
        parse_vpdq_text(text)
    assert e.value.code == "hash.malformed"


def test_meta_reference_file_parses() -> None:
    path = shared_fixture("vpdq", "doorknob-hd-no-bar.txt")
    frames = parse_vpdq_text(path.read_text())
    assert len(frames) == 120
    assert frames[1].frame_number == 1 and frames[1].timestamp == pytest.approx(0.033)
    # Meta's own text is the canonical form, to the byte.
    assert vpdq_text(frames) == path.read_text()
