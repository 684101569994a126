"""The one fetcher of platform content (review previews and removals): how a content id goes
into the URL template, and the redirect, proxy, size and time rules, against a real HTTP server
on 127.0.0.1."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from dignity.fetch import UrlError
from dignity.settings import Settings
from dignity.takedown.content import MAX_REDIRECTS, content_url, fetch_content, fetch_from

BODY = b"\xff\xd8 not really a jpeg, but bytes"


class _Handler(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []  # what the server was asked for, read by the tests
    other_port = 0

    def do_GET(self) -> None:
        self.seen.append(self.path)
        name = self.path.split("/content/", 1)[-1]
        if name == "ok":
            self._send(200, BODY)
        elif name == "hop":
            self._redirect("/content/ok")
        elif name == "loop":
            self._redirect("/content/loop")
        elif name == "away":
            self._redirect(f"http://127.0.0.1:{self.other_port}/content/ok")
        elif name == "big":
            self._send(200, b"x" * 2000)
        elif name == "big-undeclared":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"x" * 2000)
        elif name == "slow":
            time.sleep(1.5)
            self._send(200, BODY)
        else:
            self._send(404, b"no such content")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler) for _ in range(2)]
    _Handler.other_port = servers[1].server_address[1]
    for server in servers:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{servers[0].server_address[1]}"
    for server in servers:
        server.shutdown()
        server.server_close()


def _fetch(base: str, content_id: str, **kw: Any) -> bytes:
    kw.setdefault("max_bytes", 1000)
    kw.setdefault("timeout_s", 5.0)
    return fetch_from(base + "/content/{content_id}", content_id, **kw)


def _code(base: str, content_id: str, **kw: Any) -> UrlError:
    with pytest.raises(UrlError) as info:
        _fetch(base, content_id, **kw)
    return info.value


def test_content_ids_stay_one_path_segment() -> None:
    template = "https://platform.internal/media/{content_id}/preview?size=640"
    for content_id, filled in (
        ("abc-1_2.jpg", "abc-1_2.jpg"),
        ("a/b", "a%2Fb"),
        ("../admin", "..%2Fadmin"),
        ("x?y=1#z", "x%3Fy%3D1%23z"),
        ("100%", "100%25"),
        ("...", "..."),
        ("é", "%C3%A9"),
    ):
        assert content_url(template, content_id) == template.replace("{content_id}", filled)
    # The query string is no way round: & and = are encoded there too.
    assert (
        content_url("http://p/get?id={content_id}", "1&admin=1") == "http://p/get?id=1%26admin%3D1"
    )
    for bad in ("", ".", ".."):
        with pytest.raises(UrlError, match="cannot be put into a URL") as info:
            content_url(template, bad)
        assert info.value.code == "url.invalid"


def test_the_template_holds_the_placeholder_and_nothing_else_in_braces() -> None:
    for template in ("http://p/media", "http://p/{id}/{content_id}", "http://p/{content_id}}"):
        with pytest.raises(UrlError, match=r"\{content_id\}") as info:
            content_url(template, "a")
        assert info.value.code == "url.invalid"
    assert content_url("http://p/{content_id}/{content_id}", "a") == "http://p/a/a"


def test_fetches_and_follows_redirects_within_the_origin(base: str) -> None:
    assert _fetch(base, "ok") == BODY
    _Handler.seen.clear()
    assert _fetch(base, "hop") == BODY
    assert _Handler.seen == ["/content/hop", "/content/ok"]
    # The walk up the path arrives as one encoded segment, not as a request for /admin.
    _Handler.seen.clear()
    assert _code(base, "../admin").detail["status"] == 404
    assert _Handler.seen == ["/content/..%2Fadmin"]


def test_refusals(base: str) -> None:
    away = _code(base, "away")
    assert away.code == "url.fetch_failed" and "another address" in away.message
    loop = _code(base, "loop")
    assert loop.code == "url.too_many_redirects" and str(MAX_REDIRECTS) in loop.message
    missing = _code(base, "gone")
    assert missing.code == "url.http_error" and missing.detail["status"] == 404
    assert _code(base, "big").code == "url.too_large"
    assert _code(base, "big-undeclared").code == "url.too_large"
    assert _code(base, "slow", timeout_s=0.5).code == "url.timeout"
    assert _code("http://127.0.0.1:1", "ok").code == "url.fetch_failed"


def test_settings_choose_the_template_and_limits(base: str) -> None:
    settings = Settings(preview_url_template=base + "/content/{content_id}", max_bytes=1000)
    assert fetch_content(settings, "ok") == BODY
    with pytest.raises(UrlError) as big:
        fetch_content(settings, "big")
    assert big.value.code == "url.too_large"
    with pytest.raises(UrlError, match="DIGNITY_PREVIEW_URL_TEMPLATE") as unset:
        fetch_content(Settings(), "ok")
    assert unset.value.code == "url.invalid"


def test_no_proxy_from_the_environment(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy that does not exist: were it used, the fetch would fail.
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:1")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert _fetch(base, "ok") == BODY
