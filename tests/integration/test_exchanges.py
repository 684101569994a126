"""Hash exchanges end to end: python-threatexchange's real clients against local fake servers.

Each fake (tests/fakes/) speaks its service's HTTP API on 127.0.0.1 and the real py-tx client
code is pointed at it; banks, records and checkpoints live in a real SQLite file (and
PostgreSQL where DIGNITY_TEST_POSTGRES_URL is set). What must hold: additions land in the
exchange's bank with origin ``exchange``; withdrawals and deletions take entries out through
the bank service (so the index log carries them); unknown types are counted; a fetch that is
killed or fails mid-way resumes from its checkpoint without losing or duplicating anything.
"""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from threatexchange.exchanges.collab_config import CollaborationConfigBase
from threatexchange.exchanges.impl.stop_ncii_api import StopNCIISignalExchangeAPI

import dignity.exchanges.models  # noqa: F401
from dignity.errors import DignityError
from dignity.exchanges import ExchangeService
from dignity.exchanges.models import Exchange, ExchangeRecord
from dignity.matching.banks import NewEntry
from dignity.matching.engine import MatchEngine
from dignity.settings import Settings
from dignity.storage.db import Database
from dignity.storage.models import Entry, IndexLog
from tests.fakes.ncmec import FakeNCMEC, NcmecEntry
from tests.fakes.stopncii import FakeStopNCII
from tests.fakes.threatexchange import FakeThreatExchange

ROOT = Path(__file__).resolve().parents[2]


def hexes(seed: int, n: int, length: int = 64) -> list[str]:
    rnd = random.Random(seed)
    return ["".join(rnd.choice("0123456789abcdef") for _ in range(length)) for _ in range(n)]


@pytest.fixture
def svc(db: Database, settings: Settings) -> ExchangeService:
    return ExchangeService(db, settings)


@pytest.fixture
def stopncii() -> Iterator[FakeStopNCII]:
    with FakeStopNCII(page_size=2) as fake:
        yield fake  # type: ignore[misc]


def bank_state(db: Database, bank: str) -> dict[tuple[str, str], str]:
    from dignity.storage.models import Bank

    with db.session() as s:
        bank_id = s.scalar(select(Bank.id).where(Bank.name == bank))
        rows = s.execute(
            select(Entry.signal, Entry.value, Entry.status).where(Entry.bank_id == bank_id)
        ).all()
    return {(sig, val): status for sig, val, status in rows}


def active(db: Database, bank: str) -> set[tuple[str, str]]:
    return {k for k, v in bank_state(db, bank).items() if v == "active"}


# -- StopNCII --------------------------------------------------------------------------------
def test_stopncii_adds_withdraws_and_counts_unknown(
    svc: ExchangeService, db: Database, stopncii: FakeStopNCII
) -> None:
    pdq = hexes(1, 4)
    md5 = hexes(2, 1, 32)[0]
    for v in pdq:
        stopncii.put(v)
    stopncii.put(md5, signal_type="VideoMD5")
    stopncii.put("tmk-blob", signal_type="VideoTMK")
    stopncii.put("https://example.com/x", signal_type="URL")
    svc.add("sncii", "stopncii", base_url=stopncii.base_url, credentials=stopncii.credentials())

    first = svc.fetch("sncii").to_dict()
    assert first["status"] == "complete"
    assert first["added"] == {"video_md5": 1, "pdq": 4}
    assert first["unknown"] == {"URL": 1, "VideoTMK": 1}
    assert first["withdrawn"] == {}
    assert first["pages"] == 4  # 7 records, pages of 2: the client really paginated
    assert active(db, "sncii") == {("pdq", v) for v in pdq} | {("video_md5", md5)}
    with db.session() as s:
        e = s.scalars(select(Entry).where(Entry.value == pdq[0])).one()
        assert (e.origin_kind, e.origin_ref) == ("exchange", f"sncii:ImagePDQ:{pdq[0]}")

    engine = MatchEngine(db)
    engine.load()
    assert engine.match_hashes([("pdq", pdq[0])]).matches

    # The person withdraws one case; StopNCII deletes another hash; one hash keeps one of its
    # two cases (still blocked).
    stopncii.put(pdq[0], status="Withdrawn", cases={})
    stopncii.put(pdq[1], status="Active", cases={"c1": "Deleted", "c2": "Withdrawn"})
    stopncii.put(pdq[2], status="Active", cases={"c1": "Withdrawn", "c2": "Active"})
    second = svc.fetch("sncii").to_dict()
    assert second["status"] == "complete" and not second["full"]
    assert second["withdrawn"] == {"pdq": 2}
    assert second["added"] == {}
    state = bank_state(db, "sncii")
    assert state[("pdq", pdq[0])] == state[("pdq", pdq[1])] == "withdrawn"
    assert state[("pdq", pdq[2])] == state[("pdq", pdq[3])] == "active"
    # Withdrawn through the bank service: the change log carries it to every process.
    engine.refresh()
    assert not engine.match_hashes([("pdq", pdq[0])]).matches
    assert engine.match_hashes([("pdq", pdq[2])]).matches
    with db.session() as s:
        removed = s.scalars(select(IndexLog.entry_id).where(IndexLog.op == "remove")).all()
        ids = s.scalars(select(Entry.id).where(Entry.value.in_(pdq[:2]))).all()
    assert set(ids) <= set(removed)

    # A withdrawn case whose hash comes back active (a new case) is blocked again.
    stopncii.put(pdq[0], status="Active")
    third = svc.fetch("sncii").to_dict()
    assert third["added"] == {"pdq": 1}
    assert bank_state(db, "sncii")[("pdq", pdq[0])] == "active"


