"""The HTTP/1.1 protocol ``dignity serve`` runs: uvicorn's h11 protocol with header and body
deadlines.

uvicorn times out only idle keep-alive connections (``timeout_keep_alive``). A connection that
sends its headers or its body slowly is held for as long as the client likes: 1,000 half-sent
connections were all still open minutes later, each counting against ``limit_concurrency``, so a
few hundred of them turn every real request into a 503. This subclass closes a connection whose
request headers are not complete ``http_header_timeout_s`` after it opened (or after its previous
response), and one whose body is not complete ``http_body_timeout_s`` after its headers. Closing
is all it does: the application sees a disconnect, as if the client had gone. The limits are
totals, not idle times, so one byte every few seconds does not keep a connection alive.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from dignity.settings import get_settings

__all__ = ["GuardedH11Protocol"]


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus the header and body deadlines from the settings."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self._header_timeout = settings.http_header_timeout_s
        self._body_timeout = settings.http_body_timeout_s
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self._header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return  # still waiting for headers: the header deadline stands
        if cycle is not before and cycle.more_body:
            self._arm(self._body_timeout)  # headers in; the body has its own deadline
        elif not cycle.more_body:
            self._disarm()  # the whole request is in; the application takes its time

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            # The next request's headers, on this keep-alive connection.
            self._arm(self._header_timeout)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()
