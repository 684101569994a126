"""API keys: create (shown once), list, revoke, and verify a presented key to its role.

A key is ``dg_`` plus 43 URL-safe characters (256 random bits). Only its SHA-256 is stored, so
a database leak reveals no usable key; verification is one indexed lookup by that digest.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from dignity import audit
from dignity.errors import DignityError, Forbidden, NotFound, Refused, Unauthenticated
from dignity.storage.db import Database
from dignity.storage.models import ApiKey, utcnow

# partner: reads the partner feed of case hashes (/v1/feed) and nothing else.
# flagger: a trusted flagger (DSA Art. 22) files and follows takedown requests (/v1/takedowns).
ROLES = ("admin", "curator", "platform", "reviewer", "partner", "flagger")
KEY_PREFIX = "dg_"


class AuthError(DignityError):
    """A request carried no key, an unknown or revoked key, or a key of the wrong role."""


class AuthUnauthenticated(AuthError, Unauthenticated):
    """No key, or a key that is unknown or revoked."""

    codes = ("auth.invalid_key", "auth.missing_key")


class AuthForbidden(AuthError, Forbidden):
    """A valid key whose role may not do this."""

    codes = ("auth.forbidden",)


class KeyRefused(Refused):
    """A key that cannot be created as asked: unknown role, a rate that is not positive."""

    codes = ("key.bad_role", "key.bad_rate")


class KeyNotFound(NotFound):
    """No API key with that id."""

    codes = ("key.not_found",)


@dataclass(frozen=True)
class KeyInfo:
    id: int
    name: str
    role: str
    rate_per_minute: int | None
    created_at: datetime | None
    revoked_at: datetime | None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "rate_per_minute": self.rate_per_minute,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _info(k: ApiKey) -> KeyInfo:
    return KeyInfo(k.id, k.name, k.role, k.rate_per_minute, k.created_at, k.revoked_at)


class KeyService:
    """Keys in the database. ``verify`` remembers a good answer for ``cache_s`` seconds, so a
    busy server does not query the database on every request; a revocation therefore reaches
    every process within ``cache_s`` (1 s by default)."""

    def __init__(self, db: Database, *, cache_s: float = 1.0) -> None:
        self.db = db
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, KeyInfo]] = {}
        self._lock = threading.Lock()

    def create(
        self, role: str, *, name: str = "", rate_per_minute: int | None = None
    ) -> tuple[KeyInfo, str]:
        """A new key of ``role``; returns its record and the key itself (never stored)."""
        if role not in ROLES:
            raise KeyRefused(
                f"role must be one of {', '.join(ROLES)}; got {role!r}", code="key.bad_role"
            )
        if rate_per_minute is not None and rate_per_minute <= 0:
            raise KeyRefused("rate_per_minute must be positive", code="key.bad_rate")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self.db.session() as s:
            row = ApiKey(
                name=name, role=role, key_hash=_digest(key), rate_per_minute=rate_per_minute
            )
            s.add(row)
            s.flush()
            # The key itself never goes into the log; its id, name and role do.
            audit.record(
                s,
                "key.created",
                f"key:{row.id}",
                {"name": name, "role": role, "rate_per_minute": rate_per_minute},
            )
            return _info(row), key

    def list(self) -> list[KeyInfo]:
        with self.db.session() as s:
            return [_info(k) for k in s.scalars(select(ApiKey).order_by(ApiKey.id))]

    def revoke(self, key_id: int) -> KeyInfo:
        with self._lock:
            self._cache.clear()
        with self.db.session() as s:
            row = s.get(ApiKey, key_id)
            if row is None:
                raise KeyNotFound(f"no API key with id {key_id}", code="key.not_found")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                audit.record(
                    s, "key.revoked", f"key:{row.id}", {"name": row.name, "role": row.role}
                )
            return _info(row)

    def cached(self, key: str) -> KeyInfo | None:
        """The key's record if it was verified less than ``cache_s`` ago, else None."""
        digest = _digest(key)
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and time.monotonic() - hit[0] < self.cache_s:
            return hit[1]
        return None

    def verify(self, key: str) -> KeyInfo:
        """The live key record for a presented key, or ``AuthError`` (401)."""
        if not key.startswith(KEY_PREFIX) or len(key) > 128:
            raise AuthUnauthenticated("the API key is not valid")
        digest = _digest(key)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < self.cache_s:
            return hit[1]
        with self.db.session() as s:
            row = s.scalars(select(ApiKey).where(ApiKey.key_hash == digest)).one_or_none()
            if row is None or row.revoked_at is not None:
                with self._lock:
                    self._cache.pop(digest, None)
                raise AuthUnauthenticated("the API key is not valid or has been revoked")
            info = _info(row)
        with self._lock:
            if len(self._cache) > 10000:  # many distinct keys: start over rather than grow
                self._cache.clear()
            self._cache[digest] = (now, info)
        return info
