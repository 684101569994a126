"""The scan log, removals and the copy sweep, on SQLite and PostgreSQL, and over real HTTP.

* Every scan is logged with its hashes, decision and a compact detail; ``review`` opens a
  review item; bad platform ids are refused; retention keeps what is still in use.
* A removal takes the reported content, an exact copy (same bytes, another content id) and a
  re-encoded copy (resized, JPEG q70: PDQ near) but not an unrelated image; the hashes go to
  the takedown block bank, so a re-upload is blocked; a second decision writes nothing;
  restores withdraw exactly the entries no other removal needs.
* The sweep streams the scan log in batches and agrees with a brute-force comparison.
* Over HTTP: ``/v1/scan?content_id=&uploader=``, webhooks receive ``content.remove`` and
  ``notice.statement``, platforms pull ``/v1/removals``, and the server blocks a re-upload.
"""

from __future__ import annotations

import io
import json
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import func, insert, select, update

from dignity.actions.models import OutboxEvent
from dignity.actions.signing import SignatureError, verify
from dignity.actions.webhooks import WebhookService
from dignity.audit.models import AuditRecord
from dignity.errors import DignityError
from dignity.hashing.signals import hash_bytes, pdq_distance
from dignity.matching.banks import BankService, NewEntry
from dignity.matching.engine import MatchEngine
from dignity.samples import encode, landscape
from dignity.scanning import Scanner
from dignity.settings import Settings
from dignity.storage.db import Database, open_database
from dignity.storage.models import Bank, Entry
from dignity.takedown import scanlog as scanlog_module
from dignity.takedown.clock import FixedClock
from dignity.takedown.models import (
    Removal,
    ReviewItem,
    ScanRecord,
    Statement,
    TakedownItem,
    TakedownRequest,
)
from dignity.takedown.notices import NoticeService
from dignity.takedown.removal import RemovalService
from dignity.takedown.scanlog import MAX_DETAIL, HashSet, ScanLog, check_ref, fit
from tests.integration.server import LiveServer

SECRET = "s3cret-for-tests-0123456789"
MY_EVENTS = (
    "content.remove",
    "content.restore",
    "notice.statement",
    "takedown.outcome",
    "appeal.received",
    "appeal.outcome",
)


# -- helpers (test_notices.py uses them too) -------------------------------------------------
def images() -> dict[str, bytes]:
    """Synthetic landscapes: an original, the same resized and re-encoded (PDQ distance 10),
    an unrelated one, and one for a review bank."""
    orig = encode(landscape(1), "JPEG", quality=90)
    near = encode(Image.open(io.BytesIO(orig)).resize((400, 300)), "JPEG", quality=70)
    return {
        "orig": orig,
        "near": near,
        "other": encode(landscape(2), "JPEG", quality=90),
        "flagged": encode(landscape(3), "JPEG", quality=90),
    }


class World:
    """A scanner, the scan log and the takedown services over one database."""

    def __init__(self, db: Database, settings: Settings, clock: FixedClock | None = None) -> None:
        self.db = db
        self.settings = settings
        self.engine = MatchEngine(db, min_quality=settings.pdq_min_quality)
        self.engine.load()
        self.scanner = Scanner(settings, self.engine)
        self.log = ScanLog(db, settings, clock)
        self.removals = RemovalService(db, settings, clock)
        self.notices = NoticeService(db, settings, clock)

    def scan(self, data: bytes, content_id: str | None, uploader: str | None = None) -> int:
        self.engine.refresh()
        result = self.scanner.scan(data)
        return self.log.record(result, None, content_id=content_id, uploader=uploader)

    def decision(self, data: bytes) -> str:
        self.engine.refresh()
        return self.scanner.scan(data).decision.action


