"""The Stable Diffusion watermark check against the real ``invisible-watermark`` encoder/decoder.

Images are watermarked the way each reference script calls the encoder (SD 1.x / 2.x
``put_watermark``: uint8 BGR; SDXL: float32, BGR since diffusers PR #7013, RGB before), then
uploaded through :func:`dignity.media.decode`. The package's own decoder is the oracle for
our bits. It imports torch at the top of a module the dwtDct path never uses, so a stub
stands in for torch while it is imported, and is taken out again at once.
"""

from __future__ import annotations

import importlib
import io
import json
import sys
import types
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from dignity.media import Media, decode
from dignity.samples import landscape
from dignity.settings import Settings
from dignity.signals import watermark as wm
from dignity.signals.base import ProvenanceCheck
from dignity.signals.watermark import MIN_AGREEING_BITS, PAYLOADS, WatermarkCheck, decode_bits
from tests.conftest import shared_fixture

# What the reference code passes to set_watermark, verbatim in substance.
SD1_TEXT = "StableDiffusionV1"
SD2_TEXT = "SDV2"
SDXL_MESSAGE = 0b101100111110110010010000011110111011000110011110
SDXL_BITS = [int(bit) for bit in bin(SDXL_MESSAGE)[2:]]

CHECK = WatermarkCheck()


def _imwatermark() -> Any:
    """The invisible-watermark package, or a visible skip where a test dependency is missing."""
    pytest.importorskip("cv2", reason="opencv-python-headless (dev extra) is not installed")
    pytest.importorskip("pywt", reason="PyWavelets (dev extra) is not installed")
    stub = types.ModuleType("torch")
    added = sys.modules.setdefault("torch", stub) is stub
    try:
        return importlib.import_module("imwatermark")
    except ImportError:
        pytest.skip("invisible-watermark is not installed (make installs it with --no-deps)")
    finally:
        if added:  # other tests must not mistake the stub for torch
            del sys.modules["torch"]


def _encoder(payload: str) -> Any:
    encoder = _imwatermark().WatermarkEncoder()
    if payload == "sd1":
        encoder.set_watermark("bytes", SD1_TEXT.encode("utf-8"))
    elif payload == "sd2":
        encoder.set_watermark("bytes", SD2_TEXT.encode("utf-8"))
    else:
        encoder.set_watermark("bits", SDXL_BITS)
    return encoder


def sd_script(img: Image.Image, payload: str) -> Image.Image:
    """SD 1.x / 2.x ``put_watermark``: RGB -> BGR uint8, encode, back to RGB."""
    import cv2

    bgr = cv2.cvtColor(np.array(img), cv2.COLOR_RGB2BGR)
    bgr = _encoder(payload).encode(bgr, "dwtDct")
    return Image.fromarray(bgr[:, :, ::-1])


def sdxl_pipeline(img: Image.Image, order: str = "bgr") -> Image.Image:
    """diffusers' SDXL watermarker: float32 0-255 (BGR since PR #7013, RGB before), rounded."""
    rgb = np.asarray(img).astype(np.float32)
    encoder = _encoder("sdxl")
    if order == "bgr":
        out = encoder.encode(np.ascontiguousarray(rgb[:, :, ::-1]), "dwtDct")[:, :, ::-1]
    else:
        out = encoder.encode(np.ascontiguousarray(rgb), "dwtDct")
    return Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8))


def upload(img: Image.Image, fmt: str = "PNG", **params: Any) -> Media:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return decode(buf.getvalue())


def bridge(size: tuple[int, int]) -> Image.Image:
    path = shared_fixture("pdq", "bridge-mods", "aaa-orig.jpg")
    with Image.open(path) as im:
        return im.convert("RGB").resize(size, Image.Resampling.LANCZOS)


# (payload, how it is embedded, scene seed, size): cases the scheme carries losslessly.
MARKED = [
    ("sd1", "script", 5, (512, 512)),
    ("sd1", "script", 9, (1024, 1024)),
    ("sd2", "script", 2, (768, 512)),
    ("sd2", "script", 10, (512, 512)),
    ("sdxl", "bgr", 3, (1024, 1024)),
    ("sdxl", "rgb", 4, (1024, 1024)),
]


def marked(payload: str, how: str, seed: int, size: tuple[int, int]) -> Image.Image:
    scene = landscape(seed, size)
    return sd_script(scene, payload) if how == "script" else sdxl_pipeline(scene, how)


