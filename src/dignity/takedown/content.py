"""Fetching a piece of the platform's content by its content id, for review previews and for
hashing content that is removed before it was ever scanned.

The operator configures where content lives with ``preview_url_template``, a URL with
``{content_id}`` in it. That URL is trusted (it usually points into the platform's own network,
so the public-internet guard of :func:`dignity.fetch.fetch_url` would refuse it), but the content
id is not: it comes from a takedown request or an upload, so :func:`content_url` percent-encodes
every character outside the unreserved set and refuses ``.`` and ``..``, which would otherwise
walk up the template's path. :func:`fetch_content` then applies one policy for every caller:
redirects are followed only within the template's own origin (scheme, host and port) and at most
:data:`MAX_REDIRECTS` times, no proxy from the environment ever sees the internal URL, and one
wall-clock deadline and the byte cap bound the whole fetch (the body is read by
:func:`dignity.fetch.read_body`). Failures are :class:`~dignity.fetch.UrlError` with the
hash-by-URL codes (``url.invalid``, ``url.http_error`` with ``status``, ``url.too_large``,
``url.timeout``, ``url.fetch_failed``); each caller turns them into its own codes.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx

from dignity import __version__
from dignity.errors import UrlFailed, UrlRefused, UrlTimeout
from dignity.fetch import HEADERS, read_body, remaining
from dignity.settings import Settings

MAX_REDIRECTS = 3
PLACEHOLDER = "{content_id}"
_HEADERS = {**HEADERS, "User-Agent": f"dignity/{__version__} (platform content)"}


def content_url(template: str, content_id: str) -> str:
    """``template`` with ``{content_id}`` replaced by the percent-encoded id. ``url.invalid``
    for a template without the placeholder or with other braces, and for an id that is empty or
    a dot segment (``.``, ``..``), which no encoding keeps from moving up the path."""
    rest = template.replace(PLACEHOLDER, "")
    if PLACEHOLDER not in template or "{" in rest or "}" in rest:
        raise UrlRefused(
            "DIGNITY_PREVIEW_URL_TEMPLATE must hold {content_id}, and nothing else in braces",
            code="url.invalid",
        )
    if content_id in ("", ".", ".."):
        raise UrlRefused(
            f"content id {content_id!r} cannot be put into a URL", code="url.invalid", url=template
        )
    # safe="": "/", "?", "#", "%" and the rest are encoded, so the id stays one path segment
    # (or one query value) whatever it holds.
    return template.replace(PLACEHOLDER, quote(content_id, safe=""))


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def fetch_content(settings: Settings, content_id: str) -> bytes:
    """The bytes of ``content_id`` from the platform through ``settings.preview_url_template``,
    within ``settings.max_bytes`` and ``settings.url_timeout_s``; ``url.invalid`` when no
    template is set."""
    template = settings.preview_url_template
    if not template:
        raise UrlRefused(
            "content cannot be fetched: DIGNITY_PREVIEW_URL_TEMPLATE is not set", code="url.invalid"
        )
    return fetch_from(
        template, content_id, max_bytes=settings.max_bytes, timeout_s=settings.url_timeout_s
    )


def fetch_from(template: str, content_id: str, *, max_bytes: int, timeout_s: float) -> bytes:
    """The bytes of ``content_id`` through ``template``, within ``max_bytes`` and ``timeout_s``
    (for everything: connects, redirects and the body)."""
    url = content_url(template, content_id)
    deadline = time.monotonic() + timeout_s
    try:
        current = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UrlRefused(f"the content URL cannot be parsed: {exc}", code="url.invalid") from exc
    origin = _origin(current)
    # trust_env=False: the URL is internal, and a proxy from the environment must not see it.
    with httpx.Client(follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            shown = str(current)
            try:
                with client.stream(
                    "GET", current, headers=_HEADERS, timeout=remaining(deadline)
                ) as response:
                    if not response.is_redirect:
                        if response.status_code != 200:
                            raise UrlFailed(
                                f"the platform answered HTTP {response.status_code}",
                                code="url.http_error",
                                url=shown,
                                status=response.status_code,
                            )
                        return read_body(
                            response, url=shown, max_bytes=max_bytes, deadline=deadline
                        )
                    target = current.join(response.headers.get("location", ""))
            except httpx.TimeoutException as exc:
                raise UrlTimeout(
                    "the platform did not send the content in time", code="url.timeout", url=shown
                ) from exc
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise UrlFailed(
                    f"fetching the content failed: {type(exc).__name__}",
                    code="url.fetch_failed",
                    url=shown,
                ) from exc
            if _origin(target) != origin:
                raise UrlFailed(
                    "the platform redirected to another address", code="url.fetch_failed", url=shown
                )
            current = target
    raise UrlRefused(
        f"the platform redirected more than {MAX_REDIRECTS} times",
        code="url.too_many_redirects",
        url=url,
    )


__all__ = ["MAX_REDIRECTS", "content_url", "fetch_content", "fetch_from"]
