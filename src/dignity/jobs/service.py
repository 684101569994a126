"""The job table's operations: submit, read, list, cancel, and what a worker does with a job
(claim, report progress, finish, fail), each one conditional update so that any number of
workers and API processes on one database agree on who runs a job.

A worker *claims* a job before running it: the update succeeds only while the job is queued, or
running under a lease that has expired (its worker died), and while attempts remain; a second
delivery of the same message therefore finds the job taken or finished and does nothing. Every
later write checks the lease owner, so a worker that lost its lease cannot overwrite the result of
the one that took over. Finishing writes the result, deletes any queued upload and emits the
``job.completed``/``job.failed`` event in one transaction: a job is done exactly when its effect
and its event are on record.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, cast

from sqlalchemy import CursorResult, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from dignity.actions.outbox import emit_event
from dignity.errors import Conflict, DignityError, Internal, NotFound, Refused
from dignity.jobs.models import FINAL_STATES, JOB_STATES, Job, JobMedia
from dignity.storage.db import Database
from dignity.storage.models import utcnow
from dignity.storage.types import isoformat, json_default

# How long a claim holds without a heartbeat before another worker may take the job over.
DEFAULT_LEASE_S = 300.0
DEFAULT_MAX_ATTEMPTS = 3
MAX_LIST = 500


class JobError(DignityError):
    """Domain of job errors (never raised itself)."""


class JobRefused(JobError, Refused):
    codes: ClassVar[tuple[str, ...]] = (
        "job.bad_kind",
        "job.bad_payload",
        "job.bad_filter",
    )


class JobInternal(JobError, Internal):
    """How a job ended that no input explains, as recorded on the job (never answered to a
    request): its body raised something unexpected, or its workers kept dying."""

    codes: ClassVar[tuple[str, ...]] = ("job.error", "job.worker_lost")


class JobNotFound(JobError, NotFound):
    codes: ClassVar[tuple[str, ...]] = ("job.not_found",)


class JobConflict(JobError, Conflict):
    codes: ClassVar[tuple[str, ...]] = ("job.finished",)


@dataclass(frozen=True)
class JobInfo:
    """A job as callers see it (the API's and the CLI's reply)."""

    id: str
    kind: str
    state: str
    payload: dict[str, Any]
    parent_id: str | None
    key_id: int | None
    queue: str
    attempts: int
    max_attempts: int
    cancel_requested: bool
    progress_done: int
    progress_total: int | None
    progress_counts: dict[str, int]
    result: dict[str, Any] | None
    error_code: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    lease_owner: str | None = field(default=None, repr=False)
    # When the job was last sent to the broker (epoch seconds; None: never): recovery's input.
    dispatched_at: float | None = field(default=None, repr=False)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "payload": self.payload,
            "parent_id": self.parent_id,
            "queue": self.queue,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "cancel_requested": self.cancel_requested,
            "progress": {
                "done": self.progress_done,
                "total": self.progress_total,
                "counts": self.progress_counts,
            },
            "result": self.result,
            "error": (
                {"code": self.error_code, "message": self.error or ""} if self.error_code else None
            ),
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
            "started_at": isoformat(self.started_at) if self.started_at else None,
            "finished_at": isoformat(self.finished_at) if self.finished_at else None,
        }
        return out


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else None


def _info(job: Job) -> JobInfo:
    return JobInfo(
        id=job.id,
        kind=job.kind,
        state=job.state,
        payload=_loads(job.payload) or {},
        parent_id=job.parent_id,
        key_id=job.key_id,
        queue=job.queue,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        cancel_requested=job.cancel_requested,
        progress_done=job.progress_done,
        progress_total=job.progress_total,
        progress_counts=_loads(job.progress_counts) or {},
        result=_loads(job.result),
        error_code=job.error_code,
        error=job.error,
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        lease_owner=job.lease_owner,
        dispatched_at=job.dispatched_at,
    )


def _dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=json_default)


def _stop(s: Session, which: ColumnElement[bool], now: datetime) -> None:
    """Cancel the queued jobs ``which`` selects at once; ask the running ones to stop."""
    s.execute(
        update(Job)
        .where(which, Job.state == "queued")
        .values(state="cancelled", finished_at=now, updated_at=now, cancel_requested=True)
    )
    s.execute(
        update(Job)
        .where(which, Job.state == "running")
        .values(cancel_requested=True, updated_at=now)
    )


def new_job_id() -> str:
    return uuid.uuid4().hex


class JobService:
    """Job rows in one database; safe to share between threads (each call opens its session)."""

    def __init__(
        self,
        db: Database,
        *,
        lease_s: float = DEFAULT_LEASE_S,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        kinds: Sequence[str] | None = None,
    ) -> None:
        self.db = db
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        # The kinds a submit accepts (None: any); the engine passes its registered tasks.
        self.kinds = tuple(kinds) if kinds is not None else None

    # -- submitting and reading -----------------------------------------------------------------
    def submit(
        self,
        kind: str,
        payload: Mapping[str, Any],
        *,
        key_id: int | None = None,
        media: bytes | None = None,
        filename: str | None = None,
        parent_id: str | None = None,
        dedupe_key: str | None = None,
        queue: str = "default",
        max_attempts: int | None = None,
    ) -> tuple[JobInfo, bool]:
        """Queue a job; returns it and whether it is new (False: ``dedupe_key`` named an
        existing job, which is returned unchanged)."""
        if self.kinds is not None and kind not in self.kinds:
            raise JobRefused(
                f"unknown job kind {kind!r} (known: {', '.join(self.kinds)})",
                code="job.bad_kind",
            )
        if dedupe_key is not None:
            found = self._by_dedupe(dedupe_key)
            if found is not None:
                return found, False
        now = utcnow()
        job = Job(
            id=new_job_id(),
            kind=kind,
            state="queued",
            payload=_dumps(payload),
            parent_id=parent_id,
            key_id=key_id,
            dedupe_key=dedupe_key,
            queue=queue,
            attempts=0,
            max_attempts=max_attempts or self.max_attempts,
            cancel_requested=False,
            progress_done=0,
            progress_counts="{}",
            created_at=now,
            updated_at=now,
        )
        try:
            with self.db.session() as s:
                s.add(job)
                s.flush()
                if media is not None:
                    s.add(JobMedia(job_id=job.id, filename=filename, data=media))
                info = _info(job)
        except IntegrityError:
            # Two submits raced on one dedupe key: the other one won.
            found = self._by_dedupe(dedupe_key) if dedupe_key else None
            if found is None:
                raise
            return found, False
        return info, True

    def submit_many(
        self,
        kind: str,
        payloads: Sequence[Mapping[str, Any]],
        *,
        parent_id: str | None = None,
        dedupe_keys: Sequence[str | None] | None = None,
        queue: str = "default",
    ) -> list[JobInfo]:
        """Queue many jobs of one kind (a backfill's batches); with dedupe keys, those already
        queued are returned rather than queued twice."""
        keys = list(dedupe_keys) if dedupe_keys is not None else [None] * len(payloads)
        return [
            self.submit(kind, p, parent_id=parent_id, dedupe_key=k, queue=queue)[0]
            for p, k in zip(payloads, keys, strict=True)
        ]

    def _by_dedupe(self, dedupe_key: str) -> JobInfo | None:
        with self.db.session() as s:
            job = s.scalars(select(Job).where(Job.dedupe_key == dedupe_key)).first()
            return _info(job) if job is not None else None

    def get(self, job_id: str) -> JobInfo:
        with self.db.session() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise JobNotFound(f"no job {job_id!r}", job_id=job_id)
            return _info(job)

    def list_jobs(
        self,
        *,
        state: str | None = None,
        kind: str | None = None,
        key_id: int | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        before: datetime | None = None,
    ) -> list[JobInfo]:
        """Newest first."""
        if state is not None and state not in JOB_STATES:
            raise JobRefused(
                f"unknown state {state!r} (known: {', '.join(JOB_STATES)})", code="job.bad_filter"
            )
        if not 1 <= limit <= MAX_LIST:
            raise JobRefused(f"limit must be 1..{MAX_LIST}", code="job.bad_filter")
        q = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
        if state is not None:
            q = q.where(Job.state == state)
        if kind is not None:
            q = q.where(Job.kind == kind)
        if key_id is not None:
            q = q.where(Job.key_id == key_id)
        if parent_id is not None:
            q = q.where(Job.parent_id == parent_id)
        if before is not None:
            q = q.where(Job.created_at < before)
        with self.db.session() as s:
            return [_info(j) for j in s.scalars(q)]

    def counts(self, *, parent_id: str | None = None) -> dict[str, int]:
        """Jobs per state (of one parent's children, or of all)."""
        q = select(Job.state, func.count()).group_by(Job.state)
        if parent_id is not None:
            q = q.where(Job.parent_id == parent_id)
        with self.db.session() as s:
            found = {state: int(n) for state, n in s.execute(q)}
        return {state: found.get(state, 0) for state in JOB_STATES}

    def media(self, job_id: str) -> tuple[bytes, str | None] | None:
        with self.db.session() as s:
            row = s.get(JobMedia, job_id)
            return (bytes(row.data), row.filename) if row is not None else None

    # -- cancelling -----------------------------------------------------------------------------
    def cancel(self, job_id: str) -> JobInfo:
        """A queued job is cancelled at once and never runs; a running one is asked to stop (its
        worker checks between items and ends it ``cancelled``). Children of a cancelled job are
        cancelled too. A finished job cannot be cancelled (``job.finished``)."""
        now = utcnow()
        with self.db.session() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise JobNotFound(f"no job {job_id!r}", job_id=job_id)
            if job.state in FINAL_STATES:
                raise JobConflict(
                    f"job {job_id} is already {job.state}", code="job.finished", state=job.state
                )
            _stop(s, Job.id == job_id, now)
            s.execute(delete(JobMedia).where(JobMedia.job_id == job_id))
            self._cancel_children(s, job_id, now)
        return self.get(job_id)

    def _cancel_children(self, s: Session, parent_id: str, now: datetime) -> None:
        _stop(s, Job.parent_id == parent_id, now)

    # -- what workers do ------------------------------------------------------------------------
    def claim(self, job_id: str, worker: str) -> JobInfo | None:
        """Take the job for ``worker`` if it may run now: queued, or running under an expired
        lease, with attempts left and no cancel asked. None: someone else has it, it is
        finished, or it is out of attempts (then it is marked failed here)."""
        now_t = time.time()
        now = utcnow()
        with self.db.session() as s:
            claimed = cast(
                CursorResult[Any],
                s.execute(
                    update(Job)
                    .where(
                        Job.id == job_id,
                        Job.cancel_requested.is_(False),
                        Job.attempts < Job.max_attempts,
                        or_(
                            Job.state == "queued",
                            (Job.state == "running") & (Job.lease_until < now_t),
                        ),
                    )
                    .values(
                        state="running",
                        attempts=Job.attempts + 1,
                        lease_owner=worker,
                        lease_until=now_t + self.lease_s,
                        started_at=func.coalesce(Job.started_at, now),
                        updated_at=now,
                    )
                ),
            ).rowcount
        if claimed:
            return self.get(job_id)
        self._settle(job_id)
        return None

    def _settle(self, job_id: str) -> None:
        """A job nobody may claim any more ends here: out of attempts after its workers died
        (``job.worker_lost``), or asked to cancel while its worker was gone."""
        now_t = time.time()
        now = utcnow()
        with self.db.session() as s:
            job = s.get(Job, job_id)
            if job is None or job.state in FINAL_STATES:
                return
            lease_gone = job.state == "queued" or (job.lease_until or 0.0) < now_t
            if not lease_gone:
                return
            if job.cancel_requested:
                self._end(s, job, "cancelled", now)
            elif job.attempts >= job.max_attempts:
                job.error_code = "job.worker_lost"
                job.error = (
                    f"the worker stopped without finishing, {job.attempts} times; no attempts left"
                )
                self._end(s, job, "failed", now)

    def claim_next(
        self,
        worker: str,
        *,
        queues: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
    ) -> JobInfo | None:
        """Claim the oldest job that may run now (the embedded runner's poll)."""
        now_t = time.time()
        q = (
            select(Job.id)
            .where(
                Job.cancel_requested.is_(False),
                or_(
                    Job.state == "queued",
                    (Job.state == "running") & (Job.lease_until < now_t),
                ),
            )
            .order_by(Job.created_at, Job.id)
            .limit(16)
        )
        if queues is not None:
            q = q.where(Job.queue.in_(list(queues)))
        if kinds is not None:
            q = q.where(Job.kind.in_(list(kinds)))
        with self.db.session() as s:
            candidates = list(s.scalars(q))
        for job_id in candidates:
            job = self.claim(job_id, worker)
            if job is not None:
                return job
        return None

    def heartbeat(
        self,
        job_id: str,
        worker: str,
        *,
        done: int | None = None,
        total: int | None = None,
        counts: Mapping[str, int] | None = None,
    ) -> bool:
        """Extend the lease and record progress; False when the worker should stop: the lease
        is no longer its own, or a cancel was asked."""
        values: dict[str, Any] = {
            "lease_until": time.time() + self.lease_s,
            "updated_at": utcnow(),
        }
        if done is not None:
            values["progress_done"] = done
        if total is not None:
            values["progress_total"] = total
        if counts is not None:
            values["progress_counts"] = _dumps(counts)
        with self.db.session() as s:
            ok = cast(
                CursorResult[Any],
                s.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.state == "running", Job.lease_owner == worker)
                    .values(**values)
                ),
            ).rowcount
            if not ok:
                return False
            cancel = s.scalar(select(Job.cancel_requested).where(Job.id == job_id))
        return not cancel

    def finish(
        self,
        job_id: str,
        worker: str,
        result: Mapping[str, Any],
        *,
        session_work: Any = None,
    ) -> bool:
        """End a job ``done`` with its result, if ``worker`` still holds it; emits
        ``job.completed``. ``session_work(s)``, if given, runs in the same transaction (a task
        whose effect must be recorded exactly once writes it here)."""
        return self._complete(job_id, worker, "done", result=result, session_work=session_work)

    def fail(
        self, job_id: str, worker: str, *, code: str, message: str, retry: bool = False
    ) -> JobInfo | None:
        """Record a failure: with ``retry`` and attempts left the job is queued again, else it
        ends ``failed`` (``job.failed``). None if ``worker`` no longer holds the job."""
        now = utcnow()
        with self.db.session() as s:
            job = s.get(Job, job_id)
            if job is None or job.state != "running" or job.lease_owner != worker:
                return None
            job.error_code = code[:64]
            job.error = message[:2000]
            if retry and job.attempts < job.max_attempts and not job.cancel_requested:
                job.state = "queued"
                job.lease_owner = None
                job.lease_until = None
                job.dispatched_at = None
                job.updated_at = now
            else:
                self._end(s, job, "cancelled" if job.cancel_requested else "failed", now)
            s.flush()
            return _info(job)

    def stop_cancelled(self, job_id: str, worker: str) -> bool:
        """A worker that saw a cancel ends the job ``cancelled``."""
        return self._complete(job_id, worker, "cancelled", result=None)

    def _complete(
        self,
        job_id: str,
        worker: str,
        state: str,
        *,
        result: Mapping[str, Any] | None,
        session_work: Any = None,
    ) -> bool:
        now = utcnow()
        with self.db.session() as s:
            job = s.get(Job, job_id)
            if job is None or job.state != "running" or job.lease_owner != worker:
                return False
            if session_work is not None:
                session_work(s)
            if result is not None:
                job.result = _dumps(result)
            job.error_code = None if state == "done" else job.error_code
            job.error = None if state == "done" else job.error
            self._end(s, job, state, now)
        return True

    def _end(self, s: Session, job: Job, state: str, now: datetime) -> None:
        job.state = state
        job.finished_at = now
        job.updated_at = now
        job.lease_until = None
        s.execute(delete(JobMedia).where(JobMedia.job_id == job.id))
        if state == "cancelled":
            self._cancel_children(s, job.id, now)
        event = {"done": "job.completed", "failed": "job.failed"}.get(state)
        if event is not None and job.parent_id is None:
            # Children of a fan-out (a backfill's batches) are reported through their parent.
            payload: dict[str, Any] = {"job_id": job.id, "kind": job.kind, "state": state}
            if state == "done":
                payload["result"] = _loads(job.result)
            else:
                payload["error"] = {"code": job.error_code, "message": job.error}
            emit_event(s, event, payload)

    # -- recovery -------------------------------------------------------------------------------
    def undispatched(self, *, older_than_s: float, limit: int = 1000) -> list[JobInfo]:
        """Queued jobs whose message was never sent or was sent ``older_than_s`` ago and not
        claimed since (a broker that lost it); the engine sends them again. Running jobs whose
        lease expired come back too: their worker died and the broker may not redeliver."""
        cutoff = time.time() - older_than_s
        q = (
            select(Job)
            .where(
                Job.cancel_requested.is_(False),
                or_(
                    (Job.state == "queued")
                    & or_(Job.dispatched_at.is_(None), Job.dispatched_at < cutoff),
                    (Job.state == "running") & (Job.lease_until < time.time()),
                ),
            )
            .order_by(Job.created_at)
            .limit(limit)
        )
        with self.db.session() as s:
            return [_info(j) for j in s.scalars(q)]

    def mark_dispatched(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        now_t = time.time()
        with self.db.session() as s:
            s.execute(update(Job).where(Job.id.in_(list(job_ids))).values(dispatched_at=now_t))

    def settle_lost(self) -> int:
        """End the jobs no worker may run any more (out of attempts, or cancelled while their
        worker was gone); returns how many. Run by the engine's recovery loop."""
        now_t = time.time()
        q = select(Job.id).where(
            Job.state.in_(("queued", "running")),
            or_(Job.state == "queued", Job.lease_until < now_t),
            or_(Job.attempts >= Job.max_attempts, Job.cancel_requested.is_(True)),
        )
        with self.db.session() as s:
            ids = list(s.scalars(q))
        for job_id in ids:
            self._settle(job_id)
        return len(ids)
