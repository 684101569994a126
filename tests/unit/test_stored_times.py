"""Times inside stored JSON (outbox events, job results) are timezone-aware ISO 8601, as every
reply's timestamps are: ``str(datetime)`` would give ``2026-12-07 02:00:00`` (no ``T``, and no
zone for a naive time)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import select

from dignity.actions.models import OutboxEvent
from dignity.actions.outbox import emit_event
from dignity.actions.webhooks import WebhookService
from dignity.jobs import JobService
from dignity.storage.db import open_database
from dignity.storage.types import json_default


def test_json_default_writes_aware_iso_times() -> None:
    assert json_default(datetime(2026, 12, 7, 2, 0)) == "2026-12-07T02:00:00+00:00"
    east = datetime(2026, 12, 7, 3, 0, tzinfo=timezone(timedelta(hours=1)))
    assert json_default(east) == "2026-12-07T02:00:00+00:00"
    assert json_default(Path("a/b")) == "a/b"


def test_events_and_job_results_keep_times_as_iso(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'd.sqlite3'}")
    try:
        WebhookService(db).create(
            url="https://hooks.example.org/x", secret="s3cret-for-tests-0123456789", events="*"
        )
        at = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
        with db.session() as s:
            emit_event(s, "takedown.escalated", {"due_at": at})
        with db.session() as s:
            [body] = s.scalars(select(OutboxEvent.payload)).all()
        assert json.loads(body) == {"due_at": "2026-12-07T02:00:00+00:00"}
        jobs = JobService(db)
        job, _ = jobs.submit("scan", {"at": datetime(2026, 12, 7, 2, 0)})
        assert jobs.get(job.id).payload == {"at": "2026-12-07T02:00:00+00:00"}
    finally:
        db.close()
