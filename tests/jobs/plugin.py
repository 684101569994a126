"""Job kinds only the engine tests register (imported by the worker subprocesses they start):
a poison job that always raises, and one that records each run in a file and can be slowed."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from dignity.worker.tasks import JobContext, task


@task("test.poison")
def poison(ctx: JobContext) -> dict[str, Any]:
    raise RuntimeError("poison job: always fails")


@task("test.mark")
def mark(ctx: JobContext) -> dict[str, Any]:
    """Append this job's id to the file the payload names (one line a run), after an optional
    sleep that reports progress (so a cancel is seen)."""
    for i in range(int(ctx.payload.get("steps", 0))):
        ctx.progress(i, int(ctx.payload["steps"]))
        time.sleep(float(ctx.payload.get("step_s", 0.1)))
    # A stretch with no progress report (one long decode): the lease must hold on its own.
    time.sleep(float(ctx.payload.get("quiet_s", 0)))
    path = Path(ctx.payload["file"])
    with path.open("a") as f:
        f.write(f"{ctx.job.id} {os.getpid()}\n")
    return {"marked": True}
