"""The job API against a real server, on SQLite and PostgreSQL: submit an upload, a URL or an
object key, read it back, list with filters, cancel, idempotency keys, what another key sees,
and bad input; a job run by the shared ``run_job`` path answers the scan object."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dignity.samples import encode, landscape
from dignity.services import CLI, Services
from dignity.settings import Settings
from dignity.worker.tasks import run_job
from tests.integration.conftest import database_for
from tests.integration.server import LiveServer


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LiveServer]:
    directory = Path(tmp_path_factory.mktemp("jobs-api"))
    with database_for(str(request.param), directory) as url:
        # Videos over 2 s are too long for a request: the job route is their way in.
        # The server runs no jobs itself (DIGNITY_JOB_CONCURRENCY=0): these tests read jobs
        # while queued and run them with run_here (the engine is tested in test_engine.py).
        env = {
            "DIGNITY_DATABASE_URL": url,
            "DIGNITY_VIDEO_SYNC_MAX_SECONDS": "2",
            "DIGNITY_JOB_CONCURRENCY": "0",
        }
        server = LiveServer(directory, env=env)
        server.start()
        yield server
        server.stop()


def photo(seed: int = 1) -> bytes:
    return encode(landscape(seed, (320, 240)), "JPEG", quality=90)


def upload(data: bytes) -> dict[str, tuple[str, bytes, str]]:
    return {"file": ("a.jpg", data, "image/jpeg")}


def wait_final(client: httpx.Client, job_id: str, timeout_s: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            return dict(job)
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end")


def run_here(live: LiveServer, job_id: str) -> str:
    """Run a queued job through the same path every engine uses (claim, run, finish)."""
    services = Services(
        Settings(data_dir=live.data, database_url=live.url, index_snapshot=False), profile=CLI
    )
    try:
        services.engine.load()
        return run_job(services, services.jobs, job_id, "test-runner")
    finally:
        services.close()


def test_submit_read_and_run_an_upload(live: LiveServer) -> None:
    with live.client("platform") as c:
        r = c.post("/v1/jobs?content_id=post-1&uploader=u-9", files=upload(photo()))
        assert r.status_code == 202, r.text
        job = r.json()
        assert r.headers["location"] == f"/v1/jobs/{job['id']}"
        assert job["kind"] == "scan" and job["payload"]["content_id"] == "post-1"
        assert job["created_at"].endswith(("+00:00", "Z"))
        state = run_here(live, job["id"])
        done = (
            wait_final(c, job["id"])
            if state == "skipped"
            else c.get(f"/v1/jobs/{job['id']}").json()
        )
        assert done["state"] == "done", done
        result = done["result"]
        assert result["decision"]["action"] and result["scan_id"] >= 1
        # The upload was scanned as /v1/scan would: the same object but for its scan id.
        direct = c.post("/v1/scan", files=upload(photo())).json()
        assert result["md5"] == direct["md5"] and result["pdq"] == direct["pdq"]
        for field in ("md5", "sha256", "pdq", "quality", "matches", "decision"):
            assert result[field] == direct[field], field
        assert direct["scan_id"] != result["scan_id"]


def test_a_video_too_long_for_a_request_is_scanned_as_a_job(
    live: LiveServer, tmp_path: Path
) -> None:
    from tests.videos import write_video

    video = write_video(tmp_path / "long.mp4", [(1, 0, 5)]).read_bytes()
    files = {"file": ("long.mp4", video, "video/mp4")}
    with live.client("platform") as c:
        refused = c.post("/v1/scan", files=files)
        assert refused.status_code == 413, refused.text
        assert refused.json()["code"] == "media.video_too_long_for_sync"
        r = c.post("/v1/jobs?content_id=video-1", files=files)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        state = run_here(live, job_id)
        done = c.get(f"/v1/jobs/{job_id}").json() if state != "skipped" else wait_final(c, job_id)
        assert done["state"] == "done", done
        result = done["result"]
        assert result["kind"] == "video" and result["duration_s"] >= 4.9
        assert len(result["vpdq"]) >= 5 and result["partial"] is False
        assert done["result"]["scan_id"] >= 1


def test_list_filters_cancel_and_idempotency(live: LiveServer) -> None:
    with live.client("platform") as c:
        first = c.post(
            "/v1/jobs", json={"url": "https://example.org/x.jpg"}, headers={"Idempotency-Key": "a1"}
        )
        again = c.post(
            "/v1/jobs", json={"url": "https://example.org/y.jpg"}, headers={"Idempotency-Key": "a1"}
        )
        assert first.status_code == 202 and again.status_code == 200
        assert again.json()["id"] == first.json()["id"]
        assert again.json()["payload"]["url"] == "https://example.org/x.jpg"
        job_id = first.json()["id"]
        obj = c.post("/v1/jobs", json={"object": {"bucket": "uploads", "key": "a/b.jpg"}})
        assert obj.status_code == 202 and obj.json()["payload"]["object"]["key"] == "a/b.jpg"
        queued = c.get("/v1/jobs", params={"state": "queued"}).json()["jobs"]
        assert job_id in {j["id"] for j in queued}
        cancelled = c.delete(f"/v1/jobs/{job_id}")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        again_cancel = c.delete(f"/v1/jobs/{job_id}")
        assert again_cancel.status_code == 409
        assert again_cancel.json()["code"] == "job.finished"
        assert run_here(live, job_id) == "skipped"  # a cancelled job never runs
        assert c.get(f"/v1/jobs/{job_id}").json()["state"] == "cancelled"
    # Another platform's job is not found; an admin sees it; other roles may not ask.
    with live.client("admin") as admin:
        assert admin.get(f"/v1/jobs/{job_id}").status_code == 200
        assert job_id in {j["id"] for j in admin.get("/v1/jobs?limit=500").json()["jobs"]}
    with live.client("curator") as curator:
        assert curator.get(f"/v1/jobs/{job_id}").status_code == 403


def test_other_platforms_do_not_see_each_others_jobs(live: LiveServer, tmp_path: Path) -> None:
    from dignity.keys import KeyService
    from dignity.storage.db import open_database

    db = open_database(live.url)
    try:
        _info, other_key = KeyService(db).create("platform", name="other-platform")
    finally:
        db.close()
    with live.client("platform") as c:
        job_id = c.post("/v1/jobs", json={"url": "https://example.org/z.jpg"}).json()["id"]
    with httpx.Client(
        base_url=live.base, headers={"Authorization": f"Bearer {other_key}"}, timeout=30
    ) as other:
        r = other.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 404 and r.json()["code"] == "job.not_found"
        assert other.delete(f"/v1/jobs/{job_id}").status_code == 404
        assert job_id not in {j["id"] for j in other.get("/v1/jobs").json()["jobs"]}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 422),
        ({"url": "https://example.org/a.jpg", "object": {"bucket": "abc", "key": "k"}}, 422),
        ({"kind": "backfill", "url": "https://example.org/a.jpg"}, 422),
        ({"url": "https://example.org/a.jpg", "extra": 1}, 422),
        ({"object": {"bucket": "a", "key": "k"}}, 422),
    ],
)
def test_bad_submissions(live: LiveServer, body: dict[str, object], status: int) -> None:
    with live.client("platform") as c:
        r = c.post("/v1/jobs", json=body)
        assert r.status_code == status, r.text
        assert r.json()["code"] == "request.invalid"


def test_bad_ids_and_filters(live: LiveServer) -> None:
    with live.client("platform") as c:
        assert c.get("/v1/jobs/not-a-job").status_code == 422
        assert c.get("/v1/jobs/" + "0" * 32).status_code == 404
        assert c.get("/v1/jobs?state=sleeping").status_code == 422
        assert c.get("/v1/jobs?limit=0").status_code == 422
        assert c.post("/v1/jobs?content_id=%00", files=upload(photo())).status_code == 422
    with httpx.Client(base_url=live.base, timeout=30) as anon:
        assert anon.post("/v1/jobs", json={"url": "https://example.org/a.jpg"}).status_code == 401
