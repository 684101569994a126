"""Statements of reasons, appeals and the DSA Transparency Database export, on SQLite and
PostgreSQL, in real Chromium, and through the CLI.

* Each removal's statement carries every DSA Art. 17(3) field and a Transparency Database
  statement whose fields and enum values are the API's; synthetic media where a scan found AI
  evidence or the requester said AI-made; trusted flaggers and own-initiative removals are told
  apart; the export holds no personal data.
* Appeals: the code from the notice, inside the window, one open at a time, a review item for a
  person; the removal's own reviewer cannot decide it; reversing restores the content.
* The public page renders the statement escaped, and an appeal filed on it in Chromium becomes a
  review item.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from dignity.cli import cli
from dignity.errors import DignityError
from dignity.samples import landscape
from dignity.settings import Settings
from dignity.storage.db import Database, open_database
from dignity.takedown.clock import FixedClock
from dignity.takedown.models import Appeal, Removal, ReviewItem, Statement
from dignity.takedown.notices import NoticeService, code_hash
from dignity.takedown.removal import RemovalService
from tests.integration.browser import browser, save_screenshot
from tests.integration.server import LiveServer
from tests.integration.test_removal import (
    MY_EVENTS,
    SECRET,
    Receiver,
    World,
    audits,
    events,
    images,
    make_request,
    subscribe,
)

__all__ = ["browser"]  # the fixture, imported for this module's browser test

# The Transparency Database's API (schema v2): required fields and allowed values.
TDB_REQUIRED = {
    "decision_visibility",
    "decision_ground",
    "category",
    "content_type",
    "decision_facts",
    "source_type",
    "automated_detection",
    "automated_decision",
    "territorial_scope",
    "application_date",
    "content_date",
    "puid",
}
TDB_ENUMS: dict[str, set[str]] = {
    "decision_ground": {"DECISION_GROUND_ILLEGAL_CONTENT", "DECISION_GROUND_INCOMPATIBLE_CONTENT"},
    "source_type": {
        "SOURCE_ARTICLE_16",
        "SOURCE_TRUSTED_FLAGGER",
        "SOURCE_TYPE_OTHER_NOTIFICATION",
        "SOURCE_VOLUNTARY",
    },
    "automated_detection": {"Yes", "No"},
    "automated_decision": {
        "AUTOMATED_DECISION_FULLY",
        "AUTOMATED_DECISION_PARTIALLY",
        "AUTOMATED_DECISION_NOT_AUTOMATED",
    },
    "category": {"STATEMENT_CATEGORY_CYBER_VIOLENCE"},
}
EEA = {
    *("AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE"),
    *("IS", "IT", "LI", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK"),
}
DATE = re.compile(r"\A\d{4}-\d{2}-\d{2}\Z")
PUID = re.compile(r"\A[A-Za-z0-9_-]{1,500}\Z")


def ai_png(seed: int = 5) -> bytes:
    """A synthetic landscape saved with an Automatic1111 ``parameters`` text chunk."""
    import io

    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(
        "parameters",
        "a watercolor lighthouse\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, "
        "Size: 512x512, Model: sd_xl_base_1.0",
    )
    buf = io.BytesIO()
    landscape(seed, size=(512, 512)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def check_tdb(tdb: dict[str, Any]) -> None:
    """One statement as the Transparency Database's API would validate it."""
    assert set(tdb) >= TDB_REQUIRED, TDB_REQUIRED - set(tdb)
    for name, allowed in TDB_ENUMS.items():
        assert tdb[name] in allowed, (name, tdb[name])
    assert tdb["decision_visibility"] == ["DECISION_VISIBILITY_CONTENT_REMOVED"]
    assert "CONTENT_TYPE_IMAGE" in tdb["content_type"]
    assert set(tdb["content_type"]) <= {"CONTENT_TYPE_IMAGE", "CONTENT_TYPE_SYNTHETIC_MEDIA"}
    assert "KEYWORD_NON_CONSENSUAL_IMAGE_SHARING" in tdb["category_specification"]
    assert set(tdb["territorial_scope"]) == EEA
    assert DATE.match(tdb["application_date"]) and DATE.match(tdb["content_date"])
    assert "2000-01-01" <= tdb["content_date"] <= tdb["application_date"]
    assert PUID.match(tdb["puid"])
    assert 0 < len(tdb["decision_facts"]) <= 5000
    if tdb["decision_ground"] == "DECISION_GROUND_ILLEGAL_CONTENT":
        assert 0 < len(tdb["illegal_content_legal_ground"]) <= 500
        assert 0 < len(tdb["illegal_content_explanation"]) <= 2000
        assert "incompatible_content_ground" not in tdb
    else:
        assert 0 < len(tdb["incompatible_content_ground"]) <= 500
        assert 0 < len(tdb["incompatible_content_explanation"]) <= 2000
        assert tdb["incompatible_content_illegal"] in ("Yes", "No")
        assert "illegal_content_legal_ground" not in tdb


