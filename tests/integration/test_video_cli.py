"""The real ``dignity`` command line on videos, in a subprocess, on a real SQLite file: ``hash``
gives the contract's fields, ``bank add`` makes one entry of a video, ``match`` finds the video,
its edited copies (re-encoded into another container, a clip inside a longer video, mirrored
where frames carry dihedral hashes) and a banked still shown in it, and nothing in an unrelated
video. Videos are small synthetic ones (benign generated landscapes, tests/video_samples.py)
and Meta's sample videos (../shared/fixtures/vpdq, skipped visibly where absent)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dignity.samples import encode
from tests.conftest import shared_fixture
from tests.integration.test_cli import Cli
from tests.video_samples import still, write_video


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "data")


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = Path(tmp_path_factory.mktemp("videos"))
    return {
        "original": write_video(d / "original.mp4", [(1, 12)]),
        # Re-encoded with another codec into another container, 4 s of it inside 24 s.
        "clip": write_video(d / "clip.webm", [(5, 10), (1, 4), (6, 10)], codec="libvpx"),
        # Its first 2 s cut, re-encoded into Matroska.
        "trimmed": write_video(d / "trimmed.mkv", [(1, 12)], codec="mpeg4", skip_seconds=2),
        "mirrored": write_video(d / "mirrored.mp4", [(1, 12)], mirror=True),
        "unrelated": write_video(d / "unrelated.mp4", [(7, 12)]),
    }


def _by_signal(row: dict[str, object]) -> dict[str, list[dict[str, object]]]:
    out: dict[str, list[dict[str, object]]] = {}
    for m in row["matches"]:  # type: ignore[attr-defined]
        out.setdefault(m["signal"], []).append(m)
    return out


def test_hash_a_video_and_an_image(cli: Cli, videos: dict[str, Path], tmp_path: Path) -> None:
    (row,) = cli.lines("hash", str(videos["original"]))
    assert set(row) == {"path", "kind", "md5", "sha256", "duration_s", "vpdq"}
    assert row["kind"] == "video" and row["duration_s"] == 12.0
    frames = row["vpdq"]
    assert isinstance(frames, list) and len(frames) == 12
    assert set(frames[1]) == {"frame", "timestamp", "pdq", "quality"}
    assert (frames[1]["frame"], frames[1]["timestamp"]) == (10, 1.0)
    (dense,) = cli.lines("hash", "--seconds-per-hash", "0.5", str(videos["original"]))
    assert len(dense["vpdq"]) == 24  # type: ignore[arg-type]
    image = tmp_path / "still.png"
    image.write_bytes(encode(still(1, 5), "PNG"))
    (img,) = cli.lines("hash", str(image))
    assert img["kind"] == "image" and len(str(img["pdq"])) == 64
    # A video with an image's name is still a video (detected by its bytes).
    disguised = tmp_path / "holiday.jpg"
    shutil.copy(videos["original"], disguised)
    assert cli.lines("hash", str(disguised))[0]["kind"] == "video"


def test_bank_a_video_and_match_its_copies(
    cli: Cli, videos: dict[str, Path], tmp_path: Path
) -> None:
    cli.lines("bank", "create", "videos")
    (added,) = cli.lines("bank", "add", "videos", str(videos["original"]))
    (entry,) = added["entries"]  # type: ignore[misc]
    assert entry["signal"] == "vpdq" and entry["frames"] == 12 and entry["status"] == "added"
    (shown,) = cli.lines("bank", "show", "videos", "--entries", "5")
    assert shown["active_entries"] == 1  # one video, one entry (its MD5 rides on it)
    image = tmp_path / "still.png"
    image.write_bytes(encode(still(1, 5), "PNG"))
    cli.lines("bank", "create", "stills")
    (img_added,) = cli.lines("bank", "add", "stills", str(image))
    img_id = img_added["entries"][0]["entry_id"]  # type: ignore[index]

    rows = {Path(str(r["path"])).stem: r for r in cli.lines("match", *map(str, videos.values()))}
    same = _by_signal(rows["original"])
    assert same["video_md5"][0]["entry_id"] == entry["entry_id"]
    assert same["vpdq"][0]["query_match_percent"] == 100.0
    assert same["vpdq"][0]["segments"] == [
        {"query_start": 0.0, "query_end": 11.0, "entry_start": 0.0, "entry_end": 11.0}
    ]
    # The banked still is frame 5 s of the video.
    (frame,) = same["pdq"]
    assert (frame["entry_id"], frame["timestamp"]) == (img_id, 5.0)

    (clip,) = _by_signal(rows["clip"])["vpdq"]
    assert float(clip["query_match_percent"]) < 80  # type: ignore[arg-type]
    (seg,) = clip["segments"]  # type: ignore[misc]
    assert (seg["query_start"], seg["entry_start"]) == (10.0, 0.0)
    assert seg["query_end"] - seg["query_start"] >= 2.0

    trimmed = _by_signal(rows["trimmed"])
    assert "video_md5" not in trimmed and trimmed["vpdq"][0]["query_match_percent"] == 100.0
    assert float(trimmed["vpdq"][0]["compared_match_percent"]) < 100  # type: ignore[arg-type]
    assert rows["unrelated"]["matches"] == []

    (mirrored,) = _by_signal(rows["mirrored"])["vpdq"]
    # Left to right is a flip about the vertical axis: PDQ's reference calls it "flipy".
    assert mirrored["transform"] == "flipy" and mirrored["query_match_percent"] >= 80


def test_meta_sample_video_round_trip(cli: Cli) -> None:
    path = shared_fixture("vpdq", "doorknob-hd-no-bar.mp4")
    (row,) = cli.lines("hash", str(path))
    assert row["kind"] == "video" and len(row["vpdq"]) == 4  # type: ignore[arg-type]
    cli.lines("bank", "create", "meta")
    cli.lines("bank", "add", "meta", str(path))
    (match,) = cli.lines("match", str(path))
    assert {m["signal"] for m in match["matches"]} == {"vpdq", "video_md5"}  # type: ignore[union-attr]
    exported = cli("bank", "export", "meta", "--format", "text")
    assert exported.returncode == 0 and exported.stdout.startswith("vpdq [")


def test_an_animated_gif_is_a_video_to_hash_as_to_scan(cli: Cli, tmp_path: Path) -> None:
    frames = [still(seed, 1) for seed in (1, 5, 6)]
    moving, lone = tmp_path / "moving.gif", tmp_path / "lone.gif"
    frames[0].save(moving, "GIF", save_all=True, append_images=frames[1:], duration=1000)
    frames[0].save(lone, "GIF")
    (animated,) = cli.lines("hash", str(moving))
    assert animated["kind"] == "video" and len(animated["vpdq"]) == 3  # type: ignore[arg-type]
    (image,) = cli.lines("hash", str(lone))
    assert image["kind"] == "image" and len(str(image["pdq"])) == 64
    # dignity scan has always told them apart this way.
    report = tmp_path / "report.jsonl"
    cli("scan", str(moving), str(lone), "--report", str(report))
    kinds = {
        Path(r["path"]).name: r.get("kind")
        for r in map(json.loads, report.read_text().splitlines())
    }
    assert kinds == {"moving.gif": "video", "lone.gif": "image"}
