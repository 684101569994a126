"""The audit log over HTTP (admin only): ``GET /v1/audit?after_seq=&limit=``, oldest first.

A client follows the log by passing the last ``seq`` it has as ``after_seq``. Records come as
stored: ``detail`` is the canonical JSON text the hash covers and ``at`` is in the hash's form,
so a client can check the chain itself. :class:`ActorScope` makes every HTTP request start out
``anonymous`` in the audit log, whatever context the server process was started in (``dignity
serve`` runs under the CLI's actor); an authenticated request is then attributed to its key by
:func:`dignity.api.deps.require`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from dignity import audit
from dignity.api.deps import ServicesDep, require
from dignity.api.schemas import ErrorBody
from dignity.audit.export import MAX_LIMIT, list_records
from dignity.keys import KeyInfo

router = APIRouter(
    prefix="/v1/audit",
    tags=["audit"],
    responses={s: {"model": ErrorBody} for s in (401, 403, 422, 429, 503)},
)

Admin = Annotated[KeyInfo, Depends(require("admin"))]
MAX_SEQ = 2**63 - 1

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ActorScope:
    """ASGI middleware: each HTTP request's audit actor starts as ``anonymous``."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # Each request runs in its own task (its own copy of the context): this reaches
            # the endpoint and the worker threads it uses, and no other request.
            audit.set_actor("anonymous")
        await self.app(scope, receive, send)


class AuditRecordOut(BaseModel):
    id: int
    seq: int = Field(description="Position in the chain, from 1 with no gaps")
    at: str = Field(description="UTC time, in the exact form the hash covers")
    actor: str = Field(examples=["key:3:curator-anna", "cli:root", "session:2:reviewer-kim"])
    action: str = Field(examples=["bank.created", "takedown.received"])
    subject: str = Field(examples=["bank:takedowns"])
    detail: str = Field(description="Canonical JSON text (sorted keys), exactly as hashed")
    prev_hash: str = Field(description="SHA-256 of the record before (64 zeros for seq 1)")
    hash: str = Field(description="SHA-256 over prev_hash, seq, at, actor, action, subject, detail")


@router.get(
    "",
    response_model=list[AuditRecordOut],
    summary="Audit records after a sequence number, oldest first (admin)",
)
def list_audit(
    services: ServicesDep,
    _: Admin,
    after_seq: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    action: Annotated[
        str | None, Query(max_length=64, description="Only actions with this prefix")
    ] = None,
) -> list[AuditRecordOut]:
    records = list_records(services.db, action=action, after_seq=after_seq, limit=limit)
    return [AuditRecordOut.model_validate(r) for r in records]
