"""Backfill on real sources and a real database (SQLite file and PostgreSQL): a directory, a
file of URLs served by an HTTP server on 127.0.0.1, and an S3 bucket on moto's S3-compatible
server; fan-out into batches, the per-item record, resumability, bad items, the CLI."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from functools import partial
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from dignity.backfill import BackfillRefused, BackfillService, parse_source
from dignity.backfill import sources as backfill_sources
from dignity.backfill.models import BackfillItem
from dignity.fetch import FetchPolicy
from dignity.jobs.service import JobInfo, JobService
from dignity.matching.banks import NewEntry
from dignity.samples import encode, landscape
from dignity.services import CLI, Services
from dignity.settings import Settings
from dignity.takedown.models import ScanRecord
from dignity.worker.tasks import TASKS, JobContext, run_claimed
from tests.integration.server import free_port

MAX_BYTES = 200_000


@pytest.fixture
def services(tmp_path: Path, database_url: str) -> Iterator[Services]:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        max_bytes=MAX_BYTES,
        video_max_bytes=MAX_BYTES + 100_000,
    )
    svc = Services(settings, profile=CLI)
    yield svc
    svc.close()


def drain(services: Services, worker: str = "test-worker") -> int:
    """Run queued jobs in this process, oldest first, the way every engine does (claim_next,
    then run_claimed), until none is left; returns how many ran."""
    ran = 0
    while (job := services.jobs.claim_next(worker)) is not None:
        run_claimed(services, services.jobs, job, worker)
        ran += 1
    return ran


def image(seed: int) -> bytes:
    return encode(landscape(seed, (320, 240)), quality=85)


def scan_rows(services: Services) -> list[ScanRecord]:
    with services.db.session() as s:
        return list(s.scalars(select(ScanRecord).order_by(ScanRecord.id)))


def items(services: Services) -> dict[str, BackfillItem]:
    with services.db.session() as s:
        return {r.item_key: r for r in s.scalars(select(BackfillItem))}


def backfill(services: Services, spec: dict[str, Any], page_size: int = 3) -> JobInfo:
    job, _ = services.submit_job("backfill", {"source": spec, "page_size": page_size})
    drain(services)
    return services.jobs.get(job.id)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    (root / "b" / "deep").mkdir(parents=True)
    for n, rel in enumerate(["a1.jpg", "a2.jpg", "b/b1.jpg", "b/deep/c1.jpg", "z.jpg"]):
        (root / rel).write_bytes(image(100 + n))
    (root / "b" / "notes.txt").write_text("not an image at all\n")
    (root / "huge.bin").write_bytes(os.urandom(MAX_BYTES + 200_000))
    return root


def test_directory_backfill_scans_every_item_and_records_bad_ones(
    services: Services, archive: Path
) -> None:
    # One archive image is already banked: the backfill must find it.
    services.banks.create_bank("known", purpose="block")
    from dignity.hashing.signals import hash_bytes

    banked = hash_bytes((archive / "b" / "b1.jpg").read_bytes())
    assert banked.pdq is not None
    services.banks.add_entries("known", [NewEntry("pdq", banked.pdq.hex)])

    run = backfill(services, parse_source(str(archive)))
    assert run.state == "done"
    assert run.result == {
        "source": f"dir:{archive.resolve()}",
        "listed": 7,
        "already_done": 0,
        "queued": 7,
        "batches": 3,
    }
    batches = services.jobs.list_jobs(parent_id=run.id)
    assert len(batches) == 3 and {b.state for b in batches} == {"done"}
    # The scan log has every good item under its path as the content id.
    logged = {r.content_id: r for r in scan_rows(services)}
    assert set(logged) == {"a1.jpg", "a2.jpg", "b/b1.jpg", "b/deep/c1.jpg", "z.jpg"}
    assert logged["b/b1.jpg"].decision == "block"
    record = items(services)
    assert record["b/notes.txt"].state == "failed"
    assert str(record["b/notes.txt"].error_code).startswith("media.")
    assert record["huge.bin"].state == "failed"
    assert record["huge.bin"].error_code == "media.too_large"
    assert record["a1.jpg"].scan_id == logged["a1.jpg"].id
    # The run's job row carries the aggregate progress; the summary counts decisions.
    assert run.progress_done == 7 and run.progress_total == 7
    assert run.progress_counts["scanned"] == 5 and run.progress_counts["failed"] == 2
    assert run.progress_counts["matched"] == 1 and run.progress_counts["action.block"] == 1
    summary = BackfillService(services.db).run_summary(run.id)
    assert summary["actions"]["block"] == 1 and sum(summary["actions"].values()) == 5
    assert summary["errors"]["media.too_large"] == 1

    # A second run of the same source scans nothing twice: only the failed items again.
    again = backfill(services, parse_source(str(archive)))
    assert again.result is not None
    assert again.result["already_done"] == 5 and again.result["queued"] == 2
    assert len(scan_rows(services)) == 5
    assert BackfillService(services.db).run_summary(again.id)["failed"] == 2


def test_a_listing_killed_mid_fan_out_never_queues_a_batch_twice(
    services: Services, archive: Path
) -> None:
    jobs = JobService(services.db, lease_s=0.2)
    job, _ = jobs.submit("backfill", {"source": parse_source(str(archive)), "page_size": 2})
    claimed = jobs.claim(job.id, "dying")
    assert claimed is not None
    # The first worker lists everything and dies before finishing the job.
    TASKS["backfill"](JobContext(services, jobs, claimed, "dying"))
    first = {b.id for b in jobs.list_jobs(parent_id=job.id)}
    assert len(first) == 4
    time.sleep(0.3)
    taken = jobs.claim(job.id, "alive")
    assert taken is not None and taken.attempts == 2
    assert run_claimed(services, jobs, taken, "alive") == "done"
    assert {b.id for b in jobs.list_jobs(parent_id=job.id)} == first
    drain(services)
    assert len(scan_rows(services)) == 5


def test_a_batch_run_twice_scans_nothing_twice(services: Services, archive: Path) -> None:
    run = backfill(services, parse_source(str(archive)), page_size=10)
    [batch] = services.jobs.list_jobs(parent_id=run.id)
    jobs = services.jobs
    # The same batch delivered again after it ended (a worker that had it re-runs the body).
    again, _ = jobs.submit("backfill.batch", batch.payload, parent_id=run.id)
    drain(services)
    result = jobs.get(again.id).result
    assert result is not None and result["skipped"] == 5 and result["scanned"] == 0
    assert len(scan_rows(services)) == 5


# -- a file of URLs -----------------------------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", free_port()), partial(_Quiet, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_url_list_backfill_fetches_through_the_guard(
    services: Services,
    http_root: tuple[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, root = http_root
    for n in range(3):
        (root / f"p{n}.jpg").write_bytes(image(200 + n))
    (root / "page.html").write_text("<html>hello</html>")
    urls = [f"{base}/p{n}.jpg" for n in range(3)] + [f"{base}/missing.jpg", f"{base}/page.html"]
    listing = tmp_path / "urls.txt"
    listing.write_text("# the archive\n" + "\n".join(urls) + "\n\n")

    # Without the test allowance the SSRF guard refuses loopback: every item fails, none scanned.
    refused = backfill(services, parse_source(str(listing)))
    errors = BackfillService(services.db).run_summary(refused.id)["errors"]
    assert errors == {"url.forbidden_address": 5}
    assert scan_rows(services) == []

    def trusting(settings: Settings) -> FetchPolicy:
        return FetchPolicy(
            max_bytes=settings.max_bytes,
            timeout_s=5.0,
            trusted_addresses=frozenset({ip_network("127.0.0.1/32")}),
        )

    monkeypatch.setattr(backfill_sources, "fetch_policy", trusting)
    run = backfill(services, parse_source(str(listing)))
    summary = BackfillService(services.db).run_summary(run.id)
    assert summary["scanned"] == 3 and summary["failed"] == 2
    assert {r.content_id for r in scan_rows(services)} == set(urls[:3])
    record = items(services)
    assert record[urls[3]].error_code == "url.http_error"
    assert str(record[urls[4]].error_code).startswith("media.")


# -- S3 -----------------------------------------------------------------------------------------


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port())
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        yield boto3.client("s3", endpoint_url=endpoint), endpoint
    finally:
        server.stop()


def test_s3_backfill_lists_in_pages_and_resumes(services: Services, s3: tuple[Any, str]) -> None:
    client, endpoint = s3
    # moto keeps its buckets per process, across servers: one bucket name per test.
    bucket = f"uploads-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    for n in range(5):
        client.put_object(Bucket=bucket, Key=f"archive/{n:03d}.jpg", Body=image(300 + n))
    client.put_object(Bucket=bucket, Key="archive/broken.jpg", Body=b"\xff\xd8 not really")
    client.put_object(Bucket=bucket, Key="other/x.jpg", Body=image(399))
    spec = parse_source(f"s3://{bucket}/archive/", endpoint_url=endpoint)

    run = backfill(services, spec, page_size=2)
    assert run.result is not None
    assert run.result["listed"] == 6 and run.result["batches"] == 3
    summary = BackfillService(services.db).run_summary(run.id)
    assert summary["scanned"] == 5 and summary["failed"] == 1
    assert {r.content_id for r in scan_rows(services)} == {f"archive/{n:03d}.jpg" for n in range(5)}

    # New objects since: the second run scans only them.
    client.put_object(Bucket=bucket, Key="archive/005.jpg", Body=image(305))
    again = backfill(services, spec, page_size=2)
    assert again.result is not None and again.result["already_done"] == 5
    assert len(scan_rows(services)) == 6

    missing = backfill(services, parse_source("s3://no-such-bucket/x", endpoint_url=endpoint))
    assert missing.state == "failed" and missing.error_code == "backfill.bad_source"


def test_bad_sources_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BackfillRefused) as err:
        parse_source(str(tmp_path / "nothing-here"))
    assert err.value.code == "backfill.bad_source"
    with pytest.raises(BackfillRefused):
        parse_source("s3://")


# -- the command line ---------------------------------------------------------------------------


def test_cli_backfill_here(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    from dignity.cli import cli

    monkeypatch.setenv("DIGNITY_DATA_DIR", str(tmp_path / "cli-data"))
    monkeypatch.setenv("DIGNITY_DATABASE_URL", database_url)
    monkeypatch.setenv("DIGNITY_MAX_BYTES", str(MAX_BYTES))
    monkeypatch.setenv("DIGNITY_VIDEO_MAX_BYTES", str(MAX_BYTES + 100_000))
    runner = CliRunner()
    args = ["backfill", str(archive), "--here", "--batch-size", "3", "--interval", "0.1"]
    result = runner.invoke(cli, args)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.exit_code == 1, result.output  # two bad items: partial
    summary = lines[-1]
    assert summary["state"] == "done" and summary["scanned"] == 5 and summary["failed"] == 2
    assert summary["errors"]["media.too_large"] == 1

    # Everything good is done: the rerun scans nothing and still reports the two failures.
    again = runner.invoke(cli, args)
    last = json.loads(again.stdout.splitlines()[-1])
    assert last["already_done"] == 5 and last["scanned"] == 0 and last["failed"] == 2

    bad = runner.invoke(cli, ["backfill", str(tmp_path / "nope")])
    assert bad.exit_code == 3 and "backfill.bad_source" in bad.stderr
