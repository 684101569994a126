"""Opening the database: engine set-up per dialect and schema migration to the newest revision.

SQLite gets WAL (readers never block the writer), foreign keys (SQLite ignores them unless asked)
and a busy timeout, so a CLI run and a service can share one file. Migrations run through
Alembic's API on open, so ``dignity`` works on a fresh data directory with no extra step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from dignity.errors import StorageError

MIGRATIONS = Path(__file__).with_name("migrations")
T = TypeVar("T")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


class Database:
    """An engine plus a session factory; sessions commit on success and roll back on error."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def retrying(self, fn: Callable[[Session], T], *, attempts: int = 3) -> T:
        """``fn(session)`` in a transaction, run again (up to ``attempts`` times) when the
        database refuses it: SQLite refuses a read-then-write transaction at once when another
        writer committed in between (WAL), and a fresh transaction goes through. ``fn`` must be
        safe to run again: only a rolled-back attempt is ever repeated."""
        for attempt in range(attempts):
            try:
                with self.session() as s:
                    return fn(s)
            except OperationalError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def migrate(self) -> None:
        cfg = _alembic_config(self.engine)
        head = ScriptDirectory.from_config(cfg).get_current_head()
        with self.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
        if current != head:
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self.engine.dispose()


def open_database(url: str, *, migrate: bool = True) -> Database:
    """Open (and by default migrate) the database at ``url``; raise ``StorageError`` if we can't."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StorageError(f"not a database URL: {url!r}", code="storage.bad_url") from exc
    kwargs: dict[str, Any] = {}
    try:
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 10}
        engine = create_engine(parsed, **kwargs)
        if parsed.get_backend_name() == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        db = Database(engine)
        if migrate:
            db.migrate()
    except SQLAlchemyError as exc:
        raise StorageError(
            f"cannot open database {parsed.render_as_string(hide_password=True)}: {exc}",
            code="storage.unavailable",
        ) from exc
    except OSError as exc:
        raise StorageError(
            f"cannot create the database file: {exc}", code="storage.unavailable"
        ) from exc
    return db