def make_request(
    db: Database,
    content_ids: list[str | None],
    *,
    state: str = "valid",
    channel: str = "form",
    ai_made: str = "unknown",
    jurisdiction: str = "US",
    flagger_name: str | None = None,
    contact: str = "requester@example.org",
) -> int:
    """A takedown request as the intake writes it (rows directly: this file tests removals)."""
    now = datetime.now(UTC)
    with db.session() as s:
        req = TakedownRequest(
            ticket=f"T-{secrets.token_hex(4)}",
            access_hash="0" * 64,
            channel=channel,
            flagger_name=flagger_name,
            priority=0 if channel == "flagger" else 1,
            requester_name="A. Person",
            requester_contact=contact,
            requester_fp=secrets.token_hex(32),
            description="This is an intimate image of me published without my consent.",
            good_faith=True,
            signature_name="A. Person",
            signed_at=now,
            ai_made=ai_made,
            jurisdiction=jurisdiction,
            state=state,
            received_at=now,
            valid_at=now if state == "valid" else None,
            due_at=now + timedelta(hours=48) if state == "valid" else None,
        )
        s.add(req)
        s.flush()
        for cid in content_ids:
            scan_id = None
            if cid is not None:
                scan_id = s.scalar(
                    select(func.max(ScanRecord.id)).where(ScanRecord.content_id == cid)
                )
            s.add(
                TakedownItem(
                    request_id=req.id,
                    ref=cid if cid is not None else "https://elsewhere.example/p/1",
                    content_id=cid,
                    scan_id=scan_id,
                )
            )
        if state == "valid":
            s.add(ReviewItem(kind="takedown", request_id=req.id, priority=req.priority))
        return req.id


def subscribe(db: Database, url: str = "http://127.0.0.1:9/hook") -> None:
    WebhookService(db).create(url, secret=SECRET, events=",".join(MY_EVENTS))


def events(db: Database, kind: str) -> list[dict[str, Any]]:
    with db.session() as s:
        rows = s.scalars(select(OutboxEvent.payload).where(OutboxEvent.type == kind))
        return [json.loads(p) for p in rows]


def audits(db: Database, action: str) -> list[dict[str, Any]]:
    with db.session() as s:
        rows = s.scalars(select(AuditRecord.detail).where(AuditRecord.action == action))
        return [json.loads(d) for d in rows]


def review_bank(db: Database, data: bytes, name: str = "rv") -> None:
    banks = BankService(db)
    banks.create_bank(name, purpose="review")
    h = hash_bytes(data)
    assert h.pdq is not None
    banks.add_entries(name, [NewEntry("pdq", h.pdq.hex, "person", "curated")])


class Receiver:
    """A platform's webhook endpoint on 127.0.0.1: verifies signatures, keeps the events."""

    def __init__(self, secret: str = SECRET) -> None:
        self.secret = secret
        self.lock = threading.Lock()
        self.received: list[dict[str, Any]] = []
        self.rejected = 0
        rx = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    verify(rx.secret, dict(self.headers.items()), body)
                except SignatureError:
                    with rx.lock:
                        rx.rejected += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                with rx.lock:
                    if all(e["id"] != json.loads(body)["id"] for e in rx.received):
                        rx.received.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e["payload"] for e in self.received if e["type"] == kind]

    def wait(self, kind: str, n: int, timeout: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.of(kind)) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        got = self.of(kind)
        assert len(got) >= n, (kind, got, self.rejected)
        return got

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def world(db: Database, settings: Settings) -> World:
    return World(db, settings)


# -- the scan log ---------------------------------------------------------------------------
def test_every_scan_is_logged_with_hashes_decision_and_review_items(
    db: Database, world: World
) -> None:
    img = images()
    review_bank(db, img["flagged"])
    allowed = world.scan(img["orig"], "s-1", uploader="up-1")
    flagged = world.scan(img["flagged"], "s-2")
    anonymous = world.scan(img["other"], None)
    h = hash_bytes(img["orig"])
    with db.session() as s:
        row = s.get(ScanRecord, allowed)
        assert row is not None and h.pdq is not None
        assert (row.content_id, row.uploader, row.decision) == ("s-1", "up-1", "allow")
        assert (row.pdq, row.pdq_quality, row.md5, row.sha256) == (
            h.pdq.hex,
            h.pdq.quality,
            h.md5,
            h.sha256,
        )
        review = s.get(ScanRecord, flagged)
        assert review is not None and review.decision == "review"
        detail = json.loads(review.detail)
        assert len(review.detail.encode()) <= MAX_DETAIL
        [match] = detail["matches"]
        assert match["bank"] == "rv" and match["origin"] == "person:curated"
        assert detail["decision"]["rules"] == ["bank-review"]
        assert set(detail["signals"]) >= {"nudity", "ai_evidence", "derivative_of", "c2pa"}
        items = list(s.scalars(select(ReviewItem).where(ReviewItem.kind == "scan")))
        # Only the review decision opens an item, at the policy's "high" priority.
        assert [(i.scan_id, i.priority, i.state) for i in items] == [(flagged, 1, "open")]
        nobody = s.get(ScanRecord, anonymous)
        assert nobody is not None and nobody.content_id is None


