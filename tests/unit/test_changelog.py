"""The gap rule on its own: what a stateful reader asks for again, what a cursor-only reader
may take, and how a run of gaps is asked for."""

from __future__ import annotations

from dignity.storage.changelog import GapRule, _ranges


def test_advance_notes_gaps_fills_them_and_forgets_old_ones() -> None:
    rule = GapRule(patience_s=60)
    gaps: dict[int, float] = {}
    assert rule.advance(10, gaps, [12, 14], now=0.0) == 14
    assert rule.open_gaps(gaps, now=1.0) == [11, 13]
    assert rule.advance(14, gaps, [13], now=2.0) == 14  # a late gap never moves the cursor back
    assert rule.open_gaps(gaps, now=59.9) == [11]
    assert rule.open_gaps(gaps, now=60.0) == []  # a rolled-back write: no longer asked for
    assert rule.advance(14, gaps, [], now=60.0) == 14 and gaps == {}


def test_a_cursor_only_reader_stops_before_a_young_gap() -> None:
    rule = GapRule(patience_s=2)
    assert rule.settled([(5, 0.1), (6, 0.1)], cursor=4) == 2
    assert rule.settled([(5, 9.0), (7, 0.5), (8, 9.0)], cursor=4) == 1  # 6 may still commit
    assert rule.settled([(5, 9.0), (7, 2.0), (8, 0.0)], cursor=4) == 3  # 6 was rolled back
    assert rule.settled([(6, 0.5)], cursor=4) == 0
    assert rule.settled([], cursor=4) == 0


def test_gaps_are_asked_for_as_runs() -> None:
    assert _ranges([]) == []
    assert _ranges([3, 4, 5, 9, 11, 12]) == [(3, 5), (9, 9), (11, 12)]
    assert _ranges(list(range(1, 70_001))) == [(1, 70_000)]
