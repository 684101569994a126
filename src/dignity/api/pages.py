"""Serving dignity's own web pages (intake, status, review, statements, report) and their files.

Every page is a static HTML file from :mod:`dignity.web` whose script talks to JSON routes, or
HTML that the server renders with escaped values; all are sent with one strict
Content-Security-Policy (scripts, styles, images and connections from this origin only, no inline
script), no caching and no framing. ``/assets/{name}`` serves ``web/static`` files by a fixed
list of extensions; names are checked so nothing outside that folder can be read. ``/docs`` is
Swagger UI 5 served from the files the ``fastapi-offline`` package ships, on this origin: FastAPI's
default loads it from a CDN (blank offline, and a script from a third party on the origin of
``/review`` could act with a reviewer's session), and the ``swagger-ui-bundle`` package's Swagger
UI 4 refuses our OpenAPI 3.1 document ("Unable to render this definition").
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

from dignity.errors import NotFound

router = APIRouter(include_in_schema=False)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' blob: data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}\.(js|css|svg|png)")


def html_response(html: str | bytes, *, status_code: int = 200) -> Response:
    """An HTML answer with the pages' security headers."""
    return Response(
        html,
        status_code=status_code,
        media_type="text/html; charset=utf-8",
        headers=SECURITY_HEADERS,
    )


def page(name: str) -> Response:
    """A static page from ``dignity/web`` (``name`` is a fixed file name chosen by the caller)."""
    return html_response(resources.files("dignity.web").joinpath(name).read_bytes())


_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dignity API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/assets/api-docs.js"></script></body></html>
"""
_DOCS_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
}
# Swagger UI sets inline styles and shows data: images; scripts still come from this origin only.
_DOCS_HEADERS = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": SECURITY_HEADERS["Content-Security-Policy"].replace(
        "style-src 'self'", "style-src 'self' 'unsafe-inline'"
    ),
    "Cache-Control": "public, max-age=3600",
}


@router.get("/docs")
def api_docs() -> Response:
    return Response(_DOCS_PAGE, media_type="text/html; charset=utf-8", headers=_DOCS_HEADERS)


@router.get("/docs/{name}")
def api_docs_file(name: str) -> Response:
    import fastapi_offline

    if name not in _DOCS_FILES:
        raise NotFound(f"no file {name[:80]!r}", code="not_found")
    data = (Path(fastapi_offline.__file__).parent / "static" / name).read_bytes()
    return Response(data, media_type=_DOCS_FILES[name], headers=_DOCS_HEADERS)


@router.get("/assets/{name}")
def asset(name: str) -> Response:
    if not _NAME.fullmatch(name):
        raise NotFound(f"no asset {name[:80]!r}", code="not_found")
    file = resources.files("dignity.web").joinpath("static", name)
    if not file.is_file():
        raise NotFound(f"no asset {name!r}", code="not_found")
    suffix = name[name.rindex(".") :]
    return Response(file.read_bytes(), media_type=_TYPES[suffix], headers=SECURITY_HEADERS)


__all__ = ["SECURITY_HEADERS", "html_response", "page", "router"]
