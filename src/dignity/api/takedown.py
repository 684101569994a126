"""Takedown requests over HTTP: the public intake and status pages with their private JSON API,
and the keyed API for trusted flaggers and reviewers.

Public (no account; left out of the OpenAPI document like the victim portal):

* ``GET /takedown`` the intake form; ``GET /takedown/status`` the status page.
* ``POST /takedown/api/check`` ``FORM`` -> ``{"validity", "missing"}``: what the request would
  lack, nothing written (the form shows it as the person types).
* ``POST /takedown/api/requests`` ``FORM`` -> 201 ``{"ticket", "access_code", "state",
  "validity", "missing", "received_at", "due_at", "status_url"}``: the access code is shown
  this once and stored only as its SHA-256.
* ``POST /takedown/api/status`` ``{"ticket", "access_code"}`` -> the request's state, what is
  missing, its deadline, the outcome and how to contest it.
* ``POST /takedown/api/complete`` ``{"ticket", "access_code", "fields": {...}}`` supplements an
  incomplete request (the 48-hour clock starts when it becomes valid);
  ``POST /takedown/api/withdraw`` ``{"ticket", "access_code"}`` withdraws an open one.

``FORM`` is ``{"requester_kind": "self"|"representative", "requester_name",
"requester_contact", "authority_statement", "content": [URL or content id, ...] (<= 50),
"description", "good_faith": bool, "signature_name", "signature_confirmed": bool,
"ai_made": "real"|"ai"|"unknown", "jurisdiction": "US"|"EU"|"UK"|"other"|""}``. Ticket and
code travel in bodies, never in URLs. Bodies are capped (``_MAX_BODY``) before they are parsed;
a client address may file ``takedown_ip_requests_per_hour`` requests an hour and make
``portal_ip_failures_per_hour`` wrong ticket/code tries (429 ``rate.limited``). A wrong code and
an unknown ticket get the same answer (403 ``takedown.bad_credentials``).

Keyed: ``POST /v1/takedowns`` (role ``flagger``: a trusted flagger, DSA Art. 22; same body;
priority 0), ``GET /v1/takedowns/{ticket}`` (the flagger that filed it, or a reviewer), and
``GET /v1/takedowns`` (reviewer; filters ``state``, ``overdue``).
"""

from __future__ import annotations

from html import escape
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from dignity import audit
from dignity.api.deps import Services, ServicesDep, per_process, require, run_heavy
from dignity.api.pages import html_response, page
from dignity.api.portal import AddressInFlight, client_address
from dignity.api.schemas import MAX_ID, ErrorBody
from dignity.api.uploads import read_model
from dignity.cases.limits import AddressLimiter
from dignity.errors import DignityError
from dignity.keys import KeyInfo
from dignity.takedown.requests import TakedownService
from dignity.takedown.validity import MAX_ITEMS, MAX_LENGTHS, MAX_REF, RequestForm, TakedownNotFound

router = APIRouter()

# 50 lines of 2 KiB, the long text fields, JSON quoting: well under this.
_MAX_BODY = 256 * 1024
_NO_STORE = {"Cache-Control": "no-store"}
_REQUESTER = "requester"  # the audit actor of the public routes: a person with no account
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
}
Flagger = Annotated[KeyInfo, Depends(require("flagger"))]
FlaggerOrReviewer = Annotated[KeyInfo, Depends(require("flagger", "reviewer"))]
Reviewer = Annotated[KeyInfo, Depends(require("reviewer"))]

Text200 = Annotated[str, Field(max_length=MAX_LENGTHS["requester_name"])]
# takedown.models.REQUEST_STATES, spelled out for the OpenAPI document.
StateName = Literal["incomplete", "valid", "removed", "rejected", "withdrawn"]


