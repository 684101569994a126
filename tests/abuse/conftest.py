"""A real ``dignity serve`` for the abuse suite, with a watcher that samples ``/healthz`` and the
server's memory (its process and its children: the decode workers) while an attack runs."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.server import LiveServer

# What every attack must leave true (issue 18, "A reproducible abuse suite").
ANSWER_S = 2.0  # each attack request answered (or refused with a 4xx) within this
HEALTH_S = 1.0  # /healthz answers within this meanwhile
# RSS the server (with its decode workers) may grow by during one attack: the decode budget
# (DIGNITY_MAX_DECODE_BYTES, 512 MiB) bounds one decode; four refused from their headers take
# next to nothing. 500 MB is the target for one mode-I TIFF.
RSS_GROWTH = 500 * 1024 * 1024


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and every process below it."""
    total = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/statm") as statm:
                total += int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    todo += [int(c) for c in children.read().split()]
        except (OSError, ValueError):
            continue
    return total


class Watch:
    """Samples /healthz latency and tree RSS every 100 ms until stopped."""

    def __init__(self, server: LiveServer) -> None:
        assert server.proc is not None
        self.server = server
        self.pid = server.proc.pid
        self.rss_before = tree_rss(self.pid)
        self.rss_peak = self.rss_before
        self.health: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.server.base, timeout=10) as c:
            while not self._stop.is_set():
                self.rss_peak = max(self.rss_peak, tree_rss(self.pid))
                started = time.monotonic()
                try:
                    status = c.get("/healthz").status_code
                except httpx.HTTPError:
                    status = 0
                self.health.append((time.monotonic() - started, status))
                self._stop.wait(0.1)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def check(self, label: str, rss_growth: int = RSS_GROWTH) -> None:
        slowest = max((s for s, _ in self.health), default=0.0)
        assert all(code == 200 for _, code in self.health), self.health
        assert slowest < HEALTH_S, f"/healthz took {slowest:.2f} s"
        grown = self.rss_peak - self.rss_before
        assert grown <= rss_growth, f"RSS grew {grown >> 20} MiB"
        print(
            f"\n  {label}: /healthz max {slowest * 1000:.0f} ms (target < {HEALTH_S:g} s), "
            f"RSS growth {grown >> 20} MiB (bound {rss_growth >> 20} MiB)"
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    directory = Path(tmp_path_factory.mktemp("abuse"))
    live = LiveServer(
        directory,
        env={
            "DIGNITY_RATE_PER_MINUTE": "1000000",
            "DIGNITY_PORTAL_ENABLED": "true",
            # Configured, but no proxy is trusted: the header must be ignored.
            "DIGNITY_PORTAL_CLIENT_IP_HEADER": "X-Forwarded-For",
            "DIGNITY_HTTP_HEADER_TIMEOUT_S": "2",
            "DIGNITY_HTTP_BODY_TIMEOUT_S": "3",
        },
    )
    live.start()
    yield live
    live.stop()
