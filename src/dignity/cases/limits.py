"""Per-address limits kept in the database: one count for every server process, over restarts.

The in-process :class:`~dignity.cases.service.FailureLimiter` let each worker process (and each
restart) count from zero. :class:`AddressLimiter` keeps each counted try as a row of
``address_tries`` and keeps the count-before-work rule: :meth:`AddressLimiter.take` counts the
try and refuses past the limit in one transaction that is serialised per address (SQLite: the
insert comes first, so the transaction holds the database's write lock before it counts;
PostgreSQL: a transaction-scoped advisory lock on the scope and address), so 200 requests in
flight from one address, spread over processes, still reach at most ``limit`` tries. A try that
turned out not to count (a right PIN) is refunded by deleting its row. The database calls block,
so the async faces call them through :meth:`AddressLimiter.atrying` and friends, off the loop.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import AsyncIterator, Callable

import anyio
from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from dignity.cases.models import AddressTry
from dignity.errors import RateLimited
from dignity.storage.db import Database

__all__ = ["AddressLimiter", "minutes_text"]

# One take in this many also deletes every scope's expired rows, so addresses seen once do not
# pile up; each take deletes its own address's expired rows anyway.
_SWEEP_ONE_IN = 200


def minutes_text(seconds: float) -> str:
    """A wait in words for an English message ("1 minute", "12 minutes"), rounded up; the
    pages show their own words, in the person's language, from Retry-After."""
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes} minute{'' if minutes == 1 else 's'}"


class AddressLimiter:
    """At most ``limit`` counted tries per client address in a sliding ``window_s``, per
    ``scope`` (a short name: ``portal.pin``, ``takedown.requests``, ...)."""

    def __init__(self, db: Database, scope: str, limit: int, window_s: float = 3600.0) -> None:
        self.db = db
        self.scope = scope
        self.limit = limit
        self.window_s = window_s

    # -- blocking API (a worker thread, the CLI) ------------------------------------------------
    def check(self, client: str) -> None:
        """Raise ``rate.limited`` when ``client`` has used up its tries (counts nothing)."""
        now = time.time()
        with self.db.session() as s:
            count, oldest = self._window(s, client, now)
        if count >= self.limit:
            raise self._refusal(oldest, now)

    def take(self, client: str, *, refuse: bool = True) -> int:
        """Count one try now, refusing (``rate.limited``, nothing counted) when the tries are
        used up; returns the try's token for :meth:`refund`."""
        client = client[:64]

        def attempt(s: Session) -> int:
            now = time.time()
            if s.get_bind().dialect.name == "postgresql":
                s.execute(
                    text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                    {"key": f"{self.scope} {client}"},
                )
            row = AddressTry(scope=self.scope, address=client, at=now)
            s.add(row)
            s.flush()  # the write first: on SQLite it takes the write lock before the count
            count, oldest = self._window(s, client, now)
            if refuse and count > self.limit:
                raise self._refusal(oldest, now)
            s.execute(
                delete(AddressTry).where(
                    AddressTry.scope == self.scope,
                    AddressTry.address == client,
                    AddressTry.at <= now - self.window_s,
                )
            )
            if random.randrange(_SWEEP_ONE_IN) == 0:
                s.execute(delete(AddressTry).where(AddressTry.at <= now - self.window_s))
            return row.id

        return self.db.retrying(attempt, attempts=5)

    def add(self, client: str) -> None:
        self.take(client, refuse=False)

    def refund(self, client: str, token: int) -> None:
        """Take back a try counted by :meth:`take` that turned out not to count."""
        with self.db.session() as s:
            s.execute(delete(AddressTry).where(AddressTry.id == token))

    def clear(self) -> None:
        """Forget every try of this scope (tests, an operator's reset)."""
        with self.db.session() as s:
            s.execute(delete(AddressTry).where(AddressTry.scope == self.scope))

    # -- async API (request handlers): the same, in a worker thread ----------------------------
    async def acheck(self, client: str) -> None:
        await anyio.to_thread.run_sync(self.check, client)

    async def atake(self, client: str) -> int:
        return await anyio.to_thread.run_sync(self.take, client)

    @contextlib.asynccontextmanager
    async def atrying(
        self, client: str, keep: Callable[[BaseException | None], bool]
    ) -> AsyncIterator[None]:
        """One try, counted (or refused) on entry and kept when ``keep(error)`` says so, with
        the error the block raised or None when it succeeded; refunded otherwise."""
        token = await self.atake(client)
        failed: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            failed = exc
            raise
        finally:
            if not keep(failed):
                # Shielded: a cancelled request still gives back a try that did not count.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.refund, client, token)

    # -- helpers ----------------------------------------------------------------------------
    def _window(self, s: Session, client: str, now: float) -> tuple[int, float | None]:
        count, oldest = s.execute(
            select(func.count(), func.min(AddressTry.at)).where(
                AddressTry.scope == self.scope,
                AddressTry.address == client[:64],
                AddressTry.at > now - self.window_s,
            )
        ).one()
        return int(count), oldest

    def _refusal(self, oldest: float | None, now: float) -> RateLimited:
        wait = self.window_s if oldest is None else self.window_s - (now - oldest)
        seconds = max(1, math.ceil(wait))
        return RateLimited(
            f"Too many tries from this address. Try again in {minutes_text(seconds)}.",
            code="rate.limited",
            retry_after=seconds,
        )
