"""Takedown requests against a live server (SQLite file and PostgreSQL) and in real Chromium.

* The public JSON API: a valid request (receipt, 48-hour deadline, review item, audit records
  without secrets), an incomplete one completed later, withdrawal, status; wrong codes and
  unknown tickets look the same; bad input is a 4xx with a stable code and writes nothing; the
  per-address limits.
* Trusted flaggers' keyed API and who may read what; reviewers' list.
* Abuse controls through the CLI: unfounded rejections flag a requester, whose next request
  still goes in with the flag in the evidence; a suspended requester is refused (403).
* The intake and status pages driven by keyboard and labels, with screenshots kept as
  artifacts (``takedown-intake``, ``takedown-receipt``, ``takedown-status``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from dignity.audit.models import AuditRecord
from dignity.keys import KeyService
from dignity.storage.db import Database, open_database
from dignity.takedown.models import (
    RequesterFlag,
    ReviewItem,
    ScanRecord,
    TakedownItem,
    TakedownRequest,
)
from tests.integration.browser import browser, save_screenshot  # noqa: F401
from tests.integration.conftest import database_for
from tests.integration.server import LiveServer

PATTERN = r"https://pics\.example/p/(?P<content_id>[A-Za-z0-9]+)"
PER_HOUR = 6
VALID: dict[str, Any] = {
    "requester_kind": "self",
    "requester_name": "Alex Example",
    "requester_contact": "alex@example.org",
    "content": ["https://pics.example/p/abc123", "post42"],
    "description": "An intimate picture of me that was posted without my consent.",
    "good_faith": True,
    "signature_name": "Alex Example",
    "signature_confirmed": True,
    "ai_made": "ai",
    "jurisdiction": "EU",
}
_addresses = itertools.count(1)


@pytest.fixture(scope="module")
def td(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[LiveServer]:
    directory = Path(tmp_path_factory.mktemp("takedown"))
    with database_for(backend, directory) as url:
        server = LiveServer(
            directory,
            env={
                "DIGNITY_DATABASE_URL": url,
                # Each test speaks from its own client address, so the limits can be tested.
                "DIGNITY_PORTAL_CLIENT_IP_HEADER": "X-Forwarded-For",
                "DIGNITY_TRUSTED_PROXIES": "127.0.0.1/32",
                "DIGNITY_CONTENT_URL_PATTERN": PATTERN,
                "DIGNITY_PLATFORM_NAME": "Pics",
                "DIGNITY_TAKEDOWN_IP_REQUESTS_PER_HOUR": str(PER_HOUR),
                "DIGNITY_PORTAL_IP_FAILURES_PER_HOUR": "5",
                "DIGNITY_UNFOUNDED_FLAG_AFTER": "2",
            },
        )
        server.start()
        yield server
        server.stop()


@pytest.fixture(scope="module")
def db(td: LiveServer) -> Iterator[Database]:
    database = open_database(td.url)
    yield database
    database.close()


def public(td: LiveServer) -> httpx.Client:
    """A client from a fresh address (X-Forwarded-For, which the server is told to trust)."""
    n = next(_addresses)
    return httpx.Client(
        base_url=td.base, timeout=30, headers={"X-Forwarded-For": f"198.51.100.{n}"}
    )


def counts(db: Database) -> tuple[int, int, int, int]:
    with db.session() as s:
        return (
            s.scalar(select(func.count()).select_from(TakedownRequest)) or 0,
            s.scalar(select(func.count()).select_from(TakedownItem)) or 0,
            s.scalar(select(func.count()).select_from(ReviewItem)) or 0,
            s.scalar(select(func.count()).select_from(AuditRecord)) or 0,
        )


def cli(td: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dignity", "takedown", *args],
        env=td.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def request_row(db: Database, ticket: str) -> TakedownRequest:
    with db.session() as s:
        row = s.scalar(select(TakedownRequest).where(TakedownRequest.ticket == ticket))
        assert row is not None
        return row


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- pages --------------------------------------------------------------------------------


def test_pages_are_served_with_a_strict_policy(td: LiveServer) -> None:
    with public(td) as c:
        for path, marker in (("/takedown", 'id="intake"'), ("/takedown/status", 'id="lookup"')):
            r = c.get(path)
            assert r.status_code == 200, r.text
            assert marker in r.text
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert "<script>" not in r.text and " style=" not in r.text
            assert "/assets/app.css" in r.text and "/assets/intake.css" in r.text
        for name in ("intake.js", "keep.js", "status.js", "intake.css"):
            assert c.get(f"/assets/{name}").status_code == 200
        spec = c.get("/openapi.json").json()
        assert not any(p.startswith("/takedown") for p in spec["paths"])
        assert {"/v1/takedowns", "/v1/takedowns/{ticket}"} <= set(spec["paths"])


# -- the public API -----------------------------------------------------------------------


def test_valid_request_receipt_and_status(td: LiveServer, db: Database) -> None:
    with db.session() as s:  # an earlier scan of the reported content, as /v1/scan logs it
        for _ in range(2):
            s.add(ScanRecord(content_id="abc123", md5="0" * 32, sha256="1" * 64, decision="allow"))
    with db.session() as s:
        latest = s.scalar(select(func.max(ScanRecord.id)).where(ScanRecord.content_id == "abc123"))
    with public(td) as c:
        r = c.post("/takedown/api/requests", json=VALID)
        assert r.status_code == 201, r.text
        assert r.headers["cache-control"] == "no-store"
        receipt = r.json()
    assert receipt["state"] == "valid" and receipt["missing"] == []
    assert receipt["validity"]["take_it_down"]["valid"] is True
    # A content id names the exact item on the platform, as its URL does.
    assert receipt["validity"]["dsa_art16"]["valid"] is True
    assert receipt["item_problems"] == []
    assert receipt["status_url"] == "/takedown/status"
    assert receipt["ticket"].startswith("TD-") and len(receipt["ticket"]) == 14
    code = receipt["access_code"]
    assert len(code.replace("-", "")) == 28
    assert when(receipt["due_at"]) - when(receipt["received_at"]) == timedelta(hours=48)

    row = request_row(db, receipt["ticket"])
    normalised = code.replace("-", "")
    assert row.access_hash == hashlib.sha256(normalised.encode()).hexdigest()
    assert row.state == "valid" and row.channel == "form" and row.priority == 1
    assert row.signed_at is not None
    with db.session() as s:
        items = list(s.scalars(select(TakedownItem).where(TakedownItem.request_id == row.id)))
        review = list(s.scalars(select(ReviewItem).where(ReviewItem.request_id == row.id)))
        audits = list(
            s.scalars(
                select(AuditRecord).where(AuditRecord.subject == f"takedown_request:{row.id}")
            )
        )
    assert [(i.ref, i.content_id, i.scan_id) for i in items] == [
        ("https://pics.example/p/abc123", "abc123", latest),
        ("post42", "post42", None),
    ]
    assert [(i.kind, i.priority, i.state) for i in review] == [("takedown", 1, "open")]
    assert [a.action for a in audits] == ["takedown.received", "takedown.valid"]
    assert {a.actor for a in audits} == {"requester"}
    for a in audits:  # no secret, no contact detail in the audit log
        assert normalised not in a.detail and code not in a.detail
        assert "alex@example.org" not in a.detail

    with public(td) as c:
        # Typed sloppily: lower case, spaces instead of dashes, the ticket without its prefix.
        sloppy = {
            "ticket": receipt["ticket"][3:].lower(),
            "access_code": code.lower().replace("-", " "),
        }
        r = c.post("/takedown/api/status", json=sloppy)
        assert r.status_code == 200, r.text
        status = r.json()
    assert status["state"] == "valid" and status["ticket"] == receipt["ticket"]
    assert status["due_at"] == receipt["due_at"]
    assert [i["state"] for i in status["items"]] == ["pending", "pending"]
    assert status["form"] is None and status["outcome"] is None


def test_incomplete_request_is_completed_later(td: LiveServer, db: Database) -> None:
    body = {**VALID, "good_faith": False, "description": ""}
    with public(td) as c:
        receipt = c.post("/takedown/api/requests", json=body).json()
        assert receipt["state"] == "incomplete" and receipt["due_at"] is None
        assert {m["key"] for m in receipt["missing"]} == {
            "good_faith",
            "explanation",
            "accuracy",
        }
        row = request_row(db, receipt["ticket"])
        with db.session() as s:
            assert s.scalars(select(ReviewItem).where(ReviewItem.request_id == row.id)).all() == []
        creds = {"ticket": receipt["ticket"], "access_code": receipt["access_code"]}
        status = c.post("/takedown/api/status", json=creds).json()
        assert status["state"] == "incomplete"
        assert status["form"]["requester_contact"] == "alex@example.org"

        wrong = {**creds, "access_code": "0" * 28, "fields": {"good_faith": True}}
        r = c.post("/takedown/api/complete", json=wrong)
        assert r.status_code == 403 and r.json()["code"] == "takedown.bad_credentials"
        assert request_row(db, receipt["ticket"]).state == "incomplete"

        r = c.post("/takedown/api/complete", json={**creds, "fields": {"bogus": 1}})
        assert r.status_code == 422 and r.json()["code"] == "request.invalid"

        r = c.post(
            "/takedown/api/complete",
            json={
                **creds,
                "fields": {"good_faith": True, "content": ["https://pics.example/p/z9"]},
            },
        )
        assert r.status_code == 200, r.text
        done = r.json()
        assert done["state"] == "valid" and done["missing"] == []
        assert [i["ref"] for i in done["items"]] == ["https://pics.example/p/z9"]
        valid_at = request_row(db, receipt["ticket"]).valid_at
        assert valid_at is not None
        assert when(done["due_at"]) - when(done["valid_at"]) == timedelta(hours=48)
        assert when(done["valid_at"]) > when(done["received_at"])  # the clock started now

        r = c.post("/takedown/api/complete", json={**creds, "fields": {"good_faith": True}})
        assert r.status_code == 409 and r.json()["code"] == "takedown.not_incomplete"
    with db.session() as s:
        (item,) = s.scalars(select(ReviewItem).where(ReviewItem.request_id == row.id)).all()
        assert item.state == "open" and item.due_at is not None


def test_withdraw(td: LiveServer, db: Database) -> None:
    with public(td) as c:
        receipt = c.post("/takedown/api/requests", json=VALID).json()
        creds = {"ticket": receipt["ticket"], "access_code": receipt["access_code"]}
        r = c.post("/takedown/api/withdraw", json=creds)
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "withdrawn"
        r = c.post("/takedown/api/withdraw", json=creds)
        assert r.status_code == 409 and r.json()["code"] == "takedown.closed"
        assert c.post("/takedown/api/status", json=creds).json()["state"] == "withdrawn"
    row = request_row(db, receipt["ticket"])
    assert row.closed_at is not None
    with db.session() as s:
        (item,) = s.scalars(select(ReviewItem).where(ReviewItem.request_id == row.id)).all()
    assert item.state == "closed"


def test_wrong_code_and_unknown_ticket_look_the_same(td: LiveServer) -> None:
    with public(td) as c:
        receipt = c.post("/takedown/api/requests", json=VALID).json()
        wrong_code = c.post(
            "/takedown/api/status", json={"ticket": receipt["ticket"], "access_code": "1" * 28}
        )
        unknown = c.post(
            "/takedown/api/status",
            json={"ticket": "TD-00000-00000", "access_code": receipt["access_code"]},
        )
        garbage = c.post("/takedown/api/status", json={"ticket": "x", "access_code": "y"})
        for r in (wrong_code, unknown, garbage):
            assert r.status_code == 403
            assert r.json() == wrong_code.json()
        assert wrong_code.json()["code"] == "takedown.bad_credentials"
        for _ in range(2):
            r = c.post("/takedown/api/withdraw", json={"ticket": "x", "access_code": "y"})
            assert r.status_code == 403
        # Five wrong tries an hour from one address; the sixth is refused before any lookup,
        # even with the right code.
        right = {"ticket": receipt["ticket"], "access_code": receipt["access_code"]}
        r = c.post("/takedown/api/status", json=right)
        assert r.status_code == 429 and r.json()["code"] == "rate.limited"
        assert int(r.headers["retry-after"]) > 0
    with public(td) as other:
        assert other.post("/takedown/api/status", json=right).status_code == 200


BAD_BODIES: list[tuple[str, dict[str, Any], int, str]] = [
    ("unknown field", {**VALID, "password": "x"}, 422, "request.invalid"),
    ("wrong kind", {**VALID, "requester_kind": "friend"}, 422, "request.invalid"),
    ("good faith as text", {**VALID, "good_faith": "yes"}, 422, "request.invalid"),
    ("content as text", {**VALID, "content": "https://pics.example/p/1"}, 422, "request.invalid"),
    ("name too long", {**VALID, "requester_name": "x" * 201}, 422, "request.invalid"),
    (
        "51 items",
        {**VALID, "content": [f"https://pics.example/p/x{i}" for i in range(51)]},
        422,
        "takedown.too_many_items",
    ),
    ("spaces in a line", {**VALID, "content": ["see pics.example"]}, 422, "takedown.bad_content"),
    ("ftp link", {**VALID, "content": ["ftp://pics.example/p/1"]}, 422, "takedown.bad_content"),
    ("control characters", {**VALID, "requester_name": "A\x07B"}, 422, "takedown.invalid"),
]


def test_bad_input_is_refused_and_writes_nothing(td: LiveServer, db: Database) -> None:
    before = counts(db)
    with public(td) as c:
        for name, body, status, code in BAD_BODIES:
            r = c.post("/takedown/api/requests", json=body)
            assert (r.status_code, r.json()["code"]) == (status, code), (name, r.text)
            assert r.json()["message"]
        r = c.post("/takedown/api/requests", content=b"{not json", headers=_json())
        assert (r.status_code, r.json()["code"]) == (422, "request.invalid")
        r = c.post("/takedown/api/requests", content=json.dumps(VALID).encode())
        assert (r.status_code, r.json()["code"]) == (415, "request.unsupported_media_type")
        big = json.dumps({**VALID, "description": "x" * 300_000}).encode()
        r = c.post("/takedown/api/requests", content=big, headers=_json())
        assert (r.status_code, r.json()["code"]) == (413, "request.too_large")
        r = c.post("/takedown/api/check", json={**VALID, "ai_made": "robot"})
        assert r.status_code == 422
        # Exactly 50 distinct items is fine (checked, not filed: the check writes nothing).
        fifty = {**VALID, "content": [f"https://pics.example/p/x{i}" for i in range(50)]}
        r = c.post("/takedown/api/check", json=fifty)
        assert r.status_code == 200 and r.json()["validity"]["valid"] is True
    assert counts(db) == before


def _json() -> dict[str, str]:
    return {"Content-Type": "application/json"}


def test_requests_per_address_are_limited(td: LiveServer, db: Database) -> None:
    with public(td) as c:
        for _ in range(PER_HOUR):
            assert c.post("/takedown/api/requests", json=VALID).status_code == 201
        before = counts(db)
        r = c.post("/takedown/api/requests", json=VALID)
        assert r.status_code == 429 and r.json()["code"] == "rate.limited"
        assert int(r.headers["retry-after"]) > 0
        assert counts(db) == before
    with public(td) as other:
        assert other.post("/takedown/api/requests", json=VALID).status_code == 201


# -- trusted flaggers and reviewers -------------------------------------------------------


def test_trusted_flagger_api_and_roles(td: LiveServer, db: Database) -> None:
    keys = KeyService(db)
    other_flagger = keys.create("flagger", name="another-hotline")[1]
    with td.client("flagger") as flagger:
        r = flagger.post("/v1/takedowns", json=VALID)
        assert r.status_code == 201, r.text
        receipt = r.json()
        assert receipt["state"] == "valid"
        r = flagger.get(f"/v1/takedowns/{receipt['ticket']}")
        assert r.status_code == 200, r.text
        mine = r.json()
        assert mine["channel"] == "flagger" and mine["priority"] == 0
        assert mine["flagger_name"] == "test-flagger"
        assert mine["requester_flag"] is None and mine["requester_fp"] is None
        r = flagger.post("/v1/takedowns", json={**VALID, "extra": 1})
        assert r.status_code == 422
        assert flagger.get("/v1/takedowns").status_code == 403
    row = request_row(db, receipt["ticket"])
    with db.session() as s:
        (item,) = s.scalars(select(ReviewItem).where(ReviewItem.request_id == row.id)).all()
        actors = set(
            s.scalars(
                select(AuditRecord.actor).where(AuditRecord.subject == f"takedown_request:{row.id}")
            )
        )
    assert item.priority == 0
    assert actors == {f"key:{row.flagger_key_id}:test-flagger"}

    with public(td) as c:
        public_ticket = c.post("/takedown/api/requests", json=VALID).json()["ticket"]
    with httpx.Client(
        base_url=td.base, headers={"Authorization": f"Bearer {other_flagger}"}
    ) as other:
        # Another flagger's request, and a public one, are as if they did not exist.
        for ticket in (receipt["ticket"], public_ticket):
            r = other.get(f"/v1/takedowns/{ticket}")
            assert r.status_code == 404 and r.json()["code"] == "takedown.not_found"
    with td.client("reviewer") as reviewer:
        r = reviewer.get(f"/v1/takedowns/{receipt['ticket']}")
        assert r.status_code == 200
        evidence = r.json()
        assert evidence["requester_contact"] == "alex@example.org"
        assert evidence["requester_history"]["requests"] >= 1
        assert [i["content_id"] for i in evidence["items"]] == ["abc123", "post42"]
        r = reviewer.get("/v1/takedowns", params={"state": "valid", "limit": 1000})
        assert r.status_code == 200
        listed = {x["ticket"]: x for x in r.json()}
        assert receipt["ticket"] in listed and public_ticket in listed
        assert listed[receipt["ticket"]]["item_count"] == 2
        assert reviewer.get("/v1/takedowns", params={"overdue": True}).json() == []
        assert reviewer.get("/v1/takedowns", params={"state": "nope"}).status_code == 422
        assert reviewer.post("/v1/takedowns", json=VALID).status_code == 403
        assert reviewer.get("/v1/takedowns/TD-00000-00000").status_code == 404
    for role in ("platform", "curator", "partner"):
        with td.client(role) as c:
            assert c.get(f"/v1/takedowns/{receipt['ticket']}").status_code == 403
            assert c.post("/v1/takedowns", json=VALID).status_code == 403
    with td.client() as anon:
        assert anon.get("/v1/takedowns").status_code == 401


# -- abuse controls -----------------------------------------------------------------------


def test_unfounded_rejections_flag_and_suspension_refuses(td: LiveServer, db: Database) -> None:
    body = {**VALID, "requester_contact": "repeat@example.org"}
    tickets = []
    with public(td) as c:
        for _ in range(2):
            tickets.append(c.post("/takedown/api/requests", json=body).json())
    first = cli(td, "reject", tickets[0]["ticket"], "--reason", "a landscape photo", "--unfounded")
    assert first.returncode == 0, first.stderr
    assert lines(first.stdout)[0]["requester_flagged"] is False
    second = cli(td, "reject", tickets[1]["ticket"], "--reason", "not intimate", "--unfounded")
    assert lines(second.stdout)[0]["requester_flagged"] is True
    again = cli(td, "reject", tickets[1]["ticket"], "--reason", "again")
    assert again.returncode == 3 and "takedown.closed" in again.stderr

    with public(td) as c:
        creds = {"ticket": tickets[0]["ticket"], "access_code": tickets[0]["access_code"]}
        status = c.post("/takedown/api/status", json=creds).json()
        assert status["state"] == "rejected"
        assert status["outcome"]["reason"] == "a landscape photo"
        assert "Digital Services Coordinator" in status["outcome"]["how_to_contest"]
        third = c.post("/takedown/api/requests", json=body)
        assert third.status_code == 201  # a flagged requester's request still goes in
    with td.client("reviewer") as reviewer:
        evidence = reviewer.get(f"/v1/takedowns/{third.json()['ticket']}").json()
    flag = evidence["requester_flag"]
    assert flag["flagged"] is True and flag["unfounded"] == 2 and flag["suspended"] is False
    assert evidence["requester_history"]["unfounded_365d"] == 2
    fp = evidence["requester_fp"]
    assert fp == hashlib.sha256(b"email:repeat@example.org").hexdigest()
    assert [f["requester_fp"] for f in lines(cli(td, "flags").stdout)] == [fp]

    suspended = cli(td, "suspend", fp, "--days", "7", "--note", "warned")
    assert suspended.returncode == 0, suspended.stderr
    assert lines(suspended.stdout)[0]["suspended"] is True
    before = counts(db)
    with public(td) as c:
        r = c.post(
            "/takedown/api/requests", json={**body, "requester_contact": "Repeat@Example.org"}
        )
        assert r.status_code == 403 and r.json()["code"] == "takedown.suspended"
        assert counts(db) == before
        other = c.post("/takedown/api/requests", json=VALID)
        assert other.status_code == 201  # everyone else is unaffected
    with td.client("flagger") as flagger:  # the same contact through a flagger key: refused too
        assert flagger.post("/v1/takedowns", json=body).status_code == 403

    assert cli(td, "unsuspend", fp).returncode == 0
    with public(td) as c:
        assert c.post("/takedown/api/requests", json=body).status_code == 201
    with db.session() as s:
        row = s.scalar(select(RequesterFlag).where(RequesterFlag.requester_fp == fp))
        assert row is not None and row.suspended_until is None and row.note == "warned"
    bad = cli(td, "suspend", "not-a-fingerprint", "--days", "7")
    assert bad.returncode == 3 and "takedown.bad_fingerprint" in bad.stderr


def test_cli_lists_and_escalates(td: LiveServer) -> None:
    with public(td) as c:
        receipt = c.post("/takedown/api/requests", json=VALID).json()
    shown = cli(td, "show", receipt["ticket"].lower())
    assert shown.returncode == 0, shown.stderr
    evidence = lines(shown.stdout)[0]
    assert evidence["ticket"] == receipt["ticket"] and evidence["state"] == "valid"
    assert "access_code" not in shown.stdout and receipt["access_code"] not in shown.stdout
    listed = lines(cli(td, "list", "--state", "valid").stdout)
    assert receipt["ticket"] in {r["ticket"] for r in listed}
    assert all(r["state"] == "valid" for r in listed)
    assert lines(cli(td, "overdue").stdout) == []
    assert lines(cli(td, "list", "--overdue").stdout) == []
    assert lines(cli(td, "escalate").stdout) == [{"escalated": 0}]  # nothing is 24 h old
    missing = cli(td, "show", "TD-00000-00000")
    assert missing.returncode == 3 and "takedown.not_found" in missing.stderr


# -- in the browser -----------------------------------------------------------------------


def _page(
    browser: Any,  # noqa: F811
    td: LiveServer,
    **options: Any,
) -> tuple[Any, Any, list[str], list[str]]:
    """A page from a fresh client address, recording every URL it asks for and its errors;
    ``options`` go to the browser context (downloads, clipboard permissions)."""
    n = next(_addresses)
    context = browser.new_context(
        extra_http_headers={"X-Forwarded-For": f"203.0.113.{n}"}, **options
    )
    page = context.new_page()
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Script errors and CSP violations; failed fetches are checked by status below (a wrong
    # access code is meant to be a 403).
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and "Failed to load resource" not in msg.text
            else None
        ),
    )
    page.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}")
            if r.status == 404 and not r.url.endswith("/favicon.ico")
            else None
        ),
    )
    return context, page, urls, errors


def test_intake_and_status_pages_by_keyboard(browser: Any, td: LiveServer) -> None:  # noqa: F811
    from playwright.sync_api import expect

    context, page, urls, errors = _page(
        browser, td, accept_downloads=True, permissions=["clipboard-read", "clipboard-write"]
    )
    try:
        page.goto(td.base + "/takedown")
        checker = page.locator("#checker-body")
        # A representative is asked for their authority; the field appears when chosen.
        authority = page.get_by_label("Your authority to act for them")
        assert authority.is_hidden()
        page.get_by_label("I act for the person shown").check()
        authority.wait_for(state="visible")
        checker.locator("li[data-key=authority]").first.wait_for()
        page.get_by_label("I am the person shown").check()
        authority.wait_for(state="hidden")
        expect(checker.locator("li[data-key=authority]")).to_have_count(0)
        # A line the server cannot read is explained next to the button, before sending.
        page.get_by_label("Where is it?").fill("see my photo")
        expect(page.locator("#form-error")).to_contain_text("one link or content id")
        page.get_by_label("Your full name", exact=True).fill("Alex Example")
        page.get_by_label("Your email address").fill("alex@example.org")
        links = page.get_by_label("Where is it?")
        links.fill("https://pics.example/p/abc123")
        page.keyboard.press("Enter")
        page.keyboard.type("https://elsewhere.example/x")
        # The checker lists what is missing (the statement, the signature) and, on its own, the
        # foreign link, which does not hold back the other.
        expect(page.locator("#form-error")).to_have_text("")
        checker.locator("li[data-key=content_item]").wait_for()
        assert "elsewhere.example" in checker.inner_text()
        assert checker.locator("li[data-key=location]").count() == 0
        assert checker.locator("li[data-key=good_faith]").count() == 1
        links.fill("https://pics.example/p/abc123")
        page.get_by_label("Why should it be taken down?").fill(
            "An intimate picture of me, posted without my consent."
        )
        page.get_by_label("Made or altered with AI").check()
        page.get_by_label("Where do you live?").select_option("EU")
        # What is left is listed: the statement and the signature (kept as an artifact).
        expect(checker.locator("li[data-key=content_item]")).to_have_count(0)
        expect(checker.locator("li[data-key=explanation]")).to_have_count(0)
        expect(checker.locator("li[data-key=signature_confirmed]")).to_have_count(1)
        assert checker.locator("li[data-key=good_faith]").count() == 1
        save_screenshot(page, "takedown-intake")
        page.get_by_label("I believe in good faith").focus()
        page.keyboard.press("Space")
        page.get_by_label("Signature: type your full name").fill("Alex Example")
        confirm = page.get_by_label("I confirm that typing my name")
        assert confirm.get_attribute("required") is not None
        # Sending without the required confirmation is stopped by the browser itself.
        page.get_by_role("button", name="Send my request").click()
        assert page.locator("#receipt").is_hidden()
        confirm.focus()
        page.keyboard.press("Space")
        page.locator("#checker-summary.ok").wait_for()
        assert checker.locator("[data-regime=take_it_down] .ok").count() == 1
        assert checker.locator("[data-regime=dsa_art16] .ok").count() == 1

        page.get_by_role("button", name="Send my request").focus()
        page.keyboard.press("Enter")
        receipt = page.locator("#receipt")
        receipt.wait_for(state="visible")
        ticket = page.locator("#receipt-ticket").inner_text().strip()
        code = page.locator("#receipt-code").inner_text().strip()
        assert ticket.startswith("TD-") and len(code.replace("-", "")) == 28
        assert "Write these down" in page.locator("#write-down").inner_text()
        assert "valid" in page.locator("#receipt-state").inner_text()
        assert page.locator("#intake").is_hidden()
        save_screenshot(page, "takedown-receipt")

        # The codes can be kept, by keyboard: Save downloads a text file made in the page with
        # the ticket, the code and the status page's address; Copy puts the same text on the
        # clipboard; neither asks the server for anything.
        asked = len(urls)
        with page.expect_download() as download_info:
            receipt.get_by_role("button", name="Save as a file").focus()
            page.keyboard.press("Enter")
        text = Path(download_info.value.path()).read_text(encoding="utf-8")
        assert text.startswith(f"Ticket: {ticket}\nAccess code: {code}\n"), text
        assert f" at {td.base}/takedown/status\n" in text, text
        expect(page.locator("#receipt-keep-status")).to_have_text(
            "Saved. Look for the file in your downloads."
        )
        receipt.get_by_role("button", name="Copy").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#receipt-keep-status")).to_contain_text("Copied.")
        assert page.evaluate("navigator.clipboard.readText()") == text
        assert not [u for u in urls[asked:] if u.startswith(td.base)], urls[asked:]

        receipt.get_by_role("link", name="status page").click()
        page.wait_for_url("**/takedown/status")
        page.get_by_label("Ticket").fill(ticket)
        page.get_by_label("Access code").fill(code)
        page.keyboard.press("Enter")
        page.locator("#request").wait_for(state="visible")
        assert page.locator("#request-ticket").inner_text() == ticket
        assert page.locator("#request-state").get_attribute("data-state") == "valid"
        assert "UTC" in page.locator("#request-due").inner_text()
        assert "abc123" in page.locator("#request-items").inner_text()
        save_screenshot(page, "takedown-status")
        assert not any(ticket in u or code in u for u in urls)  # never in an address
        assert errors == []
    finally:
        context.close()


def test_status_page_completes_and_withdraws(browser: Any, td: LiveServer) -> None:  # noqa: F811
    with public(td) as c:
        receipt = c.post(
            "/takedown/api/requests", json={**VALID, "good_faith": False, "description": ""}
        ).json()
    context, page, urls, errors = _page(browser, td)
    try:
        page.goto(td.base + "/takedown/status")
        page.get_by_label("Ticket").fill(receipt["ticket"])
        page.get_by_label("Access code").fill("WRONG")
        page.get_by_role("button", name="Show my request").click()
        page.locator("#lookup-error").filter(has_text="do not match").wait_for()
        page.get_by_label("Access code").fill(receipt["access_code"])
        page.get_by_role("button", name="Show my request").click()
        page.locator("#complete").wait_for(state="visible")
        assert page.locator("#request-state").get_attribute("data-state") == "incomplete"
        keys = page.locator("#complete-missing li").evaluate_all(
            "items => items.map(i => i.dataset.key)"
        )
        assert set(keys) == {"good_faith", "explanation", "accuracy"}
        page.get_by_label("Why it should be taken down").fill(
            "An intimate picture of me, posted without my consent."
        )
        page.get_by_label("I believe in good faith").check()
        page.get_by_role("button", name="Update my request").click()
        page.locator("#request-state[data-state=valid]").wait_for()
        assert page.locator("#complete").is_hidden()
        assert "UTC" in page.locator("#request-due").inner_text()

        page.get_by_role("button", name="Withdraw this request").click()
        page.get_by_role("button", name="No, keep it").click()
        assert page.locator("#request-state").get_attribute("data-state") == "valid"
        page.get_by_role("button", name="Withdraw this request").click()
        page.get_by_role("button", name="Yes, withdraw it").click()
        page.locator("#request-state[data-state=withdrawn]").wait_for()
        assert page.locator("#withdraw-block").is_hidden()
        assert not any(receipt["access_code"] in u for u in urls)
        assert errors == []
    finally:
        context.close()
