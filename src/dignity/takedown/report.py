"""The transparency report (DSA Art. 15/24; TAKE IT DOWN Act practice): what happened to the
takedown requests received in a period, how fast valid requests led to removal, what the copy
sweeps found, how much was decided automatically, statements of reasons, appeals and abuse flags.

:func:`build_report` computes every figure with SQL aggregates over the takedown tables for the
period ``[since, until)`` in UTC (default: the month that holds ``until`` and the eleven before
it, up to now) and returns a frozen :class:`Report` that renders itself as JSON
(:meth:`Report.to_dict`), CSV (:meth:`Report.to_csv`, one ``section,metric,value`` row per
figure) and a self-contained HTML page with inline SVG charts and no script
(:meth:`Report.to_html`). The report holds counts only: no contact details, tickets, content
ids, notes or anything else about a person; the only text taken from rows (jurisdictions,
decision names) is reduced to a closed shape first, so nothing a requester typed can reach the
public page. Requests are counted by when they were received and shown with what has become of
them since; removals, scans, statements and review decisions by when they happened; appeals by
when they were received; "open" and "overdue" are as of the moment the report is made.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.orm import Session

from dignity.errors import Refused
from dignity.settings import Settings
from dignity.storage.db import Database
from dignity.storage.types import utc
from dignity.takedown.clock import Clock, SystemClock
from dignity.takedown.models import (
    Appeal,
    Removal,
    RequesterFlag,
    ReviewItem,
    ScanRecord,
    Statement,
    TakedownRequest,
)
from dignity.web.render import render

# A public page builds a report per request: bound the monthly series (and the query that
# computes it) so no query string can ask for thousands of buckets.
MAX_MONTHS = 120
DEFAULT_DEADLINE_H = 48.0
# Below this many removed requests the median and p90 are noted as unreliable.
SMALL_COUNT = 10

CHANNELS = ("form", "flagger")
ORIGINS = ("real", "ai_made", "unknown")
DECISIONS = ("allow", "label", "review", "block")
REVIEW_KINDS = ("scan", "takedown", "appeal")
_AI_VALUES = {"ai", "ai_made", "yes", "true", "synthetic", "fake"}
_REAL_VALUES = {"real", "no", "false", "authentic"}
# ISO 3166-1 alpha-2 (or EU/UK style two letters) with an optional ISO 3166-2 subdivision.
_JURISDICTION = re.compile(r"[A-Z]{2}(-[A-Z0-9]{1,3})?")
_DECISION = re.compile(r"[a-z][a-z_]{0,15}")


class ReportError(Refused):
    """A report period that cannot be used (a date that does not parse, an empty or too long
    period), or a report file that cannot be written."""

    codes = ("report.bad_period", "report.bad_date", "report.output")


# -- period -------------------------------------------------------------------------------------


def parse_when(text: str, *, name: str = "date") -> datetime:
    """``YYYY-MM-DD`` (midnight UTC) or an ISO 8601 time (naive means UTC) -> an aware UTC
    datetime; anything else is :class:`ReportError` ``report.bad_date``."""
    value = text.strip()
    shown = value[:40]
    problem = f"{name} must be a date (YYYY-MM-DD) or an ISO 8601 time, not {shown!r}"
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            when = datetime(d.year, d.month, d.day, tzinfo=UTC)
        else:
            when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ReportError(problem, code="report.bad_date", parameter=name) from exc
    when = utc(when)
    # Far from the datetime range's ends, so month arithmetic can never overflow.
    if not 1970 <= when.year <= 9000:
        raise ReportError(
            f"{name} must be between 1970 and 9000, not {shown!r}",
            code="report.bad_date",
            parameter=name,
        )
    return when


def _month_start(when: datetime) -> datetime:
    return datetime(when.year, when.month, 1, tzinfo=UTC)


def _add_months(month: datetime, n: int) -> datetime:
    index = month.year * 12 + month.month - 1 + n
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def resolve_period(
    since: datetime | None, until: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """The report's ``[since, until)``: ``until`` defaults to now; ``since`` to the start of the
    month eleven months before the month of ``until``'s last instant, so the default series is
    twelve calendar months ending with the current (partial) one."""
    end = utc(until) if until is not None else utc(now)
    if since is not None:
        start = utc(since)
    else:
        start = _add_months(_month_start(end - timedelta(microseconds=1)), -11)
    if start >= end:
        raise ReportError(
            f"the period is empty: since ({start.isoformat()}) must be before until "
            f"({end.isoformat()})",
            code="report.bad_period",
        )
    if len(_months(start, end)) > MAX_MONTHS:
        raise ReportError(
            f"a report covers at most {MAX_MONTHS} calendar months", code="report.bad_period"
        )
    return start, end


def _months(since: datetime, until: datetime) -> list[tuple[str, datetime, datetime]]:
    """The calendar months that meet ``[since, until)``, each clipped to the period."""
    out: list[tuple[str, datetime, datetime]] = []
    month = _month_start(since)
    while month < until and len(out) <= MAX_MONTHS:
        following = _add_months(month, 1)
        out.append((f"{month:%Y-%m}", max(month, since), min(following, until)))
        month = following
    return out


# -- figures ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Breakdown:
    """Requests of one channel, jurisdiction or origin: received, found valid, removed."""

    received: int = 0
    valid: int = 0
    removed: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"received": self.received, "valid": self.valid, "removed": self.removed}


@dataclass(frozen=True)
class TimeToRemoval:
    """Hours from a request becoming valid to its removal, over the removed requests."""

    removed: int
    median_h: float | None
    p90_h: float | None
    within_deadline: int
    share_within_deadline: float | None
    # (label, count) over quarters of the deadline, then "over": what the chart draws.
    histogram: tuple[tuple[str, int], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "removed": self.removed,
            "median_h": self.median_h,
            "p90_h": self.p90_h,
            "within_deadline": self.within_deadline,
            "share_within_deadline": self.share_within_deadline,
            "histogram": dict(self.histogram),
        }


@dataclass(frozen=True)
class MonthFigures:
    """Requests received in one calendar month and how many of those were removed."""

    month: str
    received: int
    removed: int


@dataclass(frozen=True)
class Report:
    """The figures for ``[since, until)``, made at ``generated_at``: counts only, by section
    (the keys :meth:`to_dict` shows), plus caveats about small numbers in ``notes``."""

    platform: str
    since: datetime
    until: datetime
    generated_at: datetime
    deadline_h: float
    requests: Mapping[str, int]
    by_channel: Mapping[str, Breakdown]
    by_jurisdiction: Mapping[str, Breakdown]
    by_origin: Mapping[str, Breakdown]
    time_to_removal: TimeToRemoval
    now: Mapping[str, int]
    content: Mapping[str, int]
    automation: Mapping[str, Mapping[str, int]]
    statements: Mapping[str, int]
    appeals: Mapping[str, int | float | None]
    requesters: Mapping[str, int]
    monthly: tuple[MonthFigures, ...]
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data; every section but ``monthly`` and ``notes`` is a
        mapping of metric -> number (nested one level for breakdowns)."""
        return {
            "report": {
                "platform": self.platform,
                "since": self.since.isoformat(),
                "until": self.until.isoformat(),
                "generated_at": self.generated_at.isoformat(),
                "deadline_h": self.deadline_h,
            },
            "requests": dict(self.requests),
            "by_channel": {k: v.to_dict() for k, v in self.by_channel.items()},
            "by_jurisdiction": {k: v.to_dict() for k, v in self.by_jurisdiction.items()},
            "by_origin": {k: v.to_dict() for k, v in self.by_origin.items()},
            "time_to_removal": self.time_to_removal.to_dict(),
            "now": dict(self.now),
            "content": dict(self.content),
            "automation": {k: dict(v) for k, v in self.automation.items()},
            "statements": dict(self.statements),
            "appeals": dict(self.appeals),
            "requesters": dict(self.requesters),
            "monthly": [
                {"month": m.month, "received": m.received, "removed": m.removed}
                for m in self.monthly
            ],
            "notes": list(self.notes),
        }

    def rows(self) -> list[tuple[str, str, str]]:
        """``(section, metric, value)`` for every figure: nested metrics are joined with ``.``,
        the monthly series is ``monthly, YYYY-MM.received|removed``, notes ``notes, N``."""
        out: list[tuple[str, str, str]] = []
        data = self.to_dict()
        for section, content in data.items():
            if section == "monthly":
                for m in content:
                    out.append(("monthly", f"{m['month']}.received", str(m["received"])))
                    out.append(("monthly", f"{m['month']}.removed", str(m["removed"])))
            elif section == "notes":
                out.extend(("notes", str(i), note) for i, note in enumerate(content, 1))
            else:
                out.extend((section, k, v) for k, v in _flatten(content))
        return out

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(("section", "metric", "value"))
        writer.writerows(self.rows())
        return buffer.getvalue()

    def to_html(self, *, page_url: str | None = None, csv_url: str | None = None) -> str:
        """A complete page from ``web/templates/report.html``. ``page_url`` adds a form to
        choose the period (a GET to that path); ``csv_url`` a link to the same figures as CSV.
        No script and no inline style (the pages' CSP forbids both): styles come from
        /assets/app.css and /assets/report.css."""
        return _render_html(self, page_url=page_url, csv_url=csv_url)


