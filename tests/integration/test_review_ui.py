"""The reviewer UI against a real server (SQLite file and PostgreSQL) and in real Chromium.

Sign-in with reviewer/admin keys only (others refused), session cookie attributes, CSRF on every
state-changing call, revoked keys and expiry ending sessions, failed sign-ins limited per address,
the queue's order (priority, then deadline, then age), each kind's evidence, decisions recorded
with who and when (a second one refused), and previews fetched from a local "platform": blurred
and greyscale unless revealed, each reveal audited. Review items are inserted directly where the
services that produce them are another part of the workflow.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image, ImageFilter
from sqlalchemy import delete, func, select

from dignity.audit.models import AuditRecord
from dignity.errors import DignityError
from dignity.keys import KeyService
from dignity.samples import encode, landscape
from dignity.settings import Settings
from dignity.storage.db import Database, open_database
from dignity.takedown.models import (
    Appeal,
    Removal,
    RequesterFlag,
    ReviewItem,
    ScanRecord,
    Statement,
    TakedownItem,
    TakedownRequest,
    WebSession,
)
from dignity.takedown.review import ReviewQueue
from dignity.takedown.sessions import SessionService
from tests.integration.browser import browser, save_screenshot
from tests.integration.conftest import database_for
from tests.integration.server import LiveServer, free_port

__all__ = ["browser"]  # the module-scoped Chromium fixture, imported for this module's tests

FAILURES_PER_HOUR = 4
MAX_BYTES = 2_000_000


# -- a tiny "platform" serving previews -------------------------------------------------------


class _Platform(http.server.BaseHTTPRequestHandler):
    other_port = 0

    def do_GET(self) -> None:
        name = self.path.rsplit("/", 1)[-1]
        if name.startswith("img-"):
            seed = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
            self._send(200, encode(landscape(seed, (900, 700)), "JPEG", quality=92), "image/jpeg")
        elif name == "away":
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{self.other_port}/media/img-x")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif name == "hop":  # a redirect within the same origin is followed
            self.send_response(302)
            self.send_header("Location", "/media/img-hop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif name == "huge":
            self._send(200, b"\xff\xd8" + b"\0" * (MAX_BYTES + 10), "image/jpeg")
        elif name == "junk":
            self._send(200, b"this is not an image at all", "image/jpeg")
        else:
            self._send(404, b"no such content", "text/plain")

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def platform() -> Iterator[str]:
    _Platform.other_port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Platform)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, backend: str, platform: str
) -> Iterator[LiveServer]:
    directory = Path(tmp_path_factory.mktemp("review"))
    with database_for(backend, directory) as url:
        live = LiveServer(
            directory,
            env={
                "DIGNITY_DATABASE_URL": url,
                "DIGNITY_PREVIEW_URL_TEMPLATE": platform + "/media/{content_id}",
                "DIGNITY_PORTAL_CLIENT_IP_HEADER": "X-Forwarded-For",
                "DIGNITY_TRUSTED_PROXIES": "127.0.0.1/32",
                "DIGNITY_PORTAL_IP_FAILURES_PER_HOUR": str(FAILURES_PER_HOUR),
                "DIGNITY_MAX_BYTES": str(MAX_BYTES),
            },
        )
        live.start()
        yield live
        live.stop()


@pytest.fixture(scope="module")
def store(server: LiveServer) -> Iterator[Database]:
    db = open_database(server.url)
    yield db
    db.close()


# -- helpers ----------------------------------------------------------------------------------


class Reviewer:
    """An httpx client signed in to the review UI (cookie jar + CSRF token)."""

    def __init__(self, server: LiveServer, role: str = "reviewer", *, key: str | None = None):
        self.client = httpx.Client(base_url=server.base, timeout=30)
        r = self.client.post("/review/api/login", json={"key": key or server.keys[role]})
        assert r.status_code == 200, r.text
        self.login = r
        self.csrf: str = r.json()["csrf"]

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.get(path, **kw)

    def decide(self, item_id: int, outcome: str, **body: Any) -> httpx.Response:
        return self.client.post(
            f"/review/api/items/{item_id}/decision",
            json={"outcome": outcome, **body},
            headers={"X-CSRF-Token": self.csrf},
        )

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def reviewer(server: LiveServer) -> Iterator[Reviewer]:
    r = Reviewer(server)
    yield r
    r.close()


def now() -> datetime:
    return datetime.now(UTC)


def add_scan(
    db: Database,
    content_id: str | None,
    *,
    priority: int = 2,
    due_at: datetime | None = None,
    created_at: datetime | None = None,
    sha256: str | None = None,
    detail: dict[str, Any] | None = None,
) -> int:
    """A scan_log row and its review item; returns the review item's id."""
    sha = sha256 or secrets.token_hex(32)
    with db.session() as s:
        scan = ScanRecord(
            content_id=content_id,
            uploader="uploader-7",
            pdq=secrets.token_hex(32),  # random: no two scans are PDQ copies by accident
            pdq_quality=90,
            md5=sha[:32],
            sha256=sha,
            decision="review",
            detail=json.dumps(
                detail
                or {
                    "matches": [
                        {"bank": "cases", "signal": "pdq", "distance": 12, "purpose": "review"}
                    ],
                    "signals": {"nudity": 0.91, "synthetic": 0.72},
                    "decision": {
                        "action": "review",
                        "rule": "possible-ncii",
                        "rules": ["possible-ncii"],
                        "labels": ["ncii-suspected"],
                        "reasons": [
                            {"rule": "possible-ncii", "signal": "nudity", "value": 0.91},
                            {"rule": "possible-ncii", "signal": "match.cases", "value": 12},
                        ],
                    },
                }
            ),
        )
        s.add(scan)
        s.flush()
        item = ReviewItem(kind="scan", scan_id=scan.id, priority=priority, due_at=due_at)
        if created_at is not None:
            item.created_at = created_at
        s.add(item)
        s.flush()
        return item.id


