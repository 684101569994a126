"""Delivering outbox events: claim due deliveries under a lease, POST them signed, record the
outcome; retry with exponential backoff and jitter, and give up ("dead") after N attempts.

Claiming is an ``UPDATE`` of rows that are ``pending`` and due (``next_attempt_at <= now``):
it counts the attempt, stamps a random ``lease_token`` and pushes ``next_attempt_at`` (and
``leased_until``) to the end of the lease. On SQLite it is one statement, and SQLite runs
writers one at a time, so two workers, in one process or several, can never claim the same
row; on PostgreSQL the rows are first picked with ``SELECT ... FOR UPDATE SKIP LOCKED`` in the
same transaction, so concurrent workers take different rows without waiting.

The outcome is written only by the holder of the token, and only after the response: a
delivery is marked ``delivered`` after a 2xx and never before, so a process killed mid-request
leaves the row pending, and it comes due again when the lease runs out. That makes delivery
at-least-once across crashes and restarts; receivers deduplicate on the event id (see
:mod:`dignity.actions.signing`). Ordering between events is not guaranteed.

The lease must outlast one request, so it is checked to be longer than the HTTP timeout. Tuning
(:class:`DeliveryConfig`) comes from ``Settings`` attributes named ``outbox_*`` /
``webhook_timeout_s`` when declared there, else from the same ``DIGNITY_*`` environment
variables, else from the defaults here.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, cast

import httpx
from sqlalchemy import and_, select, update
from sqlalchemy.engine import CursorResult

from dignity.actions.models import OutboxDelivery, OutboxEvent, Webhook
from dignity.actions.outbox import add_waker, remove_waker
from dignity.actions.signing import signed_headers
from dignity.background import Beat, Supervisor, Worker
from dignity.storage.db import Database
from dignity.storage.models import utcnow

log = logging.getLogger("dignity.actions")

MAX_ERROR = 500  # characters of a failure kept in last_error


@dataclass(frozen=True)
class DeliveryConfig:
    """How a process delivers. ``workers`` threads (0: this process delivers nothing)."""

    workers: int = 2
    poll_s: float = 1.0
    lease_s: float = 60.0
    timeout_s: float = 10.0
    backoff_base_s: float = 30.0
    backoff_cap_s: float = 3600.0
    max_attempts: int = 8

    def __post_init__(self) -> None:
        if self.lease_s <= self.timeout_s:
            raise ValueError(
                f"the outbox lease ({self.lease_s} s) must be longer than the webhook timeout "
                f"({self.timeout_s} s), or a slow delivery would be sent twice"
            )
        if self.max_attempts < 1 or self.workers < 0 or self.poll_s <= 0:
            raise ValueError("max_attempts >= 1, workers >= 0 and poll_s > 0, please")

    @classmethod
    def from_settings(cls, settings: object) -> DeliveryConfig:
        names = {
            "workers": "outbox_workers",
            "poll_s": "outbox_poll_s",
            "lease_s": "outbox_lease_s",
            "timeout_s": "webhook_timeout_s",
            "backoff_base_s": "outbox_backoff_base_s",
            "backoff_cap_s": "outbox_backoff_cap_s",
            "max_attempts": "outbox_max_attempts",
        }
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = names[f.name]
            cast: Callable[[Any], Any] = int if f.type in ("int", int) else float
            value = getattr(settings, name, None)
            if value is not None:
                values[f.name] = cast(value)
        return cls(**values)


def backoff_s(attempts: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Delay after the ``attempts``-th failure: ``base * 2**(attempts-1)`` capped at ``cap``,
    then "equal jitter" (half fixed, half random) so retries from one outage spread out."""
    full = min(cap, base * 2.0 ** max(0, attempts - 1))
    jitter = rng.uniform(0, full / 2) if rng is not None else random.uniform(0, full / 2)
    return full / 2 + jitter


@dataclass(frozen=True)
class Claim:
    """One delivery this worker holds the lease on, with all it needs to send it."""

    delivery_id: int
    token: str
    attempt: int  # this attempt's number, from 1
    event_id: str
    event_type: str
    created_at: datetime
    payload: str  # JSON text, as stored
    url: str
    secret: str

    def body(self) -> bytes:
        # Built as text around the stored payload so the signed bytes are exactly those sent.
        head = json.dumps(
            {
                "id": self.event_id,
                "type": self.event_type,
                "created_at": self.created_at.isoformat(),
            },
            separators=(",", ":"),
        )
        return (head[:-1] + ',"payload":' + self.payload + "}").encode("utf-8")


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None = None
    error: str = ""
    retry_after_s: float | None = None


