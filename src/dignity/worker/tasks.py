"""What a job does and how one is run, shared by every engine: the task registry (a kind's
body), :class:`JobContext` (what a body may do: read its payload and upload, report progress,
fan out child jobs, notice a cancel), and :func:`run_job`, the one path from a job id to its
end (claim, run, finish or fail), called by a Celery task and by the embedded runner alike.

A body returns its result (a JSON-ready dict) and must be idempotent: a worker killed mid-job
means the job runs again from the start under a new claim. A body raises
:class:`~dignity.errors.DignityError` for a failure that will fail again (bad media, a refused
URL: no retry) and anything else for one worth retrying (a database blip, a timeout).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from dignity.errors import DignityError, StorageError, Unavailable, UpstreamFailed
from dignity.jobs.service import JobInfo, JobService

if TYPE_CHECKING:
    from dignity.services import Services

log = logging.getLogger("dignity.jobs")


class JobCancelled(Exception):
    """Raised inside a body by :meth:`JobContext.progress` once a cancel was asked (or the
    lease was lost): the body stops between items and the job ends ``cancelled``."""


class JobContext:
    """One claimed job as its body sees it."""

    def __init__(self, services: Services, jobs: JobService, job: JobInfo, worker: str) -> None:
        self.services = services
        self.jobs = jobs
        self.job = job
        self.worker = worker
        self.finish_work: FinishWork | None = None

    def on_finish(self, work: FinishWork) -> None:
        """Have ``work(session, result)`` run in the transaction that ends the job ``done``: a
        body whose effect must be recorded exactly once writes it there (and may add to the
        result, e.g. the id of the row it wrote). A worker killed before that commit leaves no
        effect; the job runs again and records it then."""
        self.finish_work = work

    @property
    def payload(self) -> dict[str, Any]:
        return self.job.payload

    def media(self) -> tuple[bytes, str | None] | None:
        """The uploaded bytes a ``scan`` job was submitted with (None for URL/object jobs)."""
        return self.jobs.media(self.job.id)

    def progress(
        self, done: int, total: int | None = None, counts: Mapping[str, int] | None = None
    ) -> None:
        """Record progress and keep the lease; raises :class:`JobCancelled` when the job must
        stop (a cancel was asked, or another worker holds it now)."""
        if not self.jobs.heartbeat(self.job.id, self.worker, done=done, total=total, counts=counts):
            raise JobCancelled(self.job.id)

    def submit_child(
        self, kind: str, payload: Mapping[str, Any], *, dedupe_key: str | None = None
    ) -> JobInfo:
        """Fan out: queue a job whose parent is this one (cancelled with it). With a dedupe key,
        a rerun of this body finds the child it queued before instead of queueing another."""
        job, new = self.jobs.submit(
            kind, payload, parent_id=self.job.id, dedupe_key=dedupe_key, queue=self.job.queue
        )
        if new:
            self.services.dispatch_jobs([job.id])
        return job


TaskBody = Callable[[JobContext], dict[str, Any]]
FinishWork = Callable[[Session, dict[str, Any]], None]
TASKS: dict[str, TaskBody] = {}


def task(kind: str) -> Callable[[TaskBody], TaskBody]:
    """Register ``fn`` as the body of jobs of ``kind``."""

    def register(fn: TaskBody) -> TaskBody:
        TASKS[kind] = fn
        return fn

    return register


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# Failures that are the world's, not the input's: worth another attempt.
_TRANSIENT = (StorageError, Unavailable, UpstreamFailed)


def run_job(services: Services, jobs: JobService, job_id: str, worker: str) -> str:
    """Claim ``job_id`` and run it to its end; returns the job's state afterwards (``skipped``
    when it could not be claimed: another worker has it, or it is finished or cancelled)."""
    job = jobs.claim(job_id, worker)
    if job is None:
        return "skipped"
    return run_claimed(services, jobs, job, worker)


@contextmanager
def _lease_kept(jobs: JobService, job_id: str, worker: str) -> Iterator[None]:
    """Renew the job's lease while its body runs, so a body that reports no progress (one long
    video) is not taken over by another worker while this one is alive; a dead worker's lease
    still expires on time."""
    stop = threading.Event()

    def keep() -> None:
        while not stop.wait(jobs.lease_s / 3):
            try:
                if not jobs.heartbeat(job_id, worker):
                    return  # cancelled or taken over: the body learns at its next progress
            except Exception:
                log.warning("could not renew the lease of job %s", job_id)

    keeper = threading.Thread(target=keep, name=f"lease-{job_id[:8]}", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        stop.set()


def _failed(
    services: Services,
    jobs: JobService,
    job: JobInfo,
    worker: str,
    *,
    code: str,
    message: str,
    retry: bool,
) -> str:
    """Record a failure; a job queued again for another attempt is handed to the engine at
    once (a broker that refuses it now leaves it to the recovery loop, which resends it)."""
    ended = jobs.fail(job.id, worker, code=code, message=message, retry=retry)
    if ended is None:
        return "lost"
    if ended.state == "queued":
        try:
            services.dispatch_jobs([job.id])
        except Exception:
            log.warning("job %s: could not hand the retry to the engine now", job.id)
    return ended.state


def run_claimed(services: Services, jobs: JobService, job: JobInfo, worker: str) -> str:
    body = TASKS.get(job.kind)
    if body is None:
        jobs.fail(job.id, worker, code="job.bad_kind", message=f"no task for kind {job.kind!r}")
        return "failed"
    ctx = JobContext(services, jobs, job, worker)
    try:
        with _lease_kept(jobs, job.id, worker):
            result = body(ctx)
    except JobCancelled:
        jobs.stop_cancelled(job.id, worker)
        return "cancelled"
    except DignityError as exc:
        retry = isinstance(exc, _TRANSIENT)
        return _failed(services, jobs, job, worker, code=exc.code, message=exc.message, retry=retry)
    except Exception as exc:
        log.exception("job %s (%s) failed", job.id, job.kind)
        name = type(exc).__name__
        return _failed(services, jobs, job, worker, code="job.error", message=name, retry=True)
    work = ctx.finish_work
    try:
        finished = jobs.finish(
            job.id,
            worker,
            result,
            session_work=(lambda s: work(s, result)) if work is not None else None,
        )
    except Exception as exc:
        # The effect's transaction failed (a database blip): nothing of it was kept.
        log.exception("job %s (%s) could not record its end", job.id, job.kind)
        code = exc.code if isinstance(exc, DignityError) else "job.error"
        name = type(exc).__name__
        return _failed(services, jobs, job, worker, code=code, message=name, retry=True)
    return "done" if finished else "lost"


@task("scan")
def scan_task(ctx: JobContext) -> dict[str, Any]:
    """Scan one item: the upload the job came with, a URL fetched through the SSRF guard, or
    an object in an S3-compatible store (boto3's own endpoint and credentials configuration).
    The fetch limit is the video limit: long media is what jobs are for. The result is the scan
    object ``/v1/scan`` answers, with its ``scan_id``."""
    from dignity.backfill.sources import S3Source, fetch_policy
    from dignity.fetch import fetch_url
    from dignity.jobs.service import JobRefused
    from dignity.keys import KeyInfo

    services = ctx.services
    s = services.settings
    limit = max(s.max_bytes, s.video_max_bytes)
    payload = ctx.payload
    got = ctx.media()
    obj = payload.get("object")
    if got is not None:
        data = got[0]
    elif isinstance(payload.get("url"), str):
        policy = fetch_policy(s)
        data = fetch_url(payload["url"], replace(policy, max_bytes=limit))
    elif isinstance(obj, dict) and isinstance(obj.get("bucket"), str) and obj.get("key"):
        data = S3Source(obj["bucket"], "", limit).read(str(obj["key"]))
    else:
        raise JobRefused("a scan job needs an upload, a url or an object", code="job.bad_payload")
    result = services.scanner.scan(data)
    key: KeyInfo | None = None
    if ctx.job.key_id is not None:
        # The key may have been revoked since: the scan is still recorded under its id.
        key = next((k for k in services.keys.list() if k.id == ctx.job.key_id), None)
    job_id = ctx.job.id

    def record(s: Session, out: dict[str, Any]) -> None:
        # In the job's own end: the scan log row, its review item, the scan.match event and
        # the case counters commit with ``done``, or not at all.
        out["scan_id"] = services.record_scan(
            result,
            key,
            content_id=payload.get("content_id"),
            uploader=payload.get("uploader"),
            job_id=job_id,
            session=s,
        )

    ctx.on_finish(record)
    return result.to_dict()


# The bodies of the backfill and retro-matching jobs register themselves on import (last: they
# import this module's registry).
from dignity.worker import tasks_backfill as tasks_backfill  # noqa: E402
from dignity.worker import tasks_retro as tasks_retro  # noqa: E402
