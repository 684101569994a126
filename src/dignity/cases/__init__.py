"""Victim cases: hashes a person submits from their own device, a case number and PIN to check
or withdraw them, and the partner feed of those hashes (see :mod:`dignity.cases.service`).

Scan matches against case hashes are counted by a recorder the composition root lists
(:class:`dignity.services.recorders.CaseMatchRecorder`); that count is what a case's status
reports.
"""

from __future__ import annotations

from dignity.cases.service import CaseError, CaseService, FailureLimiter, HashIn

__all__ = ["CaseError", "CaseService", "FailureLimiter", "HashIn"]
