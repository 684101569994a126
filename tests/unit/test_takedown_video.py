"""Videos in the takedown workflow without a database: sniffing fetched content, the packed
frames of the scan log, and the reviewer's contact sheet (blurred, never the video)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from dignity.errors import DignityError
from dignity.samples import encode, landscape
from dignity.settings import Settings
from dignity.takedown import videos as videos_module
from dignity.takedown.content import looks_like_video
from dignity.takedown.scanlog import FRAME, VideoFrames
from dignity.takedown.videos import contact_sheet, hash_video
from dignity.video.vpdq import VpdqFrame, VpdqResult
from tests.videos import write_video


@pytest.fixture(scope="module")
def film(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(Path(tmp_path_factory.mktemp("film")) / "film.mp4", [(3, 0, 8)])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


def test_video_containers_are_told_from_images(film: Path, tmp_path: Path) -> None:
    assert looks_like_video(film.read_bytes()[:64])
    webm = write_video(tmp_path / "f.webm", [(3, 0, 1)], codec="libvpx")
    assert looks_like_video(webm.read_bytes()[:64])
    avi = write_video(tmp_path / "f.avi", [(3, 0, 1)], codec="mpeg4")
    assert looks_like_video(avi.read_bytes()[:64])
    for fmt in ("JPEG", "PNG", "WEBP", "GIF"):
        assert not looks_like_video(encode(landscape(1, (64, 48)), fmt)[:64]), fmt
    heif = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic"
    assert not looks_like_video(heif) and not looks_like_video(b"")


def _result(frames: tuple[VpdqFrame, ...]) -> VpdqResult:
    return VpdqResult(
        frames=frames,
        duration=3.0,
        frame_rate=25.0,
        frames_decoded=75,
        width=64,
        height=48,
        md5="0" * 32,
        sha256="0" * 64,
    )


def test_frames_keep_their_dihedral_variants_only_when_every_frame_has_them() -> None:
    rows = [bytes([n]) * 32 * 8 for n in range(3)]
    full = _result(
        tuple(VpdqFrame(25 * n, float(n), rows[n][:32].hex(), 90, rows[n]) for n in range(3))
    )
    frames = VideoFrames.from_vpdq(full)
    assert frames.dihedral == b"".join(r[32:] for r in rows)  # the original is not repeated
    every = frames.variant_rows()
    assert every is not None and every.shape == (3, 8, 32)
    assert bytes(every[2, 0]) == rows[2][:32] and bytes(every[2, 7]) == rows[2][224:]
    partial = _result(
        (
            VpdqFrame(0, 0.0, rows[0][:32].hex(), 90, rows[0]),
            VpdqFrame(25, 1.0, rows[1][:32].hex(), 90, None),
        )
    )
    assert VideoFrames.from_vpdq(partial).dihedral is None
    packed = frames.pack()
    assert len(packed) == 3 * FRAME.size == 3 * 41
    assert VideoFrames.unpack(packed, frames.dihedral, 3.0) == frames


def test_a_video_is_hashed_from_its_file(film: Path, settings: Settings) -> None:
    result = hash_video(film, settings)
    assert len(result.frames) == 8 and result.duration == pytest.approx(8.0)
    assert [f.timestamp for f in result.frames] == [float(n) for n in range(8)]
    assert all(f.quality >= 50 for f in result.frames)


def _fine_detail(image: Image.Image) -> float:
    grey = image.convert("L")
    soft = grey.filter(ImageFilter.GaussianBlur(2))
    return float(np.abs(np.asarray(grey, np.float64) - np.asarray(soft, np.float64)).mean())


def test_the_contact_sheet_is_blurred_and_grey_until_revealed(
    film: Path, settings: Settings
) -> None:
    blurred = contact_sheet(film, settings, reveal=False)
    assert not blurred.revealed and len(blurred.times) == 6
    # The middle of each sixth of 8 s, to the frame (25 fps in the helper: 10 fps).
    assert blurred.times == pytest.approx([0.6, 2.0, 3.3, 4.6, 6.0, 7.3], abs=0.11)
    sheet = Image.open(io.BytesIO(blurred.data))
    assert sheet.format == "JPEG" and sheet.size == (blurred.width, blurred.height)
    rgb = np.asarray(sheet.convert("RGB"), np.int16)
    assert int(np.abs(rgb[..., 0] - rgb[..., 2]).max()) <= 12  # greyscale
    clear = contact_sheet(film, settings, reveal=True)
    shown = Image.open(io.BytesIO(clear.data))
    tile = (30, 30, 140, 110)  # inside the first frame, below its time label
    assert _fine_detail(sheet.crop(tile)) < 0.5 < 1.0 < _fine_detail(shown.crop(tile))
    four = contact_sheet(film, settings, reveal=False, frames=4)
    assert len(four.times) == 4 and four.height == blurred.height  # 3 + 1: two rows


def test_the_contact_sheet_refuses_what_is_not_a_readable_video(
    film: Path, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0\0\0\x18ftypisom" + b"not really a video" * 50)
    with pytest.raises(DignityError) as err:
        contact_sheet(junk, settings, reveal=False)
    assert err.value.code in ("media.not_a_video", "media.corrupt")
    picture = tmp_path / "picture.jpg"
    picture.write_bytes(encode(landscape(1, (64, 48)), "JPEG"))
    with pytest.raises(DignityError) as err:
        contact_sheet(picture, settings, reveal=False)
    assert err.value.code in ("media.not_a_video", "media.corrupt")
    monkeypatch.setattr(videos_module, "_limits", lambda _: (3600.0, 100))
    with pytest.raises(DignityError) as err:
        contact_sheet(film, settings, reveal=False)
    assert err.value.code == "media.too_many_pixels"
    monkeypatch.setattr(videos_module, "_limits", lambda _: (5.0, 10**8))
    with pytest.raises(DignityError) as err:
        contact_sheet(film, settings, reveal=False)
    assert err.value.code == "media.too_long"