class TakedownIn(BaseModel):
    """A takedown request: the person shown (or their representative), the content, a
    good-faith statement, a typed signature and contact details."""

    model_config = ConfigDict(extra="forbid")
    requester_kind: Literal["self", "representative"] = Field(
        "self", description="The depicted person, or an authorised representative"
    )
    requester_name: Text200 = ""
    requester_contact: Annotated[str, Field(max_length=MAX_LENGTHS["requester_contact"])] = Field(
        "", description="Email address (DSA Art. 16) or phone number"
    )
    authority_statement: Annotated[str, Field(max_length=MAX_LENGTHS["authority_statement"])] = (
        Field("", description="A representative's statement of authority")
    )
    content: Annotated[
        list[Annotated[str, Field(max_length=MAX_REF)]], Field(max_length=4 * MAX_ITEMS)
    ] = Field(
        default_factory=list,
        description=f"URLs or content ids on this platform (at most {MAX_ITEMS} distinct)",
    )
    description: Annotated[str, Field(max_length=MAX_LENGTHS["description"])] = Field(
        "", description="Why the content is illegal (published without consent)"
    )
    good_faith: StrictBool = Field(
        False,
        description="Good-faith belief that it was published without consent and that the "
        "notice is accurate and complete",
    )
    signature_name: Text200 = Field("", description="Full name typed as a signature")
    signature_confirmed: StrictBool = Field(
        False, description="The typed name is the requester's electronic signature"
    )
    ai_made: Literal["real", "ai", "unknown"] = "unknown"
    jurisdiction: Literal["US", "EU", "UK", "other", ""] = ""

    def form(self) -> RequestForm:
        return RequestForm.from_mapping(self.model_dump())


class _FieldsIn(BaseModel):
    """The fields a requester may supply to complete a request (all optional)."""

    model_config = ConfigDict(extra="forbid")
    requester_kind: Literal["self", "representative"] | None = None
    requester_name: Text200 | None = None
    requester_contact: Annotated[str, Field(max_length=MAX_LENGTHS["requester_contact"])] | None = (
        None
    )
    authority_statement: (
        Annotated[str, Field(max_length=MAX_LENGTHS["authority_statement"])] | None
    ) = None
    content: (
        Annotated[list[Annotated[str, Field(max_length=MAX_REF)]], Field(max_length=4 * MAX_ITEMS)]
        | None
    ) = None
    description: Annotated[str, Field(max_length=MAX_LENGTHS["description"])] | None = None
    good_faith: StrictBool | None = None
    signature_name: Text200 | None = None
    signature_confirmed: StrictBool | None = None
    ai_made: Literal["real", "ai", "unknown"] | None = None
    jurisdiction: Literal["US", "EU", "UK", "other", ""] | None = None


class _Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ticket: Annotated[str, Field(max_length=64)]
    access_code: Annotated[str, Field(max_length=80)]


class _CompleteIn(_Credentials):
    fields: _FieldsIn


class MissingOut(BaseModel):
    key: str = Field(examples=["signature"])
    field: str = Field(examples=["signature_name"])
    message: str


class RegimeOut(BaseModel):
    title: str
    valid: bool
    missing: list[MissingOut]


class ValidityOut(BaseModel):
    valid: bool = Field(description="Complete under either regime: the 48-hour clock runs")
    take_it_down: RegimeOut
    dsa_art16: RegimeOut


class ReceiptOut(BaseModel):
    ticket: str = Field(examples=["TD-K7QM3-XRT9W"])
    access_code: str = Field(description="Shown this once; needed to see or complete it")
    state: Literal["valid", "incomplete"]
    validity: ValidityOut
    missing: list[MissingOut]
    received_at: str
    due_at: str | None = Field(description="The deadline (UTC); null until valid")
    status_url: str


class ItemOut(BaseModel):
    id: int
    ref: str
    content_id: str | None
    scan_id: int | None
    state: str
    kind: Literal["image", "video"] | None = Field(
        None,
        description="What the content is, from its newest scan (a video when the scan log "
        "holds its vPDQ frames); null until it was scanned or fetched for a removal",
    )


class FlagOut(BaseModel):
    requester_fp: str
    flagged: bool
    unfounded: int
    flagged_at: str | None
    suspended_until: str | None
    suspended: bool
    note: str


