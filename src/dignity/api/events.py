"""Webhooks and outbox events over HTTP (admin keys only): register receivers, watch deliveries,
and re-queue what failed.

``/v1/webhooks`` is plain CRUD; a webhook's secret appears only in the answer to the request
that set it. ``GET /v1/events?status=dead`` lists events with their per-webhook deliveries
(newest first), and ``POST /v1/events/{id}/redeliver`` puts dead or delivered deliveries back in
the queue with their attempts reset.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from dignity.actions.outbox import EVENT_TYPES
from dignity.actions.webhooks import WebhookInfo
from dignity.api.deps import ServicesDep, require
from dignity.api.schemas import MAX_ID, ErrorBody
from dignity.keys import KeyInfo

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
}

router = APIRouter(prefix="/v1", responses=ERRORS, tags=["webhooks"])

Admin = Annotated[KeyInfo, Depends(require("admin"))]
WebhookId = Annotated[int, Path(ge=1, le=MAX_ID)]
_EVENTS_EXAMPLE = ["entry.added", "entry.withdrawn"]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=2048, examples=["https://hooks.example.com/dignity"])
    secret: str | None = Field(
        None,
        min_length=16,
        max_length=256,
        description="Signing secret; one is generated (and returned once) when left out.",
    )
    events: list[str] = Field(
        default_factory=lambda: ["*"],
        description=f"Event types to send, or ['*']: {', '.join(EVENT_TYPES)}.",
        examples=[_EVENTS_EXAMPLE],
    )
    enabled: bool = True
    description: str = Field("", max_length=1000)


class WebhookPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(None, max_length=2048)
    secret: str | None = Field(None, min_length=16, max_length=256)
    events: list[str] | None = None
    enabled: bool | None = None
    description: str | None = Field(None, max_length=1000)


class WebhookOut(BaseModel):
    id: int
    url: str
    events: list[str] = Field(examples=[_EVENTS_EXAMPLE])
    enabled: bool
    description: str
    created_at: str | None
    pending: int = Field(description="Deliveries waiting (or in flight).")
    dead: int = Field(description="Deliveries that gave up; see GET /v1/events?status=dead.")


class WebhookCreated(WebhookOut):
    secret: str = Field(description="Shown only here: keep it to verify X-Dignity-Signature.")


class DeliveryOut(BaseModel):
    id: int
    webhook_id: int
    status: str = Field(examples=["dead"])
    attempts: int
    next_attempt_at: str | None
    in_flight: bool
    last_status: int | None
    last_error: str
    delivered_at: str | None


class EventOut(BaseModel):
    id: str
    type: str = Field(examples=["entry.added"])
    created_at: str | None
    payload: dict[str, Any]
    deliveries: list[DeliveryOut]


class RedeliverOut(BaseModel):
    event_id: str
    redelivered: int = Field(description="Deliveries put back to pending.")


class RemovedOut(BaseModel):
    id: int
    deliveries_removed: int


def _out(info: WebhookInfo) -> WebhookOut:
    return WebhookOut.model_validate(info.to_dict())


@router.get("/webhooks", response_model=list[WebhookOut], summary="List webhooks")
def list_webhooks(services: ServicesDep, _: Admin) -> list[WebhookOut]:
    return [_out(w) for w in services.webhooks.list()]


@router.post(
    "/webhooks",
    response_model=WebhookCreated,
    status_code=201,
    summary="Register a webhook (the answer holds its secret, shown only this once)",
)
def create_webhook(body: WebhookIn, services: ServicesDep, _: Admin) -> WebhookCreated:
    info, secret = services.webhooks.create(
        body.url,
        secret=body.secret,
        events=body.events,
        enabled=body.enabled,
        description=body.description,
    )
    return WebhookCreated.model_validate({**info.to_dict(), "secret": secret})


@router.get("/webhooks/{webhook_id}", response_model=WebhookOut, summary="One webhook")
def get_webhook(webhook_id: WebhookId, services: ServicesDep, _: Admin) -> WebhookOut:
    return _out(services.webhooks.get(webhook_id))


@router.patch("/webhooks/{webhook_id}", response_model=WebhookOut, summary="Change a webhook")
def patch_webhook(
    webhook_id: WebhookId, body: WebhookPatch, services: ServicesDep, _: Admin
) -> WebhookOut:
    info = services.webhooks.update(
        webhook_id,
        url=body.url,
        secret=body.secret,
        events=body.events,
        enabled=body.enabled,
        description=body.description,
    )
    return _out(info)


@router.delete(
    "/webhooks/{webhook_id}",
    response_model=RemovedOut,
    summary="Remove a webhook and its deliveries",
)
def delete_webhook(webhook_id: WebhookId, services: ServicesDep, _: Admin) -> RemovedOut:
    n = services.webhooks.remove(webhook_id)
    return RemovedOut(id=webhook_id, deliveries_removed=n)


@router.get(
    "/events",
    response_model=list[EventOut],
    summary="Outbox events with their deliveries, newest first (filter by delivery status)",
)
def list_events(
    services: ServicesDep,
    _: Admin,
    status: Annotated[str | None, Query(pattern="^(pending|delivered|dead)$")] = None,
    type: Annotated[str | None, Query(max_length=64)] = None,
    webhook_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[EventOut]:
    events = services.outbox.list_events(
        status=status, event_type=type, webhook_id=webhook_id, limit=limit
    )
    return [EventOut.model_validate(e.to_dict()) for e in events]


@router.get("/events/{event_id}", response_model=EventOut, summary="One event")
def get_event(event_id: str, services: ServicesDep, _: Admin) -> EventOut:
    return EventOut.model_validate(services.outbox.get_event(event_id).to_dict())


@router.post(
    "/events/{event_id}/redeliver",
    response_model=RedeliverOut,
    summary="Send an event again: dead or delivered deliveries go back to pending",
    responses={202: {"model": RedeliverOut, "description": "re-queued"}},
)
def redeliver(
    event_id: str,
    services: ServicesDep,
    _: Admin,
    response: Response,
    webhook_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> RedeliverOut:
    n = services.outbox.redeliver(event_id, webhook_id=webhook_id)
    response.status_code = 202 if n else 200
    return RedeliverOut(event_id=event_id, redelivered=n)
