"""``dignity takedown ...``: takedown requests for staff, one JSON object a line.

``list [--state S] [--overdue]`` summaries (``--overdue``: valid requests past their 48-hour
deadline, most overdue first); ``show TICKET`` everything a reviewer sees (requester, statement,
validity, items with content and scan ids, requester flag and history); ``overdue`` the overdue
list; ``escalate`` runs the escalation once (for cron, where no server runs the clock; prints how
many escalations happened); ``reject TICKET --reason TEXT [--unfounded]`` rejects an open
request and tells the requester why (``--unfounded``: manifestly unfounded, counted towards the
requester's flag, DSA Art. 23); ``suspend FP --days N`` refuses a requester's new requests for N
days and ``unsuspend FP`` lifts that (FP is ``requester_fp`` from ``show``); ``flags`` lists
flagged and suspended requesters. Access codes are never printed: only their hashes are kept.
Exit statuses as in :mod:`dignity.cli.app` (3: refused, e.g. an unknown ticket).
"""

from __future__ import annotations

import click

from dignity.cli.app import Context, cli, emit, handles_errors, pass_ctx
from dignity.takedown.models import REQUEST_STATES
from dignity.takedown.requests import TakedownService


def _service(ctx: Context) -> TakedownService:
    return ctx.services.takedowns


@cli.group("takedown")
def takedown() -> None:
    """Takedown requests: list, show, overdue, escalate, reject, suspend, unsuspend, flags."""


@takedown.command("list")
@click.option("--state", type=click.Choice(REQUEST_STATES), default=None)
@click.option("--overdue", is_flag=True, help="Only valid requests past their deadline.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=1000, show_default=True)
@click.option("--after-id", type=click.IntRange(0), default=0, help="Page: requests after this id.")
@pass_ctx
@handles_errors
def list_cmd(ctx: Context, state: str | None, overdue: bool, limit: int, after_id: int) -> None:
    """One JSON line per request: ticket, state, channel, deadline, escalations."""
    for row in _service(ctx).list(state=state, overdue=overdue, limit=limit, after_id=after_id):
        emit(row)


@takedown.command("show")
@click.argument("ticket")
@pass_ctx
@handles_errors
def show(ctx: Context, ticket: str) -> None:
    """Everything about request TICKET that a reviewer sees."""
    emit(_service(ctx).get_by_ticket(ticket))


@takedown.command("overdue")
@pass_ctx
@handles_errors
def overdue(ctx: Context) -> None:
    """Valid requests past their deadline, most overdue first."""
    for row in _service(ctx).overdue():
        emit(row)


@takedown.command("escalate")
@pass_ctx
@handles_errors
def escalate(ctx: Context) -> None:
    """Escalate requests at 24 h and 36 h once (cron); the server does this by itself."""
    emit({"escalated": _service(ctx).escalate()})


@takedown.command("reject")
@click.argument("ticket")
@click.option("--reason", required=True, help="Why; the requester is told this.")
@click.option("--unfounded", is_flag=True, help="Manifestly unfounded (DSA Art. 23).")
@pass_ctx
@handles_errors
def reject(ctx: Context, ticket: str, reason: str, unfounded: bool) -> None:
    """Reject open request TICKET and tell the requester REASON."""
    svc = _service(ctx)
    emit(svc.reject(svc.request_id(ticket), reason=reason, unfounded=unfounded))


@takedown.command("suspend")
@click.argument("fingerprint")
@click.option("--days", type=click.IntRange(1, 3650), required=True)
@click.option("--note", default="", help="Why (e.g. when the requester was warned).")
@pass_ctx
@handles_errors
def suspend(ctx: Context, fingerprint: str, days: int, note: str) -> None:
    """Refuse new requests from requester FINGERPRINT (requester_fp) for DAYS days."""
    emit(_service(ctx).suspend(fingerprint, days=days, note=note))


@takedown.command("unsuspend")
@click.argument("fingerprint")
@pass_ctx
@handles_errors
def unsuspend(ctx: Context, fingerprint: str) -> None:
    """Lift the suspension of requester FINGERPRINT."""
    emit(_service(ctx).unsuspend(fingerprint))


@takedown.command("flags")
@pass_ctx
@handles_errors
def flags(ctx: Context) -> None:
    """Flagged and suspended requesters, one JSON line each."""
    for row in _service(ctx).flags():
        emit(row)


@takedown.command("purge-scans")
@pass_ctx
@handles_errors
def purge_scans(ctx: Context) -> None:
    """Delete scan-log rows older than DIGNITY_SCAN_LOG_RETENTION_DAYS that no removal or open
    review item needs (a serving process does this once a day by itself)."""

    emit({"purged": ctx.services.scan_log.purge()})
