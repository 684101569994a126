"""Local fake servers for the remote hash exchanges (StopNCII, NCMEC, ThreatExchange).

We cannot reach the real services from tests, so each fake speaks the part of its service's
HTTP API that python-threatexchange's real client code uses, on 127.0.0.1, and the real client
is pointed at it. The fakes keep every request they serve, so tests can check what the client
asked for (e.g. that a resumed fetch started from its checkpoint), and can be told to fail or
to hold a request, to interrupt a fetch mid-way.
"""

from __future__ import annotations

import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class FakeServer:
    """A threaded HTTP server on 127.0.0.1 (free port) that hands requests to ``handle``."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.lock = threading.RLock()
        # Fault injection: fail every matching request from the n-th on (0 = the next), or
        # hold the n-th until ``release`` is set.
        self.fail_from: int | None = None
        self.fail_status = 400
        self.hold_at: int | None = None
        self.held = threading.Event()
        self.release = threading.Event()
        self.counted = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _do(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(
                    self.command,
                    parts.path,
                    query,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                reply = server.dispatch(seen)
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = _do
            do_POST = _do
            do_PUT = _do

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.origin = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def counts(self, seen: Seen) -> bool:
        """Which requests fault injection counts (default: every one)."""
        return True

    def dispatch(self, seen: Seen) -> Reply:
        with self.lock:
            self.requests.append(seen)
            n = None
            if self.counts(seen):
                n = self.counted
                self.counted += 1
            fail = self.fail_from is not None and n is not None and n >= self.fail_from
            hold = self.hold_at is not None and n == self.hold_at
        if fail:
            return Reply(self.fail_status, b'{"error": "injected failure"}')
        if hold:
            self.held.set()
            self.release.wait(30)
        with self.lock:
            return self.handle(seen)

    def handle(self, seen: Seen) -> Reply:
        raise NotImplementedError

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
