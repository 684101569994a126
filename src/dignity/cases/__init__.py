"""Victim cases: hashes a person submits from their own device, a case number and PIN to check
or withdraw them, and the partner feed of those hashes (see :mod:`dignity.cases.service`).

:func:`install` gives a server process's services a case service and counts scan matches
against case hashes, which is what a case's status reports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dignity.cases.service import CaseError, CaseService, FailureLimiter, HashIn

if TYPE_CHECKING:
    from dignity.api.deps import Services


def install(services: Services) -> None:
    """Count scan matches against case hashes (chained after any existing scan hook)."""
    cases = CaseService.from_settings(services.db, services.settings, services.banks)
    previous = services.on_scan

    def on_scan(hashes: Any, outcome: Any, decision: Any, key: Any) -> None:
        if previous is not None:
            previous(hashes, outcome, decision, key)
        ids = [m.entry_id for m in getattr(outcome, "matches", ())]
        if ids:
            cases.record_matches(ids)

    services.on_scan = on_scan


__all__ = ["CaseError", "CaseService", "FailureLimiter", "HashIn", "install"]
