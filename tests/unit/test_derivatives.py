"""Edited-derivative matching on a small set of generated scenes: features, index, evidence.

The edits are benign region replacements (a flat patch, OpenCV inpainting) plus crop, resize,
JPEG and mirror, as in ``bench/derivatives.py``; unrelated scenes come from other seeds of the
same generator, the hardest kind of unrelated image for a local-feature matcher (same shapes,
same palette).
"""

from __future__ import annotations

import io
from datetime import datetime

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from dignity.derivatives import FeatureError, Features, match_media, source_features
from dignity.derivatives import matching as matching_mod
from dignity.derivatives.features import STORED_KEYPOINTS
from dignity.derivatives.matching import DerivativeMatcher, Record
from dignity.matching.engine import MatchOutcome
from dignity.media import decode
from dignity.policy import decide
from dignity.samples import landscape

SEEDS = range(6)


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def flat_patch(img: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    out = img.copy()
    out.paste((200, 170, 120), box)
    return out


def inpainted(img: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    arr = np.asarray(img).copy()
    mask = np.zeros(arr.shape[:2], np.uint8)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = 255
    return Image.fromarray(cv2.inpaint(arr, mask, 5, cv2.INPAINT_TELEA))


# A central region of 30% of an 800 x 600 scene: where a "nudify" edit repaints.
BOX = (250, 170, 570, 515)


def derivative(seed: int, kind: str) -> Image.Image:
    img = landscape(seed)
    edited = flat_patch(img, BOX) if kind == "flat" else inpainted(img, BOX)
    cropped = edited.crop((60, 20, 760, 570))  # up to 8% off each side
    smaller = cropped.resize((525, 412), Image.Resampling.LANCZOS)
    return _jpeg(smaller.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 70)


@pytest.fixture(scope="module")
def matcher() -> DerivativeMatcher:
    return DerivativeMatcher(
        Record(seed + 1, f"person-{seed}", source_features(landscape(seed))) for seed in SEEDS
    )


def test_features_round_trip_within_budget() -> None:
    feats = source_features(landscape(1))
    blob = feats.pack()
    assert len(feats) == STORED_KEYPOINTS
    assert len(blob) <= 4096 - 512  # room left for the consent record
    back = Features.unpack(blob)
    assert np.array_equal(back.descriptors, feats.descriptors)
    assert np.abs(back.xy - feats.xy).max() <= 1 / 32
    assert (back.width, back.height) == (feats.width, feats.height) == (512, 384)
    for bad in (b"", blob[:-1], b"XXXX" + blob[4:]):
        with pytest.raises(ValueError):
            Features.unpack(bad)


def test_plain_photos_are_refused() -> None:
    with pytest.raises(FeatureError) as err:
        source_features(Image.new("RGB", (640, 480), (90, 120, 150)))
    assert err.value.code == "source.too_plain"


@pytest.mark.parametrize("kind", ["flat", "inpaint"])
@pytest.mark.parametrize("seed", SEEDS)
def test_edited_copies_are_found(matcher: DerivativeMatcher, seed: int, kind: str) -> None:
    image = derivative(seed, kind)
    found = matcher.match(image)
    assert found is not None
    assert (found.source_id, found.subject) == (seed + 1, f"person-{seed}")
    assert found.mirrored
    assert 0.5 <= found.confidence <= 1
    assert 0.1 <= found.matched_area <= 1


def test_changed_region_points_at_the_edit(matcher: DerivativeMatcher) -> None:
    hits = 0
    for seed in SEEDS:
        found = matcher.match(derivative(seed, "flat"))
        assert found is not None
        region = found.changed_region
        assert set(region) == {"box", "share", "grid", "mask"}
        assert len(region["mask"]) == region["grid"]
        if region["box"] is None:
            continue
        x, y, w, h = region["box"]
        # The patch in the scanned (cropped, resized, mirrored) frame: centre ~ (262, 206).
        if x <= 262 <= x + w and y <= 206 <= y + h:
            hits += 1
    assert hits >= len(SEEDS) - 1


def test_unrelated_scenes_and_awkward_images_do_not_match(matcher: DerivativeMatcher) -> None:
    for seed in range(100, 130):
        assert matcher.match(landscape(seed)) is None, seed
    for size in [(1, 1), (5, 500), (500, 5), (64, 48)]:
        assert matcher.match(Image.new("RGB", size, (10, 200, 30))) is None
    noise = np.random.default_rng(0).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    assert matcher.match(Image.fromarray(noise)) is None


def test_add_remove_and_folding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(matching_mod, "_TAIL_LIMIT", 2)
    m = DerivativeMatcher()
    assert len(m) == 0 and m.match(landscape(0)) is None
    recs = [Record(i + 1, "s", source_features(landscape(i))) for i in range(4)]
    m.add(recs[:1])
    m.add(recs[1:3])  # tail now over its limit: folded into main
    m.add(recs[3:])
    assert m.ids() == {1, 2, 3, 4}
    assert all(m.match(derivative(i, "flat")) is not None for i in range(4))
    assert m.remove([2, 99]) == 1
    assert m.ids() == {1, 3, 4} and 2 not in m
    assert m.match(derivative(1, "flat")) is None
    found = m.match(derivative(0, "flat"))
    assert found is not None and found.source_id == 1
    m.add([Record(2, "again", recs[1].features)])
    again = m.match(derivative(1, "flat"))
    assert again is not None and (again.source_id, again.subject) == (2, "again")
    m.replace([])
    assert len(m) == 0 and m.memory_bytes() > 0


def test_match_media_and_policy(matcher: DerivativeMatcher) -> None:
    buf = io.BytesIO()
    derivative(2, "inpaint").save(buf, "PNG")
    media = decode(buf.getvalue())
    evidence = match_media(matcher, media)
    assert evidence is not None
    assert set(evidence) == {"source_id", "subject", "confidence", "matched_area", "changed_region"}
    alone = decide(MatchOutcome(), {"ai_evidence": [], "derivative_of": evidence})
    assert (alone.action, alone.rules) == ("review", ["derivative"])
    nude = decide(MatchOutcome(), {"ai_evidence": [], "derivative_of": evidence, "nudity": 0.9})
    assert nude.action == "review" and "derivative-nudity" in nude.rules
    assert nude.priority > alone.priority
    plain = decide(MatchOutcome(), {"ai_evidence": [], "derivative_of": None})
    assert plain.action == "allow"


def test_mirrored_view_equals_detecting_on_the_mirror() -> None:
    # The mirrored view reuses the scanned view's corners, mirrored: its descriptors must be
    # what ORB computes on the mirrored image itself, or mirrored copies would be missed.
    from dignity.derivatives.features import detect, normalised_gray, query_features

    img = landscape(4)
    query = query_features(img)
    plain, mirror = query.views
    assert query.mirrored == (False, True) and len(plain) == len(mirror) > 100
    gray = normalised_gray(img)
    desc, xy = detect(np.ascontiguousarray(gray[:, ::-1]), 6000)  # every corner there
    dist = []  # per mirrored-view keypoint: bits to ORB's own keypoint there, if any
    for i in range(len(mirror)):
        there = np.flatnonzero(np.hypot(*(xy - mirror.xy[i]).T) < 1.5)
        bits = np.unpackbits(mirror.descriptors[i] ^ desc[there], axis=1).sum(axis=1)
        dist.append(int(bits.min()) if len(there) else -1)
    found = np.asarray([d for d in dist if d >= 0])
    assert len(found) >= 0.85 * len(plain)
    # Same descriptors but for sub-pixel sampling on the coarser pyramid levels; unmirrored
    # angles would put them ~100 bits apart.
    assert np.median(found) <= 4 and np.mean(found <= 32) >= 0.9


def test_index_layout_keeps_every_record_intact() -> None:
    # Records sit at a fixed stride with padding; a short record's padding must never vote,
    # and each record must come back with its own keypoints (positions within the 2 px step).
    full = source_features(landscape(1))
    short = Features(full.descriptors[:30], full.xy[:30], full.width, full.height)
    m = DerivativeMatcher([Record(7, "a", full), Record(9, "b", short)])
    seg = m._snap.main
    assert seg.stride == STORED_KEYPOINTS and len(seg.postings) == len(full) + 30
    back = m._snap.record(9)
    assert back is not None and len(back.features) == 30
    assert np.array_equal(back.features.descriptors, short.descriptors)
    assert np.abs(back.features.xy - short.xy).max() <= 1.0
    votes = seg.votes(full.descriptors, frozenset())
    assert votes[7] >= 0.9 * len(full) and votes[9] <= 30


def test_agreeing_votes_need_one_shift() -> None:
    # The shortlist ranks photos by votes that agree on one shift: the same keypoints moved
    # together (a crop) keep their votes, the same keypoints scattered (chance matches of
    # common corners) lose them, and then the photo is not verified at all.
    full = source_features(landscape(2))
    shifted = Features(full.descriptors, full.xy + np.float32([40.0, -25.0]), 600, 450)
    rng = np.random.default_rng(0)
    scattered = Features(
        full.descriptors, rng.uniform(0, 500, full.xy.shape).astype(np.float32), 600, 450
    )
    m = DerivativeMatcher([Record(1, "a", full)])
    seg = m._snap.main
    agree, votes = seg.agreeing(shifted, frozenset())[1]
    assert votes >= 0.9 * len(full) and agree >= 0.9 * votes
    agree, votes = seg.agreeing(scattered, frozenset())[1]
    assert votes >= 0.9 * len(full) and agree < 0.4 * votes


def test_bunched_inliers_are_not_a_match(monkeypatch: pytest.MonkeyPatch) -> None:
    # Below SURE_INLIERS, inliers bunched in a corner (a shared shape, a repeated texture)
    # must not count: the same photo spreads its inliers over the unedited area.
    src = source_features(landscape(3))
    corner = Image.fromarray(np.asarray(landscape(3))[:150, :200]).resize((800, 600))
    m = DerivativeMatcher([Record(1, "a", src)])
    view = matching_mod.query_features(landscape(3)).views[0]
    assert matching_mod._verify(src, view) is not None
    monkeypatch.setattr(matching_mod, "SURE_INLIERS", 10**6)
    monkeypatch.setattr(matching_mod, "MIN_AREA", 0.99)
    assert matching_mod._verify(src, view) is None
    assert m.match(corner) is None


def _faint(img: Image.Image, levels: float) -> NDArray[np.uint8]:
    """``img`` in grey with its contrast squeezed to about ``levels`` grey levels each way."""
    grey = np.asarray(img.convert("L"), dtype=np.float32)
    return np.clip(128 + (grey - grey.mean()) * levels / 64, 0, 255).astype(np.uint8)


def test_plain_tiles_are_searched_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # Left half: a scene at full contrast; right half: the same at a few grey levels, where no
    # corner reaches the usual FAST threshold (fog, a gradient, a dim studio backdrop).
    from dignity.derivatives import features

    strong = np.asarray(landscape(2, (512, 384)).convert("L"), dtype=np.uint8)
    gray = strong.copy()
    gray[:, 256:] = _faint(landscape(5, (512, 384)), 4)[:, 256:]
    xy = features._keypoints(gray, 6000).xy
    right = int((xy[:, 0] >= 256 + 16).sum())
    assert (xy[:, 0] < 256).sum() > 300 and right >= 30
    monkeypatch.setattr(features, "_PLAIN_TILE", 0)  # no second search
    xy = features._keypoints(gray, 6000).xy
    assert int((xy[:, 0] >= 256 + 16).sum()) <= right / 4


def test_coverage_warns_when_detail_sits_in_one_corner() -> None:
    from dignity.derivatives.features import LOW_COVERAGE
    from dignity.derivatives.service import SourceInfo

    detailed = source_features(landscape(1))
    backdrop = Image.new("RGB", (800, 600), (120, 130, 140))
    backdrop.paste(landscape(1, (200, 150)), (560, 420))  # a sixteenth of the frame
    corner = source_features(backdrop)
    # The patch touches at most 3 x 3 of the 8 x 8 cells.
    assert detailed.coverage() > 0.5 and 0 < corner.coverage() <= 9 / 64
    assert Features.unpack(corner.pack()).coverage() == corner.coverage()

    def info(feats: Features) -> dict[str, object]:
        at = datetime(2026, 1, 1)
        return SourceInfo(1, "p", "", "", at, 800, 600, len(feats), 1, feats.coverage()).to_dict()

    assert info(detailed)["warning"] is None
    share = f"only {corner.coverage():.0%} of its frame"
    assert corner.coverage() < LOW_COVERAGE and share in str(info(corner)["warning"])


def test_key_and_check_bits_are_the_named_descriptor_bits() -> None:
    # The shortlist's filter reads the bits it was measured on, MSB first; a shifted or
    # reordered extraction would quietly let other candidates through or drop true ones.
    desc = np.random.default_rng(5).integers(0, 256, (50, 32), dtype=np.uint8)
    unpacked = np.unpackbits(desc, axis=1)
    for got, positions in (
        (matching_mod._keys(desc), matching_mod._KEY_POSITIONS),
        (matching_mod._check_bits(desc), matching_mod._CHECK_POSITIONS),
    ):
        want = unpacked[:, positions] @ (1 << np.arange(len(positions))[::-1])
        assert np.array_equal(np.asarray(got, np.int64), want)
    assert not set(matching_mod._KEY_POSITIONS.tolist()) & set(
        matching_mod._CHECK_POSITIONS.tolist()
    )


@pytest.mark.parametrize("preselect", [3, 1000])
def test_compiled_shortlist_equals_the_numpy_reference(
    monkeypatch: pytest.MonkeyPatch, preselect: int
) -> None:
    # The kernel is the hot path and the numpy version the fallback: both must give the same
    # votes and agreeing votes, including when only the PRESELECT busiest photos go on (ties
    # included) and when crowded buckets are skipped.
    assert matching_mod._core is not None, "the compiled shortlist is not built"
    monkeypatch.setattr(matching_mod, "PRESELECT", preselect)
    monkeypatch.setattr(matching_mod, "MAX_BUCKET", 6)
    records = [Record(s + 1, "p", source_features(landscape(s))) for s in range(12)]
    seg = DerivativeMatcher(records)._snap.main
    compared = 0
    for img in [derivative(1, "flat"), derivative(4, "inpaint"), landscape(40), landscape(41)]:
        for view in matching_mod.query_features(img).views:
            want = {
                int(seg.ids[r]): (int(a), int(n)) for r, a, n in seg.agreeing_numpy(view).tolist()
            }
            assert seg.agreeing(view, frozenset()) == want
            compared += len(want)
    assert compared >= 4  # not a comparison of empty results


def test_compiled_shortlist_refuses_inconsistent_arrays() -> None:
    # The kernel reads raw buffers: sizes that do not fit together are an error, and a
    # posting that points outside the records is skipped, never read.
    core = matching_mod._core
    assert core is not None, "the compiled shortlist is not built"
    seg = DerivativeMatcher([Record(1, "a", source_features(landscape(2)))])._snap.main
    view = matching_mod.query_features(landscape(2)).views[0]
    qdesc = np.ascontiguousarray(view.descriptors)
    args = [
        seg.starts,
        seg.postings,
        seg.check,
        seg.desc,
        seg.xy,
        seg.stride,
        len(seg),
        qdesc,
        view.xy,
        matching_mod._keys(qdesc),
        matching_mod._check_bits(qdesc),
        matching_mod.KEY_BITS,
        256,
        5,
        1000,
        2,
        48,
        5,
        48,
        512,
        2.0,
    ]
    ok = np.frombuffer(core.agreeing(*args), np.int64).reshape(-1, 3)
    assert ok[0, 0] == 0 and ok[0, 2] >= 0.9 * len(seg.record(0).features)
    for at, bad in ((1, seg.postings[:-1]), (6, 3), (11, 30), (8, view.xy[:-1]), (16, 300)):
        with pytest.raises(ValueError):
            core.agreeing(*[bad if i == at else a for i, a in enumerate(args)])
    stray = seg.postings.copy()
    stray[: len(stray) // 2] = 10**6
    left = np.frombuffer(
        core.agreeing(*[stray if i == 1 else a for i, a in enumerate(args)]), np.int64
    ).reshape(-1, 3)
    assert left[0, 2] < ok[0, 2]


def test_compiled_nearest_two_equals_opencv(monkeypatch: pytest.MonkeyPatch) -> None:
    # Verification's nearest-neighbour search: the kernel must give OpenCV's distances (and
    # so the same fits); without the kernel, OpenCV's matcher is the fallback.
    assert matching_mod._core is not None, "the compiled shortlist is not built"
    src = source_features(landscape(1))
    views = [
        view
        for img in (derivative(1, "flat"), landscape(30))
        for view in matching_mod.query_features(img).views
    ]
    fits = []
    for view in views:
        best, d1, d2 = matching_mod._nearest_two(src, view)
        for pair in cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(
            src.descriptors, view.descriptors, k=2
        ):
            i = pair[0].queryIdx
            assert (d1[i], d2[i]) == (pair[0].distance, pair[1].distance)
            assert best[i] == pair[0].trainIdx or d1[i] == d2[i]
        fits.append(matching_mod._fit(src, view))
    assert any(f is not None and f.inliers >= matching_mod.SURE_INLIERS for f in fits)
    monkeypatch.setattr(matching_mod, "_core", None)
    for view, fit in zip(views, fits, strict=True):
        again = matching_mod._fit(src, view)
        assert (fit is None) == (again is None)
        assert fit is None or again is None or fit.inliers == again.inliers


def test_duplicate_inliers_count_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # One corner found at two pyramid levels is one piece of evidence: points closer than
    # RANSAC's tolerance count once, and a fit needs MIN_INLIERS distinct places.
    pts = np.float32([[0, 0], [3, 3], [10, 0], [13, 0], [20, 0], [20, 5.9]])
    assert matching_mod._distinct(pts) == 3
    assert matching_mod._distinct(pts[:1]) == 1
    src = source_features(landscape(3))
    view = matching_mod.query_features(landscape(3)).views[0]
    assert matching_mod._verify(src, view) is not None
    monkeypatch.setattr(matching_mod, "_distinct", lambda p: matching_mod.MIN_INLIERS - 1)
    assert matching_mod._verify(src, view) is None


def test_compiled_shortlist_with_huge_vote_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    # Vote counts over 65,535 (one photo whose keypoints all share a query's descriptor) take
    # the kernel's selection path instead of its histogram: the same result as numpy.
    monkeypatch.setattr(matching_mod, "PRESELECT", 1)
    desc = np.tile(np.arange(32, dtype=np.uint8), (STORED_KEYPOINTS, 1))
    xy = np.stack([np.arange(STORED_KEYPOINTS) * 5.0, np.full(STORED_KEYPOINTS, 100.0)], 1)
    same = Features(desc, xy.astype(np.float32), 512, 384)
    other = source_features(landscape(3))
    seg = DerivativeMatcher([Record(1, "a", same), Record(2, "b", other)])._snap.main
    query = Features(
        np.concatenate([np.tile(desc[:1], (1000, 1)), other.descriptors]),
        np.concatenate([np.full((1000, 2), 50, np.float32), other.xy]),
        512,
        384,
    )
    want = {int(seg.ids[r]): (int(a), int(n)) for r, a, n in seg.agreeing_numpy(query).tolist()}
    assert want[1][1] == STORED_KEYPOINTS  # 1000 x 96 = 96,000 raw votes: the selection path
    assert 2 not in want  # only the busiest photo goes on
    assert seg.agreeing(query, frozenset()) == want
    monkeypatch.setattr(matching_mod, "PRESELECT", 2)
    assert 2 in seg.agreeing(query, frozenset())  # the other photo does have votes