def test_pytx_stopncii_path_does_not_remove_withdrawn(stopncii: FakeStopNCII) -> None:
    """The py-tx 1.2.17 bug our adapter works around: a Withdrawn hash maps to a live record."""
    value = hexes(3, 1)[0]
    stopncii.put(value, status="Withdrawn", cases={"c": "Withdrawn"})
    from threatexchange.exchanges.clients.stopncii.api import StopNCIIAPI

    client = StopNCIIAPI(
        stopncii.subscription_key, stopncii.fetch_key, base_url_override=stopncii.base_url
    )
    api = StopNCIISignalExchangeAPI(CollaborationConfigBase("x", "stop_ncii", True), client)
    updates: dict[Any, Any] = {}
    for delta in api.fetch_iter([], None):
        updates.update(delta.updates)
    assert updates[("pdq", value)] is not None  # py-tx would keep blocking it


def test_stopncii_record_pytx_cannot_parse_is_still_withdrawn(
    svc: ExchangeService, db: Database, stopncii: FakeStopNCII
) -> None:
    value, bad = hexes(4, 2)
    stopncii.put(value)
    svc.add("s", "stopncii", base_url=stopncii.base_url, credentials=stopncii.credentials())
    svc.fetch("s")
    assert ("pdq", value) in active(db, "s")
    # py-tx's dacite parse drops any record with an unexpected enum value anywhere; a
    # withdrawal must not be lost because of a feedback field.
    odd = [{"source": "X", "feedbackValue": "SomethingNew", "tags": []}]
    stopncii.put(value, status="Withdrawn", CSPFeedbacks=odd)
    stopncii.put("not-hex", status="Active")  # a malformed hash: counted, not applied
    stopncii.put(bad, status="Active", signalType="ImagePDQ")
    out = svc.fetch("s").to_dict()
    assert out["withdrawn"] == {"pdq": 1}
    assert out["notes"] == {"read_leniently": 1}
    assert out["errors"] == {"pdq": 1}
    assert out["error_samples"][0]["type"] == "pdq"
    assert bank_state(db, "s")[("pdq", value)] == "withdrawn"
    assert ("pdq", bad) in active(db, "s")