class HistoryOut(BaseModel):
    requests: int
    removed: int
    rejected: int
    unfounded_365d: int


class TakedownSummaryOut(BaseModel):
    id: int
    ticket: str
    state: str
    channel: str
    flagger_key_id: int | None
    flagger_name: str | None
    priority: int
    ai_made: str
    jurisdiction: str
    item_count: int
    received_at: str | None
    valid_at: str | None
    due_at: str | None
    hours_left: float | None
    overdue: bool
    escalated_24_at: str | None
    escalated_36_at: str | None
    closed_at: str | None
    unfounded: bool
    decided_by: str | None


class TakedownOut(TakedownSummaryOut):
    requester_kind: str
    requester_name: str
    requester_contact: str
    requester_fp: str | None
    authority_statement: str
    description: str
    good_faith: bool
    signature_name: str
    signed_at: str | None
    validity: ValidityOut
    outcome_reason: str
    items: list[ItemOut]
    requester_flag: FlagOut | None
    requester_history: HistoryOut | None


class _Limits:
    def __init__(self, services: Services) -> None:
        s = services.settings
        db = services.db
        self.requests = AddressLimiter(db, "takedown.requests", s.takedown_ip_requests_per_hour)
        checks = max(200, 20 * s.takedown_ip_requests_per_hour)
        self.checks = AddressLimiter(db, "takedown.checks", checks)
        self.failures = AddressLimiter(db, "takedown.failures", s.portal_ip_failures_per_hour)


def _limits(request: Request, services: Services) -> _Limits:
    return per_process(request, "takedown_limits", lambda: _Limits(services))


def _service(services: Services) -> TakedownService:
    return services.takedowns


# -- pages --------------------------------------------------------------------------------


def _named(name: str, services: Services) -> Response:
    """A takedown page with the platform's name in ``<meta name="dignity-platform">``, which
    the page's script writes wherever the page names the platform."""
    response = page(name)
    meta = f'<meta name="dignity-platform" content="{escape(services.settings.platform_name)}">'
    body = bytes(response.body).replace(b"</head>", meta.encode() + b"\n</head>", 1)
    return html_response(body)


@router.get("/takedown", include_in_schema=False)
def intake_page(services: ServicesDep) -> Response:
    return _named("intake.html", services)


@router.get("/takedown/status", include_in_schema=False)
def status_page(services: ServicesDep) -> Response:
    return _named("status.html", services)


# -- the requester's JSON API -------------------------------------------------------------


@router.post("/takedown/api/check", include_in_schema=False, dependencies=[AddressInFlight])
async def check_request(request: Request, services: ServicesDep) -> Response:
    limits = _limits(request, services)
    client = client_address(request, services)
    await limits.checks.acheck(client)
    body: TakedownIn = await read_model(request, TakedownIn, _MAX_BODY)
    await limits.checks.atake(client)
    validity = _service(services).check(body.form())
    out = {"validity": validity.to_dict(), "missing": [m.to_dict() for m in validity.missing]}
    return JSONResponse(out, headers=_NO_STORE)


@router.post("/takedown/api/requests", include_in_schema=False, dependencies=[AddressInFlight])
async def file_request(request: Request, services: ServicesDep) -> Response:
    limits = _limits(request, services)
    client = client_address(request, services)
    await limits.requests.acheck(client)
    body: TakedownIn = await read_model(request, TakedownIn, _MAX_BODY)
    form = body.form()
    svc = _service(services)

    def submit() -> dict[str, Any]:
        with audit.acting_as(_REQUESTER):
            return svc.submit(form).to_dict()

    # A refused requester's tries count too.
    async with limits.requests.atrying(client, keep=_filed_or_suspended):
        out = await run_heavy(services, submit)
    return JSONResponse(out, status_code=201, headers=_NO_STORE)


def _filed_or_suspended(error: BaseException | None) -> bool:
    return error is None or (isinstance(error, DignityError) and error.code == "takedown.suspended")


def _bad_credentials(error: BaseException | None) -> bool:
    return isinstance(error, DignityError) and error.code == "takedown.bad_credentials"


