"""Fetch the bytes behind a user-supplied URL without letting the URL reach into our network.

"Hash by URL" means the server makes a request that the internet chose, which is the textbook
server-side request forgery (SSRF) hole: a URL, or a redirect, or a DNS answer that points at
loopback, the LAN or a cloud metadata endpoint turns the fetcher into a proxy into places only
the server can reach. :func:`fetch_url` closes it by parsing the URL strictly, resolving the host
name itself, refusing unless *every* address it resolves to is public, and then connecting to
exactly the address it checked (the name travels only in the ``Host`` header and in TLS SNI), so
a second DNS answer cannot rebind the connection. Redirects are followed by hand, each hop checked
from scratch, and one wall-clock deadline bounds DNS, connects, redirects and the body together,
while the body is streamed and cut off as soon as it passes the size limit.
"""

from __future__ import annotations

import io
import ipaddress
import re
import socket
import ssl
import string
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx
import idna

from dignity import __version__
from dignity.errors import UrlError, UrlFailed, UrlRefused, UrlTimeout

__all__ = [
    "HEADERS",
    "FetchPolicy",
    "Resolver",
    "UrlError",
    "UrlFailed",
    "UrlRefused",
    "UrlTimeout",
    "fetch_url",
    "read_body",
    "refusal_reason",
    "remaining",
]

Address = IPv4Address | IPv6Address
Resolver = Callable[[str, int], list[str]]


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for one :func:`fetch_url` call; the defaults are safe to expose to the internet."""

    max_bytes: int = 50 * 1024 * 1024
    #: Wall-clock budget for the whole fetch: DNS, connects, every redirect and the body.
    timeout_s: float = 10.0
    max_redirects: int = 3
    #: If non-empty, only these host names may be fetched (redirect targets included): exact
    #: names, or ``*.example.com`` for any name below example.com (not example.com itself).
    allow_hosts: frozenset[str] = frozenset()
    #: TEST OVERRIDE ONLY: addresses or networks treated as public although they are not, so
    #: tests can fetch from servers on 127.0.0.1. Never fill this from settings in production.
    trusted_addresses: frozenset[IPv4Network | IPv6Network | IPv4Address | IPv6Address] = field(
        default=frozenset()
    )

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.timeout_s <= 0 or self.max_redirects < 0:
            raise ValueError("FetchPolicy needs max_bytes > 0, timeout_s > 0, max_redirects >= 0")
        # Normalised once so that the per-hop check is a plain comparison: a trailing dot names
        # the same host, IPv6 entries are compared unbracketed, and an upper-case entry would
        # otherwise silently never match.
        object.__setattr__(
            self, "allow_hosts", frozenset(_allow_entry(h) for h in self.allow_hosts)
        )


def _allow_entry(entry: str) -> str:
    """An allow-list entry in the form hosts take after parsing: lower-case A-labels."""
    host = entry.strip().strip("[]").lower().rstrip(".")
    wildcard = host.startswith("*.")
    name = host[2:] if wildcard else host
    if not name or "*" in name:
        raise ValueError(f"bad allow_hosts entry {entry!r}")
    if not wildcard:
        with suppress(ValueError):
            return str(ipaddress.ip_address(name))  # the form _parse_host gives literals
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise ValueError(f"bad allow_hosts entry {entry!r}: {exc}") from None
    return f"*.{name}" if wildcard else name


# --- which addresses are public -------------------------------------------------------------

# Named first so that the refusal says *why*; every one of them also lies inside a broader
# refused range below, so this list is for clarity, not for safety.
_METADATA_ADDRESSES: dict[Address, str] = {
    ipaddress.ip_address("169.254.169.254"): "cloud metadata endpoint (AWS, GCP, Azure, ...)",
    ipaddress.ip_address("fd00:ec2::254"): "cloud metadata endpoint (AWS IPv6)",
    ipaddress.ip_address("100.100.100.200"): "cloud metadata endpoint (Alibaba)",
    ipaddress.ip_address("192.0.0.192"): "cloud metadata endpoint (Oracle)",
}

# Spelled out instead of trusting ``is_global`` alone: what ``ipaddress`` calls global changed
# between patch releases (3.11.7 says 224.0.0.1, 192.0.0.192 and 2002:7f00:1:: are global), and
# a fetcher's safety must not depend on the interpreter's patch level. Taken from the IANA
# special-purpose registries; whole blocks are refused where IANA carves out a few anycast
# exceptions (192.0.0.9, 2001:1::1, ...) because no image is ever served from those.
_REFUSED_V4: tuple[tuple[IPv4Network, str], ...] = tuple(
    (IPv4Network(net), why)
    for net, why in (
        ("0.0.0.0/8", "unspecified / 'this network'"),
        ("10.0.0.0/8", "private (RFC 1918)"),
        ("100.64.0.0/10", "shared address space (CGNAT, RFC 6598)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private (RFC 1918)"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation (TEST-NET-1)"),
        ("192.88.99.0/24", "6to4 relay anycast (deprecated)"),
        ("192.168.0.0/16", "private (RFC 1918)"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation (TEST-NET-2)"),
        ("203.0.113.0/24", "documentation (TEST-NET-3)"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
    )
)
_REFUSED_V6: tuple[tuple[IPv6Network, str], ...] = tuple(
    (IPv6Network(net), why)
    for net, why in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/23", "IETF protocol assignments"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    )
)
# Only 2000::/3 is allocated as global unicast; everything else in IPv6 is reserved or special,
# so an allow-list is safer there than any list of exceptions.
_GLOBAL_UNICAST_V6 = IPv6Network("2000::/3")
# Well-known NAT64 prefix: DNS64 networks hand these out for IPv4-only sites, and the gateway
# connects to the embedded IPv4 address, so that address decides.
_NAT64_V6 = IPv6Network("64:ff9b::/96")
_V4_COMPATIBLE_V6 = IPv6Network("::/96")


def _property_refusal(address: Address) -> str | None:
    # A second line of defence: whatever a newer Python learns to call non-global is refused too.
    if (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, IPv6Address) and address.is_site_local)
    ):
        return "not globally reachable"
    return None


def _v4_refusal(address: IPv4Address) -> str | None:
    if address in _METADATA_ADDRESSES:
        return _METADATA_ADDRESSES[address]
    for network, why in _REFUSED_V4:
        if address in network:
            return why
    return _property_refusal(address)


def _embedded_v4(address: IPv6Address) -> tuple[IPv4Address, str] | None:
    """The IPv4 address an IPv6 transition form carries, with the form's name."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, "IPv4-mapped"
    if address in _NAT64_V6:
        return IPv4Address(int(address) & 0xFFFFFFFF), "NAT64"
    if address.sixtofour is not None:
        return address.sixtofour, "6to4"
    if address.teredo is not None:
        # The client address is the one a Teredo relay would deliver to (already de-obfuscated).
        return address.teredo[1], "Teredo"
    if address in _V4_COMPATIBLE_V6 and int(address) > 1:
        return IPv4Address(int(address)), "IPv4-compatible"
    return None


