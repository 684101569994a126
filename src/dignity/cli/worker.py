"""``dignity worker``: run background jobs in this process until SIGINT/SIGTERM.

With ``DIGNITY_BROKER_URL`` set it is a Celery worker (``--pool``, ``--beat`` to also run the
schedule of the shared periodic loops); without, it is the embedded runner alone, reading the
job table of the configured database (a separate worker process next to ``dignity serve``, or
on another machine sharing its PostgreSQL). Either way it also runs the ``job-recovery`` loop.
"""

from __future__ import annotations

import os

import click

from dignity.cli.app import Context, cli, pass_ctx, stop_on_signals, wait_for
from dignity.worker.engine import load_tasks


@cli.command("worker")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=None,
    help="Jobs run at once (default: DIGNITY_JOB_CONCURRENCY, or 2).",
)
@click.option(
    "--queues", default=None, help="Comma-separated queues to take jobs from (default: all)."
)
@click.option(
    "--pool",
    type=click.Choice(["prefork", "threads", "solo"]),
    default="prefork",
    show_default=True,
    help="Celery only: processes (CPU-bound scans) or threads.",
)
@click.option("--beat", is_flag=True, help="Celery only: also run the periodic schedule.")
@click.option("--log-level", default="info", show_default=True)
@pass_ctx
def worker(
    ctx: Context,
    concurrency: int | None,
    queues: str | None,
    pool: str,
    beat: bool,
    log_level: str,
) -> None:
    """Run background jobs (scans, backfill batches, retro-matches) until interrupted."""
    import logging

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    s = ctx.settings
    n = concurrency or s.job_concurrency or 2
    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    ctx.db.migrate()
    load_tasks()
    if s.broker_url:
        _celery(ctx, n, names, pool, beat, log_level)
    else:
        _embedded(ctx, n, names)


def _celery(
    ctx: Context, n: int, queues: list[str] | None, pool: str, beat: bool, log_level: str
) -> None:
    from celery import signals

    from dignity.services import WORKER, build_services
    from dignity.worker.celery_app import DEFAULT_QUEUE, backlog, dispatcher, make_app
    from dignity.worker.periodic import recovery_task

    app = make_app(ctx.settings)
    # The recovery loop runs in the main process, started once the pool has forked (a thread
    # running during a fork could leave a lock held in the children).
    recovery = build_services(ctx.settings, profile=WORKER)
    recovery.supervisor.add(recovery_task(recovery, dispatcher(app, recovery), backlog(app)))

    def on_ready(**_: object) -> None:
        recovery.supervisor.start()

    def on_shutdown(**_: object) -> None:
        recovery.stop(timeout_s=5.0)

    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_shutdown.connect(on_shutdown, weak=False)
    argv = [
        "worker",
        # A node name of this process's own: Celery's default (celery@host) is the same for
        # every worker on a machine, and its remote-control queue is exclusive to one of
        # them, so a second worker started beside a first (or beside one still closing) died
        # at start with RESOURCE_LOCKED.
        f"--hostname=dignity-{os.getpid()}@%h",
        f"--concurrency={n}",
        f"--pool={pool}",
        # By default the jobs' queue and the one beat sends the periodic ticks to.
        f"--queues={','.join(queues or sorted({DEFAULT_QUEUE, ctx.settings.periodic_queue}))}",
        f"--loglevel={log_level.upper()}",
        "--without-gossip",
        "--without-mingle",
    ]
    if beat:
        argv.append("--beat")
        argv.append(f"--schedule={ctx.settings.data_dir / 'celerybeat-schedule'}")
    app.worker_main(argv=argv)


def _embedded(ctx: Context, n: int, queues: list[str] | None) -> None:
    from dignity.services import WORKER, build_services
    from dignity.worker.celery_app import WORKER_LOOPS
    from dignity.worker.embedded import EmbeddedRunner
    from dignity.worker.periodic import recovery_task

    services = build_services(ctx.settings, profile=WORKER)
    runner = EmbeddedRunner(services, concurrency=n, queues=queues)
    # Children a job fans out are queued from here: wake this process's own threads.
    services.job_dispatcher = runner.wake
    for task in runner.tasks():
        services.supervisor.add(task)
    services.supervisor.add(recovery_task(services, None))
    with stop_on_signals() as stop:
        try:
            services.start(background=WORKER_LOOPS)
            click.echo(f"dignity worker: embedded runner, {n} thread(s), no broker", err=True)
            wait_for(stop)
        finally:
            services.stop(timeout_s=30.0)