def check_art17(art: dict[str, Any]) -> None:
    """DSA Art. 17(3) (a)-(f)."""
    assert art["restriction"] and art["restriction_type"] == "removal"  # (a)
    assert art["facts_and_circumstances"]  # (b)
    assert art["source"] in ("notice", "trusted_flagger", "own_initiative")  # (b)
    means = art["automated_means"]  # (c)
    assert isinstance(means["detection"], bool) and isinstance(means["decision"], bool)
    assert means["description"]
    assert art["legal_ground"] or art["contractual_ground"]  # (d), (e)
    for ground in (art["legal_ground"], art["contractual_ground"]):
        if ground:
            assert ground["provision"] and ground["explanation"]
    redress = art["redress"]  # (f)
    assert redress["internal_complaint"]["url"].startswith("/statements/")
    assert redress["internal_complaint"]["until"] and redress["internal_complaint"]["how"]
    assert redress["out_of_court_settlement"] and redress["judicial_redress"]


def statements(notices: NoticeService, summary: Any) -> dict[str, dict[str, Any]]:
    return {r.content_id: notices.get_statement(r.statement) for r in summary.removals}


# -- statements -------------------------------------------------------------------------------
def test_statements_carry_every_field_in_both_forms(db: Database, settings: Settings) -> None:
    subscribe(db)
    w = World(db, settings)
    img = images()
    w.scan(img["orig"], "n-orig", "uploader-secret-1")
    w.scan(img["orig"], "n-copy", "uploader-secret-2")
    w.scan(ai_png(), "n-ai", "uploader-secret-3")
    w.scan(img["other"], "n-flag", "uploader-secret-4")

    by_form = statements(
        w.notices,
        w.removals.remove_request(
            make_request(db, ["n-orig"], contact="private@example.org"), actor="rv-a"
        ),
    )
    ai_scan = w.removals.remove_scan(w.scan(ai_png(), "n-ai-2", "uploader-secret-5"), actor="rv-a")
    by_scan = statements(w.notices, ai_scan)
    by_flagger = statements(
        w.notices,
        w.removals.remove_request(
            make_request(
                db,
                ["n-flag"],
                channel="flagger",
                ai_made="ai",
                jurisdiction="EU",
                flagger_name="Helpline NGO",
            ),
            actor="rv-b",
        ),
    )
    everything = {**by_form, **by_scan, **by_flagger}
    assert set(everything) == {"n-orig", "n-copy", "n-ai-2", "n-ai", "n-flag"}
    for st in everything.values():
        check_art17(st["art17"])
        check_tdb(st["tdb"])
        assert st["appeal_open"] is True
        window = datetime.fromisoformat(st["appeal_until"]) - datetime.fromisoformat(
            st["issued_at"]
        )
        assert window >= timedelta(days=183)
    assert len({st["tdb"]["puid"] for st in everything.values()}) == 5

    reported = by_form["n-orig"]
    assert reported["tdb"]["decision_ground"] == "DECISION_GROUND_ILLEGAL_CONTENT"
    assert "TAKE IT DOWN" in reported["tdb"]["illegal_content_legal_ground"]
    assert reported["tdb"]["source_type"] == "SOURCE_ARTICLE_16"
    assert (reported["tdb"]["automated_detection"], reported["tdb"]["automated_decision"]) == (
        "No",
        "AUTOMATED_DECISION_NOT_AUTOMATED",
    )
    assert reported["tdb"]["content_type"] == ["CONTENT_TYPE_IMAGE"]
    assert reported["art17"]["source"] == "notice" and reported["synthetic"] is False

    copy = by_form["n-copy"]
    assert copy["tdb"]["source_type"] == "SOURCE_VOLUNTARY"
    assert copy["tdb"]["automated_decision"] == "AUTOMATED_DECISION_FULLY"
    assert copy["tdb"]["decision_ground"] == "DECISION_GROUND_ILLEGAL_CONTENT"
    assert reported["public_id"] in copy["art17"]["facts_and_circumstances"]

    # AI evidence in the scan (an A1111 parameters chunk): synthetic media, deepfake keyword.
    for st in (by_scan["n-ai-2"], by_scan["n-ai"]):
        assert "CONTENT_TYPE_SYNTHETIC_MEDIA" in st["tdb"]["content_type"]
        assert "KEYWORD_NON_CONSENSUAL_MATERIAL_DEEPFAKE" in st["tdb"]["category_specification"]
        assert st["synthetic"] is True
    own = by_scan["n-ai-2"]
    assert own["tdb"]["source_type"] == "SOURCE_VOLUNTARY"
    assert own["tdb"]["decision_ground"] == "DECISION_GROUND_INCOMPATIBLE_CONTENT"
    assert own["tdb"]["automated_detection"] == "Yes"
    assert "metadata" in own["art17"]["facts_and_circumstances"]

    # The requester said AI-made (no evidence in the file): synthetic media too.
    flagged = by_flagger["n-flag"]
    assert flagged["tdb"]["source_type"] == "SOURCE_TRUSTED_FLAGGER"
    assert flagged["tdb"]["source_identity"] == "Helpline NGO"
    assert "CONTENT_TYPE_SYNTHETIC_MEDIA" in flagged["tdb"]["content_type"]
    assert "2024/1385" in flagged["tdb"]["illegal_content_legal_ground"]

    # Codes travel only in the notice; the table keeps their SHA-256.
    notices = {n["statement_id"]: n for n in events(db, "notice.statement")}
    assert len(notices) == 5
    with db.session() as s:
        for row in s.scalars(select(Statement)):
            assert row.appeal_hash == code_hash(notices[row.public_id]["appeal_code"])
            assert notices[row.public_id]["appeal_code"] not in row.body

    exported = list(w.notices.export())
    assert len(exported) == 5
    for item in exported:
        check_tdb(item)
    text = json.dumps(exported)
    assert "uploader-secret" not in text and "private@example.org" not in text
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    assert list(w.notices.export(since=tomorrow)) == []
    # An hour ago, written in another offset (its wall clock reads 9 hours from now).
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).astimezone(timezone(timedelta(hours=10)))
    assert len(list(w.notices.export(since=an_hour_ago))) == 5
    assert len(list(w.notices.export(until=tomorrow))) == 5
    assert len(audits(db, "statement.issued")) == 5
    with pytest.raises(DignityError) as err:
        w.notices.get_statement("no-such-statement")
    assert err.value.code == "statement.not_found"


