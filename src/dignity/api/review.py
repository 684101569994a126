"""The review UI's pages and their private JSON API, authenticated by a session cookie.

A reviewer signs in on ``/review/login`` with a reviewer or admin API key (``POST
/review/api/login {key}``); the answer sets the ``dignity_review`` cookie (HttpOnly,
SameSite=Strict, Path=/, Secure over https) and carries the session's CSRF token, which every
state-changing call sends back as ``X-CSRF-Token`` (403 ``review.csrf`` otherwise, and nothing
changes). ``/review`` is the queue and evidence page (signed-out visitors are sent to the login
page). JSON: ``GET /review/api/session``, ``POST /review/api/logout``, ``GET /review/api/queue``,
``GET /review/api/items/{id}``, ``POST /review/api/items/{id}/decision {outcome, note,
unfounded}``, and ``GET /review/api/items/{id}/preview[?reveal=1][&n=K]`` (a JPEG, blurred and
greyscale unless revealed; a reveal is audited; a video's preview is a contact sheet of a few
frames, ``X-Dignity-Preview-Kind: video`` with their times in ``X-Dignity-Frames``, never the
video itself). These routes take no Bearer key, so they are left
out of the OpenAPI document, like the portal's.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from dignity import audit
from dignity.api.deps import Services, ServicesDep, rate_limiter, run_heavy
from dignity.api.pages import page
from dignity.api.portal import client_address
from dignity.api.uploads import read_model
from dignity.errors import RateLimited
from dignity.takedown.review import ReviewQueue
from dignity.takedown.sessions import COOKIE, ReviewSession, SessionError, SessionService

router = APIRouter(include_in_schema=False)

_MAX_BODY = 64 * 1024
_JSON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class _Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: Annotated[str, Field(max_length=256)]


class _Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Annotated[str, Field(max_length=16)]
    note: Annotated[str, Field(max_length=4000)] = ""
    unfounded: bool = False


def _sessions(request: Request, services: Services) -> SessionService:
    return services.review_sessions


def _queue(services: Services) -> ReviewQueue:
    return services.review


def _json(content: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(content, status_code=status_code, headers=_JSON_HEADERS)


async def _current(request: Request, services: Services) -> ReviewSession:
    svc = _sessions(request, services)
    token = request.cookies.get(COOKIE)
    session = await anyio.to_thread.run_sync(svc.current, token)
    return session


async def signed_in(request: Request, services: ServicesDep) -> ReviewSession:
    """Dependency: the caller's live review session (401 ``session.*`` otherwise), with the
    per-key rate limit and the audit actor set for the rest of the request."""
    session = await _current(request, services)
    wait = rate_limiter(request).take(session.key_id, services.settings.rate_per_minute)
    if wait > 0:
        raise RateLimited(
            "rate limit reached for this key", code="rate.limited", retry_after=max(1, int(wait))
        )
    audit.set_actor(session.actor)
    request.state.review_session = session
    return session


SessionDep = Annotated[ReviewSession, Depends(signed_in)]


def _check_csrf(request: Request, session: ReviewSession) -> None:
    SessionService.check_csrf(session, request.headers.get("x-csrf-token"))


# -- pages ------------------------------------------------------------------------------------


@router.get("/review/login")
async def login_page(request: Request, services: ServicesDep) -> Response:
    if request.cookies.get(COOKIE):
        try:
            await _current(request, services)
        except SessionError:
            pass
        else:
            return RedirectResponse("/review", status_code=303)
    return page("review-login.html")


@router.get("/review")
async def queue_page(request: Request, services: ServicesDep) -> Response:
    try:
        await _current(request, services)
    except SessionError:
        return RedirectResponse("/review/login", status_code=303)
    return page("review.html")


# -- session ----------------------------------------------------------------------------------


@router.post("/review/api/login")
async def login(request: Request, services: ServicesDep) -> Response:
    body: _Login = await read_model(request, _Login, _MAX_BODY)
    svc = _sessions(request, services)
    client = client_address(request, services)
    signed = await anyio.to_thread.run_sync(lambda: svc.sign_in(body.key, client=client))
    previous = request.cookies.get(COOKIE)
    if previous:  # signing in again replaces the old session rather than leaving it live
        await anyio.to_thread.run_sync(svc.sign_out, previous)
    response = _json(signed.session.to_dict())
    response.set_cookie(
        COOKIE,
        signed.token,
        max_age=int(services.settings.session_max_s),
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/review/api/logout")
async def logout(request: Request, services: ServicesDep, session: SessionDep) -> Response:
    _check_csrf(request, session)
    svc = _sessions(request, services)
    await anyio.to_thread.run_sync(svc.sign_out, request.cookies.get(COOKIE))
    response = _json({"signed_out": True})
    response.delete_cookie(
        COOKIE, path="/", secure=request.url.scheme == "https", httponly=True, samesite="strict"
    )
    return response


@router.get("/review/api/session")
def session_info(services: ServicesDep, session: SessionDep) -> Response:
    # The platform's name, for the pages' wording ("not on Example Pics").
    return _json({**session.to_dict(), "platform_name": services.settings.platform_name})


# -- queue and items --------------------------------------------------------------------------


@router.get("/review/api/queue")
def queue(
    services: ServicesDep, session: SessionDep, kinds: str = "", limit: int = 200
) -> Response:
    wanted = [k.strip() for k in kinds.split(",") if k.strip()] or None
    q = _queue(services)
    return _json(
        {
            "items": q.queue(limit=limit, kinds=wanted, viewer=session.name),
            "recent": q.recent(limit=20),
        }
    )


@router.get("/review/api/items/{item_id}")
def item(item_id: int, services: ServicesDep, session: SessionDep) -> Response:
    return _json(_queue(services).item(item_id, viewer=session.name))


@router.post("/review/api/items/{item_id}/decision")
async def decide(
    item_id: int, request: Request, services: ServicesDep, session: SessionDep
) -> Response:
    _check_csrf(request, session)
    body: _Decision = await read_model(request, _Decision, _MAX_BODY)
    q = _queue(services)

    def run() -> dict[str, Any]:
        with audit.acting_as(session.actor):
            return q.decide(
                item_id, body.outcome, actor=session.name, note=body.note, unfounded=body.unfounded
            )

    return _json(await anyio.to_thread.run_sync(run))


@router.get("/review/api/items/{item_id}/preview")
async def preview(
    item_id: int,
    services: ServicesDep,
    session: SessionDep,
    reveal: bool = False,
    n: int = 0,
) -> Response:
    q = _queue(services)

    def run() -> Any:
        with audit.acting_as(session.actor):
            return q.preview(item_id, index=n, reveal=reveal, actor=session.name)

    shot = await run_heavy(services, run)
    return Response(
        shot.data,
        media_type=shot.media_type,
        headers={
            **_JSON_HEADERS,
            "Content-Disposition": "inline",
            "X-Dignity-Preview": "revealed" if shot.revealed else "blurred",
            # A video's preview is a contact sheet: which frames it shows (seconds).
            "X-Dignity-Preview-Kind": shot.kind,
            **(
                {"X-Dignity-Frames": ",".join(f"{t:.3f}" for t in shot.times)} if shot.times else {}
            ),
        },
    )


__all__ = ["router", "signed_in"]
