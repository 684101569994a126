"""Region proposals (pictures inside pictures) on generated layouts of benign landscapes:
each layout kind yields a proposal tight to the picture, whose PDQ is near the picture's own;
plain photos and UI-only screens yield nothing a bank could match; the engine reports the
region of a match and leaves low-detail regions to its quality floor."""

from __future__ import annotations

import random
from dataclasses import replace

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from dignity.hashing.pdq import pdq_from_box, pdq_from_image
from dignity.hashing.signals import hash_bytes
from dignity.matching.engine import Match
from dignity.regions import MAX_REGIONS, Region, hash_upload, propose, region_hashes, region_pdq
from dignity.sample_layouts import LAYOUTS
from dignity.samples import encode, landscape
from dignity.settings import Settings

PICTURE = landscape(41, (900, 650))
OTHERS = [landscape(42, (800, 600)), landscape(43, (640, 480))]


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union


def distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_each_layout_yields_a_tight_proposal_that_matches(name: str) -> None:
    img, box = LAYOUTS[name](PICTURE, random.Random(7), OTHERS)
    found = region_hashes(img, dihedral=True)
    assert 1 <= len(found) <= MAX_REGIONS
    best = max(found, key=lambda r: iou(r.region.box(), box))
    # Tight: every edge within 1% of the picture's side (PDQ tolerates a few percent); a chat
    # bubble's padding on a patterned wallpaper may stay in (found by its straight edges).
    x0, y0, x1, y1 = best.region.box()
    bw, bh = box[2] - box[0], box[3] - box[1]
    err = max(abs(x0 - box[0]) / bw, abs(x1 - box[2]) / bw, abs(y0 - box[1]) / bh)
    tolerance = 0.02 if name == "chat" else 0.01
    assert max(err, abs(y1 - box[3]) / bh) <= tolerance, (best.region, box)
    want = pdq_from_image(PICTURE)
    assert min(distance(h, want.hex) for h in best.pdq.dihedral or ()) <= 31