# -- appeals --------------------------------------------------------------------------------
def test_appeals_from_notice_to_decision(db: Database, settings: Settings) -> None:
    subscribe(db)
    clock = FixedClock(datetime.now(UTC))
    w = World(db, settings, clock)
    img = images()
    w.scan(img["orig"], "a-1", "u-a")
    w.scan(img["other"], "a-2", "u-b")
    summary = w.removals.remove_request(make_request(db, ["a-1", "a-2"]), actor="rv-remover")
    first, second = (r.statement for r in summary.removals)
    assert first is not None and second is not None
    codes = {n["statement_id"]: n["appeal_code"] for n in events(db, "notice.statement")}

    for code, text, expected in (
        ("wrong-code", "I consented.", "appeal.bad_code"),
        (codes[first], "   ", "appeal.bad_text"),
        (codes[first], "x" * 5001, "appeal.bad_text"),
    ):
        with pytest.raises(DignityError) as err:
            w.notices.appeal(first, code, text)
        assert err.value.code == expected
    with pytest.raises(DignityError) as err:
        w.notices.appeal("nope", codes[first], "text")
    assert err.value.code == "statement.not_found"

    filed = w.notices.appeal(first, codes[first], "I am the person shown and I consented.")
    with db.session() as s:
        appeal = s.get(Appeal, filed["appeal_id"])
        assert appeal is not None and appeal.state == "open"
        item = s.get(ReviewItem, filed["review_item_id"])
        assert item is not None
        assert (item.kind, item.appeal_id, item.priority, item.state) == (
            "appeal",
            appeal.id,
            1,
            "open",
        )
    [received] = events(db, "appeal.received")
    assert received["statement_id"] == first and received["content_id"] == "a-1"
    assert audits(db, "appeal.received")[0]["appeal_id"] == filed["appeal_id"]
    with pytest.raises(DignityError) as err:
        w.notices.appeal(first, codes[first], "And again.")
    assert err.value.code == "appeal.already_open"
    assert w.notices.get_statement(first)["appeal_open"] is False

    # The reviewer who removed it may not decide the appeal; nothing changes.
    with pytest.raises(DignityError) as err:
        w.notices.decide_appeal(filed["appeal_id"], "reverse", actor="rv-remover")
    assert err.value.code == "appeal.same_reviewer"
    with pytest.raises(DignityError) as err:
        w.notices.decide_appeal(filed["appeal_id"], "maybe", actor="rv-other")
    assert err.value.code == "appeal.bad_outcome"
    assert w.notices.list_appeals(state="open")[0]["appeal_id"] == filed["appeal_id"]

    upheld = w.notices.decide_appeal(filed["appeal_id"], "uphold", actor="rv-other", note="ok")
    assert upheld["state"] == "upheld" and upheld["decided_by"] == "rv-other"
    again = w.notices.decide_appeal(filed["appeal_id"], "uphold", actor="rv-other")
    assert again["already_done"] is True
    with pytest.raises(DignityError) as err:
        w.notices.decide_appeal(filed["appeal_id"], "reverse", actor="rv-other")
    assert err.value.code == "appeal.already_decided"
    with db.session() as s:
        item = s.get(ReviewItem, filed["review_item_id"])
        assert item is not None and (item.state, item.outcome) == ("decided", "uphold")
    [outcome] = events(db, "appeal.outcome")
    assert outcome["outcome"] == "uphold" and outcome["restored"] is False

    # A second appeal after the first was upheld; this one is reversed: content restored.
    clock.advance(days=30)
    refiled = w.notices.appeal(first, codes[first], "New facts: here is my consent form.")
    reversed_ = w.notices.decide_appeal(refiled["appeal_id"], "reverse", actor="rv-third")
    assert reversed_["state"] == "reversed"
    with db.session() as s:
        removal = s.get(Removal, summary.removals[0].id)
        assert removal is not None and removal.restored_at is not None
    assert [e["removal_id"] for e in events(db, "content.restore")] == [summary.removals[0].id]
    assert [o["outcome"] for o in events(db, "appeal.outcome")] == ["uphold", "reverse"]
    assert [o["outcome"] for o in events(db, "takedown.outcome")] == ["removed", "restored"]
    assert {a["outcome"] for a in audits(db, "appeal.decided")} == {"uphold", "reverse"}
    with pytest.raises(DignityError) as err:
        w.notices.appeal(first, codes[first], "Once more.")
    assert err.value.code == "appeal.restored"
    page = w.notices.get_statement(first)
    assert page["restored_at"] is not None and page["appeal_open"] is False

    # The window: open up to appeal_until, closed after it.
    clock.advance(days=settings.appeal_window_days - 31)
    assert w.notices.get_statement(second)["appeal_open"] is True
    clock.advance(days=2)
    assert w.notices.get_statement(second)["appeal_open"] is False
    with pytest.raises(DignityError) as err:
        w.notices.appeal(second, codes[second], "Too late?")
    assert err.value.code == "appeal.window_closed"

    # A platform without webhooks gets a fresh code; the old one stops working.
    fresh = w.notices.reissue_code(second)["appeal_code"]
    assert fresh != codes[second]
    clock.set(datetime.now(UTC))
    with pytest.raises(DignityError) as err:
        w.notices.appeal(second, codes[second], "With the old code.")
    assert err.value.code == "appeal.bad_code"
    assert w.notices.appeal(second, fresh, "With the new code.")["state"] == "open"
    assert len(audits(db, "statement.code_reissued")) == 1


