"""Frame-pair comparison: HMA's percentages both ways and segments of shared footage."""

from __future__ import annotations

import pytest

from dignity.video.compare import FramePair, Segment, compare


def _times(n: int, start: float = 0.0) -> list[float]:
    return [start + i for i in range(n)]


def test_nothing_matched() -> None:
    out = compare(_times(5), _times(5), [])
    assert (out.query_match_percent, out.compared_match_percent, out.segments) == (0.0, 0.0, ())
    assert not out.matched


def test_whole_video_copy_matches_both_ways() -> None:
    pairs = [FramePair(i, i, 2) for i in range(10)]
    out = compare(_times(10), _times(10), pairs)
    assert out.query_match_percent == 100.0 and out.compared_match_percent == 100.0
    assert out.segments == (Segment(0.0, 9.0, 0.0, 9.0),)
    assert out.distance == 2


def test_short_clip_inside_a_long_compilation_is_a_segment_under_hma_percent() -> None:
    # 5 s of a 60 s banked video appear at 300-304 s of a 600 s compilation.
    pairs = [FramePair(300 + i, 20 + i, 10) for i in range(5)]
    out = compare(_times(600), _times(60), pairs)
    assert out.query_match_percent < 1.0  # HMA's 80% rule cannot see it
    assert out.segments == (Segment(300.0, 304.0, 20.0, 24.0),)


def test_one_missing_frame_inside_a_run_is_tolerated_two_are_not() -> None:
    one_gap = [FramePair(i, i, 5) for i in (0, 1, 3, 4)]
    assert compare(_times(5), _times(5), one_gap).segments == (Segment(0.0, 4.0, 0.0, 4.0),)
    two_gaps = [FramePair(i, i, 5) for i in (0, 1, 4, 5)]
    # Two runs of two frames: each covers 2 s, under the 3 s minimum.
    assert compare(_times(6), _times(6), two_gaps).segments == ()


def test_scattered_coincidences_are_not_a_segment() -> None:
    # Three near frames at unrelated offsets: no consistent stretch of footage.
    pairs = [FramePair(0, 40, 30), FramePair(1, 7, 30), FramePair(2, 90, 30)]
    out = compare(_times(3), _times(100), pairs)
    assert out.segments == ()
    assert out.query_match_percent == 100.0


def test_sampling_jitter_of_one_step_keeps_one_segment() -> None:
    # A frame-rate change moves the picked frames by up to one step against the original.
    query = [0.0, 1.0, 2.0, 3.0, 4.0]
    compared = [0.0, 1.0, 2.04, 2.96, 4.0, 5.0]
    pairs = [FramePair(0, 0, 3), FramePair(1, 1, 3), FramePair(2, 2, 3), FramePair(3, 3, 3)]
    pairs.append(FramePair(4, 5, 9))  # offset +1: the neighbouring key
    out = compare(query, compared, pairs)
    assert len(out.segments) == 1
    assert out.segments[0].query_start == 0.0 and out.segments[0].query_end == 4.0


def test_counts_override_denominators() -> None:
    pairs = [FramePair(0, 0, 0)]
    out = compare(_times(4), _times(2), pairs, query_count=2, compared_count=1)
    assert (out.query_match_percent, out.compared_match_percent) == (50.0, 100.0)


def test_segment_dict_and_bad_step() -> None:
    assert Segment(1.0, 4.0, 2.0, 5.0).to_dict() == {
        "query_start": 1.0,
        "query_end": 4.0,
        "entry_start": 2.0,
        "entry_end": 5.0,
    }
    with pytest.raises(ValueError):
        compare([0.0], [0.0], [], step=0)
