"""Shared fixtures: where ../shared/fixtures is, a fresh SQLite database per test, sample images."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dignity.settings import Settings
from dignity.storage.db import Database, open_database

ROOT = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures"


def shared_fixture(*parts: str) -> Path:
    """Path under ../shared/fixtures, skipping the test (visibly) where a clone has none."""
    path = SHARED_FIXTURES.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have ../shared/fixtures, missing {path}")
        pytest.skip(f"no ../shared/fixtures in this clone ({path} missing)")
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=None)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = open_database(settings.resolved_database_url)
    yield database
    database.close()