def add_takedown(
    db: Database,
    content_ids: list[str],
    *,
    priority: int = 1,
    due_in: timedelta = timedelta(hours=40),
    contact: str | None = None,
    escalated: bool = False,
    description: str = "These images of me were posted without my consent.",
) -> tuple[int, int]:
    """A valid takedown request with its items and review item; returns (item id, request id)."""
    t = now()
    fp = hashlib.sha256((contact or secrets.token_hex(8)).encode()).hexdigest()
    with db.session() as s:
        req = TakedownRequest(
            ticket="T" + secrets.token_hex(6).upper(),
            access_hash=secrets.token_hex(32),
            requester_kind="self",
            requester_name="A. Person",
            requester_contact="person@example.org",
            requester_fp=fp,
            description=description,
            good_faith=True,
            signature_name="A. Person",
            signed_at=t,
            ai_made="ai",
            jurisdiction="US",
            validity=json.dumps(
                {
                    "take_it_down": {"title": "TAKE IT DOWN", "valid": True, "missing": []},
                    "dsa_art16": {
                        "title": "DSA Art. 16",
                        "valid": False,
                        "missing": [{"key": "url", "field": "content", "message": "an exact URL"}],
                    },
                }
            ),
            state="valid",
            received_at=t,
            valid_at=t,
            due_at=t + due_in,
            priority=priority,
            escalated_24_at=t if escalated else None,
        )
        s.add(req)
        s.flush()
        for cid in content_ids:
            s.add(
                TakedownItem(request_id=req.id, ref=f"https://example.com/p/{cid}", content_id=cid)
            )
        item = ReviewItem(kind="takedown", request_id=req.id, priority=priority, due_at=req.due_at)
        s.add(item)
        s.flush()
        return item.id, req.id


def add_appeal(db: Database, content_id: str, *, removed_by: str = "someone-else") -> int:
    """A removal, its statement of reasons and an appeal against it; returns the review item."""
    with db.session() as s:
        removal = Removal(content_id=content_id, reason="reported", decided_by=removed_by)
        s.add(removal)
        s.flush()
        statement = Statement(
            public_id=secrets.token_hex(8),
            removal_id=removal.id,
            content_id=content_id,
            uploader="uploader-7",
            body=json.dumps({"decision_ground": "ILLEGAL_CONTENT", "decision_facts": "NCII"}),
            appeal_hash=secrets.token_hex(32),
            appeal_until=now() + timedelta(days=184),
        )
        s.add(statement)
        s.flush()
        appeal = Appeal(statement_id=statement.id, text="This is my own holiday photo.")
        s.add(appeal)
        s.flush()
        item = ReviewItem(kind="appeal", appeal_id=appeal.id, priority=2)
        s.add(item)
        s.flush()
        return item.id


def audits(db: Database, action: str) -> list[AuditRecord]:
    with db.session() as s:
        return list(
            s.scalars(
                select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.seq)
            )
        )


def review_item(db: Database, item_id: int) -> ReviewItem:
    with db.session() as s:
        row = s.get(ReviewItem, item_id)
        assert row is not None
        return row


def sessions_count(db: Database) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(WebSession)) or 0)


def aware(dt: datetime | None) -> datetime:
    assert dt is not None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


# -- pages and sign-in ------------------------------------------------------------------------


def test_pages_redirect_until_signed_in(server: LiveServer, reviewer: Reviewer) -> None:
    with httpx.Client(base_url=server.base) as anon:
        r = anon.get("/review")
        assert r.status_code == 303 and r.headers["location"] == "/review/login"
        r = anon.get("/review/login")
        assert r.status_code == 200 and 'id="login-form"' in r.text
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert r.headers["cache-control"] == "no-store"
        for asset in ("review.js", "review.css", "app.css"):
            assert anon.get(f"/assets/{asset}").status_code == 200
    page = reviewer.get("/review")
    assert page.status_code == 200 and 'id="queue-list"' in page.text
    # Signed in already: the login page sends you on to the queue.
    assert reviewer.get("/review/login").headers.get("location") == "/review"
    for html in (page.text, httpx.get(server.base + "/review/login").text):
        assert "style=" not in html and "<script>" not in html  # strict CSP: nothing inline
        assert html.index("/assets/app.css") < html.index("/assets/review.css")


