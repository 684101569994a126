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

A video can be far larger than an image, so :func:`fetched_media` streams the body into a
temporary file instead of memory, up to the video byte limit (``video_max_bytes``), and sorts it
by its first bytes: a video container is kept whole for hashing from the file
(:func:`dignity.takedown.videos.hash_video`), anything else must fit the image limit
(``max_bytes``) as before. The file is deleted when the caller is done with it.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal
from urllib.parse import quote

import httpx

from dignity import __version__
from dignity.errors import UrlFailed, UrlRefused, UrlTimeout
from dignity.fetch import HEADERS, read_body, remaining
from dignity.settings import Settings
from dignity.video import looks_like_video

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
    return _fetch(template, content_id, max_bytes=max_bytes, timeout_s=timeout_s, sink=None)


def _fetch(
    template: str,
    content_id: str,
    *,
    max_bytes: int,
    timeout_s: float,
    sink: BinaryIO | None,
    limit_of: Callable[[bytes], int] | None = None,
) -> bytes:
    """:func:`fetch_from`, or with a ``sink`` the body written there (returns b"")."""
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
                        if sink is not None:
                            _write_body(
                                response,
                                sink,
                                url=shown,
                                max_bytes=max_bytes,
                                deadline=deadline,
                                limit_of=limit_of,
                            )
                            return b""
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


_HEAD = 512  # bytes that tell a video container from an image (MPEG-TS needs 377)


def _write_body(
    response: httpx.Response,
    sink: BinaryIO,
    *,
    url: str,
    max_bytes: int,
    deadline: float,
    limit_of: Callable[[bytes], int] | None = None,
) -> None:
    """:func:`dignity.fetch.read_body`'s rules, the body written to ``sink`` as it arrives;
    ``limit_of(first bytes)`` lowers ``max_bytes`` once the first bytes are in."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise UrlFailed(
            f"{url} sent a {encoding!r}-encoded body although asked for identity",
            code="url.fetch_failed",
            url=url,
        )
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise UrlRefused(
            f"{url} is {declared} bytes, more than the {max_bytes} allowed",
            code="url.too_large",
            url=url,
            max_bytes=max_bytes,
            content_length=int(declared),
        )
    received = 0
    head = b""
    for chunk in response.iter_raw():
        received += len(chunk)
        if limit_of is not None and len(head) < _HEAD:
            head += chunk[: _HEAD - len(head)]
            if len(head) >= _HEAD or received >= (
                int(declared) if declared and declared.isdigit() else _HEAD
            ):
                # The first bytes say what it is: an image keeps the image limit.
                max_bytes = limit_of(head)
                limit_of = None
                if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                    raise UrlRefused(
                        f"{url} is {declared} bytes, more than the {max_bytes} allowed",
                        code="url.too_large",
                        url=url,
                        max_bytes=max_bytes,
                        content_length=int(declared),
                    )
        if received > max_bytes:
            raise UrlRefused(
                f"{url} is more than the {max_bytes} bytes allowed",
                code="url.too_large",
                url=url,
                max_bytes=max_bytes,
            )
        remaining(deadline)
        sink.write(chunk)


@dataclass(frozen=True)
class FetchedMedia:
    """Platform content in a temporary file: ``kind`` by its first bytes, its size."""

    kind: Literal["image", "video"]
    path: Path
    size: int

    def read(self) -> bytes:
        return self.path.read_bytes()


def video_max_bytes(settings: Settings) -> int:
    """The byte limit of a fetched video (never under the image limit)."""
    return max(settings.max_bytes, settings.video_max_bytes)


@contextmanager
def fetched_media(settings: Settings, content_id: str) -> Iterator[FetchedMedia]:
    """``content_id`` fetched into a temporary file (deleted afterwards), streaming: a video
    within :func:`video_max_bytes`, anything else within ``max_bytes`` (``url.too_large``)."""
    template = settings.preview_url_template
    if not template:
        raise UrlRefused(
            "content cannot be fetched: DIGNITY_PREVIEW_URL_TEMPLATE is not set", code="url.invalid"
        )
    limit = video_max_bytes(settings)
    # The system's temporary directory, never data_dir (which may be backed up): fetched media
    # is never stored.
    fd, name = tempfile.mkstemp(prefix="dignity-content-")
    path = Path(name)
    try:
        with os.fdopen(fd, "w+b") as sink:
            _fetch(
                template, content_id, max_bytes=limit, timeout_s=settings.url_timeout_s, sink=sink
            )
            size = sink.tell()
            sink.seek(0)
            head = sink.read(_HEAD)
        kind: Literal["image", "video"] = "video" if looks_like_video(head) else "image"
        if kind == "image" and size > settings.max_bytes:
            raise UrlRefused(
                f"the content is {size} bytes, more than the {settings.max_bytes} allowed",
                code="url.too_large",
                max_bytes=settings.max_bytes,
            )
        yield FetchedMedia(kind, path, size)
    finally:
        path.unlink(missing_ok=True)


__all__ = [
    "MAX_REDIRECTS",
    "FetchedMedia",
    "content_url",
    "fetch_content",
    "fetch_from",
    "fetched_media",
    "looks_like_video",
    "video_max_bytes",
]
