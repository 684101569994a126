"""Shared Playwright plumbing for browser tests: Debian's Chromium, and screenshots kept as
test artifacts (``$DIGNITY_TEST_ARTIFACTS``, default ``tests/artifacts/``) so a reviewer of a CI
run can see each page as the test saw it. Tests skip, visibly, where Chromium is missing; CI
installs it, so there a missing browser is a failure."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]


def chromium_path() -> str:
    if not (os.path.exists(CHROMIUM) and shutil.which(CHROMIUM)):
        if os.environ.get("CI"):
            pytest.fail(f"CI must have Debian's chromium at {CHROMIUM}")
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM}")
    return CHROMIUM


def artifacts_dir() -> Path:
    directory = Path(os.environ.get("DIGNITY_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def save_screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    """Save ``page`` as ``<artifacts>/<name>.png`` and return the path."""
    path = artifacts_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per test module (import this fixture into the module to use it)."""
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()
