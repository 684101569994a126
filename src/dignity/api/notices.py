"""Statements of reasons and appeals over HTTP, the DSA Transparency Database export, and the
removal feed for platforms without a webhook.

Public (no key: the uploader has no account here), left out of the OpenAPI document like the
portal:

* ``GET /statements/{public_id}`` -> the statement of reasons, rendered on the server with every
  value escaped: the restriction, facts, automated means, grounds, redress, the appeal deadline
  and the appeal form (``statement.js`` posts it).
* ``POST /statements/api/{public_id}/appeal`` ``{"code", "text"}`` -> 201 ``{appeal_id, state,
  received_at}``. The code travels in the body, never in a URL. Bodies are capped at
  ``_MAX_BODY`` bytes before parsing; wrong codes and appeals filed are limited per client
  address an hour (429 ``rate.limited``).

Keyed: ``GET /v1/statements?since=&until=`` (admin): statements in the Transparency Database's
API format; ``GET /v1/removals?after=&limit=`` or ``?restored_since=`` (platform): removals and
restores to carry out; ``POST /v1/statements/{public_id}/appeal-code`` (platform): a fresh
appeal code for a platform that pulls removals instead of receiving ``notice.statement``.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from dignity.api.deps import Services, ServicesDep, per_process, require
from dignity.api.pages import html_response
from dignity.api.portal import client_address
from dignity.api.uploads import read_model
from dignity.api.v1 import ERRORS
from dignity.cases.service import FailureLimiter
from dignity.keys import KeyInfo
from dignity.takedown.notices import MAX_APPEAL_TEXT, NoticeError, NoticeService
from dignity.takedown.removal import RemovalService

router = APIRouter()

_MAX_BODY = 16 * 1024
Admin = Annotated[KeyInfo, Depends(require("admin"))]
Platform = Annotated[KeyInfo, Depends(require("platform"))]
PublicId = Annotated[str, Path(min_length=1, max_length=64)]


class _AppealIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, Field(min_length=1, max_length=128)]
    text: Annotated[str, Field(min_length=1, max_length=MAX_APPEAL_TEXT)]


class _Limits:
    """Per client address, this process: wrong codes (guessing) and appeals filed."""

    def __init__(self, services: Services) -> None:
        s = services.settings
        self.failures = FailureLimiter(s.portal_ip_failures_per_hour)
        self.appeals = FailureLimiter(s.takedown_ip_requests_per_hour)


def _limits(request: Request, services: Services) -> _Limits:
    return per_process(request, "statement_limits", lambda: _Limits(services))


def _notices(services: Services) -> NoticeService:
    return NoticeService(services.db, services.settings)


# -- the public page ---------------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _date(iso: str | None) -> str:
    if not iso:
        return ""
    at = datetime.fromisoformat(iso).astimezone(UTC)
    return at.strftime("%d %B %Y, %H:%M UTC")


_SOURCES = {
    "notice": "A notice from a person (takedown request; DSA Art. 16, TAKE IT DOWN Act)",
    "trusted_flagger": "A notice from a trusted flagger (DSA Art. 22)",
    "own_initiative": "The platform's own initiative",
}


def render_statement(st: dict[str, Any]) -> str:
    """The statement page's main content; every value escaped."""
    art = st.get("art17") or {}
    means = art.get("automated_means") or {}
    legal = art.get("legal_ground") or {}
    terms = art.get("contractual_ground") or {}
    redress = art.get("redress") or {}
    complaint = redress.get("internal_complaint") or {}
    rows = [
        ("Reference", f'<span class="mono">{_e(st["public_id"])}</span>'),
        ("Content", f'<span class="mono">{_e(st["content_id"])}</span>'),
        ("Decision taken", _e(_date(st.get("issued_at")))),
        ("What was restricted", _e(art.get("restriction"))),
        ("How it came to us", _e(_SOURCES.get(str(art.get("source")), art.get("source")))),
        ("Facts and circumstances", _e(art.get("facts_and_circumstances"))),
        (
            "Automated means",
            _e(means.get("description"))
            + f' <span class="hint">(detection: {"yes" if means.get("detection") else "no"}; '
            f"decision: {'yes' if means.get('decision') else 'no'})</span>",
        ),
    ]
    if legal:
        rows.append(
            ("Legal ground", f"{_e(legal.get('provision'))}<br>{_e(legal.get('explanation'))}")
        )
    if terms:
        rows.append(
            (
                "Contractual ground",
                f"{_e(terms.get('provision'))}<br>{_e(terms.get('explanation'))}",
            )
        )
    badges = '<span class="badge">Image</span>'
    if st.get("synthetic"):
        badges += '<span class="badge ai">Synthetic media (AI-made or altered)</span>'
    rows.append(("Content type", badges))
    fields = "\n".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)
    until = _e(_date(st.get("appeal_until")))
    appeal = st.get("appeal") or {}
    if st.get("restored_at"):
        state = f'<p class="ok">The content was restored on {_e(_date(st["restored_at"]))}.</p>'
    elif appeal.get("state") == "open":
        state = (
            '<p class="warn">Your appeal was received on '
            f"{_e(_date(appeal.get('received_at')))} and is being reviewed.</p>"
        )
    elif appeal.get("state") == "upheld":
        state = (
            "<p>An earlier appeal was reviewed and the decision was upheld on "
            f"{_e(_date(appeal.get('decided_at')))}.</p>"
        )
    else:
        state = ""
    if st.get("appeal_open"):
        form = f"""
  <form id="appeal-form" data-public-id="{_e(st["public_id"])}" novalidate
        aria-labelledby="appeal-title">
    <label for="code">Appeal code <span class="hint">(from the notice you received)</span></label>
    <input type="text" id="code" name="code" autocomplete="off" spellcheck="false" required
           maxlength="128" aria-describedby="appeal-status">
    <label for="text">Why the decision is wrong</label>
    <textarea id="text" name="text" required maxlength="{MAX_APPEAL_TEXT}"
              aria-describedby="text-hint appeal-status"></textarea>
    <p id="text-hint" class="hint">For example: you are the person shown and consented, or the
    image is not what the notice says. Do not include intimate images.</p>
    <button type="submit">Send appeal</button>
  </form>"""
    elif not st.get("restored_at") and appeal.get("state") != "open":
        form = '<p class="error">The appeal window has closed.</p>'
    else:
        form = ""
    return f"""
<section class="card" aria-labelledby="decision-title">
  <h2 id="decision-title">Why this content was removed</h2>
  <dl class="fields">
{fields}
  </dl>
</section>
<section class="card" aria-labelledby="appeal-title">
  <h2 id="appeal-title">How to contest this decision</h2>
  <p class="deadline">You can appeal until <strong>{until}</strong>.</p>
  <p>{_e(complaint.get("how"))}</p>
  <p>{_e(redress.get("out_of_court_settlement"))}</p>
  <p>{_e(redress.get("judicial_redress"))}</p>
  {state}
  {form}
  <p id="appeal-status" role="status" aria-live="polite" tabindex="-1"></p>
</section>"""