def test_platform_ids_are_checked_and_nothing_is_written_for_bad_ones(
    db: Database, world: World
) -> None:
    result = world.scanner.scan(images()["orig"])
    for bad in ("", "x" * 256, "a\nb", "nul\x00", "tab\there", "\ud800"):
        with pytest.raises(DignityError) as err:
            world.log.record(result, None, content_id=bad)
        assert err.value.code == "request.bad_content_id"
        with pytest.raises(DignityError) as err:
            world.log.record(result, None, content_id="ok", uploader=bad)
        assert err.value.code == "request.bad_uploader"
    assert check_ref("x" * 255, "content_id") == "x" * 255
    assert check_ref("ünïcode id/42?", "content_id") == "ünïcode id/42?"
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(ScanRecord)) == 0


def test_a_scan_that_cannot_be_logged_fails(db: Database, world: World) -> None:
    """The platform is told to retry (storage.unavailable: 503) rather than a scan going
    unlogged."""
    result = world.scanner.scan(images()["orig"])
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE scan_log RENAME TO scan_log_away")
    with pytest.raises(DignityError) as err:
        world.log.record(result, None, content_id="lost")
    assert err.value.code == "storage.unavailable"
    from dignity.api.errors import status_for

    assert status_for(err.value.code) == 503


def test_detail_is_capped() -> None:
    detail: dict[str, Any] = {
        "matches": [{"bank": "b" * 100, "origin": "o" * 150} for _ in range(20)],
        "signals": {"ai_evidence": [{"source": "metadata", "detail": "d" * 150}] * 5},
        "decision": {
            "action": "review",
            "reasons": [{"rule": "r", "value": "v" * 150} for _ in range(10)],
            "statement": {"facts": ["f" * 150] * 3},
        },
    }
    out = fit(detail)
    assert len(json.dumps(out, separators=(",", ":"))) <= MAX_DETAIL
    assert out["decision"]["action"] == "review" and out["matches"]
    huge = fit({"decision": {"action": "block"}, "matches": [], "x": "y" * 10_000}, limit=200)
    assert huge == {"decision": {"action": "block"}, "truncated": True}


def test_retention_purges_old_scans_but_keeps_those_in_use(
    db: Database, settings: Settings
) -> None:
    clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    w = World(db, settings, clock)
    img = images()
    w.scan(img["orig"], "p-1")  # old and not in use: purged
    old_review = w.scan(img["other"], "p-2")
    old_removed = w.scan(img["flagged"], "p-3")
    with db.session() as s:
        s.add(ReviewItem(kind="scan", scan_id=old_review, priority=2))
        s.add(Removal(content_id="p-3", scan_id=old_removed, reason="reviewed"))
    clock.advance(days=settings.scan_log_retention_days - 1)
    recent = w.scan(img["orig"], "p-4")
    assert w.log.purge() == 0  # nothing is old enough yet
    clock.advance(days=2)
    assert w.log.purge() == 1
    with db.session() as s:
        left = set(s.scalars(select(ScanRecord.id)))
        assert left == {old_review, old_removed, recent}
        s.execute(
            update(ReviewItem).where(ReviewItem.scan_id == old_review).values(state="decided")
        )
    assert w.log.purge() == 1  # decided: no longer needed
    with db.session() as s:
        assert set(s.scalars(select(ScanRecord.id))) == {old_removed, recent}
    assert [a["rows"] for a in audits(db, "scanlog.purged")] == [1, 1]


