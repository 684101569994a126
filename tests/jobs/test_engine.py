"""The engine in one process, on SQLite and PostgreSQL: the embedded runner runs queued scans
(woken by a submit), a scan's effects (scan log row, review item, ``scan.match`` event) are
recorded once even when the transaction that records them fails or a worker loses its lease,
and shared periodic loops tick once per period however many processes run them."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from dignity.background import Periodic, Supervisor
from dignity.jobs.periods import claim_period, claims
from dignity.services import CLI, Services
from dignity.settings import Settings
from dignity.worker import engine
from dignity.worker.tasks import TASKS, run_claimed, run_job
from tests.jobs.effects import done_count, effects, queue_scans, wait_for


@pytest.fixture
def services(settings: Settings) -> Any:
    fast = settings.model_copy(update={"job_poll_s": 0.2, "job_concurrency": 2})
    services = Services(fast, profile=CLI)
    services.engine.load()
    yield services
    services.stop()


def test_the_embedded_runner_runs_queued_scans_once(services: Services) -> None:
    corpus = queue_scans(services, 6)
    engine.start(services, background=())
    try:
        assert services.job_dispatcher is not None
        wait_for(lambda: done_count(services, corpus.job_ids) == 6, 60, "6 scans done")
        # One more, submitted here: the runner is woken at once, not at its next poll.
        from tests.jobs.effects import image

        started = time.monotonic()
        job, _ = services.submit_job("scan", {}, media=image(99))
        wait_for(lambda: services.jobs.get(job.id).state == "done", 10, "the woken job")
        assert time.monotonic() - started < 5
    finally:
        services.supervisor.stop()
    got = effects(services, corpus)
    assert got.exactly_once(corpus), got
    result = services.jobs.get(corpus.job_ids[0]).result
    assert result is not None and isinstance(result["scan_id"], int)
    assert result["decision"]["action"] == "review"


def test_a_failed_recording_keeps_nothing_and_the_retry_records_once(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = queue_scans(services, 2)
    real = services.recorders
    failed: list[str] = []

    class FailsOnce:
        name = "fails once"

        def record(self, scan: Any, session: Session | None = None) -> None:
            if not failed:
                failed.append("x")
                raise RuntimeError("the database went away mid-commit")

    # After the scan log row and its review item were written, before the event: a design that
    # committed the row on its own would keep it, and the retry would either log the scan twice
    # or, finding it, skip the event.
    monkeypatch.setattr(services, "recorders", (FailsOnce(), *real))
    states = [run_job(services, services.jobs, job_id, "w1") for job_id in corpus.job_ids]
    assert states == ["queued", "done"]
    assert run_job(services, services.jobs, corpus.job_ids[0], "w2") == "done"
    got = effects(services, corpus)
    assert got.exactly_once(corpus), got
    assert got.retried == 1


def test_a_worker_that_lost_its_lease_records_nothing(services: Services) -> None:
    corpus = queue_scans(services, 1)
    jobs = services.jobs
    jobs.lease_s = 0.05
    (job_id,) = corpus.job_ids
    stale = jobs.claim(job_id, "dead")
    assert stale is not None
    time.sleep(0.1)
    # Another worker took it over; then the first wakes up and runs its (old) claim to the end.
    assert run_job(services, jobs, job_id, "alive") == "done"
    assert run_claimed(services, jobs, stale, "dead") == "lost"
    got = effects(services, corpus)
    assert got.exactly_once(corpus), got


def test_shared_periodic_ticks_once_per_period_across_processes(
    services: Services, tmp_path: Path
) -> None:
    ticks: list[str] = []
    lock = threading.Lock()
    interval = 0.2

    def tick(who: str) -> None:
        with lock:
            ticks.append(who)

    # Four "processes" (supervisors) on one database, each running the same shared loop.
    supervisors = []
    for i in range(4):
        sup = Supervisor(
            claim=lambda t, i=i: claim_period(services.db, t.name, t.interval_s, f"p{i}")
        )
        sup.add(Periodic("shared-loop", interval, lambda i=i: tick(f"p{i}"), shared=True))
        supervisors.append(sup)
    started = time.time()
    for sup in supervisors:
        sup.start()
    time.sleep(3.0)
    for sup in supervisors:
        sup.stop()
    periods = (time.time() - started) / interval
    recorded = claims(services.db, "shared-loop")
    assert len(ticks) == len(recorded)
    assert len({p for p, _ in recorded}) == len(recorded)
    # Each period ran once (not 4 times), and the loop did not stall.
    assert periods * 0.6 <= len(ticks) <= periods + 1, (len(ticks), periods)


def test_an_unclaimed_loop_would_tick_in_every_process(services: Services) -> None:
    # The control for the test above: without the claim, four supervisors tick four times.
    ticks: list[int] = []
    supervisors = []
    for i in range(4):
        sup = Supervisor()
        sup.add(Periodic("shared-loop", 0.2, lambda i=i: ticks.append(i), shared=True))
        supervisors.append(sup)
    for sup in supervisors:
        sup.start()
    time.sleep(1.0)
    for sup in supervisors:
        sup.stop()
    assert len(ticks) >= 12


def test_a_long_quiet_job_keeps_its_lease_while_its_worker_lives(
    services: Services, tmp_path: Path
) -> None:
    import tests.jobs.plugin  # noqa: F401  (registers test.mark)

    jobs = services.jobs
    jobs.lease_s = 0.5
    marks = tmp_path / "marks.txt"
    job, _ = jobs.submit("test.mark", {"file": str(marks), "quiet_s": 2.5})
    thread = threading.Thread(target=run_job, args=(services, jobs, job.id, "alive"))
    thread.start()
    try:
        wait_for(lambda: jobs.get(job.id).lease_owner == "alive", 5, "the claim")
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            # Five lease lengths in, nobody may take the job over from a live worker.
            assert jobs.claim(job.id, "thief") is None
            time.sleep(0.05)
    finally:
        thread.join(10)
    assert jobs.get(job.id).state == "done"
    assert len(marks.read_text().splitlines()) == 1


def test_the_scan_task_is_registered() -> None:
    assert "scan" in TASKS
