"""Webhooks: where events go. Create (with a signing secret), list, show, change, remove.

A webhook names an ``http(s)`` URL, the event types it wants (``*`` for all) and a secret that
signs every request (see :mod:`dignity.actions.signing`). The secret is stored as given, since
signing needs it, and is shown only when it is set; listings never include it. Webhooks are
an admin's configuration, so private and loopback addresses are allowed on purpose (a receiver
on the same host is common). Removing a webhook removes its deliveries; disabling one keeps
them pending until it is enabled again.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from dignity import audit
from dignity.actions.models import OutboxDelivery, Webhook
from dignity.actions.outbox import EVENT_TYPES
from dignity.errors import DignityError, NotFound, Refused
from dignity.storage.db import Database
from dignity.text import clean_text

MIN_SECRET = 16
MAX_SECRET = 256
MAX_URL = 2048


class WebhookError(DignityError):
    """A webhook request was refused (bad URL, secret or event types)."""


class WebhookRefused(WebhookError, Refused):
    """A webhook URL, secret, event list or text that is not allowed."""

    codes = ("webhook.bad_url", "webhook.bad_secret", "webhook.bad_events", "webhook.bad_text")


class WebhookNotFound(WebhookError, NotFound):
    """No webhook with that id."""

    codes = ("webhook.not_found",)


@dataclass(frozen=True)
class WebhookInfo:
    id: int
    url: str
    events: list[str]
    enabled: bool
    description: str
    created_at: datetime | None
    pending: int = 0
    dead: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "enabled": self.enabled,
            "description": self.description,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "pending": self.pending,
            "dead": self.dead,
        }


def check_url(url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if len(url) > MAX_URL or parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused(
            f"a webhook URL is an http:// or https:// URL with a host; got {url!r}",
            code="webhook.bad_url",
        )
    if parts.username or parts.password:
        raise WebhookRefused("put credentials in the secret, not the URL", code="webhook.bad_url")
    return url


def check_secret(secret: str) -> str:
    if not MIN_SECRET <= len(secret) <= MAX_SECRET or not secret.isprintable():
        raise WebhookRefused(
            f"a webhook secret is {MIN_SECRET}-{MAX_SECRET} printable characters",
            code="webhook.bad_secret",
        )
    return secret


def parse_events(events: str | Iterable[str] | None) -> str:
    """``*``, ``a,b`` or a list -> the stored comma list (sorted), checking every type."""
    if events is None:
        return "*"
    items = events.split(",") if isinstance(events, str) else list(events)
    kinds = {k.strip() for k in items if k.strip()}
    if not kinds:
        raise WebhookRefused("name at least one event type, or '*'", code="webhook.bad_events")
    if "*" in kinds:
        return "*"
    unknown = sorted(kinds - set(EVENT_TYPES))
    if unknown:
        raise WebhookRefused(
            f"unknown event type {unknown[0]!r} (known: {', '.join(EVENT_TYPES)}, or '*')",
            code="webhook.bad_events",
        )
    return ",".join(sorted(kinds))


def url_origin(url: str) -> str:
    """``scheme://host[:port]`` of a webhook URL: what the audit log keeps, since a receiver's
    path or query may carry a token of its own (chat-service webhooks do)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def _info(w: Webhook, pending: int = 0, dead: int = 0) -> WebhookInfo:
    return WebhookInfo(
        id=w.id,
        url=w.url,
        events=w.event_types.split(","),
        enabled=w.enabled,
        description=w.description,
        created_at=w.created_at,
        pending=pending,
        dead=dead,
    )


