"""Fixtures of the job tests: a migrated database on an SQLite file and on PostgreSQL (skipped,
visibly, where DIGNITY_TEST_POSTGRES_URL is not set; CI sets it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dignity.storage.db import Database, open_database
from tests.conftest import postgres_schema


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
