"""``dignity case ...`` and ``dignity feed export``: victim cases for helpline staff, and the
partner feed written to a file.

``case list`` / ``case show NUMBER`` give counts and state (never a PIN: only its scrypt hash is
kept); ``case withdraw NUMBER`` withdraws a case for a person who asks the helpline by phone
(staff verify them their own way); ``case unlock NUMBER`` lifts a PIN lockout; ``case create``
opens a case from hashes (``pdq:<hex>``, ``md5:<hex>``) and prints its number and PIN once.
``feed export`` writes the items ``GET /v1/feed`` serves (see :mod:`dignity.api.feed`), one JSON
object a line in sequence order, or with ``--format text`` the active hashes as ``<signal> <hex>``
lines (python-threatexchange's local-file style). Exit statuses as in :mod:`dignity.cli.app`.
"""

from __future__ import annotations

import sys
from typing import IO

import click

from dignity.cases.service import CaseRefused, CaseService, HashIn
from dignity.cli.app import Context, cli, emit, handles_errors, pass_ctx


def _cases(ctx: Context) -> CaseService:
    svc: CaseService = ctx.services.cases
    return svc


@cli.group("case")
def case() -> None:
    """Victim cases (case number + PIN): list, show, create, withdraw, unlock."""


@case.command("list")
@click.option("--status", type=click.Choice(["open", "withdrawn"]), default=None)
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--after-id", type=click.IntRange(0), default=0, help="Page: cases after this id.")
@pass_ctx
@handles_errors
def list_cmd(ctx: Context, status: str | None, limit: int, after_id: int) -> None:
    """One JSON line per case: number, status, hash and match counts, lock state."""
    for row in _cases(ctx).list_cases(status=status, limit=limit, after_id=after_id):
        emit(row)


@case.command("show")
@click.argument("number")
@click.option("--hashes", "with_hashes", is_flag=True, help="Also list the case's hashes.")
@pass_ctx
@handles_errors
def show(ctx: Context, number: str, with_hashes: bool) -> None:
    """A case's state and counts (and, with --hashes, its hashes and their entries)."""
    emit(_cases(ctx).show(number, with_hashes=with_hashes))


@case.command("create")
@click.argument("hashes", nargs=-1, required=True)
@pass_ctx
@handles_errors
def create(ctx: Context, hashes: tuple[str, ...]) -> None:
    """Open a case from HASHES (pdq:<hex> or md5:<hex>); prints the number and PIN once."""
    items = []
    for arg in hashes:
        signal, sep, value = arg.partition(":")
        if not sep:
            raise CaseRefused(
                f"write hashes as pdq:<hex> or md5:<hex>; got {arg[:80]!r}", code="case.bad_hash"
            )
        items.append(HashIn(signal.strip().lower(), value))
    emit(_cases(ctx).create(items).to_dict())


@case.command("withdraw")
@click.argument("number")
@pass_ctx
@handles_errors
def withdraw(ctx: Context, number: str) -> None:
    """Withdraw case NUMBER: every hash stops matching in every process within a second."""
    emit(_cases(ctx).withdraw_by_number(number).to_dict())


@case.command("unlock")
@click.argument("number")
@pass_ctx
@handles_errors
def unlock(ctx: Context, number: str) -> None:
    """Lift a PIN lockout on case NUMBER (after staff checked who is asking)."""
    _cases(ctx).unlock(number)
    emit({"case_number": number, "unlocked": True})


@cli.group("feed")
def feed() -> None:
    """The partner feed of case hashes."""


@feed.command("export")
@click.option("--cursor", type=click.IntRange(0), default=0, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["jsonl", "text"]), default="jsonl")
@click.option("--output", "-o", type=click.File("w"), default="-", help="File (default stdout).")
@pass_ctx
@handles_errors
def export(ctx: Context, cursor: int, fmt: str, output: IO[str]) -> None:
    """Feed items after CURSOR as JSON lines (the /v1/feed ITEM format), or the active hashes
    as '<signal> <hex>' lines with --format text. A summary goes to stderr."""
    cases = _cases(ctx)
    n = 0
    last = cursor
    if fmt == "text":
        for signal, value in cases.active_hashes():
            output.write(f"{signal} {value}\n")
            n += 1
    else:
        for item in cases.iter_feed(cursor):
            output.write(item.to_json() + "\n")
            last = item.seq
            n += 1
    output.flush()
    click.echo(f"dignity: exported {n} {'hashes' if fmt == 'text' else 'items'}", err=True)
    if fmt == "jsonl":
        click.echo(f"dignity: next cursor {last}", err=True)
    sys.stdout.flush()