@pytest.mark.parametrize("role", ["reviewer", "admin"])
def test_reviewer_and_admin_keys_sign_in(server: LiveServer, store: Database, role: str) -> None:
    before = len(audits(store, "session.signed_in"))
    r = Reviewer(server, role)
    try:
        body = r.login.json()
        assert body["name"] == f"test-{role}" and body["role"] == role and len(body["csrf"]) >= 32
        cookie = r.login.headers["set-cookie"]
        token = r.client.cookies["dignity_review"]
        assert cookie.startswith("dignity_review=")
        lowered = cookie.lower()
        assert "httponly" in lowered and "samesite=strict" in lowered and "path=/" in lowered
        assert "secure" not in lowered  # plain http here; https gets Secure
        assert r.login.headers["cache-control"] == "no-store"
        me = r.get("/review/api/session").json()
        # The session, and the platform's name for the page's wording.
        assert me == {**body, "expires_at": me["expires_at"], "platform_name": "this platform"}
        with store.session() as s:
            stored = s.scalars(
                select(WebSession).where(
                    WebSession.token_hash == hashlib.sha256(token.encode()).hexdigest()
                )
            ).one()
            assert stored.role == role and stored.key_name == f"test-{role}"
        records = audits(store, "session.signed_in")
        assert len(records) == before + 1
        last = records[-1]
        assert last.actor.startswith("session:") and last.actor.endswith(f":test-{role}")
        assert token not in last.detail and server.keys[role] not in last.detail
    finally:
        r.close()


@pytest.mark.parametrize("role", ["platform", "curator", "partner", "flagger"])
def test_other_roles_may_not_sign_in(server: LiveServer, store: Database, role: str) -> None:
    count = sessions_count(store)
    address = f"198.51.100.{10 + len(role) + ord(role[0])}"
    with httpx.Client(base_url=server.base, headers={"X-Forwarded-For": address}) as c:
        r = c.post("/review/api/login", json={"key": server.keys[role]})
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "session.role"
        assert role in r.json()["message"] and "reviewer or admin" in r.json()["message"]
        assert "dignity_review" not in r.headers.get("set-cookie", "")
        # A Bearer key of any role does not open the cookie API either.
        for bearer in (role, "reviewer", "admin"):
            assert c.get("/review/api/queue", headers=server.headers(bearer)).status_code == 401
    assert sessions_count(store) == count


def test_wrong_keys_are_refused_and_limited_per_address(
    server: LiveServer, store: Database
) -> None:
    count = sessions_count(store)
    bad = {"X-Forwarded-For": "203.0.113.50"}
    with httpx.Client(base_url=server.base, headers=bad) as c:
        for key in ("dg_" + "x" * 43, "not-a-key", "dg_wrong", "")[:FAILURES_PER_HOUR]:
            r = c.post("/review/api/login", json={"key": key})
            assert r.status_code == 401, r.text
            assert r.json()["code"] == "session.bad_key"
        # The address used up its tries: even the right key waits now.
        r = c.post("/review/api/login", json={"key": server.keys["reviewer"]})
        assert r.status_code == 429 and r.json()["code"] == "rate.limited"
        assert int(r.headers["retry-after"]) > 0
        # Bad bodies are refused before any key is looked at.
        assert c.post("/review/api/login", content=b"key=x").status_code == 415
    with httpx.Client(base_url=server.base, headers={"X-Forwarded-For": "203.0.113.51"}) as c:
        ok = c.post("/review/api/login", json={"key": server.keys["reviewer"]})
        assert ok.status_code == 200
        assert (
            c.post(
                "/review/api/login", content=b"key=x", headers={"content-type": "text/plain"}
            ).json()["code"]
            == "request.unsupported_media_type"
        )
        assert c.post("/review/api/login", json={"key": "x", "extra": 1}).status_code == 422
    assert sessions_count(store) == count + 1


def test_every_cookie_route_needs_a_session(server: LiveServer, store: Database) -> None:
    item = add_scan(store, "img-anon")
    with httpx.Client(base_url=server.base) as anon:
        calls = [
            ("GET", "/review/api/session"),
            ("GET", "/review/api/queue"),
            ("GET", f"/review/api/items/{item}"),
            ("GET", f"/review/api/items/{item}/preview"),
            ("POST", f"/review/api/items/{item}/decision"),
            ("POST", "/review/api/logout"),
        ]
        for method, path in calls:
            r = anon.request(method, path, json={"outcome": "keep"} if method == "POST" else None)
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["code"] == "session.missing"
    # A made-up cookie is no better.
    with httpx.Client(base_url=server.base, cookies={"dignity_review": "forged"}) as forged:
        for method, path in calls:
            r = forged.request(method, path, json={"outcome": "keep"} if method == "POST" else None)
            assert r.status_code == 401, (method, path)
    assert review_item(store, item).state == "open"


def test_sign_out_needs_csrf_then_ends_the_session(server: LiveServer, store: Database) -> None:
    r = Reviewer(server)
    token = r.client.cookies["dignity_review"]
    digest = hashlib.sha256(token.encode()).hexdigest()
    before = len(audits(store, "session.signed_out"))
    assert r.client.post("/review/api/logout").status_code == 403
    assert (
        r.client.post("/review/api/logout", headers={"X-CSRF-Token": "wrong"}).json()["code"]
        == "review.csrf"
    )
    assert r.get("/review/api/session").status_code == 200  # still signed in
    out = r.client.post("/review/api/logout", headers={"X-CSRF-Token": r.csrf})
    assert out.status_code == 200
    assert "dignity_review=" in out.headers["set-cookie"]
    with store.session() as s:
        assert s.scalar(select(WebSession).where(WebSession.token_hash == digest)) is None
    # The old token is dead even if a copy of the cookie survived.
    with httpx.Client(base_url=server.base, cookies={"dignity_review": token}) as c:
        assert c.get("/review/api/session").status_code == 401
        assert c.get("/review", follow_redirects=False).status_code == 303
    records = audits(store, "session.signed_out")
    assert len(records) == before + 1 and token not in records[-1].detail
    r.close()