def refusal_reason(address: Address) -> str | None:
    """Why ``address`` must not be fetched from, or None when it is a public unicast address."""
    if address in _METADATA_ADDRESSES:
        return _METADATA_ADDRESSES[address]
    if isinstance(address, IPv4Address):
        return _v4_refusal(address)
    embedded = _embedded_v4(address)
    if embedded is not None:
        v4, form = embedded
        why = _v4_refusal(v4)
        if why is not None:
            return f"{form} form of {v4}: {why}"
        if form in ("IPv4-mapped", "NAT64"):
            # These reach exactly the embedded address, which we just found public.
            return None
        # 6to4, Teredo and IPv4-compatible addresses are deprecated and go through relays we
        # neither control nor can check; no legitimate image host needs them.
        return f"{form} transition address"
    for network, why in _REFUSED_V6:
        if address in network:
            return why
    if address not in _GLOBAL_UNICAST_V6:
        return "outside IPv6 global unicast (2000::/3)"
    return _property_refusal(address)


def _is_trusted(address: Address, policy: FetchPolicy) -> bool:
    return any(address in ipaddress.ip_network(t) for t in policy.trusted_addresses)


# --- URL parsing ------------------------------------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_URL_LENGTH = 8192
# Lenient about underscores and hyphen placement (real hosts have both); strict about anything
# else, so that percent signs, backslashes or spaces never reach DNS or the Host header.
_HOST_NAME = re.compile(r"(?=.{1,253}\Z)[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*\.?\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")


@dataclass(frozen=True)
class _Target:
    """One hop's URL, parsed and canonical: what we resolve, connect to and call the host."""

    scheme: str
    host: str  # ASCII: IDNA A-labels, canonical IPv4, or IPv6 without brackets
    port: int
    path: str  # path plus "?query", never empty
    literal: Address | None  # set when the host is an IP address

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if isinstance(self.literal, IPv6Address) else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.authority}{self.path}"