# -- removal and the sweep -----------------------------------------------------------------
def test_removal_takes_the_content_and_its_known_copies_but_nothing_else(
    db: Database, world: World
) -> None:
    subscribe(db)
    img = images()
    world.scan(img["orig"], "c-orig", "u-1")
    world.scan(img["orig"], "c-exact", "u-2")
    world.scan(img["near"], "c-near", "u-3")
    world.scan(img["other"], "c-other", "u-4")
    world.scan(img["orig"], None)  # no content id: nothing to remove
    world.scan(img["orig"], "c-orig", "u-1")  # the same content scanned again
    assert world.decision(img["orig"]) == "allow"
    request_id = make_request(db, ["c-orig", None])

    summary = world.removals.remove_request(request_id, actor="reviewer-a")

    got = {r.content_id: r for r in summary.removals}
    assert set(got) == {"c-orig", "c-exact", "c-near"}
    reported = got["c-orig"]
    assert (reported.reason, reported.copy_of) == ("reported", None)
    assert (got["c-exact"].reason, got["c-exact"].distance) == ("copy_exact", 0)
    assert got["c-near"].reason == "copy_pdq"
    assert got["c-near"].distance is not None
    assert 0 < got["c-near"].distance <= world.settings.sweep_pdq_threshold
    assert {got["c-exact"].copy_of, got["c-near"].copy_of} == {reported.id}
    assert summary.copies == 2 and len(set(summary.statements)) == 3
    assert summary.not_found == ("https://elsewhere.example/p/1",)
    out = summary.to_dict()
    assert out["copies"] == 2 and out["already_done"] is False and len(out["removals"]) == 3

    with db.session() as s:
        req = s.get(TakedownRequest, request_id)
        assert req is not None and req.state == "removed" and req.decided_by == "reviewer-a"
        assert req.closed_at is not None
        states = dict(
            s.execute(
                select(TakedownItem.content_id, TakedownItem.state).where(
                    TakedownItem.request_id == request_id
                )
            ).all()
        )
        assert states == {"c-orig": "removed", None: "not_found"}
        removed = {
            cid: at is not None
            for cid, at in s.execute(select(ScanRecord.content_id, ScanRecord.removed_at))
            if cid
        }
        assert removed == {"c-orig": True, "c-exact": True, "c-near": True, "c-other": False}
        assert s.scalar(select(func.count()).select_from(Statement)) == 3
        item = s.scalars(select(ReviewItem).where(ReviewItem.request_id == request_id)).one()
        assert (item.state, item.outcome, item.decided_by) == ("decided", "remove", "reviewer-a")
        bank = s.scalars(select(Bank).where(Bank.name == "takedowns")).one()
        assert bank.purpose == "block"
        entries = s.execute(
            select(Entry.signal, Entry.value, Entry.origin_ref).where(Entry.bank_id == bank.id)
        ).all()
    h, near = hash_bytes(img["orig"]), hash_bytes(img["near"])
    assert h.pdq is not None
    by_ref = {(sig, val): ref for sig, val, ref in entries}
    origin = f"takedown:removal:{reported.id}"
    assert by_ref[("pdq", h.pdq.hex)] == origin
    assert by_ref[("md5", h.md5)] == by_ref[("sha256", h.sha256)] == origin
    # The near copy's exact hashes block its own re-upload; its PDQ is not added (no drift).
    near_ref = f"takedown:removal:{got['c-near'].id}"
    assert by_ref[("md5", near.md5)] == by_ref[("sha256", near.sha256)] == near_ref
    assert len(entries) == 5

    # A new upload of the content, or of the re-encoded copy, is now blocked.
    assert world.decision(img["orig"]) == "block"
    assert world.decision(img["near"]) == "block"
    assert world.decision(img["other"]) == "allow"

    removes = events(db, "content.remove")
    assert {e["content_id"] for e in removes} == {"c-orig", "c-exact", "c-near"}
    assert {e["content_id"]: e["copy_of"] for e in removes}["c-near"] == reported.id
    assert all(e["statement"]["url"].startswith("/statements/") for e in removes)
    notices = events(db, "notice.statement")
    assert len(notices) == 3 and all(len(n["appeal_code"]) >= 16 for n in notices)
    assert {n["uploader"] for n in notices} == {"u-1", "u-2", "u-3"}
    [outcome] = events(db, "takedown.outcome")
    assert outcome["outcome"] == "removed" and outcome["copies"] == 2
    assert len(audits(db, "content.removed")) == 3
    assert len(audits(db, "statement.issued")) == 3
    assert len(audits(db, "takedown.removed")) == 1

    # The same decision again: the first summary, nothing removed or notified twice.
    again = world.removals.remove_request(request_id, actor="reviewer-b")
    assert again.already and {r.id for r in again.removals} == {r.id for r in summary.removals}
    assert len(events(db, "content.remove")) == 3 and len(events(db, "takedown.outcome")) == 1
    assert len(audits(db, "content.removed")) == 3
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Removal)) == 3


