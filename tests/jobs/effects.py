"""What the engine tests share: a corpus of small benign images (half of them in a review
bank, so their scans leave a review item and a ``scan.match`` event), queued scan jobs, the
effects counted from the database, and a ``dignity worker`` subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dignity.actions.models import OutboxEvent
from dignity.actions.webhooks import WebhookService
from dignity.jobs.models import Job
from dignity.matching.banks import NewEntry
from dignity.samples import encode, landscape
from dignity.services import CLI, Services
from dignity.settings import Settings
from dignity.takedown.models import ReviewItem, ScanRecord

ROOT = Path(__file__).resolve().parents[2]
BROKER = os.environ.get("DIGNITY_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
# Under pytest-xdist (`make unit`), every test that talks to the machine's RabbitMQ or Redis is in
# this one group, so they run one after another on one worker: the test that restarts RabbitMQ
# never runs beside another broker test.
ON_THE_BROKER = pytest.mark.xdist_group("broker")


def image(seed: int) -> bytes:
    return encode(landscape(seed, (160, 120)), quality=85)


@dataclass
class Corpus:
    """``n`` queued scans; the even seeds are banked (review), so they match."""

    job_ids: list[str]
    matching: int


def queue_scans(services: Services, n: int, *, queue: str = "default", seed0: int = 0) -> Corpus:
    services.banks.create_bank(f"review-{seed0}", purpose="review")
    matching = 0
    entries = []
    images = [image(seed0 + i) for i in range(n)]
    for i, data in enumerate(images):
        if i % 2 == 0:
            pdq = services.scanner.analyze(data).hashes.pdq
            assert pdq is not None
            entries.append(NewEntry("pdq", pdq.hex))
            matching += 1
    services.banks.add_entries(f"review-{seed0}", entries)
    if services.engine.loaded:
        services.refresh_index()
    WebhookService(services.db).create(
        url="https://hooks.example.org/jobs", secret="s3cret-for-tests-0123456789", events="*"
    )
    ids = [
        services.jobs.submit("scan", {"content_id": f"c{seed0 + i}"}, media=data, queue=queue)[0].id
        for i, data in enumerate(images)
    ]
    return Corpus(ids, matching)


@dataclass
class Effects:
    states: Counter[str]
    scans: int  # scan_log rows written by these jobs
    scans_per_job_max: int
    review_items: int
    match_events: int
    retried: int  # jobs that needed more than one attempt

    def exactly_once(self, corpus: Corpus) -> bool:
        n = len(corpus.job_ids)
        return (
            self.states == Counter({"done": n})
            and self.scans == n
            and self.scans_per_job_max == 1
            and self.review_items == corpus.matching
            and self.match_events == corpus.matching
        )


def effects(services: Services, corpus: Corpus) -> Effects:
    ids = corpus.job_ids
    with services.db.session() as s:
        states = Counter(s.scalars(select(Job.state).where(Job.id.in_(ids))))
        retried = s.scalar(select(func.count()).where(Job.id.in_(ids), Job.attempts > 1)) or 0
        per_job = list(
            s.execute(
                select(ScanRecord.job_id, func.count())
                .where(ScanRecord.job_id.in_(ids))
                .group_by(ScanRecord.job_id)
            )
        )
        scan_ids = select(ScanRecord.id).where(ScanRecord.job_id.in_(ids))
        reviews = s.scalar(
            select(func.count()).select_from(ReviewItem).where(ReviewItem.scan_id.in_(scan_ids))
        )
        events = [
            json.loads(p)
            for p in s.scalars(select(OutboxEvent.payload).where(OutboxEvent.type == "scan.match"))
        ]
    return Effects(
        states=states,
        scans=sum(n for _, n in per_job),
        scans_per_job_max=max((n for _, n in per_job), default=0),
        review_items=int(reviews or 0),
        match_events=len(events),
        retried=int(retried),
    )


def wait_for(pred: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def done_count(services: Services, ids: list[str]) -> int:
    with services.db.session() as s:
        return int(s.scalar(select(func.count()).where(Job.id.in_(ids), Job.state == "done")) or 0)


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DIGNITY_") or k.startswith("DIGNITY_TEST")
    }
    env.update(
        {
            "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
            "DIGNITY_DATA_DIR": str(settings.data_dir),
            "DIGNITY_DATABASE_URL": settings.resolved_database_url,
            "DIGNITY_JOB_LEASE_S": "3",
            "DIGNITY_JOB_POLL_S": "0.2",
            "DIGNITY_JOB_RECOVERY_S": "1",
            "DIGNITY_JOB_REDISPATCH_S": "5",
            # The worker's index follows bank changes quickly (tests bank before queueing).
            "DIGNITY_INDEX_REFRESH_S": "0.2",
        }
    )
    env.update(extra)
    return env


class WorkerProcess:
    """``dignity worker`` in its own process group (a prefork worker's children die with it),
    with the test task plugin loaded."""

    def __init__(self, env: dict[str, str], *args: str, log: Path) -> None:
        self.log_path = log
        self._log = log.open("ab")
        code = "import tests.jobs.plugin; from dignity.cli import main; main()"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, "worker", *args],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def fresh_services(settings: Settings) -> Services:
    services = Services(settings, profile=CLI)
    services.engine.load()
    return services


def broker_answers(url: str) -> bool:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        return False


def delete_queues(url: str, names: list[str]) -> None:
    from kombu import Connection

    with Connection(url, connect_timeout=2) as conn:
        channel = conn.channel()
        for name in names:
            try:
                channel.queue_delete(name)
            except Exception:
                channel = conn.channel()  # a missing queue closes the channel
        channel.close()