def test_stopncii_failure_midway_resumes_from_checkpoint(
    svc: ExchangeService, db: Database, stopncii: FakeStopNCII
) -> None:
    values = hexes(5, 9)
    for v in values:
        stopncii.put(v)
    svc.add("s", "stopncii", base_url=stopncii.base_url, credentials=stopncii.credentials())
    stopncii.fail_from = 2  # the third page request fails
    out = svc.fetch("s").to_dict()
    assert out["status"] == "failed"
    assert out["error"]["code"] == "exchange.fetch_failed"
    assert out["pages"] == 2
    assert len(active(db, "s")) == 4
    cp = svc.get("s").checkpoint
    assert cp is not None and cp["next_page"]  # mid-set: the page token, not the set time

    stopncii.fail_from = None
    before = len(stopncii.fetches())
    again = svc.fetch("s").to_dict()
    assert again["status"] == "complete"
    resumed = stopncii.fetches()[before]
    assert resumed.query.get("nextPageToken") == cp["next_page"]  # not from the beginning
    assert active(db, "s") == {("pdq", v) for v in values}
    assert again["added"] == {"pdq": 5}
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Entry)) == 9
        assert s.scalar(select(func.count()).select_from(ExchangeRecord)) == 9


def test_stopncii_expired_page_token_restarts_the_set(
    svc: ExchangeService, db: Database, stopncii: FakeStopNCII
) -> None:
    values = hexes(6, 5)
    for v in values:
        stopncii.put(v)
    svc.add("s", "stopncii", base_url=stopncii.base_url, credentials=stopncii.credentials())
    assert svc.fetch("s", max_pages=1).status == "partial"
    with db.session() as s:
        row = s.scalars(select(Exchange)).one()
        cp = json.loads(row.checkpoint or "{}")
        cp["next_page"] = "expired-token"
        row.checkpoint = json.dumps(cp)
    out = svc.fetch("s").to_dict()
    assert out["status"] == "complete"
    assert out["notes"] == {"page_token_expired": 1}
    assert active(db, "s") == {("pdq", v) for v in values}


def _cli(env: dict[str, str], *args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dignity", *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        **kw,
    )


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "DIGNITY_DATA_DIR": str(settings.data_dir),
        "DIGNITY_DATABASE_URL": settings.resolved_database_url,
    }


def test_killed_fetch_resumes_without_loss_or_duplicates(
    svc: ExchangeService, db: Database, settings: Settings, stopncii: FakeStopNCII
) -> None:
    """SIGKILL the CLI while it waits for page 4; the next fetch picks up after page 3."""
    values = hexes(7, 11)
    for v in values:
        stopncii.put(v)
    svc.add("s", "stopncii", base_url=stopncii.base_url, credentials=stopncii.credentials())
    stopncii.hold_at = 3
    proc = _cli(_env(settings), "exchange", "fetch", "s")
    try:
        assert stopncii.held.wait(60), proc.stderr.read() if proc.stderr else ""
        time.sleep(0.3)  # let it finish committing page 3 (the hold is on the next request)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        stopncii.release.set()
    assert len(active(db, "s")) == 6
    cp = svc.get("s").checkpoint
    assert cp is not None and cp["next_page"]
    stopncii.hold_at = None
    # The killed process still holds the lease until it expires.
    with pytest.raises(DignityError) as busy:
        svc.fetch("s")
    assert busy.value.code == "exchange.busy"
    with db.session() as s:
        s.execute(Exchange.__table__.update().values(lease_until=None, lease_owner=None))
    before = len(stopncii.fetches())
    out = svc.fetch("s").to_dict()
    assert out["status"] == "complete"
    assert stopncii.fetches()[before].query.get("nextPageToken") == cp["next_page"]
    assert active(db, "s") == {("pdq", v) for v in values}
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Entry)) == len(values)


def test_feedback_goes_back_to_stopncii(
    svc: ExchangeService, stopncii: FakeStopNCII, settings: Settings
) -> None:
    value = hexes(8, 1)[0]
    stopncii.put(value)
    svc.add("s", "stopncii", base_url=stopncii.base_url, credentials=stopncii.credentials())
    svc.add(
        "nofb",
        "stopncii",
        base_url=stopncii.base_url,
        credentials=stopncii.credentials(feedback=False),
    )
    svc.fetch("s")
    svc.fetch("nofb")
    out = svc.feedback("s", [("pdq", value)], "blocked", ["Nude"])
    assert out["sent"] == 1
    assert stopncii.feedback == [
        {
            "count": 1,
            "hashFeedbacks": [{"tags": ["Nude"], "feedbackValue": "Blocked", "hashValue": value}],
        }
    ]
    svc.feedback("s", [("pdq", value)], "not_blocked", [])
    assert stopncii.feedback[-1]["hashFeedbacks"][0]["feedbackValue"] == "NotBlocked"
    with pytest.raises(DignityError) as no_key:
        svc.feedback("nofb", [("pdq", value)], "blocked", [])
    assert no_key.value.code == "exchange.no_credentials"
    with pytest.raises(DignityError) as unknown:
        svc.feedback("s", [("pdq", hexes(9, 1)[0])], "blocked", [])
    assert unknown.value.code == "exchange.no_record"


