"""Fixtures for tests against a live server: one server per test module and backend.

Every module that uses ``live`` (or ``server_url``) runs once on an SQLite file and once on
PostgreSQL (skipped, visibly, where DIGNITY_TEST_POSTGRES_URL is not set; CI sets it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import postgres_schema
from tests.integration.server import LiveServer


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextmanager
def database_for(backend: str, directory: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'dignity.sqlite3'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[LiveServer]:
    directory = Path(tmp_path_factory.mktemp("live"))
    with database_for(backend, directory) as url:
        server = LiveServer(directory, env={"DIGNITY_DATABASE_URL": url})
        server.start()
        yield server
        server.stop()


@pytest.fixture
def server_url(tmp_path: Path, backend: str) -> Iterator[str]:
    """A fresh database URL for tests that start their own servers."""
    with database_for(backend, tmp_path) as url:
        yield url
