"""The ``retro_match`` job body: match the bank entries added since the last run against the
scan log's past uploads (:mod:`dignity.takedown.retro`). Scheduled periodically by the engine;
any number of runs may overlap (each hit is recorded once, the cursor only moves forward)."""

from __future__ import annotations

from typing import Any

from dignity.jobs.service import JobRefused
from dignity.takedown.retro import RetroMatcher
from dignity.worker.tasks import JobContext, task


@task("retro_match")
def retro_match_task(ctx: JobContext) -> dict[str, Any]:
    """Process the bank change log from the stored cursor; the result counts the hits."""
    services = ctx.services
    settle = ctx.payload.get("settle_s")
    if settle is not None and (not isinstance(settle, int | float) or settle < 0):
        raise JobRefused("settle_s must be a number >= 0", code="job.bad_payload")
    threads = ctx.payload.get("threads", 1)
    if not isinstance(threads, int) or not 1 <= threads <= 64:
        raise JobRefused("threads must be 1..64", code="job.bad_payload")
    removals = services.removals

    def remove(scan_id: int) -> int | None:
        done = removals.remove_scan(scan_id, actor="retro-match")
        return done.removals[0].id if done.removals else None

    matcher = RetroMatcher(
        services.db,
        services.settings,
        settle_s=float(settle) if settle is not None else None,
        remove=remove,
        threads=threads,
    )
    summary = matcher.run(progress=ctx.progress)
    return summary.to_dict()