def _invalid(message: str, url: str) -> UrlError:
    return UrlRefused(message, code="url.invalid", url=url[:200])


def _ipv4_number(label: str, url: str) -> int:
    # WHATWG URL "IPv4 number parser": 0x.. is hex, a leading 0 is octal, else decimal.
    if label[:2] in ("0x", "0X"):
        digits, base, allowed = label[2:], 16, string.hexdigits
    elif len(label) > 1 and label[0] == "0":
        digits, base, allowed = label[1:], 8, string.octdigits
    else:
        digits, base, allowed = label, 10, string.digits
    if not label or any(c not in allowed for c in digits):
        raise _invalid(f"host looks like an IPv4 address but {label!r} is not a number", url)
    return int(digits, base) if digits else 0


def _numeric_ipv4(host: str, url: str) -> IPv4Address | None:
    """Interpret hosts like 2130706433, 0x7f.1 or 0177.0.0.1 as browsers and inet_aton do.

    Left as names, they would be handed to getaddrinfo, which reads them as IPv4 anyway: better
    to read them ourselves, identically, and subject the result to the address check.
    """
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    last = labels[-1]
    ends_in_number = (last.isascii() and last.isdigit()) or (
        last[:2] in ("0x", "0X") and all(c in string.hexdigits for c in last[2:])
    )
    if not ends_in_number:
        return None
    if len(labels) > 4:
        raise _invalid("host looks like an IPv4 address but has more than four parts", url)
    numbers = [_ipv4_number(label, url) for label in labels]
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        raise _invalid("IPv4 address out of range", url)
    value = numbers[-1]
    for i, n in enumerate(numbers[:-1]):
        value += n << (8 * (3 - i))
    return IPv4Address(value)


