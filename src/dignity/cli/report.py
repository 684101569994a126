"""``dignity report``: the transparency report (takedown requests, time to removal, copies found
by sweeps, automation, statements, appeals) for a period, as JSON, CSV or an HTML page.

The period is ``[--since, --until)`` in UTC: dates (``YYYY-MM-DD``, midnight UTC) or ISO 8601
times; by default the current calendar month and the eleven before it, up to now. The figures
are those of :mod:`dignity.takedown.report`; the HTML file is the page ``/transparency`` serves
(it links /assets/app.css and /assets/report.css, so it is styled when served by dignity). A
date that does not parse or an empty period exits 3 with ``report.bad_date`` /
``report.bad_period``, before the database is opened; an output file that cannot be written
exits 3 with ``report.output``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from dignity.cli.app import Context, cli, handles_errors, pass_ctx
from dignity.takedown.report import ReportError, build_report, parse_when, resolve_period


@cli.command("report")
@click.option(
    "--since",
    metavar="DATE",
    default=None,
    help="Start of the period (included): YYYY-MM-DD or an ISO 8601 time, UTC. "
    "Default: the first day of the month eleven months before --until's.",
)
@click.option(
    "--until",
    metavar="DATE",
    default=None,
    help="End of the period (not included): YYYY-MM-DD or an ISO 8601 time, UTC. Default: now.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "csv", "html"]),
    default="json",
    show_default=True,
    help="json: one object; csv: section,metric,value rows; html: a page with charts.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write to this file instead of standard output.",
)
@pass_ctx
@handles_errors
def report_cmd(
    ctx: Context, since: str | None, until: str | None, fmt: str, output: Path | None
) -> None:
    """The transparency report: requests received, valid, removed; median and p90 hours to
    removal and the share within the deadline; copies found; automation; appeals."""
    start = parse_when(since, name="since") if since is not None else None
    end = parse_when(until, name="until") if until is not None else None
    if start is not None and end is not None:
        resolve_period(start, end, end)  # refuse an empty period before opening the database
    report = build_report(ctx.db, since=start, until=end, settings=ctx.settings)
    if fmt == "csv":
        text = report.to_csv()
    elif fmt == "html":
        text = report.to_html()
    else:
        text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        # newline="": the CSV's CRLF row ends (RFC 4180) are written as they are.
        with open(output, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    except OSError as exc:
        raise ReportError(
            f"cannot write {output}: {exc.strerror or exc}", code="report.output"
        ) from exc
    click.echo(f"wrote the {fmt} report to {output}", err=True)
