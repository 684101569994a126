"""The backfill's job bodies: ``backfill`` lists a source in pages and fans each page out as a
``backfill.batch`` job; ``backfill.batch`` scans its items (:mod:`dignity.backfill`).

The fan-out is idempotent: each batch is queued with the dedupe key ``backfill:<run>:<page>``,
so a listing that runs again (its worker died) finds the batches it queued before instead of
queueing them twice, and items already done for the source (an earlier run) are left out of the
pages before they are queued. Batches run on any worker, in any number of processes or
machines; each writes the run's aggregate progress onto the run's job row when it ends.
"""

from __future__ import annotations

from typing import Any

from dignity.backfill.service import BackfillService, keys_of
from dignity.backfill.sources import (
    DEFAULT_PAGE,
    BackfillRefused,
    Source,
    source_from_payload,
)
from dignity.worker.tasks import JobCancelled, JobContext, task

MAX_PAGE = 10_000


def _page_size(payload: dict[str, Any]) -> int:
    size = payload.get("page_size", DEFAULT_PAGE)
    if not isinstance(size, int) or not 1 <= size <= MAX_PAGE:
        raise BackfillRefused(f"page_size must be 1..{MAX_PAGE}", code="backfill.bad_source")
    return size


def _source(ctx: JobContext) -> tuple[dict[str, Any], Source]:
    """The payload's source description and the source it names, with this worker's limits."""
    spec = ctx.payload.get("source")
    if not isinstance(spec, dict):
        raise BackfillRefused(f"a {ctx.job.kind} job needs a source", code="backfill.bad_source")
    return spec, source_from_payload(spec, ctx.services.settings)


@task("backfill")
def backfill_task(ctx: JobContext) -> dict[str, Any]:
    """List the source and queue its pages as batches; the result counts what was queued."""
    services = ctx.services
    spec, source = _source(ctx)
    size = _page_size(ctx.payload)
    store = BackfillService(services.db)
    listed = already = queued = batches = 0
    for page_no, keys in enumerate(source.pages(size)):
        listed += len(keys)
        done = store.done_keys(source.id, keys)
        todo = [k for k in keys if k not in done]
        already += len(done)
        if todo:
            child = ctx.submit_child(
                "backfill.batch",
                {"source": spec, "items": todo, "run": ctx.job.id},
                dedupe_key=f"backfill:{ctx.job.id}:{page_no}",
            )
            services.dispatch_jobs([child.id])
            batches += 1
            queued += len(todo)
        # The lease, and the total so far; the done count is the batches' to write.
        if not ctx.jobs.heartbeat(ctx.job.id, ctx.worker, total=queued):
            raise JobCancelled(ctx.job.id)
    return {
        "source": source.id,
        "listed": listed,
        "already_done": already,
        "queued": queued,
        "batches": batches,
    }


@task("backfill.batch")
def backfill_batch_task(ctx: JobContext) -> dict[str, Any]:
    """Scan one page of a source's items; failed items are recorded, not raised."""
    services = ctx.services
    _spec, source = _source(ctx)
    keys = keys_of(ctx.payload.get("items") or [])
    run_id = str(ctx.payload.get("run") or ctx.job.parent_id or ctx.job.id)
    # Match against the banks as they are now (a worker may have run for days).
    services.refresh_index()
    store = BackfillService(services.db)
    outcome = store.process_batch(
        source,
        keys,
        run_id,
        scan=services.scanner.scan,
        record_scan=lambda result, content_id: services.record_scan(
            result, None, content_id=content_id
        ),
        progress=ctx.progress,
    )
    run = ctx.jobs.get(run_id) if run_id != ctx.job.id else ctx.job
    started = run.started_at.timestamp() if run.started_at is not None else None
    store.update_run_progress(run_id, started=started)
    return outcome.to_dict()
