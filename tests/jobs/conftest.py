"""Fixtures of the job tests: a migrated database on an SQLite file and on PostgreSQL (skipped,
visibly, where DIGNITY_TEST_POSTGRES_URL is not set; CI sets it)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dignity.storage.db import Database, open_database
from tests.conftest import postgres_schema
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
def queue() -> Iterator[str]:
    """A queue of this test's own, deleted afterwards with any message left in it (a duplicate
    sent by recovery is skipped by the workers, but must not pile up in a shared broker)."""
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    if broker_answers(BROKER):
        delete_queues(BROKER, [name, f"{name}p"])
