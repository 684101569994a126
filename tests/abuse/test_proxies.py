"""Proxy headers are trusted only from configured proxies, and per-address limits are kept in
the database: one count for every process, surviving a restart, still counted before the work
(issue 18, findings 3 and "per-address limits are per process and reset on restart")."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from dignity.api.portal import client_address
from dignity.cases.limits import AddressLimiter
from dignity.errors import RateLimited
from dignity.settings import Settings
from dignity.storage.db import Database, open_database


class _Headers:
    def __init__(self, values: dict[str, list[str]]) -> None:
        self.values = {k.lower(): v for k, v in values.items()}

    def getlist(self, name: str) -> list[str]:
        return self.values.get(name.lower(), [])


def _address(peer: str, forwarded: list[str], **settings: Any) -> str:
    request: Any = SimpleNamespace(
        client=SimpleNamespace(host=peer), headers=_Headers({"X-Forwarded-For": forwarded})
    )
    services: Any = SimpleNamespace(settings=Settings(**settings))
    return client_address(request, services)


def test_forwarded_headers_are_ignored_unless_the_peer_is_a_trusted_proxy() -> None:
    spoof = ["198.51.100.7"]
    assert _address("127.0.0.1", spoof) == "127.0.0.1"  # nothing configured
    header = {"portal_client_ip_header": "X-Forwarded-For"}
    assert _address("127.0.0.1", spoof, **header) == "127.0.0.1"  # no trusted proxy named
    trusted = header | {"trusted_proxies": "10.0.0.0/8, 127.0.0.1/32"}
    assert _address("192.0.2.9", spoof, **trusted) == "192.0.2.9"  # peer is not a proxy
    assert _address("127.0.0.1", spoof, **trusted) == "198.51.100.7"
    # A client rotating the left of the header keeps the address our proxy saw (the rightmost
    # hop that is not one of our proxies).
    for n in range(3):
        rotated = [f"203.0.113.{n}, 198.51.100.7, 10.1.2.3"]
        assert _address("127.0.0.1", rotated, **trusted) == "198.51.100.7"
    assert _address("127.0.0.1", ["10.1.2.3"], **trusted) == "127.0.0.1"  # only proxies


def test_bad_trusted_proxies_refuse_to_start() -> None:
    with pytest.raises(ValueError):
        Settings(trusted_proxies="10.0.0.0/33")


def test_concurrent_tries_from_two_processes_stay_within_the_limit(settings: Settings) -> None:
    """Two engines on one database stand for two server processes; 60 tries at once from one
    address reach exactly the limit, and a restart (a fresh limiter) still refuses."""
    url = settings.resolved_database_url
    dbs = [open_database(url), open_database(url)]
    limiters = [AddressLimiter(db, "test.pin", limit=20) for db in dbs]
    passed: list[int] = []
    refused: list[int] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        try:
            limiters[i % 2].take("198.51.100.1")
        except RateLimited:
            with lock:
                refused.append(i)
            return
        with lock:
            passed.append(i)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (len(passed), len(refused)) == (20, 40)
    for db in dbs:
        db.close()
    restarted = open_database(url)
    try:
        again = AddressLimiter(restarted, "test.pin", limit=20)
        with pytest.raises(RateLimited) as caught:
            again.check("198.51.100.1")
        assert caught.value.detail["retry_after"] > 0
        again.check("198.51.100.2")  # another address is not affected
        assert AddressLimiter(restarted, "other.scope", limit=20).take("198.51.100.1") > 0
    finally:
        restarted.close()


def test_a_refunded_try_does_not_count(db: Database) -> None:
    limiter = AddressLimiter(db, "test.refund", limit=2)
    for _ in range(5):
        limiter.refund("192.0.2.1", limiter.take("192.0.2.1"))
    limiter.take("192.0.2.1")
    limiter.take("192.0.2.1")
    with pytest.raises(RateLimited):
        limiter.take("192.0.2.1")