# -- NCMEC ------------------------------------------------------------------------------------
def test_ncmec_paging_tombstones_shared_hashes_and_resume(
    svc: ExchangeService, db: Database
) -> None:
    base = int(time.time()) - 3 * 86400
    pdq = hexes(10, 5)
    md5 = hexes(11, 3, 32)
    with FakeNCMEC(page_size=2) as fake:
        entries = [
            NcmecEntry(42, "img1", "image", base, {"pdq": pdq[0], "md5": md5[0], "pdna": "x" * 40}),
            NcmecEntry(42, "img2", "image", base + 1, {"pdq": pdq[1], "sha1": "a" * 40}),
            NcmecEntry(43, "img3", "image", base + 2, {"pdq": pdq[2]}),
            NcmecEntry(43, "img4", "image", base + 3, {"pdq": pdq[2]}),  # same picture, 2nd ESP
            NcmecEntry(42, "vid1", "video", base + 4, {"md5": md5[1]}),
            NcmecEntry(44, "img5", "image", base + 5, {"pdq": pdq[3]}),
            NcmecEntry(44, "img6", "image", base + 600, {"pdq": pdq[4], "md5": md5[2]}),
        ]
        for e in entries:
            fake.put(e)
        svc.add("ncmec", "ncmec", base_url=fake.base_url, credentials=fake.credentials())
        part = svc.fetch("ncmec", max_pages=2).to_dict()
        assert part["status"] == "partial"
        cp = svc.get("ncmec").checkpoint
        assert cp is not None
        out = svc.fetch("ncmec").to_dict()
        assert out["status"] == "complete", out
        # NCMEC's video MD5 is our video_md5; an image's MD5 stays md5.
        want = (
            {("pdq", v) for v in pdq} | {("md5", md5[0]), ("md5", md5[2])} | {("video_md5", md5[1])}
        )
        assert active(db, "ncmec") == want
        total = {k: part["unknown"].get(k, 0) + out["unknown"].get(k, 0) for k in out["unknown"]}
        assert total == {"image/pdna": 1, "image/sha1": 1} or set(total) == {
            "image/pdna",
            "image/sha1",
        }
        with db.session() as s:
            assert s.scalar(select(func.count()).select_from(Entry)) == len(want)

        # Tombstones carry no fingerprints: the record memory finds the hashes. img3's picture
        # stays blocked while img4 (another ESP's entry) still carries it.
        # NCMEC stamps a change with its time; py-tx fetches up to 5 s ago, from its checkpoint.
        def later() -> int:
            cp = svc.get("ncmec").checkpoint
            assert cp is not None and cp["paging_info"] is None
            time.sleep(1.1)
            return int(cp["get_entries_max_ts"])

        now = later()
        fake.delete(42, "img1", now)
        fake.delete(43, "img3", now)
        out = svc.fetch("ncmec").to_dict()
        assert out["status"] == "complete", out
        assert out["withdrawn"] == {"md5": 1, "pdq": 1}
        state = bank_state(db, "ncmec")
        assert state[("pdq", pdq[0])] == state[("md5", md5[0])] == "withdrawn"
        assert state[("pdq", pdq[2])] == "active"
        fake.delete(43, "img4", later())
        out = svc.fetch("ncmec").to_dict()
        assert out["withdrawn"] == {"pdq": 1}
        assert bank_state(db, "ncmec")[("pdq", pdq[2])] == "withdrawn"

        # Feedback: an upvote on the entry that carries the hash, through py-tx's client.
        svc.feedback("ncmec", [("pdq", pdq[3])], "blocked", [])
        path, body = fake.feedback[-1]
        assert path == "/v2/entries/44/img5/PDQ/feedback"
        assert b"affirmative" in body


