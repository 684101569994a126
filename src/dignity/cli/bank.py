"""``dignity bank ...``: create, list, show, update, delete banks; add, withdraw, import, export.

``bank add`` takes image files (hashed here: PDQ + MD5 by default), video files and bare hashes
(``pdq:<hex>``, ``md5:<hex>``, ``sha256:<hex>``, ``video_md5:<hex>``, or hex alone, taken as PDQ
if 64 digits and MD5 if 32) in one go. A video becomes one ``vpdq`` entry: its frames beside it,
and the MD5 of the file on the entry itself (``video_md5``), by which it matches too, so that a
withdrawal takes both away at once. All inputs are hashed and checked first; if any fails,
nothing is written.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from typing import IO, Any

import click
from rich.console import Console
from rich.table import Table

from dignity.cli.app import (
    EXIT_PARTIAL,
    EXIT_REFUSED,
    Context,
    cli,
    emit,
    handles_errors,
    pass_ctx,
)
from dignity.cli.hashing import hash_file, hash_video_file, is_video_file, seconds_per_hash_option
from dignity.errors import DignityError, HashError, InputError
from dignity.hashing.signals import SIGNAL_TYPES, normalize_hash
from dignity.matching.banks import BANK_PURPOSES, ORIGIN_KINDS, NewEntry

err_console = Console(stderr=True)


@cli.group("bank")
def bank() -> None:
    """Banks of known hashes: block, review, or allow (a negative bank that suppresses matches)."""


@bank.command("create")
@click.argument("name")
@click.option("--purpose", type=click.Choice(BANK_PURPOSES), default="block", show_default=True)
# Ranges are checked by the bank service, not by click: out of range is bank.bad_threshold
# (exit 3, as documented), the same answer as over HTTP, rather than a usage error.
@click.option(
    "--threshold",
    type=int,
    default=31,
    show_default=True,
    help="Largest PDQ distance (0-63) that counts as a match in this bank.",
)
@click.option("--description", default="", help="What this bank holds and why.")
@click.option("--disabled", is_flag=True, help="Create the bank switched off.")
@click.option(
    "--vpdq-query-percent",
    type=float,
    default=80.0,
    show_default=True,
    help="Videos: share of the query's frames that must match (HMA's rule).",
)
@click.option(
    "--vpdq-min-segment",
    "vpdq_min_segment_s",
    type=float,
    default=3.0,
    show_default=True,
    help="Videos: seconds of consecutive matching frames that match on their own.",
)
@pass_ctx
@handles_errors
def create(
    ctx: Context,
    name: str,
    purpose: str,
    threshold: int,
    description: str,
    disabled: bool,
    vpdq_query_percent: float,
    vpdq_min_segment_s: float,
) -> None:
    """Create bank NAME."""
    info = ctx.banks.create_bank(
        name,
        purpose=purpose,
        threshold=threshold,
        enabled=not disabled,
        description=description,
        vpdq_query_percent=vpdq_query_percent,
        vpdq_min_segment_s=vpdq_min_segment_s,
    )
    emit(info.to_dict())


@bank.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@pass_ctx
@handles_errors
def list_cmd(ctx: Context, as_json: bool) -> None:
    """List banks with their entry counts."""
    banks = ctx.banks.list_banks()
    if as_json:
        for b in banks:
            emit(b.to_dict())
        return
    table = Table(title="Banks")
    for col in ("name", "purpose", "threshold", "enabled", "active", "withdrawn"):
        table.add_column(col)
    for b in banks:
        table.add_row(
            b.name,
            b.purpose,
            str(b.threshold),
            "yes" if b.enabled else "no",
            str(b.active_entries),
            str(b.withdrawn_entries),
        )
    Console().print(table)


@bank.command("show")
@click.argument("name")
@click.option("--entries", "limit", type=click.IntRange(0), default=0, help="Also list N entries.")
@pass_ctx
@handles_errors
def show(ctx: Context, name: str, limit: int) -> None:
    """Show bank NAME (and optionally its first entries)."""
    info = ctx.banks.get_bank(name)
    out: dict[str, Any] = info.to_dict()
    if limit:
        out["entries"] = [e.to_dict() for e in ctx.banks.list_entries(name, limit=limit)]
    emit(out)


@bank.command("update")
@click.argument("name")
@click.option("--purpose", type=click.Choice(BANK_PURPOSES), default=None)
@click.option("--threshold", type=int, default=None, help="0-63 (bank.bad_threshold otherwise).")
@click.option("--enable/--disable", "enabled", default=None)
@click.option("--description", default=None)
@pass_ctx
@handles_errors
def update_cmd(
    ctx: Context,
    name: str,
    purpose: str | None,
    threshold: int | None,
    enabled: bool | None,
    description: str | None,
) -> None:
    """Change bank NAME's purpose, threshold, enabled flag or description."""
    info = ctx.banks.update_bank(
        name, purpose=purpose, threshold=threshold, enabled=enabled, description=description
    )
    emit(info.to_dict())


