"""The victim portal: the on-device hashing page and accountless cases (number + PIN).

No API key: the person has no account. The page (``/portal``; ``/`` redirects there) and its
static files are served with a strict Content-Security-Policy (scripts and connections to this
origin only), so even a tampered script could not send a picture elsewhere. The case API takes
JSON bodies of at most ``_MAX_BODY`` bytes, read with a cap before parsing:

* ``POST /portal/api/cases`` ``{"hashes": [{"signal": "pdq", "value": hex, "quality": 0-100} |
  {"signal": "md5", "value": hex} | {"signal": "video_md5", "value": hex} | {"signal": "vpdq",
  "frames": [{"frame", "timestamp", "pdq", "quality"}]}], "adult": true}`` -> 201
  ``{"case_number", "pin", "hashes"}``: the PIN is shown this once and stored only as a scrypt
  hash. A video's vPDQ (one PDQ a second, worked out on the device) is one hash of the case.
* ``POST /portal/api/cases/status`` ``{"case_number", "pin"}`` -> ``{"case_number", "status",
  "hashes", "matched", "matches", "created_at", "withdrawn_at"}`` (counts only).
* ``POST /portal/api/cases/withdraw`` ``{"case_number", "pin"}`` -> the same, status
  ``withdrawn``: every hash stops matching in every process within one index refresh.

``GET /i18n/{lang}.json`` and ``GET /i18n/helplines.json`` serve the pages' translation
catalogues and helpline list (:mod:`dignity.i18n`), also where the portal is off: the takedown
pages use them too.

Number and PIN travel in bodies, never in URLs (which end up in logs). Limits: cases per client
address an hour, wrong number/PIN tries per address an hour (429 ``rate.limited``), wrong PINs
per case (423-like 429 ``case.locked`` with Retry-After), and the slow PIN check runs under the
process's heavy-work cap (503 when saturated). These routes are left out of the OpenAPI
document: they are the page's private API, not part of the keyed service.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
from collections.abc import AsyncIterator
from importlib import resources
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from dignity.api.deps import InFlight, Services, ServicesDep, per_process, run_heavy
from dignity.api.uploads import read_model
from dignity.cases.limits import AddressLimiter
from dignity.cases.service import (
    MAX_VIDEO_FRAMES,
    CaseError,
    CaseRefused,
    CaseService,
    HashIn,
)
from dignity.errors import NotFound, Unavailable
from dignity.i18n import LANGUAGES, catalogue_bytes, helplines_bytes

router = APIRouter()

# Room for a few long videos' vPDQ frames (about 100 bytes each: 3 h of video is 1 MiB).
_MAX_BODY = 4 * 1024 * 1024
_TAKE_IT_DOWN = "https://takeitdown.ncmec.org/"
_STATIC = {
    "pdq.js": "text/javascript; charset=utf-8",
    "md5.js": "text/javascript; charset=utf-8",
    "vpdq.js": "text/javascript; charset=utf-8",
    "portal.js": "text/javascript; charset=utf-8",
    "keep.js": "text/javascript; charset=utf-8",
    "i18n.js": "text/javascript; charset=utf-8",
    "portal.css": "text/css; charset=utf-8",
}
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' blob:; media-src 'self' blob:; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class _FrameModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    frame: Annotated[int, Field(ge=0, le=2**31 - 1)]
    timestamp: Annotated[float, Field(ge=0, le=10**7)]
    pdq: Annotated[str, Field(min_length=64, max_length=64)]
    quality: Annotated[int, Field(ge=0, le=100)]


class _HashModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    signal: Annotated[str, Field(max_length=16)]
    value: Annotated[str, Field(max_length=128)] = ""
    quality: Annotated[int | None, Field(ge=0, le=100)] = None
    frames: Annotated[list[_FrameModel] | None, Field(max_length=MAX_VIDEO_FRAMES)] = None


class _CaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hashes: Annotated[list[_HashModel], Field(max_length=10000)]
    adult: bool = False


class _Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")
    case_number: Annotated[str, Field(max_length=64)]
    pin: Annotated[str, Field(max_length=64)]


class _Limits:
    def __init__(self, services: Services) -> None:
        s = services.settings
        # In the database: one count for every process, kept over restarts.
        self.failures = AddressLimiter(
            services.db, "portal.failures", s.portal_ip_failures_per_hour
        )
        self.creations = AddressLimiter(services.db, "portal.cases", s.portal_ip_cases_per_hour)


def _enabled(services: Services) -> None:
    if not services.settings.portal_enabled:
        raise NotFound("The portal is not enabled on this server.", code="not_found")


def _limits(request: Request, services: Services) -> _Limits:
    return per_process(request, "portal_limits", lambda: _Limits(services))


async def address_in_flight(request: Request, services: ServicesDep) -> AsyncIterator[None]:
    """The anonymous routes' cap on requests in flight per client address (the keyed routes
    cap per key): one address holding hundreds of slow PIN checks or submissions answers 503
    at once past ``address_max_in_flight``, instead of queueing in front of everybody else."""
    client = client_address(request, services)
    in_flight = per_process(request, "address_in_flight", InFlight)
    if not in_flight.enter(client, services.settings.address_max_in_flight):
        raise Unavailable(
            "Too many requests from this address at once. Try again in a second.",
            code="server.busy",
            retry_after=1,
        )
    try:
        yield
    finally:
        in_flight.leave(client)


AddressInFlight = Depends(address_in_flight)


def client_address(request: Request, services: Services) -> str:
    """The client's address for per-address limits: the TCP peer, or, when the peer is one of
    ``trusted_proxies`` and ``portal_client_ip_header`` is set, the rightmost address in that
    header that is not a trusted proxy itself (the ones left of it are the client's word, and a
    client that rotates them must not get a fresh limit each time)."""
    peer = request.client.host if request.client else "unknown"
    settings = services.settings
    header = settings.portal_client_ip_header
    if not header:
        return peer
    trusted = _trusted_networks(settings.trusted_proxies)
    if not trusted or not _in(peer, trusted):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getlist(header)).split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _in(hop, trusted):
            return hop[:64]
    return peer


@functools.lru_cache(maxsize=8)
def _trusted_networks(spec: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    # Validated when the settings load; a bad entry here would only ever narrow the trust.
    out = []
    for item in spec.split(","):
        with contextlib.suppress(ValueError):
            if item.strip():
                out.append(ipaddress.ip_network(item.strip(), strict=False))
    return tuple(out)


def _in(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def _cases(services: Services) -> CaseService:
    return services.cases


def _static(name: str) -> bytes:
    return resources.files("dignity.web").joinpath("static", name).read_bytes()


@router.get("/", include_in_schema=False)
def root(services: ServicesDep) -> Response:
    _enabled(services)
    return RedirectResponse("/portal", status_code=307)


@router.get("/portal", include_in_schema=False)
def page(services: ServicesDep) -> Response:
    _enabled(services)
    html = resources.files("dignity.web").joinpath("portal.html").read_bytes()
    return Response(html, media_type="text/html; charset=utf-8", headers=_SECURITY_HEADERS)


@router.get("/portal/static/{name}", include_in_schema=False)
def static(name: str, services: ServicesDep) -> Response:
    _enabled(services)
    if name not in _STATIC:
        raise NotFound(f"No static file {name!r}.", code="not_found")
    return Response(_static(name), media_type=_STATIC[name], headers=_SECURITY_HEADERS)


# The pages' translations and helplines (shared by the portal and the takedown pages, so they
# are served even where the portal is turned off). Public, unchanging data: cacheable.
_JSON_HEADERS = {**_SECURITY_HEADERS, "Cache-Control": "public, max-age=300"}


@router.get("/i18n/helplines.json", include_in_schema=False)
def helplines() -> Response:
    return Response(helplines_bytes(), media_type="application/json", headers=_JSON_HEADERS)


@router.get("/i18n/{lang}.json", include_in_schema=False)
def catalogue(lang: str) -> Response:
    if lang not in LANGUAGES:
        raise NotFound(f"No translation for {lang[:16]!r}.", code="not_found")
    return Response(catalogue_bytes(lang), media_type="application/json", headers=_JSON_HEADERS)


def _succeeded(error: BaseException | None) -> bool:
    return error is None


def _bad_credentials(error: BaseException | None) -> bool:
    return isinstance(error, CaseError) and error.code in ("case.bad_credentials", "case.locked")


@router.post("/portal/api/cases", include_in_schema=False, dependencies=[AddressInFlight])
async def create_case(request: Request, services: ServicesDep) -> Response:
    _enabled(services)
    limits = _limits(request, services)
    client = client_address(request, services)
    await limits.creations.acheck(client)
    body: _CaseIn = await read_model(request, _CaseIn, _MAX_BODY)
    if not body.adult:
        raise CaseRefused(
            "This service is for adults (18 or over) sharing images of themselves. If you are "
            f"under 18, or were when the images were taken, use Take It Down: {_TAKE_IT_DOWN}",
            code="case.not_adult",
            help=_TAKE_IT_DOWN,
        )
    items = [
        HashIn(
            h.signal,
            h.value,
            h.quality,
            None if h.frames is None else tuple(f.model_dump() for f in h.frames),
        )
        for h in body.hashes
    ]
    cases = _cases(services)
    cases.validate(items)  # cheap checks first, before any slow work or rate budget
    async with limits.creations.atrying(client, keep=_succeeded):
        created = await run_heavy(services, cases.create, items)
    # This process matches the new hashes at once (a refresh blocks: not on the event loop).
    await anyio.to_thread.run_sync(services.engine.refresh)
    return JSONResponse(created.to_dict(), status_code=201, headers={"Cache-Control": "no-store"})


async def _with_credentials(request: Request, services: Services, action: str) -> dict[str, object]:
    _enabled(services)
    limits = _limits(request, services)
    client = client_address(request, services)
    await limits.failures.acheck(client)
    creds: _Credentials = await read_model(request, _Credentials, _MAX_BODY)
    cases = _cases(services)
    fn = cases.withdraw if action == "withdraw" else cases.status
    # Counted as a failure before the PIN is checked, refunded when it was not one: requests
    # in flight at once cannot all slip under the limit.
    async with limits.failures.atrying(client, keep=_bad_credentials):
        await run_heavy(services, cases.release_pending)
        result = await run_heavy(services, fn, creds.case_number, creds.pin)
    if action == "withdraw":
        # Stops matching here at once; elsewhere within a refresh.
        await anyio.to_thread.run_sync(services.engine.refresh)
    out: dict[str, object] = result.to_dict()
    return out


@router.post("/portal/api/cases/status", include_in_schema=False, dependencies=[AddressInFlight])
async def case_status(request: Request, services: ServicesDep) -> Response:
    out = await _with_credentials(request, services, "status")
    return JSONResponse(out, headers={"Cache-Control": "no-store"})


@router.post("/portal/api/cases/withdraw", include_in_schema=False, dependencies=[AddressInFlight])
async def case_withdraw(request: Request, services: ServicesDep) -> Response:
    out = await _with_credentials(request, services, "withdraw")
    return JSONResponse(out, headers={"Cache-Control": "no-store"})


__all__ = ["client_address", "router"]
