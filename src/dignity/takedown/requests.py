"""(skeleton, helper B) Takedown requests: intake, validity, clock, escalation, rejection.

Interface used by others:
``TakedownService(db, settings, clock=None)`` with ``submit(form, *, channel="form",
flagger=None) -> Receipt``, ``status(ticket, code)``, ``get(request_id) -> dict`` (evidence for
the review UI), ``list(...)``, ``overdue()``, ``escalate() -> int``,
``reject(request_id, *, reason, unfounded, actor=None, review_item_id=None)``.
"""

from __future__ import annotations

from typing import Any

from dignity.settings import Settings
from dignity.storage.db import Database


class TakedownService:
    def __init__(self, db: Database, settings: Settings, clock: Any = None) -> None:
        self.db = db
        self.settings = settings

    def escalate(self) -> int:
        return 0