def csv_value(value: Any) -> str:
    """How a figure is written in the CSV: empty for none, lower-case booleans."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _flatten(content: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, str]]:
    for key, value in content.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", csv_value(value)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile by linear interpolation between closest ranks (Hyndman & Fan type 7:
    numpy's default and ``statistics.quantiles(method="inclusive")``), so the 0.5 quantile is
    the usual median (the mean of the middle two for an even count). None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    # SUM(CASE ...) rather than COUNT(*) FILTER: the same SQL on SQLite and PostgreSQL.
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _in(column: Any, since: datetime, until: datetime) -> ColumnElement[bool]:
    return and_(column >= since, column < until)


def _origin(value: str) -> str:
    value = value.strip().lower()
    if value in _AI_VALUES:
        return "ai_made"
    if value in _REAL_VALUES:
        return "real"
    return "unknown"


def _jurisdiction(value: str) -> str:
    value = value.strip().upper()
    if not value:
        return "unspecified"
    # Free text from the form never reaches the report: only a code-shaped value is shown.
    return value if _JURISDICTION.fullmatch(value) else "other"


def _decision(value: str) -> str:
    return value if _DECISION.fullmatch(value) else "other"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _fmt_h(hours: float) -> str:
    return f"{hours:g}"


def _histogram(durations: Sequence[timedelta], deadline: timedelta) -> tuple[tuple[str, int], ...]:
    """Counts over (lo, hi] quarters of the deadline (the first from 0), then over it: a
    removal exactly at a quarter's end counts in that quarter, as "within" counts the deadline
    itself."""
    quarter = deadline / 4
    hours = deadline.total_seconds() / 3600 / 4
    counts = [0] * 5
    for d in durations:
        counts[4 if d > deadline else min(3, max(0, math.ceil(d / quarter) - 1))] += 1
    labels = [f"{_fmt_h(hours * i)}-{_fmt_h(hours * (i + 1))}h" for i in range(4)]
    labels.append(f"over-{_fmt_h(hours * 4)}h")
    return tuple(zip(labels, counts, strict=True))


def build_report(
    db: Database,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    clock: Clock | None = None,
    settings: Settings | None = None,
) -> Report:
    """Every figure of the transparency report for ``[since, until)`` (UTC; see
    :func:`resolve_period` for the defaults). ``settings`` gives the platform's name and the
    deadline that "within" counts against (default 48 h)."""
    now = utc((clock or SystemClock()).now())
    since, until = resolve_period(since, until, now)
    deadline_h = settings.takedown_deadline_h if settings else DEFAULT_DEADLINE_H
    platform = settings.platform_name if settings else "this platform"
    deadline = timedelta(hours=deadline_h)
    with db.session() as s:
        if s.get_bind().dialect.name == "postgresql":
            # One snapshot for all the queries, so the figures agree with each other while
            # requests come in (the setting ends when the connection goes back to the pool).
            s.connection(
                execution_options={
                    "isolation_level": "REPEATABLE READ",
                    "postgresql_readonly": True,
                }
            )
        return _build(s, since, until, now, deadline, deadline_h, platform)


def _build(
    s: Session,
    since: datetime,
    until: datetime,
    now: datetime,
    deadline: timedelta,
    deadline_h: float,
    platform: str,
) -> Report:
    tr = TakedownRequest
    received = _in(tr.received_at, since, until)
    is_valid = tr.valid_at.is_not(None)
    removed = tr.state == "removed"

    row = s.execute(
        select(
            func.count(),
            _count_if(is_valid),
            _count_if(tr.state == "incomplete"),
            _count_if(tr.state == "valid"),
            _count_if(removed),
            _count_if(tr.state == "rejected"),
            _count_if(and_(tr.state == "rejected", tr.unfounded.is_(True))),
            _count_if(tr.state == "withdrawn"),
        ).where(received)
    ).one()
    keys = (
        "received",
        "valid",
        "incomplete",
        "pending",
        "removed",
        "rejected",
        "rejected_unfounded",
        "withdrawn",
    )
    requests = dict(zip(keys, (int(v) for v in row), strict=True))

    def breakdown(column: Any, key: Any, fixed: Sequence[str]) -> dict[str, Breakdown]:
        sums: dict[str, list[int]] = {name: [0, 0, 0] for name in fixed}
        for value, n, v, r in s.execute(
            select(column, func.count(), _count_if(is_valid), _count_if(removed))
            .where(received)
            .group_by(column)
        ):
            totals = sums.setdefault(key(value or ""), [0, 0, 0])
            for i, x in enumerate((n, v, r)):
                totals[i] += int(x)
        rank = {name: i for i, name in enumerate(fixed)}
        ordered = sorted(
            sums.items(), key=lambda kv: (rank.get(kv[0], len(fixed)), -kv[1][0], kv[0])
        )
        return {name: Breakdown(*t) for name, t in ordered}

    by_channel = breakdown(tr.channel, lambda v: v if v in CHANNELS else "other", CHANNELS)
    by_jurisdiction = breakdown(tr.jurisdiction, _jurisdiction, ())
    by_origin = breakdown(tr.ai_made, _origin, ORIGINS)

    # Percentiles are computed here from the fetched durations, not in SQL: SQLite has no
    # percentile_cont, one row per removed request is small at report scale (thousands), and
    # one definition (type 7) on both backends keeps the figures identical wherever it runs.
    durations: list[timedelta] = []
    for valid_at, closed_at in s.execute(
        select(tr.valid_at, tr.closed_at).where(
            received, removed, is_valid, tr.closed_at.is_not(None)
        )
    ):
        if valid_at is not None and closed_at is not None:  # the WHERE says so; mypy can't
            durations.append(closed_at - valid_at)
    hours = [d.total_seconds() / 3600 for d in durations]
    within = sum(1 for d in durations if d <= deadline)
    median, p90 = percentile(hours, 0.5), percentile(hours, 0.9)
    time_to_removal = TimeToRemoval(
        removed=len(durations),
        median_h=None if median is None else round(median, 2),
        p90_h=None if p90 is None else round(p90, 2),
        within_deadline=within,
        share_within_deadline=round(within / len(durations), 4) if durations else None,
        histogram=_histogram(durations, deadline),
    )

    open_now, overdue_now = s.execute(
        select(
            _count_if(tr.state == "valid"),
            _count_if(and_(tr.state == "valid", tr.due_at < now)),
        )
    ).one()

    rm = Removal
    by_reason = {
        "reported": 0,
        "copy_exact": 0,
        "copy_pdq": 0,
        "copy_video": 0,
        "copy_frame": 0,
        "copy_still": 0,
        "reviewed": 0,
    }
    automated = reviewer = restored = 0
    for reason, n, auto, back in s.execute(
        select(
            rm.reason,
            func.count(),
            _count_if(rm.automated.is_(True)),
            _count_if(rm.restored_at.is_not(None)),
        )
        .where(_in(rm.created_at, since, until))
        .group_by(rm.reason)
    ):
        name = reason if reason in by_reason else "other"
        by_reason[name] = by_reason.get(name, 0) + int(n)
        automated += int(auto)
        reviewer += int(n) - int(auto)
        restored += int(back)
    content = {
        "removed": sum(by_reason.values()),
        **by_reason,
        "copies_found": by_reason["copy_exact"]
        + by_reason["copy_pdq"]
        + by_reason["copy_video"]
        + by_reason["copy_frame"]
        + by_reason["copy_still"],
        "restored": restored,
    }

    scans = {name: 0 for name in DECISIONS}
    for decision, n in s.execute(
        select(ScanRecord.decision, func.count())
        .where(_in(ScanRecord.created_at, since, until))
        .group_by(ScanRecord.decision)
    ):
        name = _decision(decision or "")
        scans[name] = scans.get(name, 0) + int(n)
    ri = ReviewItem
    queued = int(s.scalar(select(func.count()).where(_in(ri.created_at, since, until))) or 0)
    decided = {f"decided_{kind}": 0 for kind in REVIEW_KINDS}
    for kind, n in s.execute(
        select(ri.kind, func.count()).where(_in(ri.decided_at, since, until)).group_by(ri.kind)
    ):
        decided[f"decided_{kind}"] = decided.get(f"decided_{kind}", 0) + int(n)
    automation = {
        "scans": {"total": sum(scans.values()), **scans},
        "removals": {"automated": automated, "by_reviewer": reviewer},
        "review_items": {"queued": queued, "decided": sum(decided.values()), **decided},
    }

    issued = int(s.scalar(select(func.count()).where(_in(Statement.created_at, since, until))) or 0)
    a_received, a_open, a_upheld, a_reversed = s.execute(
        select(
            func.count(),
            _count_if(Appeal.state == "open"),
            _count_if(Appeal.state == "upheld"),
            _count_if(Appeal.state == "reversed"),
        ).where(_in(Appeal.received_at, since, until))
    ).one()
    decided_appeals = int(a_upheld) + int(a_reversed)
    appeals: dict[str, int | float | None] = {
        "received": int(a_received),
        "open": int(a_open),
        "upheld": int(a_upheld),
        "reversed": int(a_reversed),
        "reversal_rate": round(int(a_reversed) / decided_appeals, 4) if decided_appeals else None,
    }

    flagged, suspended = s.execute(
        select(
            _count_if(_in(RequesterFlag.flagged_at, since, until)),
            _count_if(RequesterFlag.suspended_until > now),
        )
    ).one()

    buckets = _months(since, until)
    columns: list[ColumnElement[int]] = []
    for _, start, end in buckets:
        in_month = _in(tr.received_at, start, end)
        columns += [_count_if(in_month), _count_if(and_(in_month, removed))]
    counts = [int(v) for v in s.execute(select(*columns).where(received)).one()]
    monthly = tuple(
        MonthFigures(label, counts[2 * i], counts[2 * i + 1])
        for i, (label, _, _) in enumerate(buckets)
    )

    notes: list[str] = []
    if requests["received"] == 0:
        notes.append("No takedown requests were received in this period.")
    if 0 < time_to_removal.removed < SMALL_COUNT:
        notes.append(
            f"The times to removal rest on {_count(time_to_removal.removed, 'removed request')}"
            ": a median and a 90th percentile of so few are not a reliable guide."
        )
    if 0 < decided_appeals < SMALL_COUNT:
        notes.append(
            f"The reversal rate rests on {_count(decided_appeals, 'decided appeal')}; small "
            "numbers vary much from one period to the next."
        )
    if requests["pending"]:
        pending = requests["pending"]
        notes.append(
            f"{_count(pending, 'request')} received in this period "
            f"{'was' if pending == 1 else 'were'} still awaiting a decision when the report "
            "was made; the outcome is not counted yet."
        )

    return Report(
        platform=platform,
        since=since,
        until=until,
        generated_at=now,
        deadline_h=deadline_h,
        requests=requests,
        by_channel=by_channel,
        by_jurisdiction=by_jurisdiction,
        by_origin=by_origin,
        time_to_removal=time_to_removal,
        now={
            "open": int(open_now),
            "overdue": int(overdue_now),
            "suspended_requesters": int(suspended),
        },
        content=content,
        automation=automation,
        statements={"issued": issued},
        appeals=appeals,
        requesters={"flagged": int(flagged)},
        monthly=monthly,
        notes=tuple(notes),
    )


# -- HTML ---------------------------------------------------------------------------------------
# The page itself is web/templates/report.html; here the figures become what it shows: tables of
# formatted strings and the charts' geometry, so the template only places values.


@dataclass(frozen=True)
class _Table:
    caption: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class _Bar:
    """One row of a horizontal bar chart: the label left, the bar, the number right."""

    label: str
    value: str
    shade: int
    label_x: int
    mid: str
    x: int
    y: int
    width: str
    height: int
    value_x: str


@dataclass(frozen=True)
class _BarChart:
    ident: str
    title: str
    desc: str
    width: int
    height: int
    bars: tuple[_Bar, ...]


@dataclass(frozen=True)
class _MonthBar:
    kind: str
    value: int
    x: str
    y: str
    width: str
    height: str


@dataclass(frozen=True)
class _Month:
    month: str
    bars: tuple[_MonthBar, ...]
    label_x: str | None  # None: no axis label under this month (too many months to label all)


@dataclass(frozen=True)
class _MonthChart:
    width: int
    height: int
    left: int
    right: int
    top: int
    base: int
    peak: str
    months: tuple[_Month, ...]


@dataclass(frozen=True)
class _Figure:
    """A chart with the table of its numbers beside it."""

    chart: _BarChart | _MonthChart
    table: _Table
    wide: bool = False


def _n(value: int) -> str:
    return f"{value:,}"


def _hours(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} h"


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def _table(caption: str, header: Sequence[str], rows: Iterable[Sequence[str]]) -> _Table:
    return _Table(caption, tuple(header), tuple(tuple(row) for row in rows))


def _bar_chart(ident: str, title: str, desc: str, items: Sequence[tuple[str, int]]) -> _BarChart:
    """Horizontal bars, one per item, with the label left and the number right."""
    width, label_w, value_w, row_h, pad = 600, 180, 60, 32, 6
    height = pad * 2 + row_h * max(1, len(items))
    top = max([v for _, v in items] + [1])
    span = width - label_w - value_w
    bars = []
    for i, (label, value) in enumerate(items):
        y = pad + i * row_h
        w = span * value / top
        bars.append(
            _Bar(
                label=label,
                value=_n(value),
                shade=i % 6,
                label_x=label_w - 8,
                mid=f"{y + row_h / 2:.1f}",
                x=label_w,
                y=y + 4,
                width=f"{w:.1f}",
                height=row_h - 8,
                value_x=f"{label_w + w + 6:.1f}",
            )
        )
    return _BarChart(ident, title, desc, width, height, tuple(bars))


def _month_chart(months: Sequence[MonthFigures]) -> _MonthChart:
    """Received and removed side by side for each month, with a legend and a labelled axis."""
    width, height, left, right, top, bottom = 900, 300, 48, 10, 36, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max([m.received for m in months] + [m.removed for m in months] + [1])
    group = plot_w / max(1, len(months))
    bar = min(group * 0.38, 44.0)
    every = max(1, math.ceil(len(months) / 12))
    base = top + plot_h
    out = []
    for i, m in enumerate(months):
        x = left + i * group + (group - 2 * bar) / 2
        bars = []
        for j, (kind, value) in enumerate((("received", m.received), ("removed", m.removed))):
            h = plot_h * value / peak
            bars.append(
                _MonthBar(
                    kind, value, f"{x + j * bar:.1f}", f"{base - h:.1f}", f"{bar:.1f}", f"{h:.1f}"
                )
            )
        out.append(_Month(m.month, tuple(bars), f"{x + bar:.1f}" if i % every == 0 else None))
    return _MonthChart(width, height, left, width - right, top, base, _n(peak), tuple(out))


def _breakdown_table(caption: str, first: str, rows: Mapping[str, Breakdown]) -> _Table:
    labels = {"form": "Form", "flagger": "Trusted flagger", "ai_made": "AI-made"}
    body = [
        (
            labels.get(k, k.capitalize() if k.islower() else k),
            _n(b.received),
            _n(b.valid),
            _n(b.removed),
        )
        for k, b in rows.items()
    ]
    if not body:
        body = [("None", "0", "0", "0")]
    return _table(caption, (first, "Received", "Valid", "Removed"), body)


_DEFINITIONS = (
    (
        "Received",
        "Takedown requests received in the period, by the form or from trusted "
        "flaggers; the rows below say what has become of them since.",
    ),
    (
        "Valid",
        "Requests complete under the TAKE IT DOWN Act or DSA Art. 16, at receipt or once "
        "the requester completed them.",
    ),
    (
        "Incomplete",
        "Requests that still lack something both the TAKE IT DOWN Act and DSA Art. "
        "16 require; the requester can complete them from the status page.",
    ),
    ("Awaiting decision", "Valid requests not yet decided when the report was made."),
    (
        "Rejected as unfounded",
        "Rejections that found the request manifestly unfounded; these "
        "count towards flagging a requester (DSA Art. 23).",
    ),
    (
        "Time to removal",
        "From the moment a request became valid to the removal of its "
        "content. The median and the 90th percentile interpolate linearly between ranks.",
    ),
    (
        "Open now / overdue now",
        "Valid requests awaiting a decision at the time of the report, "
        "whenever received; overdue ones are past their deadline.",
    ),
    (
        "Copies found",
        "Earlier uploads of removed content found by the sweep of the scan log: "
        "identical files (exact) and visually near-identical images (PDQ).",
    ),
    (
        "Automation",
        "Every scan is decided by the platform's policy without a person; content "
        "is removed only on a valid request or a reviewer's decision, and copies found by the "
        "sweep are removed automatically as a consequence of that decision.",
    ),
    (
        "Appeals",
        "Appeals by uploaders against a removal (DSA Art. 20), counted by when they "
        "were received; the reversal rate is reversed / decided.",
    ),
)


def _render_html(report: Report, *, page_url: str | None, csv_url: str | None) -> str:
    r = report.requests
    t = report.time_to_removal
    c = report.content
    deadline = f"{_fmt_h(report.deadline_h)} h"
    headline = [
        ("Requests received", _n(r["received"])),
        ("Requests removed", _n(r["removed"])),
        ("Median time to removal", _hours(t.median_h)),
        ("90th percentile", _hours(t.p90_h)),
        (f"Removed within {deadline}", _share(t.share_within_deadline)),
        ("Copies found by sweeps", _n(c["copies_found"])),
        ("Appeals received", _n(int(report.appeals["received"] or 0))),
        ("Open now / overdue", f"{_n(report.now['open'])} / {_n(report.now['overdue'])}"),
    ]

    outcomes = [
        ("Received", r["received"]),
        ("Valid", r["valid"]),
        ("Removed", r["removed"]),
        ("Rejected", r["rejected"]),
        ("Withdrawn", r["withdrawn"]),
        ("Incomplete", r["incomplete"]),
        ("Awaiting decision", r["pending"]),
    ]
    outcome_rows = [(k, _n(v)) for k, v in outcomes]
    outcome_rows.insert(4, ("Rejected as unfounded", _n(r["rejected_unfounded"])))
    requests_section: list[_Table | _Figure] = [
        _Figure(
            _bar_chart(
                "requests",
                "Takedown requests by outcome",
                "Requests received in the period and what became of them; the numbers are in "
                "the table next to this chart.",
                outcomes,
            ),
            _table("Takedown requests", ("Outcome", "Requests"), outcome_rows),
        ),
        _breakdown_table("By channel", "Channel", report.by_channel),
        _breakdown_table("By jurisdiction", "Jurisdiction", report.by_jurisdiction),
        _breakdown_table("Real or AI-made, as the requester said", "Content", report.by_origin),
    ]

    spans = [(label.replace("-", "–"), n) for label, n in t.histogram]
    time_section: list[_Table | _Figure] = [
        _table(
            "Time from valid request to removal",
            ("Figure", "Value"),
            [
                ("Removed requests timed", _n(t.removed)),
                ("Median", _hours(t.median_h)),
                ("90th percentile", _hours(t.p90_h)),
                (
                    f"Within {deadline}",
                    f"{_n(t.within_deadline)} ({_share(t.share_within_deadline)})",
                ),
            ],
        ),
        _Figure(
            _bar_chart(
                "time",
                "Time to removal",
                f"How many removed requests took each span of hours from valid to removed; the "
                f"deadline is {deadline}. The numbers are in the table next to this chart.",
                spans,
            ),
            _table(
                "Removed requests by hours taken",
                ("Hours", "Requests"),
                [(label, _n(n)) for label, n in spans],
            ),
        ),
        _table(
            "Now",
            ("Figure", "Requests"),
            [("Open now", _n(report.now["open"])), ("Overdue now", _n(report.now["overdue"]))],
        ),
    ]

    removed_items = [
        ("Reported content", c["reported"]),
        ("Exact copies (sweep)", c["copy_exact"]),
        ("PDQ copies (sweep)", c["copy_pdq"]),
        ("Video copies by shared footage (sweep)", c.get("copy_video", 0)),
        ("Videos showing a removed image (sweep)", c.get("copy_frame", 0)),
        ("Stills of a removed video (sweep)", c.get("copy_still", 0)),
        ("After review of a scan", c["reviewed"]),
    ]
    content_section: list[_Table | _Figure] = [
        _Figure(
            _bar_chart(
                "content",
                "Content removed, by reason",
                "Pieces of content removed in the period: reported content, copies found by the "
                "sweep, and uploads removed after review. The numbers are in the table next to "
                "this chart.",
                removed_items,
            ),
            _table(
                "Content removed",
                ("Reason", "Items"),
                [(k, _n(v)) for k, v in removed_items]
                + [("Total", _n(c["removed"])), ("Restored after appeal", _n(c["restored"]))],
            ),
        )
    ]

    a = report.automation
    scan_items = [(k.capitalize(), v) for k, v in a["scans"].items() if k != "total"]
    ri = a["review_items"]
    automation_section: list[_Table | _Figure] = [
        _Figure(
            _bar_chart(
                "scans",
                "Uploads scanned, by automated decision",
                "Uploads scanned in the period by the decision the policy took automatically; "
                "the numbers are in the table next to this chart.",
                scan_items,
            ),
            _table(
                "Automated decisions",
                ("Decision", "Scans"),
                [(k, _n(v)) for k, v in scan_items] + [("Total", _n(a["scans"]["total"]))],
            ),
        ),
        _table(
            "Decisions by people and by automation",
            ("Figure", "Count"),
            [
                ("Removals decided by a reviewer", _n(a["removals"]["by_reviewer"])),
                ("Removals made automatically (sweep copies)", _n(a["removals"]["automated"])),
                ("Items queued for review", _n(ri["queued"])),
                ("Review items decided", _n(ri["decided"])),
                ("… of scans", _n(ri["decided_scan"])),
                ("… of takedown requests", _n(ri["decided_takedown"])),
                ("… of appeals", _n(ri["decided_appeal"])),
            ],
        ),
    ]

    ap = report.appeals
    rate = ap["reversal_rate"]
    notices_section: list[_Table | _Figure] = [
        _table(
            "Statements of reasons and appeals",
            ("Figure", "Count"),
            [
                ("Statements of reasons issued", _n(report.statements["issued"])),
                ("Appeals received", _n(int(ap["received"] or 0))),
                ("Upheld", _n(int(ap["upheld"] or 0))),
                ("Reversed", _n(int(ap["reversed"] or 0))),
                ("Still open", _n(int(ap["open"] or 0))),
                ("Reversal rate", _share(None if rate is None else float(rate))),
            ],
        ),
        _table(
            "Abuse controls (DSA Art. 23)",
            ("Figure", "Requesters"),
            [
                ("Flagged for repeated unfounded requests", _n(report.requesters["flagged"])),
                ("Suspended now", _n(report.now["suspended_requesters"])),
            ],
        ),
    ]

    monthly_section: list[_Table | _Figure] = [
        _Figure(
            _month_chart(report.monthly),
            _table(
                "Requests by month received",
                ("Month", "Received", "Removed"),
                [(m.month, _n(m.received), _n(m.removed)) for m in report.monthly],
            ),
            wide=True,
        )
    ]

    last_day = report.until - timedelta(microseconds=1)
    return render(
        "report.html",
        report=report,
        page_url=page_url,
        csv_url=csv_url,
        since_day=f"{report.since:%Y-%m-%d}",
        until_day=f"{(last_day + timedelta(days=1)):%Y-%m-%d}",
        headline=headline,
        sections=[
            ("requests", "Takedown requests", requests_section),
            ("time", "Time to removal", time_section),
            ("content", "Content removed", content_section),
            ("automation", "Automation", automation_section),
            ("notices", "Statements, appeals and abuse controls", notices_section),
            ("monthly", "Month by month", monthly_section),
        ],
        definitions=_DEFINITIONS,
    )


__all__ = [
    "MAX_MONTHS",
    "Breakdown",
    "MonthFigures",
    "Report",
    "ReportError",
    "TimeToRemoval",
    "build_report",
    "csv_value",
    "parse_when",
    "percentile",
    "resolve_period",
]
