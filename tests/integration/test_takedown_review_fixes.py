"""Takedown intake and review as a newcomer meets them, against one real server (SQLite file)
and in real Chromium: content ids and links judged line by line (the 48-hour clock runs for the
good lines, the rest are listed with what to fix); one queue entry per piece of content, never
listing itself as its own copy; a request whose content another decision removed closes; the
reviewer who removed something is offered no outcome on its appeal (buttons and keys alike);
scan reasons in words; Reveal only with a preview; the platform named; and no regulator
complaint line under a removal the requester asked for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dignity.matching.banks import BankService, NewEntry
from dignity.samples import encode, landscape
from dignity.storage.db import Database
from dignity.takedown.models import ReviewItem
from tests.integration.browser import browser

# Fixtures used here: Chromium, the server's database (``store``) and a signed-in reviewer.
__all__ = ["browser", "reviewer", "store"]
from tests.integration.server import LiveServer
from tests.integration.test_review_ui import (
    Reviewer,
    add_appeal,
    add_scan,
    add_takedown,
    reviewer,
    store,
)
from tests.integration.test_takedown_requests import public

PLATFORM = "Example Pics"
VALID: dict[str, Any] = {
    "requester_kind": "self",
    "requester_name": "Alex Example",
    "requester_contact": "alex@example.org",
    "content": [],
    "description": "An intimate picture of me that was posted without my consent.",
    "good_faith": True,
    "signature_name": "Alex Example",
    "signature_confirmed": True,
    "ai_made": "real",
    "jurisdiction": "EU",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(
        tmp_path_factory.mktemp("td-fixes"),
        env={
            "DIGNITY_PLATFORM_NAME": PLATFORM,
            "DIGNITY_CONTENT_URL_PATTERN": r"https://pics\.example/p/(?P<content_id>\w+)",
            # Previews from a port nobody listens on: every preview fails.
            "DIGNITY_PREVIEW_URL_TEMPLATE": "http://127.0.0.1:9/media/{content_id}",
            "DIGNITY_PORTAL_CLIENT_IP_HEADER": "X-Forwarded-For",
            "DIGNITY_TRUSTED_PROXIES": "127.0.0.1/32",
        },
    )
    live.start()
    yield live
    live.stop()


def file_request(server: LiveServer, content: list[str]) -> dict[str, Any]:
    with public(server) as c:
        r = c.post("/takedown/api/requests", json={**VALID, "content": content})
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out


def status_of(server: LiveServer, receipt: dict[str, Any]) -> dict[str, Any]:
    with public(server) as c:
        creds = {"ticket": receipt["ticket"], "access_code": receipt["access_code"]}
        r = c.post("/takedown/api/status", json=creds)
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out


def queue_item_of(reviewer: Reviewer, ticket: str) -> int:
    for item in reviewer.get("/review/api/queue").json()["items"]:
        if ticket in item["summary"]:
            return int(item["id"])
    raise AssertionError(f"{ticket} is not in the queue")


# -- intake ------------------------------------------------------------------------------------


def test_each_line_is_judged_on_its_own(server: LiveServer) -> None:
    elsewhere = "https://elsewhere.example/p/1"
    receipt = file_request(server, ["https://pics.example/p/abc123", "post5", elsewhere])
    # The off-platform link does not hold back the others: the clock runs for them.
    assert receipt["state"] == "valid" and receipt["due_at"] is not None, receipt
    # A content id is an exact location on the platform, for the DSA too.
    assert receipt["validity"]["dsa_art16"]["valid"] is True, receipt["validity"]
    [problem] = receipt["item_problems"]
    assert problem["ref"] == elsewhere and PLATFORM in problem["message"]
    assert "content id" in problem["message"]
    status = status_of(server, receipt)
    assert [(i["ref"], i["state"]) for i in status["items"]] == [
        ("https://pics.example/p/abc123", "pending"),
        ("post5", "pending"),
        (elsewhere, "invalid"),
    ]
    assert status["items"][2]["problem"] == problem["message"]
    with public(server) as c:
        checked = c.post("/takedown/api/check", json={**VALID, "content": ["post5"]}).json()
        assert checked["validity"]["valid"] and checked["validity"]["dsa_art16"]["valid"]
        assert "not a URL" not in json.dumps(checked)
        # Only bad lines: nothing to act on, and the message says which and why.
        only_bad = c.post("/takedown/api/check", json={**VALID, "content": [elsewhere]}).json()
        assert only_bad["validity"]["valid"] is False
        assert {m["key"] for m in only_bad["missing"]} == {"location", "exact_location"}
        page = c.get("/takedown").text
        assert f'<meta name="dignity-platform" content="{PLATFORM}">' in page


# -- the queue ---------------------------------------------------------------------------------


def _review_bank(server: LiveServer, store: Database, data: bytes) -> None:
    from dignity.hashing.signals import hash_bytes

    h = hash_bytes(data)
    assert h.pdq is not None
    banks = BankService(store)
    banks.create_bank("suspect", purpose="review")
    banks.add_entries("suspect", [NewEntry("pdq", h.pdq.hex, "person", "curated")])


def _scan(server: LiveServer, data: bytes, content_id: str) -> dict[str, Any]:
    with server.client("platform") as c:
        r = c.post(
            "/v1/scan",
            params={"content_id": content_id},
            files={"file": ("u.jpg", data, "image/jpeg")},
        )
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out


def test_the_same_content_is_listed_once(
    server: LiveServer, store: Database, reviewer: Reviewer
) -> None:
    photo = encode(landscape(61), "JPEG", quality=90)
    _review_bank(server, store, photo)
    deadline = time.monotonic() + 10  # the server picks up the new bank within a refresh
    while _scan(server, photo, "dup-1")["decision"]["action"] != "review":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    _scan(server, photo, "dup-1")  # the same content scanned again
    _scan(server, photo, "dup-2")  # the same bytes under another id: a known copy
    items = reviewer.get("/review/api/queue").json()["items"]
    listed = [i["content_id"] for i in items if i["content_id"] in ("dup-1", "dup-2")]
    assert sorted(listed) == ["dup-1", "dup-2"], items
    first = next(i for i in items if i["content_id"] == "dup-1")
    body = reviewer.get(f"/review/api/items/{first['id']}").json()
    assert [c["content_id"] for c in body["copies"]] == ["dup-2"]
    # Reasons in words, not JSON: the bank and the distance, said.
    reasons = [r["text"] for r in body["scan"]["reasons"]]
    assert reasons and all("{" not in t and "[" not in t for t in reasons), reasons
    assert any("bank suspect" in t for t in reasons), reasons


def test_a_request_whose_content_went_with_another_closes(
    server: LiveServer, store: Database, reviewer: Reviewer
) -> None:
    first = file_request(server, ["gone1"])
    second = file_request(server, ["https://pics.example/p/gone1"])
    third = file_request(server, ["gone1", "stays1"])
    r = reviewer.decide(queue_item_of(reviewer, first["ticket"]), "remove")
    assert r.status_code == 200, r.text
    closed = status_of(server, second)
    assert closed["state"] == "removed" and [i["state"] for i in closed["items"]] == ["removed"]
    # Removed as asked: nothing to complain to a regulator about.
    assert closed["outcome"]["how_to_contest"] is None
    assert status_of(server, first)["outcome"]["how_to_contest"] is None
    # A request with content still there stays open, its removed line marked.
    still = status_of(server, third)
    assert still["state"] == "valid"
    assert [i["state"] for i in still["items"]] == ["removed", "pending"]
    queued = {i["summary"] for i in reviewer.get("/review/api/queue").json()["items"]}
    assert not any(second["ticket"] in s for s in queued)
    assert any(third["ticket"] in s for s in queued)
    # A refusal still says how to contest it.
    item = queue_item_of(reviewer, third["ticket"])
    assert reviewer.decide(item, "reject", note="Not the person shown.").status_code == 200
    assert "FTC" in status_of(server, third)["outcome"]["how_to_contest"]


def test_appeal_outcomes_are_not_offered_to_the_deciding_reviewer(
    server: LiveServer, store: Database, reviewer: Reviewer
) -> None:
    own = add_appeal(store, "img-own-appeal", removed_by="test-reviewer")
    body = reviewer.get(f"/review/api/items/{own}").json()
    assert body["outcomes"] == [] and "another reviewer" in body["not_yours"]
    listed = {i["id"]: i for i in reviewer.get("/review/api/queue").json()["items"]}
    assert listed[own]["outcomes"] == []
    admin = Reviewer(server, "admin")
    try:
        assert admin.get(f"/review/api/items/{own}").json()["outcomes"] == ["uphold", "reverse"]
    finally:
        admin.close()


# -- the review page in Chromium ---------------------------------------------------------------


def test_review_page_hides_what_does_not_apply(
    server: LiveServer, store: Database, browser: Any
) -> None:
    scan = add_scan(store, "no-preview-1", priority=0)
    appeal = add_appeal(store, "img-own-2", removed_by="test-reviewer")
    takedown, _ = add_takedown(store, ["td-ui-1"], priority=0)
    with store.session() as s:  # a line the intake found off the platform
        from dignity.takedown.models import TakedownItem

        request_id = s.get(ReviewItem, takedown).request_id  # type: ignore[union-attr]
        s.add(TakedownItem(request_id=request_id, ref="https://else.example/x", state="invalid"))
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        page.goto(server.base + "/review/login")
        page.fill("#key", server.keys["reviewer"])
        page.keyboard.press("Enter")
        page.wait_for_url("**/review")

        # A scan: reasons in words, no word of a requester, Reveal off without a preview.
        page.wait_for_selector(f".queue-item[data-id='{scan}']")
        page.click(f".queue-item[data-id='{scan}']")
        page.wait_for_selector(f"#item[data-id='{scan}']")
        page.wait_for_selector(".preview-error")  # the preview could not be had
        evidence = page.inner_text("#evidence-body")
        assert "nudity score: 0.91" in evidence and '{"' not in evidence
        assert "requester" not in page.inner_text("#decision").lower()
        assert page.is_disabled("#reveal")
        page.keyboard.press("v")
        page.wait_for_timeout(300)
        assert "revealed" not in (page.get_attribute("figure.preview", "class") or "")

        # An appeal against my own removal: no buttons, the keys do nothing, and why.
        page.click(f".queue-item[data-id='{appeal}']")
        page.wait_for_selector(f"#item[data-id='{appeal}']")
        page.wait_for_selector("#decision-blocked:has-text('another reviewer')")
        assert not page.is_visible("button[data-outcome='uphold']")
        assert not page.is_visible("button[data-outcome='reverse']")
        page.keyboard.press("Shift+R")
        page.keyboard.press("u")
        page.wait_for_timeout(300)
        assert page.inner_text("#decision-error") == ""
        with store.session() as s:
            row = s.get(ReviewItem, appeal)
            assert row is not None and row.state == "open"

        # A takedown: the off-platform line is named with the platform's name.
        page.click(f".queue-item[data-id='{takedown}']")
        page.wait_for_selector(f"#item[data-id='{takedown}']")
        assert f"(not on {PLATFORM})" in page.inner_text("#evidence-body")
        assert "requester" in page.inner_text("#decision").lower()
        assert not problems, problems
    finally:
        context.close()


def test_intake_page_names_the_platform_and_lists_bad_lines(
    server: LiveServer, browser: Any
) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(server.base + "/takedown")
        # The platform's name heads the page (a name: the same in every language).
        page.wait_for_selector("[data-platform]:visible")
        assert page.inner_text("[data-platform]") == PLATFORM
        page.fill("#content", "post9\nhttps://elsewhere.example/p/2")
        page.wait_for_selector("#checker-problems li")
        assert "https://elsewhere.example/p/2" in page.inner_text("#checker-problems")
        # The status page says which line was not acted on, and why.
        receipt = file_request(server, ["post10", "https://elsewhere.example/p/3"])
        page.goto(server.base + "/takedown/status")
        page.get_by_label("Ticket").fill(receipt["ticket"])
        page.get_by_label("Access code").fill(receipt["access_code"])
        page.get_by_role("button", name="Show my request").click()
        page.wait_for_selector("#request-items li >> nth=1")
        line = page.inner_text("#request-items li >> nth=1")
        assert "not acted on" in line and f"not to a post on {PLATFORM}" in line
    finally:
        context.close()


# -- the demo ----------------------------------------------------------------------------------


def test_the_demo_names_its_platform(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DIGNITY_DATA_DIR": str(tmp_path),
        "DIGNITY_PLATFORM_NAME": "Example Pics (demo)",
        "COLUMNS": "200",
    }
    env.pop("DIGNITY_DATABASE_URL", None)
    run = subprocess.run(
        [sys.executable, "-m", "dignity", "demo"], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert "Platform: Example Pics (demo)" in run.stdout
    env.pop("DIGNITY_PLATFORM_NAME")
    run = subprocess.run(
        [sys.executable, "-m", "dignity", "demo"], env=env, capture_output=True, text=True
    )
    assert "DIGNITY_PLATFORM_NAME='Example Pics (demo)' dignity serve" in run.stdout
