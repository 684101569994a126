"""Tests for dignity.fetch: SSRF refusals, redirects, limits and pinning, against real servers.

Every server is an http.server on 127.0.0.1 (or 127.0.0.2, which Linux routes to lo too) on an
ephemeral port; test host names such as good.test reach them only through a fake resolver, and
a guard makes any attempt to open a socket fail the refusal tests, so no real host is contacted.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from dignity import fetch
from dignity.errors import DignityError
from dignity.fetch import FetchPolicy, UrlError, fetch_url, refusal_reason

Route = Callable[[BaseHTTPRequestHandler], None]
LOCALHOST = IPv4Network("127.0.0.1/32")
TRUSTING = FetchPolicy(timeout_s=5.0, trusted_addresses=frozenset({LOCALHOST}))
BODY = bytes(range(256)) * 40


# --- servers and resolvers --------------------------------------------------------------------


class LocalServer:
    """A threaded HTTP server whose paths are routes; records (path, Host) of each request."""

    def __init__(self, routes: dict[str, Route], host: str, port: int, stop: threading.Event):
        self.routes = routes
        self.requests: list[tuple[str, str]] = []
        self.stop = stop
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner.requests.append((self.path, self.headers.get("Host", "")))
                route = owner.routes.get(self.path.split("?")[0])
                if route is None:
                    respond(self, 404, b"not here")
                else:
                    route(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        # Refused TLS handshakes and cut-off bodies are expected here, not worth a traceback.
        self.httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def respond(
    h: BaseHTTPRequestHandler, status: int, body: bytes = b"", headers: dict[str, str] | None = None
) -> None:
    h.send_response(status)
    for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
        h.send_header(name, value)
    h.send_header("Connection", "close")
    h.end_headers()
    h.wfile.write(body)


def serves(body: bytes) -> Route:
    return lambda h: respond(h, 200, body)


def redirects(location: str, status: int = 302) -> Route:
    return lambda h: respond(h, status, headers={"Location": location})


class FakeResolver:
    """Maps test names to addresses; each entry is a list, or a function of the call number."""

    def __init__(self, table: dict[str, list[str] | Callable[[int], list[str]]]) -> None:
        self.table = table
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        answer = self.table.get(host)
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answer(len(self.calls)) if callable(answer) else list(answer)


ServerFactory = Callable[..., LocalServer]


@pytest.fixture
def serve() -> Iterator[ServerFactory]:
    stop = threading.Event()  # lets sleeping handlers finish at once when the test ends
    servers: list[LocalServer] = []

    def start(routes: dict[str, Route], host: str = "127.0.0.1", port: int = 0) -> LocalServer:
        try:
            server = LocalServer(routes, host, port, stop)
        except OSError as exc:
            if host != "127.0.0.1":
                pytest.skip(f"cannot bind {host}:{port} here ({exc})")
            raise
        servers.append(server)
        return server

    yield start
    stop.set()
    for server in servers:
        server.close()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt fails the test: refusals must happen before connecting."""

    def refuse(*args: Any, **kwargs: Any) -> socket.socket:
        raise AssertionError(f"tried to connect: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)


def code_of(url: str, policy: FetchPolicy | None = None, **kwargs: Any) -> UrlError:
    with pytest.raises(UrlError) as caught:
        fetch_url(url, policy or FetchPolicy(), **kwargs)
    assert isinstance(caught.value, DignityError)
    return caught.value


def literal(address: str) -> str:
    return f"[{address}]" if ":" in address else address


# --- success ----------------------------------------------------------------------------------


def test_fetches_by_name_from_the_checked_address_with_the_original_host(
    serve: ServerFactory,
) -> None:
    server = serve({"/img": serves(BODY)})
    resolver = FakeResolver({"good.test": ["127.0.0.1"]})
    got = fetch_url(f"http://GOOD.test:{server.port}/img?size=1#frag", TRUSTING, resolver=resolver)
    assert got == BODY
    assert server.requests == [("/img?size=1", f"good.test:{server.port}")]
    assert resolver.calls == ["good.test"]


def test_default_port_is_left_out_of_the_host_header(
    serve: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve({"/img": serves(BODY)})
    real_connect = socket.create_connection

    def port_80_is_our_server(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        assert address == ("127.0.0.1", 80), f"tried to connect to {address}"
        return real_connect(("127.0.0.1", server.port), *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", port_80_is_our_server)
    resolver = FakeResolver({"good.test": ["127.0.0.1"]})
    assert fetch_url("http://good.test:80/img", TRUSTING, resolver=resolver) == BODY
    assert fetch_url("http://good.test/img", TRUSTING, resolver=resolver) == BODY
    assert server.requests == [("/img", "good.test")] * 2


def test_the_same_server_is_refused_without_the_test_override(serve: ServerFactory) -> None:
    server = serve({"/img": serves(BODY)})
    resolver = FakeResolver({"good.test": ["127.0.0.1"]})
    error = code_of(f"http://good.test:{server.port}/img", resolver=resolver)
    assert error.code == "url.forbidden_address"
    assert error.detail["address"] == "127.0.0.1"
    assert error.detail["reason"] == "loopback"
    assert server.requests == []


def test_body_of_exactly_max_bytes_is_accepted(serve: ServerFactory) -> None:
    server = serve({"/img": serves(BODY)})
    policy = FetchPolicy(max_bytes=len(BODY), trusted_addresses=frozenset({LOCALHOST}))
    assert fetch_url(f"http://127.0.0.1:{server.port}/img", policy) == BODY


# --- refused addresses ------------------------------------------------------------------------

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "::1",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "100.64.0.1",
    "169.254.169.254",
    "100.100.100.200",
    "fe80::1",
    "fc00::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "0.0.0.0",
    "::",
    "224.0.0.1",
    "ff02::1",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.0.192",
    "fd00:ec2::254",
    "192.0.2.1",
    "198.18.0.1",
    "2001:db8::1",
    "fec0::1",
    "2002:7f00:1::1",  # 6to4 around 127.0.0.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo around 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 around 10.0.0.1
    "::7f00:1",  # IPv4-compatible 127.0.0.1
]


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("address", REFUSED)
def test_refused_as_literal(address: str) -> None:
    resolver = FakeResolver({})
    error = code_of(f"http://{literal(address)}/x", resolver=resolver)
    assert error.code == "url.forbidden_address"
    assert ipaddress.ip_address(error.detail["address"]) == ipaddress.ip_address(address)
    assert resolver.calls == []


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("address", REFUSED)
def test_refused_when_resolved(address: str) -> None:
    error = code_of("https://evil.test/x", resolver=FakeResolver({"evil.test": [address]}))
    assert error.code == "url.forbidden_address"
    assert ipaddress.ip_address(error.detail["address"]) == ipaddress.ip_address(address)
    assert error.detail["host"] == "evil.test"


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(
    "answer", [["93.184.215.14", "10.0.0.7"], ["10.0.0.7", "93.184.215.14"], ["8.8.8.8", "::1"]]
)
def test_one_private_address_among_public_ones_is_refused(answer: list[str]) -> None:
    error = code_of("http://mixed.test/", resolver=FakeResolver({"mixed.test": answer}))
    assert error.code == "url.forbidden_address"
    assert not ipaddress.ip_address(error.detail["address"]).is_global


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("8.8.8.8", None),
        ("93.184.215.14", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::808:808", None),  # NAT64 of a public address is a public address
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("192.0.0.192", "metadata"),
        ("224.0.0.1", "multicast"),
        ("2002:808:808::1", "6to4 transition"),  # even around a public address
        ("2002:a00:1::1", "6to4 form of 10.0.0.1: private"),
        ("::ffff:169.254.169.254", "IPv4-mapped form of 169.254.169.254: cloud metadata"),
        ("64:ff9b:1::1", "NAT64"),
        ("5f00::1", "outside IPv6 global unicast"),
    ],
)
def test_refusal_reasons(address: str, why: str | None) -> None:
    reason = refusal_reason(ipaddress.ip_address(address))
    if why is None:
        assert reason is None
    else:
        assert reason is not None and why in reason


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7F000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0x", "0.0.0.0"),
        ("10.0x10.1", "10.16.0.1"),
        ("３２３２２３５７７４", "192.168.0.254"),  # full-width digits, UTS 46 maps them
        ("169.254.43518", "169.254.169.254"),
    ],
)
def test_numeric_hosts_are_read_as_ipv4_and_checked(host: str, address: str) -> None:
    resolver = FakeResolver({})
    error = code_of(f"http://{host}/", resolver=resolver)
    assert error.code == "url.forbidden_address"
    assert error.detail["address"] == address
    assert resolver.calls == []  # never handed to getaddrinfo, which would read them its own way


