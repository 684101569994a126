"""Background jobs over HTTP: ``POST /v1/jobs`` queues a scan (an upload, a URL fetched through
the SSRF guard when the job runs, or an object-store key), ``GET /v1/jobs/{id}`` answers its
state, progress and result (the scan object ``/v1/scan`` answers), ``DELETE`` cancels it and
``GET /v1/jobs`` lists them. Platform keys, as ``/v1/scan``; a platform key sees the jobs it
submitted, an admin key every job. The answer comes from the job table, never from the broker.
"""

from __future__ import annotations

import io
from typing import Annotated, Any, BinaryIO, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from dignity.api.deps import ServicesDep, require
from dignity.api.schemas import ContentIdQuery, ErrorBody, UploaderQuery
from dignity.api.uploads import openapi_upload_or_json, read_media_or_json
from dignity.jobs.models import JOB_STATES
from dignity.jobs.service import JobInfo, JobNotFound
from dignity.keys import KeyInfo
from dignity.services import Services

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
}

router = APIRouter(prefix="/v1", responses=ERRORS, tags=["jobs"])

# An upload waits in the database until its job runs: past this, submit a URL or an object key
# (the worker streams those), so a queued video never takes a gigabyte of database space.
JOB_UPLOAD_MAX_BYTES = 256 * 1024 * 1024

Platform = Annotated[KeyInfo, Depends(require("platform"))]
JobId = Annotated[str, Path(pattern="^[0-9a-f]{32}$", description="A job's id (32 hex digits).")]


class ObjectRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bucket: str = Field(min_length=3, max_length=63, examples=["uploads"])
    key: str = Field(min_length=1, max_length=1024, examples=["2026/12/07/123.jpg"])


class JobIn(BaseModel):
    """A scan to run in the background: exactly one of ``url`` and ``object`` (or upload the
    file as multipart field ``file`` instead of this JSON)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["scan"] = "scan"
    url: str | None = Field(None, max_length=4096, examples=["https://cdn.example.com/v/9.mp4"])
    object: ObjectRef | None = None


class Progress(BaseModel):
    done: int
    total: int | None
    counts: dict[str, int]


class JobErrorOut(BaseModel):
    code: str
    message: str


class JobOut(BaseModel):
    id: str
    kind: str
    state: str = Field(examples=["queued"], description=f"One of {', '.join(JOB_STATES)}.")
    payload: dict[str, Any]
    parent_id: str | None
    queue: str
    attempts: int
    max_attempts: int
    cancel_requested: bool
    progress: Progress
    result: dict[str, Any] | None = Field(
        description="When done: the scan object /v1/scan answers, with its scan_id."
    )
    error: JobErrorOut | None
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None


class JobList(BaseModel):
    jobs: list[JobOut]


def _out(job: JobInfo) -> JobOut:
    return JobOut.model_validate(job.to_dict())


def _visible(services: Services, key: KeyInfo, job_id: str) -> JobInfo:
    """The job if this key may see it: its own, or any for an admin; others are not found
    (a platform must not learn another platform's job ids exist)."""
    job = services.jobs.get(job_id)
    if key.role != "admin" and job.key_id != key.id:
        raise JobNotFound(f"no job {job_id!r}", job_id=job_id)
    return job


def _read_all(data: bytes | BinaryIO) -> bytes:
    if isinstance(data, bytes):
        return data
    data.seek(0)
    buf = io.BytesIO()
    while chunk := data.read(1 << 20):
        buf.write(chunk)
    return buf.getvalue()


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobOut,
    responses={
        200: {"model": JobOut, "description": "An Idempotency-Key seen before: the first job."}
    },
    summary="Queue a background scan of an upload, a URL or an object-store key",
    openapi_extra=openapi_upload_or_json("JobIn"),
)
async def submit_job(
    request: Request,
    response: Response,
    services: ServicesDep,
    key: Platform,
    content_id: ContentIdQuery = None,
    uploader: UploaderQuery = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=200,
            description="Repeat a submit safely: the same key answers the first job.",
        ),
    ] = None,
) -> JobOut:
    import anyio

    from dignity.errors import RequestRefused
    from dignity.takedown.scanlog import check_ref

    refs = (check_ref(content_id, "content_id"), check_ref(uploader, "uploader"))
    s = services.settings
    got = await read_media_or_json(
        request, JobIn, s.max_bytes, min(s.video_max_bytes, JOB_UPLOAD_MAX_BYTES)
    )
    payload: dict[str, Any] = {"content_id": refs[0], "uploader": refs[1]}
    media: bytes | None = None
    filename: str | None = None
    if isinstance(got, JobIn):
        if (got.url is None) == (got.object is None):
            raise RequestRefused(
                "give exactly one of url and object (or upload a file)", code="request.invalid"
            )
        if got.url is not None:
            payload["url"] = got.url
        else:
            assert got.object is not None
            payload["object"] = got.object.model_dump()
    else:
        media = await anyio.to_thread.run_sync(_read_all, got)
        filename = "upload"
    dedupe = f"{key.id}:{idempotency_key}" if idempotency_key else None
    job, new = await anyio.to_thread.run_sync(
        lambda: services.submit_job(
            "scan", payload, key_id=key.id, media=media, filename=filename, dedupe_key=dedupe
        )
    )
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if not new:
        response.status_code = 200
    return _out(job)


@router.get("/jobs/{job_id}", response_model=JobOut, summary="A job's state, progress and result")
def get_job(job_id: JobId, services: ServicesDep, key: Platform) -> JobOut:
    return _out(_visible(services, key, job_id))


@router.delete(
    "/jobs/{job_id}",
    response_model=JobOut,
    summary="Cancel a job: a queued one never runs; a running one stops at its next item",
)
def cancel_job(job_id: JobId, services: ServicesDep, key: Platform) -> JobOut:
    _visible(services, key, job_id)
    return _out(services.jobs.cancel(job_id))


@router.get("/jobs", response_model=JobList, summary="Jobs, newest first, with filters")
def list_jobs(
    services: ServicesDep,
    key: Platform,
    state: Annotated[
        Literal["queued", "running", "done", "failed", "cancelled"] | None, Query()
    ] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    parent_id: Annotated[str | None, Query(pattern="^[0-9a-f]{32}$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> JobList:
    owner = None if key.role == "admin" else key.id
    jobs = services.jobs.list_jobs(
        state=state, kind=kind, key_id=owner, parent_id=parent_id, limit=limit
    )
    return JobList(jobs=[_out(j) for j in jobs])
