"""The 48-hour clock with an injectable time source, on an SQLite file and on PostgreSQL: the
deadline, escalation at exactly 24 h and 36 h (and not a microsecond before), overdue only after
48 h, idempotence, a clock that starts only when a request becomes valid, and the 365-day window
of unfounded rejections that flags a requester."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from dignity.actions.models import OutboxEvent
from dignity.actions.webhooks import WebhookService
from dignity.audit.models import AuditRecord
from dignity.keys import KeyService
from dignity.settings import Settings
from dignity.storage.db import Database
from dignity.takedown.clock import FixedClock, SystemClock
from dignity.takedown.clock import utc as _utc
from dignity.takedown.models import RequesterFlag, ReviewItem, TakedownRequest
from dignity.takedown.requests import TakedownService
from dignity.takedown.validity import RequestForm, TakedownError

T0 = datetime(2026, 6, 1, 9, 30, 0, 250_000, tzinfo=UTC)
US = timedelta(microseconds=1)

VALID = RequestForm(
    requester_name="Alex Example",
    requester_contact="alex@example.org",
    content=("https://pics.example/p/abc123",),
    description="An intimate picture of me that was posted without my consent.",
    good_faith=True,
    signature_name="Alex Example",
    signature_confirmed=True,
    ai_made="real",
    jurisdiction="US",
)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def svc(db: Database, settings: Settings, clock: FixedClock) -> TakedownService:
    s = settings.model_copy(
        update={"content_url_pattern": r"https://pics\.example/p/(?P<content_id>\w+)"}
    )
    return TakedownService(db, s, clock)


def utc(at: datetime | None) -> datetime:
    assert at is not None
    return _utc(at)


def _request(db: Database, request_id: int) -> TakedownRequest:
    with db.session() as s:
        req = s.get(TakedownRequest, request_id)
        assert req is not None
        return req


def _review_items(db: Database, request_id: int) -> list[ReviewItem]:
    with db.session() as s:
        return list(s.scalars(select(ReviewItem).where(ReviewItem.request_id == request_id)))


def _actions(db: Database, action: str) -> list[AuditRecord]:
    with db.session() as s:
        return list(s.scalars(select(AuditRecord).where(AuditRecord.action == action)))


def test_clocks() -> None:
    c = FixedClock(datetime(2026, 1, 1, 12))  # naive is taken as UTC
    assert c.now() == datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert c.advance(hours=1, minutes=30) == datetime(2026, 1, 1, 13, 30, tzinfo=UTC)
    c.set(datetime(2027, 1, 1, tzinfo=UTC))
    assert c.now().year == 2027
    real = SystemClock().now()
    assert real.tzinfo is not None and abs(real - datetime.now(UTC)) < timedelta(seconds=5)
    assert utc(datetime(2026, 1, 1)).tzinfo is UTC


def test_deadline_escalations_and_overdue(
    db: Database, svc: TakedownService, clock: FixedClock
) -> None:
    WebhookService(db).create("https://hooks.example/dignity", events="takedown.escalated")
    receipt = svc.submit(VALID)
    assert receipt.state == "valid"
    assert receipt.due_at == T0 + timedelta(hours=48)
    req = _request(db, receipt.request_id)
    assert utc(req.valid_at) == T0 and utc(req.due_at) == T0 + timedelta(hours=48)
    (item,) = _review_items(db, receipt.request_id)
    assert item.kind == "takedown" and item.priority == 1 and item.state == "open"
    assert utc(item.due_at) == T0 + timedelta(hours=48)

    clock.set(T0 + timedelta(hours=24) - US)
    assert svc.escalate() == 0
    assert _request(db, receipt.request_id).escalated_24_at is None

    clock.set(T0 + timedelta(hours=24))  # exactly 24 h
    assert svc.escalate() == 1
    req = _request(db, receipt.request_id)
    assert utc(req.escalated_24_at) == T0 + timedelta(hours=24)
    assert req.escalated_36_at is None
    assert [i.priority for i in _review_items(db, receipt.request_id)] == [0]
    assert svc.escalate() == 0  # idempotent
    clock.advance(hours=6)
    assert svc.escalate() == 0

    clock.set(T0 + timedelta(hours=36) - US)
    assert svc.escalate() == 0
    clock.set(T0 + timedelta(hours=36))
    assert svc.escalate() == 1
    assert utc(_request(db, receipt.request_id).escalated_36_at) == T0 + timedelta(hours=36)
    assert svc.escalate() == 0

    clock.set(T0 + timedelta(hours=48))  # due now, not yet overdue
    assert svc.overdue() == []
    assert svc.list(overdue=True) == []
    clock.advance(microseconds=1)
    (late,) = svc.overdue()
    assert late["ticket"] == receipt.ticket and late["overdue"] is True
    assert late["hours_left"] <= 0
    assert svc.get(receipt.request_id)["overdue"] is True
    assert svc.escalate() == 0  # nothing more to escalate after 36 h

    with db.session() as s:
        events = [
            json.loads(e.payload)
            for e in s.scalars(select(OutboxEvent).where(OutboxEvent.type == "takedown.escalated"))
        ]
    assert sorted(e["hours"] for e in events) == [24.0, 36.0]
    assert {e["ticket"] for e in events} == {receipt.ticket}
    audits = _actions(db, "takedown.escalated")
    assert sorted(json.loads(a.detail)["hours"] for a in audits) == [24.0, 36.0]


def test_nothing_before_the_first_point(svc: TakedownService, clock: FixedClock) -> None:
    receipt = svc.submit(VALID)
    for hours in (0, 1, 12, 23.99):
        clock.set(T0 + timedelta(hours=hours))
        assert svc.escalate() == 0
        assert svc.overdue() == []
    summary = svc.list()[0]
    assert summary["ticket"] == receipt.ticket
    assert summary["escalated_24_at"] is None and summary["overdue"] is False
    assert summary["hours_left"] == pytest.approx(48 - 23.99, abs=0.01)


def test_late_run_fires_both_points_once(
    db: Database, svc: TakedownService, clock: FixedClock
) -> None:
    receipt = svc.submit(VALID)
    clock.set(T0 + timedelta(hours=40))  # the process was down through both points
    assert svc.escalate() == 2
    req = _request(db, receipt.request_id)
    assert req.escalated_24_at is not None and req.escalated_36_at is not None
    assert svc.escalate() == 0


def test_clock_starts_when_the_request_becomes_valid(
    db: Database, svc: TakedownService, clock: FixedClock
) -> None:
    receipt = svc.submit(replace(VALID, good_faith=False))
    assert receipt.state == "incomplete" and receipt.due_at is None
    assert _review_items(db, receipt.request_id) == []
    clock.set(T0 + timedelta(hours=100))
    assert svc.escalate() == 0 and svc.overdue() == []

    t1 = clock.now()
    status = svc.complete(receipt.ticket, receipt.access_code, {"good_faith": True})
    assert status["state"] == "valid"
    assert status["due_at"] == (t1 + timedelta(hours=48)).isoformat()
    req = _request(db, receipt.request_id)
    assert utc(req.valid_at) == t1
    (item,) = _review_items(db, receipt.request_id)
    assert utc(item.due_at) == t1 + timedelta(hours=48)

    clock.set(t1 + timedelta(hours=24) - US)
    assert svc.escalate() == 0
    clock.set(t1 + timedelta(hours=24))
    assert svc.escalate() == 1
    clock.set(t1 + timedelta(hours=48, seconds=1))
    assert [r["ticket"] for r in svc.overdue()] == [receipt.ticket]


def test_closed_requests_are_neither_escalated_nor_overdue(
    db: Database, svc: TakedownService, clock: FixedClock
) -> None:
    rejected = svc.submit(VALID)
    withdrawn = svc.submit(VALID)
    clock.set(T0 + timedelta(hours=2))
    svc.reject(rejected.request_id, reason="the link shows a landscape", unfounded=False)
    svc.withdraw(withdrawn.ticket, withdrawn.access_code)
    assert [i.state for i in _review_items(db, withdrawn.request_id)] == ["closed"]
    assert [i.state for i in _review_items(db, rejected.request_id)] == ["decided"]
    clock.set(T0 + timedelta(hours=60))
    assert svc.escalate() == 0
    assert svc.overdue() == []


def test_flagger_requests_start_at_priority_zero(
    db: Database, svc: TakedownService, clock: FixedClock
) -> None:
    key, _ = KeyService(db).create("flagger", name="hotline")
    receipt = svc.submit(VALID, channel="flagger", flagger=key)
    (item,) = _review_items(db, receipt.request_id)
    assert item.priority == 0
    clock.set(T0 + timedelta(hours=24))
    assert svc.escalate() == 1  # still stamped and announced, though already at the top
    assert svc.get(receipt.request_id)["flagger_name"] == "hotline"


def test_configured_deadline_and_points(db: Database, settings: Settings) -> None:
    clock = FixedClock(T0)
    custom = settings.model_copy(
        update={"takedown_deadline_h": 24.0, "takedown_escalate_h": [12.0, 6.0]}
    )
    svc = TakedownService(db, custom, clock)
    receipt = svc.submit(VALID)
    assert receipt.due_at == T0 + timedelta(hours=24)
    clock.set(T0 + timedelta(hours=6))
    assert svc.escalate() == 1
    assert utc(_request(db, receipt.request_id).escalated_24_at) == T0 + timedelta(hours=6)
    clock.set(T0 + timedelta(hours=12))
    assert svc.escalate() == 1
    clock.set(T0 + timedelta(hours=24, seconds=1))
    assert len(svc.overdue()) == 1


def test_unfounded_rejections_count_within_a_year(
    db: Database, settings: Settings, clock: FixedClock
) -> None:
    svc = TakedownService(db, settings.model_copy(update={"unfounded_flag_after": 2}), clock)
    first = svc.submit(VALID)
    svc.reject(first.request_id, reason="not intimate imagery", unfounded=True)
    with db.session() as s:
        assert s.scalars(select(RequesterFlag)).all() == []

    clock.set(T0 + timedelta(days=366))  # the first one has aged out of the window
    second = svc.submit(VALID)
    result = svc.reject(second.request_id, reason="not intimate imagery", unfounded=True)
    assert result["requester_flagged"] is False
    with db.session() as s:
        assert s.scalars(select(RequesterFlag)).all() == []

    clock.advance(days=10)
    third = svc.submit(replace(VALID, requester_contact="  ALEX@Example.org "))  # same person
    result = svc.reject(third.request_id, reason="not intimate imagery", unfounded=True)
    assert result["requester_flagged"] is True
    (flag,) = svc.flags()
    assert flag["flagged"] is True and flag["unfounded"] == 2 and flag["suspended"] is False
    assert len(_actions(db, "takedown.requester_flagged")) == 1

    # A flagged requester's next request still goes in; the reviewer sees the flag.
    fourth = svc.submit(VALID)
    assert fourth.state == "valid"
    evidence = svc.get(fourth.request_id)
    assert evidence["requester_flag"]["flagged"] is True
    assert evidence["requester_history"]["unfounded_365d"] == 2

    # Suspension is staff's decision, for a number of days.
    svc.suspend(flag["requester_fp"], days=30, note="warned on 2027-06-01")
    with pytest.raises(TakedownError) as info:
        svc.submit(VALID)
    assert info.value.code == "takedown.suspended"
    clock.advance(days=31)
    assert svc.submit(VALID).state == "valid"
    svc.suspend(flag["requester_fp"], days=1)
    svc.unsuspend(flag["requester_fp"])
    assert svc.submit(VALID).state == "valid"


def test_reject_rules(svc: TakedownService) -> None:
    receipt = svc.submit(VALID)
    with pytest.raises(TakedownError) as info:
        svc.reject(receipt.request_id, reason="  ", unfounded=False)
    assert info.value.code == "takedown.reason_required"
    svc.reject(receipt.request_id, reason="not on this platform", unfounded=False)
    with pytest.raises(TakedownError) as info:
        svc.reject(receipt.request_id, reason="again", unfounded=False)
    assert info.value.code == "takedown.closed"
    with pytest.raises(TakedownError) as info:
        svc.reject(10**6, reason="x", unfounded=False)
    assert info.value.code == "takedown.not_found"