def test_numeric_host_reaches_the_address_it_denotes(serve: ServerFactory) -> None:
    server = serve({"/img": serves(BODY)})
    assert fetch_url(f"http://0x7f.1:{server.port}/img", TRUSTING) == BODY
    assert server.requests == [("/img", f"127.0.0.1:{server.port}")]


# --- bad URLs ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(
    "url",
    [
        "",
        "file:///etc/passwd",
        "ftp://good.test/x",
        "gopher://good.test:70/_x",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "good.test/img",
        "//good.test/img",
        "http://user:pw@good.test/",
        "http://user@good.test/",
        "http://@good.test/",
        "http://good.test\\@evil.test/",
        "http:///img",
        "http://:80/",
        "http://good.test:0/",
        "http://good.test:65536/",
        "http://good.test:99999999/",
        "http://good.test:+80/",
        "http://good.test:8o/",
        "http://good.test:80:81/",
        "http://[::1/",
        "http://[fe80::1%25eth0]/",
        "http://[good.test]/",
        "http://good .test/",
        "http://good.test/a\tb",
        "http://good.test/a\r\nX-Injected: 1",
        "http://%31%32%37.0.0.1/",
        "http://a..b/",
        "http://1.2.3.09/",
        "http://1.2.3.4.5/",
        "http://256.0.0.1/",
        "http://0x100000000/",
        "http://" + "a" * 64 + ".test/",
        "http://good.test/" + "a" * 9000,
    ],
)
def test_invalid_urls(url: str) -> None:
    resolver = FakeResolver({"good.test": ["93.184.215.14"], "evil.test": ["93.184.215.14"]})
    error = code_of(url, resolver=resolver)
    assert error.code == "url.invalid"
    assert resolver.calls == []


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("port", ["1", "65535", ""])
def test_ports_in_range_are_accepted(port: str) -> None:
    # Reaching the address check shows the port passed.
    assert code_of(f"http://127.0.0.1:{port}/").code == "url.forbidden_address"


