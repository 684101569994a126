"""``dignity scan PATH...``: hashes, matches, signals and a decision for every image and video,
on all cores.

Workers (processes, one per core by default) decode, hash and run the signal plug-ins; the
parent matches against the in-memory index, applies the policy and writes one row per file,
flushed as it goes. Files given by name print their rows on stdout; a directory scan writes a
report file instead, and re-running with the same report skips files already in it, so an
interrupted scan of millions of files resumes where it stopped (a half-written last line from a
crash is cut off first). A video (known by its first bytes, whatever its name) is hashed
straight from its file, one frame a second, with its signals over sampled frames; the CLI holds
it to ``DIGNITY_VIDEO_MAX_SECONDS`` only (no request to answer in time).
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

from dignity.api.schemas import scan_object
from dignity.cli.app import EXIT_PARTIAL, EXIT_REFUSED, Context, cli, handles_errors, pass_ctx
from dignity.cli.hashing import read_upload_file
from dignity.derivatives import DerivativeMatcher
from dignity.derivatives.service import load_matcher
from dignity.errors import DignityError
from dignity.scanning import HEAD_BYTES, Analysis, Scanner, analyze
from dignity.settings import Settings
from dignity.signals.runner import SignalSuite

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
)
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".3gp", ".webm", ".mkv", ".avi", ".flv", ".ts", ".mpg", ".mpeg"}
)
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES
CSV_FIELDS = [
    "path",
    "status",
    "action",
    "priority",
    "rules",
    "ai_evidence",
    "nudity",
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
_suite: SignalSuite | None = None
_dihedral = True
_derivatives: DerivativeMatcher | None = None


def _init_worker(
    settings: Settings,
    dihedral: bool,
    suite: SignalSuite | None = None,
    derivatives: DerivativeMatcher | None = None,
) -> None:
    global _settings, _dihedral, _suite, _derivatives
    # Each worker builds its own plug-ins: model sessions are not shared across fork.
    _settings, _dihedral, _suite = settings, dihedral, suite or SignalSuite.from_settings(settings)
    # The matcher is read-only here and inherited through fork (never pickled): loaded once.
    _derivatives = derivatives


def _work(path: str) -> tuple[str, Analysis | tuple[str, str]]:
    assert _settings is not None and _suite is not None
    try:
        source: bytes | Path = Path(path)
        if not _is_video_file(path):
            source = read_upload_file(path, _settings)
        return path, analyze(
            source, _settings, _suite, dihedral=_dihedral, derivatives=_derivatives
        )
    except DignityError as exc:
        return path, (exc.code, exc.message)
    except Exception as exc:  # a worker must report, never die silently mid-scan
        return path, ("internal", f"{type(exc).__name__}: {exc}")


def _is_video_file(path: str) -> bool:
    """Whether the file is a video container by its first bytes (an animated GIF or WebP is
    read as bytes, under the image byte limit, and told apart later)."""
    from dignity.video import looks_like_video

    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError:
        return False  # read_upload_file reports why
    return looks_like_video(head)


def discover(root: Path, all_files: bool) -> list[str]:
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            if all_files or Path(name).suffix.lower() in MEDIA_SUFFIXES:
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
    paths: list[str], scanner: Scanner, workers: int, stack: ExitStack
) -> Iterator[tuple[str, Analysis | tuple[str, str]]]:
    if workers <= 1:
        _init_worker(scanner.settings, scanner.dihedral, scanner.suite, scanner.derivatives)
        return map(_work, paths)
    # fork is cheapest, and safe because map() below starts every worker now, before any
    # thread (the progress bar) exists in this process.
    pool = stack.enter_context(
        ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_init_worker,
            initargs=(scanner.settings, scanner.dihedral, None, scanner.derivatives),
        )
    )
    return pool.map(_work, paths, chunksize=8)


@cli.command("scan")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Report file. Default: stdout when every PATH is a file, else scan-report.jsonl/.csv.",
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
    paths: tuple[Path, ...],
    report: Path | None,
    fmt: str,
    workers: int | None,
    restart: bool,
    all_files: bool,
    dihedral: bool | None,
) -> None:
    """Scan each image or video FILE, or every one under each DIRECTORY: hashes, bank
    matches, signals (AI provenance, nudity) and the policy's decision with reasons.

    One JSON object per file, the same object /v1/scan answers (path, status, the hash
    fields of `dignity hash`, matches, suppressed, allowed_by, notes, signals, decision).
    Files named on the command line print to stdout; directories write a resumable report
    (run the same command again and files already in it are skipped).
    Exit status 0 when every file was read, 1 when some could not be (they are reported).
    """
    if dihedral is not None:
        ctx.settings = ctx.settings.model_copy(update={"match_dihedral": dihedral})
    to_stdout = report is None and all(p.is_file() for p in paths)
    if to_stdout and fmt == "csv":
        to_stdout = False
    report = report or Path(f"scan-report.{fmt}")
    if restart and not to_stdout and report.exists():
        report.unlink()
    try:
        done = set() if to_stdout else _done_paths(report, fmt)
    except OSError as exc:
        click.echo(f"dignity: error: cannot read report {report}: {exc}", err=True)
        sys.exit(EXIT_REFUSED)
    found: list[str] = []
    for given in paths:
        found.extend(discover(given, all_files) if given.is_dir() else [str(given)])
    todo = [p for p in found if p not in done]
    scanner = Scanner(ctx.settings, ctx.engine(), derivatives=load_matcher(ctx.db))
    n_workers = min(workers or os.cpu_count() or 1, max(1, len(todo)))
    stats = {"matched": 0, "no_match": 0, "error": 0, "low_quality": 0}
    actions = dict.fromkeys(("allow", "label", "review", "block"), 0)
    console = Console(stderr=True)
    started = time.monotonic()
    with ExitStack() as stack:
        if to_stdout:
            out = sys.stdout
            new_file = False
        else:
            new_file = not report.exists() or report.stat().st_size == 0
            out = stack.enter_context(open(report, "a", encoding="utf-8", newline=""))
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS) if fmt == "csv" else None
        if writer and new_file:
            writer.writeheader()
        results = _results(todo, scanner, n_workers, stack)
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
            disable=to_stdout,
        )
        with progress:
            task = progress.add_task("scan", total=len(todo), rate="-")
            for i, (path, res) in enumerate(results, start=1):
                row = _row(path, res, scanner, stats)
                if "decision" in row:
                    actions[row["decision"]["action"]] += 1
                if writer:
                    writer.writerow(_csv_row(row))
                else:
                    out.write(json.dumps(row, separators=(",", ":")) + "\n")
                out.flush()
                elapsed = time.monotonic() - started
                progress.update(task, advance=1, rate=f"{i / elapsed:.1f}" if elapsed else "-")
    if not to_stdout:
        _summary(console, paths, found, todo, stats, actions, started, report)
    if stats["error"]:
        if to_stdout:
            click.echo(f"dignity: {stats['error']} of {len(todo)} files failed", err=True)
        sys.exit(EXIT_PARTIAL)


def _summary(
    console: Console,
    paths: tuple[Path, ...],
    found: list[str],
    todo: list[str],
    stats: dict[str, int],
    actions: dict[str, int],
    started: float,
    report: Path,
) -> None:
    elapsed = time.monotonic() - started
    table = Table(title=f"Scan of {', '.join(str(p) for p in paths)}")
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, value in (
        ("image files found", len(found)),
        ("already in report (skipped)", len(found) - len(todo)),
        ("scanned now", len(todo)),
        ("matched", stats["matched"]),
        ("no match", stats["no_match"]),
        ("errors", stats["error"]),
        ("pdq quality too low to match", stats["low_quality"]),
        *((f"decision: {action}", n) for action, n in actions.items()),
    ):
        table.add_row(label, str(value))
    table.add_row(
        "elapsed", f"{elapsed:.1f} s ({len(todo) / elapsed:.1f} files/s)" if elapsed else "-"
    )
    table.add_row("report", str(report))
    console.print(table)


def _row(
    path: str,
    res: Analysis | tuple[str, str],
    scanner: Scanner,
    stats: dict[str, int],
) -> dict[str, Any]:
    if isinstance(res, tuple):
        stats["error"] += 1
        return {"path": path, "status": "error", "error": {"code": res[0], "message": res[1]}}
    result = scanner.finish(res)
    pdq = res.hashes.pdq
    if pdq is not None and pdq.quality < scanner.engine.min_quality:
        stats["low_quality"] += 1
    # The one scan object (/v1/scan answers the same fields; scan_id stays null here).
    row = scan_object(result, path=path).model_dump(mode="json")
    stats[row["status"]] += 1
    return row


def _csv_row(row: dict[str, Any]) -> dict[str, Any]:
    matches = row.get("matches") or []
    err = row.get("error") or {}
    decision = row.get("decision") or {}
    signals = row.get("signals") or {}
    nudity = signals.get("nudity")
    return {
        "path": row["path"],
        "status": row["status"],
        "action": decision.get("action", ""),
        "priority": decision.get("priority", ""),
        "rules": ";".join(decision.get("rules", [])),
        "ai_evidence": ";".join(sorted({e["source"] for e in signals.get("ai_evidence", [])})),
        "nudity": "" if nudity is None else nudity,
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
