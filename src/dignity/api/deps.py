"""What every route needs: the process's services, the caller's key and role, and fair limits.

``Services`` (:mod:`dignity.services`, the composition root) is built once per process and
kept on ``app.state``; routes take it through ``ServicesDep``. ``require(*roles)``
authenticates ``Authorization: Bearer`` keys (admin may do everything), applies the per-key
token-bucket rate limit (429 + Retry-After), and returns the key. ``run_heavy`` runs CPU-bound
work off the event loop under a per-process concurrency cap (503 when no slot frees up in time)
and a time limit, so a flood of large uploads slows nobody's health checks and never hangs a
worker.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar, cast

import anyio
from fastapi import Depends, Request

from dignity import audit
from dignity.errors import RateLimited, RequestTimeout, Unavailable
from dignity.keys import AuthForbidden, AuthUnauthenticated, KeyInfo
from dignity.services import Services
from dignity.services.slots import Slots

T = TypeVar("T")


class RateLimiter:
    """Token bucket per key: ``rate`` requests a minute, bursts up to ``rate`` at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[int, tuple[float, float]] = {}  # key id -> (tokens, last time)

    def take(self, key_id: int, rate: int) -> float:
        """0 if allowed, else seconds until a token is available."""
        now = time.monotonic()
        per_s = rate / 60.0
        with self._lock:
            tokens, last = self._buckets.get(key_id, (float(rate), now))
            tokens = min(float(rate), tokens + (now - last) * per_s)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / per_s


class InFlight:
    """Requests in flight per key (or per client address, on the anonymous routes) in this
    process: one client cannot fill the server's connections and heavy queue by itself (past
    ``key_max_in_flight`` / ``address_max_in_flight``: 503 at once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count: dict[int | str, int] = {}

    def enter(self, key_id: int | str, limit: int) -> bool:
        with self._lock:
            now = self._count.get(key_id, 0)
            if now >= limit:
                return False
            self._count[key_id] = now + 1
            return True

    def leave(self, key_id: int | str) -> None:
        with self._lock:
            left = self._count.get(key_id, 1) - 1
            if left > 0:
                self._count[key_id] = left
            else:
                self._count.pop(key_id, None)


def per_process(request: Request, name: str, make: Callable[[], T]) -> T:
    """One ``make()`` per app, kept on ``app.state`` as ``name``: state a process keeps for all
    its requests, such as the per-address limiters of the public pages."""
    got = getattr(request.app.state, name, None)
    if got is None:
        got = make()
        setattr(request.app.state, name, got)
    return cast(T, got)


def rate_limiter(request: Request) -> RateLimiter:
    """The process's per-key token buckets (API keys and review sessions share them)."""
    return per_process(request, "rate_limiter", RateLimiter)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise AuthUnauthenticated(
            "an API key is required: Authorization: Bearer <key>", code="auth.missing_key"
        )
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthUnauthenticated("use Authorization: Bearer <key>", code="auth.missing_key")
    return token.strip()


def require(*roles: str) -> Callable[..., AsyncIterator[KeyInfo]]:
    """Dependency: a valid key whose role is one of ``roles`` (admin always passes), within its
    rate and its cap on requests in flight."""
    allowed = frozenset(roles) | {"admin"}

    async def dependency(request: Request, services: ServicesDep) -> AsyncIterator[KeyInfo]:
        token = _bearer(request)
        # A cached answer costs nothing; only a cache miss goes to the database, off the loop.
        key = services.keys.cached(token)
        if key is None:
            key = await anyio.to_thread.run_sync(services.keys.verify, token)
        if key.role not in allowed:
            raise AuthForbidden(
                f"a {key.role} key may not do this (needs {', '.join(sorted(allowed))})",
                code="auth.forbidden",
            )
        wait = rate_limiter(request).take(
            key.id, key.rate_per_minute or services.settings.rate_per_minute
        )
        if wait > 0:
            raise RateLimited(
                "rate limit reached for this key",
                code="rate.limited",
                retry_after=max(1, math.ceil(wait)),
            )
        request.state.key = key
        # Audit records this request writes name its key; contextvars reach the sync endpoint
        # and run_heavy threads (anyio copies the context into worker threads).
        audit.set_actor(f"key:{key.id}:{key.name}")
        in_flight = per_process(request, "key_in_flight", InFlight)
        if not in_flight.enter(key.id, services.settings.key_max_in_flight):
            raise Unavailable(
                "too many requests of this key in flight; try again",
                code="server.busy",
                retry_after=1,
            )
        try:
            yield key
        finally:
            in_flight.leave(key.id)

    return dependency


async def run_heavy(
    services: Services, fn: Callable[..., T], *args: Any, timeout_s: float | None = None
) -> T:
    """Run ``fn(*args)`` in a worker thread under the concurrency cap and the time limit
    (``timeout_s``, default the request timeout)."""
    return await _run_in(services.slots, services, fn, *args, timeout_s=timeout_s)


async def run_light(services: Services, fn: Callable[..., T], *args: Any) -> T:
    """Run a lookup by hash (``fn(*args)``: an index search, milliseconds) under its own cap,
    ``lookup_concurrency``, so that it never waits behind decodes holding the heavy slots:
    with one shared cap, a few slow uploads made every ``/m/lookup`` wait or answer 503."""
    return await _run_in(services.lookup_slots, services, fn, *args)


_TOKENS: dict[tuple[int, int], anyio.CapacityLimiter] = {}


def _thread_tokens(slots: Slots) -> anyio.CapacityLimiter:
    """The thread tokens of one kind of work, as many as its slots: heavy work and lookups run
    on tokens of their own, never on the default pool's, which the plain routes (``/healthz``,
    ``/readyz``, pages) run on, so those always find a thread. One per event loop (a limiter
    belongs to the loop it was made on)."""
    key = (id(slots), id(asyncio.get_running_loop()))
    found = _TOKENS.get(key)
    if found is None:
        found = _TOKENS[key] = anyio.CapacityLimiter(slots.capacity)
    return found


async def _run_in(
    slots: Slots,
    services: Services,
    fn: Callable[..., T],
    *args: Any,
    timeout_s: float | None = None,
) -> T:
    settings = services.settings

    def guarded() -> T:
        try:
            return fn(*args)
        finally:
            slots.release()

    # Waiting for a slot happens on the event loop: a waiting request holds no thread, so the
    # threads stay free for the work itself and for every other route.
    if not await slots.acquire(settings.queue_timeout_s):
        raise Unavailable("the server is busy; try again", code="server.busy", retry_after=1)
    try:
        with anyio.fail_after(timeout_s or settings.request_timeout_s):
            # abandon_on_cancel: on timeout we answer at once; the thread finishes and frees
            # its slot by itself (work is bounded by the byte and pixel limits).
            return await anyio.to_thread.run_sync(
                guarded, abandon_on_cancel=True, limiter=_thread_tokens(slots)
            )
    except TimeoutError as exc:
        raise RequestTimeout(
            "the request took too long", code="request.timeout", retry_after=1
        ) from exc


__all__ = [
    "RateLimiter",
    "Services",
    "ServicesDep",
    "get_services",
    "per_process",
    "rate_limiter",
    "require",
    "run_heavy",
]