def _page(platform: str, content: str, status_code: int = 200) -> Response:
    shell = resources.files("dignity.web").joinpath("statement.html").read_text("utf-8")
    text = shell.replace("{{platform}}", _e(platform)).replace("{{content}}", content)
    return html_response(text, status_code=status_code)


@router.get("/statements/{public_id}", include_in_schema=False)
async def statement_page(public_id: str, services: ServicesDep) -> Response:
    try:
        st = await anyio.to_thread.run_sync(_notices(services).get_statement, public_id[:64])
    except NoticeError as exc:
        if exc.code != "statement.not_found":
            raise
        missing = (
            '<section class="card"><h2>No such statement</h2><p>Check the link in the notice '
            "you received.</p></section>"
        )
        return _page(services.settings.platform_name, missing, status_code=404)
    return _page(str(st.get("platform") or services.settings.platform_name), render_statement(st))


@router.post("/statements/api/{public_id}/appeal", include_in_schema=False)
async def file_appeal(public_id: str, request: Request, services: ServicesDep) -> Response:
    limits = _limits(request, services)
    client = client_address(request, services)
    limits.failures.check(client)
    limits.appeals.check(client)
    body = await read_model(request, _AppealIn, _MAX_BODY)
    notices = _notices(services)
    try:
        got = await anyio.to_thread.run_sync(notices.appeal, public_id[:64], body.code, body.text)
    except NoticeError as exc:
        if exc.code in ("appeal.bad_code", "statement.not_found"):
            limits.failures.add(client)
        raise
    limits.appeals.add(client)
    out = {k: got[k] for k in ("appeal_id", "state", "received_at", "statement")}
    return JSONResponse(out, status_code=201, headers={"Cache-Control": "no-store"})


# -- keyed routes ---------------------------------------------------------------------------------
@router.get(
    "/v1/statements",
    tags=["takedown"],
    responses=ERRORS,
    summary="Statements of reasons in the EU DSA Transparency Database's API format (admin)",
)
def list_statements(
    services: ServicesDep,
    _: Admin,
    since: Annotated[datetime | None, Query(description="Issued at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="Issued before (ISO 8601)")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in _notices(services).export(since, until):
        out.append(item)
        if len(out) >= limit:
            break
    return out


@router.get(
    "/v1/removals",
    tags=["takedown"],
    responses=ERRORS,
    summary="Removals to carry out (id > after), or restores since a time (platform)",
)
def list_removals(
    services: ServicesDep,
    _: Platform,
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    restored_since: Annotated[datetime | None, Query()] = None,
) -> list[dict[str, Any]]:
    removals = RemovalService(services.db, services.settings)
    return removals.list_removals(after=after, limit=limit, restored_since=restored_since)


@router.post(
    "/v1/statements/{public_id}/appeal-code",
    tags=["takedown"],
    responses=ERRORS,
    summary="A fresh appeal code for a statement, to send to its uploader (platform)",
)
def reissue_code(public_id: PublicId, services: ServicesDep, _: Platform) -> dict[str, Any]:
    return _notices(services).reissue_code(public_id)


__all__ = ["render_statement", "router"]