def _parse_host(raw: str, url: str) -> tuple[str, Address | None]:
    if raw.startswith("["):
        if not raw.endswith("]") or "%" in raw:
            # Zone ids only make sense for link-local addresses, which are refused anyway.
            raise _invalid("bad IPv6 literal", url)
        try:
            v6 = IPv6Address(raw[1:-1])
        except ValueError:
            raise _invalid("bad IPv6 literal", url) from None
        return str(v6), v6
    if not raw.isascii():
        try:
            # UTS 46 as browsers do, so that e.g. full-width digits and dots become ASCII
            # before the numeric-host check below sees them.
            raw = idna.encode(raw, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            raise _invalid("host name is not valid IDNA", url) from None
    host = raw.lower()
    if not _HOST_NAME.match(host):
        raise _invalid("host name has characters a host name cannot have", url)
    v4 = _numeric_ipv4(host, url)
    if v4 is not None:
        return str(v4), v4
    return host, None


def _parse_url(url: str) -> _Target:
    url = url.strip()
    if not url or len(url) > _MAX_URL_LENGTH:
        raise _invalid("URL is empty or too long", url)
    # urlsplit silently deletes tabs and newlines and other parsers split at spaces; refusing
    # them means every parser agrees on what the URL says.
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise _invalid("URL contains whitespace or control characters", url)
    try:
        parts = urlsplit(url)
    except ValueError:
        raise _invalid("URL cannot be parsed", url) from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise _invalid(f"only http and https URLs can be fetched, not {scheme or 'none'!r}", url)
    netloc = parts.netloc
    # Parsers disagree on '\' and '@' in the authority (http://a\@b/ is host a to a browser,
    # host b to others); refusing both leaves nothing to disagree on. Credentials in a URL
    # would also be forwarded to wherever redirects lead.
    if "@" in netloc or "\\" in netloc:
        raise _invalid("URLs with user information or backslashes cannot be fetched", url)
    if netloc.startswith("["):
        end = netloc.find("]")
        raw_host, rest = netloc[: end + 1], netloc[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            raise _invalid("bad IPv6 literal", url)
        raw_port = rest[1:] if rest else None
    else:
        raw_host, colon, raw_port_or_empty = netloc.partition(":")
        raw_port = raw_port_or_empty if colon else None
    if not raw_host:
        raise _invalid("URL has no host", url)
    port = _DEFAULT_PORTS[scheme]
    if raw_port:
        if not _PORT.match(raw_port) or not 1 <= int(raw_port) <= 65535:
            raise _invalid(f"bad port {raw_port[:10]!r}", url)
        port = int(raw_port)
    host, literal = _parse_host(raw_host, url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(scheme=scheme, host=host, port=port, path=path, literal=literal)


def _host_allowed(target: _Target, allow: frozenset[str]) -> bool:
    if not allow:
        return True
    host = target.host.rstrip(".")
    if host in allow:
        return True
    # Suffix patterns are for names: "*.0.1" must not admit 127.0.0.1.
    return target.literal is None and any(
        p.startswith("*.") and host.endswith(p[1:]) for p in allow
    )


# --- resolving and checking -------------------------------------------------------------------


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]


def remaining(deadline: float) -> float:
    """Seconds left until ``deadline`` (a ``time.monotonic()`` value); ``url.timeout`` once it
    has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise UrlTimeout("the fetch took longer than its time budget", code="url.timeout")
    return left


def _resolve(resolver: Resolver, target: _Target, deadline: float) -> list[str]:
    # getaddrinfo has no timeout of its own (resolv.conf retries can take tens of seconds), so
    # it runs on a daemon thread that we stop waiting for at the deadline; an abandoned lookup
    # finishes on its own and its answer is dropped.
    outcome: list[list[str] | Exception] = []

    def run() -> None:
        try:
            outcome.append(resolver(target.host, target.port))
        except Exception as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, name="dignity-fetch-resolve", daemon=True)
    worker.start()
    worker.join(remaining(deadline))
    if not outcome:
        raise UrlTimeout(f"resolving {target.host} took too long", code="url.timeout")
    answer = outcome[0]
    if isinstance(answer, OSError | UnicodeError):
        raise UrlRefused(
            f"cannot resolve {target.host}", code="url.unresolvable", host=target.host
        ) from answer
    if isinstance(answer, Exception):
        raise answer
    return answer


def _checked_addresses(
    target: _Target, policy: FetchPolicy, resolver: Resolver, deadline: float
) -> list[Address]:
    """Every address the host has, all of them checked; the connection uses only these."""
    if target.literal is not None:
        answers: list[str] = [str(target.literal)]
    else:
        answers = _resolve(resolver, target, deadline)
    addresses: list[Address] = []
    for answer in answers:
        try:
            address = ipaddress.ip_address(answer)
        except ValueError:
            raise UrlRefused(
                f"resolver gave {answer!r} for {target.host}, which is not an address",
                code="url.unresolvable",
                host=target.host,
            ) from None
        # Refuse if *any* address is bad, not just the first: otherwise a name with one public
        # and one private address gets through whenever the client happens to pick the private.
        if not _is_trusted(address, policy):
            why = refusal_reason(address)
            if why is not None:
                raise UrlRefused(
                    f"{target.host} resolves to {address}, which is not public: {why}",
                    code="url.forbidden_address",
                    address=str(address),
                    host=target.host,
                    reason=why,
                )
        # Connect to the plain IPv4 address rather than rely on the dual-stack socket mapping.
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UrlRefused(
            f"{target.host} has no addresses", code="url.unresolvable", host=target.host
        )
    return addresses


# --- transport: connect only to the checked address, never past the deadline -----------------


class _DeadlineStream(httpcore.NetworkStream):
    """Caps every socket operation at the time left, so dripping bytes cannot stretch a fetch.

    httpx's timeouts apply per read; a server sending one byte just inside each would keep
    the fetch alive forever without this.
    """

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def _cap(self, timeout: float | None, error: type[Exception]) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise error("the fetch took longer than its time budget")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._cap(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._cap(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname, self._cap(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _PinnedBackend(httpcore.NetworkBackend):
    def __init__(self, address: str, deadline: float) -> None:
        self._address = address
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        # The request URL already names the checked address; this makes it impossible for
        # anything in httpx or httpcore to connect elsewhere (or to resolve a name) instead.
        if host != self._address:
            raise httpcore.ConnectError(f"refusing to connect to unchecked {host!r}")
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ConnectTimeout("the fetch took longer than its time budget")
        stream = self._inner.connect_tcp(
            host,
            port,
            timeout=left if timeout is None else min(timeout, left),
            local_address=local_address,
            socket_options=socket_options,
        )
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are never fetched from")


@contextmanager
def _as_httpx_errors() -> Iterator[None]:
    # httpx's own transport does this mapping in private code; ours keeps the three
    # distinctions fetch_url needs.
    try:
        yield
    except httpcore.TimeoutException as exc:
        raise httpx.TimeoutException(str(exc)) from exc
    except httpcore.ConnectError as exc:
        raise httpx.ConnectError(str(exc)) from exc
    except (
        httpcore.NetworkError,
        httpcore.ProtocolError,
        httpcore.UnsupportedProtocol,
        httpcore.ProxyError,
    ) as exc:
        raise httpx.TransportError(str(exc)) from exc


class _BodyStream(httpx.SyncByteStream):
    def __init__(self, inner: Iterable[bytes]) -> None:
        self._inner = inner

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors():
            yield from self._inner

    def close(self) -> None:
        close: Callable[[], None] | None = getattr(self._inner, "close", None)
        if close is not None:
            close()


@cache
def _ssl_context() -> ssl.SSLContext:
    # httpx's defaults (certifi, hostname checking), built once: loading the CA bundle is slow.
    return httpx.create_ssl_context(verify=True, trust_env=False)


class _PinnedTransport(httpx.BaseTransport):
    """An httpx transport over httpcore whose network backend is pinned to one address.

    httpx.HTTPTransport cannot take a network backend, and a fresh transport per hop also
    means no connection (nor its TLS session, made for another SNI name) is ever reused.
    """

    def __init__(self, address: str, deadline: float) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=_ssl_context(),
            max_connections=1,
            max_keepalive_connections=0,
            network_backend=_PinnedBackend(address, deadline),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.SyncByteStream):
            raise TypeError("only synchronous request bodies are supported")
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            response = self._pool.handle_request(core_request)
        if not isinstance(response.stream, Iterable):
            raise TypeError("httpcore returned an asynchronous body to a synchronous pool")
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_BodyStream(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


# --- fetching ---------------------------------------------------------------------------------

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
HEADERS = {
    "User-Agent": f"dignity/{__version__} (hash-by-URL)",
    "Accept": "*/*",
    # Compressed transfer would let a small body inflate far past max_bytes before we could
    # count it; images are compressed already, so nothing is lost by asking for identity.
    "Accept-Encoding": "identity",
}


@dataclass(frozen=True)
class _Redirect:
    location: str


class _ConnectFailed(Exception):
    """Nothing was sent to this address, so the next checked one may be tried."""


def _exchange(
    target: _Target, address: Address, policy: FetchPolicy, deadline: float
) -> bytes | _Redirect:
    ip = f"[{address}]" if isinstance(address, IPv6Address) else str(address)
    try:
        request_url = httpx.URL(f"{target.scheme}://{ip}:{target.port}{target.path}")
    except httpx.InvalidURL:
        raise _invalid("URL path cannot be sent", target.url) from None
    port = request_url.port or _DEFAULT_PORTS[target.scheme]  # httpx drops default ports
    if request_url.raw_host.decode("ascii") != str(address) or port != target.port:
        raise _invalid("URL path changed the request's authority", target.url)
    # The name goes where the server and TLS need it, never to a resolver: Host for virtual
    # hosting, SNI for certificate selection, and certificate verification against the name.
    extensions = {"sni_hostname": target.host.rstrip(".")} if target.scheme == "https" else {}
    transport = _PinnedTransport(str(address), deadline)
    with httpx.Client(
        transport=transport,
        follow_redirects=False,
        trust_env=False,  # proxies from the environment would do their own DNS
        timeout=httpx.Timeout(remaining(deadline)),
    ) as client:
        try:
            with client.stream(
                "GET",
                request_url,
                headers={**HEADERS, "Host": target.authority},
                extensions=extensions,
            ) as response:
                return _response_outcome(response, target, policy, deadline)
        except httpx.ConnectError as exc:
            raise _ConnectFailed(str(exc)) from exc
        except httpx.TimeoutException as exc:
            raise UrlTimeout(
                "the fetch took longer than its time budget", code="url.timeout", url=target.url
            ) from exc
        except httpx.HTTPError as exc:
            raise UrlFailed(
                f"fetching {target.url} failed: {exc}",
                code="url.fetch_failed",
                url=target.url,
                reason=str(exc),
            ) from exc


def _response_outcome(
    response: httpx.Response, target: _Target, policy: FetchPolicy, deadline: float
) -> bytes | _Redirect:
    status = response.status_code
    if status in _REDIRECT_STATUSES:
        location = response.headers.get("location")
        if not location:
            raise UrlFailed(
                f"{target.url} redirected ({status}) without a Location",
                code="url.fetch_failed",
                url=target.url,
                status=status,
            )
        return _Redirect(location)
    if not 200 <= status < 300:
        # Other 3xx (300, 304, ...) carry no body worth hashing either, so they count as errors.
        raise UrlFailed(
            f"{target.url} answered HTTP {status}",
            code="url.http_error",
            url=target.url,
            status=status,
        )
    return read_body(response, url=target.url, max_bytes=policy.max_bytes, deadline=deadline)


def read_body(response: httpx.Response, *, url: str, max_bytes: int, deadline: float) -> bytes:
    """The body of a streamed ``response`` to a request sent with :data:`HEADERS`, cut off as
    soon as it passes ``max_bytes`` (``url.too_large``) or ``deadline`` (a ``time.monotonic()``
    value; ``url.timeout``) passes. A compressed body is refused: the cap counts what arrives."""
    sink = io.BytesIO()
    write_body(response, sink, url=url, max_bytes=max_bytes, deadline=deadline)
    return sink.getvalue()


# Bytes that tell a video container from an image (MPEG-TS needs 377).
HEAD_BYTES = 512


def write_body(
    response: httpx.Response,
    sink: BinaryIO,
    *,
    url: str,
    max_bytes: int,
    deadline: float,
    limit_of: Callable[[bytes], int] | None = None,
) -> None:
    """:func:`read_body`'s rules, the body written to ``sink`` as it arrives (a large video goes
    to a file, never into memory); ``limit_of(first bytes)`` sets ``max_bytes`` once the first
    :data:`HEAD_BYTES` are in (an image keeps the image limit, a video gets the video one)."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise UrlFailed(
            f"{url} sent a {encoding!r}-encoded body although asked for identity",
            code="url.fetch_failed",
            url=url,
            content_encoding=encoding,
        )
    declared_raw = response.headers.get("content-length")
    declared = int(declared_raw) if declared_raw is not None and declared_raw.isdigit() else None
    _check_declared(url, declared, max_bytes)
    received = 0
    head = b""
    for chunk in response.iter_raw():
        received += len(chunk)
        if limit_of is not None:
            head += chunk[: HEAD_BYTES - len(head)]
            if len(head) >= HEAD_BYTES or received >= (declared or HEAD_BYTES):
                max_bytes = limit_of(head)
                limit_of = None
                _check_declared(url, declared, max_bytes)
        if received > max_bytes:
            raise UrlRefused(
                f"{url} is more than the {max_bytes} bytes allowed",
                code="url.too_large",
                url=url,
                max_bytes=max_bytes,
            )
        remaining(deadline)
        sink.write(chunk)