@pytest.mark.parametrize(("payload", "how", "seed", "size"), MARKED)
def test_watermarked_png_is_found(payload: str, how: str, seed: int, size: tuple[int, int]) -> None:
    report = CHECK.check(upload(marked(payload, how, seed, size)))
    data = report.data
    assert data["checked"] is True
    assert data["found"] == payload
    assert data["order"] == ("rgb" if how == "rgb" else "bgr")
    assert data["agreement"][payload] >= MIN_AGREEING_BITS[payload] / len(PAYLOADS[payload])
    for other in PAYLOADS:
        if other != payload:
            assert data["agreement"][other] < data["threshold"][other]
    (evidence,) = report.evidence
    assert evidence.source == "watermark"
    agree = round(data["agreement"][payload] * len(PAYLOADS[payload]))
    assert evidence.detail.endswith(f"(DWT-DCT), {agree}/{len(PAYLOADS[payload])} bits agree")
    json.dumps(data)


def test_watermarked_photo_is_found() -> None:
    data = CHECK.check(upload(sd_script(bridge((768, 512)), "sd1"))).data
    assert data["found"] == "sd1"


def test_payloads_are_what_the_encoder_embeds() -> None:
    assert [int(b) for b in _encoder("sd1")._watermarks] == PAYLOADS["sd1"].tolist()
    assert [int(b) for b in _encoder("sd2")._watermarks] == PAYLOADS["sd2"].tolist()
    assert PAYLOADS["sdxl"].tolist() == SDXL_BITS
    assert [len(p) for p in PAYLOADS.values()] == [136, 32, 48]


def test_evidence_names_the_model() -> None:
    report = CHECK.check(upload(marked("sdxl", "bgr", 3, (1024, 1024))))
    assert report.evidence[0].detail.startswith("Stable Diffusion XL invisible watermark")


@pytest.mark.parametrize(("payload", "how", "seed", "size"), MARKED[::2])
def test_jpeg_keeps_the_mark_only_with_full_chroma(
    payload: str, how: str, seed: int, size: tuple[int, int]
) -> None:
    """JPEG quantisation at quality 90-95 leaves the mark readable when chroma is kept at
    full resolution (4:4:4); with Pillow's default 4:2:0 the chroma is quantised at half
    resolution and the mark is lost, as with the package's own decoder."""
    img = marked(payload, how, seed, size)
    for quality in (95, 90):
        full = CHECK.check(upload(img, "JPEG", quality=quality, subsampling=0)).data
        assert full["found"] == payload, (quality, full)
        half = CHECK.check(upload(img, "JPEG", quality=quality, subsampling=2)).data
        assert half["found"] is None, (quality, half)


def test_resized_copy_is_not_expected_to_decode() -> None:
    img = marked("sd1", "script", 9, (1024, 1024)).resize((900, 900), Image.Resampling.LANCZOS)
    data = CHECK.check(upload(img)).data
    assert data["checked"] is True and data["found"] is None