async def _credentialed(
    request: Request, services: Services, model: type[_Credentials], action: str
) -> Response:
    limits = _limits(request, services)
    client = client_address(request, services)
    await limits.failures.acheck(client)
    body = await read_model(request, model, _MAX_BODY)
    svc = _service(services)

    def run() -> dict[str, Any]:
        with audit.acting_as(_REQUESTER):
            if action == "complete":
                assert isinstance(body, _CompleteIn)
                fields = {
                    k: v
                    for k, v in body.fields.model_dump(exclude_unset=True).items()
                    if v is not None
                }
                return svc.complete(body.ticket, body.access_code, fields)
            if action == "withdraw":
                return svc.withdraw(body.ticket, body.access_code)
            return svc.status(body.ticket, body.access_code)

    async with limits.failures.atrying(client, keep=_bad_credentials):
        out = await run_heavy(services, run)
    return JSONResponse(out, headers=_NO_STORE)


@router.post("/takedown/api/status", include_in_schema=False, dependencies=[AddressInFlight])
async def request_status(request: Request, services: ServicesDep) -> Response:
    return await _credentialed(request, services, _Credentials, "status")


@router.post("/takedown/api/complete", include_in_schema=False, dependencies=[AddressInFlight])
async def complete_request(request: Request, services: ServicesDep) -> Response:
    return await _credentialed(request, services, _CompleteIn, "complete")


@router.post("/takedown/api/withdraw", include_in_schema=False, dependencies=[AddressInFlight])
async def withdraw_request(request: Request, services: ServicesDep) -> Response:
    return await _credentialed(request, services, _Credentials, "withdraw")


# -- keyed: trusted flaggers and reviewers ------------------------------------------------


@router.post(
    "/v1/takedowns",
    response_model=ReceiptOut,
    status_code=201,
    tags=["takedowns"],
    responses=ERRORS,
    summary="File a takedown request as a trusted flagger (priority 0, DSA Art. 22)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": TakedownIn.model_json_schema()}},
        }
    },
)
async def flagger_request(request: Request, services: ServicesDep, key: Flagger) -> ReceiptOut:
    body: TakedownIn = await read_model(request, TakedownIn, _MAX_BODY)
    form = body.form()
    svc = _service(services)
    receipt = await run_heavy(
        services, lambda: svc.submit(form, channel="flagger", flagger=key).to_dict()
    )
    return ReceiptOut.model_validate(receipt)


@router.get(
    "/v1/takedowns/{ticket}",
    response_model=TakedownOut,
    tags=["takedowns"],
    responses=ERRORS,
    summary="One takedown request (the flagger that filed it, or a reviewer)",
)
def get_takedown(
    ticket: Annotated[str, Path(max_length=64)], services: ServicesDep, key: FlaggerOrReviewer
) -> TakedownOut:
    svc = _service(services)
    evidence = svc.get_by_ticket(ticket)
    if key.role == "flagger":
        if evidence["flagger_key_id"] != key.id:
            # Another flagger's request, or a public one: as if it did not exist.
            raise TakedownNotFound(
                f"no takedown request {ticket[:40]!r}", code="takedown.not_found"
            )
        evidence.update(requester_flag=None, requester_history=None, requester_fp=None)
    return TakedownOut.model_validate(evidence)


@router.get(
    "/v1/takedowns",
    response_model=list[TakedownSummaryOut],
    tags=["takedowns"],
    responses=ERRORS,
    summary="Takedown requests by id, or the overdue ones first (reviewer)",
)
def list_takedowns(
    services: ServicesDep,
    _: Reviewer,
    state: Annotated[StateName | None, Query()] = None,
    overdue: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after_id: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> list[TakedownSummaryOut]:
    rows = _service(services).list(state=state, overdue=overdue, limit=limit, after_id=after_id)
    return [TakedownSummaryOut.model_validate(r) for r in rows]


__all__ = ["ReceiptOut", "TakedownIn", "TakedownOut", "TakedownSummaryOut", "router"]
