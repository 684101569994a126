"""``dignity scan DIR``: hash and match every image under a directory on all cores, resumably.

Workers (processes, one per core by default) decode and hash; the parent matches against the
in-memory index and appends one report row per file, flushed as it goes. Re-running with the
same report skips files already in it, so an interrupted scan of millions of files resumes
where it stopped; a half-written last line from a crash is cut off first.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from dignity.cli.app import EXIT_PARTIAL, EXIT_REFUSED, Context, cli, handles_errors, pass_ctx
from dignity.cli.hashing import hash_file
from dignity.errors import DignityError
from dignity.hashing.signals import ImageHashes
from dignity.settings import Settings

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
)
CSV_FIELDS = [
    "path",
    "status",
    "match_count",
    "banks",
    "best_distance",
    "pdq",
    "quality",
    "md5",
    "sha256",
    "error_code",
    "error_message",
]

_settings: Settings | None = None
_dihedral = True


def _init_worker(settings: Settings, dihedral: bool) -> None:
    global _settings, _dihedral
    _settings, _dihedral = settings, dihedral


def _work(path: str) -> tuple[str, ImageHashes | tuple[str, str]]:
    assert _settings is not None
    try:
        return path, hash_file(path, _settings, dihedral=_dihedral)
    except DignityError as exc:
        return path, (exc.code, exc.message)
    except Exception as exc:  # a worker must report, never die silently mid-scan
        return path, ("internal", f"{type(exc).__name__}: {exc}")


def discover(root: Path, all_files: bool) -> list[str]:
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            if all_files or Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(os.path.join(dirpath, name))
    return found


def _done_paths(report: Path, fmt: str) -> set[str]:
    """Paths already in the report; a torn last line (from a crash) is truncated away first."""
    if not report.exists():
        return set()
    raw = report.read_bytes()
    cut = raw.rfind(b"\n") + 1
    if cut != len(raw):
        with open(report, "r+b") as fh:
            fh.truncate(cut)
        raw = raw[:cut]
    text = raw.decode("utf-8", errors="replace")
    if fmt == "csv":
        return {row["path"] for row in csv.DictReader(io.StringIO(text)) if row.get("path")}
    done = set()
    for line in text.splitlines():
        try:
            done.add(json.loads(line)["path"])
        except (ValueError, KeyError, TypeError):
            continue
    return done


def _results(
    paths: list[str], settings: Settings, dihedral: bool, workers: int, stack: ExitStack
) -> Iterator[tuple[str, ImageHashes | tuple[str, str]]]:
    if workers <= 1:
        _init_worker(settings, dihedral)
        return map(_work, paths)
    # fork is cheapest, and safe because map() below starts every worker now, before any
    # thread (the progress bar) exists in this process.
    pool = stack.enter_context(
        ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_init_worker,
            initargs=(settings, dihedral),
        )
    )
    return pool.map(_work, paths, chunksize=8)


@cli.command("scan")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Report file (default: scan-report.jsonl or .csv in the current directory).",
)
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl")
@click.option("--workers", type=click.IntRange(1), default=None, help="Processes (default: cores).")
@click.option("--restart", is_flag=True, help="Start the report afresh instead of resuming it.")
@click.option("--all-files", is_flag=True, help="Try every file, not only image file names.")
@click.option("--dihedral/--no-dihedral", default=None, help="Match rotated/mirrored copies too.")
@pass_ctx
@handles_errors
def scan(
    ctx: Context,
    directory: Path,
    report: Path | None,
    fmt: str,
    workers: int | None,
    restart: bool,
    all_files: bool,
    dihedral: bool | None,
) -> None:
    """Hash and match every image under DIRECTORY; write a report and print a summary.

    Resumable: run the same command again and files already in the report are skipped.
    Exit status 0 when every file was read, 1 when some could not be (they are in the report).
    """
    report = report or Path(f"scan-report.{fmt}")
    use_dihedral = ctx.settings.match_dihedral if dihedral is None else dihedral
    if restart and report.exists():
        report.unlink()
    try:
        done = _done_paths(report, fmt)
    except OSError as exc:
        click.echo(f"dignity: error: cannot read report {report}: {exc}", err=True)
        sys.exit(EXIT_REFUSED)
    paths = discover(directory, all_files)
    todo = [p for p in paths if p not in done]
    engine = ctx.engine()
    n_workers = min(workers or os.cpu_count() or 1, max(1, len(todo)))
    stats = {"matched": 0, "no_match": 0, "error": 0, "low_quality": 0}
    new_file = not report.exists() or report.stat().st_size == 0
    console = Console(stderr=True)
    started = time.monotonic()
    with ExitStack() as stack:
        out = stack.enter_context(open(report, "a", encoding="utf-8", newline=""))
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS) if fmt == "csv" else None
        if writer and new_file:
            writer.writeheader()
        results = _results(todo, ctx.settings, use_dihedral, n_workers, stack)
        progress = Progress(
            TextColumn("scanning"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>8} files/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        with progress:
            task = progress.add_task("scan", total=len(todo), rate="-")
            for i, (path, res) in enumerate(results, start=1):
                row = _row(path, res, engine, use_dihedral, stats)
                if writer:
                    writer.writerow(_csv_row(row))
                else:
                    out.write(json.dumps(row, separators=(",", ":")) + "\n")
                out.flush()
                elapsed = time.monotonic() - started
                progress.update(task, advance=1, rate=f"{i / elapsed:.1f}" if elapsed else "-")
    elapsed = time.monotonic() - started
    table = Table(title=f"Scan of {directory}")
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, value in (
        ("image files found", len(paths)),
        ("already in report (skipped)", len(paths) - len(todo)),
        ("scanned now", len(todo)),
        ("matched", stats["matched"]),
        ("no match", stats["no_match"]),
        ("errors", stats["error"]),
        ("pdq quality too low to match", stats["low_quality"]),
    ):
        table.add_row(label, str(value))
    table.add_row(
        "elapsed", f"{elapsed:.1f} s ({len(todo) / elapsed:.1f} files/s)" if elapsed else "-"
    )
    table.add_row("report", str(report))
    console.print(table)
    if stats["error"]:
        sys.exit(EXIT_PARTIAL)


def _row(
    path: str,
    res: ImageHashes | tuple[str, str],
    engine: Any,
    dihedral: bool,
    stats: dict[str, int],
) -> dict[str, Any]:
    if isinstance(res, tuple):
        stats["error"] += 1
        return {"path": path, "status": "error", "error": {"code": res[0], "message": res[1]}}
    outcome = engine.match_image(res, dihedral=dihedral)
    if res.pdq is not None and res.pdq.quality < engine.min_quality:
        stats["low_quality"] += 1
    status = "matched" if outcome.matches else "no_match"
    stats[status] += 1
    return {
        "path": path,
        "status": status,
        **outcome.to_dict(),
        "pdq": res.pdq.hex if res.pdq else None,
        "quality": res.pdq.quality if res.pdq else None,
        "md5": res.md5,
        "sha256": res.sha256,
    }


def _csv_row(row: dict[str, Any]) -> dict[str, Any]:
    matches = row.get("matches") or []
    err = row.get("error") or {}
    return {
        "path": row["path"],
        "status": row["status"],
        "match_count": len(matches),
        "banks": ";".join(sorted({m["bank"] for m in matches})),
        "best_distance": min((m["distance"] for m in matches), default=""),
        "pdq": row.get("pdq") or "",
        "quality": row.get("quality") if row.get("quality") is not None else "",
        "md5": row.get("md5") or "",
        "sha256": row.get("sha256") or "",
        "error_code": err.get("code", ""),
        "error_message": err.get("message", ""),
    }
