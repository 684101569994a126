"""``dignity source add|list|remove``: photos registered for edited-derivative detection.

``source add`` takes a person's own photos with the consent record (who consented, for whom the
registration is made; the time is recorded) and stores only their keypoints. Every file is
read and checked first; if any fails, nothing is registered (exit 1, each failure printed).
``source remove`` deletes a source's descriptors; every scan after it stops matching it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from dignity.cli.app import EXIT_PARTIAL, Context, cli, emit, handles_errors, pass_ctx
from dignity.cli.hashing import read_upload_file
from dignity.derivatives.features import LOW_COVERAGE
from dignity.derivatives.service import NewSource
from dignity.errors import DignityError
from dignity.hashing.signals import decode_upload


@cli.group("source")
def source() -> None:
    """Photos a person registered as theirs: edited copies of them are sent to review."""


@source.command("add")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--subject", required=True, help="Whose photos these are (a label, not a name).")
@click.option("--consent-by", default="", help="Who gave consent (the person, a guardian, ...).")
@click.option("--for", "for_whom", default="", help="For whom (e.g. a helpline acting for them).")
@pass_ctx
@handles_errors
def add(
    ctx: Context, files: tuple[Path, ...], subject: str, consent_by: str, for_whom: str
) -> None:
    """Register each photo FILE of SUBJECT (all or nothing).

    Prints one JSON object per file: path, source_id, subject, keypoints, stored_bytes,
    coverage (share of the frame with recognisable detail) and warning (set when it is low).
    """
    service = ctx.services.source_registry
    prepared = []
    failures: list[dict[str, Any]] = []
    for path in files:
        try:
            media = decode_upload(read_upload_file(str(path), ctx.settings), ctx.settings)
            new = NewSource(media, subject, consent_by=consent_by, for_whom=for_whom)
            prepared.append(service.prepare(new))
        except DignityError as exc:
            failures.append(
                {"path": str(path), "error": {"code": exc.code, "message": exc.message}}
            )
    if failures:
        for failure in failures:
            emit(failure)
        click.echo(
            f"dignity: {len(failures)} of {len(files)} files failed; nothing was registered",
            err=True,
        )
        sys.exit(EXIT_PARTIAL)
    for path, info in zip(files, service.register(prepared), strict=True):
        emit({"path": str(path), **info.to_dict()})


@source.command("list")
@click.option("--subject", default=None, help="Only this subject's photos.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--after-id", type=click.IntRange(0), default=0, help="Page on from this id.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@pass_ctx
@handles_errors
def list_cmd(ctx: Context, subject: str | None, limit: int, after_id: int, as_json: bool) -> None:
    """List registered source photos with their consent records (never the photos)."""
    infos = ctx.services.source_registry.list(subject=subject, limit=limit, after_id=after_id)
    if as_json:
        for info in infos:
            emit(info.to_dict())
        return
    table = Table(title="Source photos")
    cols = ("id", "subject", "consent by", "for", "registered", "keypoints", "bytes", "coverage")
    for col in cols:
        table.add_column(col)
    for i in infos:
        table.add_row(
            str(i.id),
            i.subject,
            i.consent_by,
            i.for_whom,
            i.consented_at.isoformat(timespec="seconds"),
            str(i.keypoints),
            str(i.stored_bytes),
            f"{i.coverage:.0%}" + (" (low)" if i.coverage < LOW_COVERAGE else ""),
        )
    Console().print(table)


@source.command("remove")
@click.argument("ids", nargs=-1, required=True, type=click.IntRange(1))
@pass_ctx
@handles_errors
def remove(ctx: Context, ids: tuple[int, ...]) -> None:
    """Remove source photos by id: their descriptors are deleted and they stop matching.

    Prints {"source_id", "subject", "removed": true} per id. Every id is checked first: an
    unknown one is refused (exit 3) and nothing is removed.
    """
    service = ctx.services.source_registry
    for source_id in ids:
        service.get(source_id)
    for source_id in ids:
        info = service.remove(source_id)
        emit({"source_id": info.id, "subject": info.subject, "removed": True})
