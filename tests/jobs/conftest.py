"""Fixtures of the job tests: a migrated database on an SQLite file and on PostgreSQL (skipped,
visibly, where DIGNITY_TEST_POSTGRES_URL is not set; CI sets it), and an S3-compatible object
store (moto's server mode on 127.0.0.1)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dignity.storage.db import Database, open_database
from tests.conftest import postgres_schema
from tests.integration.server import free_port
from tests.jobs.effects import BROKER, broker_answers, delete_queues


@pytest.fixture(params=["sqlite", "postgresql"])
def jobs_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        db = open_database(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
        yield db
        db.close()
        return
    with postgres_schema() as url:
        db = open_database(url)
        yield db
        db.close()


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


@pytest.fixture
def queue() -> Iterator[str]:
    """A queue of this test's own, deleted afterwards with any message left in it (a duplicate
    sent by recovery is skipped by the workers, but must not pile up in a shared broker)."""
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    if broker_answers(BROKER):
        delete_queues(BROKER, [name, f"{name}p"])