def test_removal_of_a_reviewed_scan(db: Database, world: World) -> None:
    subscribe(db)
    img = images()
    review_bank(db, img["flagged"])
    earlier = world.scan(img["flagged"], "r-copy")
    scan_id = world.scan(img["flagged"], "r-1", "u-9")
    no_id = world.scan(img["flagged"], None)
    with db.session() as s:
        item = s.scalars(select(ReviewItem).where(ReviewItem.scan_id == scan_id)).one()
        item_id = item.id

    summary = world.removals.remove_scan(scan_id, actor="rv-1", review_item_id=item_id)
    assert [(r.content_id, r.reason) for r in summary.removals] == [
        ("r-1", "reviewed"),
        ("r-copy", "copy_exact"),
    ]
    assert summary.removals[1].scan_id == earlier
    with db.session() as s:
        assert set(s.scalars(select(Removal.review_item_id))) == {item_id}
        decided = s.get(ReviewItem, item_id)
        assert decided is not None and (decided.state, decided.outcome) == ("decided", "remove")
        # The copy's own review item is settled by the same decision.
        assert (
            s.scalar(select(func.count()).select_from(ReviewItem).where(ReviewItem.state == "open"))
            == 1  # only the scan without a content id is still open
        )
    again = world.removals.remove_scan(scan_id, actor="rv-2")
    assert again.already and [r.id for r in again.removals] == [r.id for r in summary.removals]
    assert len(events(db, "content.remove")) == 2
    for bad, code in ((no_id, "removal.no_content"), (10**9, "removal.not_found")):
        with pytest.raises(DignityError) as err:
            world.removals.remove_scan(bad, actor="rv-1")
        assert err.value.code == code


def test_restore_withdraws_only_what_no_other_removal_needs(db: Database, world: World) -> None:
    subscribe(db)
    img = images()
    world.scan(img["orig"], "w-orig")
    world.scan(img["orig"], "w-exact")
    request_id = make_request(db, ["w-orig"])
    summary = world.removals.remove_request(request_id, actor="rv-1")
    reported, copy = summary.removals
    assert world.decision(img["orig"]) == "block"

    first = world.removals.restore(reported.id, actor="rv-2")
    assert first["already_done"] is False and first["withdrawn"] == 0
    # The identical copy is still removed, so its hashes stay in the block bank.
    assert world.decision(img["orig"]) == "block"
    second = world.removals.restore(copy.id, actor="rv-2")
    assert second["withdrawn"] == 3
    assert world.decision(img["orig"]) == "allow"
    assert world.removals.restore(copy.id, actor="rv-2")["already_done"] is True

    restores = events(db, "content.restore")
    assert sorted(e["removal_id"] for e in restores) == sorted([reported.id, copy.id])
    assert len(audits(db, "content.restored")) == 2
    with db.session() as s:
        assert all(r.restored_at is not None for r in s.scalars(select(Removal)))
        assert s.scalar(select(func.count()).where(ScanRecord.removed_at.is_not(None))) == 0
        item = s.scalars(select(TakedownItem).where(TakedownItem.request_id == request_id)).one()
        assert item.state == "kept"
    with pytest.raises(DignityError) as err:
        world.removals.restore(10**9)
    assert err.value.code == "removal.not_found"

    # Removing the content again reactivates the withdrawn entries for the new removal.
    again = world.removals.remove_scan(world.scan(img["orig"], "w-third"), actor="rv-3")
    assert {r.content_id for r in again.removals} == {"w-third", "w-orig", "w-exact"}
    assert again.bank_entries == 3 and world.decision(img["orig"]) == "block"