# -- the CLI --------------------------------------------------------------------------------
def test_cli_export_show_and_appeal_list(db: Database, settings: Settings, tmp_path: Path) -> None:
    subscribe(db)
    w = World(db, settings)
    w.scan(images()["orig"], "cli-1")
    summary = w.removals.remove_request(make_request(db, ["cli-1"]), actor="rv")
    [public_id] = summary.statements
    code = events(db, "notice.statement")[0]["appeal_code"]
    w.notices.appeal(public_id, code, "I disagree.")
    runner = CliRunner()
    env = {"DIGNITY_DATABASE_URL": settings.resolved_database_url}

    def run(*args: str, code: int = 0) -> list[dict[str, Any]]:
        r = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        assert r.exit_code == code, r.output
        return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]

    [line] = run("statement", "export")
    check_tdb(line)
    out = tmp_path / "sor.jsonl"
    run("statement", "export", "--since", "2020-01-01", "-o", str(out))
    assert [json.loads(x) for x in out.read_text().splitlines()] == [line]
    assert run("statement", "export", "--since", "2999-01-01") == []
    run("statement", "export", "--since", "yesterday", code=3)
    run("statement", "export", "--since", "2026-02-01", "--until", "2026-01-01", code=3)
    [shown] = run("statement", "show", public_id)
    assert shown["public_id"] == public_id and shown["appeal"]["state"] == "open"
    run("statement", "show", "nope", code=3)
    [listed] = run("appeal", "list", "--state", "open")
    assert listed["statement"] == public_id and listed["text"] == "I disagree."
    assert run("appeal", "list", "--state", "reversed") == []


