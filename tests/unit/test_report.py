"""The transparency report's figures against hand counts, on an SQLite file and on PostgreSQL.

Rows go straight into the takedown tables (no other service is needed), chosen so that every
figure has a known answer: each period boundary is hit exactly (a row at ``since`` is in, a row
at ``until`` is out), the 48-hour share has a removal at exactly 48 h and one a second later, and
the median / p90 are worked out below by hand. The CSV must say what the JSON says, the HTML
must be well-formed (HTML and XML parsers, SVG included) and show the figures, and no output may
hold a contact, ticket or content id.
"""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any, ClassVar

import pytest

from dignity.settings import Settings
from dignity.storage.db import Database
from dignity.takedown.models import (
    Appeal,
    Removal,
    RequesterFlag,
    ReviewItem,
    ScanRecord,
    Statement,
    TakedownRequest,
)
from dignity.takedown.report import (
    MAX_MONTHS,
    Report,
    ReportError,
    build_report,
    csv_value,
    parse_when,
    percentile,
    resolve_period,
)


def at(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


SINCE = at(2026, 1, 1)
UNTIL = at(2026, 4, 1)
NOW = at(2026, 4, 10, 12)
H = timedelta(hours=1)
SECRET_CONTACT = "person.private@example.org"
SECRET_CONTENT = "content-secret"


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now


def _request(
    n: int,
    received: datetime,
    state: str,
    *,
    channel: str = "form",
    jurisdiction: str = "US",
    ai: str = "unknown",
    valid: datetime | None = None,
    hours: float | timedelta | None = None,
    unfounded: bool = False,
    due: datetime | None = None,
) -> TakedownRequest:
    closed = received + 2 * H
    if hours is not None:
        assert valid is not None
        closed = valid + (hours if isinstance(hours, timedelta) else timedelta(hours=hours))
    return TakedownRequest(
        ticket=f"TK-SECRET-{n:04d}",
        access_hash="a" * 64,
        channel=channel,
        priority=0 if channel == "flagger" else 1,
        requester_name="Private Person",
        requester_contact=SECRET_CONTACT,
        requester_fp=f"{n:064x}",
        description="a private account of what happened",
        ai_made=ai,
        jurisdiction=jurisdiction,
        state=state,
        received_at=received,
        valid_at=valid,
        due_at=due if due is not None else (valid + 48 * H if valid else None),
        closed_at=closed if state in ("removed", "rejected", "withdrawn") else None,
        unfounded=unfounded,
    )


def seed(db: Database) -> None:
    """The scenario the expectations below count by hand (period Jan-Mar 2026, now 10 Apr)."""
    with db.session() as s:
        r1 = _request(1, at(2026, 1, 5, 10), "removed", ai="ai", valid=at(2026, 1, 5, 10), hours=10)
        r2 = _request(
            2,
            at(2026, 1, 20, 8),
            "removed",
            channel="flagger",
            jurisdiction="EU",
            ai="real",
            valid=at(2026, 1, 20, 8),
            hours=48,
        )
        # Completed six hours after receipt: the clock runs from valid_at.
        r3 = _request(3, at(2026, 2, 3), "removed", valid=at(2026, 2, 3, 6), hours=20)
        r4 = _request(
            4,
            at(2026, 2, 14),
            "removed",
            channel="flagger",
            jurisdiction="UK",
            ai="AI",
            valid=at(2026, 2, 14),
            hours=60,
        )
        r5 = _request(
            5, at(2026, 3, 2), "removed", jurisdiction="", ai="real", valid=at(2026, 3, 2), hours=2
        )
        r6 = _request(6, at(2026, 3, 5), "rejected", valid=at(2026, 3, 5), unfounded=True)
        # Free text in the jurisdiction never reaches the report ("other").
        r7 = _request(7, at(2026, 3, 6), "rejected", jurisdiction="JaneDoe", valid=at(2026, 3, 6))
        r8 = _request(8, at(2026, 1, 25), "incomplete", jurisdiction="EU")
        r9 = _request(
            9, at(2026, 2, 20), "withdrawn", jurisdiction="us ", ai="real", valid=at(2026, 2, 20)
        )
        # The period's last second: in; still open, overdue at NOW.
        r10 = _request(
            10,
            UNTIL - timedelta(seconds=1),
            "valid",
            channel="flagger",
            ai="ai",
            valid=UNTIL - timedelta(seconds=1),
        )
        # Outside the period: a second before it, and exactly at its (exclusive) end.
        r11 = _request(
            11, SINCE - timedelta(seconds=1), "removed", valid=at(2025, 12, 31), hours=30
        )
        r12 = _request(12, UNTIL, "valid", valid=UNTIL)  # overdue at NOW
        r13 = _request(13, at(2026, 4, 10), "valid", valid=at(2026, 4, 10))  # open, not overdue
        r14 = _request(14, at(2026, 4, 9), "incomplete")
        s.add_all([r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14])
        s.flush()

        scans = []
        for i, (when, decision) in enumerate(
            [
                (SINCE, "allow"),
                (at(2026, 1, 9), "allow"),
                (at(2026, 2, 9), "allow"),
                (at(2026, 2, 10), "label"),
                (at(2026, 1, 3), "review"),
                (at(2026, 2, 1), "review"),
                (UNTIL - timedelta(microseconds=1), "block"),
                (SINCE - timedelta(microseconds=1), "block"),
                (UNTIL, "allow"),
            ]
        ):
            scans.append(
                ScanRecord(
                    created_at=when,
                    content_id=f"{SECRET_CONTENT}-{i}",
                    uploader="uploader-secret",
                    md5=f"{i:032x}",
                    sha256=f"{i:064x}",
                    decision=decision,
                )
            )
        s.add_all(scans)
        s.flush()

        def removal(when: datetime, reason: str, **kw: Any) -> Removal:
            return Removal(created_at=when, content_id=f"{SECRET_CONTENT}-r", reason=reason, **kw)

        rm1 = removal(at(2026, 1, 5, 20), "reported", request_id=r1.id, decided_by="rev-a")
        rm2 = removal(at(2026, 1, 5, 20), "copy_exact", automated=True)
        rm3 = removal(at(2026, 1, 5, 20), "copy_pdq", distance=10, automated=True)
        rm4 = removal(at(2026, 1, 22), "reported", request_id=r2.id, decided_by="rev-b")
        rm5 = removal(at(2026, 2, 10), "reviewed", decided_by="rev-a", restored_at=at(2026, 3, 6))
        rm6 = removal(SINCE - timedelta(microseconds=1), "reported")
        rm7 = removal(SINCE, "copy_exact", automated=True)
        rm8 = removal(UNTIL, "reported")
        s.add_all([rm1, rm2, rm3, rm4, rm5, rm6, rm7, rm8])
        s.flush()

        def statement(n: int, when: datetime, removal_id: int) -> Statement:
            return Statement(
                public_id=f"st-secret-{n}",
                removal_id=removal_id,
                content_id=f"{SECRET_CONTENT}-st",
                uploader="uploader-secret",
                body="{}",
                appeal_hash="b" * 64,
                appeal_until=when + timedelta(days=184),
                created_at=when,
            )

        st1 = statement(1, at(2026, 1, 5, 20), rm1.id)
        st2 = statement(2, at(2026, 1, 5, 20), rm2.id)
        st3 = statement(3, at(2026, 2, 10), rm5.id)
        st4 = statement(4, at(2025, 12, 31), rm6.id)
        s.add_all([st1, st2, st3, st4])
        s.flush()

        a1 = Appeal(
            statement_id=st1.id,
            state="upheld",
            received_at=at(2026, 1, 10),
            decided_at=at(2026, 1, 11),
            text="private appeal text",
        )
        a2 = Appeal(
            statement_id=st3.id,
            state="reversed",
            received_at=at(2026, 3, 1),
            decided_at=at(2026, 3, 6),
        )
        a3 = Appeal(statement_id=st2.id, state="open", received_at=UNTIL - timedelta(seconds=1))
        a4 = Appeal(statement_id=st4.id, state="reversed", received_at=at(2025, 12, 31, 12))
        s.add_all([a1, a2, a3, a4])
        s.flush()

        def item(kind: str, created: datetime, decided: datetime | None) -> ReviewItem:
            return ReviewItem(
                kind=kind,
                created_at=created,
                decided_at=decided,
                state="decided" if decided else "open",
                outcome="remove" if decided else None,
                note="private reviewer note",
            )

        s.add_all(
            [
                item("scan", at(2026, 1, 2), at(2026, 1, 3)),
                item("scan", at(2026, 2, 1), at(2026, 2, 10)),
                item("takedown", at(2026, 1, 5), at(2026, 1, 5, 20)),
                item("takedown", at(2026, 1, 20), at(2026, 1, 22)),
                item("takedown", at(2026, 3, 1), at(2026, 3, 2)),
                item("appeal", at(2026, 3, 5), at(2026, 3, 6)),
                item("scan", at(2025, 12, 30), at(2025, 12, 31)),
                item("takedown", at(2026, 3, 31), None),
                item("scan", at(2025, 12, 31), SINCE),
                item("appeal", at(2026, 3, 31), UNTIL),
            ]
        )
        s.add_all(
            [
                RequesterFlag(
                    requester_fp="f1" * 32,
                    unfounded=3,
                    flagged_at=at(2026, 2, 1),
                    suspended_until=at(2026, 5, 1),
                ),
                RequesterFlag(
                    requester_fp="f2" * 32,
                    unfounded=3,
                    flagged_at=at(2025, 11, 1),
                    suspended_until=at(2026, 3, 1),
                ),
                RequesterFlag(requester_fp="f3" * 32, unfounded=4, flagged_at=UNTIL),
            ]
        )


EXPECTED: dict[str, Any] = {
    "requests": {
        "received": 10,
        "valid": 9,  # all but r8
        "incomplete": 1,
        "pending": 1,
        "removed": 5,
        "rejected": 2,
        "rejected_unfounded": 1,
        "withdrawn": 1,
    },
    "by_channel": {
        "form": {"received": 7, "valid": 6, "removed": 3},
        "flagger": {"received": 3, "valid": 3, "removed": 2},
    },
    "by_jurisdiction": {
        "US": {"received": 5, "valid": 5, "removed": 2},  # r1 r3 r6 r9 ("us ") r10
        "EU": {"received": 2, "valid": 1, "removed": 1},
        "UK": {"received": 1, "valid": 1, "removed": 1},
        "other": {"received": 1, "valid": 1, "removed": 0},
        "unspecified": {"received": 1, "valid": 1, "removed": 1},
    },
    "by_origin": {
        "real": {"received": 3, "valid": 3, "removed": 2},  # r2 r5 r9
        "ai_made": {"received": 3, "valid": 3, "removed": 2},  # r1 r4 r10
        "unknown": {"received": 4, "valid": 3, "removed": 1},  # r3 r6 r7 r8
    },
    # Durations 10, 48, 20, 60, 2 h -> sorted 2 10 20 48 60: median 20; p90 at rank
    # 0.9 * 4 = 3.6 -> 48 + 0.6 * (60 - 48) = 55.2; within 48 h (inclusive): 4 of 5.
    "time_to_removal": {
        "removed": 5,
        "median_h": 20.0,
        "p90_h": 55.2,
        "within_deadline": 4,
        "share_within_deadline": 0.8,
        "histogram": {"0-12h": 2, "12-24h": 1, "24-36h": 0, "36-48h": 1, "over-48h": 1},
    },
    # r10, r12 overdue; r13 open, due 12 Apr; f1 suspended until May (f2's ended in March).
    "now": {"open": 3, "overdue": 2, "suspended_requesters": 1},
    "content": {
        "removed": 6,
        "reported": 2,
        "copy_exact": 2,  # rm2 and rm7 (at since: in)
        "copy_pdq": 1,
        "copy_video": 0,
        "copy_frame": 0,
        "copy_still": 0,
        "reviewed": 1,
        "copies_found": 3,
        "restored": 1,
    },
    "automation": {
        "scans": {"total": 7, "allow": 3, "label": 1, "review": 2, "block": 1},
        "removals": {"automated": 3, "by_reviewer": 3},
        "review_items": {
            "queued": 8,  # created in period: all but the two December ones
            "decided": 7,  # decided in period; the appeal decided at until is out
            "decided_scan": 3,
            "decided_takedown": 3,
            "decided_appeal": 1,
        },
    },
    "statements": {"issued": 3},
    "appeals": {"received": 3, "open": 1, "upheld": 1, "reversed": 1, "reversal_rate": 0.5},
    "requesters": {"flagged": 1},
    "monthly": [
        {"month": "2026-01", "received": 3, "removed": 2},  # r1 r2 r8
        {"month": "2026-02", "received": 3, "removed": 2},  # r3 r4 r9
        {"month": "2026-03", "received": 4, "removed": 1},  # r5 r6 r7 r10
    ],
}


def _report(db: Database, **kw: Any) -> Report:
    kw.setdefault("since", SINCE)
    kw.setdefault("until", UNTIL)
    return build_report(db, clock=FixedClock(NOW), **kw)


def test_every_figure_matches_the_hand_count(db: Database) -> None:
    seed(db)
    data = _report(db).to_dict()
    for section, expected in EXPECTED.items():
        assert data[section] == expected, section
    # Breakdowns add up to the total, and their order is stable (fixed keys first).
    assert list(data["by_channel"]) == ["form", "flagger"]
    assert list(data["by_origin"]) == ["real", "ai_made", "unknown"]
    assert list(data["by_jurisdiction"]) == ["US", "EU", "UK", "other", "unspecified"]
    for section in ("by_channel", "by_jurisdiction", "by_origin"):
        assert sum(v["received"] for v in data[section].values()) == 10
    assert data["report"] == {
        "platform": "this platform",
        "since": "2026-01-01T00:00:00+00:00",
        "until": "2026-04-01T00:00:00+00:00",
        "generated_at": "2026-04-10T12:00:00+00:00",
        "deadline_h": 48.0,
    }
    notes = " ".join(data["notes"])
    assert "rest on 5 removed requests:" in notes
    assert "rests on 2 decided appeals;" in notes
    assert "1 request received in this period was still awaiting" in notes


def test_the_deadline_boundary_and_an_even_count(db: Database) -> None:
    with db.session() as s:
        start = at(2026, 5, 1)
        s.add_all(
            [
                _request(1, start, "removed", valid=start, hours=48),  # exactly: within
                _request(2, start, "removed", valid=start, hours=48 * H + timedelta(seconds=1)),
                _request(3, start, "removed", valid=start, hours=1),
                _request(4, start, "removed", valid=start, hours=12),  # a quarter's end: 0-12
            ]
        )
    t = build_report(
        db, since=start, until=at(2026, 6, 1), clock=FixedClock(NOW)
    ).time_to_removal.to_dict()
    # Sorted 1, 12, 48, 48.0003: median (12 + 48) / 2 = 30; p90 at rank 2.7, between the two
    # 48s: 48 + 0.7 / 3600 h, rounded to 48.0.
    assert t == {
        "removed": 4,
        "median_h": 30.0,
        "p90_h": 48.0,
        "within_deadline": 3,
        "share_within_deadline": 0.75,
        "histogram": {"0-12h": 2, "12-24h": 0, "24-36h": 0, "36-48h": 1, "over-48h": 1},
    }
    # Another deadline moves the boundary and the histogram's quarters with it.
    settings = Settings(takedown_deadline_h=12, platform_name="Example <Pics>")
    report = build_report(
        db, since=start, until=at(2026, 6, 1), clock=FixedClock(NOW), settings=settings
    )
    assert report.time_to_removal.within_deadline == 2
    assert dict(report.time_to_removal.histogram) == {
        "0-3h": 1,
        "3-6h": 0,
        "6-9h": 0,
        "9-12h": 1,
        "over-12h": 2,
    }
    assert report.platform == "Example <Pics>"
    assert "Example &lt;Pics&gt;" in report.to_html()
    assert "Example <Pics>" not in report.to_html()


def test_an_empty_period(db: Database) -> None:
    seed(db)
    report = build_report(db, since=at(2030, 1, 1), until=at(2030, 2, 1), clock=FixedClock(NOW))
    data = report.to_dict()
    assert data["requests"] == dict.fromkeys(EXPECTED["requests"], 0)
    assert data["by_channel"] == {
        k: {"received": 0, "valid": 0, "removed": 0} for k in ("form", "flagger")
    }
    assert data["by_jurisdiction"] == {}
    assert data["time_to_removal"]["median_h"] is None
    assert data["time_to_removal"]["p90_h"] is None
    assert data["time_to_removal"]["share_within_deadline"] is None
    assert data["appeals"]["reversal_rate"] is None
    assert data["content"]["removed"] == 0
    assert data["automation"]["scans"]["total"] == 0
    assert data["monthly"] == [{"month": "2030-01", "received": 0, "removed": 0}]
    # "Now" does not depend on the period.
    assert data["now"] == EXPECTED["now"]
    assert data["notes"] == ["No takedown requests were received in this period."]
    # Every renderer copes with nothing to show.
    assert _rows(report.to_csv())[("time_to_removal", "median_h")] == ""
    _check_well_formed(report.to_html())


def test_default_period_is_twelve_calendar_months_up_to_now(db: Database) -> None:
    seed(db)
    report = build_report(db, clock=FixedClock(NOW))
    assert report.since == at(2025, 5, 1)
    assert report.until == NOW
    months = [m.month for m in report.monthly]
    assert (months[0], months[-1]) == ("2025-05", "2026-04")
    assert len(report.monthly) == 12
    # From 1 May 2025 to NOW: every request, r11 (31 Dec) to r13 (10 Apr 00:00) included.
    assert report.requests["received"] == 14
    # An until at a month's start ends the series with the month before.
    start, end = resolve_period(None, at(2026, 1, 1), NOW)
    assert (start, end) == (at(2025, 1, 1), at(2026, 1, 1))


def test_partial_months_at_both_ends(db: Database) -> None:
    seed(db)
    report = _report(db, since=at(2026, 1, 20, 8), until=at(2026, 2, 14))
    # r2 at exactly since is in; r4 at exactly until is out.
    assert [(m.month, m.received, m.removed) for m in report.monthly] == [
        ("2026-01", 2, 1),  # r2, r8
        ("2026-02", 1, 1),  # r3 (r9 is 20 Feb, r4 is at until)
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-31", at(2026, 1, 31)),
        (" 2026-01-31 ", at(2026, 1, 31)),
        ("2026-01-31T10:00:00", at(2026, 1, 31, 10)),
        ("2026-01-31T10:00:00Z", at(2026, 1, 31, 10)),
        ("2026-01-31T12:00:00+02:00", at(2026, 1, 31, 10)),
    ],
)
def test_parse_when(text: str, expected: datetime) -> None:
    assert parse_when(text) == expected
    assert parse_when(text).tzinfo is UTC


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2026-13-01", "2026-02-30", "31/01/2026", "0001-01-01", "9999-12-31"]
)
def test_parse_when_refuses(text: str) -> None:
    with pytest.raises(ReportError) as caught:
        parse_when(text, name="since")
    assert caught.value.code == "report.bad_date"
    assert "since" in caught.value.message


