"""The embedded runner: threads in a dignity process that claim queued jobs straight from the
job table and run them with :func:`~dignity.worker.tasks.run_claimed`, the same path a Celery
worker takes. No broker: the table is the queue, so a job queued before a kill -9 is still
there after it (a Kombu in-memory transport would have lost it with the process).

A submit in the same process wakes an idle thread at once (``Services.dispatch_jobs`` calls
:meth:`EmbeddedRunner.wake`); jobs queued by other processes (the CLI, another API process) are
found by a poll every ``DIGNITY_JOB_POLL_S``. A job whose runner died is taken over once its
lease (``DIGNITY_JOB_LEASE_S``) expires, by whichever runner polls next.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from dignity.background import Beat, Worker
from dignity.services import Services
from dignity.worker.tasks import TASKS, run_claimed, worker_name

log = logging.getLogger("dignity.jobs")

WorkerBody = Callable[[threading.Event, Beat], None]


class EmbeddedRunner:
    """``concurrency`` threads polling the job table, woken by local submits."""

    def __init__(
        self,
        services: Services,
        *,
        concurrency: int,
        queues: Sequence[str] | None = None,
        poll_s: float | None = None,
    ) -> None:
        self.services = services
        self.concurrency = concurrency
        self.queues = tuple(queues) if queues else None
        self.poll_s = poll_s if poll_s is not None else services.settings.job_poll_s
        self._wake = threading.Condition()
        self._pending = 0

    def wake(self, job_ids: Sequence[str] = ()) -> None:
        """New jobs were queued here: wake as many idle threads (the dispatcher)."""
        with self._wake:
            self._pending += max(1, len(job_ids))
            self._wake.notify(max(1, len(job_ids)))

    def _wake_all(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def tasks(self) -> list[Worker]:
        """The runner threads as background tasks, for the process's supervisor."""
        return [
            Worker(f"jobs-{i}", self._body(i), on_stop=self._wake_all if i == 0 else None)
            for i in range(self.concurrency)
        ]

    def _body(self, i: int) -> WorkerBody:
        def run(stop: threading.Event, beat: Beat) -> None:
            # One lease owner per thread: a thread's jobs are its own, even in one process.
            worker = f"{worker_name()}:{i}"
            while not stop.is_set():
                try:
                    ran = self.run_one(worker)
                except Exception as exc:  # a database blip: record it, poll again later
                    log.exception("embedded runner %s failed", worker)
                    beat.failed(exc)
                    ran = False
                else:
                    if ran:
                        beat.ok()
                if not ran:
                    self._idle(stop)

        return run

    def run_one(self, worker: str) -> bool:
        """Claim and run the oldest runnable job; False when there was none."""
        jobs = self.services.jobs
        job = jobs.claim_next(worker, queues=self.queues, kinds=list(TASKS))
        if job is None:
            return False
        state = run_claimed(self.services, jobs, job, worker)
        log.info("job %s (%s): %s", job.id, job.kind, state)
        return True

    def _idle(self, stop: threading.Event) -> None:
        with self._wake:
            if self._pending > 0:
                self._pending -= 1
                return
            if not stop.is_set():
                self._wake.wait(self.poll_s)
            self._pending = max(0, self._pending - 1)