# -- Facebook ThreatExchange -------------------------------------------------------------------
def test_threatexchange_updates_deletes_and_redacts_token(
    svc: ExchangeService, db: Database
) -> None:
    pdq = hexes(12, 3)
    md5 = hexes(13, 1, 32)[0]
    with FakeThreatExchange() as fake:
        descriptor = fake.put("HASH_PDQ", pdq[0])
        fake.put("HASH_PDQ", pdq[1])
        fake.put("HASH_MD5", md5)
        fake.put("URI", "https://example.com/a")
        fake.put("HASH_PDQ", pdq[2], status="NON_MALICIOUS")
        svc.add(
            "te",
            "fb_threatexchange",
            base_url=fake.base_url,
            credentials=fake.token,
            config={"privacy_group": 777},
        )
        out = svc.fetch("te").to_dict()
        assert out["status"] == "complete", out
        assert out["added"] == {"md5": 1, "pdq": 2}
        assert out["unknown"] == {"URI": 1}
        assert active(db, "te") == {("pdq", pdq[0]), ("pdq", pdq[1]), ("md5", md5)}
        assert all(r.path == "/v99.0/777/threat_updates/" for r in fake.requests)
        # Nothing new: ThreatExchange answers an empty page (py-tx's fetch_iter asserts here).
        out = svc.fetch("te").to_dict()
        assert out["status"] == "complete", out
        fake.delete("HASH_PDQ", pdq[1])
        out = svc.fetch("te").to_dict()
        assert out["withdrawn"] == {"pdq": 1}
        assert bank_state(db, "te")[("pdq", pdq[1])] == "withdrawn"

        svc.feedback("te", [("pdq", pdq[0])], "blocked", [])
        assert fake.reactions[-1] == (str(descriptor), "HELPFUL")

        # A refusal's message names the URL, which carries the token: it must not leak.
        fake.fail_from = 0
        out = svc.fetch("te").to_dict()
        assert out["status"] == "failed"
        assert fake.token not in json.dumps(out)
        assert fake.token.split("|")[1] not in json.dumps(out)
        assert "***" in out["error"]["message"]


# -- local file --------------------------------------------------------------------------------
def test_file_exchange_is_a_snapshot(svc: ExchangeService, db: Database, tmp_path: Path) -> None:
    pdq = hexes(14, 3)
    md5 = hexes(15, 1, 32)[0]
    path = tmp_path / "hashes.txt"
    path.write_text(
        f"pdq {pdq[0]}\npdq {pdq[1]}\nvideo_md5 {md5}\nphotodna AAAA\npdq {pdq[2]}\npdq nothex\n"
    )
    svc.add("f", "file", config={"filename": str(path)})
    out = svc.fetch("f").to_dict()
    assert out["added"] == {"video_md5": 1, "pdq": 3}
    assert out["unknown"] == {"photodna": 1}
    assert out["errors"] == {"pdq": 1}
    path.write_text(f"pdq {pdq[0]}\nvideo_md5 {md5}\n")
    out = svc.fetch("f").to_dict()
    assert out["withdrawn"] == {"pdq": 2}
    assert active(db, "f") == {("pdq", pdq[0]), ("video_md5", md5)}
    path.unlink()
    out = svc.fetch("f").to_dict()
    assert out["status"] == "failed" and out["error"]["code"] == "exchange.file_missing"
    assert active(db, "f") == {
        ("pdq", pdq[0]),
        ("video_md5", md5),
    }  # a missing file removes nothing
    with pytest.raises(DignityError) as exc:
        svc.feedback("f", [("pdq", pdq[0])], "blocked", [])
    assert exc.value.code == "exchange.feedback_unsupported"