# -- the public page in Chromium ----------------------------------------------------------------
@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver of this test's own: what it holds came from this test's server."""
    rx = Receiver()
    yield rx
    rx.close()


def test_statement_page_and_an_appeal_filed_on_it(
    live: LiveServer, receiver: Receiver, browser: Any, tmp_path: Path
) -> None:
    hostile = '<b id="injected">c-1</b>'  # printable, so a valid content id
    with live.client("admin") as admin:
        r = admin.post(
            "/v1/webhooks",
            json={"url": receiver.url, "secret": SECRET, "events": list(MY_EVENTS)},
        )
        assert r.status_code == 201, r.text
    with live.client("platform") as platform:
        files = {"file": ("x.png", ai_png(7), "application/octet-stream")}
        r = platform.post("/v1/scan", params={"content_id": hostile, "uploader": "u"}, files=files)
        assert r.status_code == 200 and r.json()["scan_id"], r.text
    db = open_database(live.url)
    try:
        removals = RemovalService(db, Settings(data_dir=tmp_path, database_url=live.url))
        summary = removals.remove_request(make_request(db, [hostile]), actor="rv-page")
        [public_id] = summary.statements
        [notice] = [
            n for n in receiver.wait("notice.statement", 1) if n["statement_id"] == public_id
        ]
        assert notice["url"] == f"/statements/{public_id}"

        page = browser.new_page()
        try:
            response = page.goto(live.base + notice["url"])
            assert response is not None and response.status == 200
            assert "script-src 'self'" in response.headers["content-security-policy"]
            assert page.locator("#injected").count() == 0  # escaped, shown as text
            assert hostile in page.locator("main").inner_text()
            assert page.get_by_text("Synthetic media").count() == 1
            assert page.get_by_text("You can appeal until").count() == 1
            assert page.get_by_role("heading", name="Why this content was removed").count() == 1
            save_screenshot(page, "statement")

            # Keyboard only: the labelled fields in order, then the button.
            page.get_by_label("Appeal code").focus()
            page.keyboard.type("not-the-code")
            page.keyboard.press("Tab")
            page.keyboard.type("I am the person shown and I agreed to publish this.")
            page.keyboard.press("Tab")
            page.keyboard.press("Enter")
            status = page.locator("#appeal-status")
            status.filter(has_text="does not match").wait_for(timeout=10_000)
            page.get_by_label("Appeal code").fill(notice["appeal_code"])
            page.get_by_role("button", name="Send appeal").click()
            status.filter(has_text="was received").wait_for(timeout=10_000)
            assert page.locator("#appeal-form").is_hidden()
            save_screenshot(page, "statement-appealed")
            page.reload()
            assert page.get_by_text("is being reviewed").count() == 1
            assert page.locator("#appeal-form").count() == 0
        finally:
            page.close()

        with db.session() as s:
            item = s.scalars(select(ReviewItem).where(ReviewItem.kind == "appeal")).one()
            assert (item.state, item.priority) == ("open", 1) and item.appeal_id is not None
            appeal_id = item.appeal_id
            appeal = s.get(Appeal, appeal_id)
            assert appeal is not None and appeal.text.startswith("I am the person shown")
        notices = NoticeService(db, Settings(data_dir=tmp_path, database_url=live.url))
        with pytest.raises(DignityError) as err:
            notices.decide_appeal(appeal_id, "reverse", actor="rv-page")
        assert err.value.code == "appeal.same_reviewer"
        notices.decide_appeal(appeal_id, "reverse", actor="rv-second")
        [restored] = receiver.wait("content.restore", 1)
        assert restored["content_id"] == hostile
        [outcome] = receiver.wait("appeal.outcome", 1)
        assert outcome["outcome"] == "reverse"

        with live.client() as anon:
            page_html = anon.get(f"/statements/{public_id}").text
            assert "restored" in page_html and "<b id=" not in page_html
            missing = anon.get("/statements/no-such-statement")
            assert missing.status_code == 404 and "No such statement" in missing.text
            r = anon.post(
                f"/statements/api/{public_id}/appeal",
                json={"code": notice["appeal_code"], "text": "again"},
            )
            assert r.status_code == 409 and r.json()["code"] == "appeal.restored"
            r = anon.post(f"/statements/api/{public_id}/appeal", content=b"x" * 20_000,
                          headers={"content-type": "application/json"})  # fmt: skip
            assert r.status_code == 413
            r = anon.post(f"/statements/api/{public_id}/appeal", json={"code": "x"})
            assert r.status_code == 422 and r.json()["code"] == "request.invalid"
        with live.client("admin") as admin:
            exported = admin.get("/v1/statements", params={"since": "2020-01-01"}).json()
            mine = [e for e in exported if e["puid"].endswith(public_id)]
            assert len(mine) == 1
            check_tdb(mine[0])
            assert "CONTENT_TYPE_SYNTHETIC_MEDIA" in mine[0]["content_type"]
            assert admin.get("/v1/statements", params={"since": "2999-01-01"}).json() == []
        with live.client("platform") as platform:
            assert platform.get("/v1/statements").status_code == 403
            fresh = platform.post(f"/v1/statements/{public_id}/appeal-code")
            assert fresh.status_code == 200 and fresh.json()["appeal_code"]
            gone = platform.post("/v1/statements/nope/appeal-code")
            assert gone.status_code == 404 and gone.json()["code"] == "statement.not_found"
        with db.session() as s:
            assert s.scalar(select(func.count()).select_from(Appeal)) == 1
    finally:
        db.close()


def test_wrong_codes_are_limited_per_address(live: LiveServer) -> None:
    """Guessing codes from one address runs into the per-address limit (429)."""
    limit = Settings().portal_ip_failures_per_hour
    with live.client() as anon:
        codes = []
        for _ in range(limit + 1):
            r = anon.post("/statements/api/nope/appeal", json={"code": "x", "text": "t"})
            codes.append(r.status_code)
            if r.status_code == 429:
                assert r.json()["code"] == "rate.limited" and r.headers["retry-after"]
                break
    # Earlier tests on this server may have used a try or two of this address's budget.
    assert codes[-1] == 429 and set(codes[:-1]) == {404} and len(codes) > limit - 3
