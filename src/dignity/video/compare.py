"""Comparing two videos' sampled frames: match percentages both ways, and matching segments.

The index answers which frames are near which (``FramePair``); this module turns those pairs into
what a reviewer and a policy need. The percentages are HMA's vPDQ rule (python-threatexchange's
vPDQ extension): the share of the query's frames that match some frame of the compared video, and
the share of the compared video's frames matched by some query frame; the caller decides which
frames count (HMA drops frames under quality 50 and repeats of one hash before counting). That
rule cannot see a short clip inside a long compilation (5 s of a 10-minute video is under 1%),
so segments are found too: runs of query frames whose matches keep one time offset into the
compared video, i.e. the same stretch of footage playing in both. A run spans from its first to
its last matched frame; it counts when it covers ``min_segment_seconds`` at ``step`` seconds per
frame (3 s at one frame a second: three consecutive matching frames), tolerating one missing
frame inside it (a re-encode can push a frame just over the distance threshold).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Segment:
    """A stretch of footage in both videos: seconds from each one's first frame."""

    query_start: float
    query_end: float
    entry_start: float
    entry_end: float

    @property
    def seconds(self) -> float:
        return self.query_end - self.query_start

    def to_dict(self) -> dict[str, float]:
        return {
            "query_start": round(self.query_start, 3),
            "query_end": round(self.query_end, 3),
            "entry_start": round(self.entry_start, 3),
            "entry_end": round(self.entry_end, 3),
        }


@dataclass(frozen=True)
class FramePair:
    """Query frame ``query`` is within the threshold of compared frame ``compared`` (indices
    into the two timestamp sequences)."""

    query: int
    compared: int
    distance: int


@dataclass(frozen=True)
class Comparison:
    query_match_percent: float
    compared_match_percent: float
    segments: tuple[Segment, ...]
    distance: int  # the smallest distance of any pair; -1 when nothing matched

    @property
    def matched(self) -> bool:
        return self.distance >= 0


def compare(
    query_times: Sequence[float],
    compared_times: Sequence[float],
    pairs: Iterable[FramePair],
    *,
    query_count: int | None = None,
    compared_count: int | None = None,
    min_segment_seconds: float = 3.0,
    step: float = 1.0,
) -> Comparison:
    """Percentages and segments from the near pairs of two frame sequences.

    ``query_count`` / ``compared_count`` are the denominators of the percentages (default: the
    number of timestamps), so a caller that leaves low-quality or repeated frames out of the
    pairs can leave them out of the count too. ``step`` is the sampling interval in seconds.
    """
    if step <= 0:
        raise ValueError("step must be positive")
    pair_list = list(pairs)
    q_total = len(query_times) if query_count is None else query_count
    c_total = len(compared_times) if compared_count is None else compared_count
    if not pair_list:
        return Comparison(0.0, 0.0, (), -1)
    q_hit = {p.query for p in pair_list}
    c_hit = {p.compared for p in pair_list}
    return Comparison(
        query_match_percent=_percent(len(q_hit), q_total),
        compared_match_percent=_percent(len(c_hit), c_total),
        segments=_segments(query_times, compared_times, pair_list, min_segment_seconds, step),
        distance=min(p.distance for p in pair_list),
    )


def _percent(part: int, whole: int) -> float:
    return 0.0 if whole <= 0 else round(100.0 * min(part, whole) / whole, 2)


def _segments(
    query_times: Sequence[float],
    compared_times: Sequence[float],
    pairs: Sequence[FramePair],
    min_seconds: float,
    step: float,
) -> tuple[Segment, ...]:
    # Pairs grouped by their time offset, in units of the sampling step: the same footage in
    # both videos keeps one offset. Sampling two encodes of one video at one frame a second can
    # pick frames up to one step apart, so neighbouring offsets are read together.
    by_offset: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for p in pairs:
        tq, tc = query_times[p.query], compared_times[p.compared]
        by_offset[round((tc - tq) / step)].append((tq, tc))
    found: list[tuple[Segment, int]] = []
    for key in by_offset:
        near = by_offset.get(key - 1, []) + by_offset[key] + by_offset.get(key + 1, [])
        for run in _runs(near, step):
            seg = Segment(
                query_start=run[0][0],
                query_end=run[-1][0],
                entry_start=min(tc for _, tc in run),
                entry_end=max(tc for _, tc in run),
            )
            if seg.seconds + step >= min_seconds - 1e-6:
                found.append((seg, key))
    return _distinct(found, step)


def _runs(points: list[tuple[float, float]], step: float) -> list[list[tuple[float, float]]]:
    """Runs of query times with no gap over two steps (one frame may be missing)."""
    best: dict[float, tuple[float, float]] = {}
    for tq, tc in points:
        # One compared frame per query frame: the one at the most common offset wins later;
        # here keep the first seen (pairs of one key come before the neighbours').
        best.setdefault(tq, (tq, tc))
    ordered = sorted(best.values())
    runs: list[list[tuple[float, float]]] = []
    for point in ordered:
        if runs and point[0] - runs[-1][-1][0] <= 2 * step + 1e-6:
            runs[-1].append(point)
        else:
            runs.append([point])
    return runs


def _distinct(found: list[tuple[Segment, int]], step: float) -> tuple[Segment, ...]:
    """Drop segments that another one (longer, or equal and earlier) at about the same offset
    covers in the query: each stretch of footage is reported once, not once per offset key."""
    found.sort(key=lambda f: (-f[0].seconds, f[0].query_start, f[1]))
    kept: list[Segment] = []
    for seg, _ in found:
        if any(
            k.query_start <= seg.query_start + 1e-6
            and seg.query_end <= k.query_end + 1e-6
            and abs((k.entry_start - k.query_start) - (seg.entry_start - seg.query_start))
            <= 2 * step + 1e-6
            for k in kept
        ):
            continue
        kept.append(seg)
    return tuple(sorted(kept, key=lambda s: (s.query_start, s.entry_start)))
