"""(skeleton, helper C) Statements of reasons, appeals, the requester's outcome notice, and the
DSA Transparency Database export. ``notify_requester`` is final (written before the split)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from dignity.takedown.models import TakedownRequest


def notify_requester(
    s: Session, request: TakedownRequest, outcome: str, reason: str, **extra: Any
) -> str | None:
    """Tell the requester how their request ended, in ``s``'s transaction: a
    ``takedown.outcome`` event that the platform's mailer delivers to the contact given, with
    how to contest the outcome. The status page shows the same. Returns the event id (None when
    no webhook subscribes: the status page still answers)."""
    from dignity.actions.outbox import emit_event

    contest = (
        "Reply to this notice or file a new request with more information; you may also "
        "complain to the FTC (US) or to your national Digital Services Coordinator (EU)."
    )
    payload = {
        "ticket": request.ticket,
        "contact": request.requester_contact,
        "outcome": outcome,
        "reason": reason,
        "how_to_contest": contest,
        **extra,
    }
    return emit_event(s, "takedown.outcome", payload)