# --- allow-list -------------------------------------------------------------------------------


def test_allow_list(serve: ServerFactory) -> None:
    server = serve({"/img": serves(BODY)})
    names = [
        "good.test",
        "good.test.",
        "img.cdn.test",
        "a.b.cdn.test",
        "cdn.test",
        "evilgood.test",
        "x.test",
    ]
    resolver = FakeResolver({name: ["127.0.0.1"] for name in names})
    policy = FetchPolicy(
        allow_hosts=frozenset({"good.test", "*.cdn.test"}),
        trusted_addresses=frozenset({LOCALHOST}),
    )
    for host in ["good.test", "GOOD.TEST", "good.test.", "img.cdn.test", "a.b.cdn.test"]:
        assert fetch_url(f"http://{host}:{server.port}/img", policy, resolver=resolver) == BODY
    calls = len(resolver.calls)
    for host in ["cdn.test", "evilgood.test", "x.test", "127.0.0.1"]:
        error = code_of(f"http://{host}:{server.port}/img", policy, resolver=resolver)
        assert error.code == "url.forbidden_host"
    assert len(resolver.calls) == calls  # refused before any DNS lookup
    assert len(server.requests) == 5


def test_redirect_off_the_allow_list_is_refused(serve: ServerFactory) -> None:
    server = serve({"/": redirects("http://x.test/img"), "/img": serves(BODY)})
    resolver = FakeResolver({"good.test": ["127.0.0.1"], "x.test": ["127.0.0.1"]})
    policy = FetchPolicy(
        allow_hosts=frozenset({"good.test"}), trusted_addresses=frozenset({LOCALHOST})
    )
    error = code_of(f"http://good.test:{server.port}/", policy, resolver=resolver)
    assert error.code == "url.forbidden_host"
    assert error.detail["host"] == "x.test"
    assert [path for path, _ in server.requests] == ["/"]
    assert resolver.calls == ["good.test"]


