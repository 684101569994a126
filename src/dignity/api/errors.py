"""Error codes -> HTTP statuses, in this one place, and the JSON body `{code, message, detail}`.

Library code raises :class:`~dignity.errors.DignityError` with a stable code; this module decides
what HTTP status each code means. Unknown codes fall back by prefix, then to 400. Anything that is
not a DignityError is a bug: it is logged and answered 500 with code ``internal``, never a trace.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dignity.errors import DignityError

log = logging.getLogger("dignity.api")

STATUS_BY_CODE: dict[str, int] = {
    "auth.missing_key": 401,
    "auth.invalid_key": 401,
    "auth.forbidden": 403,
    "rate.limited": 429,
    "server.busy": 503,
    "request.timeout": 503,
    "request.too_large": 413,
    "request.unsupported_media_type": 415,
    "media.too_large": 413,
    "media.too_many_pixels": 413,
    "bank.not_found": 404,
    "entry.not_found": 404,
    "key.not_found": 404,
    "event.not_found": 404,
    "webhook.not_found": 404,
    "not_found": 404,
    "bank.exists": 409,
    "url.timeout": 504,
    "url.fetch_failed": 502,
    "url.http_error": 502,
    "index.not_ready": 503,
    "source.not_found": 404,
    "case.bad_credentials": 403,
    "case.locked": 429,
    "case.not_found": 404,
    # audit log (issue 6): a database without the chain's head, or a malformed action name
    "audit.no_head": 503,
    "audit.bad_action": 500,
    # takedown workflow (issue 6): removals, statements, appeals
    "removal.not_found": 404,
    "removal.request_incomplete": 409,
    "removal.request_closed": 409,
    "removal.fetch_failed": 502,
    "scan.not_found": 404,
    "statement.not_found": 404,
    "appeal.not_found": 404,
    "appeal.bad_code": 403,
    "appeal.same_reviewer": 403,
    "appeal.window_closed": 409,
    "appeal.already_open": 409,
    "appeal.already_decided": 409,
    "appeal.restored": 409,
    # review UI (issue 6)
    "session.role": 403,
    "review.csrf": 403,
    "review.not_found": 404,
    "review.no_preview": 404,
    "review.preview_missing": 404,
    "review.decided": 409,
    "review.preview_failed": 502,
    "review.preview_too_large": 502,
    "review.preview_timeout": 504,
    # takedown requests (issue 6)
    "takedown.not_found": 404,
    "takedown.flag_not_found": 404,
    "takedown.bad_credentials": 403,
    "takedown.suspended": 403,
    "takedown.closed": 409,
    "takedown.not_incomplete": 409,
    "takedown.busy": 503,
    "takedown.bad_setting": 503,
}
STATUS_BY_PREFIX: dict[str, int] = {
    "media.": 422,
    "hash.": 422,
    "bank.": 422,
    "entry.": 422,
    "import.": 422,
    "url.": 422,
    "request.": 422,
    "key.": 422,
    "webhook.": 422,
    "event.": 422,
    "auth.": 401,
    "storage.": 503,
    "source.": 422,
    "case.": 422,
    "removal.": 422,  # takedown workflow (issue 6): removals, statements, appeals
    "statement.": 422,
    "appeal.": 422,
    "session.": 401,  # review UI sign-in (issue 6)
    "review.": 422,
    "takedown.": 422,  # takedown requests (issue 6)
    "report.": 422,  # transparency report period (issue 6)
}


def status_for(code: str) -> int:
    if code in STATUS_BY_CODE:
        return STATUS_BY_CODE[code]
    for prefix, status in STATUS_BY_PREFIX.items():
        if code.startswith(prefix):
            return status
    return 400


def error_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    return {"code": code, "message": message, "detail": detail}


def error_response(exc: DignityError) -> JSONResponse:
    status = status_for(exc.code)
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
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()
        ]
        return JSONResponse(
            error_body("request.invalid", "the request is not valid", errors), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http.error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(error_body("internal", "internal error"), status_code=500)