@pytest.mark.parametrize(
    "size", [(512, 512), (1024, 1024), (768, 512), (512, 768), (1152, 896), (640, 640)]
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_benign_scenes_are_not_found(seed: int, size: tuple[int, int]) -> None:
    for fmt, params in (("PNG", {}), ("JPEG", {"quality": 95})):
        report = CHECK.check(upload(landscape(seed, size), fmt, **params))
        assert report.data["checked"] is True
        assert report.data["found"] is None and report.evidence == ()
        for payload, value in report.data["agreement"].items():
            assert value < report.data["threshold"][payload]


@pytest.mark.parametrize(
    "parts",
    [
        ("pdq", "bridge-mods", "aaa-orig.jpg"),
        ("pdq", "dihedral", "bridge-2-rotate-90.jpg"),
        ("c2pa", "A.jpg"),
        ("c2pa", "cloud.jpg"),
    ],
)
def test_benign_photos_are_not_found(parts: tuple[str, ...]) -> None:
    media = decode(shared_fixture(*parts).read_bytes())
    data = CHECK.check(media).data
    assert data["checked"] is True and data["found"] is None


def test_channel_order_decides() -> None:
    """The SD 1.x payload embedded from an RGB array (where BGR is expected) lands in another
    chroma plane: the package's decoder finds it only when handed the array in that same
    order, and we, reading SD 1.x as its scripts wrote it (BGR), do not find it. SDXL is read
    both ways because diffusers before PR #7013 did pass RGB (see MARKED)."""
    iw = _imwatermark()
    scene = np.asarray(landscape(1, (512, 512)))
    wrong = _encoder("sd1").encode(np.ascontiguousarray(scene), "dwtDct")
    data = CHECK.check(upload(Image.fromarray(wrong))).data
    assert data["found"] is None
    assert data["agreement"]["sd1"] < 0.6
    decoder = iw.WatermarkDecoder("bits", 136)
    same_order = np.asarray(decoder.decode(wrong, "dwtDct")) == PAYLOADS["sd1"]
    as_bgr = np.asarray(decoder.decode(np.ascontiguousarray(wrong[:, :, ::-1]), "dwtDct"))
    assert same_order.mean() > 0.95
    assert (as_bgr == PAYLOADS["sd1"]).mean() < 0.6


def _oracle_images() -> list[NDArray[np.uint8]]:
    rng = np.random.default_rng(7)
    images = [
        rng.integers(0, 256, (512, 512, 3), dtype=np.uint8),
        rng.integers(118, 138, (777, 1001, 3), dtype=np.uint8),  # flat: many cell-edge ties
        np.asarray(landscape(1, (768, 512))),
        np.asarray(landscape(2, (1030, 1021))),  # sides not multiples of 8
        np.asarray(marked("sd1", "script", 5, (512, 512))),
        np.asarray(marked("sdxl", "bgr", 3, (1024, 1024))),
        np.asarray(marked("sdxl", "rgb", 4, (1024, 1024))),
    ]
    gray = np.asarray(landscape(3, (600, 400)).convert("L").convert("RGB"))
    return [*images, gray]


def test_bits_equal_the_packages_decoder() -> None:
    iw = _imwatermark()
    compared = 0
    for rgb in _oracle_images():
        readings = decode_bits(Image.fromarray(rgb)).readings
        assert len(readings) == 4
        for (payload, domain, order), bits in readings.items():
            arr = rgb[:, :, ::-1] if order == "bgr" else rgb
            arr = np.ascontiguousarray(arr)
            if domain == "float":
                arr = arr.astype(np.float32)
            length = len(PAYLOADS[payload])
            expected = iw.WatermarkDecoder("bits", length).decode(arr, "dwtDct")
            np.testing.assert_array_equal(bits, np.asarray(expected, dtype=bool))
            compared += 1
    assert compared == 32


def test_chroma_equals_opencv_for_every_colour() -> None:
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless (dev extra) is not installed")
    every = np.arange(1 << 24, dtype=np.uint32)
    rgb = np.stack([every >> 16, (every >> 8) & 255, every & 255], axis=-1).astype(np.uint8)
    rgb = rgb.reshape(4096, 4096, 3)
    img = Image.fromarray(rgb)
    ours = wm._chroma(img, img.getchannel("B"))
    theirs = cv2.cvtColor(np.ascontiguousarray(rgb[:, :, ::-1]), cv2.COLOR_BGR2YUV)[:, :, 1]
    assert np.array_equal(ours, theirs)


def test_reduced_jpeg_is_not_checked() -> None:
    buf = io.BytesIO()
    landscape(4, (2048, 1536)).save(buf, "JPEG", quality=90)
    media = decode(buf.getvalue(), min_size=256)
    assert media.reduced
    report = CHECK.check(media)
    assert report.data["checked"] is False and report.evidence == ()
    assert "reduced" in report.data["reason"]


@pytest.mark.parametrize("size", [(100, 100), (255, 255), (70000, 4), (1, 1)])
def test_small_images_are_not_checked(size: tuple[int, int]) -> None:
    img = Image.new("RGB", size, (120, 130, 140))
    report = CHECK.check(upload(img))
    assert report.data["checked"] is False and report.evidence == ()
    assert report.data["reason"]


def test_smallest_checked_image() -> None:
    report = CHECK.check(upload(landscape(8, (256, 256))))
    assert report.data["checked"] is True
    assert set(report.data["agreement"]) == {"sd1", "sd2", "sdxl"}


def test_odd_modes_and_formats() -> None:
    for img, fmt in (
        (landscape(1, (600, 500)).convert("L"), "PNG"),
        (landscape(1, (600, 500)).convert("P"), "GIF"),
        (landscape(1, (600, 500)).convert("RGBA"), "WEBP"),
    ):
        data = CHECK.check(upload(img, fmt)).data
        assert data["checked"] is True and data["found"] is None
        json.dumps(data)


def test_failure_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(image: Image.Image) -> None:
        raise ValueError("boom")

    monkeypatch.setattr(wm, "decode_bits", broken)
    report = CHECK.check(upload(landscape(1, (512, 512))))
    assert report.data["checked"] is False
    assert "boom" in report.data["error"]
    assert report.evidence == ()


def test_create_returns_the_check() -> None:
    (check,) = wm.create(Settings())
    assert isinstance(check, ProvenanceCheck)
    assert check.name == "watermark" and check.version


def test_threads_share_one_media() -> None:
    from concurrent.futures import ThreadPoolExecutor

    media = upload(marked("sd2", "script", 2, (768, 512)))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: CHECK.check(media).data, range(8)))
    assert all(r == results[0] for r in results) and results[0]["found"] == "sd2"