def test_revoked_key_ends_its_sessions_at_the_next_request(
    server: LiveServer, store: Database
) -> None:
    info, key = KeyService(store).create("reviewer", name="soon-revoked")
    r = Reviewer(server, key=key)
    try:
        assert r.get("/review/api/queue").status_code == 200
        KeyService(store).revoke(info.id)
        gone = r.get("/review/api/queue")
        assert gone.status_code == 401 and gone.json()["code"] == "session.revoked"
        assert r.get("/review/api/session").json()["code"] == "session.missing"  # row deleted
        with store.session() as s:
            assert s.scalar(select(WebSession).where(WebSession.key_id == info.id)) is None
    finally:
        r.close()


# -- decisions --------------------------------------------------------------------------------


def test_decisions_need_the_csrf_token(
    server: LiveServer, store: Database, reviewer: Reviewer
) -> None:
    item = add_scan(store, "img-csrf")
    before = len(audits(store, "review.decided"))
    path = f"/review/api/items/{item}/decision"
    r = reviewer.client.post(path, json={"outcome": "keep"})
    assert r.status_code == 403 and r.json()["code"] == "review.csrf"
    r = reviewer.client.post(path, json={"outcome": "keep"}, headers={"X-CSRF-Token": "x" * 43})
    assert r.status_code == 403 and r.json()["code"] == "review.csrf"
    # Another session's token does not fit this one.
    other = Reviewer(server)
    r = reviewer.client.post(path, json={"outcome": "keep"}, headers={"X-CSRF-Token": other.csrf})
    assert r.status_code == 403
    other.close()
    row = review_item(store, item)
    assert row.state == "open" and row.decided_by is None and row.outcome is None
    assert len(audits(store, "review.decided")) == before


def test_decision_is_recorded_with_who_and_when_and_only_once(
    server: LiveServer, store: Database, reviewer: Reviewer
) -> None:
    item = add_scan(store, "img-keep")
    before = len(audits(store, "review.decided"))
    t0 = now()
    bad = reviewer.decide(item, "uphold")
    assert bad.status_code == 422 and bad.json()["code"] == "review.bad_outcome"
    assert reviewer.decide(item, "keep", unfounded=True).json()["code"] == "review.bad_outcome"
    assert reviewer.decide(999_999, "keep").status_code == 404
    assert review_item(store, item).state == "open"

    r = reviewer.decide(item, "keep", note="A landscape, not a person.")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "decided" and body["outcome"] == "keep"
    assert body["decided_by"] == "test-reviewer" and body["note"] == "A landscape, not a person."
    row = review_item(store, item)
    assert row.state == "decided" and row.outcome == "keep" and row.decided_by == "test-reviewer"
    assert t0 - timedelta(seconds=5) <= aware(row.decided_at) <= now() + timedelta(seconds=5)
    records = audits(store, "review.decided")
    assert len(records) == before + 1
    assert records[-1].actor.endswith(":test-reviewer") and records[-1].actor.startswith("session:")
    assert json.loads(records[-1].detail)["outcome"] == "keep"

    # A second decision, by anyone, is refused and changes nothing.
    admin = Reviewer(server, "admin")
    again = admin.decide(item, "remove")
    admin.close()
    assert again.status_code == 409 and again.json()["code"] == "review.decided"
    assert again.json()["detail"]["decided_by"] == "test-reviewer"
    assert review_item(store, item).outcome == "keep"
    assert len(audits(store, "review.decided")) == before + 1
    # Decided items leave the queue and show among recent decisions.
    q = reviewer.get("/review/api/queue").json()
    assert item not in [i["id"] for i in q["items"]]
    assert item in [d["id"] for d in q["recent"]]


def test_takedown_rejection_goes_to_the_request(
    server: LiveServer, store: Database, reviewer: Reviewer
) -> None:
    item, request_id = add_takedown(store, ["img-reject"])
    r = reviewer.decide(item, "reject")
    assert r.status_code == 422 and r.json()["code"] == "review.note_required"
    assert reviewer.decide(item, "keep").json()["code"] == "review.bad_outcome"
    r = reviewer.decide(item, "reject", note="The content is not on this platform.", unfounded=True)
    assert r.status_code == 200, r.text
    assert r.json()["decided_by"] == "test-reviewer"
    with store.session() as s:
        req = s.get(TakedownRequest, request_id)
        assert req is not None
        assert req.state == "rejected" and req.unfounded and req.decided_by == "test-reviewer"
        assert req.outcome_reason == "The content is not on this platform."
    row = review_item(store, item)
    assert row.state == "decided" and row.outcome == "reject"


def test_failed_action_leaves_the_item_open(
    server: LiveServer, store: Database, reviewer: Reviewer
) -> None:
    item, request_id = add_takedown(store, ["img-closed"])
    with store.session() as s:
        req = s.get(TakedownRequest, request_id)
        assert req is not None
        req.state = "withdrawn"  # the requester withdrew it meanwhile
    r = reviewer.decide(item, "reject", note="Not needed.")
    assert r.status_code == 409 and r.json()["code"] == "takedown.closed"
    row = review_item(store, item)
    assert row.state == "open" and row.decided_by is None
    assert item in [i["id"] for i in reviewer.get("/review/api/queue").json()["items"]]


