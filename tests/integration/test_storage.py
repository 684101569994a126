"""Storage: migrations create exactly the models' schema, and SQLite is set up as intended."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

import dignity.actions.models
import dignity.audit.models
import dignity.takedown.models  # noqa: F401
from dignity.cases import models as _case_models  # noqa: F401
from dignity.derivatives import models as _derivative_models  # noqa: F401
from dignity.errors import StorageError
from dignity.exchanges import models as _exchange_models  # noqa: F401
from dignity.storage.db import Database, open_database
from dignity.storage.models import Base


def test_migrations_match_models(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_sqlite_pragmas(db: Database) -> None:
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_reopen_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x' / 'd.sqlite3'}"
    open_database(url).close()
    db = open_database(url)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() is not None
    db.close()


@pytest.mark.parametrize("url", ["not a url", "nosuchdialect://x"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(StorageError):
        open_database(url)


def test_unwritable_location(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError):
        open_database(f"sqlite:///{blocker / 'sub' / 'd.sqlite3'}")
