"""The composition root: one place that builds a process's services from ``Settings``, for every
face (the HTTP app, the CLI, and the background workers the jobs issue adds).

:class:`Services` builds each part on first use (a CLI command that lists keys never loads the
index or the nudity model) and :meth:`Services.start` readies a long-running process: it loads
the index and the source photos, warms the signal plug-ins and starts the background tasks under
one :class:`~dignity.background.Supervisor`. Workflow packages (actions, cases, takedown) receive
what they need as constructor arguments and never import a face; what happens after each scan is
an explicit, ordered list of recorders (:mod:`dignity.services.recorders`). Dependency direction:
``api``, ``cli`` and workers -> ``services`` -> the core -> ``storage``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sqlalchemy.orm import Session

from dignity.actions.delivery import DeliveryConfig, DeliveryWorker
from dignity.actions.outbox import OutboxService
from dignity.actions.webhooks import WebhookService
from dignity.audit import record_policy
from dignity.background import Periodic, Supervisor
from dignity.cases.service import CaseService
from dignity.derivatives.service import SourceIndex, SourceService
from dignity.exchanges.service import ExchangeService
from dignity.jobs.periods import claim_period
from dignity.jobs.service import JobInfo, JobService
from dignity.keys import KeyInfo, KeyService
from dignity.matching.banks import BankService
from dignity.matching.engine import MatchEngine
from dignity.scanning import Scanner, ScanResult
from dignity.services.recorders import (
    CaseMatchRecorder,
    MatchEventRecorder,
    RecordedScan,
    ScanRecorder,
)
from dignity.services.slots import Slots
from dignity.settings import Settings
from dignity.storage.db import Database, open_database
from dignity.takedown.notices import NoticeService
from dignity.takedown.removal import RemovalService
from dignity.takedown.requests import TakedownService
from dignity.takedown.review import ReviewQueue
from dignity.takedown.scanlog import ScanLog
from dignity.takedown.sessions import SessionService

log = logging.getLogger("dignity.services")

# The scan log keeps hashes for sweeps only as long as the retention allows; once a day is
# plenty (with several processes each purges, harmlessly).
SCAN_LOG_PURGE_S = 24 * 3600.0

# Background tasks a serving process runs (names as /readyz and /metrics report them).
SERVER_TASKS = (
    "index-refresh",
    "source-refresh",
    "takedown-clock",
    "scan-log-purge",
    "exchange-fetch",
    "outbox",
)
# How often the exchange-fetch tick looks for exchanges due (each has its own interval).
EXCHANGE_TICK_S = 60.0


@dataclass(frozen=True)
class Profile:
    """How a face uses the services: whether the index keeps a snapshot on disk (a long-running
    process restarts in seconds with one; a one-shot command would only write it)."""

    name: str
    index_snapshot: bool


SERVER = Profile("server", index_snapshot=True)
CLI = Profile("cli", index_snapshot=False)
WORKER = Profile("worker", index_snapshot=True)


class Services:
    """The wired objects of one process. Parts are built on first use, once; building is not
    locked, so a multi-threaded face builds what it needs before its threads start
    (:func:`build_services` and :meth:`start` do)."""

    def __init__(
        self, settings: Settings, *, profile: Profile = SERVER, db: Database | None = None
    ) -> None:
        self.settings = settings
        self.profile = profile
        self._db = db
        # Shared loops tick once per period across every process on the database.
        self.supervisor = Supervisor(claim=self.claim_period)
        # A cap on CPU-heavy work (decodes) per process, shared by every face in it.
        self.slots = Slots(settings.max_concurrency)
        # Lookups by hash have their own: they never wait behind a decode.
        self.lookup_slots = Slots(settings.lookup_concurrency)
        self.last_refresh = 0.0  # wall time the index last caught up with the change log
        # Installed by the task engine (dignity.worker): how a queued job reaches a worker.
        self.job_dispatcher: Callable[[Sequence[str]], None] | None = None

    # -- storage and the core ----------------------------------------------------------------
    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = open_database(self.settings.resolved_database_url)
        return self._db

    @cached_property
    def banks(self) -> BankService:
        return BankService(self.db)

    @cached_property
    def keys(self) -> KeyService:
        return KeyService(self.db)

    @cached_property
    def engine(self) -> MatchEngine:
        snapshots = self.profile.index_snapshot and self.settings.index_snapshot
        return MatchEngine(
            self.db,
            min_quality=self.settings.pdq_min_quality,
            # A checked snapshot of the index makes restarts at 1e7 entries take seconds.
            snapshot_dir=self.settings.data_dir / "index" if snapshots else None,
            spawn=self.supervisor.spawn,
        )

    @cached_property
    def sources(self) -> SourceIndex:
        """Registered source photos in memory for edited-derivative detection; the scanner's
        matcher, kept current by the same change-log rule as the bank index."""
        return SourceIndex(self.db)

    @cached_property
    def source_registry(self) -> SourceService:
        return SourceService(self.db)

    @cached_property
    def scanner(self) -> Scanner:
        # Built before serving: a policy file with mistakes stops the service at start.
        return Scanner(self.settings, self.engine, derivatives=self.sources.matcher)

    # -- workflows -----------------------------------------------------------------------------
    @cached_property
    def cases(self) -> CaseService:
        return CaseService.from_settings(self.db, self.settings, self.banks)

    @cached_property
    def scan_log(self) -> ScanLog:
        return ScanLog(self.db, self.settings)

    @cached_property
    def takedowns(self) -> TakedownService:
        return TakedownService(self.db, self.settings)

    @cached_property
    def review(self) -> ReviewQueue:
        return ReviewQueue(self.db, self.settings)

    @cached_property
    def review_sessions(self) -> SessionService:
        """Reviewer sign-in; one per process, as it holds the per-address limiter of failed
        sign-ins."""
        return SessionService(self.db, self.settings, self.keys)

    @cached_property
    def removals(self) -> RemovalService:
        return RemovalService(self.db, self.settings)

    @cached_property
    def notices(self) -> NoticeService:
        return NoticeService(self.db, self.settings)

    @cached_property
    def outbox(self) -> OutboxService:
        return OutboxService(self.db)

    @cached_property
    def webhooks(self) -> WebhookService:
        return WebhookService(self.db)

    @cached_property
    def exchanges(self) -> ExchangeService:
        return ExchangeService(self.db, self.settings)

    @cached_property
    def jobs(self) -> JobService:
        return JobService(self.db, lease_s=self.settings.job_lease_s)

    def submit_job(
        self, kind: str, payload: Mapping[str, Any], **options: Any
    ) -> tuple[JobInfo, bool]:
        """Queue a job and hand it to the task engine; returns it and whether it is new (a
        repeated dedupe key returns the first job, not dispatched again)."""
        job, new = self.jobs.submit(kind, payload, **options)
        if new:
            self.dispatch_jobs([job.id])
        return job, new

    def dispatch_jobs(self, job_ids: Sequence[str]) -> None:
        """Tell the task engine about queued jobs. The engine installs ``job_dispatcher``
        (Celery: send a message per job); without one the embedded runner finds them by
        polling the job table, so nothing is lost either way."""
        if self.job_dispatcher is not None and job_ids:
            self.job_dispatcher(job_ids)

    @cached_property
    def delivery(self) -> DeliveryWorker:
        return DeliveryWorker(self.db, DeliveryConfig.from_settings(self.settings))

    @cached_property
    def recorders(self) -> tuple[ScanRecorder, ...]:
        """After the scan log's write, in this order: the webhook event, then case counters."""
        return (MatchEventRecorder(self.db), CaseMatchRecorder(self.cases))

    # -- what a scan leaves behind -------------------------------------------------------------
    def record_scan(
        self,
        result: ScanResult,
        key: KeyInfo | None,
        *,
        content_id: str | None = None,
        uploader: str | None = None,
        job_id: str | None = None,
        session: Session | None = None,
    ) -> int:
        """Write the scan log row, then run every recorder; returns the scan's id. Runs before
        the platform gets its answer: a failed write fails the scan (503) and the platform
        retries, so a scan that was answered is always recorded.

        A queued scan passes its ``job_id`` and the session that ends the job: the row, its
        review item, the event and the case counters then commit with the job's end, and a job
        whose scan is on record already (run again after a worker died) adds nothing."""
        if job_id is not None and session is not None:
            found = self.scan_log.job_scan(session, job_id)
            if found is not None:
                return found
        scan_id = self.scan_log.record(
            result, key, content_id=content_id, uploader=uploader, job_id=job_id, session=session
        )
        recorded = RecordedScan(result, key, scan_id)
        for recorder in self.recorders:
            recorder.record(recorded, session)
        return scan_id

    # -- keeping current -----------------------------------------------------------------------
    def refresh_index(self) -> None:
        """Replay the bank change log into this process's index (read-your-writes after a
        write, and the ``index-refresh`` loop)."""
        self.engine.refresh()
        self.last_refresh = time.time()

    def refresh_sources(self) -> None:
        self.sources.refresh()

    def background_tasks(self) -> list[Periodic]:
        """The periodic loops of a serving process, as data: the jobs issue can move any of
        them onto its task engine by running the same tick there instead."""
        s = self.settings
        return [
            Periodic("index-refresh", s.index_refresh_s, self.refresh_index),
            Periodic("source-refresh", s.index_refresh_s, self.refresh_sources),
            # Escalates takedown requests near their deadline.
            Periodic("takedown-clock", s.takedown_check_s, self.takedowns.escalate, shared=True),
            Periodic(
                "scan-log-purge",
                SCAN_LOG_PURGE_S,
                self.scan_log.purge,
                # Soon after start too: a process restarted daily would otherwise never purge.
                first_after_s=s.takedown_check_s,
                shared=True,
            ),
            # What `dignity exchange run` does, one pass over the exchanges due.
            Periodic(
                "exchange-fetch",
                min(EXCHANGE_TICK_S, s.exchange_interval_s),
                lambda: list(self.exchanges.run_due()),
                shared=True,
            ),
        ]

    def claim_period(self, task: Periodic) -> bool:
        """Whether this process runs ``task``'s tick in the current period (the first process
        to claim it on the database does; the others skip it)."""
        return claim_period(self.db, task.name, task.interval_s, _process_name())

    def start(self, *, background: Iterable[str] | None = SERVER_TASKS) -> None:
        """Ready a long-running process: load the index and source photos, warm the plug-ins,
        then start the named background tasks (None or empty: none)."""
        self.engine.load()
        self.sources.load()
        self.scanner.warm()
        self.last_refresh = time.time()
        wanted = set(background or ())
        for task in self.background_tasks():
            if task.name in wanted:
                self.supervisor.add(task)
        if "outbox" in wanted:
            for worker in self.delivery.tasks():
                self.supervisor.add(worker)
        self.supervisor.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the background tasks, then close the database (a task still running after the
        timeout is left to finish on its own: what it does is idempotent or leased)."""
        stopped = self.supervisor.stop(timeout_s)
        if "delivery" in self.__dict__:
            self.delivery.close(all_stopped=stopped)
        self.close()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def _process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def build_services(settings: Settings, *, profile: Profile = SERVER) -> Services:
    """Services for a long-running process, with the parts that can refuse to start (the
    policy file, the plug-ins, the database) built now, so a mistake stops the process at start
    with one clear error rather than in the first request."""
    services = Services(settings, profile=profile)
    try:
        services.scanner  # noqa: B018
        # Parts that keep per-process state are built here, before request threads can race
        # to build two (cached_property takes no lock from Python 3.12 on); the rest are
        # stateless views of the database, where a duplicate would be harmless.
        services.review_sessions  # noqa: B018
        services.keys  # noqa: B018
        # The policy in force goes into the audit log, once per change of file or content.
        record_policy(services.db, settings.policy_file)
    except Exception:
        services.close()
        raise
    return services


__all__ = ["CLI", "SERVER", "SERVER_TASKS", "WORKER", "Profile", "Services", "build_services"]
