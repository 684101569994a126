"""Statements of reasons and appeals over HTTP, the DSA Transparency Database export, and the
removal feed for platforms without a webhook.

Public (no key: the uploader has no account here), left out of the OpenAPI document like the
portal:

* ``GET /statements/{public_id}`` -> the statement of reasons, rendered on the server from
  ``web/templates/statement.html`` with every value escaped: the restriction, facts, automated
  means, grounds, redress, the appeal deadline and the appeal form (``statement.js`` posts it).
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

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from dignity.api.deps import Services, ServicesDep, per_process, require
from dignity.api.pages import html_response
from dignity.api.portal import AddressInFlight, client_address
from dignity.api.uploads import read_model
from dignity.api.v1 import ERRORS
from dignity.cases.limits import AddressLimiter
from dignity.keys import KeyInfo
from dignity.takedown.notices import MAX_APPEAL_TEXT, NoticeError, NoticeService
from dignity.web.render import render

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
    """Per client address, all processes: wrong codes (guessing) and appeals filed."""

    def __init__(self, services: Services) -> None:
        s = services.settings
        db = services.db
        self.failures = AddressLimiter(db, "statement.failures", s.portal_ip_failures_per_hour)
        self.appeals = AddressLimiter(db, "statement.appeals", s.takedown_ip_requests_per_hour)


def _limits(request: Request, services: Services) -> _Limits:
    return per_process(request, "statement_limits", lambda: _Limits(services))


def _notices(services: Services) -> NoticeService:
    return services.notices


# -- the public page ---------------------------------------------------------------------------
def _date(iso: str | None) -> str:
    if not iso:
        return ""
    at = datetime.fromisoformat(iso).astimezone(UTC)
    return at.strftime("%d %B %Y, %H:%M UTC")


def _text(value: object) -> str:
    return "" if value is None else str(value)


_SOURCES = {
    "notice": "A notice from a person (takedown request; DSA Art. 16, TAKE IT DOWN Act)",
    "trusted_flagger": "A notice from a trusted flagger (DSA Art. 22)",
    "own_initiative": "The platform's own initiative",
}


@dataclass(frozen=True)
class _Ground:
    provision: str
    explanation: str


@dataclass(frozen=True)
class _StatementView:
    """What the statement page shows, as text (the template escapes it)."""

    public_id: str
    content_id: str
    issued: str
    restriction: str
    source: str
    facts: str
    means: str
    detection: bool
    decision: bool
    legal: _Ground | None
    contractual: _Ground | None
    synthetic: bool
    appeal_until: str
    complaint: str
    out_of_court: str
    judicial: str
    restored: str
    appeal_state: str
    appeal_received: str
    appeal_decided: str
    appeal_open: bool


def _ground(data: dict[str, Any]) -> _Ground | None:
    if not data:
        return None
    return _Ground(_text(data.get("provision")), _text(data.get("explanation")))


def _view(st: dict[str, Any]) -> _StatementView:
    """The statement (as :meth:`NoticeService.get_statement` returns it) as the page's fields."""
    art = st.get("art17") or {}
    means = art.get("automated_means") or {}
    redress = art.get("redress") or {}
    appeal = st.get("appeal") or {}
    source = art.get("source")
    return _StatementView(
        public_id=_text(st["public_id"]),
        content_id=_text(st["content_id"]),
        issued=_date(st.get("issued_at")),
        restriction=_text(art.get("restriction")),
        source=_text(_SOURCES.get(str(source), source)),
        facts=_text(art.get("facts_and_circumstances")),
        means=_text(means.get("description")),
        detection=bool(means.get("detection")),
        decision=bool(means.get("decision")),
        legal=_ground(art.get("legal_ground") or {}),
        contractual=_ground(art.get("contractual_ground") or {}),
        synthetic=bool(st.get("synthetic")),
        appeal_until=_date(st.get("appeal_until")),
        complaint=_text((redress.get("internal_complaint") or {}).get("how")),
        out_of_court=_text(redress.get("out_of_court_settlement")),
        judicial=_text(redress.get("judicial_redress")),
        restored=_date(st.get("restored_at")),
        appeal_state=_text(appeal.get("state")),
        appeal_received=_date(appeal.get("received_at")),
        appeal_decided=_date(appeal.get("decided_at")),
        appeal_open=bool(st.get("appeal_open")),
    )


def statement_html(platform: str, st: dict[str, Any] | None) -> str:
    """The statement page for ``st`` (None: the page that says there is no such statement)."""
    return render(
        "statement.html",
        platform=platform,
        st=None if st is None else _view(st),
        max_appeal_text=MAX_APPEAL_TEXT,
    )


@router.get("/statements/{public_id}", include_in_schema=False)
async def statement_page(public_id: str, services: ServicesDep) -> Response:
    try:
        st = await anyio.to_thread.run_sync(_notices(services).get_statement, public_id[:64])
    except NoticeError as exc:
        if exc.code != "statement.not_found":
            raise
        page = statement_html(services.settings.platform_name, None)
        return html_response(page, status_code=404)
    platform = str(st.get("platform") or services.settings.platform_name)
    return html_response(statement_html(platform, st))


def _bad_code(error: BaseException | None) -> bool:
    return isinstance(error, NoticeError) and error.code in (
        "appeal.bad_code",
        "statement.not_found",
    )


@router.post(
    "/statements/api/{public_id}/appeal", include_in_schema=False, dependencies=[AddressInFlight]
)
async def file_appeal(public_id: str, request: Request, services: ServicesDep) -> Response:
    limits = _limits(request, services)
    client = client_address(request, services)
    await limits.failures.acheck(client)
    await limits.appeals.acheck(client)
    body = await read_model(request, _AppealIn, _MAX_BODY)
    notices = _notices(services)
    async with (
        limits.failures.atrying(client, keep=_bad_code),
        limits.appeals.atrying(client, keep=lambda error: error is None),
    ):
        got = await anyio.to_thread.run_sync(notices.appeal, public_id[:64], body.code, body.text)
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
    return services.removals.list_removals(after=after, limit=limit, restored_since=restored_since)


@router.post(
    "/v1/statements/{public_id}/appeal-code",
    tags=["takedown"],
    responses=ERRORS,
    summary="A fresh appeal code for a statement, to send to its uploader (platform)",
)
def reissue_code(public_id: PublicId, services: ServicesDep, _: Platform) -> dict[str, Any]:
    return _notices(services).reissue_code(public_id)


__all__ = ["router", "statement_html"]
