"""``dignity exchange ...``: hash exchanges (StopNCII, NCMEC, ThreatExchange, files, feeds).

``add`` configures an exchange and creates its bank; ``fetch`` fetches one now from its stored
checkpoint and prints the fetch summary (one JSON object); ``run`` fetches every enabled
exchange whenever its interval (``--interval`` of the exchange, else
``DIGNITY_EXCHANGE_INTERVAL_S``) has passed, until interrupted; ``feedback`` tells an exchange
what a hash it gave us turned out to be (StopNCII Blocked/NotBlocked, NCMEC up/down vote,
ThreatExchange reactions). Credentials are given as text, ``@FILE`` or ``-`` (standard input,
so they stay out of shell history and ``ps``), stored encrypted and never printed.
Exit statuses: ``fetch`` 0 when the fetch completed (record-level problems are counted in the
summary), 1 when it failed or stopped part-way (the summary says why; what was applied stays
applied and the next fetch resumes), 3 when refused (unknown exchange, bad option, busy).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from dignity.background import Worker
from dignity.cli.app import (
    EXIT_PARTIAL,
    Context,
    cli,
    emit,
    handles_errors,
    pass_ctx,
    stop_on_signals,
    wait_for,
)
from dignity.errors import HashError
from dignity.exchanges.base import VERDICTS, ExchangeError
from dignity.exchanges.models import EXCHANGE_KINDS
from dignity.exchanges.service import KIND_ALIASES, ExchangeService, FetchSummary
from dignity.hashing.signals import SIGNAL_TYPES, normalize_hash
from dignity.matching.banks import BANK_PURPOSES


def _service(ctx: Context) -> ExchangeService:
    return ctx.services.exchanges


def _read_credentials(value: str | None) -> str | None:
    if value is None:
        return None
    if value == "-":
        return sys.stdin.read().strip()
    if value.startswith("@"):
        try:
            return Path(value[1:]).expanduser().read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ExchangeError(
                f"cannot read credentials from {value[1:]!r}: {exc}",
                code="exchange.bad_credentials",
            ) from exc
    return value


@cli.group("exchange")
def exchange() -> None:
    """Hash exchanges: fetch shared hash lists into banks, honouring withdrawals."""


@exchange.command("add")
@click.argument("name")
@click.option(
    "--type",
    "kind",
    type=click.Choice(sorted([*EXCHANGE_KINDS, *KIND_ALIASES])),
    required=True,
    help="Which exchange (dignity = dignity_feed, another instance's partner feed).",
)
@click.option("--url", default=None, help="Base URL (default: the service's real address).")
@click.option(
    "--credentials",
    default=None,
    help="Text, @FILE or - (stdin). stopncii: 'FETCH_KEY,SUBSCRIPTION_KEY' or JSON with "
    "submit_feedback_function_key; ncmec: 'USER:PASSWORD'; fb_threatexchange: app token; "
    "dignity_feed: a partner API key.",
)
@click.option("--bank", default=None, help="Bank to fill (default: NAME, created).")
@click.option("--purpose", type=click.Choice(BANK_PURPOSES), default="block", show_default=True)
@click.option(
    "--threshold", type=int, default=31, show_default=True, help="0-63 (bank.bad_threshold)."
)
@click.option("--interval", type=float, default=None, help="Seconds between scheduled fetches.")
@click.option("--file", "filename", default=None, help="file: the hash list to read.")
@click.option("--signal-type", default=None, help="file: type of lines that give none.")
@click.option("--environment", default=None, help="ncmec: environment name (Industry, NGO...).")
@click.option("--esp-id", "esp_ids", type=int, multiple=True, help="ncmec: only these ESPs.")
@click.option("--privacy-group", type=int, default=None, help="fb_threatexchange: group id.")
@click.option("--disabled", is_flag=True, help="Add it switched off (no scheduled fetches).")
@pass_ctx
@handles_errors
def add(
    ctx: Context,
    name: str,
    kind: str,
    url: str | None,
    credentials: str | None,
    bank: str | None,
    purpose: str,
    threshold: int,
    interval: float | None,
    filename: str | None,
    signal_type: str | None,
    environment: str | None,
    esp_ids: tuple[int, ...],
    privacy_group: int | None,
    disabled: bool,
) -> None:
    """Configure exchange NAME and create the bank it fills."""
    config: dict[str, Any] = {
        "filename": filename,
        "signal_type": signal_type,
        "environment": environment,
        "only_esp_ids": list(esp_ids) or None,
        "privacy_group": privacy_group,
    }
    info = _service(ctx).add(
        name,
        kind,
        base_url=url,
        credentials=_read_credentials(credentials),
        config=config,
        bank=bank,
        purpose=purpose,
        threshold=threshold,
        interval_s=interval,
        enabled=not disabled,
    )
    emit(info.to_dict())


@exchange.command("update")
@click.argument("name")
@click.option("--url", default=None)
@click.option("--credentials", default=None, help="Text, @FILE or - (stdin); '' clears them.")
@click.option("--enable/--disable", "enabled", default=None)
@click.option("--interval", type=float, default=None)
@click.option("--bank", default=None, help="Fill another (existing) bank from now on.")
@pass_ctx
@handles_errors
def update_cmd(
    ctx: Context,
    name: str,
    url: str | None,
    credentials: str | None,
    enabled: bool | None,
    interval: float | None,
    bank: str | None,
) -> None:
    """Change exchange NAME's URL, credentials, schedule or bank."""
    info = _service(ctx).update(
        name,
        base_url=url,
        credentials=_read_credentials(credentials),
        enabled=enabled,
        interval_s=interval,
        bank=bank,
    )
    emit(info.to_dict())


