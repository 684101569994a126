"""Storage: SQLAlchemy 2 models, Alembic migrations, and the database handle.

SQLite (one file, WAL) is the embedded default; the schema uses only portable types so the same
migrations run on PostgreSQL. Repositories above this layer speak in core values, never in rows.
"""

from __future__ import annotations

from dignity.storage.db import Database, open_database
from dignity.storage.models import Bank, Base, Entry, IndexLog

__all__ = ["Bank", "Base", "Database", "Entry", "IndexLog", "open_database"]
