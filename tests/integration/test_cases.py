"""Cases and the partner feed on real databases (SQLite file and PostgreSQL), real servers and
the real CLI: PIN storage and lockout, shared hashes, crash recovery, the feed's cursor and gaps,
withdrawal reaching another server process and a CLI process within a second."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text, update

from dignity.cases import pins
from dignity.cases import service as case_service
from dignity.cases.models import Case, CaseFeedLog, CaseHash
from dignity.cases.service import IMMEDIATE, CaseError, CaseService, HashIn
from dignity.errors import RequestRefused
from dignity.matching.banks import BankService, NewEntry
from dignity.settings import Settings
from dignity.storage.db import Database, open_database
from dignity.storage.models import Entry, utcnow
from tests.integration.server import LiveServer

P1 = "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22"
P2 = "e4cc89d91c623842f8d1f1d9a398e78c9f199a3bf87925f2b7e11e0bf061b064"
P3 = "6227401f601ff4ccafcc9fad4b0d95d371a2eb7265a3285234d228ca94deeb2d"
M1 = "0cc175b9c0f1b6a831c399e269772661"


@pytest.fixture
def cases(db: Database) -> CaseService:
    return CaseService(
        db, bank_name="cases", pin_attempts=3, lockout_s=60, max_hashes=5, batching=IMMEDIATE
    )


def _entry_status(db: Database, value: str) -> str:
    with db.session() as s:
        return str(
            s.execute(
                text("SELECT status FROM entries WHERE value = :v"), {"v": value}
            ).scalar_one()
        )


def test_create_status_withdraw(cases: CaseService, db: Database) -> None:
    created = cases.create([HashIn("pdq", P1.upper(), 90), HashIn("md5", M1), HashIn("pdq", P1)])
    assert created.hashes == 2  # the repeated hash is kept once
    assert len(created.number) == 14 and created.number.count("-") == 2
    assert len(created.pin) == 14 and created.pin.replace("-", "").isdigit()
    with db.session() as s:
        stored = s.execute(text("SELECT * FROM cases")).mappings().one()
        origin = s.execute(text("SELECT origin_kind, origin_ref FROM entries")).all()
    dump = json.dumps({k: str(v) for k, v in stored.items()})
    assert created.pin.replace("-", "") not in dump and stored["pin_hash"].startswith(
        "scrypt$15$8$1$"
    )
    assert set(origin) == {("case", created.number)}
    status = cases.status(created.number.lower().replace("-", " "), created.pin)
    assert status.to_dict()["hashes"] == 2 and status.to_dict()["matched"] is False
    assert _entry_status(db, P1) == "active"
    assert cases.withdraw(created.number, created.pin).status == "withdrawn"
    assert _entry_status(db, P1) == "withdrawn" and _entry_status(db, M1) == "withdrawn"
    # withdrawing again is harmless, and the status still answers
    assert cases.withdraw(created.number, created.pin).to_dict()["hashes"] == 2


def test_bad_hashes_are_refused_before_anything_is_written(
    cases: CaseService, db: Database
) -> None:
    bad: list[tuple[list[HashIn], str]] = [
        ([], "case.no_hashes"),
        ([HashIn("pdq", P1)] * 6, "case.too_many_hashes"),
        ([HashIn("sha256", P1)], "case.bad_hash"),
        ([HashIn("pdq", "xyz")], "case.bad_hash"),
        ([HashIn("pdq", "0" * 64)], "case.bad_hash"),
        ([HashIn("pdq", P1, 10)], "case.low_quality"),
        ([HashIn("pdq", P1, 101)], "case.bad_hash"),
    ]
    for items, code in bad:
        with pytest.raises(CaseError) as info:
            cases.create(items)
        assert info.value.code == code
    with db.session() as s:
        assert s.execute(text("SELECT count(*) FROM cases")).scalar_one() == 0
        assert s.execute(text("SELECT count(*) FROM entries")).scalar_one() == 0


def test_wrong_pins_lock_the_case(cases: CaseService) -> None:
    a = cases.create([HashIn("pdq", P1)])
    wrong = "0000-0000-0000" if a.pin != "0000-0000-0000" else "1111-1111-1111"
    for _ in range(2):
        with pytest.raises(CaseError) as info:
            cases.status(a.number, wrong)
        assert info.value.code == "case.bad_credentials"
    with pytest.raises(CaseError) as info:
        cases.status(a.number, wrong)  # the third wrong PIN locks
    assert info.value.code == "case.locked" and info.value.detail["retry_after"] > 0
    with pytest.raises(CaseError) as info:
        cases.status(a.number, a.pin)  # even the right PIN waits out the lock
    assert info.value.code == "case.locked"
    cases.unlock(a.number)
    assert cases.status(a.number, a.pin).status == "open"
    # a right PIN resets the count
    for _ in range(2):
        with pytest.raises(CaseError):
            cases.status(a.number, wrong)
    cases.status(a.number, a.pin)
    with pytest.raises(CaseError) as info:
        cases.status(a.number, wrong)
    assert info.value.code == "case.bad_credentials"


def test_unknown_numbers_and_nonsense_get_the_same_answer(cases: CaseService) -> None:
    for number, pin in [("ZZZZ-ZZZZ-ZZZZ", "1234-5678-9012"), ("nonsense", "x"), ("", "")]:
        start = time.perf_counter()
        with pytest.raises(CaseError) as info:
            cases.status(number, pin)
        assert info.value.code == "case.bad_credentials"
        assert time.perf_counter() - start > 0.01  # one scrypt was spent, as for a real case


def test_parallel_guesses_cannot_pass_the_limit(
    cases: CaseService, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = cases.create([HashIn("pdq", P1)])
    checked = []
    real = case_service.verify_pin

    def counting(pin: str | None, stored: str | None) -> bool:
        checked.append(stored is not None)
        return real(pin, stored)

    monkeypatch.setattr(case_service, "verify_pin", counting)
    wrong = "9999-9999-9999" if a.pin != "9999-9999-9999" else "8888-8888-8888"

    def guess() -> None:
        with contextlib.suppress(CaseError):
            cases.status(a.number, wrong)

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(checked) <= 3  # only pin_attempts guesses ever reached the PIN check


def test_a_shared_hash_stays_until_every_case_is_withdrawn(
    cases: CaseService, db: Database
) -> None:
    a = cases.create([HashIn("pdq", P1), HashIn("pdq", P2)])
    b = cases.create([HashIn("pdq", P1)])
    cases.withdraw(a.number, a.pin)
    assert _entry_status(db, P1) == "active"  # b still holds it
    assert _entry_status(db, P2) == "withdrawn"
    cases.withdraw_by_number(b.number)
    assert _entry_status(db, P1) == "withdrawn"


def test_entries_from_other_origins_are_left_alone(cases: CaseService, db: Database) -> None:
    banks = BankService(db)
    banks.create_bank("cases")
    banks.add_entries("cases", [NewEntry("pdq", P3, origin_kind="exchange", origin_ref="ncmec")])
    a = cases.create([HashIn("pdq", P3), HashIn("pdq", P2)])
    cases.withdraw(a.number, a.pin)
    assert _entry_status(db, P3) == "active"  # the exchange still says it is abuse
    assert _entry_status(db, P2) == "withdrawn"


def test_an_interrupted_withdrawal_is_finished(cases: CaseService, db: Database) -> None:
    cases.create([HashIn("pdq", P1)])
    with db.session() as s:  # what a crash between the two steps leaves behind
        s.execute(update(Case).values(status="withdrawn", withdrawn_at=utcnow()))
    assert _entry_status(db, P1) == "active"
    assert cases.release_pending() == 1
    assert _entry_status(db, P1) == "withdrawn"
    assert cases.release_pending() == 0


def test_matches_are_counted(cases: CaseService, db: Database) -> None:
    a = cases.create([HashIn("pdq", P1), HashIn("md5", M1)])
    with db.session() as s:
        ids = list(s.scalars(text("SELECT id FROM entries WHERE value = :v").bindparams(v=P1)))
    assert cases.record_matches([*ids, 999999]) == 1
    cases.record_matches(ids)
    status = cases.status(a.number, a.pin).to_dict()
    assert status["matched"] is True and status["matches"] == 2 and status["hashes"] == 2
    cases.withdraw(a.number, a.pin)
    assert cases.record_matches(ids) == 0  # withdrawn hashes count nothing more


def test_feed_cursor_pages_and_withdrawals(cases: CaseService) -> None:
    a = cases.create([HashIn("pdq", P1), HashIn("md5", M1)])
    b = cases.create([HashIn("pdq", P2)])
    cases.withdraw(a.number, a.pin)
    items = list(cases.iter_feed(0))
    # One batch of additions (in random order), then one of withdrawals.
    changes = [(i.signal, i.value, i.status) for i in items]
    assert set(changes[:3]) == {("pdq", P1, "active"), ("md5", M1, "active"), ("pdq", P2, "active")}
    assert set(changes[3:]) == {("pdq", P1, "withdrawn"), ("md5", M1, "withdrawn")}
    seqs = [i.seq for i in items]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    ids = {(i.value, i.status): i.id for i in items}
    assert ids[P1, "active"] == ids[P1, "withdrawn"] and ids[P1, "active"] != ids[M1, "active"]
    assert all(i.id.startswith("cs_") and b.number not in i.id for i in items)
    page = cases.feed(0, 2)
    assert [i.seq for i in page.items] == seqs[:2] and page.has_more and page.next_cursor == seqs[1]
    page = cases.feed(page.next_cursor, 2)
    assert [i.seq for i in page.items] == seqs[2:4] and page.has_more
    page = cases.feed(page.next_cursor, 2)
    assert [i.seq for i in page.items] == seqs[4:] and not page.has_more
    empty = cases.feed(page.next_cursor, 2)
    assert empty.items == [] and empty.next_cursor == page.next_cursor and not empty.has_more
    for cursor, limit in [(-1, 10), (0, 0), (0, 1001)]:
        with pytest.raises(RequestRefused) as err:  # a bad query, not a case refused
            cases.feed(cursor, limit)
        assert err.value.code == "request.invalid"


def test_feed_waits_at_a_fresh_gap(cases: CaseService, db: Database) -> None:
    cases.create([HashIn("pdq", P1)])
    first = cases.feed(0).items
    assert len(first) == 1
    with db.session() as s:
        hid = s.execute(text("SELECT id FROM case_hashes")).scalar_one()
        # seq first+1 is "still committing": a later row is already there
        s.add(CaseFeedLog(seq=first[0].seq + 2, case_hash_id=hid, status="withdrawn", at=utcnow()))
    page = cases.feed(first[0].seq)
    assert page.items == [] and not page.has_more and page.next_cursor == first[0].seq
    with db.session() as s:  # later: the gap was a rolled-back write, serve past it
        s.execute(
            update(CaseFeedLog)
            .where(CaseFeedLog.seq == first[0].seq + 2)
            .values(at=utcnow() - timedelta(seconds=10))
        )
    assert [i.seq for i in cases.feed(first[0].seq).items] == [first[0].seq + 2]


def test_pins_normalise_and_refuse_garbage() -> None:
    assert pins.normalize_number("k7qm 3xrt 9whf") == "K7QM3XRT9WHF"
    assert pins.normalize_number("O1IL-0000-0000") == "0111" + "0" * 8
    assert pins.normalize_number("K7QM-3XRT-9WH") is None
    assert pins.normalize_number("U" * 12) is None  # Crockford has no U
    assert pins.normalize_pin("1234 5678-9012") == "123456789012"
    assert pins.normalize_pin("１２３４５６７８９０１２") is None  # full-width digits
    assert pins.normalize_pin("12345678901") is None
    stored = pins.hash_pin("123456789012")
    assert pins.verify_pin("123456789012", stored)
    assert not pins.verify_pin("123456789013", stored)
    assert not pins.verify_pin("123456789012", "garbage")
    assert not pins.verify_pin("000000000000", None)


# -- over HTTP, with more than one process ----------------------------------------------------
@pytest.fixture
def two_servers(tmp_path: Path, server_url: str) -> Iterator[tuple[LiveServer, LiveServer]]:
    env = {"DIGNITY_DATABASE_URL": server_url, "DIGNITY_PORTAL_IP_FAILURES_PER_HOUR": "6"}
    first = LiveServer(tmp_path / "one", env=env)
    second = LiveServer(tmp_path / "two", env=env)  # another process on the same database
    first.start()
    second.start()
    yield first, second
    first.stop()
    second.stop()


def _match(server: LiveServer, value: str) -> list[Any]:
    with server.client("platform") as c:
        r = c.post("/v1/match", json={"hashes": [{"signal": "pdq", "value": value}]})
        assert r.status_code == 200, r.text
        matches: list[Any] = r.json()["matches"]
        return matches


def test_withdrawal_reaches_every_process_within_a_second(
    two_servers: tuple[LiveServer, LiveServer], tmp_path: Path
) -> None:
    one, two = two_servers
    r = httpx.post(
        one.base + "/portal/api/cases",
        json={"hashes": [{"signal": "pdq", "value": P1, "quality": 100}], "adult": True},
    )
    assert r.status_code == 201, r.text
    created = r.json()
    deadline = time.monotonic() + 5
    while not _match(two, P1):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = httpx.post(
        one.base + "/portal/api/cases/withdraw",
        json={"case_number": created["case_number"], "pin": created["pin"]},
    )
    assert r.status_code == 200 and r.json()["status"] == "withdrawn", r.text
    start = time.monotonic()
    assert not _match(one, P1)  # the serving process at once
    while _match(two, P1):
        assert time.monotonic() - start < 1.0, "the other process still matches after 1 s"
        time.sleep(0.02)
    env = {**one.env}
    out = subprocess.run(
        [sys.executable, "-m", "dignity", "case", "show", created["case_number"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "withdrawn"


def test_portal_api_refusals(two_servers: tuple[LiveServer, LiveServer]) -> None:
    one, _ = two_servers
    url = one.base + "/portal/api/cases"
    good = {"hashes": [{"signal": "pdq", "value": P2, "quality": 100}], "adult": True}
    assert httpx.post(url, json={**good, "adult": False}).json()["code"] == "case.not_adult"
    assert httpx.post(url, json={**good, "extra": 1}).status_code == 422
    assert (
        httpx.post(url, content=b"{", headers={"content-type": "application/json"}).status_code
        == 422
    )
    assert httpx.post(url, content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    big = {"hashes": [{"signal": "pdq", "value": P2}] * 60000, "adult": True}  # over 4 MiB
    assert httpx.post(url, json=big).status_code == 413
    many = {"hashes": [{"signal": "md5", "value": f"{i:032x}"} for i in range(300)], "adult": True}
    r = httpx.post(url, json=many)
    assert r.status_code == 422 and r.json()["code"] == "case.too_many_hashes"
    created = httpx.post(url, json=good).json()
    status_url = one.base + "/portal/api/cases/status"
    wrong = "0000-0000-0000" if created["pin"] != "0000-0000-0000" else "1111-1111-1111"
    codes = [
        httpx.post(status_url, json={"case_number": created["case_number"], "pin": wrong})
        for _ in range(6)
    ]
    assert [r.status_code for r in codes[:4]] == [403, 403, 403, 403]
    assert codes[4].status_code == 429 and codes[4].json()["code"] == "case.locked"
    assert int(codes[4].headers["retry-after"]) > 0
    # the address has used its 6 failures this hour: refused before any PIN check
    r = httpx.post(status_url, json={"case_number": created["case_number"], "pin": created["pin"]})
    assert r.status_code == 429 and r.json()["code"] == "rate.limited"
    # A proxy header nobody configured (DIGNITY_PORTAL_CLIENT_IP_HEADER is empty) is the
    # client's word: a new X-Forwarded-For each time must not reset the address's limit.
    for n in range(3):
        r = httpx.post(
            status_url,
            json={"case_number": created["case_number"], "pin": created["pin"]},
            headers={"X-Forwarded-For": f"198.51.100.{n}", "Forwarded": f"for=198.51.100.{n}"},
        )
        assert r.status_code == 429 and r.json()["code"] == "rate.limited", r.text


def test_feed_over_http_partner_only(two_servers: tuple[LiveServer, LiveServer]) -> None:
    one, _ = two_servers
    httpx.post(
        one.base + "/portal/api/cases",
        json={"hashes": [{"signal": "md5", "value": M1}], "adult": True},
    ).raise_for_status()
    assert httpx.get(one.base + "/v1/feed").status_code == 401
    for role in ("platform", "curator", "reviewer"):
        assert httpx.get(one.base + "/v1/feed", headers=one.headers(role)).status_code == 403
    with one.client("partner") as c:
        page = c.get("/v1/feed", params={"cursor": 0, "limit": 1000}).json()
        assert any(i["value"] == M1 and i["status"] == "active" for i in page["items"])
        assert set(page["items"][0]) == {"seq", "id", "signal", "value", "status", "updated_at"}
        for params in ({"cursor": -1}, {"cursor": "x"}, {"limit": 0}, {"limit": 1001}):
            assert c.get("/v1/feed", params=params).status_code == 422
        # a partner key may do nothing else
        assert c.get("/v1/banks").status_code == 403
        assert c.post("/v1/match", json={"hashes": []}).status_code == 403


def test_cli_cases_and_export(tmp_path: Path) -> None:
    env = {
        "DIGNITY_DATA_DIR": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "DIGNITY_FEED_BATCH_S": "0",  # one case: publish without waiting for others
        "DIGNITY_FEED_BATCH_MIN_CASES": "1",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dignity", *args], env=env, capture_output=True, text=True
        )

    made = run("case", "create", f"pdq:{P1}", f"md5:{M1}")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    listed = [json.loads(line) for line in run("case", "list").stdout.splitlines()]
    assert [c["case_number"] for c in listed] == [created["case_number"]]
    assert "pin" not in listed[0]
    shown = json.loads(run("case", "show", created["case_number"], "--hashes").stdout)
    assert {h["value"] for h in shown["hash_list"]} == {P1, M1}
    exported = run("feed", "export")
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [i["status"] for i in lines] == ["active", "active"]
    assert "next cursor" in exported.stderr
    assert run("case", "withdraw", created["case_number"]).returncode == 0
    after = [
        json.loads(x)
        for x in run("feed", "export", "--cursor", str(lines[-1]["seq"])).stdout.splitlines()
    ]
    assert [i["status"] for i in after] == ["withdrawn", "withdrawn"]
    assert run("feed", "export", "--format", "text").stdout == ""
    bad = run("case", "show", "NOPE-NOPE-NOPE")
    assert bad.returncode == 3 and "case.not_found" in bad.stderr
    assert run("case", "create", "nohash").returncode == 3
    db = open_database(f"sqlite:///{tmp_path / 'dignity.sqlite3'}")
    with db.session() as s:
        assert s.query(CaseHash).count() == 2 and s.query(Entry).count() == 2
    db.close()


def test_scan_recorders_count_case_matches_in_order(settings: Settings, db: Database) -> None:
    """The composition root's recorders run after the scan log, in their declared order: the
    webhook event, then the case counter that a case's status reports."""
    from dignity.samples import encode, landscape
    from dignity.services import CLI, Services

    services = Services(settings, profile=CLI, db=db)
    assert [r.name for r in services.recorders] == ["scan.match event", "case match counters"]
    data = encode(landscape(5), quality=90)
    pdq = services.scanner.analyze(data).hashes.pdq
    assert pdq is not None
    created = services.cases.create([HashIn("pdq", pdq.hex)])
    services.engine.load()
    result = services.scanner.scan(data)
    assert result.outcome.matches
    scan_id = services.record_scan(result, None, content_id="post-1")
    assert scan_id > 0
    assert services.cases.status(created.number, created.pin).matches == 1
    with db.session() as s:
        assert s.execute(text("SELECT count(*) FROM scan_log")).scalar_one() == 1