@bank.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask; required when not on a terminal.")
@pass_ctx
@handles_errors
def delete_cmd(ctx: Context, name: str, yes: bool) -> None:
    """Delete bank NAME and every entry in it."""
    info = ctx.banks.get_bank(name)
    total = info.active_entries + info.withdrawn_entries
    if not yes:
        if not sys.stdin.isatty():
            click.echo(
                f"dignity: error: bank {name!r} has {total} entries; pass --yes to delete it",
                err=True,
            )
            sys.exit(EXIT_REFUSED)
        click.confirm(f"Delete bank {name!r} and its {total} entries?", abort=True)
    removed = ctx.banks.delete_bank(name)
    emit({"deleted": name, "entries": removed})


def _parse_hash_arg(arg: str, default_signal: str | None) -> tuple[str, str]:
    if ":" in arg:
        signal, _, value = arg.partition(":")
        return normalize_hash(signal, value)
    if default_signal:
        return normalize_hash(default_signal, arg)
    guess = {64: "pdq", 32: "md5"}.get(len(arg))
    if guess is None:
        raise InputError(
            f"{arg[:80]!r} is neither a file nor a hash (pdq:<64 hex>, md5:<32 hex>, "
            "sha256:<64 hex>)",
            code="input.not_found",
        )
    return normalize_hash(guess, arg)


@bank.command("add")
@click.argument("name")
@click.argument("items", nargs=-1, required=True)
@click.option(
    "--signals",
    default="pdq,md5",
    show_default=True,
    help="For files: which hashes to store (comma-separated: pdq, md5, sha256).",
)
@click.option(
    "--signal",
    "bare_signal",
    type=click.Choice(sorted(SIGNAL_TYPES)),
    default=None,
    help="Signal type of bare hex hashes (default: 64 digits = pdq, 32 = md5).",
)
@click.option(
    "--origin", type=click.Choice(ORIGIN_KINDS), default=None, help="Where they came from."
)
@click.option("--origin-ref", default="", help="Case number, exchange name, person, ...")
@click.option("--note", default="", help="Free text kept with each entry.")
@seconds_per_hash_option
@pass_ctx
@handles_errors
def add(
    ctx: Context,
    name: str,
    items: tuple[str, ...],
    signals: str,
    bare_signal: str | None,
    origin: str | None,
    origin_ref: str,
    note: str,
    seconds_per_hash: float,
) -> None:
    """Add image or video FILEs and/or HASHes to bank NAME (all or nothing)."""
    wanted = [s.strip().lower() for s in signals.split(",") if s.strip()]
    bad = [s for s in wanted if s not in SIGNAL_TYPES]
    if bad or not wanted:
        raise HashError(f"unknown signal in --signals: {','.join(bad) or '(none)'}")
    ctx.banks.get_bank(name)  # fail fast on an unknown bank, before hashing anything
    plan: list[tuple[str, list[tuple[str, str]], list[str]]] = []
    videos: dict[str, NewEntry] = {}
    failures: list[dict[str, Any]] = []
    for item in items:
        try:
            if os.path.exists(item) and is_video_file(item):
                # With the frames' letterbox-trimmed hashes (kept for dignity's matching,
                # never exported), so copies with bars added or removed match.
                video = hash_video_file(
                    item, ctx.settings, seconds_per_hash=seconds_per_hash, trim_bars=True
                )
                videos[item] = NewEntry(
                    "vpdq", "", frames=video.frames, video_md5=video.md5, note=note
                )
                plan.append((item, [], []))
            elif os.path.exists(item):
                h = hash_file(item, ctx.settings, dihedral=False)
                values = [
                    (sig, val)
                    for sig, val in h.values(ctx.settings.pdq_min_quality)
                    if sig in wanted
                ]
                notes = []
                if "pdq" in wanted and h.pdq and h.pdq.quality < ctx.settings.pdq_min_quality:
                    notes.append(
                        f"no pdq entry: quality {h.pdq.quality} is below "
                        f"{ctx.settings.pdq_min_quality}"
                    )
                plan.append((item, values, notes))
            else:
                plan.append((item, [_parse_hash_arg(item, bare_signal)], []))
        except DignityError as exc:
            failures.append({"input": item, "error": {"code": exc.code, "message": exc.message}})
    if failures:
        for f in failures:
            emit(f)
        click.echo(
            f"dignity: {len(failures)} of {len(items)} inputs failed; nothing was added", err=True
        )
        sys.exit(EXIT_PARTIAL)
    entries = []
    for item, values, _ in plan:
        is_file = os.path.exists(item)
        kind = origin or ("file" if is_file else "person")
        ref = origin_ref or (os.path.basename(item) if is_file else "")
        entries += [NewEntry(sig, val, kind, ref, note) for sig, val in values]
        if item in videos:
            entries.append(replace(videos[item], origin_kind=kind, origin_ref=ref))
    result = ctx.banks.add_entries(name, entries)
    for item, values, notes in plan:
        out: dict[str, Any] = {
            "input": item,
            "entries": [
                {
                    "signal": sig,
                    "value": val,
                    "entry_id": result.outcomes[(sig, val)][0],
                    "status": result.outcomes[(sig, val)][1],
                }
                for sig, val in values
            ],
        }
        if item in videos:
            from dignity.video.formats import vpdq_digest

            entry = videos[item]
            digest = vpdq_digest(entry.frames)
            out["kind"] = "video"
            out["entries"].append(
                {
                    "signal": "vpdq",
                    "value": digest,
                    "video_md5": entry.video_md5,
                    "frames": len(entry.frames),
                    "entry_id": result.outcomes[("vpdq", digest)][0],
                    "status": result.outcomes[("vpdq", digest)][1],
                }
            )
        if notes:
            out["notes"] = notes
        emit(out)


