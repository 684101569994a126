"""Which engine runs a process's jobs, chosen from Settings: Celery when ``DIGNITY_BROKER_URL``
is set, else the embedded runner; :func:`start` wires it into a serving process's services.

In both, a submit reaches a worker through ``Services.job_dispatcher`` (a Celery message, or a
wake-up of the local runner) and the job table is the fallback: the ``job-recovery`` loop sends
again what the broker lost and ends what no worker may run any more. The shared periodic loops
(takedown clock, purge, exchange fetches) run under the process's supervisor in the embedded
default, and under Celery beat when a broker is configured; each tick claims its period in the
database first, so any number of processes run it once per period.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from dignity.services import SERVER_TASKS, Services
from dignity.worker.embedded import EmbeddedRunner
from dignity.worker.periodic import recovery_task, shared_tasks

# The modules whose @task bodies a worker can run (importing one registers its kinds). A kind
# no module here registers stays queued for a process that knows it.
TASK_MODULES = ("dignity.worker.tasks",)


def load_tasks() -> None:
    for name in TASK_MODULES:
        importlib.import_module(name)


def start(services: Services, *, background: Iterable[str] = SERVER_TASKS) -> None:
    """Start a serving process: its background loops, its share of the job work, and the way
    its submits reach a worker. Synchronous routes never wait on any of it."""
    load_tasks()
    s = services.settings
    wanted = list(background)
    if s.broker_url:
        from dignity.worker.celery_app import backlog, dispatcher, make_app

        app = make_app(s)
        send = dispatcher(app, services)
        services.job_dispatcher = send
        services.supervisor.add(recovery_task(services, send, backlog(app)))
        # Celery beat runs the shared loops; this process keeps its own (index refresh, outbox).
        shared = set(shared_tasks(services))
        wanted = [name for name in wanted if name not in shared]
    else:
        services.supervisor.add(recovery_task(services, None))
        if s.job_concurrency > 0:
            runner = EmbeddedRunner(services, concurrency=s.job_concurrency)
            services.job_dispatcher = runner.wake
            for worker in runner.tasks():
                services.supervisor.add(worker)
    services.start(background=wanted)