class WebhookService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self,
        url: str,
        *,
        secret: str | None = None,
        events: str | Iterable[str] | None = None,
        enabled: bool = True,
        description: str = "",
    ) -> tuple[WebhookInfo, str]:
        """Add a webhook; returns it and its secret (generated when none is given)."""
        clean_text(description, "description", code="webhook.bad_text")
        url = check_url(clean_text(url, "url", code="webhook.bad_url"))
        secret = check_secret(secret) if secret is not None else new_secret()
        kinds = parse_events(events)
        with self.db.session() as s:
            w = Webhook(
                url=url, secret=secret, event_types=kinds, enabled=enabled, description=description
            )
            s.add(w)
            s.flush()
            # Never the secret (nor the URL's path, see url_origin).
            audit.record(
                s,
                "webhook.created",
                f"webhook:{w.id}",
                {"url": url_origin(url), "events": kinds, "enabled": enabled},
            )
            return _info(w), secret

    def _get(self, s: Session, webhook_id: int) -> Webhook:
        # Ids past 64 bits exist nowhere, and SQLite would overflow looking for them.
        w = s.get(Webhook, webhook_id) if 0 < webhook_id < 2**63 else None
        if w is None:
            raise WebhookNotFound(
                f"no webhook with id {webhook_id}", code="webhook.not_found", webhook_id=webhook_id
            )
        return w

    def _counts(self, s: Session) -> dict[tuple[int, str], int]:
        q = (
            select(OutboxDelivery.webhook_id, OutboxDelivery.status, func.count())
            .where(OutboxDelivery.status.in_(("pending", "dead")))
            .group_by(OutboxDelivery.webhook_id, OutboxDelivery.status)
        )
        return {(wid, status): n for wid, status, n in s.execute(q).all()}

    def get(self, webhook_id: int) -> WebhookInfo:
        with self.db.session() as s:
            w = self._get(s, webhook_id)
            counts = self._counts(s)
            return _info(w, counts.get((w.id, "pending"), 0), counts.get((w.id, "dead"), 0))

    def list(self) -> list[WebhookInfo]:
        with self.db.session() as s:
            counts = self._counts(s)
            return [
                _info(w, counts.get((w.id, "pending"), 0), counts.get((w.id, "dead"), 0))
                for w in s.scalars(select(Webhook).order_by(Webhook.id))
            ]

    def update(
        self,
        webhook_id: int,
        *,
        url: str | None = None,
        secret: str | None = None,
        events: str | Iterable[str] | None = None,
        enabled: bool | None = None,
        description: str | None = None,
    ) -> WebhookInfo:
        """Change a webhook. A new secret signs every request from now on, retries included."""
        if description is not None:
            clean_text(description, "description", code="webhook.bad_text")
        clean_url = (
            check_url(clean_text(url, "url", code="webhook.bad_url")) if url is not None else None
        )
        clean_secret = check_secret(secret) if secret is not None else None
        kinds = parse_events(events) if events is not None else None
        with self.db.session() as s:
            w = self._get(s, webhook_id)
            if clean_url is not None:
                w.url = clean_url
            if clean_secret is not None:
                w.secret = clean_secret
            if kinds is not None:
                w.event_types = kinds
            if enabled is not None:
                w.enabled = enabled
            if description is not None:
                w.description = description
            changed = {
                k: v
                for k, v in (
                    ("url", url_origin(clean_url) if clean_url is not None else None),
                    ("secret", "changed" if clean_secret is not None else None),
                    ("events", kinds),
                    ("enabled", enabled),
                    ("description", "changed" if description is not None else None),
                )
                if v is not None
            }
            if changed:
                audit.record(s, "webhook.updated", f"webhook:{w.id}", changed)
        return self.get(webhook_id)

    def remove(self, webhook_id: int) -> int:
        """Delete a webhook and its deliveries; returns how many deliveries went with it."""
        with self.db.session() as s:
            # Deleted explicitly (not only by ON DELETE CASCADE) so the count is exact.
            gone = s.execute(delete(OutboxDelivery).where(OutboxDelivery.webhook_id == webhook_id))
            w = self._get(s, webhook_id)
            s.delete(w)
            n = int(cast(CursorResult[Any], gone).rowcount or 0)
            audit.record(
                s,
                "webhook.removed",
                f"webhook:{webhook_id}",
                {"url": url_origin(w.url), "deliveries_removed": n},
            )
            return n
