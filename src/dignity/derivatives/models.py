"""Tables of edited-derivative detection: registered source photos and their change log.

``derivative_sources`` holds, per registered photo, only what matching needs (the packed
keypoints of :mod:`dignity.derivatives.features`, ~3.5 KB) and the consent record: whose photo
it is (``subject``), who gave consent (``consent_by``), for whom the registration was made
(``for_whom``, e.g. a helpline acting for a person) and when. Never the photo. Removing a
source deletes its row, descriptors included. ``derivative_log`` lists additions and removals
by sequence number, so every process's in-memory matcher replays only what changed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dignity.storage.models import Base, BigId, utcnow
from dignity.storage.types import UtcDateTime


class DerivativeSource(Base):
    __tablename__ = "derivative_sources"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    consent_by: Mapped[str] = mapped_column(Text, nullable=False, default="")
    for_whom: Mapped[str] = mapped_column(Text, nullable=False, default="")
    consented_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    keypoints: Mapped[int] = mapped_column(Integer, nullable=False)
    features: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class DerivativeLog(Base):
    __tablename__ = "derivative_log"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    op: Mapped[str] = mapped_column(String(8), nullable=False)  # 'add' | 'remove'
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