def test_requests_that_cannot_be_carried_out(db: Database, world: World) -> None:
    world.scan(images()["orig"], "x-1")
    cases = [
        (make_request(db, ["x-1"], state="incomplete"), "removal.request_incomplete"),
        (make_request(db, ["x-1"], state="rejected"), "removal.request_closed"),
        (make_request(db, [None]), "removal.no_content"),
        (10**6, "removal.not_found"),
    ]
    for request_id, code in cases:
        with pytest.raises(DignityError) as err:
            world.removals.remove_request(request_id, actor="rv")
        assert err.value.code == code
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Removal)) == 0
        states = set(s.scalars(select(TakedownRequest.state)))
        assert states == {"incomplete", "rejected", "valid"}


class _Platform:
    """The platform's internal preview endpoint: /content/<id> answers the bytes it holds."""

    def __init__(self, content: dict[str, bytes]) -> None:
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = platform.content.get(self.path.rsplit("/", 1)[-1])
                self.send_response(200 if data else 404)
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

            def log_message(self, *_: Any) -> None:
                pass

        self.content = content
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_never_scanned_content_is_fetched_hashed_and_swept(
    db: Database, settings: Settings
) -> None:
    img = images()
    platform = _Platform({"f-new": img["orig"]})
    try:
        configured = settings.model_copy(
            update={"preview_url_template": platform.base + "/content/{content_id}"}
        )
        w = World(db, configured)
        w.scan(img["orig"], "f-old")
        summary = w.removals.remove_request(make_request(db, ["f-new", "f-gone"]), actor="rv")
    finally:
        platform.server.shutdown()
        platform.server.server_close()
    got = {r.content_id: r.reason for r in summary.removals}
    assert got == {"f-new": "reported", "f-gone": "reported", "f-old": "copy_exact"}
    assert summary.unhashed == ("f-gone",)  # the platform had nothing: removed by id only
    with db.session() as s:
        fetched = s.scalars(select(ScanRecord).where(ScanRecord.content_id == "f-new")).one()
        assert fetched.decision == "fetched" and fetched.sha256 == hash_bytes(img["orig"]).sha256
    assert w.decision(img["orig"]) == "block"


def test_the_sweep_streams_the_log_and_agrees_with_brute_force(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scanlog_module, "SWEEP_BATCH", 7)  # many batches, copies across edges
    rng = secrets.SystemRandom()
    query = secrets.token_hex(32)

    def flip(value: str, bits: int) -> str:
        n = int(value, 16)
        for b in rng.sample(range(256), bits):
            n ^= 1 << b
        return f"{n:064x}"

    rows: list[dict[str, Any]] = []
    for i in range(60):
        kind = i % 6
        pdq = flip(query, rng.choice([3, 10, 24])) if kind == 0 else secrets.token_hex(32)
        if kind == 1:
            pdq = flip(query, 25)  # just outside the threshold
        rows.append(
            {
                "content_id": f"k-{i}" if kind != 2 else None,
                "pdq": pdq,
                "pdq_quality": 10 if kind == 3 else 100,
                "md5": secrets.token_hex(16),
                "sha256": secrets.token_hex(32),
                "decision": "allow",
                "detail": "{}",
                "removed_at": datetime.now(UTC) if kind == 4 else None,
            }
        )
        if kind == 3:
            rows[-1]["pdq"] = flip(query, 2)  # near, but too flat to trust
    exact_sha = secrets.token_hex(32)
    rows[5]["sha256"] = exact_sha
    with db.session() as s:
        s.execute(insert(ScanRecord), rows)
    log = ScanLog(db, settings)
    found = log.find_copies(
        [HashSet(query, secrets.token_hex(16), exact_sha, 100)],
        exclude_content_ids={"k-6"},
    )
    expected = {
        f"k-{i}": pdq_distance(query, r["pdq"])
        for i, r in enumerate(rows)
        if i % 6 == 0 and i != 6 and pdq_distance(query, r["pdq"]) <= 24
    }
    expected["k-5"] = 0
    assert {c.content_id: c.distance for c in found} == expected
    assert {c.content_id for c in found if c.reason == "copy_exact"} == {"k-5"}
    assert len(expected) >= 8  # the test compared something on every side of the batches
    assert log.find_copies([HashSet(query, "0" * 32, "0" * 64, 100)], threshold=0) == []