def test_concurrent_pin_guesses_stay_within_the_address_limit(tmp_path: Path) -> None:
    """60 wrong guesses from one address at once: no more than the hourly limit reach a PIN
    check (checked before and counted after the check, 42 of them got through a limit of 20),
    and past the address's cap on requests in flight the rest are refused at once."""
    server = LiveServer(
        tmp_path,
        env={"DIGNITY_PORTAL_IP_FAILURES_PER_HOUR": "6", "DIGNITY_ADDRESS_MAX_IN_FLIGHT": "4"},
    )
    server.start()
    try:

        async def guesses() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=server.base, timeout=60) as c:
                return await asyncio.gather(
                    *(
                        c.post(
                            "/portal/api/cases/status",
                            json={"case_number": f"NC-{n:04d}-0000", "pin": "0000-0000-0000"},
                        )
                        for n in range(60)
                    )
                )

        answers = asyncio.run(guesses())
        codes = [r.json()["code"] for r in answers]
        assert set(codes) <= {"case.bad_credentials", "rate.limited", "server.busy"}, set(codes)
        assert codes.count("case.bad_credentials") <= 6, codes.count("case.bad_credentials")
        # Past 4 requests in flight from one address, the rest are turned away at once.
        assert codes.count("server.busy") >= 1, codes
        busy = [r for r in answers if r.json()["code"] == "server.busy"]
        assert all(r.status_code == 503 and r.headers["retry-after"] for r in busy)
    finally:
        server.stop()
