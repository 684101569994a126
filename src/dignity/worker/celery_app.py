"""Celery, for deployments past one machine: the app built from Settings, one task
``dignity.run_job(job_id)`` that runs :func:`~dignity.worker.tasks.run_job` (the path the
embedded runner takes too), ``dignity.periodic(name)`` for beat, and the dispatcher that sends
a message per queued job.

The job table stays the truth: the message carries only the job id, no result backend is used
(the API reads state from the table), and a message is acknowledged after the job ran
(``acks_late``; a worker killed mid-job leaves its message to be delivered again, and the job's
conditional claim and single-transaction end make the rerun record its effect once). Each worker
process builds its services once, with the WORKER profile, on its first task.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from celery import Celery

from dignity.jobs.service import JobNotFound
from dignity.services import WORKER, Services, build_services
from dignity.settings import Settings
from dignity.worker.engine import load_tasks
from dignity.worker.periodic import run_shared, shared_tasks
from dignity.worker.tasks import run_job, worker_name

log = logging.getLogger("dignity.jobs")

RUN_JOB = "dignity.run_job"
PERIODIC = "dignity.periodic"
DEFAULT_QUEUE = "default"
# Loops each worker process keeps for itself (its index follows bank changes).
WORKER_LOOPS = ("index-refresh", "source-refresh")

_lock = threading.Lock()
_process: dict[str, Services] = {}


def process_services(settings: Settings, app: Celery) -> Services:
    """This worker process's services, built and started on first use (in a prefork child,
    after the fork: nothing is shared with the parent). Jobs a job fans out are sent from
    here at once."""
    with _lock:
        services = _process.get("services")
        if services is None:
            services = build_services(settings, profile=WORKER)
            services.job_dispatcher = dispatcher(app, services)
            services.start(background=WORKER_LOOPS)
            _process["services"] = services
        return services


def make_app(settings: Settings) -> Celery:
    """A Celery app for ``settings.broker_url`` with dignity's two tasks registered."""
    if not settings.broker_url:
        raise ValueError("make_app needs DIGNITY_BROKER_URL")
    load_tasks()
    app = Celery("dignity", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        # Acknowledge after the job ran; a worker lost mid-job gives the message back.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One message at a time per process: a long scan never holds others hostage.
        worker_prefetch_multiplier=1,
        # State lives in the job table: no result backend.
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        task_default_queue=DEFAULT_QUEUE,
        broker_connection_retry_on_startup=True,
        # A worker keeps its own logging (the CLI's), and never its stdout as a log.
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        beat_schedule=beat_schedule(settings),
        timezone="UTC",
    )

    def run_job_task(job_id: str) -> str:
        services = process_services(settings, app)
        # One lease owner per executing thread (the threads pool runs several in a process).
        worker = f"{worker_name()}:{threading.get_ident()}"
        return run_job(services, services.jobs, job_id, worker)

    def periodic_task(name: str) -> bool:
        return run_shared(process_services(settings, app), name)

    # Registered by name: a message carries "dignity.run_job" and the job id, nothing else.
    app.task(name=RUN_JOB, acks_late=True, reject_on_worker_lost=True, ignore_result=True)(
        run_job_task
    )
    app.task(name=PERIODIC, ignore_result=True)(periodic_task)
    return app


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Celery beat's schedule: every shared loop of :meth:`Services.background_tasks` at its
    interval (each tick still claims its period, so a second beat is harmless)."""
    services = Services(settings, profile=WORKER)
    try:
        return {
            name: {
                "task": PERIODIC,
                "schedule": task.interval_s,
                "args": (name,),
                "options": {"queue": settings.periodic_queue},
            }
            for name, task in shared_tasks(services).items()
        }
    finally:
        services.close()


def backlog(app: Celery) -> Callable[[str], int | None]:
    """How many messages wait in a queue (a passive declare: a queue that does not exist yet
    holds none); None when the broker does not answer."""

    def depth(queue: str) -> int | None:
        try:
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1)
                channel = conn.channel()
                try:
                    return int(channel.queue_declare(queue=queue, passive=True).message_count)
                except Exception as exc:
                    # RabbitMQ answers a passive declare of a missing queue with 404.
                    if getattr(exc, "code", None) == 404:
                        return 0
                    raise
                finally:
                    with contextlib.suppress(Exception):
                        channel.close()
        except Exception:
            log.warning("could not read the depth of queue %s", queue)
            return None

    return depth


def dispatcher(app: Celery, services: Services) -> Callable[[Sequence[str]], None]:
    """Send a ``dignity.run_job`` message per job (to the job's queue) and mark it sent. A
    broker that is away fails nothing: the job stays queued, unmarked, and the recovery loop
    sends it once the broker answers."""

    def send(job_ids: Sequence[str]) -> None:
        sent: list[str] = []
        try:
            for job_id in job_ids:
                try:
                    queue = services.jobs.get(job_id).queue
                except JobNotFound:
                    continue
                app.send_task(
                    RUN_JOB,
                    args=(job_id,),
                    queue=queue,
                    retry=True,
                    retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
                )
                sent.append(job_id)
        except Exception:
            log.warning("could not send %d job(s) to the broker; recovery will", len(job_ids))
        finally:
            services.jobs.mark_dispatched(sent)

    return send