@exchange.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@pass_ctx
@handles_errors
def list_cmd(ctx: Context, as_json: bool) -> None:
    """List exchanges (credentials are never shown, only whether they are set)."""
    infos = _service(ctx).list_all()
    if as_json:
        for info in infos:
            emit(info.to_dict())
        return
    table = Table(title="Exchanges")
    for col in ("name", "type", "bank", "enabled", "records", "last status", "last fetch"):
        table.add_column(col)
    for i in infos:
        started = i.last_fetch_started_at
        table.add_row(
            i.name,
            i.kind,
            i.bank or "(deleted)",
            "yes" if i.enabled else "no",
            str(i.records),
            i.last_status or "-",
            started.isoformat(timespec="seconds") if started else "-",
        )
    Console().print(table)


@exchange.command("show")
@click.argument("name")
@pass_ctx
@handles_errors
def show(ctx: Context, name: str) -> None:
    """Show exchange NAME: configuration, checkpoint and the last fetch summary."""
    emit(_service(ctx).get(name).to_dict())


@exchange.command("remove")
@click.argument("name")
@click.option("--delete-bank", is_flag=True, help="Also delete the bank and its entries.")
@pass_ctx
@handles_errors
def remove(ctx: Context, name: str, delete_bank: bool) -> None:
    """Remove exchange NAME (its bank stays unless --delete-bank)."""
    emit(_service(ctx).remove(name, delete_bank=delete_bank))


@exchange.command("fetch")
@click.argument("name")
@click.option("--full", is_flag=True, help="Ignore the checkpoint: fetch everything again.")
@click.option("--max-pages", type=click.IntRange(1), default=None, help="Stop after N pages.")
@pass_ctx
@handles_errors
def fetch(ctx: Context, name: str, full: bool, max_pages: int | None) -> None:
    """Fetch exchange NAME now, from its checkpoint; prints the fetch summary."""
    summary = _service(ctx).fetch(name, full=full, max_pages=max_pages)
    emit(summary.to_dict())
    if summary.status != "complete":
        why = summary.error["message"] if summary.error else summary.status
        click.echo(f"dignity: exchange {name}: fetch {summary.status}: {why}", err=True)
        sys.exit(EXIT_PARTIAL)


@exchange.command("run")
@click.option("--once", is_flag=True, help="Fetch what is due once, then exit.")
@pass_ctx
@handles_errors
def run(ctx: Context, once: bool) -> None:
    """Fetch every enabled exchange on its schedule until interrupted (SIGINT/SIGTERM)."""
    service = _service(ctx)

    def report(result: FetchSummary | dict[str, Any]) -> None:
        emit(result if isinstance(result, dict) else result.to_dict())

    if once:
        for result in service.run_due():
            report(result)
        return
    supervisor = ctx.services.supervisor
    supervisor.add(
        Worker("exchange-fetch", lambda done, beat: service.fetch_loop(done, beat, report))
    )
    with stop_on_signals() as stop:
        try:
            supervisor.start()
            # The main thread only waits for a signal; a stop mid-fetch ends at the next
            # page, and the checkpoint makes the next run resume there.
            wait_for(stop)
        finally:
            supervisor.stop(timeout_s=30.0)


@exchange.command("feedback")
@click.argument("name")
@click.argument("hashes", nargs=-1, required=True)
@click.option("--verdict", type=click.Choice(VERDICTS), required=True)
@click.option(
    "--tag",
    "tags",
    multiple=True,
    help="StopNCII: feedback tags; NCMEC not_blocked: the reason GUID.",
)
@pass_ctx
@handles_errors
def feedback(
    ctx: Context, name: str, hashes: tuple[str, ...], verdict: str, tags: tuple[str, ...]
) -> None:
    """Send feedback on HASHes (pdq:<hex>, md5:<hex>, or bare hex) to exchange NAME."""
    pairs = []
    for h in hashes:
        if ":" in h:
            sig, _, val = h.partition(":")
        else:
            sig = {64: "pdq", 32: "md5"}.get(len(h), "")
            val = h
            if not sig:
                raise HashError(
                    f"{h[:80]!r} is not a hash (pdq:<64 hex>, md5:<32 hex>)",
                    code="hash.malformed",
                )
        if sig not in SIGNAL_TYPES:
            raise HashError(f"unknown signal {sig!r}", code="hash.unknown_signal")
        pairs.append(normalize_hash(sig, val))
    emit(_service(ctx).feedback(name, pairs, verdict, list(tags)))
