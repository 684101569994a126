"""Letterbox and pillarbox bar detection (dignity.video.bars) on synthetic frames: black and
coloured bars are found at their size, a frame without bars and a dark scene are left whole,
and vpdq_hash adds trimmed hashes only for its own matching, leaving the raw (Meta) ones as
they were."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from dignity.video.bars import Bars, find_bars, frame_bars
from dignity.video.vpdq import vpdq_hash
from tests.video_samples import write_video

H, W = 272, 480


def _picture(h: int, w: int, seed: int) -> NDArray[np.uint8]:
    """Blocky random colours: busy everywhere, so no edge of it is flat."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (-(-h // 8), -(-w // 8), 3), dtype=np.uint8)
    return np.ascontiguousarray(blocks.repeat(8, 0).repeat(8, 1)[:h, :w])


def _noisy(frame: NDArray[np.uint8], seed: int) -> NDArray[np.uint8]:
    """Compression-like noise of a few levels over the whole frame, bars included."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(-6, 7, frame.shape)
    out: NDArray[np.uint8] = np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return out


def test_black_letterbox_bars() -> None:
    frames = []
    for seed in range(6):
        f = np.zeros((H, W, 3), np.uint8)
        f[34 : H - 34] = _picture(H - 68, W, seed)
        frames.append(_noisy(f, seed))
    assert find_bars(frames) == Bars(top=34, bottom=34)


def test_coloured_pillarbox_bars() -> None:
    frames = []
    for seed in range(6):
        f = np.full((H, W, 3), (200, 30, 60), np.uint8)
        f[:, 60 : W - 60] = _picture(H, W - 120, seed)
        frames.append(_noisy(f, seed))
    assert find_bars(frames) == Bars(left=60, right=60)


def test_no_bars() -> None:
    assert not find_bars([_picture(H, W, seed) for seed in range(6)])


def test_dark_scene_is_not_trimmed_to_nothing() -> None:
    # All black, or black but for a small lit object in the middle: a scene, not bars.
    black = np.zeros((H, W, 3), np.uint8)
    assert frame_bars(black) is None
    lit = []
    for seed in range(6):
        f = np.full((H, W, 3), 8, np.uint8)
        f[120:150, 220:260] = _picture(30, 40, seed)
        lit.append(f)
    assert not find_bars([black] * 6)
    assert not find_bars(lit)


def test_a_flat_band_on_one_side_is_not_a_bar() -> None:
    # A plain sky above every shot: flat, but a bar would have its pair below.
    frames = []
    for seed in range(6):
        f = np.full((H, W, 3), (120, 170, 230), np.uint8)
        f[50:] = _picture(H - 50, W, seed)
        frames.append(f)
    assert frame_bars(frames[0]) == Bars(top=50)
    assert not find_bars(frames)


def test_bars_are_the_smallest_any_frame_shows() -> None:
    # A dark stretch inside the letterboxed picture makes one frame look more barred than the
    # video is; the bars are what every informative frame shows.
    frames = []
    for seed in range(6):
        f = np.zeros((H, W, 3), np.uint8)
        f[34 : H - 34] = _picture(H - 68, W, seed)
        if seed == 2:
            f[34:80] = 0
        frames.append(f)
    assert find_bars(frames) == Bars(top=34, bottom=34)


def test_vpdq_hash_trims_bars_for_matching_only(tmp_path: Path) -> None:
    path = write_video(tmp_path / "boxed.mp4", [(3, 4)], bars=40)
    raw = vpdq_hash(path)
    ours = vpdq_hash(path, dihedral=True)
    assert raw.bars is None and all(f.trimmed is None for f in raw.frames)
    assert ours.bars is not None and 36 <= ours.bars.top <= 40 and 36 <= ours.bars.bottom <= 40
    assert not ours.bars.left and not ours.bars.right
    # The exchanged hashes are untouched; every frame carries its trimmed family of 8.
    assert [f.pdq_hex for f in ours.frames] == [f.pdq_hex for f in raw.frames]
    assert all(f.trimmed is not None and len(f.trimmed) == 8 * 32 for f in ours.frames)
    assert all(f.trimmed and f.trimmed[:32].hex() != f.pdq_hex for f in ours.frames)
    plain = vpdq_hash(write_video(tmp_path / "plain.mp4", [(3, 4)]), dihedral=True)
    assert not plain.bars and all(f.trimmed is None for f in plain.frames)
