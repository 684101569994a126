"""The ``scan`` job's sources besides an upload: an object in an S3-compatible store (moto's
server on 127.0.0.1) and a missing object, run through the shared ``run_job`` path."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dignity.samples import encode, landscape
from dignity.services import CLI, Services
from dignity.settings import Settings
from dignity.worker.tasks import run_job


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    svc = Services(Settings(data_dir=tmp_path / "data", index_snapshot=False), profile=CLI)
    yield svc
    svc.close()


def test_scan_an_object_key(
    services: Services,
    s3: tuple[Any, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, endpoint = s3
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    bucket = f"uploads-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    photo = encode(landscape(41, (320, 240)), "JPEG")
    client.put_object(Bucket=bucket, Key="u/1.jpg", Body=photo)
    job, _ = services.submit_job(
        "scan", {"object": {"bucket": bucket, "key": "u/1.jpg"}, "content_id": "u/1"}
    )
    assert run_job(services, services.jobs, job.id, "w") == "done"
    done = services.jobs.get(job.id)
    assert done.result is not None and done.result["scan_id"] >= 1
    assert done.result["md5"] == services.scanner.scan(photo).to_dict()["md5"]

    missing, _ = services.submit_job(
        "scan", {"object": {"bucket": bucket, "key": "u/none.jpg"}}, max_attempts=1
    )
    assert run_job(services, services.jobs, missing.id, "w") == "failed"
    failed = services.jobs.get(missing.id)
    assert failed.error_code == "backfill.item_unreadable"


def test_a_scan_job_without_a_source_fails_at_once(services: Services) -> None:
    job, _ = services.submit_job("scan", {"content_id": "x"})
    assert run_job(services, services.jobs, job.id, "w") == "failed"
    failed = services.jobs.get(job.id)
    assert failed.error_code == "job.bad_payload" and failed.attempts == 1