def test_scan_removal_through_review_sweeps_copies(
    server: LiveServer, store: Database, reviewer: Reviewer
) -> None:
    sha = secrets.token_hex(32)
    add_scan(store, "img-rm-copy", sha256=sha)  # an earlier upload of the same bytes
    item = add_scan(store, "img-rm-scan", sha256=sha)
    r = reviewer.decide(item, "remove", note="Matches a victim's case.")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "decided" and body["outcome"] == "remove"
    assert body["decided_by"] == "test-reviewer" and body["note"] == "Matches a victim's case."
    removed = {x["content_id"]: x["reason"] for x in body["result"]["removals"]}
    assert removed == {"img-rm-scan": "reviewed", "img-rm-copy": "copy_exact"}
    with store.session() as s:
        ids = [x["id"] for x in body["result"]["removals"]]
        rows = list(s.scalars(select(Removal).where(Removal.id.in_(ids))))
        assert len(rows) == 2 and all(r.decided_by == "test-reviewer" for r in rows)
    record = audits(store, "review.decided")[-1]
    assert json.loads(record.detail)["removals"] == [x["id"] for x in body["result"]["removals"]]
    assert reviewer.decide(item, "keep").status_code == 409


def test_takedown_removal_through_review(
    server: LiveServer, store: Database, reviewer: Reviewer
) -> None:
    item, request_id = add_takedown(store, ["img-rm-td"])
    r = reviewer.decide(item, "remove")
    assert r.status_code == 200, r.text
    assert [x["content_id"] for x in r.json()["result"]["removals"]] == ["img-rm-td"]
    with store.session() as s:
        req = s.get(TakedownRequest, request_id)
        assert req is not None and req.state == "removed" and req.decided_by == "test-reviewer"
    row = review_item(store, item)
    assert row.state == "decided" and row.outcome == "remove" and row.decided_by == "test-reviewer"
    again = reviewer.decide(item, "reject", note="too late")
    assert again.status_code == 409 and again.json()["code"] == "review.decided"


def test_appeals_are_upheld_or_reversed_by_another_reviewer(
    server: LiveServer, store: Database, reviewer: Reviewer
) -> None:
    upheld = add_appeal(store, "img-appeal-up")
    reversed_ = add_appeal(store, "img-appeal-back")
    own = add_appeal(store, "img-appeal-own", removed_by="test-reviewer")
    r = reviewer.decide(upheld, "uphold", note="The match is clear.")
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "uphold" and r.json()["appeal"]["state"] == "upheld"
    r = reviewer.decide(reversed_, "reverse", note="Not the person in the case.")
    assert r.status_code == 200, r.text
    assert r.json()["appeal"]["state"] == "reversed"
    assert r.json()["removal"]["restored_at"] is not None
    # Whoever removed it may not judge the appeal; the item stays open for someone else.
    r = reviewer.decide(own, "reverse")
    assert r.status_code == 403 and r.json()["code"] == "appeal.same_reviewer"
    assert review_item(store, own).state == "open"
    admin = Reviewer(server, "admin")
    assert admin.decide(own, "uphold").json()["decided_by"] == "test-admin"
    admin.close()


# -- queue and evidence -----------------------------------------------------------------------


def test_queue_order_priority_then_deadline_then_age(store: Database, reviewer: Reviewer) -> None:
    t = now()
    ids = {
        "p1_late": add_scan(store, "q1", priority=1, due_at=t + timedelta(hours=10)),
        "p0_none": add_scan(store, "q2", priority=0),
        "p3": add_scan(store, "q3", priority=3, created_at=t - timedelta(days=9)),
        "p0_soon": add_scan(store, "q4", priority=0, due_at=t + timedelta(hours=5)),
        "p1_early": add_scan(store, "q5", priority=1, due_at=t + timedelta(hours=2)),
        "p2_new": add_scan(store, "q6", priority=2, created_at=t - timedelta(hours=1)),
        "p2_old": add_scan(store, "q7", priority=2, created_at=t - timedelta(hours=3)),
        "p0_overdue": add_scan(store, "q8", priority=0, due_at=t - timedelta(hours=1)),
    }
    expected = [
        "p0_overdue",
        "p0_soon",
        "p0_none",
        "p1_early",
        "p1_late",
        "p2_old",
        "p2_new",
        "p3",
    ]
    by_id = {v: k for k, v in ids.items()}
    items = reviewer.get("/review/api/queue").json()["items"]
    ours = [by_id[i["id"]] for i in items if i["id"] in by_id]
    assert ours == expected
    entry = {i["id"]: i for i in items}
    assert entry[ids["p0_overdue"]]["overdue"] is True
    assert entry[ids["p0_overdue"]]["seconds_left"] < 0
    assert 4 * 3600 < entry[ids["p0_soon"]]["seconds_left"] <= 5 * 3600
    assert entry[ids["p0_none"]]["due_at"] is None and entry[ids["p0_none"]]["overdue"] is False
    assert entry[ids["p1_early"]]["priority_name"] == "high"
    assert "q5" in entry[ids["p1_early"]]["summary"]
    only = reviewer.get("/review/api/queue", params={"kinds": "appeal"}).json()["items"]
    assert all(i["kind"] == "appeal" for i in only)
    assert reviewer.get("/review/api/queue", params={"kinds": "nope"}).status_code == 422


