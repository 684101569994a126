"""Fixtures shared by the unit tests of the nudity classifiers (both run on onnxruntime)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dignity.signals import nudity


@pytest.fixture
def fresh_sessions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """An empty session cache whose builds are recorded, restored afterwards."""
    builds: list[Path] = []
    real = nudity._build_session

    def counting(path: Path) -> Any:
        builds.append(path)
        return real(path)

    monkeypatch.setattr(nudity, "_sessions", {})
    monkeypatch.setattr(nudity, "_build_session", counting)
    yield builds
