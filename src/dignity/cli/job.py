"""``dignity job submit|show|list|cancel``: background jobs from the command line.

``submit`` queues a scan of a file, a URL or an object-store key and prints the job (JSON);
with ``--wait`` it follows the job until it ends and exits non-zero when it failed. A worker
runs it: ``dignity serve`` (its embedded runner), ``dignity worker``, or Celery workers where
a broker is configured. The job's state is read from the database, so any machine with the
database URL can follow a job.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import click

from dignity.cli.app import Context, cli, emit, handles_errors, pass_ctx
from dignity.errors import InputError, Unavailable
from dignity.jobs.models import JOB_STATES
from dignity.jobs.service import JobInfo


class JobTimeout(Unavailable):
    """``--wait`` gave up: the job is still queued or running (it goes on)."""

    codes: ClassVar[tuple[str, ...]] = ("job.wait_timeout",)


def _public(job: JobInfo) -> dict[str, Any]:
    return job.to_dict()


def _wait(ctx: Context, job: JobInfo, timeout_s: float) -> JobInfo:
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while not job.final:
        if time.monotonic() > deadline:
            raise JobTimeout(
                f"job {job.id} is still {job.state} after {timeout_s:g} s; is a worker running "
                "(dignity serve or dignity worker)?",
                code="job.wait_timeout",
                job_id=job.id,
            )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
        job = ctx.services.jobs.get(job.id)
    return job


def _finish(ctx: Context, job: JobInfo, wait: bool, timeout_s: float) -> None:
    if wait:
        job = _wait(ctx, job, timeout_s)
    emit(_public(job))
    if job.state in ("failed", "cancelled"):
        # The job's own outcome, not an error of this command: its JSON is on stdout.
        error = f"{job.error_code}: {job.error}" if job.error_code else job.state
        click.echo(f"dignity: job {job.id} {job.state}: {error}", err=True)
        raise SystemExit(1)


@cli.group("job")
def job_group() -> None:
    """Background jobs: queue a scan, follow it, list and cancel jobs."""


@job_group.command("submit")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--url", default=None, help="Scan the media at this URL (fetched by the worker).")
@click.option("--object", "object_ref", default=None, help="Scan an object: BUCKET/KEY.")
@click.option("--content-id", default=None, help="The platform's id of this content.")
@click.option("--uploader", default=None, help="The platform's id of the uploader.")
@click.option("--wait", is_flag=True, help="Follow the job until it ends; exit 1 if it failed.")
@click.option("--timeout", "timeout_s", default=3600.0, show_default=True, type=float)
@pass_ctx
@handles_errors
def job_submit(
    ctx: Context,
    file: Path | None,
    url: str | None,
    object_ref: str | None,
    content_id: str | None,
    uploader: str | None,
    wait: bool,
    timeout_s: float,
) -> None:
    """Queue a background scan of FILE, --url or --object; prints the job."""
    from dignity.takedown.scanlog import check_ref

    if sum(x is not None for x in (file, url, object_ref)) != 1:
        raise click.UsageError("give exactly one of FILE, --url and --object")
    payload: dict[str, Any] = {
        "content_id": check_ref(content_id, "content_id"),
        "uploader": check_ref(uploader, "uploader"),
    }
    media: bytes | None = None
    if file is not None:
        try:
            media = file.read_bytes()
        except OSError as exc:
            raise InputError(
                f"cannot read {file}: {exc.strerror}", code="input.unreadable"
            ) from exc
    elif url is not None:
        payload["url"] = url
    else:
        assert object_ref is not None
        bucket, _, key = object_ref.partition("/")
        if not bucket or not key:
            raise click.BadParameter("takes BUCKET/KEY", param_hint="--object")
        payload["object"] = {"bucket": bucket, "key": key}
    job, _new = ctx.services.submit_job(
        "scan", payload, media=media, filename=file.name if file else None
    )
    _finish(ctx, job, wait, timeout_s)


@job_group.command("show")
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Follow the job until it ends; exit 1 if it failed.")
@click.option("--timeout", "timeout_s", default=3600.0, show_default=True, type=float)
@pass_ctx
@handles_errors
def job_show(ctx: Context, job_id: str, wait: bool, timeout_s: float) -> None:
    """Print a job: state, progress, result or error."""
    _finish(ctx, ctx.services.jobs.get(job_id), wait, timeout_s)


@job_group.command("list")
@click.option("--state", type=click.Choice(JOB_STATES), default=None)
@click.option("--kind", default=None, help="scan, backfill, backfill.batch, retro_match ...")
@click.option("--parent", "parent_id", default=None, help="Only the children of this job.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 500))
@pass_ctx
@handles_errors
def job_list(
    ctx: Context, state: str | None, kind: str | None, parent_id: str | None, limit: int
) -> None:
    """List jobs, newest first (JSON lines)."""
    for job in ctx.services.jobs.list_jobs(
        state=state, kind=kind, parent_id=parent_id, limit=limit
    ):
        emit(_public(job))


@job_group.command("cancel")
@click.argument("job_id")
@pass_ctx
@handles_errors
def job_cancel(ctx: Context, job_id: str) -> None:
    """Cancel a job: a queued one never runs; a running one stops at its next item."""
    emit(_public(ctx.services.jobs.cancel(job_id)))
