"""Errors as HTTP answers: the status comes from the error's class, the JSON body is
`{code, message, detail}`.

Library code raises a :class:`~dignity.errors.DignityError` subclass; its category
(``NotFound``, ``Conflict``, ``Refused``, ...) carries ``http_status``, so no table of codes
lives here. The codes this layer makes itself (``request.invalid`` for a body FastAPI cannot
validate, ``not_found`` and ``method_not_allowed`` for routing, ``http.error`` for any other
framework refusal, ``internal``) also belong to classes in ``dignity.errors``. Anything that is
not a DignityError is a bug: it is logged and answered 500 with code ``internal``, never a trace.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dignity.errors import (
    DignityError,
    Internal,
    MethodNotAllowed,
    NotFound,
    RequestRefused,
    error_class,
)

log = logging.getLogger("dignity.api")

# Starlette's own refusals, by status, as the code of the class that means the same.
_FRAMEWORK_CODES: dict[int, str] = {
    NotFound.http_status: "not_found",
    MethodNotAllowed.http_status: "method_not_allowed",
}


def status_for(code: str) -> int:
    """The HTTP status of ``code``: its class's ``http_status``."""
    return error_class(code).http_status


def invalid_detail(errors: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The one detail of ``request.invalid``, for every route: ``{"errors": [{loc, msg}]}``,
    at most 50 (a body of a million bad items must not answer a million lines)."""
    return {
        "errors": [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in errors][
            :50
        ]
    }


def error_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    return {"code": code, "message": message, "detail": detail}


def error_response(exc: DignityError) -> JSONResponse:
    status = exc.http_status
    headers = {}
    if status in (429, 503) and "retry_after" in exc.detail:
        headers["Retry-After"] = str(exc.detail["retry_after"])
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(
        error_body(exc.code, exc.message, exc.detail or None), status_code=status, headers=headers
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(DignityError)
    async def _dignity(_: Request, exc: DignityError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            error_body("request.invalid", "the request is not valid", invalid_detail(exc.errors())),
            status_code=RequestRefused.http_status,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _FRAMEWORK_CODES.get(exc.status_code, "http.error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(
            error_body("internal", "internal error"), status_code=Internal.http_status
        )