def _check_declared(url: str, declared: int | None, max_bytes: int) -> None:
    if declared is not None and declared > max_bytes:
        raise UrlRefused(
            f"{url} is {declared} bytes, more than the {max_bytes} allowed",
            code="url.too_large",
            url=url,
            max_bytes=max_bytes,
            content_length=declared,
        )


def _fetch_hop(
    target: _Target, policy: FetchPolicy, resolver: Resolver, deadline: float
) -> bytes | _Redirect:
    if not _host_allowed(target, policy.allow_hosts):
        raise UrlRefused(
            f"{target.host} is not on the list of hosts that may be fetched",
            code="url.forbidden_host",
            host=target.host,
        )
    addresses = _checked_addresses(target, policy, resolver, deadline)
    failures: list[str] = []
    for address in addresses:
        try:
            return _exchange(target, address, policy, deadline)
        except _ConnectFailed as exc:
            failures.append(f"{address}: {exc}")
    raise UrlFailed(
        f"cannot connect to {target.host}",
        code="url.fetch_failed",
        url=target.url,
        reason="; ".join(failures),
    )


def fetch_url(url: str, policy: FetchPolicy, *, resolver: Resolver | None = None) -> bytes:
    """The body of ``url`` (an ``http``/``https`` URL on the public internet), within ``policy``.

    ``resolver(host, port)`` returns the host's addresses as strings (default: getaddrinfo);
    it is called once per hop and the connection goes to an address it returned. Raises
    :class:`UrlError` with one of the codes listed there.
    """
    deadline = time.monotonic() + policy.timeout_s
    resolve = resolver if resolver is not None else _system_resolver
    target = _parse_url(url)
    redirects = 0
    while True:
        outcome = _fetch_hop(target, policy, resolve, deadline)
        if isinstance(outcome, bytes):
            return outcome
        if redirects >= policy.max_redirects:
            raise UrlRefused(
                f"more than {policy.max_redirects} redirects",
                code="url.too_many_redirects",
                url=url[:200],
                max_redirects=policy.max_redirects,
            )
        redirects += 1
        # Relative to the URL we asked for, by name: the IP we connected to is an internal detail.
        target = _parse_url(urljoin(target.url, outcome.location))
