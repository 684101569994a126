"""Schemathesis against our own OpenAPI document: no 5xx, no response off its schema.

A bounded run (a few examples per operation, a time budget) keeps `make test` quick; `make
fuzz` runs the same checks for longer. The server gets a huge rate limit so the fuzzer tests
the API rather than the limiter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.server import LiveServer

CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance"


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(
        Path(tmp_path_factory.mktemp("fuzz")),
        env={"DIGNITY_RATE_PER_MINUTE": "100000000", "DIGNITY_MAX_CONCURRENCY": "8"},
    )
    server.start()
    yield server
    server.stop()


def test_openapi_fuzz(fuzz_server: LiveServer) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    examples = os.environ.get("DIGNITY_FUZZ_EXAMPLES", "5")
    budget = os.environ.get("DIGNITY_FUZZ_SECONDS", "60")
    r = subprocess.run(
        [
            st,
            "run",
            f"{fuzz_server.base}/openapi.json",
            "-H",
            f"Authorization: Bearer {fuzz_server.keys['admin']}",
            "-c",
            CHECKS,
            "-n",
            examples,
            "--max-time",
            budget,
            "--seed",
            "20261126",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=int(budget) + 120,
    )
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
