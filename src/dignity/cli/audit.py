"""``dignity audit verify|export|list``: check, export and read the tamper-evident audit log.

``verify`` prints one JSON summary line and exits 0 when the chain is intact; when any record
was altered, deleted (the tail too), inserted or re-ordered it still prints the summary, then
``audit.broken`` with the first broken sequence number and why on stderr, and exits 3, so a
cron job can raise the alarm. ``--expect SEQ:HASH`` (a ``head_hash`` noted from an earlier run)
also catches a chain rewritten together with its head. ``export`` writes JSON lines (every
column, exactly what the hashes cover; ``--after-seq`` resumes), ``verify --file`` checks such
an export without the database, and ``list`` shows recent records, filtered.
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from dignity.audit import AuditBadRequest
from dignity.audit.export import MAX_LIMIT, export_lines, list_records, to_line
from dignity.audit.verify import VerifyResult, verify, verify_lines
from dignity.cli.app import Context, cli, emit, handles_errors, pass_ctx
from dignity.storage.types import parse_utc

_MAX_SEQ = 2**63 - 1


@cli.group("audit")
def audit() -> None:
    """The hash-chained audit log: who changed what, when (verify, export, list)."""


def _anchors(values: tuple[str, ...]) -> dict[int, str]:
    out: dict[int, str] = {}
    for value in values:
        seq, sep, digest = value.partition(":")
        digest = digest.strip().lower()
        if (
            not sep
            or not seq.strip().isdigit()
            or len(digest) != 64
            or any(c not in "0123456789abcdef" for c in digest)
        ):
            raise AuditBadRequest(
                f"--expect takes SEQ:HASH (a sequence number and a 64-hex-digit hash); "
                f"got {value!r}",
                code="audit.bad_anchor",
            )
        out[int(seq)] = digest
    return out


def _report(result: VerifyResult) -> None:
    emit(result.to_dict())
    if not result.ok:
        raise AuditBadRequest(
            f"the audit chain is broken at seq {result.broken_seq} ({result.reason}): "
            f"{result.message}",
            code="audit.broken",
            seq=result.broken_seq,
            reason=result.reason,
        )


@audit.command("verify")
@click.option(
    "--expect",
    "expect",
    multiple=True,
    metavar="SEQ:HASH",
    help="Also require record SEQ to have HASH (e.g. a head_hash kept from an earlier run).",
)
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Check an export (JSON lines) instead of the database.",
)
@pass_ctx
@handles_errors
def verify_cmd(ctx: Context, expect: tuple[str, ...], path: Path | None) -> None:
    """Recompute the chain; exit 0 if intact, 3 (audit.broken) naming the first broken seq."""
    anchors = _anchors(expect)
    if path is not None:
        with path.open(encoding="utf-8") as fh:
            _report(verify_lines(fh, expect=anchors))
        return
    _report(verify(ctx.db, expect=anchors))


@audit.command("export")
@click.option(
    "--after-seq",
    type=click.IntRange(0, _MAX_SEQ),
    default=0,
    show_default=True,
    help="Only records after this sequence number (resume an earlier export).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to FILE (replaced only once the export is complete); default stdout.",
)
@pass_ctx
@handles_errors
def export_cmd(ctx: Context, after_seq: int, output: Path | None) -> None:
    """Every record as JSON lines, in sequence order."""
    lines = export_lines(ctx.db, after_seq=after_seq)
    if output is None:
        for line in lines:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
        return
    target = output.expanduser()
    if not target.parent.is_dir():
        raise AuditBadRequest(
            f"no directory {str(target.parent)!r} to write to", code="audit.bad_output"
        )
    # A temporary file beside the target, renamed at the end: never a half-written export.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            n = 0
            for line in lines:
                fh.write(line + "\n")
                n += 1
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    click.echo(f"exported {n} records to {target}", err=True)


def _since(value: str | None) -> datetime | None:
    return None if value is None else parse_utc(value, what="--since", code="audit.bad_since")


@audit.command("list")
@click.option("--action", default=None, help="Action prefix, e.g. 'bank.' or 'key.created'.")
@click.option("--actor", default=None, help="Actor prefix, e.g. 'key:3:' or 'cli:'.")
@click.option("--subject", default=None, help="Exact subject, e.g. 'bank:takedowns'.")
@click.option("--since", default=None, help="Only records at or after this UTC time (ISO 8601).")
@click.option(
    "--limit", type=click.IntRange(1, MAX_LIMIT), default=50, show_default=True, help="At most N."
)
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@pass_ctx
@handles_errors
def list_cmd(
    ctx: Context,
    action: str | None,
    actor: str | None,
    subject: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The most recent records, newest first."""
    records = list_records(
        ctx.db, action=action, actor=actor, subject=subject, since=_since(since), limit=limit
    )
    if as_json:
        for record in records:
            sys.stdout.write(to_line(record) + "\n")
        sys.stdout.flush()
        return
    table = Table(title="Audit log (newest first)")
    for col in ("seq", "at", "actor", "action", "subject", "detail"):
        table.add_column(col, overflow="fold")
    for r in records:
        detail = r["detail"] if len(r["detail"]) <= 120 else r["detail"][:117] + "..."
        table.add_row(str(r["seq"]), r["at"], r["actor"], r["action"], r["subject"], detail)
    Console().print(table)
