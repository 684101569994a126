"""``dignity backfill SOURCE``: scan an existing archive (a directory, a file of URLs, or
``s3://bucket/prefix``) into the scan log as background jobs, resumably.

The command queues one ``backfill`` job; workers (``dignity worker``, or the service's embedded
runner) list the source and scan it in batches, on as many processes and machines as run. With
``--here`` this process is the worker (no other process is needed). Progress (items finished,
failures, matches and the rate) is read from the job table every ``--interval`` seconds and shown
as a rich progress bar on stderr; the summary (decisions per action, failures per error code) is
one JSON line on stdout. Interrupting the command leaves the jobs queued or running; running it
again with the same SOURCE skips every item already done. Exit status 1 when some items failed.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dignity.backfill import BackfillService, parse_source
from dignity.cli.app import EXIT_PARTIAL, Context, cli, emit, handles_errors, pass_ctx
from dignity.jobs.service import JobInfo
from dignity.services import Services
from dignity.worker.tasks import run_claimed, worker_name

BACKFILL_KINDS = ("backfill", "backfill.batch")


def run_here(services: Services, stop: threading.Event, run_id: str) -> None:
    """Be a worker for backfill jobs until the run is over (or ``stop``)."""
    jobs = services.jobs
    worker = f"{worker_name()}:backfill"
    while not stop.is_set():
        job = jobs.claim_next(worker, kinds=BACKFILL_KINDS)
        if job is not None:
            run_claimed(services, jobs, job, worker)
            continue
        if _over(services, run_id):
            return
        stop.wait(0.2)


def _over(services: Services, run_id: str) -> bool:
    run = services.jobs.get(run_id)
    if not run.final:
        return False
    counts = services.jobs.counts(parent_id=run_id)
    return counts["queued"] == 0 and counts["running"] == 0


def _table(summary: dict[str, Any]) -> Table:
    table = Table(title="backfill", show_header=True)
    table.add_column("")
    table.add_column("items", justify="right")
    table.add_row("scanned", str(summary["scanned"]))
    table.add_row("matched", str(summary["matched"]))
    for action, n in sorted(summary["actions"].items()):
        table.add_row(f"decision {action}", str(n))
    table.add_row("failed", str(summary["failed"]))
    for code, n in sorted(summary["errors"].items()):
        table.add_row(f"  {code}", str(n))
    return table


@cli.command("backfill")
@click.argument("source")
@click.option("--batch-size", default=100, show_default=True, help="Items per batch job.")
@click.option(
    "--s3-endpoint-url",
    default=None,
    help="An S3-compatible server (MinIO, Ceph); default: boto3's configuration.",
)
@click.option("--here", is_flag=True, help="Run the jobs in this process (no worker needed).")
@click.option("--wait/--no-wait", default=True, help="Follow progress until the run ends.")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between polls.")
@pass_ctx
@handles_errors
def backfill_cmd(
    ctx: Context,
    source: str,
    batch_size: int,
    s3_endpoint_url: str | None,
    here: bool,
    wait: bool,
    interval: float,
) -> None:
    """Scan SOURCE (a directory, a file of URLs, or s3://BUCKET/PREFIX) into the scan log.

    Prints the run's job id, then (with --wait) its summary, as JSON lines on stdout."""
    if not 1 <= batch_size <= 10_000:
        raise click.BadParameter("must be 1..10000", param_hint="--batch-size")
    services = ctx.services
    payload = {
        "source": parse_source(source, endpoint_url=s3_endpoint_url),
        "page_size": batch_size,
    }
    job, _new = services.submit_job("backfill", payload)
    emit({"job_id": job.id, "state": job.state, "source": payload["source"]})
    if not wait and not here:
        return
    stop = threading.Event()
    runner: threading.Thread | None = None
    if here:
        runner = threading.Thread(
            target=run_here, args=(services, stop, job.id), name="backfill-here", daemon=True
        )
        runner.start()
    try:
        final = _follow(services, job.id, interval, runner)
    finally:
        stop.set()
        if runner is not None:
            runner.join()
    summary = BackfillService(services.db).run_summary(job.id)
    listing = final.result or {}
    out = {
        "job_id": job.id,
        "state": final.state,
        "listed": listing.get("listed"),
        "already_done": listing.get("already_done"),
        **summary,
    }
    Console(stderr=True).print(_table(summary))
    emit(out)
    if final.state != "done" or summary["failed"]:
        sys.exit(EXIT_PARTIAL)


def _follow(
    services: Services, run_id: str, interval: float, runner: threading.Thread | None
) -> JobInfo:
    """Show the run's progress until it and its batches are over; returns the run's job."""
    console = Console(stderr=True)
    columns = (
        TextColumn("[bold]backfill"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    started = time.monotonic()
    with Progress(*columns, console=console, transient=False) as bar:
        task_id = bar.add_task("backfill", total=None, detail="listing")
        while True:
            run = services.jobs.get(run_id)
            counts = run.progress_counts
            done = run.progress_done
            rate = done / max(1e-3, time.monotonic() - started)
            detail = (
                f"failed {counts.get('failed', 0)}  matched {counts.get('matched', 0)}"
                f"  {rate:.1f}/s"
            )
            bar.update(task_id, completed=done, total=run.progress_total, detail=detail)
            if _over(services, run_id) or (runner is not None and not runner.is_alive()):
                return services.jobs.get(run_id)
            time.sleep(interval)
