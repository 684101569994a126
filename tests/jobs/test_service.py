"""The job table's rules, on SQLite and PostgreSQL: one claim wins, an expired lease is taken
over, retries end in ``failed``, a cancelled job never runs, dedupe keys, the end events, and
an upload's bytes gone with the job."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from dignity.actions.models import OutboxEvent
from dignity.actions.webhooks import WebhookService
from dignity.jobs import JobConflict, JobNotFound, JobRefused, JobService
from dignity.storage.db import Database


def events(db: Database, kind: str) -> list[dict[str, object]]:
    with db.session() as s:
        rows = s.scalars(select(OutboxEvent).where(OutboxEvent.type == kind)).all()
        return [json.loads(r.payload) for r in rows]


def subscribe(db: Database) -> None:
    WebhookService(db).create(
        url="https://hooks.example.org/jobs", secret="s3cret-for-tests-0123456789", events="*"
    )


def test_one_claim_wins(jobs_db: Database) -> None:
    jobs = JobService(jobs_db)
    job, new = jobs.submit("scan", {"url": "https://example.org/a.jpg"})
    assert new and job.state == "queued" and job.attempts == 0
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: jobs.claim(job.id, f"w{i}"), range(8)))
    winners = [g for g in got if g is not None]
    assert len(winners) == 1 and winners[0].state == "running" and winners[0].attempts == 1
    # A second delivery of the same message finds it taken.
    assert jobs.claim(job.id, "late") is None


def test_expired_lease_is_taken_over_and_the_old_worker_cannot_finish(jobs_db: Database) -> None:
    jobs = JobService(jobs_db, lease_s=0.05)
    job, _ = jobs.submit("scan", {})
    assert jobs.claim(job.id, "dead") is not None
    time.sleep(0.1)
    taken = jobs.claim(job.id, "alive")
    assert taken is not None and taken.attempts == 2
    assert not jobs.finish(job.id, "dead", {"x": 1})
    assert not jobs.heartbeat(job.id, "dead")
    assert jobs.finish(job.id, "alive", {"x": 2})
    done = jobs.get(job.id)
    assert done.state == "done" and done.result == {"x": 2} and done.finished_at is not None


def test_retries_then_failed_with_the_error_and_event(jobs_db: Database) -> None:
    subscribe(jobs_db)
    jobs = JobService(jobs_db, max_attempts=2)
    job, _ = jobs.submit("scan", {})
    assert jobs.claim(job.id, "w") is not None
    again = jobs.fail(job.id, "w", code="media.corrupt", message="broken", retry=True)
    assert again is not None and again.state == "queued"
    assert jobs.claim(job.id, "w") is not None
    ended = jobs.fail(job.id, "w", code="media.corrupt", message="broken", retry=True)
    assert ended is not None and ended.state == "failed" and ended.error_code == "media.corrupt"
    assert jobs.claim(job.id, "w") is None
    [event] = events(jobs_db, "job.failed")
    assert event["job_id"] == job.id and event["error"] == {
        "code": "media.corrupt",
        "message": "broken",
    }


def test_worker_lost_every_time_ends_failed(jobs_db: Database) -> None:
    jobs = JobService(jobs_db, lease_s=0.02, max_attempts=2)
    job, _ = jobs.submit("scan", {})
    for _ in range(2):
        assert jobs.claim(job.id, "w") is not None
        time.sleep(0.05)
    assert jobs.claim(job.id, "w") is None
    lost = jobs.get(job.id)
    assert lost.state == "failed" and lost.error_code == "job.worker_lost"


def test_cancel(jobs_db: Database) -> None:
    jobs = JobService(jobs_db)
    queued, _ = jobs.submit("scan", {}, media=b"bytes", filename="a.jpg")
    assert jobs.media(queued.id) == (b"bytes", "a.jpg")
    assert jobs.cancel(queued.id).state == "cancelled"
    assert jobs.claim(queued.id, "w") is None and jobs.media(queued.id) is None
    with pytest.raises(JobConflict):
        jobs.cancel(queued.id)
    running, _ = jobs.submit("backfill", {})
    child, _ = jobs.submit("backfill.batch", {}, parent_id=running.id)
    assert jobs.claim(running.id, "w") is not None
    asked = jobs.cancel(running.id)
    assert asked.state == "running" and asked.cancel_requested
    assert jobs.get(child.id).state == "cancelled"
    assert not jobs.heartbeat(running.id, "w", done=3)
    assert jobs.stop_cancelled(running.id, "w")
    assert jobs.get(running.id).state == "cancelled"
    with pytest.raises(JobNotFound):
        jobs.cancel("nope")


def test_dedupe_and_kinds_and_listing(jobs_db: Database) -> None:
    subscribe(jobs_db)
    jobs = JobService(jobs_db, kinds=("scan",))
    a, new_a = jobs.submit("scan", {"n": 1}, dedupe_key="k1", key_id=7, media=b"x")
    b, new_b = jobs.submit("scan", {"n": 2}, dedupe_key="k1")
    assert new_a and not new_b and a.id == b.id and b.payload == {"n": 1}
    with pytest.raises(JobRefused):
        jobs.submit("mine-bitcoin", {})
    other, _ = jobs.submit("scan", {"n": 3})
    assert [j.id for j in jobs.list_jobs(key_id=7)] == [a.id]
    assert {j.id for j in jobs.list_jobs(state="queued")} == {a.id, other.id}
    with pytest.raises(JobRefused):
        jobs.list_jobs(state="sleeping")
    claimed = jobs.claim_next("w")
    assert claimed is not None and claimed.id == a.id  # oldest first
    assert jobs.heartbeat(a.id, "w", done=1, total=1, counts={"matched": 1})
    assert jobs.finish(a.id, "w", {"decision": "allow"})
    assert jobs.media(a.id) is None  # the upload is gone with the job
    [event] = events(jobs_db, "job.completed")
    assert event["result"] == {"decision": "allow"}
    info = jobs.get(a.id).to_dict()
    assert info["progress"] == {"done": 1, "total": 1, "counts": {"matched": 1}}
    assert info["created_at"].endswith(("+00:00", "Z"))
    assert jobs.counts()["done"] == 1


def test_undispatched_are_found_for_resending(jobs_db: Database) -> None:
    jobs = JobService(jobs_db)
    a, _ = jobs.submit("scan", {})
    b, _ = jobs.submit("scan", {})
    assert {j.id for j in jobs.undispatched(older_than_s=60)} == {a.id, b.id}
    jobs.mark_dispatched([a.id])
    assert [j.id for j in jobs.undispatched(older_than_s=60)] == [b.id]
    assert {j.id for j in jobs.undispatched(older_than_s=-1)} == {a.id, b.id}
