"""``dignity statement ...`` and ``dignity appeal ...``: statements of reasons and appeals.

``statement export [--since] [--until] [-o FILE]`` writes statements issued in that period as
JSON lines, each exactly as the EU DSA Transparency Database's API takes it (``POST
/api/v1/statement``; its bulk endpoint takes up to 100 a call). ``statement show PUBLIC_ID``
prints one statement as its public page shows it. ``appeal list [--state]`` lists appeals.
Exit statuses as in :mod:`dignity.cli.app`.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click

from dignity.cli.app import Context, cli, emit, handles_errors, pass_ctx
from dignity.storage.types import parse_utc
from dignity.takedown.notices import NoticeRefused, NoticeService


def _when(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 date or time; naive values are UTC."""
    if value is None:
        return None
    return parse_utc(value, what=f"--{name}", code="statement.bad_period")


def _notices(ctx: Context) -> NoticeService:
    return ctx.services.notices


# short_help: click cuts the listing at the first ". ", which "Art. 17" is not.
@cli.group("statement", short_help="Statements of reasons (DSA Art 17): export, show.")
def statement() -> None:
    """Statements of reasons (DSA Art. 17): export for the Transparency Database, show one."""


@statement.command("export")
@click.option("--since", default=None, help="Issued at or after this date/time (ISO 8601, UTC).")
@click.option("--until", default=None, help="Issued before this date/time (ISO 8601, UTC).")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Write to FILE instead of standard output.",
)  # fmt: skip
@pass_ctx
@handles_errors
def export(ctx: Context, since: str | None, until: str | None, output: Path | None) -> None:
    """One JSON line per statement in the DSA Transparency Database's API format."""
    start, end = _when(since, "since"), _when(until, "until")
    if start is not None and end is not None and end <= start:
        raise NoticeRefused("--until must be after --since", code="statement.bad_period")
    items = _notices(ctx).export(start, end)
    if output is None:
        for item in items:
            emit(item)
        return
    count = 0
    tmp = output.with_name(output.name + ".part")
    with tmp.open("w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item, separators=(",", ":"), ensure_ascii=False) + "\n")
            count += 1
    tmp.replace(output)  # all or nothing: a half-written export never looks finished
    click.echo(f"{count} statements written to {output}", err=True)


@statement.command("show")
@click.argument("public_id")
@pass_ctx
@handles_errors
def show(ctx: Context, public_id: str) -> None:
    """One statement: its Art. 17 fields, TDB form, appeal deadline and appeal state."""
    emit(_notices(ctx).get_statement(public_id))


@cli.group("appeal", short_help="Appeals against removals (DSA Art 20): list.")
def appeal() -> None:
    """Appeals against removals (DSA Art. 20): list them (decide them in the review UI)."""


@appeal.command("list")
@click.option("--state", type=click.Choice(["open", "upheld", "reversed"]), default=None)
@click.option("--limit", type=click.IntRange(1, 10_000), default=1000, show_default=True)
@click.option("--after-id", type=click.IntRange(0), default=0, help="Page: appeals after this id.")
@pass_ctx
@handles_errors
def list_cmd(ctx: Context, state: str | None, limit: int, after_id: int) -> None:
    """One JSON line per appeal: statement, content, state, text, who decided and when."""
    for row in _notices(ctx).list_appeals(state=state, limit=limit, after_id=after_id):
        emit(row)
    sys.stdout.flush()