def test_hand_added_hash_is_not_withdrawn_by_the_exchange(
    svc: ExchangeService, db: Database, tmp_path: Path
) -> None:
    pdq = hexes(16, 2)
    path = tmp_path / "h.txt"
    path.write_text(f"pdq {pdq[0]}\npdq {pdq[1]}\n")
    svc.add("f", "file", config={"filename": str(path)})
    svc.banks.add_entries("f", [NewEntry("pdq", pdq[1], "person", "curator")])
    svc.fetch("f")
    # A curator withdraws an exchange hash by hand: an unchanged re-fetch must not revive it.
    svc.banks.withdraw("f", [pdq[0]])
    svc.fetch("f")
    assert bank_state(db, "f")[("pdq", pdq[0])] == "withdrawn"
    path.write_text("")
    svc.fetch("f")
    assert bank_state(db, "f")[("pdq", pdq[1])] == "active"


# -- configuration and credentials ---------------------------------------------------------------
def test_add_refusals(svc: ExchangeService, stopncii: FakeStopNCII) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "bad name", "kind": "file"}, "exchange.bad_name"),
        ({"name": "x", "kind": "nope"}, "exchange.bad_type"),
        ({"name": "x", "kind": "stopncii"}, "exchange.no_credentials"),
        ({"name": "x", "kind": "stopncii", "credentials": "onlyone"}, "exchange.bad_credentials"),
        ({"name": "x", "kind": "ncmec", "credentials": "nopassword"}, "exchange.bad_credentials"),
        (
            {"name": "x", "kind": "fb_threatexchange", "credentials": "123|short"},
            "exchange.bad_credentials",
        ),
        (
            {"name": "x", "kind": "stopncii", "credentials": "a,b", "base_url": "ftp://x"},
            "exchange.bad_config",
        ),
        ({"name": "x", "kind": "dignity_feed", "credentials": "k"}, "exchange.bad_config"),
        ({"name": "x", "kind": "file"}, "exchange.bad_config"),
        (
            {"name": "x", "kind": "ncmec", "credentials": "u:p", "config": {"environment": "Moon"}},
            "exchange.bad_config",
        ),
    ]
    for kwargs, code in cases:
        name = kwargs.pop("name")
        kind = kwargs.pop("kind")
        with pytest.raises(DignityError) as exc:
            svc.add(name, kind, **kwargs)
        assert exc.value.code == code, (kwargs, exc.value)
    assert svc.list_all() == []
    assert svc.banks.list_banks() == []
    svc.add("s", "stopncii", base_url=stopncii.base_url, credentials=stopncii.credentials())
    with pytest.raises(DignityError) as exc:
        svc.add("s", "stopncii", base_url=stopncii.base_url, credentials=stopncii.credentials())
    assert exc.value.code == "exchange.exists"
    svc.banks.create_bank("taken")
    with pytest.raises(DignityError) as exc:
        svc.add("taken", "stopncii", credentials=stopncii.credentials())
    assert exc.value.code == "bank.exists"
    svc.add("taken", "stopncii", credentials=stopncii.credentials(), bank="taken")


def test_credentials_are_encrypted_and_never_printed(
    settings: Settings, db: Database, stopncii: FakeStopNCII
) -> None:
    env = _env(settings)
    creds = stopncii.credentials()
    add = _cli(
        env,
        "exchange",
        "add",
        "s",
        "--type",
        "stopncii",
        "--url",
        stopncii.base_url,
        "--credentials",
        "-",
    )
    out, err = add.communicate(creds, timeout=60)
    assert add.returncode == 0, err
    stopncii.put(hexes(17, 1)[0])
    outputs = [out]
    for args in (["fetch", "s"], ["show", "s"], ["list"]):
        p = _cli(env, "exchange", *args)
        o, e = p.communicate(timeout=60)
        assert p.returncode == 0, e
        outputs.append(o + e)
    shown = json.loads(outputs[2])
    assert shown["credentials"] == "set"
    assert shown["last_summary"]["status"] == "complete"
    for secret in (stopncii.fetch_key, stopncii.subscription_key, stopncii.feedback_key):
        assert all(secret not in o for o in outputs)
        with db.session() as s:
            stored = s.scalar(select(Exchange.credentials))
        assert stored and secret not in stored
    key_file = settings.data_dir / "exchange-secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # Another key cannot read them: a clear refusal, not garbage.
    key_file.write_text("x" * 43 + "=\n")
    p = _cli(env, "exchange", "fetch", "s")
    _, e = p.communicate(timeout=60)
    assert p.returncode == 3
    assert "exchange.bad_secret" in e


