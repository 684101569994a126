"""Signing webhook requests, and the check a receiver runs before trusting one.

Every delivery is a ``POST`` with a JSON body ``{"id", "type", "created_at", "payload"}`` and:

- ``X-Dignity-Event-Id``: the event's UUID (the same on every retry of that event),
- ``X-Dignity-Event-Type``: e.g. ``entry.added``,
- ``X-Dignity-Timestamp``: unix seconds when this attempt was signed (new on every retry),
- ``X-Dignity-Signature``: ``v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>``.

A receiver verifies, in this order (:func:`verify` does steps 1-3):

1. Read the raw body bytes (before any JSON parsing) and the timestamp header.
2. Reject if ``|now - timestamp|`` exceeds a tolerance (5 minutes is usual): an old request
   captured and replayed later fails here, and the timestamp cannot be changed without
   breaking the signature.
3. Compute ``HMAC-SHA256(secret, timestamp + "." + body)`` and compare it, in constant time,
   with every ``v1=`` value in the signature header; reject if none matches.
4. Deduplicate on the event id: delivery is at-least-once (a retry after a timeout, a redelivery
   an operator asked for, a sender that crashed after sending), so a receiver keeps the ids it
   has processed and answers 2xx without acting again when one comes back. Keeping the ids at
   least as long as the tolerance also defeats a replay inside the window.

Answer 2xx only once the event is safely stored; anything else (or no answer within 10 s) is
retried with exponential backoff. Redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

from dignity.errors import Refused

SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300


class SignatureError(Refused):
    """A webhook request failed verification: bad or missing signature, or a stale timestamp."""

    codes = ("webhook.bad_signature", "webhook.bad_timestamp", "webhook.stale_timestamp")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Dignity-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def signed_headers(
    secret: str, event_id: str, event_type: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "User-Agent": "dignity-webhooks/1",
        "X-Dignity-Event-Id": event_id,
        "X-Dignity-Event-Type": event_type,
        "X-Dignity-Timestamp": str(ts),
        "X-Dignity-Signature": sign(secret, ts, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Check a received request's timestamp and signature; return the timestamp or raise
    :class:`SignatureError`. ``headers`` must look names up case-insensitively (as httpx,
    Starlette and ``http.server`` do); event-id deduplication is the receiver's (step 4)."""
    raw_ts = headers.get("X-Dignity-Timestamp", "")
    try:
        ts = int(raw_ts)
    except ValueError:
        raise SignatureError(
            "missing or malformed X-Dignity-Timestamp", code="webhook.bad_timestamp"
        ) from None
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        raise SignatureError(
            f"timestamp is {int(current - ts)} s from now (tolerance {tolerance_s} s)",
            code="webhook.stale_timestamp",
        )
    expected = sign(secret, ts, body)
    offered = [p.strip() for p in headers.get("X-Dignity-Signature", "").split(",")]
    if not any(hmac.compare_digest(expected, p) for p in offered if p):
        raise SignatureError("signature does not match", code="webhook.bad_signature")
    return ts