def test_regions_are_in_the_uploads_pixels_when_the_decode_is_reduced() -> None:
    img, box = LAYOUTS["collage-2x2"](PICTURE, random.Random(3), OTHERS)
    half = img.resize((img.width // 2, img.height // 2), Image.Resampling.BOX)
    found = region_hashes(half, img.size)
    best = max(found, key=lambda r: iou(r.region.box(), box))
    assert iou(best.region.box(), box) >= 0.97
    assert all(r.region.x + r.region.w <= img.width for r in found)


def test_plain_photos_and_bare_screens_propose_nothing_to_match() -> None:
    # A photo on its own: no separator cuts it, so no part of it is proposed (the whole image
    # is hashed anyway).
    assert propose(PICTURE) == []
    # A screen of UI and text only: whatever is proposed is low detail or not a picture.
    screen = Image.new("RGB", (720, 1500), (250, 250, 250))
    d = ImageDraw.Draw(screen)
    for y in range(100, 1400, 40):
        d.text((30, y), "some words of a caption " * 3, fill=(20, 20, 20))
    d.rectangle([0, 0, 720, 90], fill=(30, 90, 160))
    for r in region_hashes(screen):
        assert r.pdq.quality < 50 or r.region.h < 200


def test_region_pdq_is_the_crops_pdq_unless_corners_were_rounded() -> None:
    img, box = LAYOUTS["bordered"](PICTURE, random.Random(5), OTHERS)
    assert region_pdq(img, box) == pdq_from_image(img.crop(box))
    assert pdq_from_box(img, box, dihedral=True) == pdq_from_image(img.crop(box), dihedral=True)
    # Rounded corners in the background's colour are undone before hashing.
    shown = PICTURE.resize((450, 325))
    mask = Image.new("L", shown.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle([0, 0, 449, 324], radius=30, fill=255)
    page = Image.new("RGB", (600, 500), (255, 255, 255))
    page.paste(shown, (70, 80), mask)
    plain = pdq_from_image(page.crop((70, 80, 520, 405)))
    repaired = region_pdq(page, (70, 80, 520, 405))
    want = pdq_from_image(shown).hex
    assert distance(repaired.hex, want) < distance(plain.hex, want)
    # region_hashes reads a grey copy of the image: a whole grey level of rounding apart, and
    # the same repair (the grey pixels take the values the colours' mask picks).
    fast = {r.box: r.pdq for r in region_hashes(page)}
    for box, got in fast.items():
        assert distance(got.hex, region_pdq(page, box).hex) <= 8
    big = Image.new("RGB", (1600, 1200), (255, 255, 255))
    big.paste(PICTURE.resize((1200, 900)), (200, 150))
    for r in region_hashes(big):  # over 512 px a side: PDQ's own 512 x 512 sample
        assert distance(r.pdq.hex, region_pdq(big, r.box).hex) <= 8


def test_proposals_cost_little_and_never_the_whole_image() -> None:
    img, _ = LAYOUTS["phone-light"](PICTURE, random.Random(2), OTHERS)
    boxes = propose(img)
    w, h = img.size
    assert all(iou(b, (0, 0, w, h)) < 0.97 for b in boxes)
    assert len(boxes) <= MAX_REGIONS
    data = encode(img, "JPEG", quality=85)
    plain = hash_bytes(data)
    with_regions = hash_upload(data, Settings())
    # The whole image's hashes do not change; the regions come on top.
    assert plain == with_regions and plain.regions == () and with_regions.regions


def test_match_carries_the_region_only_when_there_is_one() -> None:
    whole = Match("b", "block", 1, "pdq", 3)
    assert "region" not in whole.to_dict()
    inside = replace(whole, region=Region(10, 20, 300, 200))
    assert inside.to_dict()["region"] == {"x": 10, "y": 20, "w": 300, "h": 200}


def test_low_detail_regions_are_left_to_the_quality_floor() -> None:
    # A flat panel inside a screenshot: proposed perhaps, but with PDQ quality under the floor.
    screen = Image.new("RGB", (800, 1200), (255, 255, 255))
    screen.paste(Image.new("RGB", (600, 400), (200, 40, 40)), (100, 300))
    arr = np.asarray(screen)
    assert arr.shape == (1200, 800, 3)
    for r in region_hashes(screen):
        assert r.pdq.quality < 50


def test_policy_sees_the_regions_of_matches_found_inside() -> None:
    from dignity.matching.engine import MatchOutcome
    from dignity.policy import decide, facts_of

    inside = Match("ncii", "block", 1, "pdq", 5, region=Region(0, 300, 720, 500))
    whole = Match("ncii", "block", 2, "pdq", 0)
    facts = facts_of(MatchOutcome(matches=[whole, inside]))
    assert facts["match.region"] == [{"x": 0, "y": 300, "w": 720, "h": 500}]
    assert facts["match.block"][1]["region"] == {"x": 0, "y": 300, "w": 720, "h": 500}
    assert facts_of(MatchOutcome(matches=[whole]))["match.region"] == []
    assert decide(MatchOutcome(matches=[inside]), {}).action == "block"


@pytest.mark.parametrize("scale", [1, 3])  # the box as is, and over 512 px: PDQ's own sample
def test_region_hashes_undo_rounded_corners_on_grey_levels(scale: int) -> None:
    # region_hashes finds a rounding on the grey sample PDQ reads, gated by the RGB colours
    # of the corner and of the pixel outside it: the repaired hash is nearer the picture's
    # own than the grey crop's, and square corners (a picture pasted as is) are left alone.
    from dignity.hashing.pdq import pdq_from_grey
    from dignity.regions import _Planes

    shown = PICTURE.resize((450 * scale, 325 * scale))
    mask = Image.new("L", shown.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle(
        [0, 0, shown.width - 1, shown.height - 1], radius=30 * scale, fill=255
    )
    page = Image.new("RGB", (shown.width + 150, shown.height + 175), (255, 255, 255))
    page.paste(shown, (70, 80), mask)
    box = (70, 80, 70 + shown.width, 80 + shown.height)
    crop = np.asarray(page.convert("L").crop(box))
    if scale > 1:  # PDQ's 512 x 512 nearest sample, as region_hashes reads it
        crop = cv2.resize(crop, (512, 512), interpolation=cv2.INTER_NEAREST)
    raw = pdq_from_grey(crop)
    got = _Planes(page).pdq(box, dihedral=False)
    want = pdq_from_image(shown).hex
    assert distance(got.hex, want) < distance(raw.hex, want)
    square = Image.new("RGB", page.size, (255, 255, 255))
    square.paste(shown, (70, 80))
    kept = _Planes(square).pdq(box, dihedral=False)
    assert distance(kept.hex, region_pdq(square, box).hex) <= 2  # grey rounding only


def test_runs_judged_in_c_and_numpy_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    # _Runs comes from the compiled kernel; without it, from numpy: both must make the same
    # separators on every block of every layout (and on random blocks of each).
    from dignity import regions

    assert regions._core is not None, "pip install -e . compiles dignity._regioncore"

    rng = random.Random(11)
    seen = {"runs": 0, "soft": 0}
    for name, layout in LAYOUTS.items():
        img, _ = layout(PICTURE, random.Random(3), OTHERS)
        sample = regions._sample(img)
        stats = regions._Stats(sample.grey, sample.rgb)
        h, w = sample.grey.shape
        blocks = [(0, 0, w, h)]
        for _ in range(60):
            x0, y0 = rng.randrange(0, w - 8), rng.randrange(0, h - 8)
            blocks.append((x0, y0, rng.randrange(x0 + 8, w + 1), rng.randrange(y0 + 8, h + 1)))
        for block in blocks:
            for axis in (0, 1):
                compiled = regions._Runs(stats, block, axis)
                monkeypatch.setattr(regions, "_COMPILED", False)
                many = regions._Runs(stats, block, axis)
                monkeypatch.setattr(regions, "_COMPILED", True)
                want = (many.loose, many.strict)
                assert (compiled.loose, compiled.strict) == want, (name, block, axis)
                seen["runs"] += bool(many.loose)
                seen["soft"] += many.loose != many.strict
    # Both verdicts were exercised: blocks with separators, and runs kept only when loose.
    assert seen["runs"] > 50 and seen["soft"] > 5, seen


def test_the_runs_kernel_refuses_blocks_outside_its_arrays() -> None:
    # The compiled kernel reads the integral images at the block's corners: a block past
    # them, an empty one, a bad axis or arrays shorter than the sizes given are refused.
    from dignity import regions

    assert regions._core is not None
    sample = regions._sample(PICTURE)
    stats = regions._Stats(sample.grey, sample.rgb)
    h1, w1 = stats.s.shape
    args = (regions.PLAIN_STD, regions.STEP, regions.DRIFT, regions.SHARP_STD)
    tail = (*args, regions.SHARP_STEP, regions.SHARP_LINES)
    for block, axis in [
        ((0, 0, w1, h1 - 1), 0),
        ((5, 5, 5, 20), 0),
        ((-1, 0, 10, 10), 1),
        ((0, 0, 10, 10), 2),
    ]:
        with pytest.raises(ValueError):
            regions._core.runs(stats.s, stats.q, stats.rgb, h1, w1, *block, axis, *tail)
    with pytest.raises(ValueError):
        regions._core.runs(stats.s[:2], stats.q, stats.rgb, h1, w1, 0, 0, 10, 10, 0, *tail)
    grey, (h, w) = sample.grey, sample.grey.shape
    with pytest.raises(ValueError):
        regions._core.first_off(grey, h, w, 0, 0, w + 1, 5, 0, False, 6.0, 14.0)
    with pytest.raises(ValueError):
        regions._core.first_off(grey[:3], h, w, 0, 0, 5, 5, 0, False, 6.0, 14.0)
    with pytest.raises(ValueError):
        regions._core.edge_runs(grey, h, w, 2, 8, regions.EDGE_STEP, 64)
    with pytest.raises(ValueError):
        regions._core.edge_runs(grey[:3], h, w, 0, 8, regions.EDGE_STEP, 64)
    loose, strict = regions._core.runs(stats.s, stats.q, stats.rgb, h1, w1, 0, 0, 10, 10, 0, *tail)
    assert set(strict) <= set(loose)


def test_edge_runs_and_edge_refinement_in_c_agree_with_numpy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The compiled long-edge runs and the compiled first-picture-line walk give what the
    # numpy code gives, on every layout (edges of the sample; random boxes of the image,
    # both axes, both ways) and on the proposals they lead to.
    from dignity import regions

    assert regions._core is not None
    rng = random.Random(12)
    limits = (regions.PLAIN_STD, regions.SHARP_STEP)
    found_edges = walks = 0
    for name, layout in LAYOUTS.items():
        img, _ = layout(PICTURE, random.Random(4), OTHERS)
        sample = regions._sample(img)
        h, w = sample.grey.shape
        for axis, edges in (
            (0, np.abs(np.diff(sample.grey.astype(np.int16), axis=0)) > regions.EDGE_STEP),
            (1, np.abs(np.diff(sample.grey.astype(np.int16), axis=1)).T > regions.EDGE_STEP),
        ):
            for min_len in (2, 8, w // 8, h // 8):
                want = regions._runs(edges, min_len)
                step = regions.EDGE_STEP
                got = regions._core.edge_runs(sample.grey, h, w, axis, min_len, step, 64)
                assert got == want, (name, axis, min_len)
                found_edges += len(got)
        grey = np.asarray(img.convert("L"))
        gh, gw = grey.shape
        for _ in range(40):
            x0, y0 = rng.randrange(0, gw - 2), rng.randrange(0, gh - 2)
            x1, y1 = rng.randrange(x0 + 1, min(gw, x0 + 400) + 1), rng.randrange(y0 + 1, gh + 1)
            for axis in (0, 1):
                for backward in (False, True):
                    part = grey[y0:y1, x0:x1].astype(np.int64)
                    sums, squares = part.sum(axis=axis), (part * part).sum(axis=axis)
                    if backward:
                        sums, squares = sums[::-1], squares[::-1]
                    n = part.shape[axis]
                    level = sums / n
                    off = (squares / n - level * level > regions.PLAIN_STD**2) | (
                        np.abs(level - level[0]) > regions.SHARP_STEP
                    )
                    want_at = int(np.argmax(off)) if off.any() else -1
                    at = regions._core.first_off(
                        grey, gh, gw, x0, y0, x1, y1, axis, backward, *limits
                    )
                    assert at == want_at, (name, (x0, y0, x1, y1), axis, backward)
                    walks += want_at >= 0
        compiled = regions.propose(img)
        monkeypatch.setattr(regions, "_COMPILED", False)
        assert regions.propose(img) == compiled, name
        monkeypatch.setattr(regions, "_COMPILED", True)
    assert found_edges > 20 and walks > 100, (found_edges, walks)


def test_corner_fill_and_dominant_level_in_c_agree_with_numpy() -> None:
    # The compiled corner fill and dominant grey level give what the numpy code gives: on
    # grey samples of rounded pictures (fills), of flat corners (over a quarter: left be)
    # and of noise, at every corner and tolerance; and on random boxes of every layout.
    from dignity import regions

    assert regions._core is not None
    rng = np.random.default_rng(13)
    fills = 0
    for trial in range(60):
        h, w = int(rng.integers(40, 200)), int(rng.integers(40, 200))
        sample = rng.integers(0, 256, (h, w), dtype=np.uint8)
        if trial % 3 == 0:  # a picture with corners rounded off in a flat colour
            mask = Image.new("L", (w, h), 0)
            ImageDraw.Draw(mask).rounded_rectangle(
                [0, 0, w - 1, h - 1], radius=int(rng.integers(3, 20)), fill=255
            )
            sample = np.where(np.asarray(mask) > 0, sample // 2, 250).astype(np.uint8)
        elif trial % 3 == 1:  # a flat band along one side: more than a rounding
            sample[: h // 3] = 240
        c = min(h, w) // 8
        if c < 3:
            continue
        for corner in range(4):
            level = int(regions._corner_views(sample, c)[corner][0, 0])
            low, high = max(0, level - 25), min(255, level + 25)
            want = sample.copy()
            view = regions._corner_views(want, c)[corner]

            def part(
                r: int, k: int, v: np.ndarray = view, lo: int = low, hi: int = high
            ) -> np.ndarray:
                return (v[:r, :k] >= lo) & (v[:r, :k] <= hi)  # type: ignore[no-any-return]

            regions._fill_corner(view, part, c)
            got = sample.copy()
            fills += regions._core.fill_corner(got, h, w, corner, c, low, high) > 0
            assert np.array_equal(got, want), (trial, corner)
    assert fills > 10, fills
    for name, layout in LAYOUTS.items():
        img, _ = layout(PICTURE, random.Random(6), OTHERS)
        small = regions._sample(img).grey
        sh, sw = small.shape
        for _ in range(30):
            x0, y0 = int(rng.integers(0, sw - 1)), int(rng.integers(0, sh - 1))
            box = (x0, y0, int(rng.integers(x0 + 1, sw + 1)), int(rng.integers(y0 + 1, sh + 1)))
            codes = (small[box[1] : box[3] : 2, box[0] : box[2] : 2] >> 3).ravel()
            want_share = float(np.bincount(codes, minlength=32).max()) / float(codes.size)
            assert regions._core.dominant(small, sh, sw, *box) == want_share, (name, box)