def test_bad_periods() -> None:
    with pytest.raises(ReportError) as caught:
        resolve_period(at(2026, 2, 1), at(2026, 2, 1), NOW)
    assert caught.value.code == "report.bad_period"
    with pytest.raises(ReportError):
        resolve_period(at(2026, 3, 1), at(2026, 2, 1), NOW)
    with pytest.raises(ReportError) as caught:
        resolve_period(at(2000, 1, 1), at(2026, 2, 1), NOW)
    assert str(MAX_MONTHS) in caught.value.message
    # Exactly MAX_MONTHS months is allowed.
    assert resolve_period(at(2016, 1, 1), at(2026, 1, 1), NOW) == (at(2016, 1, 1), at(2026, 1, 1))


def test_percentile_definition() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.5) == 7.0
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.9) == pytest.approx(3.7)
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0


def _rows(text: str) -> dict[tuple[str, str], str]:
    reader = csv.reader(io.StringIO(text))
    assert next(reader) == ["section", "metric", "value"]
    out: dict[tuple[str, str], str] = {}
    for row in reader:
        assert len(row) == 3, row
        assert (row[0], row[1]) not in out, row
        out[(row[0], row[1])] = row[2]
    return out


def _expected_rows(data: dict[str, Any]) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}

    def walk(section: str, prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(section, f"{prefix}{k}.", v)
        else:
            out[(section, prefix[:-1])] = csv_value(value)

    for section, content in data.items():
        if section == "monthly":
            for m in content:
                out[("monthly", f"{m['month']}.received")] = str(m["received"])
                out[("monthly", f"{m['month']}.removed")] = str(m["removed"])
        elif section == "notes":
            for i, note in enumerate(content, 1):
                out[("notes", str(i))] = note
        else:
            walk(section, "", content)
    return out


def test_csv_says_what_the_json_says(db: Database) -> None:
    seed(db)
    report = _report(db)
    rows = _rows(report.to_csv())
    assert rows == _expected_rows(report.to_dict())
    # Spot checks against the hand count, so a shared mistake in both cannot pass.
    assert rows[("requests", "received")] == "10"
    assert rows[("time_to_removal", "p90_h")] == "55.2"
    assert rows[("time_to_removal", "share_within_deadline")] == "0.8"
    assert rows[("by_jurisdiction", "US.received")] == "5"
    assert rows[("automation", "scans.block")] == "1"
    assert rows[("monthly", "2026-03.received")] == "4"
    assert rows[("appeals", "reversal_rate")] == "0.5"


class _Balanced(HTMLParser):
    """Checks that every element is closed in order (void elements excepted)."""

    VOID: ClassVar[set[str]] = {"meta", "link", "input", "br", "img"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.text: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


SVG = "{http://www.w3.org/2000/svg}"


def _check_well_formed(html: str) -> tuple[_Balanced, ET.Element]:
    parser = _Balanced()
    parser.feed(html)
    parser.close()
    assert parser.stack == []
    # The page is well-formed XML as well, SVG included: a strict parser reads all of it.
    root = ET.fromstring(html.split("\n", 1)[1])
    assert root.tag == "html"
    # The CSP forbids inline style and script: none may be there.
    for tag, attrs in parser.tags:
        assert tag not in ("script", "style"), tag
        assert "style" not in attrs, (tag, attrs)
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
    hrefs = [a.get("href") for t, a in parser.tags if t == "link" and a["rel"] == "stylesheet"]
    assert hrefs == ["/assets/app.css", "/assets/report.css"]
    # Every chart is labelled by its own title and description and sits by a table.
    charts = root.iter(f"{SVG}svg")
    count = 0
    for svg in charts:
        count += 1
        ids = (svg.get("aria-labelledby") or "").split()
        assert svg.get("role") == "img"
        title, desc = svg.find(f"{SVG}title"), svg.find(f"{SVG}desc")
        assert title is not None and desc is not None
        assert ids == [title.get("id"), desc.get("id")]
        assert (title.text or "").strip() and (desc.text or "").strip()
    assert count == 5
    for figure in root.iter("figure"):
        assert figure.find(f"{SVG}svg") is not None and figure.find("table") is not None
    return parser, root


def _svg_bars(root: ET.Element, ident: str) -> dict[str, float]:
    """Label -> bar width of one horizontal bar chart."""
    svg = next(s for s in root.iter(f"{SVG}svg") if s.get("id") == f"chart-{ident}")
    labels = [t.text or "" for t in svg.findall(f"{SVG}text") if t.get("class") == "chart-label"]
    widths = [float(r.get("width") or 0) for r in svg.findall(f"{SVG}rect")]
    return dict(zip(labels, widths, strict=True))


def test_html_is_well_formed_and_shows_the_figures(db: Database) -> None:
    seed(db)
    report = _report(db)
    html = report.to_html(page_url="/transparency", csv_url="/transparency.csv?since=x&until=y")
    parser, root = _check_well_formed(html)
    text = " ".join(" ".join(parser.text).split())
    for phrase in (
        "Requests received 10",
        "Requests removed 5",
        "Median time to removal 20.0 h",
        "90th percentile 55.2 h",
        "Removed within 48 h 80.0 %",
        "Copies found by sweeps 3",
        "Open now / overdue 3 / 2",
        "Rejected as unfounded 1",
        "Trusted flagger 3 3 2",
        "AI-made 3 3 2",
        "US 5 5 2",
        "Exact copies (sweep) 2",
        "PDQ copies (sweep) 1",
        "Restored after appeal 1",
        "Review items decided 7",
        "Removals decided by a reviewer 3",
        "Statements of reasons issued 3",
        "Reversal rate 50.0 %",
        "Flagged for repeated unfounded requests 1",
        "2026-03 4 1",
    ):
        assert phrase in text, phrase
    # The CSV link is escaped; the period form sends dates the routes accept.
    assert 'href="/transparency.csv?since=x&amp;until=y"' in html
    inputs = {a["name"]: a["value"] for t, a in parser.tags if t == "input"}
    assert inputs == {"since": "2026-01-01", "until": "2026-04-01"}
    # Bars are proportional to their figures: received (10) is the longest, valid 9/10 of it.
    bars = _svg_bars(root, "requests")
    assert bars["Received"] > 0 and bars["Valid"] == pytest.approx(bars["Received"] * 0.9, 0.01)
    assert bars["Removed"] == pytest.approx(bars["Received"] / 2, 0.01)
    scans = _svg_bars(root, "scans")
    assert scans["Allow"] == pytest.approx(3 * scans["Block"], 0.01)
    monthly = next(s for s in root.iter(f"{SVG}svg") if s.get("id") == "chart-monthly")
    heights = [
        float(r.get("height") or 0)
        for r in monthly.findall(f"{SVG}rect")
        if r.get("class") in ("bar-received", "bar-removed")
    ]
    # Jan: 3 received / 2 removed, Feb 3 / 2, Mar 4 / 1 (4 is the tallest).
    assert heights[4] == max(heights) and heights[0] == pytest.approx(heights[4] * 0.75, 0.01)
    # Without the page's links (the CLI's file) there is no form and no CSV link.
    standalone = report.to_html()
    assert "<form" not in standalone and ".csv" not in standalone


def test_no_personal_data_in_any_output(db: Database) -> None:
    seed(db)
    report = _report(db)
    for output in (report.to_html(), report.to_csv(), repr(report.to_dict())):
        for secret in (
            SECRET_CONTACT,
            "TK-SECRET",
            SECRET_CONTENT,
            "uploader-secret",
            "st-secret",
            "Private Person",
            "private",
            "JaneDoe",
            "rev-a",
            "f1f1",
        ):
            assert secret not in output, secret