# --- redirects --------------------------------------------------------------------------------


@pytest.fixture
def second_address_server(serve: ServerFactory) -> LocalServer:
    return serve({"/": serves(b"internal secret"), "/img": serves(b"internal secret")}, "127.0.0.2")


@pytest.mark.parametrize("by_name", [False, True])
def test_redirect_to_a_private_address_is_refused_before_connecting(
    serve: ServerFactory, second_address_server: LocalServer, by_name: bool
) -> None:
    inner = second_address_server
    target = f"http://{'evil.test' if by_name else '127.0.0.2'}:{inner.port}/"
    outer = serve({"/": redirects(target)})
    resolver = FakeResolver({"good.test": ["127.0.0.1"], "evil.test": ["127.0.0.2"]})
    error = code_of(f"http://good.test:{outer.port}/", TRUSTING, resolver=resolver)
    assert error.code == "url.forbidden_address"
    assert error.detail["address"] == "127.0.0.2"
    assert len(outer.requests) == 1
    assert inner.requests == []


def chain(port: int) -> dict[str, Route]:
    """/hop/N redirects towards /hop/0 (which serves BODY), each step a different Location form."""
    return {
        "/hop/4": redirects(f"//good.test:{port}/hop/3", 301),  # scheme-relative
        "/hop/3": redirects(f"http://good.test:{port}/hop/2", 308),  # absolute
        "/hop/2": redirects("/hop/1", 307),  # absolute path
        "/hop/1": redirects("0?done=1", 303),  # relative path, with a query
        "/hop/0": serves(BODY),
    }


def test_three_redirects_are_followed_each_resolved_once(serve: ServerFactory) -> None:
    server = serve({})
    server.routes.update(chain(server.port))
    resolver = FakeResolver({"good.test": ["127.0.0.1"]})
    assert fetch_url(f"http://good.test:{server.port}/hop/3", TRUSTING, resolver=resolver) == BODY
    assert [path for path, _ in server.requests] == ["/hop/3", "/hop/2", "/hop/1", "/hop/0?done=1"]
    assert resolver.calls == ["good.test"] * 4


def test_a_fourth_redirect_is_refused_unfollowed(serve: ServerFactory) -> None:
    server = serve({})
    server.routes.update(chain(server.port))
    resolver = FakeResolver({"good.test": ["127.0.0.1"]})
    error = code_of(f"http://good.test:{server.port}/hop/4", TRUSTING, resolver=resolver)
    assert error.code == "url.too_many_redirects"
    assert [path for path, _ in server.requests] == ["/hop/4", "/hop/3", "/hop/2", "/hop/1"]


def test_max_redirects_zero(serve: ServerFactory) -> None:
    server = serve({"/": redirects("/img"), "/img": serves(BODY)})
    policy = FetchPolicy(max_redirects=0, trusted_addresses=frozenset({LOCALHOST}))
    assert code_of(f"http://127.0.0.1:{server.port}/", policy).code == "url.too_many_redirects"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_statuses(serve: ServerFactory, status: int) -> None:
    server = serve({"/": redirects("img", status), "/img": serves(BODY)})
    assert fetch_url(f"http://127.0.0.1:{server.port}/", TRUSTING) == BODY


