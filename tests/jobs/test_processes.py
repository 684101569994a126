"""The engine inside ``dignity serve`` and across processes: SIGKILL of a serving process running
the embedded default loses no queued scan; two workers and two API processes on one PostgreSQL
run each job once in effect and each shared periodic loop once per period (embedded runner,
and Celery + RabbitMQ with beat in both workers)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dignity.services import Services
from dignity.settings import Settings
from tests.conftest import postgres_schema
from tests.integration.server import LiveServer
from tests.jobs.effects import (
    BROKER,
    ON_THE_BROKER,
    WorkerProcess,
    done_count,
    effects,
    env_for,
    fresh_services,
    image,
    queue_scans,
    wait_for,
)
from tests.jobs.test_reliability import N, needs_broker, send, worker_args

pytestmark = ON_THE_BROKER

CLOCK_S = 0.5  # the takedown clock's interval in these tests: many periods in a short run


@pytest.fixture
def pg_settings(tmp_path: Path) -> Iterator[Settings]:
    if not os.environ.get("DIGNITY_TEST_POSTGRES_URL"):
        pytest.skip("two workers and two API processes need DIGNITY_TEST_POSTGRES_URL")
    with postgres_schema() as url:
        yield Settings(data_dir=tmp_path / "data", database_url=url)


def test_kill_9_of_a_serving_process_loses_no_queued_job(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    services = fresh_services(settings)
    try:
        corpus = queue_scans(services, N)
        server = LiveServer(settings.data_dir, env=env_for(settings))
        started = time.monotonic()
        server.start()
        try:
            wait_for(lambda: done_count(services, corpus.job_ids) >= N // 4, 120, "a quarter")
            server.kill()
            at_kill = done_count(services, corpus.job_ids)
            killed_at = time.monotonic()
            server.start()
            wait_for(
                lambda: done_count(services, corpus.job_ids) == N,
                180,
                f"all done after the restart: {effects(services, corpus)}",
            )
        finally:
            server.stop()
        got = effects(services, corpus)
        print(
            f"\n[serve, embedded] {N} scans, SIGKILL after {at_kill} done "
            f"({killed_at - started:.1f} s); all done {time.monotonic() - killed_at:.1f} s "
            f"after; {got.retried} ran twice; {got}"
        )
        assert got.exactly_once(corpus), got
        assert at_kill < N
    finally:
        services.close()


def clock_runs(server: LiveServer) -> int:
    body = httpx.get(server.base + "/readyz", timeout=10).json()
    return int(body["background"]["takedown-clock"]["runs"])


@pytest.mark.parametrize("engine", ["embedded", pytest.param("celery", marks=needs_broker)])
def test_two_workers_and_two_api_processes_run_each_job_and_period_once(
    engine: str, pg_settings: Settings, tmp_path: Path, queue: str
) -> None:
    services: Services = fresh_services(pg_settings)
    extra = {"DIGNITY_TAKEDOWN_CHECK_S": str(CLOCK_S), "DIGNITY_JOB_CONCURRENCY": "1"}
    args = worker_args(engine, queue)
    if engine == "celery":
        # Beat in both workers sends the ticks to a periodic queue of this test's own.
        extra.update({"DIGNITY_BROKER_URL": BROKER, "DIGNITY_PERIODIC_QUEUE": f"{queue}p"})
        args = ["--concurrency", "2", "--pool", "prefork", "--queues", f"{queue},{queue}p"]
        args += ["--log-level", "info", "--beat"]
    env = env_for(pg_settings, **extra)
    servers = [LiveServer(tmp_path / f"api{i}", env=env) for i in range(2)]
    workers: list[WorkerProcess] = []
    try:
        corpus = queue_scans(services, N, queue=queue)
        started = time.time()
        for server in servers:
            server.start()
        workers = [WorkerProcess(env, *args, log=tmp_path / f"w{i}.log") for i in range(2)]
        send(pg_settings, services, engine, corpus.job_ids)
        wait_for(
            lambda: done_count(services, corpus.job_ids) == N,
            240,
            f"all done: {effects(services, corpus)} {workers[0].output()}",
        )
        time.sleep(2.0)  # let the clock tick a few more periods
        if engine == "embedded":
            # The API processes run the shared loops; readyz counts each one's ticks.
            ticks = sum(clock_runs(s) for s in servers)
        else:
            # Beat in both workers; each tick that ran is logged by the worker that ran it.
            ran = re.compile(r"periodic takedown-clock ran")
            ticks = sum(len(ran.findall(w.log_path.read_text(errors="replace"))) for w in workers)
        elapsed = time.time() - started
    finally:
        for w in workers:
            w.stop()
        for server in servers:
            server.stop()
    got = effects(services, corpus)
    periods = elapsed / CLOCK_S
    print(
        f"\n[{engine}: 2 workers + 2 API processes on PostgreSQL] {N} scans: {got}; "
        f"takedown-clock ran {ticks} times in {periods:.0f} periods"
    )
    services.close()
    assert got.exactly_once(corpus), got
    # Once per period across four processes: never more than the periods elapsed (each of the
    # two that run the loop alone would tick about that often, so double counts would show).
    assert ticks <= periods + 2, (ticks, periods)
    # And it did run: in the API processes about every period; under Celery only when a worker
    # slot frees up between scans (a tick waits in the queue behind them).
    assert ticks >= (0.3 * periods if engine == "embedded" else 3), (ticks, periods)


def test_a_job_submitted_through_the_api_is_run_by_the_serving_process(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    server = LiveServer(settings.data_dir, env=env_for(settings, DIGNITY_JOB_POLL_S="30"))
    server.start()
    try:
        with server.client("platform") as c:
            started = time.monotonic()
            r = c.post("/v1/jobs", files={"file": ("a.jpg", image(7), "image/jpeg")})
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            # The submit wakes the runner: done long before its 30 s poll would find it.
            wait_for(lambda: c.get(f"/v1/jobs/{job_id}").json()["state"] == "done", 20, "done")
            assert time.monotonic() - started < 20
            assert c.get(f"/v1/jobs/{job_id}").json()["result"]["scan_id"] >= 1
    finally:
        server.stop()