def test_scan_evidence(store: Database, reviewer: Reviewer) -> None:
    sha = secrets.token_hex(32)
    item = add_scan(store, "img-evidence", sha256=sha)
    add_scan(store, "img-evidence-copy", sha256=sha)  # a byte-identical earlier upload
    body = reviewer.get(f"/review/api/items/{item}").json()
    assert body["kind"] == "scan" and body["outcomes"] == ["remove", "keep"]
    scan = body["scan"]
    assert scan["content_id"] == "img-evidence" and scan["decision"] == "review"
    assert scan["matches"][0]["bank"] == "cases" and scan["matches"][0]["distance"] == 12
    assert scan["signals"]["nudity"] == 0.91
    assert {r["signal"] for r in scan["reasons"]} == {"nudity", "match.cases"}
    assert [c["content_id"] for c in body["copies"]] == ["img-evidence-copy"]
    assert body["content_ids"] == ["img-evidence"] and body["previews"] is True
    assert reviewer.get("/review/api/items/987654").json()["code"] == "review.not_found"


def test_takedown_evidence_with_flagged_requester(store: Database, reviewer: Reviewer) -> None:
    contact = "flagged@example.org"
    item, _ = add_takedown(
        store,
        ["img-t1", "img-t2"],
        contact=contact,
        escalated=True,
        description="<script>alert(1)</script> posted without consent",
    )
    fp = hashlib.sha256(contact.encode()).hexdigest()
    with store.session() as s:
        s.add(RequesterFlag(requester_fp=fp, unfounded=5))
    body = reviewer.get(f"/review/api/items/{item}").json()
    assert body["kind"] == "takedown" and body["outcomes"] == ["remove", "reject"]
    assert body["flagged"] is True and body["escalated"] == "24h"
    req = body["request"]
    assert req["description"].startswith("<script>")
    assert req["requester_flag"]["flagged"] is True
    assert req["validity"]["take_it_down"]["valid"] is True
    assert [i["content_id"] for i in req["items"]] == ["img-t1", "img-t2"]
    assert body["content_ids"] == ["img-t1", "img-t2"]
    listed = {i["id"]: i for i in reviewer.get("/review/api/queue").json()["items"]}[item]
    assert listed["flagged"] is True and listed["escalated"] == "24h"
    assert "2 items" in listed["summary"]


def test_appeal_evidence(store: Database, reviewer: Reviewer) -> None:
    item = add_appeal(store, "img-appealed")
    body = reviewer.get(f"/review/api/items/{item}").json()
    assert body["kind"] == "appeal" and body["outcomes"] == ["uphold", "reverse"]
    assert body["appeal"]["text"] == "This is my own holiday photo."
    assert body["statement"]["content_id"] == "img-appealed"
    assert body["statement"]["body"]["decision_ground"] == "ILLEGAL_CONTENT"
    assert body["removal"]["decided_by"] == "someone-else"
    assert body["content_ids"] == ["img-appealed"]
    assert reviewer.decide(item, "remove").json()["code"] == "review.bad_outcome"


# -- previews ---------------------------------------------------------------------------------


def _detail(img: Image.Image) -> float:
    """High-frequency detail: how far the picture is from a slightly blurred copy of itself
    (smooth gradients count for nothing, edges and texture for much)."""
    grey = img.convert("L")
    a = np.asarray(grey, dtype=np.float64)
    b = np.asarray(grey.filter(ImageFilter.GaussianBlur(2)), dtype=np.float64)
    return float(np.abs(a - b).mean())


def test_preview_is_blurred_and_grey_until_revealed(store: Database, reviewer: Reviewer) -> None:
    item = add_scan(store, "img-preview")
    before = len(audits(store, "review.revealed"))
    r = reviewer.get(f"/review/api/items/{item}/preview")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-dignity-preview"] == "blurred"
    blurred = Image.open(io.BytesIO(r.content))
    assert max(blurred.size) <= 640
    rgb = np.asarray(blurred.convert("RGB"), dtype=np.int16)
    assert blurred.mode == "L" or np.abs(rgb[..., 0] - rgb[..., 1]).max() <= 2
    assert len(audits(store, "review.revealed")) == before  # looking blurred is not a reveal

    shown = reviewer.get(f"/review/api/items/{item}/preview", params={"reveal": 1})
    assert shown.status_code == 200 and shown.headers["x-dignity-preview"] == "revealed"
    assert shown.headers["cache-control"] == "no-store"
    clear = Image.open(io.BytesIO(shown.content))
    assert clear.size == blurred.size and max(clear.size) == 640
    colour = np.asarray(clear.convert("RGB"), dtype=np.int16)
    assert np.abs(colour[..., 0] - colour[..., 2]).mean() > 10  # the real colours
    assert _detail(blurred) < 0.1 * _detail(clear), (_detail(blurred), _detail(clear))

    records = audits(store, "review.revealed")
    assert len(records) == before + 1
    assert records[-1].actor.endswith(":test-reviewer")
    assert json.loads(records[-1].detail)["item_id"] == item
    assert records[-1].subject == f"review_item:{item}"