@pytest.mark.parametrize(
    ("location", "code"),
    [
        ("file:///etc/passwd", "url.invalid"),
        ("gopher://good.test/", "url.invalid"),
        ("http://user@good.test/img", "url.invalid"),
        ("http://169.254.169.254/latest/meta-data/", "url.forbidden_address"),
        ("http://[::ffff:a9fe:a9fe]/", "url.forbidden_address"),
        ("http://0x7f000002/", "url.forbidden_address"),
        ("//gone.test/", "url.unresolvable"),
    ],
)
def test_redirect_targets_are_checked_like_urls(
    serve: ServerFactory, monkeypatch: pytest.MonkeyPatch, location: str, code: str
) -> None:
    server = serve({"/": redirects(location)})
    real_connect = socket.create_connection

    def loopback_only(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        assert address == ("127.0.0.1", server.port), f"tried to connect to {address}"
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", loopback_only)
    error = code_of(f"http://127.0.0.1:{server.port}/", TRUSTING, resolver=FakeResolver({}))
    assert error.code == code
    assert len(server.requests) == 1


# --- DNS rebinding ----------------------------------------------------------------------------


def two_servers_one_port(serve: ServerFactory) -> tuple[LocalServer, LocalServer]:
    for _ in range(5):
        first = serve({"/": redirects("/again"), "/img": serves(b"checked")})
        with contextlib.suppress(OSError):
            second = LocalServer(
                {"/": serves(b"rebound"), "/again": serves(b"rebound"), "/img": serves(b"rebound")},
                "127.0.0.2",
                first.port,
                first.stop,
            )
            return first, second
    pytest.skip("cannot bind 127.0.0.2 on the port of a 127.0.0.1 server here")


def test_a_changing_dns_answer_cannot_move_the_connection(
    serve: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked, rebound = two_servers_one_port(serve)
    try:
        resolver = FakeResolver({"rebind.test": lambda n: ["127.0.0.1" if n == 1 else "127.0.0.2"]})
        looked_up: list[object] = []
        real_getaddrinfo = socket.getaddrinfo

        def recording_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            looked_up.append(host)
            return real_getaddrinfo(host, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", recording_getaddrinfo)
        url = f"http://rebind.test:{checked.port}/img"
        assert fetch_url(url, TRUSTING, resolver=resolver) == b"checked"
        assert resolver.calls == ["rebind.test"]
        assert "rebind.test" not in looked_up  # nothing below us resolved the name again
        assert rebound.requests == []

        # A redirect is a new hop: it is resolved again, and the new answer is checked again.
        resolver = FakeResolver({"rebind.test": lambda n: ["127.0.0.1" if n == 1 else "127.0.0.2"]})
        error = code_of(f"http://rebind.test:{checked.port}/", TRUSTING, resolver=resolver)
        assert error.code == "url.forbidden_address"
        assert error.detail["address"] == "127.0.0.2"
        assert resolver.calls == ["rebind.test"] * 2
        assert [path for path, _ in checked.requests] == ["/img", "/"]
        assert rebound.requests == []
    finally:
        rebound.close()


# --- limits -----------------------------------------------------------------------------------


def test_declared_content_length_over_the_limit(serve: ServerFactory) -> None:
    def huge(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(10**12))
        h.end_headers()
        h.wfile.write(b"x" * 1000)

    server = serve({"/": huge})
    policy = FetchPolicy(max_bytes=10_000, trusted_addresses=frozenset({LOCALHOST}))
    error = code_of(f"http://127.0.0.1:{server.port}/", policy)
    assert error.code == "url.too_large"
    assert error.detail["content_length"] == 10**12


def test_streamed_body_over_the_limit_is_cut_off(serve: ServerFactory) -> None:
    chunk = b"z" * 65536
    total = 256 * 1024 * 1024  # far more than loopback socket buffers can absorb
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def endless(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        sent = 0
        try:
            while sent < total and not done.is_set():
                h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            h.wfile.write(b"0\r\n\r\n")
            outcome["finished"] = True
        except OSError:
            outcome["finished"] = False
        outcome["sent"] = sent
        done.set()

    server = serve({"/": endless})
    policy = FetchPolicy(max_bytes=100_000, trusted_addresses=frozenset({LOCALHOST}))
    started = time.monotonic()
    error = code_of(f"http://127.0.0.1:{server.port}/", policy)
    assert error.code == "url.too_large"
    assert time.monotonic() - started < 2
    assert done.wait(5)
    assert outcome["finished"] is False
    assert outcome["sent"] < total // 4


# --- time budget ------------------------------------------------------------------------------


def slow_routes(stop: threading.Event) -> dict[str, Route]:
    def sleepy(h: BaseHTTPRequestHandler) -> None:
        stop.wait(2)
        with contextlib.suppress(OSError):
            respond(h, 200, BODY)

    def drip_headers(h: BaseHTTPRequestHandler, interval: float) -> None:
        # Each byte arrives inside any per-read timeout; only a total deadline stops this.
        with contextlib.suppress(OSError):
            h.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for _ in range(int(3 / interval)):
                if stop.wait(interval):
                    return
                h.wfile.write(b"X")

    def drip_body(h: BaseHTTPRequestHandler) -> None:
        with contextlib.suppress(OSError):
            h.send_response(200)
            h.send_header("Content-Length", "60")
            h.end_headers()
            for _ in range(60):
                if stop.wait(0.05):
                    return
                h.wfile.write(b"x")

    def nap_then_redirect(h: BaseHTTPRequestHandler) -> None:
        stop.wait(0.2)
        with contextlib.suppress(OSError):
            respond(h, 302, headers={"Location": "/nap"})

    return {
        "/sleepy": sleepy,
        "/drip-headers": lambda h: drip_headers(h, 0.05),
        # A read that starts just before the deadline must still end at it, not a timeout later.
        "/drip-headers-slowly": lambda h: drip_headers(h, 0.45),
        "/drip-body": drip_body,
        "/nap": nap_then_redirect,
    }


@pytest.mark.parametrize(
    "path", ["/sleepy", "/drip-headers", "/drip-headers-slowly", "/drip-body", "/nap"]
)
def test_time_budget_covers_the_whole_fetch(serve: ServerFactory, path: str) -> None:
    server = serve({})
    server.routes.update(slow_routes(server.stop))
    policy = FetchPolicy(timeout_s=0.5, max_redirects=10, trusted_addresses=frozenset({LOCALHOST}))
    started = time.monotonic()
    error = code_of(f"http://127.0.0.1:{server.port}{path}", policy)
    elapsed = time.monotonic() - started
    assert error.code == "url.timeout"
    assert 0.45 < elapsed < 0.85


def test_slow_dns_counts_against_the_budget() -> None:
    release = threading.Event()

    def slow_resolver(host: str, port: int) -> list[str]:
        release.wait(2)
        return ["127.0.0.1"]

    started = time.monotonic()
    try:
        error = code_of("http://slow.test/", FetchPolicy(timeout_s=0.3), resolver=slow_resolver)
    finally:
        release.set()
    assert error.code == "url.timeout"
    assert time.monotonic() - started < 1


# --- other failures ---------------------------------------------------------------------------


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(
    "resolver",
    [FakeResolver({}), FakeResolver({"gone.test": []}), FakeResolver({"gone.test": ["nope"]})],
)
def test_unresolvable(resolver: FakeResolver) -> None:
    error = code_of("http://gone.test/", resolver=resolver)
    assert error.code == "url.unresolvable"
    assert error.detail["host"] == "gone.test"


@pytest.mark.usefixtures("no_network")
def test_default_resolver_refuses_localhost() -> None:
    # localhost comes from /etc/hosts through the real getaddrinfo; nothing leaves the machine.
    assert code_of("http://localhost/").code == "url.forbidden_address"


@pytest.mark.parametrize(
    ("route", "code", "status"),
    [
        (lambda h: respond(h, 404, b"missing"), "url.http_error", 404),
        (lambda h: respond(h, 500), "url.http_error", 500),
        (lambda h: respond(h, 304), "url.http_error", 304),
        (lambda h: respond(h, 302), "url.fetch_failed", 302),  # redirect without Location
        (
            lambda h: respond(h, 200, b"\x1f\x8b", {"Content-Encoding": "gzip"}),
            "url.fetch_failed",
            0,
        ),
        (lambda h: h.wfile.write(b"NOT HTTP\r\n\r\n"), "url.fetch_failed", 0),
    ],
)
def test_http_failures(serve: ServerFactory, route: Route, code: str, status: int) -> None:
    server = serve({"/": route})
    error = code_of(f"http://127.0.0.1:{server.port}/", TRUSTING)
    assert error.code == code
    if status:
        assert error.detail["status"] == status


def test_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert code_of(f"http://127.0.0.1:{port}/", TRUSTING).code == "url.fetch_failed"


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        FetchPolicy(max_bytes=0)
    with pytest.raises(ValueError):
        FetchPolicy(allow_hosts=frozenset({"*"}))
    with pytest.raises(ValueError):
        FetchPolicy(allow_hosts=frozenset({"a.*.test"}))
    policy = FetchPolicy(allow_hosts=frozenset({"Good.Test.", "*.Bücher.de", "[2001:0DB8::1]"}))
    assert policy.allow_hosts == {"good.test", "*.xn--bcher-kva.de", "2001:db8::1"}


# --- TLS: SNI and certificate checks use the name, the connection uses the address ------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *(
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ),
            *("-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2"),
            *("-subj", "/CN=good.test", "-addext", "subjectAltName=DNS:good.test"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_server(
    serve: ServerFactory, certificate: tuple[Path, Path]
) -> tuple[LocalServer, list[str]]:
    server = serve({"/img": serves(BODY)})
    names: list[str] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    context.sni_callback = lambda _sock, name, _ctx: names.append(name or "")
    # Handshakes happen in the handler threads, so a refused certificate cannot stall accept().
    server.httpd.socket = context.wrap_socket(
        server.httpd.socket, server_side=True, do_handshake_on_connect=False
    )
    return server, names


def test_https_sends_the_name_as_sni_and_host(
    tls_server: tuple[LocalServer, list[str]],
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, names = tls_server
    trusting_test_ca = ssl.create_default_context(cafile=str(certificate[0]))
    monkeypatch.setattr(fetch, "_ssl_context", lambda: trusting_test_ca)
    resolver = FakeResolver({"good.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    url = f"https://good.test:{server.port}/img"
    assert fetch_url(url, TRUSTING, resolver=resolver) == BODY
    assert names == ["good.test"]
    assert server.requests == [("/img", f"good.test:{server.port}")]

    # Same address, same certificate, another name: verification is against the name.
    error = code_of(f"https://other.test:{server.port}/img", TRUSTING, resolver=resolver)
    assert error.code == "url.fetch_failed"
    assert names == ["good.test", "other.test"]
    assert len(server.requests) == 1


def test_https_verifies_certificates_by_default(tls_server: tuple[LocalServer, list[str]]) -> None:
    server, names = tls_server
    resolver = FakeResolver({"good.test": ["127.0.0.1"]})
    error = code_of(f"https://good.test:{server.port}/img", TRUSTING, resolver=resolver)
    assert error.code == "url.fetch_failed"
    assert "certificate" in error.detail["reason"].lower()
    assert names == ["good.test"]
    assert server.requests == []
