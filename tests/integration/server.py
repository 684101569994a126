"""A real dignity server in a subprocess on 127.0.0.1, with one API key per role.

Tests talk to it over real HTTP with httpx. ``LiveServer.kill()`` sends SIGKILL (for crash
tests) and ``start()`` brings it back on the same database.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from dignity.keys import ROLES, KeyService
from dignity.storage.db import open_database

# Every test server speaks plain HTTP on 127.0.0.1. httpx builds a new SSL context (the CA bundle
# loaded) for each client unless given one: ~20-30 ms of CPU a client. Ours share this one.
_TLS = ssl.create_default_context()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    def __init__(self, data: Path, *, env: dict[str, str] | None = None, workers: int = 1) -> None:
        self.data = data
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.env = {
            **os.environ,
            "DIGNITY_DATA_DIR": str(data),
            "DIGNITY_INDEX_REFRESH_S": "0.2",
            "PYTHONUNBUFFERED": "1",
            # The partner feed publishes every change at once (tests of batching set their own).
            "DIGNITY_FEED_BATCH_S": "0",
            "DIGNITY_FEED_BATCH_MIN_CASES": "1",
            **(env or {}),
        }
        self.env.setdefault("DIGNITY_DATABASE_URL", f"sqlite:///{data / 'dignity.sqlite3'}")
        self.url = self.env["DIGNITY_DATABASE_URL"]
        db = open_database(self.url)
        keys = KeyService(db)
        self.keys = {role: keys.create(role, name=f"test-{role}")[1] for role in ROLES}
        db.close()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data / "server.log"

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def client(self, role: str | None = None, *, timeout: float = 30) -> httpx.Client:
        headers = self.headers(role) if role else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=timeout, verify=_TLS)

    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        # The server's log handle lives as long as the process: no with-block.
        log = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dignity",
                "serve",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                "--log-level",
                "warning",
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        # One client for the whole wait, not one per poll (see _TLS): the CPU would be taken
        # from the server that is starting.
        with httpx.Client(timeout=1, verify=_TLS) as poll:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
                try:
                    if poll.get(self.base + "/readyz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"server did not become ready: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
