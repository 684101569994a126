"""(skeleton, helper C) The scan log: hashes and a decision summary of every /v1/scan.

Interface: ``ScanLog(db, settings, clock=None)`` with ``record(result: ScanResult, key: KeyInfo,
*, content_id: str | None, uploader: str | None) -> int`` (the scan id; also opens a review item
when the decision is ``review``), ``find_copies(...)``, ``purge() -> int``.
"""

from __future__ import annotations

from typing import Any

from dignity.settings import Settings
from dignity.storage.db import Database


class ScanLog:
    def __init__(self, db: Database, settings: Settings, clock: Any = None) -> None:
        self.db = db
        self.settings = settings