def test_preview_failures_are_clear(store: Database, reviewer: Reviewer) -> None:
    before = len(audits(store, "review.revealed"))
    cases = {
        None: (404, "review.no_preview"),
        "gone": (404, "review.preview_missing"),
        "away": (502, "review.preview_failed"),
        "huge": (502, "review.preview_too_large"),
        "junk": (502, "review.preview_failed"),
    }
    for content, (status, code) in cases.items():
        item = add_scan(store, content)
        for params in ({}, {"reveal": 1}):
            r = reviewer.get(f"/review/api/items/{item}/preview", params=params)
            assert r.status_code == status, (content, r.text)
            assert r.json()["code"] == code, (content, r.text)
    item = add_scan(store, "hop")
    assert reviewer.get(f"/review/api/items/{item}/preview").status_code == 200
    assert (
        reviewer.get(f"/review/api/items/{item}/preview", params={"n": 1}).json()["code"]
        == "review.no_preview"
    )
    assert len(audits(store, "review.revealed")) == before


# -- the same rules without HTTP: expiry, and no preview template -----------------------------


class _Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at


def test_sessions_expire_when_idle_and_after_their_maximum(
    db: Database, settings: Settings
) -> None:
    settings = settings.model_copy(update={"session_idle_s": 600, "session_max_s": 1800})
    clock = _Clock()
    keys = KeyService(db)
    _, key = keys.create("reviewer", name="clocked")
    svc = SessionService(db, settings, keys, clock)
    _expiry(svc, key, clock)


def _expiry(svc: SessionService, key: str, clock: _Clock) -> None:
    idle = svc.sign_in(key)
    clock.at += timedelta(seconds=599)
    assert svc.current(idle.token).name == "clocked"  # used: the idle clock starts again
    clock.at += timedelta(seconds=599)
    assert svc.current(idle.token).id == idle.session.id
    clock.at += timedelta(seconds=601)
    with pytest.raises(DignityError) as ended:
        svc.current(idle.token)
    assert ended.value.code == "session.expired"
    with pytest.raises(DignityError) as gone:
        svc.current(idle.token)
    assert gone.value.code == "session.missing"  # deleted on the way out

    busy = svc.sign_in(key)
    for _ in range(5):
        clock.at += timedelta(seconds=300)
        svc.current(busy.token)  # never idle, 1500 s in
    clock.at += timedelta(seconds=299)
    svc.current(busy.token)
    clock.at += timedelta(seconds=2)  # 1801 s after sign-in: the maximum is reached
    with pytest.raises(DignityError) as maxed:
        svc.current(busy.token)
    assert maxed.value.code == "session.expired"
    assert svc.purge() == 0

    stale = svc.sign_in(key)
    clock.at += timedelta(hours=1)
    assert svc.purge() == 1
    with pytest.raises(DignityError):
        svc.current(stale.token)


def test_no_preview_template_means_no_preview(db: Database, settings: Settings) -> None:
    assert settings.preview_url_template is None
    item = add_scan(db, "img-1")
    queue = ReviewQueue(db, settings)
    assert queue.item(item)["previews"] is False
    with pytest.raises(DignityError) as err:
        queue.preview(item, actor="x")
    assert err.value.code == "review.no_preview"
    assert "DIGNITY_PREVIEW_URL_TEMPLATE" in err.value.message


