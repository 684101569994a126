"""Shared fixtures: where ../shared/fixtures is, a fresh SQLite database per test, sample images."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from dignity.settings import Settings
from dignity.storage.db import Database, open_database

ROOT = Path(__file__).resolve().parents[1]

# The tests start hundreds of Python subprocesses (the CLI, servers, workers), each importing all
# of dignity. Where PYTHONDONTWRITEBYTECODE is set, each would compile every module from source
# again (~0.3 s of CPU a start). They get a bytecode cache of their own outside the tree instead
# (this process, already started, writes none).
if os.environ.get("PYTHONDONTWRITEBYTECODE") and not os.environ.get("PYTHONPYCACHEPREFIX"):
    del os.environ["PYTHONDONTWRITEBYTECODE"]
    os.environ["PYTHONPYCACHEPREFIX"] = str(
        Path(tempfile.gettempdir()) / f"dignity-tests-pycache-{os.getuid()}"
    )
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures"


def shared_fixture(*parts: str) -> Path:
    """Path under ../shared/fixtures, skipping the test (visibly) where a clone has none."""
    path = SHARED_FIXTURES.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have ../shared/fixtures, missing {path}")
        pytest.skip(f"no ../shared/fixtures in this clone ({path} missing)")
    return path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist with ``--dist loadgroup`` (``make unit``), each test file is one unit of
    work, run whole on one worker, and so is each ``xdist_group`` (the broker tests): a module's
    server, browser or PostgreSQL schema is set up once, as without xdist, and a file's SQLite
    and PostgreSQL runs never overlap (they write the same screenshots)."""
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class FileOrGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.rfind("@") > nodeid.rfind("]"):
                return nodeid.split("@")[-1]  # an xdist_group mark: its group
            return nodeid.split("::", 1)[0]  # otherwise its file

    return FileOrGroupScheduling(config, log)


POSTGRES_ENV = "DIGNITY_TEST_POSTGRES_URL"


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema for one test (or module), dropped afterwards; yields its URL."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        if os.environ.get("CI"):
            pytest.fail(f"CI must set {POSTGRES_ENV}")
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV} (CI sets it to the local server)")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each repository test runs on an SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'dignity.sqlite3'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = open_database(settings.resolved_database_url)
    yield database
    database.close()
