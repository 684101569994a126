"""``dignity webhook add|list|show|update|remove``, ``dignity events list|show|redeliver|deliver``.

Webhooks receive signed events (entry added, withdrawn or deleted, bank deleted, scan matched)
from the outbox; ``dignity serve`` delivers them in the background. ``events deliver`` sends
what is due now from this process, for installations without a running server.
"""

from __future__ import annotations

import click

from dignity.cli.app import Context, cli, emit, handles_errors, pass_ctx


@cli.group("webhook")
def webhook() -> None:
    """Webhooks: URLs that receive signed events (X-Dignity-Signature, HMAC-SHA256)."""


@webhook.command("add")
@click.argument("url")
@click.option(
    "--secret",
    default=None,
    help="Signing secret (16-256 characters); generated and printed once if left out.",
)
@click.option(
    "--events",
    "events",
    default="*",
    show_default=True,
    help="Comma list of event types (entry.added, entry.withdrawn, entry.deleted, "
    "bank.deleted, scan.match), or '*'.",
)
@click.option("--disabled", is_flag=True, help="Register it without sending to it yet.")
@click.option("--description", default="", help="What or who receives these.")
@pass_ctx
@handles_errors
def webhook_add(
    ctx: Context, url: str, secret: str | None, events: str, disabled: bool, description: str
) -> None:
    """Register a webhook at URL; prints it with its secret (shown only this once)."""
    info, key = ctx.services.webhooks.create(
        url, secret=secret, events=events, enabled=not disabled, description=description
    )
    emit({**info.to_dict(), "secret": key})


@webhook.command("list")
@pass_ctx
@handles_errors
def webhook_list(ctx: Context) -> None:
    """List webhooks with their pending and dead delivery counts (never their secrets)."""
    for info in ctx.services.webhooks.list():
        emit(info.to_dict())


@webhook.command("show")
@click.argument("webhook_id", type=int)
@pass_ctx
@handles_errors
def webhook_show(ctx: Context, webhook_id: int) -> None:
    """Show webhook WEBHOOK_ID."""
    emit(ctx.services.webhooks.get(webhook_id).to_dict())


@webhook.command("update")
@click.argument("webhook_id", type=int)
@click.option("--url", default=None)
@click.option("--secret", default=None, help="A new signing secret.")
@click.option("--events", default=None, help="Comma list of event types, or '*'.")
@click.option("--enable/--disable", "enabled", default=None)
@click.option("--description", default=None)
@pass_ctx
@handles_errors
def webhook_update(
    ctx: Context,
    webhook_id: int,
    url: str | None,
    secret: str | None,
    events: str | None,
    enabled: bool | None,
    description: str | None,
) -> None:
    """Change webhook WEBHOOK_ID (a disabled webhook keeps its pending deliveries)."""
    info = ctx.services.webhooks.update(
        webhook_id,
        url=url,
        secret=secret,
        events=events,
        enabled=enabled,
        description=description,
    )
    emit(info.to_dict())


@webhook.command("remove")
@click.argument("webhook_id", type=int)
@pass_ctx
@handles_errors
def webhook_remove(ctx: Context, webhook_id: int) -> None:
    """Remove webhook WEBHOOK_ID and its deliveries."""
    n = ctx.services.webhooks.remove(webhook_id)
    emit({"id": webhook_id, "removed": True, "deliveries_removed": n})


@cli.group("events")
def events_group() -> None:
    """Outbox events and their deliveries to webhooks."""


@events_group.command("list")
@click.option(
    "--status",
    type=click.Choice(["pending", "delivered", "dead"]),
    default=None,
    help="Only events with a delivery in this status.",
)
@click.option("--type", "event_type", default=None, help="Only events of this type.")
@click.option("--webhook", "webhook_id", type=int, default=None, help="Only this webhook's.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@pass_ctx
@handles_errors
def events_list(
    ctx: Context, status: str | None, event_type: str | None, webhook_id: int | None, limit: int
) -> None:
    """List events, newest first, with their deliveries (one JSON object a line)."""
    for e in ctx.services.outbox.list_events(
        status=status, event_type=event_type, webhook_id=webhook_id, limit=limit
    ):
        emit(e.to_dict())


@events_group.command("show")
@click.argument("event_id")
@pass_ctx
@handles_errors
def events_show(ctx: Context, event_id: str) -> None:
    """Show event EVENT_ID with its deliveries."""
    emit(ctx.services.outbox.get_event(event_id).to_dict())


@events_group.command("redeliver")
@click.argument("event_id")
@click.option("--webhook", "webhook_id", type=int, default=None, help="Only to this webhook.")
@pass_ctx
@handles_errors
def events_redeliver(ctx: Context, event_id: str, webhook_id: int | None) -> None:
    """Queue event EVENT_ID again: its dead or delivered deliveries go back to pending."""
    n = ctx.services.outbox.redeliver(event_id, webhook_id=webhook_id)
    emit({"event_id": event_id, "redelivered": n})


@events_group.command("deliver")
@pass_ctx
@handles_errors
def events_deliver(ctx: Context) -> None:
    """Send every delivery that is due now, from this process, then exit."""
    from dignity.actions.delivery import DeliveryConfig, DeliveryWorker

    worker = DeliveryWorker(ctx.db, DeliveryConfig.from_settings(ctx.settings))
    try:
        n = worker.run_until_idle()
    finally:
        worker.stop()
    emit({"attempted": n, "pending": ctx.services.outbox.depth()})
