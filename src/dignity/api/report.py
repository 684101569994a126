"""The transparency report over HTTP: a public page, its CSV, and the JSON for staff.

* ``GET /transparency`` (no key): the report as a server-rendered page with inline SVG charts
  and no script, under the pages' strict CSP; a form on it picks the period.
* ``GET /transparency.csv`` (no key): the same figures as ``section,metric,value`` rows, sent as
  a file named after the period.
* ``GET /v1/report`` (admin or reviewer key): the same figures as JSON.

All three take optional ``since`` / ``until`` query parameters (``YYYY-MM-DD`` or ISO 8601 UTC;
the period is ``[since, until)``, by default the current calendar month and the eleven before
it). A value that does not parse is 422 ``report.bad_date``; an empty period or one of more
than ten years is 422 ``report.bad_period``. The public routes publish counts only (see
:mod:`dignity.takedown.report`), so they need no key; the report's queries run under the
process's heavy-work cap, so a flood of page views cannot starve scanning. They are left out of
the OpenAPI document, like the other public pages.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from dignity.api.deps import Services, ServicesDep, require, run_heavy
from dignity.api.pages import SECURITY_HEADERS, html_response
from dignity.api.schemas import ErrorBody
from dignity.keys import KeyInfo
from dignity.takedown.report import Report, build_report, parse_when, resolve_period

router = APIRouter()
Staff = Annotated[KeyInfo, Depends(require("reviewer"))]
# Parsed by the core, so every bad value gets the one code ``report.bad_date``.
_When = Annotated[str | None, Query(description="YYYY-MM-DD or an ISO 8601 time (UTC)")]


async def _report(services: Services, since: str | None, until: str | None) -> Report:
    start = parse_when(since, name="since") if since else None
    end = parse_when(until, name="until") if until else None
    if start is not None and end is not None:
        resolve_period(start, end, end)  # an empty period is refused before any query

    def build() -> Report:
        return build_report(services.db, since=start, until=end, settings=services.settings)

    return await run_heavy(services, build)


def _query(report: Report) -> str:
    return urlencode({"since": _iso(report.since), "until": _iso(report.until)})


def _iso(when: datetime) -> str:
    # A date when the bound is midnight (what the page's form sends), else the full time.
    if (when.hour, when.minute, when.second, when.microsecond) == (0, 0, 0, 0):
        return f"{when:%Y-%m-%d}"
    return when.isoformat().replace("+00:00", "Z")


@router.get("/transparency", include_in_schema=False)
async def transparency_page(
    services: ServicesDep, since: _When = None, until: _When = None
) -> Response:
    report = await _report(services, since, until)
    return html_response(
        report.to_html(page_url="/transparency", csv_url=f"/transparency.csv?{_query(report)}")
    )


@router.get("/transparency.csv", include_in_schema=False)
async def transparency_csv(
    services: ServicesDep, since: _When = None, until: _When = None
) -> Response:
    report = await _report(services, since, until)
    name = f"transparency-{report.since:%Y-%m-%d}-to-{report.until:%Y-%m-%d}.csv"
    return Response(
        report.to_csv(),
        media_type="text/csv; charset=utf-8",
        headers={**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get(
    "/v1/report",
    tags=["takedown"],
    responses={s: {"model": ErrorBody} for s in (401, 403, 422, 429, 503)},
    summary="The transparency report's figures for a period (admin or reviewer key)",
)
async def report_json(
    services: ServicesDep, _: Staff, since: _When = None, until: _When = None
) -> dict[str, Any]:
    """Requests received, valid, removed and the rest; median and p90 hours from valid to
    removal and the share within the deadline; open and overdue now; copies found by sweeps;
    automated decisions; statements; appeals; requesters flagged; a monthly series. The same
    figures as ``/transparency`` and ``dignity report``."""
    report = await _report(services, since, until)
    return report.to_dict()
