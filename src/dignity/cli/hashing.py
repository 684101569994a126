"""``dignity hash`` and ``dignity match``: per-file JSON lines, failures reported per file.

Both decode each file once. A file that cannot be read or decoded yields ``{path, error}`` and
the command carries on with the rest, exiting 1 at the end so scripts notice.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import click

from dignity.cli.app import EXIT_PARTIAL, Context, cli, emit, handles_errors, pass_ctx
from dignity.errors import DignityError, InputError, MediaTooLarge
from dignity.hashing.signals import ImageHashes, hash_bytes
from dignity.settings import Settings


def hash_file(
    path: str, settings: Settings, *, dihedral: bool, regions: bool = False
) -> ImageHashes:
    """Hash one file; raises DignityError (MediaError for bad media or unreadable files)."""
    data = read_upload_file(path, settings)
    if regions:
        from dignity.regions import hash_upload

        return hash_upload(data, settings, dihedral=dihedral)
    return hash_bytes(data, settings=settings, dihedral=dihedral)


def read_upload_file(path: str, settings: Settings) -> bytes:
    """A file's bytes; ``input.unreadable`` when it cannot be read, ``media.too_large`` over the
    upload size limit."""
    try:
        size = os.stat(path).st_size
        if size > settings.max_bytes:
            # Refuse before reading: a 10 GB file must not be pulled into memory to be rejected.
            raise MediaTooLarge(
                f"file is {size} bytes; the limit is {settings.max_bytes}",
                code="media.too_large",
                size=size,
                limit=settings.max_bytes,
            )
        with open(path, "rb") as fh:
            return fh.read()
    except IsADirectoryError as exc:
        raise InputError("is a directory", code="input.unreadable") from exc
    except OSError as exc:
        raise InputError(exc.strerror or str(exc), code="input.unreadable") from exc


def hashes_to_dict(path: str, h: ImageHashes, *, dihedral: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"path": path, **h.fields()}
    if dihedral and h.pdq and h.pdq.dihedral:
        out["pdq_dihedral"] = list(h.pdq.dihedral)
    return out


def each_hashed(
    files: tuple[str, ...], settings: Settings, *, dihedral: bool, regions: bool = False
) -> Iterator[tuple[str, ImageHashes]]:
    """Hash each file in turn, emitting ``{path, error}`` for failures; exit 1 at the end if any."""
    failed = 0
    for path in files:
        try:
            h = hash_file(path, settings, dihedral=dihedral, regions=regions)
        except DignityError as exc:
            failed += 1
            emit({"path": path, "error": {"code": exc.code, "message": exc.message}})
            continue
        yield path, h
    if failed:
        click.echo(f"dignity: {failed} of {len(files)} files failed", err=True)
        sys.exit(EXIT_PARTIAL)


@cli.command("hash")
@click.option("--dihedral", is_flag=True, help="Also print the 8 rotation/mirror PDQ hashes.")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@pass_ctx
@handles_errors
def hash_cmd(ctx: Context, dihedral: bool, files: tuple[str, ...]) -> None:
    """Print PDQ (+quality), MD5 and SHA-256 of each FILE as one JSON object per line."""
    for path, h in each_hashed(files, ctx.settings, dihedral=dihedral):
        emit(hashes_to_dict(path, h, dihedral=dihedral))


@cli.command("match")
@click.option(
    "--dihedral/--no-dihedral",
    default=None,
    help="Match rotated/mirrored copies too (default: DIGNITY_MATCH_DIHEDRAL, on).",
)
@click.argument("files", nargs=-1, required=True, type=click.Path())
@pass_ctx
@handles_errors
def match_cmd(ctx: Context, dihedral: bool | None, files: tuple[str, ...]) -> None:
    """Match each FILE against every enabled bank; one JSON object per file.

    Each object has ``path`` and ``matches`` (a list of {bank, entry_id, signal, distance});
    when an allow bank matched, ``allowed_by`` and the ``suppressed`` matches are shown too.
    A banked picture found inside the file (a screenshot, collage, meme, chat forward or
    bordered repost) is a match with ``region`` {x, y, w, h} (DIGNITY_MATCH_REGIONS, on).
    """
    use_dihedral = ctx.settings.match_dihedral if dihedral is None else dihedral
    engine = ctx.engine()
    regions = ctx.settings.match_regions
    for path, h in each_hashed(files, ctx.settings, dihedral=use_dihedral, regions=regions):
        outcome = engine.match_image(h, dihedral=use_dihedral)
        emit({"path": path, **outcome.to_dict()})
