"""Tables of the tamper-evident audit log: the records and the chain's head.

``audit_log`` is append-only: each record carries the SHA-256 of the record before it
(``prev_hash``) and its own (``hash``, over its sequence number, time, actor, action, subject,
detail and ``prev_hash``), so altering or deleting any record breaks every hash after it.
``audit_head`` is one row (id 1) holding the last sequence number and hash: appenders lock it to
serialise the chain across processes, and a deleted tail no longer matches it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dignity.storage.models import Base, BigId, utcnow
from dignity.storage.types import UtcDateTime


class AuditRecord(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False, unique=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    # "key:<id>:<name>", "cli:<user>", "session:<key id>:<name>", "requester", "system", ...
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    subject: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    # Canonical JSON (sorted keys, no spaces): the exact text the hash covers.
    detail: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)


class AuditHead(Base):
    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)
