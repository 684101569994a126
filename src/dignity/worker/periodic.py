"""Periodic work on the task engine: the shared loops a deployment runs once per period in all
(the takedown clock, the scan-log purge, exchange fetches, and the engine's own job recovery),
by name, for Celery beat to schedule; and the recovery tick itself.

The loops are the ones :meth:`Services.background_tasks` declares (data, not code copied here);
each tick first claims its period in the database (:mod:`dignity.jobs.periods`), so two beats,
two workers or an API process running the same loop never tick twice in one period.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from dignity.background import Periodic
from dignity.services import Services

log = logging.getLogger("dignity.jobs")


Send = Callable[[Sequence[str]], None]
# Messages waiting in a queue, None when the broker cannot say.
Backlog = Callable[[str], "int | None"]


def recover(
    services: Services, send: Send | None, backlog: Backlog | None = None
) -> dict[str, int]:
    """One recovery pass: end the jobs no worker may run any more, then (with a broker) send
    again what no message will bring to a worker: a job never sent (the broker was away at
    submit), a running job whose worker died (its lease expired), and a queued job sent long
    ago and not claimed while its queue holds no message (the broker lost it). A queue with a
    backlog is left alone: its jobs are waiting their turn, and resending each of them every
    pass would flood the broker. The embedded runner needs no resend: it reads the table."""
    jobs = services.jobs
    settled = jobs.settle_lost()
    resend: list[str] = []
    if send is not None:
        depth: dict[str, int | None] = {}
        for job in jobs.undispatched(older_than_s=services.settings.job_redispatch_s):
            if job.state != "queued" or job.dispatched_at is None:
                resend.append(job.id)
                continue
            if job.queue not in depth:
                depth[job.queue] = backlog(job.queue) if backlog is not None else 0
            if depth[job.queue] == 0:
                resend.append(job.id)
        if resend:
            send(resend)
    if settled or resend:
        log.info("job recovery: %d settled, %d sent again", settled, len(resend))
    return {"settled": settled, "resent": len(resend)}


def recovery_task(
    services: Services, send: Send | None, backlog: Backlog | None = None
) -> Periodic:
    return Periodic(
        "job-recovery",
        services.settings.job_recovery_s,
        lambda: recover(services, send, backlog),
        shared=True,
    )


def shared_tasks(services: Services) -> dict[str, Periodic]:
    """The loops that run once per period across the deployment, by name."""
    return {t.name: t for t in services.background_tasks() if t.shared}


def run_shared(services: Services, name: str) -> bool:
    """Run shared loop ``name``'s tick if this process wins its period; False if it did not
    (another process ran it) or the name is unknown."""
    task = shared_tasks(services).get(name)
    if task is None:
        log.warning("no shared periodic task named %r", name)
        return False
    if not services.claim_period(task):
        return False
    started = time.monotonic()
    task.tick()
    log.info("periodic %s ran in %.2f s", name, time.monotonic() - started)
    return True