# -- over HTTP ------------------------------------------------------------------------------
@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver of this test's own: what it holds came from this test's server."""
    rx = Receiver()
    yield rx
    rx.close()


def test_scan_api_records_ids_and_platforms_get_removals(
    live: LiveServer, receiver: Receiver, tmp_path: Path
) -> None:
    img = images()
    with live.client("admin") as admin:
        r = admin.post(
            "/v1/webhooks",
            json={"url": receiver.url, "secret": SECRET, "events": list(MY_EVENTS)},
        )
        assert r.status_code == 201, r.text
    files = {"file": ("x.jpg", img["orig"], "application/octet-stream")}
    with live.client("platform") as platform:
        r = platform.post("/v1/scan", params={"content_id": "L-1", "uploader": "U-1"}, files=files)
        assert r.status_code == 200, r.text
        first = r.json()
        assert isinstance(first["scan_id"], int) and first["decision"]["action"] == "allow"
        r = platform.post("/v1/scan", params={"content_id": "L-2"}, files=files)
        near = {"file": ("y.jpg", img["near"], "application/octet-stream")}
        r3 = platform.post("/v1/scan", params={"content_id": "L-3"}, files=near)
        assert r.status_code == r3.status_code == 200
        for params, code in (
            ({"content_id": "a\nb"}, "request.bad_content_id"),
            ({"content_id": "x" * 256}, "request.bad_content_id"),
            ({"content_id": "ok", "uploader": ""}, "request.bad_uploader"),
        ):
            bad = platform.post("/v1/scan", params=params, files=files)
            assert bad.status_code == 422 and bad.json()["code"] == code, bad.text
        assert platform.get("/v1/removals").json() == []

    db = open_database(live.url)
    try:
        with db.session() as s:
            logged = dict(s.execute(select(ScanRecord.id, ScanRecord.content_id)).all())
            assert logged[first["scan_id"]] == "L-1"
            assert sorted(c for c in logged.values() if c) == ["L-1", "L-2", "L-3"]
        service_settings = Settings(data_dir=tmp_path, database_url=live.url)
        removals = RemovalService(db, service_settings)
        summary = removals.remove_request(make_request(db, ["L-1"]), actor="rv-live")
        assert {r.content_id for r in summary.removals} == {"L-1", "L-2", "L-3"}

        got = receiver.wait("content.remove", 3)
        assert {e["content_id"] for e in got} == {"L-1", "L-2", "L-3"}
        notices = receiver.wait("notice.statement", 3)
        assert {n["uploader"] for n in notices} >= {"U-1"}

        with live.client("platform") as platform:
            pulled = platform.get("/v1/removals", params={"after": 0}).json()
            assert [p["content_id"] for p in pulled] == ["L-1", "L-2", "L-3"]
            assert pulled[0]["statement"]["url"] == f"/statements/{summary.statements[0]}"
            rest = platform.get("/v1/removals", params={"after": pulled[0]["id"], "limit": 1})
            assert [p["content_id"] for p in rest.json()] == ["L-2"]
            assert platform.get("/v1/removals", params={"limit": 0}).status_code == 422
            # The server's index catches up with the new block entries by itself.
            deadline = time.monotonic() + 10
            while True:
                again = platform.post("/v1/scan", params={"content_id": "L-4"}, files=files)
                if again.json()["decision"]["action"] == "block" or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert again.json()["decision"]["action"] == "block"
            assert any(m["bank"] == "takedowns" for m in again.json()["matches"])

            before = datetime.now(UTC) - timedelta(seconds=1)
            removals.restore(summary.removals[2].id, actor="rv-other")
            restored = platform.get(
                "/v1/removals", params={"restored_since": before.isoformat()}
            ).json()
            assert [p["content_id"] for p in restored] == ["L-3"]
            assert restored[0]["restored_at"] is not None
        [back] = receiver.wait("content.restore", 1)
        assert back["content_id"] == "L-3"
        with live.client("reviewer") as reviewer:
            assert reviewer.get("/v1/removals").status_code == 403
    finally:
        db.close()