@bank.command("withdraw")
@click.argument("name")
@click.argument("refs", nargs=-1, required=True)
@pass_ctx
@handles_errors
def withdraw(ctx: Context, name: str, refs: tuple[str, ...]) -> None:
    """Withdraw entries (by entry id or hash value) from bank NAME; they stop matching."""
    from dignity.api.schemas import WithdrawOut

    # An entry id has at most 19 digits (64-bit); a hash is longer, even when all its hex
    # digits happen to be decimal ones.
    n = ctx.banks.withdraw(name, [int(r) if r.isdigit() and len(r) <= 19 else r for r in refs])
    emit(WithdrawOut(bank=name, withdrawn=n).model_dump())  # as POST .../withdraw answers


@bank.command("remove")
@click.argument("name")
@click.argument("refs", nargs=-1, required=True)
@pass_ctx
@handles_errors
def remove(ctx: Context, name: str, refs: tuple[str, ...]) -> None:
    """Delete entries (by entry id or hash value) from bank NAME for good."""
    n = ctx.banks.delete_entries(name, [int(r) if r.isdigit() else r for r in refs])
    emit({"bank": name, "deleted": n})


@bank.command("import")
@click.argument("name")
@click.argument("source", type=click.File("r", encoding="utf-8"))
@click.option("--origin-ref", default="", help="Recorded as each entry's origin reference.")
@pass_ctx
@handles_errors
def import_cmd(ctx: Context, name: str, source: IO[str], origin_ref: str) -> None:
    """Import hashes into bank NAME from SOURCE (a file or - for stdin).

    One hash per line: JSON lines as `bank export` writes them, or `<signal> <hex>` as HMA and
    python-threatexchange write them. A bad line aborts the import with nothing written.
    """
    result = ctx.banks.import_lines(name, source, origin_ref=origin_ref or source.name)
    out = result.to_dict()
    out.pop("entry_ids")
    emit({"bank": name, **out})


@bank.command("export")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "text"]), default="jsonl")
@click.option("-o", "--output", type=click.File("w", encoding="utf-8"), default="-")
@pass_ctx
@handles_errors
def export_cmd(ctx: Context, name: str, fmt: str, output: IO[str]) -> None:
    """Export bank NAME's active entries (JSON lines, or `<signal> <hex>` text for HMA/py-tx)."""
    ctx.banks.get_bank(name)
    for line in ctx.banks.export_lines(name, fmt):
        output.write(line + "\n")