def claim(
    db: Database, *, limit: int = 1, lease_s: float = 60.0, now: datetime | None = None
) -> list[Claim]:
    """Lease up to ``limit`` due deliveries (of enabled webhooks), oldest due first."""
    now = now or utcnow()
    D, W, E = OutboxDelivery, Webhook, OutboxEvent
    due = and_(D.status == "pending", D.next_attempt_at <= now)
    pick = (
        select(D.id)
        .join(W, W.id == D.webhook_id)
        .where(due, W.enabled.is_(True))
        .order_by(D.next_attempt_at, D.id)
        .limit(limit)
    )
    # A read first, outside any write transaction: an idle poll takes no write lock.
    with db.engine.connect() as conn:
        if conn.execute(pick).first() is None:
            return []
    token = secrets.token_hex(16)
    until = now + timedelta(seconds=lease_s)
    with db.session() as s:
        target: Any
        if s.get_bind().dialect.name == "postgresql":
            # Lock the picked rows first, skipping those other workers hold, then update them.
            # (Inside one UPDATE ... IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT n) PostgreSQL
            # may re-run the subquery per row and claim far more than n.)
            target = list(s.scalars(pick.with_for_update(skip_locked=True, of=D)))
            if not target:
                return []
        else:
            # One statement: SQLite evaluates the subquery once, under the write lock.
            target = pick
        # `due` again in the outer WHERE: a row another worker leased in between is skipped.
        s.execute(
            update(D)
            .where(D.id.in_(target), due)
            .values(
                lease_token=token,
                leased_until=until,
                next_attempt_at=until,
                attempts=D.attempts + 1,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        rows = s.execute(
            select(D.id, D.attempts, E.id, E.type, E.created_at, E.payload, W.url, W.secret)
            .join(E, E.id == D.event_id)
            .join(W, W.id == D.webhook_id)
            .where(D.lease_token == token)
            .order_by(D.id)
        ).all()
    return [
        Claim(did, token, attempts, eid, etype, created, payload, url, secret)
        for did, attempts, eid, etype, created, payload, url, secret in rows
    ]


_ERROR_BODY_BYTES = 1024


def _head(response: httpx.Response, limit: int) -> bytes:
    """Up to ``limit`` bytes of a streamed body; the rest is never read."""
    got = bytearray()
    for chunk in response.iter_bytes():
        got += chunk
        if len(got) >= limit:
            break
    return bytes(got[:limit])


def send(client: httpx.Client, c: Claim, *, timestamp: int | None = None) -> Outcome:
    """POST one delivery; any 2xx is success, everything else (3xx included) a failure."""
    body = c.body()
    headers = signed_headers(c.secret, c.event_id, c.event_type, body, timestamp=timestamp)
    try:
        with client.stream("POST", c.url, content=body, headers=headers) as r:
            if 200 <= r.status_code < 300:
                return Outcome(True, r.status_code)
            # Only the start of an error body is kept: a receiver answering with hundreds of
            # megabytes must not be read into memory.
            head = _head(r, _ERROR_BODY_BYTES)
    except httpx.HTTPError as exc:
        return Outcome(False, None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR])
    retry_after: float | None = None
    if r.status_code in (429, 503):
        try:
            retry_after = max(0.0, float(r.headers.get("retry-after", "")))
        except ValueError:
            retry_after = None
    text = head.decode("utf-8", "replace")[:200].strip()
    return Outcome(False, r.status_code, f"HTTP {r.status_code}: {text}"[:MAX_ERROR], retry_after)


def record(
    db: Database,
    c: Claim,
    outcome: Outcome,
    config: DeliveryConfig,
    *,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> str | None:
    """Write the outcome if we still hold the lease; returns the new status, or None when the
    lease was lost (it expired and another worker took the delivery over)."""
    now = now or utcnow()
    D = OutboxDelivery
    common: dict[str, Any] = {
        "lease_token": None,
        "leased_until": None,
        "last_status": outcome.status,
        "updated_at": now,
    }
    if outcome.ok:
        status = "delivered"
        values = {**common, "status": status, "delivered_at": now, "last_error": ""}
    elif c.attempt >= config.max_attempts:
        status = "dead"
        values = {**common, "status": status, "last_error": outcome.error}
    else:
        status = "pending"
        delay = backoff_s(c.attempt, config.backoff_base_s, config.backoff_cap_s, rng)
        if outcome.retry_after_s is not None:
            delay = max(delay, min(outcome.retry_after_s, config.backoff_cap_s))
        values = {
            **common,
            "status": status,
            "next_attempt_at": now + timedelta(seconds=delay),
            "last_error": outcome.error,
        }
    with db.session() as s:
        done = s.execute(
            update(D)
            .where(D.id == c.delivery_id, D.lease_token == c.token)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if not cast(CursorResult[Any], done).rowcount:
            log.warning("lost the lease on delivery %s; another worker has it", c.delivery_id)
            return None
    return status


def make_client(timeout_s: float) -> httpx.Client:
    return httpx.Client(timeout=timeout_s, trust_env=False, follow_redirects=False)


class DeliveryWorker:
    """Threads that claim and deliver until stopped. Woken at once by events committed in this
    process; events from other processes are found by polling every ``poll_s``."""

    def __init__(
        self,
        db: Database,
        config: DeliveryConfig | None = None,
        *,
        client: httpx.Client | None = None,
    ) -> None:
        self.db = db
        self.config = config or DeliveryConfig()
        self._client = client
        self._own_client = client is None
        self._wake = threading.Event()
        self._supervisor: Supervisor | None = None

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = make_client(self.config.timeout_s)
        return self._client

    def deliver_one(self, now: datetime | None = None) -> str | None:
        """Claim, send and record one due delivery; returns its new status, None if none due."""
        claims = claim(self.db, limit=1, lease_s=self.config.lease_s, now=now)
        if not claims:
            return None
        c = claims[0]
        outcome = send(self.client, c)
        if not outcome.ok:
            log.info("delivery %s of %s failed: %s", c.delivery_id, c.event_id, outcome.error)
        return record(self.db, c, outcome, self.config) or "lost"

    def run_until_idle(self, max_deliveries: int = 10_000) -> int:
        """Deliver everything due now, in this thread (for tests and one-shot commands)."""
        n = 0
        while n < max_deliveries and self.deliver_one() is not None:
            n += 1
        return n

    def run(self, stop: threading.Event, beat: Beat | None = None) -> None:
        """Deliver until ``stop`` is set: one claim at a time, waiting for a wake-up or the
        poll interval when nothing is due. One body of a delivery thread."""
        while not stop.is_set():
            try:
                busy = self.deliver_one() is not None
            except Exception as exc:  # a database blip or a bug must not end delivery for good
                log.exception("outbox delivery failed")
                if beat is not None:
                    beat.failed(exc)
                busy = False
            else:
                if beat is not None:
                    beat.ok()
            if not busy and not stop.is_set():
                self._wake.wait(self.config.poll_s)
                self._wake.clear()

    def _open(self) -> None:
        self.client  # noqa: B018  (created before the threads share it)
        add_waker(self._wake)

    def _wake_all(self) -> None:
        remove_waker(self._wake)
        self._wake.set()

    def tasks(self) -> list[Worker]:
        """The delivery threads as background tasks, for a :class:`Supervisor` to run."""
        return [
            Worker(
                f"outbox-delivery-{i}",
                self.run,
                on_start=self._open if i == 0 else None,
                on_stop=self._wake_all if i == 0 else None,
            )
            for i in range(self.config.workers)
        ]

    def start(self) -> None:
        """Run the delivery threads under a supervisor of their own (one-process use and tests;
        a service runs :meth:`tasks` under its own supervisor)."""
        if self._supervisor is not None or self.config.workers == 0:
            return
        self._supervisor = Supervisor()
        for task in self.tasks():
            self._supervisor.add(task)
        self._supervisor.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the threads. One still inside a request after ``timeout_s`` is left to finish
        (they are daemons); its lease expires and the delivery is retried, so nothing is lost."""
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            self.close(all_stopped=supervisor.stop(timeout_s))

    def close(self, *, all_stopped: bool = True) -> None:
        """Close the HTTP client this worker made, unless a thread may still be using it."""
        if self._own_client and self._client is not None and all_stopped:
            self._client.close()
            self._client = None
