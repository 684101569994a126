"""Registering, listing and removing source photos, and keeping a process's matcher current.

:class:`SourceService` is the only writer: ``register`` computes the features of every photo
first and writes all of them (and their ``add`` log rows) in one transaction, or none;
``remove`` deletes the row (descriptors included) and logs ``remove`` in the same transaction.
:class:`SourceIndex` owns one process's :class:`~dignity.derivatives.matching.DerivativeMatcher`:
``load`` reads every source once, ``refresh`` replays only log rows it has not seen, so a photo
registered or removed by any process counts in every other within one refresh interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select

from dignity import audit
from dignity.derivatives.features import LOW_COVERAGE, Features, source_features
from dignity.derivatives.matching import DerivativeMatcher, Record
from dignity.derivatives.models import DerivativeLog, DerivativeSource
from dignity.errors import DignityError, NotFound, Refused
from dignity.media import Media
from dignity.storage.changelog import ChangeLog, Replayer
from dignity.storage.db import Database

MAX_SUBJECT = 128
MAX_CONSENT_FIELD = 256


class SourceError(DignityError):
    """A registration was refused (empty subject, over-long consent fields)."""


class SourceRefused(SourceError, Refused):
    """A subject or consent field that is empty, too long or has control characters."""

    codes = ("source.bad_subject", "source.bad_consent_by", "source.bad_for_whom")


class SourceNotFound(SourceError, NotFound):
    """No registered source photo with that id."""

    codes = ("source.not_found",)


@dataclass(frozen=True)
class NewSource:
    """A photo to register: its decoded media plus the consent record."""

    media: Media
    subject: str
    consent_by: str = ""
    for_whom: str = ""


@dataclass(frozen=True)
class SourceInfo:
    id: int
    subject: str
    consent_by: str
    for_whom: str
    consented_at: datetime
    width: int
    height: int
    keypoints: int
    stored_bytes: int
    coverage: float

    def to_dict(self) -> dict[str, Any]:
        warning = None
        if self.coverage < LOW_COVERAGE:
            warning = (
                f"the photo has recognisable detail in only {self.coverage:.0%} of its frame: "
                "an edited copy that repaints that part cannot be recognised; a photo with "
                "more detail (background, clothes, hair) protects better"
            )
        return {
            "source_id": self.id,
            "subject": self.subject,
            "consent": {
                "by": self.consent_by,
                "for": self.for_whom,
                "at": self.consented_at.isoformat(),
            },
            "width": self.width,
            "height": self.height,
            "keypoints": self.keypoints,
            "stored_bytes": self.stored_bytes,
            "coverage": round(self.coverage, 3),
            "warning": warning,
        }


def _clean(value: str, name: str, limit: int, *, required: bool = False) -> str:
    text = value.strip()
    if required and not text:
        raise SourceRefused(f"{name} must not be empty", code="source.bad_subject")
    if len(text) > limit:
        raise SourceRefused(f"{name} is longer than {limit} characters", code=f"source.bad_{name}")
    if any(ord(c) < 32 for c in text):
        raise SourceRefused(f"{name} contains control characters", code=f"source.bad_{name}")
    return text


def _info(row: Any) -> SourceInfo:
    at = row.consented_at
    return SourceInfo(
        id=int(row.id),
        subject=row.subject,
        consent_by=row.consent_by,
        for_whom=row.for_whom,
        consented_at=at,
        width=int(row.width),
        height=int(row.height),
        keypoints=int(row.keypoints),
        stored_bytes=len(row.features),
        coverage=Features.unpack(row.features).coverage(),
    )


_INFO_COLUMNS = (
    DerivativeSource.id,
    DerivativeSource.subject,
    DerivativeSource.consent_by,
    DerivativeSource.for_whom,
    DerivativeSource.consented_at,
    DerivativeSource.width,
    DerivativeSource.height,
    DerivativeSource.keypoints,
    DerivativeSource.features,  # ~3.5 KB: read for the coverage; lists are paged
)


class SourceService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def prepare(self, new: NewSource) -> tuple[NewSource, Features]:
        """Check the consent record and compute the features; writes nothing. Raises
        :class:`SourceError` or ``FeatureError`` (``source.too_plain``)."""
        checked = NewSource(
            new.media,
            _clean(new.subject, "subject", MAX_SUBJECT, required=True),
            _clean(new.consent_by, "consent_by", MAX_CONSENT_FIELD),
            _clean(new.for_whom, "for_whom", MAX_CONSENT_FIELD),
        )
        return checked, source_features(new.media.image)

    def register(self, prepared: Sequence[tuple[NewSource, Features]]) -> list[SourceInfo]:
        """Store prepared sources (see :meth:`prepare`) in one transaction: all or none."""
        rows = []
        with self.db.session() as s:
            for new, feats in prepared:
                row = DerivativeSource(
                    subject=new.subject,
                    consent_by=new.consent_by,
                    for_whom=new.for_whom,
                    width=new.media.width,
                    height=new.media.height,
                    keypoints=len(feats),
                    features=feats.pack(),
                )
                s.add(row)
                rows.append(row)
            s.flush()
            for row in rows:
                s.add(DerivativeLog(source_id=row.id, op="add"))
            for row in rows:  # the row is the consent record: its id and whose photo it is
                audit.record(
                    s,
                    "source.registered",
                    f"source:{row.id}",
                    {"consent_record_id": row.id, "subject": row.subject},
                )
        return [
            SourceInfo(
                r.id,
                r.subject,
                r.consent_by,
                r.for_whom,
                r.consented_at,
                r.width,
                r.height,
                r.keypoints,
                len(r.features),
                feats.coverage(),
            )
            for r, (_, feats) in zip(rows, prepared, strict=True)
        ]

    def list(
        self, *, subject: str | None = None, limit: int = 100, after_id: int = 0
    ) -> list[SourceInfo]:
        query = select(*_INFO_COLUMNS).where(DerivativeSource.id > after_id)
        if subject is not None:
            query = query.where(DerivativeSource.subject == subject)
        query = query.order_by(DerivativeSource.id).limit(limit)
        with self.db.engine.connect() as conn:
            return [_info(r) for r in conn.execute(query).all()]

    def get(self, source_id: int) -> SourceInfo:
        with self.db.engine.connect() as conn:
            row = conn.execute(
                select(*_INFO_COLUMNS).where(DerivativeSource.id == source_id)
            ).first()
        if row is None:
            raise SourceNotFound(f"no source photo {source_id}", code="source.not_found")
        return _info(row)

    def remove(self, source_id: int) -> SourceInfo:
        """Delete the source and its descriptors; every matcher drops it on its next refresh."""
        with self.db.session() as s:
            conn = s.connection()
            if conn.dialect.name == "sqlite":
                # Overwrite the deleted row's bytes in the file instead of leaving them in a
                # free page: removal means the descriptors are gone, not merely unlinked.
                conn.exec_driver_sql("PRAGMA secure_delete = ON")
            row = conn.execute(
                select(*_INFO_COLUMNS).where(DerivativeSource.id == source_id)
            ).first()
            if row is None:
                raise SourceNotFound(f"no source photo {source_id}", code="source.not_found")
            s.execute(delete(DerivativeSource).where(DerivativeSource.id == source_id))
            s.add(DerivativeLog(source_id=source_id, op="remove"))
            audit.record(
                s,
                "source.removed",
                f"source:{source_id}",
                {"consent_record_id": source_id, "subject": row.subject},
            )
        return _info(row)

    def count(self) -> int:
        with self.db.engine.connect() as conn:
            return int(conn.execute(select(func.count(DerivativeSource.id))).scalar_one())


def _records(conn: Connection, ids: Sequence[int] | None = None) -> list[Record]:
    query = select(DerivativeSource.id, DerivativeSource.subject, DerivativeSource.features)
    out: list[Record] = []
    if ids is None:
        rows = conn.execute(query.order_by(DerivativeSource.id)).all()
    else:
        rows = []
        for i in range(0, len(ids), 500):
            rows += conn.execute(query.where(DerivativeSource.id.in_(ids[i : i + 500]))).all()
    for sid, subject, blob in rows:
        out.append(Record(int(sid), subject, Features.unpack(bytes(blob))))
    return out


DERIVATIVE_LOG = ChangeLog(DerivativeLog.seq, DerivativeLog.source_id, DerivativeLog.op)


class SourceIndex:
    """One process's matcher over every registered source, kept current from the log."""

    def __init__(self, db: Database, matcher: DerivativeMatcher | None = None) -> None:
        self.db = db
        self.matcher = matcher or DerivativeMatcher()
        self.replayer = Replayer(db, DERIVATIVE_LOG)

    @property
    def loaded(self) -> bool:
        return self.replayer.loaded

    def load(self) -> None:
        self.replayer.load(_records, self.matcher.replace)

    def refresh(self) -> int:
        """Apply log rows not yet seen; returns how many sources changed. Refreshes run one
        at a time (see :class:`~dignity.storage.changelog.Replayer`)."""
        with self.replayer.lock:
            if not self.replayer.loaded:
                self.load()
                return 0
            return self.replayer.refresh(self._read_changes, self._apply)

    @staticmethod
    def _read_changes(conn: Connection, final: dict[int, str]) -> list[Record]:
        adds = [sid for sid, op in final.items() if op == "add"]
        return _records(conn, adds) if adds else []

    def _apply(self, records: list[Record], final: dict[int, str]) -> None:
        found = {r.source_id for r in records}
        # An 'add' whose row is gone was removed since; its 'remove' may not be visible yet.
        self.matcher.remove([sid for sid in final if sid not in found])
        self.matcher.add(records)


def load_matcher(db: Database) -> DerivativeMatcher:
    """A matcher over every source registered now (for one-shot use: ``dignity scan``)."""
    index = SourceIndex(db)
    index.load()
    return index.matcher
