"""Signing in to the review UI: a reviewer's API key becomes a browser session with a CSRF token.

A reviewer (or admin) pastes their API key once on ``/review/login``; the key is checked and
forgotten, and the browser gets a random session token in an HttpOnly cookie. Only the token's
SHA-256 is stored (``web_sessions``), with the key's id, name and role and a CSRF token that every
state-changing call must echo in a header: the cookie alone (which a browser attaches to any
request) is never enough to decide anything. A session ends when it goes unused for
``session_idle_s``, ``session_max_s`` after sign-in, on sign-out, or at the next request after its
key is revoked. Failed sign-ins are limited per client address, as the portal limits PIN guesses.
Sign-in and sign-out are audited without the token or the key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from dignity import audit
from dignity.cases.service import FailureLimiter
from dignity.errors import DignityError, Forbidden, Unauthenticated
from dignity.keys import AuthError, KeyService
from dignity.settings import Settings
from dignity.storage.db import Database
from dignity.storage.models import ApiKey
from dignity.takedown.clock import Clock, SystemClock
from dignity.takedown.models import WebSession

# Roles whose keys may sign in to the review UI.
REVIEW_ROLES = ("reviewer", "admin")
COOKIE = "dignity_review"
_TOKEN_MAX = 128  # longer cookie values are not ours; refuse before hashing anything


class SessionError(DignityError):
    """Not signed in, a session that ended, a refused sign-in, or a missing CSRF token."""


class SessionUnauthenticated(SessionError, Unauthenticated):
    """Not signed in, a session that ended, or a refused sign-in key."""

    codes = ("session.missing", "session.expired", "session.revoked", "session.bad_key")


class SessionForbidden(SessionError, Forbidden):
    """A signed-in key of the wrong role, or a request without its CSRF token."""

    codes = ("session.role", "review.csrf")


@dataclass(frozen=True)
class ReviewSession:
    """A live review UI session (what a request learns from its cookie)."""

    id: int
    key_id: int
    name: str
    role: str
    csrf: str
    created_at: datetime
    expires_at: datetime

    @property
    def actor(self) -> str:
        """Who the audit log says acted: the key behind the session."""
        return f"session:{self.key_id}:{self.name}"

    def to_dict(self) -> dict[str, object]:
        """What the page needs (never the cookie's token)."""
        return {
            "name": self.name,
            "role": self.role,
            "csrf": self.csrf,
            "expires_at": self.expires_at.isoformat(),
        }


@dataclass(frozen=True)
class SignedIn:
    """A new session and its token: the token goes to the cookie and is never stored."""

    token: str
    session: ReviewSession


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _view(row: WebSession) -> ReviewSession:
    return ReviewSession(
        id=row.id,
        key_id=row.key_id,
        name=row.key_name,
        role=row.role,
        csrf=row.csrf,
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


def _not_signed_in(why: str, code: str = "session.missing") -> SessionError:
    return SessionUnauthenticated(why, code=code)


class SessionService:
    """Review UI sessions in the database; one per process (it holds the failure limiter)."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        keys: KeyService,
        clock: Clock | None = None,
        *,
        limiter: FailureLimiter | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.keys = keys
        self.clock: Clock = clock or SystemClock()
        # Wrong keys per client address an hour: the portal's limit for wrong PINs is the
        # operator's one knob for "guesses from one address".
        self.limiter = limiter or FailureLimiter(settings.portal_ip_failures_per_hour)

    def _now(self) -> datetime:
        return self.clock.now().astimezone(UTC)

    def _expiry(self, created: datetime, seen: datetime) -> datetime:
        return min(
            created + timedelta(seconds=self.settings.session_max_s),
            seen + timedelta(seconds=self.settings.session_idle_s),
        )

    def sign_in(self, key: str, *, client: str = "unknown") -> SignedIn:
        """A new session for a reviewer or admin ``key``; counts failures against ``client``."""
        self.limiter.check(client)
        try:
            info = self.keys.verify(key.strip())
        except AuthError as exc:
            self.limiter.add(client)
            raise SessionUnauthenticated(
                "that API key is not valid or has been revoked", code="session.bad_key"
            ) from exc
        if info.role not in REVIEW_ROLES:
            self.limiter.add(client)
            raise SessionForbidden(
                f"a {info.role} key may not sign in to the review UI; use a reviewer or admin key",
                code="session.role",
                role=info.role,
            )
        token = secrets.token_urlsafe(32)
        now = self._now()
        name = info.name or f"key {info.id}"
        with self.db.session() as s:
            # Sessions nobody came back to would otherwise stay until their cookie returned.
            s.execute(delete(WebSession).where(WebSession.expires_at <= now))
            row = WebSession(
                token_hash=_digest(token),
                key_id=info.id,
                key_name=name[:200],
                role=info.role,
                csrf=secrets.token_urlsafe(32),
                created_at=now,
                last_seen_at=now,
                expires_at=self._expiry(now, now),
            )
            s.add(row)
            s.flush()
            view = _view(row)
            audit.record(
                s,
                "session.signed_in",
                f"web_session:{row.id}",
                {"key_id": info.id, "role": info.role},
                actor=view.actor,
            )
        return SignedIn(token=token, session=view)

    def current(self, token: str | None) -> ReviewSession:
        """The live session behind a cookie's token, its idle clock restarted; else
        ``SessionError`` (ended sessions are deleted on the way)."""
        if not token or len(token) > _TOKEN_MAX:
            raise _not_signed_in("sign in to the review UI first")
        now = self._now()
        with self.db.session() as s:
            row = s.scalars(
                select(WebSession).where(WebSession.token_hash == _digest(token))
            ).one_or_none()
            if row is None:
                raise _not_signed_in("sign in to the review UI first")
            if now >= row.expires_at:
                s.delete(row)
                s.commit()
                raise _not_signed_in(
                    "your review session has ended; sign in again", "session.expired"
                )
            # Read the key itself, not the key cache: a revocation ends the session at once.
            key = s.get(ApiKey, row.key_id)
            if key is None or key.revoked_at is not None or key.role not in REVIEW_ROLES:
                s.delete(row)
                s.commit()
                raise _not_signed_in(
                    "the key behind this session has been revoked; sign in again",
                    "session.revoked",
                )
            row.last_seen_at = now
            row.expires_at = self._expiry(row.created_at, now)
            return _view(row)

    def sign_out(self, token: str | None) -> bool:
        """End the session behind ``token``; False when there was none."""
        if not token or len(token) > _TOKEN_MAX:
            return False
        with self.db.session() as s:
            row = s.scalars(
                select(WebSession).where(WebSession.token_hash == _digest(token))
            ).one_or_none()
            if row is None:
                return False
            view = _view(row)
            s.delete(row)
            audit.record(
                s,
                "session.signed_out",
                f"web_session:{view.id}",
                {"key_id": view.key_id},
                actor=view.actor,
            )
        return True

    def purge(self) -> int:
        """Delete sessions that have ended; returns how many."""
        with self.db.session() as s:
            result = s.execute(delete(WebSession).where(WebSession.expires_at <= self._now()))
            return int(getattr(result, "rowcount", 0) or 0)

    @staticmethod
    def check_csrf(session: ReviewSession, presented: str | None) -> None:
        """Refuse a state-changing call whose ``X-CSRF-Token`` is not the session's."""
        if not presented or not hmac.compare_digest(
            presented.encode("utf-8"), session.csrf.encode("utf-8")
        ):
            raise SessionForbidden(
                "this call needs the X-CSRF-Token header of your session; reload the page",
                code="review.csrf",
            )


__all__ = [
    "COOKIE",
    "REVIEW_ROLES",
    "ReviewSession",
    "SessionError",
    "SessionService",
    "SignedIn",
]