def test_concurrent_decisions_one_wins(db: Database, settings: Settings) -> None:
    item = add_scan(db, "img-race")
    queue = ReviewQueue(db, settings)
    barrier = threading.Barrier(6)
    results: list[str] = []

    def decide(n: int) -> None:
        barrier.wait()
        try:
            queue.decide(item, "keep", actor=f"reviewer-{n}")
            results.append("ok")
        except DignityError as exc:
            results.append(exc.code)

    threads = [threading.Thread(target=decide, args=(n,)) for n in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(results) == ["ok"] + ["review.decided"] * 5, results
    assert len(audits(db, "review.decided")) == 1


def test_a_claim_whose_decider_died_is_released(db: Database, settings: Settings) -> None:
    queue = ReviewQueue(db, settings)
    fresh, stale = add_scan(db, "img-claimed"), add_scan(db, "img-abandoned")
    with db.session() as s:
        for item_id, ago in ((fresh, timedelta(minutes=1)), (stale, timedelta(minutes=11))):
            row = s.get(ReviewItem, item_id)
            assert row is not None
            row.state, row.decided_by, row.decided_at = "deciding", "crashed", now() - ago
    listed = [i["id"] for i in queue.queue()]
    assert stale in listed and fresh not in listed  # being decided right now: not offered
    with pytest.raises(DignityError) as busy:
        queue.decide(fresh, "keep", actor="second")
    assert busy.value.code == "review.decided"
    assert queue.decide(stale, "keep", actor="second")["decided_by"] == "second"


def test_cookie_is_secure_over_https(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from dignity.api import create_app

    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'd.sqlite3'}")
    db = open_database(settings.resolved_database_url)
    _, key = KeyService(db).create("reviewer", name="tls")
    db.close()
    with TestClient(create_app(settings), base_url="https://review.example") as c:
        r = c.post("/review/api/login", json={"key": key})
        assert r.status_code == 200, r.text
        cookie = r.headers["set-cookie"].lower()
        assert "; secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        assert c.get("/review/api/session").json()["name"] == "tls"


# -- in Chromium ------------------------------------------------------------------------------


def test_review_in_the_browser_by_keyboard(
    server: LiveServer, store: Database, browser: Any, backend: str
) -> None:
    t = now()
    first = add_scan(store, "img-browser-1", priority=0, due_at=t - timedelta(minutes=30))
    second, _ = add_takedown(
        store,
        ["img-browser-2"],
        priority=0,
        due_in=timedelta(minutes=20),
        escalated=True,
        description="This picture of me was made with an AI app and posted without consent.",
    )
    third = add_scan(store, "img-browser-3", priority=0, due_at=t - timedelta(minutes=10))
    with store.session() as s:  # other tests' items out of the way: a queue of these alone
        s.execute(delete(ReviewItem).where(ReviewItem.id.not_in([first, second, third])))
    appeal = add_appeal(store, "img-browser-4")  # the fourth kind of work, last in line

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    problems: list[str] = []
    # Script errors and CSP violations; refused calls the test makes on purpose (a wrong key,
    # a rejection without a reason) only log "Failed to load resource".
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    shots = backend == "sqlite"  # one set of screenshots is enough
    try:
        page.goto(server.base + "/review")
        page.wait_for_url("**/review/login")
        page.wait_for_selector("#key:focus")
        if shots:
            save_screenshot(page, "review-login")
        page.keyboard.type("dg_wrong")
        page.keyboard.press("Enter")
        page.wait_for_selector("#login-error:has-text('not valid')")
        page.fill("#key", server.keys["reviewer"])
        page.keyboard.press("Enter")
        page.wait_for_url("**/review")
        page.wait_for_selector(f".queue-item[data-id='{first}']")
        assert "test-reviewer" in page.inner_text("#who")
        order = [
            int(x)
            for x in page.eval_on_selector_all(".queue-item", "e => e.map(b => b.dataset.id)")
        ]
        assert order == [first, third, second, appeal]
        assert "Overdue" in page.inner_text(f".queue-item[data-id='{first}'] .clock")
        assert (
            page.eval_on_selector(
                f".queue-item[data-id='{first}'] .clock",
                "e => getComputedStyle(e).color",
            )
            == "rgb(163, 38, 42)"
        )  # overdue in red
        assert "escalated" in page.inner_text(f".queue-item[data-id='{second}']")
        if shots:
            save_screenshot(page, "review-queue")

        # Open the first item by keyboard: the evidence and a blurred preview.
        page.keyboard.press("j")
        page.wait_for_selector(f"#item[data-id='{first}'][data-kind='Scan']")
        assert page.evaluate("document.activeElement.dataset.id") == str(first)
        page.wait_for_function(
            "() => { const i = document.querySelector('#previews img');"
            " return i && i.complete && i.naturalWidth > 0; }"
        )
        evidence = page.inner_text("#evidence-body")
        assert "possible-ncii" in evidence and "cases" in evidence and "nudity" in evidence
        assert "(blurred)" in page.inner_text("#previews")
        if shots:
            save_screenshot(page, "review-item-blurred")
        revealed = len(audits(store, "review.revealed"))
        page.keyboard.press("v")
        page.wait_for_selector("figure.preview.revealed img")
        page.wait_for_function(
            "() => { const i = document.querySelector('figure.revealed img');"
            " return i && i.complete && i.naturalWidth > 0; }"
        )
        assert len(audits(store, "review.revealed")) == revealed + 1
        if shots:
            save_screenshot(page, "review-item-revealed")

        # Remove asks first; Escape cancels and nothing is decided.
        page.keyboard.press("r")
        page.wait_for_selector("#confirm[open]")
        page.keyboard.press("Escape")
        page.wait_for_selector("#confirm", state="hidden")
        assert review_item(store, first).state == "open"

        # A note, then keep (x): decided, with who and when on the page.
        page.keyboard.press("n")
        assert page.evaluate("document.activeElement.id") == "note"
        page.keyboard.type("Benign landscape.")
        page.keyboard.press("Escape")
        page.keyboard.press("x")
        page.wait_for_selector("#item-decided:has-text('Decided: keep by test-reviewer')")
        row = review_item(store, first)
        assert row.state == "decided" and row.outcome == "keep" and row.note == "Benign landscape."
        page.wait_for_selector(f".queue-item[data-id='{first}']", state="detached")
        assert "keep by test-reviewer" in page.inner_text("#recent-list")

        # j goes on to what is now first: the other overdue scan; the help overlay opens on ?.
        page.keyboard.press("j")
        page.wait_for_selector(f"#item[data-id='{third}'][data-kind='Scan']")
        page.keyboard.press("?")
        page.wait_for_selector("#help[open]")
        page.keyboard.press("Escape")
        page.wait_for_selector("#help", state="hidden")
        page.keyboard.press("j")
        page.wait_for_selector(f"#item[data-id='{second}'][data-kind='Takedown']")
        text = page.inner_text("#evidence-body")
        assert "AI app" in text and "TAKE IT DOWN" in text
        # Reject needs a reason: the page says so and puts the cursor in the note.
        page.keyboard.press("x")
        page.wait_for_selector("#decision-error:has-text('say why')")
        assert page.evaluate("document.activeElement.id") == "note"
        assert review_item(store, second).state == "open"
        # Remove after all: r asks, Enter confirms.
        page.keyboard.press("Escape")
        page.keyboard.press("r")
        page.wait_for_selector("#confirm[open]")
        assert page.evaluate("document.activeElement.id") == "confirm-yes"
        page.keyboard.press("Enter")
        page.wait_for_selector("#item-decided:has-text('Decided: remove by test-reviewer')")
        assert review_item(store, second).outcome == "remove"
        assert not problems, problems
    finally:
        context.close()
