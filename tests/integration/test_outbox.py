"""The webhook outbox end to end: events written with their change, signed deliveries to a real
HTTP receiver on 127.0.0.1, backoff, dead letters, redelivery, the admin API and CLI, and
at-least-once delivery across a server killed with SIGKILL mid-delivery.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import delete, func, select, update

from dignity.actions.delivery import (
    DeliveryConfig,
    DeliveryWorker,
    Outcome,
    backoff_s,
    claim,
    make_client,
    record,
    send,
)
from dignity.actions.models import OutboxDelivery, OutboxEvent
from dignity.actions.outbox import OutboxService, emit_event
from dignity.actions.signing import SignatureError, sign, verify
from dignity.actions.webhooks import WebhookService
from dignity.cli import cli
from dignity.errors import DignityError, NotFound
from dignity.hashing.signals import hash_bytes
from dignity.keys import KeyInfo
from dignity.matching.banks import BankService, NewEntry
from dignity.matching.engine import MatchEngine
from dignity.policy import decide
from dignity.samples import encode, landscape
from dignity.services.recorders import record_scan
from dignity.settings import Settings
from dignity.storage.db import Database, open_database
from dignity.storage.models import utcnow
from tests.integration.server import LiveServer

SECRET = "s3cret-for-tests-0123456789"
PDQ = "f" * 64


def pdq() -> str:
    return secrets.token_hex(32)


class Receiver:
    """A webhook receiver as a platform would write one: verify the signature and timestamp,
    deduplicate on the event id, answer 2xx once stored.

    ``status`` is what it answers, ``delay`` how long it takes. ``crash()`` marks the sender as
    gone: requests that were in flight then are not counted (their sender never saw the 2xx),
    so only a real retry can get those events counted."""

    def __init__(self, secret: str = SECRET, *, delay: float = 0.0, status: int = 200) -> None:
        self.secret = secret
        self.delay = delay
        self.status = status
        self.lock = threading.Lock()
        self.received: list[dict[str, Any]] = []  # every verified request, duplicates too
        self.seen: set[str] = set()  # dedupe store
        self.rejected: list[str] = []
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.started = 0
        self.epoch = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        rx = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with rx.lock:
                    rx.started += 1
                    epoch = rx.epoch
                    rx.requests.append((dict(self.headers.items()), body))
                try:
                    verify(rx.secret, self.headers, body)
                except SignatureError as exc:
                    with rx.lock:
                        rx.rejected.append(exc.code)
                    self._answer(401, {"error": exc.code})
                    return
                time.sleep(rx.delay)
                event = json.loads(body)
                with rx.lock:
                    if epoch != rx.epoch:
                        return  # the sender died meanwhile: it never gets an answer
                    duplicate = event["id"] in rx.seen
                    if rx.status < 300:
                        rx.seen.add(event["id"])
                        rx.received.append({**event, "headers": dict(self.headers.items())})
                self._answer(rx.status, {"duplicate": duplicate})

            def _answer(self, status: int, obj: dict[str, Any]) -> None:
                data = json.dumps(obj).encode()
                try:
                    self.send_response(status)
                    if 300 <= status < 400:
                        self.send_header("Location", rx.url + "/elsewhere")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

            def log_message(self, *_: Any) -> None:
                pass

        return Handler

    def crash(self) -> None:
        with self.lock:
            self.epoch += 1

    def ids(self) -> set[str]:
        with self.lock:
            return set(self.seen)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver()
    yield rx
    rx.close()


def fast(**kw: Any) -> DeliveryConfig:
    base: dict[str, Any] = {"timeout_s": 5.0, "lease_s": 10.0, "poll_s": 0.05}
    return DeliveryConfig(**{**base, **kw})


def deliveries(db: Database) -> list[OutboxDelivery]:
    with db.session() as s:
        return list(s.scalars(select(OutboxDelivery).order_by(OutboxDelivery.id)))


# -- writing events -------------------------------------------------------------------------
def test_bank_changes_write_events_for_subscribed_webhooks_only(db: Database) -> None:
    hooks = WebhookService(db)
    every, _ = hooks.create("http://127.0.0.1:9/a", secret=SECRET)
    retire, _ = hooks.create("http://127.0.0.1:9/b", secret=SECRET, events="entry.withdrawn")
    off, _ = hooks.create("http://127.0.0.1:9/c", secret=SECRET, enabled=False)
    banks = BankService(db)
    banks.create_bank("b", purpose="review")
    added = banks.add_entries("b", [NewEntry("pdq", PDQ), NewEntry("md5", "a" * 32)])
    banks.add_entries("b", [NewEntry("pdq", PDQ)])  # already active: no event
    banks.withdraw("b", [added.added[0]])
    banks.delete_entries("b", [added.added[1]])
    banks.delete_bank("b")

    events = OutboxService(db).list_events()
    assert [e.type for e in reversed(events)] == [
        "entry.added",
        "entry.withdrawn",
        "entry.deleted",
        "bank.deleted",
    ]
    by_type = {e.type: e for e in events}
    first = by_type["entry.added"].payload
    assert first["bank"] == "b" and first["purpose"] == "review"
    assert [(x["signal"], x["value"]) for x in first["entries"]] == [
        ("pdq", PDQ),
        ("md5", "a" * 32),
    ]
    assert by_type["entry.withdrawn"].payload["entries"][0]["entry_id"] == added.added[0]
    # Read before the delete, in the same transaction: the hash is still in the event.
    assert by_type["entry.deleted"].payload["entries"][0]["value"] == "a" * 32
    assert by_type["bank.deleted"].payload["entries_deleted"] == 1
    hooks_of = {e.type: {d.webhook_id for d in e.deliveries} for e in events}
    assert hooks_of["entry.withdrawn"] == {every.id, retire.id}
    assert hooks_of["entry.added"] == {every.id}
    assert all(off.id not in ids for ids in hooks_of.values())
    assert OutboxService(db).depth() == 5


def test_no_subscriber_writes_nothing(db: Database) -> None:
    banks = BankService(db)
    banks.create_bank("b")
    banks.add_entries("b", [NewEntry("pdq", PDQ)])
    with db.session() as s:
        assert emit_event(s, "scan.match", {"x": 1}) is None
        assert s.scalar(select(func.count()).select_from(OutboxEvent)) == 0
        with pytest.raises(DignityError) as err:
            emit_event(s, "nope", {})
    assert err.value.code == "event.bad_type"


def test_rolled_back_event_is_never_delivered(db: Database, receiver: Receiver) -> None:
    WebhookService(db).create(receiver.url, secret=SECRET)
    banks = BankService(db)
    banks.create_bank("b")
    with pytest.raises(RuntimeError), db.session() as s:
        assert emit_event(s, "entry.added", {"bank": "b", "entries": []}) is not None
        raise RuntimeError("the write that caused it failed")
    # A bank write that fails half-way (unknown entry id) leaves no event either.
    with pytest.raises(NotFound):
        banks.withdraw("b", [12345])
    worker = DeliveryWorker(db, fast())
    assert worker.run_until_idle() == 0
    worker.stop()
    assert receiver.started == 0
    assert OutboxService(db).list_events() == []


# -- delivering -----------------------------------------------------------------------------
def test_delivery_is_signed_and_verifiable(db: Database, receiver: Receiver) -> None:
    WebhookService(db).create(receiver.url, secret=SECRET, events="entry.added")
    banks = BankService(db)
    banks.create_bank("b")
    banks.add_entries("b", [NewEntry("pdq", PDQ)])
    worker = DeliveryWorker(db, fast())
    assert worker.run_until_idle() == 1
    worker.stop()
    assert receiver.rejected == []
    [got] = receiver.received
    assert got["type"] == "entry.added" and got["payload"]["entries"][0]["value"] == PDQ
    h = got["headers"]
    assert h["X-Dignity-Event-Id"] == got["id"]
    assert h["X-Dignity-Event-Type"] == "entry.added"
    assert abs(int(h["X-Dignity-Timestamp"]) - time.time()) < 60
    assert h["X-Dignity-Signature"].startswith("v1=")
    [d] = deliveries(db)
    assert (d.status, d.attempts, d.last_status, d.lease_token) == ("delivered", 1, 200, None)
    assert d.delivered_at is not None
    assert OutboxService(db).depth() == 0


def test_signature_and_replay_rejection(db: Database, receiver: Receiver) -> None:
    body = b'{"id":"e1","type":"entry.added","created_at":"x","payload":{}}'
    ts = int(time.time())
    headers = {"X-Dignity-Timestamp": str(ts), "X-Dignity-Signature": sign(SECRET, ts, body)}
    assert verify(SECRET, headers, body) == ts
    for bad_headers, bad_body, code in [
        (headers, body.replace(b"e1", b"e2"), "webhook.bad_signature"),  # tampered body
        ({**headers, "X-Dignity-Timestamp": str(ts + 1)}, body, "webhook.bad_signature"),
        ({"X-Dignity-Signature": headers["X-Dignity-Signature"]}, body, "webhook.bad_timestamp"),
    ]:
        with pytest.raises(SignatureError) as err:
            verify(SECRET, bad_headers, bad_body)
        assert err.value.code == code
    with pytest.raises(SignatureError):
        verify("another-secret-0123456789", headers, body)
    # A request captured and replayed ten minutes later fails the timestamp check, and its
    # timestamp cannot be refreshed without the secret.
    with pytest.raises(SignatureError) as err:
        verify(SECRET, headers, body, now=ts + 600)
    assert err.value.code == "webhook.stale_timestamp"

    # Within the window, the receiver's event-id dedupe answers a replay without acting twice.
    WebhookService(db).create(receiver.url, secret=SECRET)
    BankService(db).create_bank("b")
    BankService(db).add_entries("b", [NewEntry("pdq", PDQ)])
    DeliveryWorker(db, fast()).run_until_idle()
    captured_headers, captured_body = receiver.requests[0]
    replay = httpx.post(receiver.url, content=captured_body, headers=captured_headers)
    assert replay.status_code == 200 and replay.json() == {"duplicate": True}
    assert len(receiver.ids()) == 1
    forged = httpx.post(
        receiver.url,
        content=captured_body.replace(PDQ.encode(), b"0" * 64),
        headers=captured_headers,
    )
    assert forged.status_code == 401 and receiver.rejected == ["webhook.bad_signature"]


def test_backoff_then_dead_letter_then_redeliver(db: Database, receiver: Receiver) -> None:
    config = fast(backoff_base_s=10.0, backoff_cap_s=25.0, max_attempts=3)
    receiver.status = 500
    hook, _ = WebhookService(db).create(receiver.url, secret=SECRET)
    with db.session() as s:
        event_id = emit_event(s, "bank.deleted", {"bank": "b", "entries_deleted": 0})
    assert event_id is not None
    now = utcnow()
    with make_client(5.0) as client:
        delays = []
        for attempt in (1, 2, 3):
            [c] = claim(db, lease_s=config.lease_s, now=now)
            assert c.attempt == attempt and c.event_id == event_id
            assert claim(db, lease_s=config.lease_s, now=now) == []  # leased: not claimed twice
            outcome = send(client, c)
            assert not outcome.ok and outcome.status == 500
            status = record(db, c, outcome, config, now=now)
            [d] = deliveries(db)
            assert d.status == status and d.last_error.startswith("HTTP 500")
            if status == "pending":
                delay = d.next_attempt_at - now
                delays.append(delay.total_seconds())
                assert claim(db, now=now + delay - timedelta(seconds=0.5)) == []  # not yet due
                now += delay
        assert status == "dead"
    # Attempt 1 waits 5-10 s (base 10, equal jitter), attempt 2 10-20 s.
    assert 5 <= delays[0] <= 10 and 10 <= delays[1] <= 20
    assert backoff_s(10, 10.0, 25.0) <= 25.0
    dead = OutboxService(db).list_events(status="dead")
    assert [e.id for e in dead] == [event_id] and dead[0].deliveries[0].attempts == 3
    assert WebhookService(db).get(hook.id).dead == 1

    receiver.status = 200
    assert OutboxService(db).redeliver(event_id) == 1
    assert OutboxService(db).redeliver(event_id) == 0  # already pending
    [d] = deliveries(db)
    assert (d.status, d.attempts, d.last_error) == ("pending", 0, "")
    DeliveryWorker(db, config).run_until_idle()
    assert receiver.ids() == {event_id}
    assert OutboxService(db).list_events(status="delivered")[0].id == event_id
    assert OutboxService(db).redeliver(event_id, webhook_id=hook.id) == 1  # delivered, again
    with pytest.raises(NotFound) as err:
        OutboxService(db).redeliver("no-such-event")
    assert err.value.code == "event.not_found"


def test_redirects_are_failures_and_retry_after_is_honoured(
    db: Database, receiver: Receiver
) -> None:
    WebhookService(db).create(receiver.url, secret=SECRET)
    with db.session() as s:
        emit_event(s, "bank.deleted", {"bank": "b"})
    now = utcnow()
    receiver.status = 302
    with make_client(5.0) as client:
        [c] = claim(db, now=now)
        outcome = send(client, c)
    assert not outcome.ok and outcome.status == 302
    assert record(db, c, Outcome(False, 503, "HTTP 503", 600.0), fast(), now=now) == "pending"
    [d] = deliveries(db)
    waited = d.next_attempt_at - now
    assert waited.total_seconds() >= 600


def test_a_huge_error_body_is_not_read(db: Database) -> None:
    """A receiver answering 500 with an endless body: the delivery keeps the first bytes as its
    error and hangs up, instead of holding the whole answer in memory."""
    sent = [0]
    done = threading.Event()

    class Flood(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(500)
            self.send_header("Content-Length", str(300 << 20))
            self.end_headers()
            block = b"overloaded " * 6000
            try:
                while sent[0] < 300 << 20:
                    self.wfile.write(block)
                    sent[0] += len(block)
            except OSError:
                pass  # the sender hung up, as it should
            finally:
                done.set()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Flood)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        WebhookService(db).create(f"http://127.0.0.1:{server.server_port}/hook", secret=SECRET)
        with db.session() as s:
            emit_event(s, "bank.deleted", {"bank": "b"})
        with make_client(10.0) as client:
            [c] = claim(db)
            outcome = send(client, c)
        assert not outcome.ok and outcome.status == 500
        assert outcome.error.startswith("HTTP 500: overloaded overloaded")
        assert done.wait(10)
        assert sent[0] < 64 << 20, sent[0]  # hung up long before the 300 MB were written
    finally:
        server.shutdown()
        server.server_close()


def test_claims_are_bounded_and_expired_leases_come_due(db: Database, receiver: Receiver) -> None:
    WebhookService(db).create(receiver.url, secret=SECRET)
    with db.session() as s:
        for i in range(3):
            emit_event(s, "bank.deleted", {"bank": f"b{i}"})
    now = utcnow()
    assert len(claim(db, limit=2, now=now)) == 2
    assert len(claim(db, limit=2, now=now)) == 1
    assert claim(db, limit=2, now=now) == []
    with db.session() as s:  # keep one, due now
        s.execute(delete(OutboxDelivery).where(OutboxDelivery.id > 1))
        s.execute(update(OutboxDelivery).values(next_attempt_at=now, attempts=0, lease_token=None))
    [first] = claim(db, lease_s=30, now=now)  # ... and this worker dies holding it
    assert claim(db, lease_s=30, now=now + timedelta(seconds=29)) == []
    [second] = claim(db, lease_s=30, now=now + timedelta(seconds=31))
    assert second.delivery_id == first.delivery_id and second.attempt == 2
    # The first worker coming back late may not overwrite the new holder's outcome.
    assert record(db, first, Outcome(True, 200), fast(), now=now) is None
    assert deliveries(db)[0].status == "pending"
    assert record(db, second, Outcome(True, 200), fast()) == "delivered"


def test_concurrent_workers_deliver_each_event_once(
    db: Database, settings: Settings, receiver: Receiver
) -> None:
    WebhookService(db).create(receiver.url, secret=SECRET)
    banks = BankService(db)
    banks.create_bank("b")
    for _ in range(30):
        banks.add_entries("b", [NewEntry("pdq", pdq())])
    # Two "processes": separate engines on the same database, two threads each.
    others = [open_database(settings.resolved_database_url) for _ in range(2)]
    workers = [DeliveryWorker(d, fast(workers=2)) for d in others]
    for w in workers:
        w.start()
    try:
        deadline = time.monotonic() + 20
        while len(receiver.ids()) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        for w in workers:
            w.stop()
        for d in others:
            d.close()
    assert len(receiver.ids()) == 30
    assert len(receiver.received) == 30  # no event was sent twice
    assert {d.status for d in deliveries(db)} == {"delivered"}


def test_scan_match_event(db: Database) -> None:
    WebhookService(db).create("http://127.0.0.1:9/x", secret=SECRET, events="scan.match")
    data = encode(landscape(3), quality=90)
    h = hash_bytes(data)
    assert h.pdq is not None
    banks = BankService(db)
    banks.create_bank("b")
    banks.add_entries("b", [NewEntry("pdq", h.pdq.hex)])
    engine = MatchEngine(db)
    engine.load()
    key = KeyInfo(7, "upload-pipeline", "platform", None, None, None)
    miss = engine.match_image(hash_bytes(encode(landscape(60), "PNG")))
    assert record_scan(db, h, miss, decide(miss), key) is None
    outcome = engine.match_image(h)
    event_id = record_scan(db, h, outcome, decide(outcome), key)
    assert event_id is not None
    p = OutboxService(db).get_event(event_id).payload
    assert p["decision"]["action"] == "block" and p["matches"][0]["bank"] == "b"
    assert p["hashes"] == {
        "pdq": h.pdq.hex,
        "pdq_quality": h.pdq.quality,
        "md5": h.md5,
        "sha256": h.sha256,
    }
    assert p["key"] == {"id": 7, "name": "upload-pipeline"}


# -- CLI ------------------------------------------------------------------------------------
def test_cli_webhooks_and_events(db: Database, settings: Settings, receiver: Receiver) -> None:
    runner = CliRunner()
    env = {"DIGNITY_DATABASE_URL": settings.resolved_database_url}

    def run(*args: str, code: int = 0) -> list[dict[str, Any]]:
        r = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        assert r.exit_code == code, r.output
        return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]

    [hook] = run("webhook", "add", receiver.url, "--secret", SECRET, "--events", "bank.deleted")
    assert hook["secret"] == SECRET and hook["events"] == ["bank.deleted"]
    [listed] = run("webhook", "list")
    assert "secret" not in listed and listed["id"] == hook["id"]
    run("webhook", "add", "ftp://x", "--secret", SECRET, code=3)
    run("webhook", "add", receiver.url, "--secret", SECRET, "--events", "nope", code=3)
    run("webhook", "remove", "999", code=3)

    receiver.status = 500
    BankService(db).create_bank("b")
    BankService(db).delete_bank("b")
    with db.session() as s:
        s.execute(update(OutboxDelivery).values(attempts=7))  # one failure from dead
    [sent] = run("events", "deliver")
    assert sent["attempted"] == 1 and sent["pending"] == 0
    [dead] = run("events", "list", "--status", "dead")
    assert dead["type"] == "bank.deleted" and dead["deliveries"][0]["status"] == "dead"
    assert run("events", "list", "--status", "pending") == []
    receiver.status = 200
    assert run("events", "redeliver", dead["id"]) == [{"event_id": dead["id"], "redelivered": 1}]
    run("events", "deliver")
    assert receiver.ids() == {dead["id"]}
    run("events", "redeliver", "nope", code=3)
    [gone] = run("webhook", "remove", str(hook["id"]))
    assert gone["deliveries_removed"] == 1 and run("webhook", "list") == []


# -- HTTP API and a real server -------------------------------------------------------------
def test_api_webhooks_and_events(live: LiveServer, receiver: Receiver) -> None:
    with live.client("admin") as admin, live.client("curator") as curator:
        assert curator.get("/v1/webhooks").status_code == 403
        r = admin.post("/v1/webhooks", json={"url": "gopher://x"})
        assert r.status_code == 422 and r.json()["code"] == "webhook.bad_url"
        r = admin.post("/v1/webhooks", json={"url": receiver.url, "events": ["nope"]})
        assert r.status_code == 422 and r.json()["code"] == "webhook.bad_events"
        r = admin.post("/v1/webhooks", json={"url": receiver.url, "events": ["scan.match"]})
        assert r.status_code == 201
        hook = r.json()
        assert hook["secret"].startswith("whsec_") and hook["enabled"] is True
        receiver.secret = hook["secret"]
        assert "secret" not in admin.get(f"/v1/webhooks/{hook['id']}").json()
        r = admin.patch(f"/v1/webhooks/{hook['id']}", json={"events": ["*"]})
        assert r.json()["events"] == ["*"]
        assert admin.get("/v1/webhooks/999").json()["code"] == "webhook.not_found"

        data = encode(landscape(5), quality=90)
        name = f"bank-{secrets.token_hex(3)}"
        assert curator.post("/v1/banks", json={"name": name}).status_code == 201
        files = {"file": ("x.jpg", data, "application/octet-stream")}
        assert curator.post(f"/v1/banks/{name}/entries", files=files).status_code == 201
        with live.client("platform") as platform:
            scan = platform.post("/v1/scan", files=files)
        assert scan.json()["decision"]["action"] == "block"

        deadline = time.monotonic() + 15
        while len(receiver.ids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        types = {e["type"] for e in receiver.received}
        assert types == {"entry.added", "scan.match"}, receiver.rejected
        scan_event = next(e for e in receiver.received if e["type"] == "scan.match")
        assert scan_event["payload"]["hashes"]["sha256"] == scan.json()["sha256"]

        # The worker records a delivery after the receiver has answered: wait for that write.
        deadline = time.monotonic() + 15
        while True:
            events = admin.get("/v1/events", params={"status": "delivered"}).json()
            if {e["id"] for e in events} >= receiver.ids() or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert {e["id"] for e in events} >= receiver.ids()
        assert admin.get("/v1/events", params={"status": "dead"}).json() == []
        assert admin.get("/v1/events", params={"status": "bogus"}).status_code == 422
        one = admin.get(f"/v1/events/{scan_event['id']}").json()
        assert one["deliveries"][0]["status"] == "delivered"
        r = admin.post(f"/v1/events/{scan_event['id']}/redeliver")
        assert r.status_code == 202 and r.json()["redelivered"] == 1
        assert admin.post("/v1/events/nope/redeliver").json()["code"] == "event.not_found"
        assert "dignity_outbox_depth" in admin.get("/metrics").text
        deadline = time.monotonic() + 15
        while len(receiver.received) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(receiver.received) == 3 and len(receiver.ids()) == 2  # redelivered, deduped
        r = admin.delete(f"/v1/webhooks/{hook['id']}")
        assert r.status_code == 200 and admin.get("/v1/webhooks").json() == []


def test_events_survive_a_server_killed_mid_delivery(tmp_path: Path, server_url: str) -> None:
    receiver = Receiver(delay=1.0)  # slow: deliveries are in flight when the server dies
    server = LiveServer(
        tmp_path / "srv",
        env={
            "DIGNITY_DATABASE_URL": server_url,
            "DIGNITY_OUTBOX_WORKERS": "4",
            "DIGNITY_OUTBOX_POLL_S": "0.2",
            "DIGNITY_OUTBOX_LEASE_S": "3",
            "DIGNITY_WEBHOOK_TIMEOUT_S": "2",
        },
    )
    db = open_database(server.url)
    try:
        server.start()
        with server.client("admin") as admin:
            r = admin.post(
                "/v1/webhooks",
                json={"url": receiver.url, "secret": SECRET, "events": ["entry.added"]},
            )
            assert r.status_code == 201
            assert admin.post("/v1/banks", json={"name": "b"}).status_code == 201
            for _ in range(20):
                entry = {"entries": [{"signal": "pdq", "value": pdq()}]}
                assert admin.post("/v1/banks/b/entries", json=entry).status_code == 201
        # Wait for a first round to be acknowledged and the next one to be on the wire.
        deadline = time.monotonic() + 15
        while receiver.started < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert receiver.ids(), "nothing was delivered before the crash"

        receiver.crash()
        server.kill()
        with db.session() as s:
            expected = set(s.scalars(select(OutboxEvent.id)))
            in_flight = s.scalar(
                select(func.count())
                .select_from(OutboxDelivery)
                .where(OutboxDelivery.status == "pending", OutboxDelivery.lease_token.is_not(None))
            )
        assert len(expected) == 20
        assert in_flight, "the crash should have caught deliveries in flight"
        assert len(receiver.ids()) < 20

        server.start()
        deadline = time.monotonic() + 30
        while receiver.ids() != expected and time.monotonic() < deadline:
            time.sleep(0.1)
        assert receiver.ids() == expected  # every event arrived, at least once
        assert receiver.rejected == []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            rows = deliveries(db)
            if {d.status for d in rows} == {"delivered"}:
                break
            time.sleep(0.1)
        assert {d.status for d in rows} == {"delivered"}
        assert max(d.attempts for d in rows) >= 2  # the ones cut off were sent again
    finally:
        server.stop()
        db.close()
        receiver.close()
