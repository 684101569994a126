"""Storage: migrations create exactly the models' schema, and SQLite is set up as intended."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text, type_coerce
from sqlalchemy.dialects import sqlite

import dignity.actions.models
import dignity.audit.models
import dignity.backfill.models
import dignity.jobs.models
import dignity.takedown.models
import dignity.takedown.retro  # noqa: F401
from dignity.cases import models as _case_models  # noqa: F401
from dignity.derivatives import models as _derivative_models  # noqa: F401
from dignity.errors import StorageError
from dignity.exchanges import models as _exchange_models  # noqa: F401
from dignity.storage.db import Database, open_database
from dignity.storage.models import Bank, Base
from dignity.storage.types import UtcDateTime, utc


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


def test_timestamps_come_back_aware_utc_on_every_backend(db: Database) -> None:
    """UtcDateTime stores the instant (an offset is converted, naive means UTC) and hands back
    aware UTC datetimes through the ORM, column tuples and coerced aggregates alike."""
    paris = timezone(timedelta(hours=2))
    instant = datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
    with db.session() as s:
        s.add(Bank(name="offset", created_at=instant.astimezone(paris), updated_at=instant))
        s.add(Bank(name="naive", created_at=instant.replace(tzinfo=None), updated_at=instant))
        s.commit()
    with db.session() as s:
        rows = s.scalars(select(Bank).order_by(Bank.name)).all()
        assert [b.created_at for b in rows] == [instant, instant]
        assert all(b.created_at.tzinfo is UTC for b in rows)
        ((column,),) = s.execute(select(Bank.created_at).where(Bank.name == "offset")).all()
        assert column == instant and column.tzinfo is UTC
        latest = s.scalar(select(func.max(Bank.created_at)))
        assert latest == instant and latest is not None and latest.tzinfo is UTC
        # A raw expression has no column type: SQLite gives text until told what it is.
        raw = s.scalar(
            select(type_coerce(text("min(created_at)"), UtcDateTime())).select_from(Bank)
        )
        assert raw == instant and raw is not None and raw.tzinfo is UTC
        # A bound parameter is converted the same way, so an offset time finds the row.
        found = s.scalars(select(Bank.name).where(Bank.created_at == instant.astimezone(paris)))
        assert sorted(found) == ["naive", "offset"]


def test_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert utc(datetime(2026, 1, 1, 12)) == datetime(2026, 1, 1, 12, tzinfo=UTC)
    shifted = utc(datetime(2026, 1, 1, 12, tzinfo=plus_two))
    assert shifted == datetime(2026, 1, 1, 10, tzinfo=UTC) and shifted.tzinfo is UTC
    with pytest.raises(TypeError, match="datetime"):
        UtcDateTime().process_bind_param("2026-01-01", sqlite.dialect())  # type: ignore[arg-type]
