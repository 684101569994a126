"""Decode cost is bounded before the work starts (issue 18, finding 1-2): frames counted by a
capped walk, memory estimated from mode and bit depth, and a decode that runs too long stopped
by killing its worker process. Sizes are small in ``make test``; ``make abuse`` uses the
issue's (30k TIFF pages, 1M GIF frames, a 9999 x 10000 mode-I TIFF)."""

from __future__ import annotations

import time

import pytest

from dignity.decode_pool import DecodePool, risky
from dignity.errors import MediaError
from dignity.media import decode
from tests.abuse.attacks import FULL, big_tiff, many_frame_gif, many_page_tiff, png_16bit_rgba

LIMITS = {
    "max_bytes": 50 * 1024 * 1024,
    "max_pixels": 100_000_000,
    "max_frames": 1000,
    "max_decode_bytes": 512 * 1024 * 1024,
}


def refused_fast(data: bytes, code: str, seconds: float = 2.0) -> None:
    started = time.perf_counter()
    with pytest.raises(MediaError) as caught:
        decode(data, **LIMITS)
    assert caught.value.code == code
    assert time.perf_counter() - started < seconds


def test_many_page_tiff_is_refused_from_its_structure() -> None:
    refused_fast(many_page_tiff(30_000 if FULL else 5_000), "media.too_many_frames", 0.5)


def test_many_frame_gif_is_refused_from_its_structure() -> None:
    refused_fast(many_frame_gif(1_000_000 if FULL else 50_000), "media.too_many_frames", 0.5)


def test_pages_under_the_limit_are_counted() -> None:
    assert decode(many_page_tiff(300), **LIMITS).frames == 300


@pytest.mark.parametrize("mode", ["I", "F"])
def test_wide_modes_over_the_memory_budget_are_refused_before_decoding(mode: str) -> None:
    side = (9999, 10000) if FULL else (3000, 3000)
    data = big_tiff(mode, *side)
    with pytest.raises(MediaError) as caught:
        decode(data, **(LIMITS | {"max_decode_bytes": 9 * side[0] * side[1] - 1}))
    assert caught.value.code == "media.too_costly"
    # The same file within the budget decodes, to flat gray.
    if not FULL:
        assert decode(data, **LIMITS).pixels.max() <= 7


def test_16bit_rgba_png_counts_its_conversion() -> None:
    data = png_16bit_rgba(2000, 1000)
    with pytest.raises(MediaError) as caught:
        decode(data, **(LIMITS | {"max_decode_bytes": 8 * 2000 * 1000 - 1}))
    assert caught.value.code == "media.too_costly"
    assert decode(data, **LIMITS).width == 2000


def test_a_decode_past_the_deadline_is_stopped_and_its_worker_replaced() -> None:
    pool = DecodePool(1, timeout_s=0.001)
    data = big_tiff("I", 1500, 1500)
    try:
        with pytest.raises(MediaError) as caught:
            pool.decode(data, **LIMITS)
        assert caught.value.code == "media.decode_timeout"
        assert pool.killed == 1
        pool.timeout_s = 30
        assert pool.decode(data, **LIMITS).width == 1500  # a fresh worker answers
    finally:
        pool.close()


def test_only_baseline_jpegs_skip_the_pool() -> None:
    import io

    from PIL import Image

    image = Image.new("RGB", (64, 64), (10, 20, 30))
    baseline, progressive = io.BytesIO(), io.BytesIO()
    image.save(baseline, "JPEG")
    image.save(progressive, "JPEG", progressive=True)
    assert not risky(baseline.getvalue())
    assert risky(progressive.getvalue())
    assert risky(png_16bit_rgba(4, 4))


def test_progressive_jpeg_counts_its_coefficients() -> None:
    """libjpeg keeps a progressive JPEG's coefficients for the whole image (a 100 MP one took
    1.2 GB); 4:2:0 chroma has a quarter of the luma's blocks."""
    import io

    from PIL import Image

    from dignity.media import decode_cost

    buffer = io.BytesIO()
    Image.new("RGB", (1600, 1200), (10, 20, 30)).save(buffer, "JPEG", progressive=True)
    image = Image.open(io.BytesIO(buffer.getvalue()))
    luma = 1600 * 1200 * 2  # 64 coefficients of 2 bytes per 64 pixels
    assert decode_cost(image, (1600, 1200)) == 4 * 1600 * 1200 + luma * 3 // 2
    with pytest.raises(MediaError) as caught:
        decode(buffer.getvalue(), **(LIMITS | {"max_decode_bytes": 4 * 1600 * 1200 + luma}))
    assert caught.value.code == "media.too_costly"