def test_run_loop_fetches_on_schedule(
    svc: ExchangeService, db: Database, settings: Settings, stopncii: FakeStopNCII
) -> None:
    first, second = hexes(18, 2)
    stopncii.put(first)
    svc.add(
        "s",
        "stopncii",
        base_url=stopncii.base_url,
        credentials=stopncii.credentials(),
        interval_s=0.5,
    )
    proc = _cli(_env(settings), "exchange", "run")
    try:
        deadline = time.monotonic() + 60
        while ("pdq", first) not in active(db, "s") and time.monotonic() < deadline:
            time.sleep(0.1)
        stopncii.put(second)
        stopncii.put(first, status="Withdrawn")
        while (
            bank_state(db, "s").get(("pdq", first)) != "withdrawn" and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        assert ("pdq", second) in active(db, "s")
        assert bank_state(db, "s")[("pdq", first)] == "withdrawn"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    summaries = [json.loads(line) for line in out.splitlines()]
    assert len(summaries) >= 2
    assert all(s["status"] == "complete" for s in summaries)


# -- another dignity instance's partner feed -------------------------------------------------------
def test_dignity_feed_carries_video_cases(tmp_path: Path) -> None:
    """A helpline's video case (vPDQ frames + video MD5, as the portal sends them) reaches a
    subscribed platform through the feed: B blocks the video, and stops when it is withdrawn."""
    from dignity.cases.service import CaseService, HashIn
    from dignity.storage.db import open_database
    from dignity.video.formats import frames_to_json
    from dignity.video.vpdq import vpdq_hash
    from tests.integration.server import LiveServer
    from tests.videos import write_video

    clip = write_video(tmp_path / "clip.mp4", [(3, 0, 8)])
    video = vpdq_hash(clip)
    a = LiveServer(tmp_path / "a")
    b = LiveServer(tmp_path / "b")
    a.start()
    b.start()
    db_a = open_database(a.url)
    db_b = open_database(b.url)
    try:
        cases = CaseService(db_a)
        frames = tuple(frames_to_json(video.frames))
        case = cases.create([HashIn("video_md5", video.md5), HashIn("vpdq", frames=frames)])
        with a.client("partner") as c:
            items = c.get("/v1/feed").json()["items"]
        by_signal = {i["signal"]: i for i in items}
        assert set(by_signal) == {"video_md5", "vpdq"}
        assert by_signal["vpdq"]["frames"] == list(frames)

        svc = ExchangeService(db_b, Settings(data_dir=tmp_path / "b", database_url=b.url))
        svc.add("helpline-a", "dignity", base_url=a.base, credentials=a.keys["partner"])
        out = svc.fetch("helpline-a").to_dict()
        assert out["status"] == "complete" and out["added"] == {"video_md5": 1, "vpdq": 1}, out
        time.sleep(0.5)  # B's server replays the change log every 0.2 s

        def signals() -> set[str]:
            with b.client("platform") as c:
                r = c.post("/v1/match", files={"file": ("v.mp4", clip.read_bytes(), "video/mp4")})
            assert r.status_code == 200, r.text
            return {m["signal"] for m in r.json()["matches"] if m["bank"] == "helpline-a"}

        assert {"vpdq", "video_md5"} <= signals()
        cases.withdraw_by_number(case.number)
        out = svc.fetch("helpline-a").to_dict()
        assert out["withdrawn"] == {"video_md5": 1, "vpdq": 1}, out
        time.sleep(0.5)
        assert signals() == set()
    finally:
        db_a.close()
        db_b.close()
        a.stop()
        b.stop()


def test_dignity_feed_between_two_live_instances(tmp_path: Path) -> None:
    """Helpline A shares case hashes; platform B subscribes with a partner key and blocks them,
    and stops blocking when the cases are withdrawn (a hash shared by two cases stays blocked
    until both are)."""
    from dignity.cases.service import CaseService, HashIn
    from dignity.hashing.signals import hash_bytes
    from dignity.samples import encode, landscape
    from dignity.storage.db import open_database
    from tests.integration.server import LiveServer

    a = LiveServer(tmp_path / "a")
    b = LiveServer(tmp_path / "b")
    a.start()
    b.start()
    db_a = open_database(a.url)
    db_b = open_database(b.url)
    try:
        photo, other = encode(landscape(41)), encode(landscape(42))
        h, h2 = hash_bytes(photo), hash_bytes(other)
        assert h.pdq is not None and h2.pdq is not None
        cases = CaseService(db_a)
        first = cases.create([HashIn("pdq", h.pdq.hex, h.pdq.quality), HashIn("md5", h.md5)])
        second = cases.create([HashIn("pdq", h.pdq.hex, h.pdq.quality)])
        third = cases.create([HashIn("pdq", h2.pdq.hex, h2.pdq.quality)])

        settings_b = Settings(data_dir=tmp_path / "b", database_url=b.url)
        svc = ExchangeService(db_b, settings_b)
        svc.add("helpline-a", "dignity", base_url=a.base, credentials=a.keys["partner"])

        def blocked(data: bytes) -> bool:
            with b.client("platform") as c:
                r = c.post("/v1/match", files={"file": ("u.jpg", data, "image/jpeg")})
            assert r.status_code == 200, r.text
            return any(m["bank"] == "helpline-a" for m in r.json()["matches"])

        assert not blocked(photo)
        out = svc.fetch("helpline-a").to_dict()
        assert out["status"] == "complete", out
        assert out["added"] == {"md5": 1, "pdq": 2}
        assert out["records"] == 4
        time.sleep(0.5)  # B's server replays the change log every 0.2 s
        assert blocked(photo) and blocked(other)

        cases.withdraw_by_number(first.number)
        cases.withdraw_by_number(third.number)
        out = svc.fetch("helpline-a").to_dict()
        # md5 of case 1 and the picture of case 3 go; case 2 still holds the first picture.
        assert out["withdrawn"] == {"md5": 1, "pdq": 1}, out
        time.sleep(0.5)
        assert blocked(photo) and not blocked(other)
        cases.withdraw_by_number(second.number)
        out = svc.fetch("helpline-a").to_dict()
        assert out["withdrawn"] == {"pdq": 1}
        deadline = time.monotonic() + 5
        while blocked(photo) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not blocked(photo)

        # Another role's key is refused by A: the fetch fails and says why.
        svc.update("helpline-a", credentials=a.keys["platform"])
        out = svc.fetch("helpline-a").to_dict()
        assert out["status"] == "failed"
        assert "403" in out["error"]["message"]
        assert a.keys["platform"] not in json.dumps(out)
    finally:
        db_a.close()
        db_b.close()
        a.stop()
        b.stop()


def test_file_exchange_takes_vpdq(svc: ExchangeService, db: Database, tmp_path: Path) -> None:
    """py-tx's vPDQ extension writes ``vpdq <JSON list of "pdq_hex,quality,timestamp">``: the
    entry gets the frames (and matches by them); a record that goes withdraws it."""
    from dignity.matching import MatchEngine
    from dignity.video.formats import vpdq_pytx_json
    from dignity.video.vpdq import VpdqFrame

    frames = [VpdqFrame(i, float(i), v, 90) for i, v in enumerate(hexes(17, 6))]
    other = [VpdqFrame(i, float(i), v, 90) for i, v in enumerate(hexes(18, 4))]
    path = tmp_path / "videos.txt"
    path.write_text(f"vpdq {vpdq_pytx_json(frames)}\nvpdq {vpdq_pytx_json(other)}\nvpdq [1]\n")
    svc.add("v", "file", config={"filename": str(path)})
    out = svc.fetch("v").to_dict()
    assert out["added"] == {"vpdq": 2} and out["errors"] == {"vpdq": 1}
    engine = MatchEngine(db)
    engine.load()
    (m,) = engine.match_frames(frames).matches
    assert m.signal == "vpdq" and m.query_match_percent == 100.0
    path.write_text(f"vpdq {vpdq_pytx_json(other)}\n")
    assert svc.fetch("v").to_dict()["withdrawn"] == {"vpdq": 1}
    engine.refresh()
    assert not engine.match_frames(frames).matches
