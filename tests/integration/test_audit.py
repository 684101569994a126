"""The audit log on real databases (SQLite file and PostgreSQL), the real CLI (a subprocess for
the issue's own test, click's runner for the rest) and a real server: tampering of every kind
is found and named, concurrent appenders (threads, processes) keep one chain, exports
round-trip, services record their changes (never keys, secrets, case numbers or PINs), and API
requests are attributed to their key."""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, insert, select, text, update

from dignity import audit
from dignity.actions.webhooks import WebhookService
from dignity.audit import AuditHead, AuditRecord
from dignity.audit.export import export_lines, list_records
from dignity.audit.verify import verify
from dignity.cases.service import CaseService, HashIn
from dignity.cli.app import cli
from dignity.derivatives.service import NewSource, SourceService
from dignity.exchanges.service import ExchangeService
from dignity.keys import KeyService
from dignity.matching.banks import BankService, NewEntry
from dignity.media import decode
from dignity.samples import encode, landscape
from dignity.settings import Settings
from dignity.storage.db import Database, open_database
from tests.integration.server import LiveServer

ROOT = Path(__file__).resolve().parents[2]


def pdq(i: int) -> str:
    return f"{i:064x}"


# -- helpers -----------------------------------------------------------------------------------
def env_for(settings: Settings) -> dict[str, str]:
    return {
        "DIGNITY_DATA_DIR": str(settings.data_dir),
        "DIGNITY_DATABASE_URL": settings.resolved_database_url,
    }


def run_cli(settings: Settings, *args: str) -> Result:
    """The real command group in this process; its actor is undone afterwards (copied context
    as well, so nothing a command sets can reach later tests)."""
    runner = CliRunner()
    ctx = contextvars.copy_context()
    return ctx.run(runner.invoke, cli, list(args), env=env_for(settings), catch_exceptions=False)


def summary(result: Result) -> dict[str, Any]:
    lines = [x for x in result.stdout.splitlines() if x.strip()]
    assert len(lines) == 1, result.stdout
    out: dict[str, Any] = json.loads(lines[0])
    return out


def append(db: Database, n: int, *, actor: str = "test:seed", action: str = "test.done") -> None:
    for i in range(n):
        with db.session() as s:
            audit.record(s, action, f"t:{i}", {"i": i, "text": "ünïcode ok"}, actor=actor)


def seed(db: Database) -> int:
    """A chain written by real services plus plain records; returns its length."""
    banks = BankService(db)
    banks.create_bank("seeded", threshold=20)
    banks.add_entries("seeded", [NewEntry("pdq", pdq(i)) for i in range(1, 4)])
    banks.update_bank("seeded", threshold=24)
    KeyService(db).create("curator", name="anna")
    append(db, 6)
    return head(db)[0]


def head(db: Database) -> tuple[int, str]:
    with db.engine.connect() as conn:
        row = conn.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1)).one()
    return int(row[0]), str(row[1])


def sql(db: Database, statement: str, **params: Any) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(statement), params)


def hash_of(db: Database, seq: int) -> str:
    with db.engine.connect() as conn:
        return str(
            conn.execute(select(AuditRecord.hash).where(AuditRecord.seq == seq)).scalar_one()
        )


def records(db: Database) -> list[dict[str, Any]]:
    return [json.loads(line) for line in export_lines(db)]


# -- a fresh chain -----------------------------------------------------------------------------
def test_a_fresh_chain_verifies(db: Database, settings: Settings) -> None:
    empty = run_cli(settings, "audit", "verify")
    assert empty.exit_code == 0, empty.output
    assert summary(empty) | {"seconds": 0} == {
        "ok": True,
        "records": 0,
        "head_seq": 0,
        "head_hash": audit.GENESIS,
        "first_at": None,
        "last_at": None,
        "broken_seq": None,
        "reason": None,
        "message": "the audit chain is intact",
        "seconds": 0,
    }
    n = seed(db)
    assert n == 10
    result = run_cli(settings, "audit", "verify")
    assert result.exit_code == 0, result.output
    out = summary(result)
    assert out["ok"] and out["records"] == n and out["head_seq"] == n
    assert out["head_hash"] == head(db)[1]
    assert [r["seq"] for r in records(db)] == list(range(1, n + 1))


# -- the test: alter a record with SQL, verify fails naming it ---------------------------
def test_altering_a_record_makes_the_real_cli_fail_naming_its_seq(
    db: Database, settings: Settings
) -> None:
    n = seed(db)
    k = 4
    env = {**os.environ, **env_for(settings)}
    ok = subprocess.run(
        [sys.executable, "-m", "dignity", "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    sql(db, "UPDATE audit_log SET detail = :d WHERE seq = :k", d='{"threshold":63}', k=k)
    bad = subprocess.run(
        [sys.executable, "-m", "dignity", "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 3, (bad.stdout, bad.stderr)
    assert f"audit.broken: the audit chain is broken at seq {k} (altered)" in bad.stderr
    out = json.loads(bad.stdout)
    assert (out["ok"], out["broken_seq"], out["reason"], out["records"]) == (False, k, "altered", 3)
    assert out["head_seq"] == n


# -- every other kind of tampering -------------------------------------------------------------
def forged(seq: int, prev_hash: str, action: str = "bank.created") -> dict[str, Any]:
    at = datetime.now(UTC)
    detail = audit.canonical({"forged": True})
    digest = audit.record_hash(prev_hash, seq, at, "cli:mallory", action, "bank:x", detail)
    return {
        "seq": seq,
        "at": at,
        "actor": "cli:mallory",
        "action": action,
        "subject": "bank:x",
        "detail": detail,
        "prev_hash": prev_hash,
        "hash": digest,
    }


def tamper(db: Database, kind: str, n: int) -> tuple[int, str]:
    """Apply one kind of tampering to a chain of ``n``; returns (seq, reason) verify must name."""
    if kind == "delete_middle":
        sql(db, "DELETE FROM audit_log WHERE seq = 5")
        return 5, "missing"
    if kind == "delete_tail":  # and nothing else: the head still names the last record
        sql(db, "DELETE FROM audit_log WHERE seq = :n", n=n)
        return n, "missing"
    if kind == "delete_first":
        sql(db, "DELETE FROM audit_log WHERE seq = 1")
        return 1, "missing"
    if kind == "swap":
        sql(db, "UPDATE audit_log SET seq = -1 WHERE seq = 3")
        sql(db, "UPDATE audit_log SET seq = 3 WHERE seq = 7")
        sql(db, "UPDATE audit_log SET seq = 7 WHERE seq = -1")
        return 3, "altered"
    if kind == "change_actor":
        sql(db, "UPDATE audit_log SET actor = 'cli:someone-else' WHERE seq = 2")
        return 2, "altered"
    if kind == "change_time":
        with db.engine.begin() as conn:
            at = conn.execute(select(AuditRecord.at).where(AuditRecord.seq == 6)).scalar_one()
            conn.execute(
                update(AuditRecord)
                .where(AuditRecord.seq == 6)
                .values(at=at - timedelta(microseconds=1))
            )
        return 6, "altered"
    if kind == "rehash":  # record 4 rewritten with a hash that fits its new contents
        prev = hash_of(db, 3)
        fake = forged(4, prev)
        with db.engine.begin() as conn:
            conn.execute(update(AuditRecord).where(AuditRecord.seq == 4).values(**fake))
        return 5, "link"
    if kind == "insert_past_head":  # a well-formed record chained on, head left alone
        with db.engine.begin() as conn:
            conn.execute(insert(AuditRecord).values(**forged(n + 1, head(db)[1])))
        return n + 1, "unexpected"
    if kind == "insert_middle":  # later records moved up one to make room
        for seq in range(n, 4, -1):
            sql(db, "UPDATE audit_log SET seq = :b WHERE seq = :a", a=seq, b=seq + 1)
        with db.engine.begin() as conn:
            conn.execute(insert(AuditRecord).values(**forged(5, hash_of(db, 4))))
            conn.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=n + 1))
        return 6, "altered"
    if kind == "insert_seq_zero":
        with db.engine.begin() as conn:
            conn.execute(insert(AuditRecord).values(**forged(0, audit.GENESIS)))
        return 0, "unexpected"
    if kind == "head_hash":
        sql(db, "UPDATE audit_head SET hash = :h WHERE id = 1", h="e" * 64)
        return n, "head"
    if kind == "head_rolled_back":
        sql(db, "UPDATE audit_head SET seq = :s WHERE id = 1", s=n - 1)
        return n, "unexpected"
    raise AssertionError(kind)


KINDS = [
    "delete_middle",
    "delete_tail",
    "delete_first",
    "swap",
    "change_actor",
    "change_time",
    "rehash",
    "insert_past_head",
    "insert_middle",
    "insert_seq_zero",
    "head_hash",
    "head_rolled_back",
]


@pytest.mark.parametrize("kind", KINDS)
def test_tampering_is_found_and_named(db: Database, settings: Settings, kind: str) -> None:
    n = seed(db)
    assert verify(db, batch=3).ok
    seq, reason = tamper(db, kind, n)
    for batch in (3, 1000):  # across batch boundaries and within one batch
        result = verify(db, batch=batch)
        assert (result.ok, result.broken_seq, result.reason) == (False, seq, reason), result
    cmd = run_cli(settings, "audit", "verify")
    assert cmd.exit_code == 3
    assert f"audit.broken: the audit chain is broken at seq {seq} ({reason})" in cmd.stderr
    assert summary(cmd)["broken_seq"] == seq


def test_a_rewritten_tail_and_head_need_an_anchor(db: Database, settings: Settings) -> None:
    n = seed(db)
    noted = head(db)  # an operator keeps the head hash somewhere else
    # Someone who knows the format rewrites the last records and the head consistently.
    prev = hash_of(db, n - 2)
    with db.engine.begin() as conn:
        for seq in (n - 1, n):
            fake = forged(seq, prev)
            conn.execute(update(AuditRecord).where(AuditRecord.seq == seq).values(**fake))
            prev = fake["hash"]
        conn.execute(update(AuditHead).where(AuditHead.id == 1).values(hash=prev))
    assert verify(db).ok  # the chain alone cannot tell...
    result = run_cli(settings, "audit", "verify", "--expect", f"{noted[0]}:{noted[1]}")
    assert result.exit_code == 3  # ...the anchor can
    assert summary(result)["reason"] == "anchor" and summary(result)["broken_seq"] == n
    bad = run_cli(settings, "audit", "verify", "--expect", "12:nothex")
    assert bad.exit_code == 3 and "audit.bad_anchor" in bad.stderr


def test_no_head_row_is_reported(db: Database) -> None:
    seed(db)
    sql(db, "DELETE FROM audit_head")
    assert verify(db).reason == "no_head"
    with pytest.raises(audit.AuditError) as exc, db.session() as s:
        audit.record(s, "test.done")
    assert exc.value.code == "audit.no_head"


# -- concurrency ------------------------------------------------------------------------------
def test_threads_appending_at_once_keep_one_chain(db: Database) -> None:
    threads, each = 6, 15
    banks = BankService(db)
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        try:
            with audit.acting_as(f"test:thread-{t}"):
                start.wait()
                banks.create_bank(f"b{t}")
                for i in range(each):
                    with db.session() as s:
                        audit.record(s, "test.done", f"t:{t}", {"i": i})
                banks.add_entries(f"b{t}", [NewEntry("pdq", pdq(1000 * t + 1))])
        except BaseException as exc:  # reported below; a thread cannot fail the test itself
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert not errors, errors
    result = verify(db, batch=7)
    assert result.ok, result
    assert result.records == threads * (each + 2)
    by_actor: dict[str, int] = {}
    for r in records(db):
        by_actor[r["actor"]] = by_actor.get(r["actor"], 0) + 1
    assert by_actor == {f"test:thread-{t}": each + 2 for t in range(threads)}


def test_verify_while_others_append_raises_no_false_alarm(db: Database) -> None:
    append(db, 20)
    stop = threading.Event()
    errors: list[BaseException] = []

    def appender() -> None:
        try:
            while not stop.is_set():
                append(db, 1, actor="test:busy")
        except BaseException as exc:  # reported below
            errors.append(exc)

    th = threading.Thread(target=appender)
    th.start()
    try:
        results = [verify(db, batch=4) for _ in range(15)]
    finally:
        stop.set()
        th.join()
    assert not errors, errors
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    assert results[-1].records > 20  # it saw records appended while it ran
    assert verify(db).ok


APPENDER = """
import sys
from dignity import audit
from dignity.storage.db import open_database
db = open_database(sys.argv[1])
for i in range(int(sys.argv[2])):
    with db.session() as s:
        audit.record(s, "test.done", f"p:{sys.argv[3]}", {"i": i}, actor="test:" + sys.argv[3])
db.close()
"""


def test_two_processes_appending_at_once_keep_one_chain(db: Database, settings: Settings) -> None:
    each = 60
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, settings.resolved_database_url, str(each), name],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name in ("one", "two")
    ]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err.decode()
    result = verify(db)
    assert result.ok and result.records == 2 * each, result
    actors = [r["actor"] for r in records(db)]
    assert actors.count("test:one") == each and actors.count("test:two") == each
    # They really did interleave (or at least both wrote): the chain does not care either way.
    assert set(actors) == {"test:one", "test:two"}


def test_verify_streams_a_long_chain_in_batches(db: Database) -> None:
    """Many records written fast (computed here, inserted in bulk), then checked in batches;
    a mid-chain alteration is still found. DIGNITY_TEST_AUDIT_RECORDS=1000000 for the big run."""
    n = int(os.environ.get("DIGNITY_TEST_AUDIT_RECORDS", "20000"))
    prev, base = audit.GENESIS, datetime(2026, 1, 1, tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    with db.engine.begin() as conn:
        for seq in range(1, n + 1):
            at = base + timedelta(milliseconds=seq)
            detail = audit.canonical({"entries": {"count": seq % 7}})
            digest = audit.record_hash(prev, seq, at, "test:bulk", "entry.added", "bank:b", detail)
            rows.append(
                {
                    "seq": seq,
                    "at": at,
                    "actor": "test:bulk",
                    "action": "entry.added",
                    "subject": "bank:b",
                    "detail": detail,
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            prev = digest
            if len(rows) == 5000:
                conn.execute(insert(AuditRecord), rows)
                rows = []
        if rows:
            conn.execute(insert(AuditRecord), rows)
        conn.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=n, hash=prev))
    started = time.monotonic()
    result = verify(db, batch=5000)
    took = time.monotonic() - started
    assert result.ok and result.records == n, result
    print(f"verified {n} records in {took:.2f}s")
    k = n - n // 3
    sql(db, "UPDATE audit_log SET subject = 'bank:other' WHERE seq = :k", k=k)
    broken = verify(db, batch=5000)
    assert (broken.broken_seq, broken.reason, broken.records) == (k, "altered", k - 1)


# -- export and list ----------------------------------------------------------------------------
def test_export_round_trips(db: Database, settings: Settings, tmp_path: Path) -> None:
    n = seed(db)
    out = tmp_path / "audit.jsonl"
    r = run_cli(settings, "audit", "export", "-o", str(out))
    assert r.exit_code == 0, r.output
    exported = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [e["seq"] for e in exported] == list(range(1, n + 1))
    # Every column, as stored; `at` in the form the hash covers.
    with db.session() as s:
        rows = s.scalars(select(AuditRecord).order_by(AuditRecord.seq)).all()
    for e, row in zip(exported, rows, strict=True):
        assert e == {
            "id": row.id,
            "seq": row.seq,
            "at": audit.iso(row.at),
            "actor": row.actor,
            "action": row.action,
            "subject": row.subject,
            "detail": row.detail,
            "prev_hash": row.prev_hash,
            "hash": row.hash,
        }
        assert e["hash"] == audit.record_hash(
            e["prev_hash"],
            e["seq"],
            datetime.strptime(e["at"], "%Y-%m-%dT%H:%M:%S.%fZ"),
            e["actor"],
            e["action"],
            e["subject"],
            e["detail"],
        )
    assert json.loads(exported[-1]["detail"])["text"] == "ünïcode ok"
    # stdout and file agree; --after-seq gives the rest; the export verifies offline.
    stdout = run_cli(settings, "audit", "export")
    assert stdout.stdout == out.read_text(encoding="utf-8")
    tail = run_cli(settings, "audit", "export", "--after-seq", "7")
    assert [json.loads(x)["seq"] for x in tail.stdout.splitlines()] == list(range(8, n + 1))
    assert run_cli(settings, "audit", "export", "--after-seq", str(n)).stdout == ""
    ok = run_cli(settings, "audit", "verify", "--file", str(out))
    assert ok.exit_code == 0 and summary(ok)["head_hash"] == head(db)[1]
    part = tmp_path / "tail.jsonl"
    part.write_text(tail.stdout, encoding="utf-8")
    assert run_cli(settings, "audit", "verify", "--file", str(part)).exit_code == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert "anna" in lines[3]  # seq 4: key.created
    lines[3] = lines[3].replace("anna", "bob")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    bad = run_cli(settings, "audit", "verify", "--file", str(out))
    assert bad.exit_code == 3 and summary(bad)["broken_seq"] == 4
    missing_dir = run_cli(settings, "audit", "export", "-o", str(tmp_path / "no" / "x.jsonl"))
    assert missing_dir.exit_code == 3 and "audit.bad_output" in missing_dir.stderr


def test_list_filters(db: Database, settings: Settings) -> None:
    seed(db)
    with audit.acting_as("key:9:ops"):
        KeyService(db).create("reviewer", name="kim")
    assert [r["action"] for r in list_records(db, action="bank.")] == [
        "bank.updated",
        "bank.created",
    ]
    assert [r["subject"] for r in list_records(db, actor="key:9:")] == ["key:2"]
    assert len(list_records(db, subject="bank:seeded")) == 3
    assert len(list_records(db, limit=4)) == 4
    assert list_records(db, since=datetime.now(UTC) + timedelta(hours=1)) == []
    assert len(list_records(db, since=datetime.now(UTC) - timedelta(hours=1))) == 11
    # "_" and "%" are not wildcards in a prefix.
    assert list_records(db, action="bank_") == [] and list_records(db, action="%") == []
    paged = list_records(db, after_seq=8, limit=2)
    assert [r["seq"] for r in paged] == [9, 10]
    r = run_cli(settings, "audit", "list", "--action", "key.", "--json")
    assert r.exit_code == 0, r.output
    assert [json.loads(x)["actor"] for x in r.stdout.splitlines()] == ["key:9:ops", "system"]
    table = run_cli(settings, "audit", "list", "--limit", "3")
    assert table.exit_code == 0 and "key.created" in table.stdout
    since = run_cli(settings, "audit", "list", "--since", "yesterday")
    assert since.exit_code == 3 and "audit.bad_since" in since.stderr


def test_cli_commands_record_the_os_user(db: Database, settings: Settings) -> None:
    r = run_cli(settings, "bank", "create", "from-cli")
    assert r.exit_code == 0, r.output
    (rec,) = list_records(db, action="bank.created")
    assert rec["actor"].startswith("cli")
    assert rec["actor"] in ("cli", f"cli:{os.environ.get('USER') or rec['actor'][4:]}")
    assert audit.current_actor() == "system"  # the command's actor ended with it


def test_policy_loaded_only_when_it_changes(db: Database, tmp_path: Path) -> None:
    assert audit.record_policy(db, None)
    assert not audit.record_policy(db, None)
    policy = tmp_path / "policy.toml"
    default = Path(audit.__file__).parents[1] / "policy" / "default.toml"
    policy.write_bytes(default.read_bytes())
    assert audit.record_policy(db, policy)  # same content, another file: recorded
    assert not audit.record_policy(db, policy)
    policy.write_bytes(default.read_bytes() + b"\n# tightened\n")
    assert audit.record_policy(db, policy)
    loaded = list_records(db, action="policy.loaded")
    assert [json.loads(r["detail"])["path"] for r in loaded] == [
        str(policy.resolve()),
        str(policy.resolve()),
        "default.toml (shipped with dignity)",
    ]
    assert all(r["actor"] == "system" for r in loaded)
    # Several server workers starting at once record it once.
    policy.write_bytes(default.read_bytes() + b"\n# again\n")
    wrote: list[bool] = []
    pool = [
        threading.Thread(target=lambda: wrote.append(audit.record_policy(db, policy)))
        for _ in range(4)
    ]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert sorted(wrote) == [False, False, False, True]
    assert verify(db).ok


# -- what each service records ---------------------------------------------------------------
def details(db: Database, prefix: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (r["action"], r["subject"], json.loads(r["detail"]))
        for r in reversed(list_records(db, action=prefix, limit=1000))
    ]


def test_bank_changes_are_recorded_in_bounded_records(db: Database) -> None:
    banks = BankService(db)
    bank_id = banks.create_bank("b1", purpose="review", threshold=10, description="d").id
    banks.update_bank("b1", threshold=12, enabled=False)
    banks.update_bank("b1", threshold=12)  # no change: no record
    banks.rename_bank("b1", "b2")
    added = banks.add_entries("b2", [NewEntry("pdq", pdq(i)) for i in range(1, 251)])
    banks.add_entries("b2", [NewEntry("pdq", pdq(1))])  # already there: no record
    banks.withdraw("b2", added.added[:3])
    banks.withdraw("b2", added.added[:3])  # already withdrawn: no record
    banks.delete_entries("b2", [added.added[3]])
    with pytest.raises(Exception):  # noqa: B017 - any refusal; what matters is nothing written
        banks.create_bank("b2")
    assert banks.delete_bank("b2") == 249
    got = details(db, "")
    assert [(a, s) for a, s, _ in got] == [
        ("bank.created", "bank:b1"),
        ("bank.updated", "bank:b1"),
        ("bank.renamed", "bank:b2"),
        ("entry.added", "bank:b2"),
        ("entry.withdrawn", "bank:b2"),
        ("entry.deleted", "bank:b2"),
        ("bank.deleted", "bank:b2"),
    ]
    assert got[0][2] == {
        "bank_id": bank_id,
        "purpose": "review",
        "threshold": 10,
        "enabled": True,
        "description": "d",
    }
    assert got[1][2] == {"bank_id": bank_id, "threshold": [10, 12], "enabled": [True, False]}
    assert got[2][2] == {"bank_id": bank_id, "from": "b1"}
    entries = got[3][2]["entries"]
    assert got[3][2]["added"] == 250 and entries["count"] == 250 and entries["ids_truncated"]
    assert entries["ids"] == added.added[:100]
    assert got[4][2]["entries"] == {"count": 3, "ids": added.added[:3], "ids_truncated": False}
    assert got[5][2]["entries"]["ids"] == [added.added[3]]
    assert got[6][2] == {"bank_id": bank_id, "entries": 249}
    assert verify(db).ok


def test_keys_and_webhooks_are_recorded_without_secrets(db: Database) -> None:
    info, key = KeyService(db).create("curator", name="anna", rate_per_minute=30)
    KeyService(db).revoke(info.id)
    KeyService(db).revoke(info.id)  # already revoked: no record
    hooks = WebhookService(db)
    secret = "s3cret-signing-value-xyz"
    hook, _ = hooks.create(
        "https://hooks.example.org/services/T0/B0/tokenpart?x=1", secret=secret, events="*"
    )
    hooks.update(hook.id, secret="an0ther-signing-value", enabled=False)
    hooks.remove(hook.id)
    got = details(db, "")
    assert [(a, s) for a, s, _ in got] == [
        ("key.created", f"key:{info.id}"),
        ("key.revoked", f"key:{info.id}"),
        ("webhook.created", f"webhook:{hook.id}"),
        ("webhook.updated", f"webhook:{hook.id}"),
        ("webhook.removed", f"webhook:{hook.id}"),
    ]
    assert got[0][2] == {"name": "anna", "role": "curator", "rate_per_minute": 30}
    assert got[2][2] == {"url": "https://hooks.example.org", "events": "*", "enabled": True}
    assert got[3][2] == {"secret": "changed", "enabled": False}
    everything = "\n".join(export_lines(db))
    for hidden in (key, key[3:20], secret, "an0ther-signing-value", "tokenpart"):
        assert hidden not in everything


def test_cases_are_recorded_without_number_or_pin(db: Database) -> None:
    cases = CaseService(db, bank_name="cases", pin_attempts=3, lockout_s=60, max_hashes=5)
    created = cases.create([HashIn("pdq", pdq(77), 100), HashIn("pdq", pdq(78), 100)])
    cases.withdraw(created.number, created.pin)
    got = details(db, "case.")
    assert [a for a, _, _ in got] == ["case.created", "case.withdrawn"]
    assert got[0][2] == {"hashes": 2} and got[1][2] == {"hashes": 2}
    assert got[0][1] == got[1][1] and got[0][1].startswith("case:")
    everything = "\n".join(export_lines(db))
    for form in (created.number, created.pin):
        for hidden in (form, form.replace("-", "").replace(" ", "")):
            assert hidden not in everything
    # The bank side is recorded too, by count, without the origin (the case number).
    assert [a for a, _, _ in details(db, "entry.")] == ["entry.added", "entry.withdrawn"]
    assert verify(db).ok


def test_sources_and_exchanges_are_recorded(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    sources = SourceService(db)
    media = decode(encode(landscape(3), "JPEG"))
    (info,) = sources.register([sources.prepare(NewSource(media, "p-17", "the person", "hl"))])
    sources.remove(info.id)
    got = details(db, "source.")
    assert got == [
        (
            "source.registered",
            f"source:{info.id}",
            {"consent_record_id": info.id, "subject": "p-17"},
        ),
        ("source.removed", f"source:{info.id}", {"consent_record_id": info.id, "subject": "p-17"}),
    ]
    path = tmp_path / "hashes.txt"
    path.write_text(f"pdq {pdq(5)}\npdq {pdq(6)}\n")
    svc = ExchangeService(db, settings)
    svc.add("f", "file", config={"filename": str(path)})
    svc.fetch("f")
    svc.fetch("f")  # nothing new: no record
    svc.update("f", enabled=False, interval_s=60)
    svc.remove("f", delete_bank=True)
    got = details(db, "exchange.")
    assert [a for a, _, _ in got] == [
        "exchange.added",
        "exchange.fetched",
        "exchange.updated",
        "exchange.removed",
    ]
    assert got[0][2]["type"] == "file" and got[0][2]["credentials"] is False
    fetched = got[1][2]
    assert (fetched["status"], fetched["records"], fetched["added"]) == ("complete", 2, {"pdq": 2})
    assert got[2][2] == {"enabled": False, "interval_s": 60}
    assert got[3][2] == {"bank": "f", "delete_bank": True}
    assert [a for a, _, _ in details(db, "bank.")] == ["bank.created", "bank.deleted"]
    assert verify(db).ok


def test_a_refused_change_writes_no_record(db: Database) -> None:
    BankService(db).create_bank("x")
    before = head(db)
    for attempt in (
        lambda: BankService(db).create_bank("x"),
        lambda: BankService(db).rename_bank("nope", "y"),
        lambda: BankService(db).withdraw("x", [424242]),
        lambda: KeyService(db).create("emperor"),
    ):
        with pytest.raises(Exception):  # noqa: B017 - each is refused; the chain must not move
            attempt()
    assert head(db) == before
    with db.session() as s, pytest.raises(audit.AuditError):
        audit.record(s, "no-dot")
    assert head(db) == before


# -- over HTTP ---------------------------------------------------------------------------------
def _key_actor(live: LiveServer, role: str) -> str:
    db = open_database(live.url)
    try:
        (key,) = [k for k in KeyService(db).list() if k.name == f"test-{role}"]
    finally:
        db.close()
    return f"key:{key.id}:{key.name}"


def test_api_writes_are_attributed_to_the_key(live: LiveServer) -> None:
    with live.client("curator") as c:
        assert c.post("/v1/banks", json={"name": "api-bank"}).status_code == 201  # sync route
        r = c.post("/v1/banks/api-bank/entries", json={"entries": [{"value": pdq(9)}]})
        assert r.status_code in (200, 201), r.text  # through run_heavy's worker thread
    # Public (no key) writes are "anonymous", though `dignity serve` runs as a CLI user.
    r = httpx.post(
        live.base + "/portal/api/cases",
        json={"hashes": [{"signal": "pdq", "value": pdq(10), "quality": 100}], "adult": True},
    )
    assert r.status_code == 201, r.text
    with live.client("admin") as admin:
        got = admin.get("/v1/audit", params={"limit": 1000}).json()
    curator = _key_actor(live, "curator")
    actors = {(x["action"], x["subject"]): x["actor"] for x in got}
    assert actors[("bank.created", "bank:api-bank")] == curator
    assert actors[("entry.added", "bank:api-bank")] == curator
    assert [x["actor"] for x in got if x["action"] == "case.created"] == ["anonymous"]
    assert all(
        x["actor"] == "system" for x in got if x["action"] in ("key.created", "policy.loaded")
    )


def test_audit_route_is_admin_only_and_pages(live: LiveServer) -> None:
    with live.client() as anon:
        assert anon.get("/v1/audit").status_code == 401
    for role in ("curator", "reviewer", "platform"):
        with live.client(role) as c:
            r = c.get("/v1/audit")
            assert r.status_code == 403 and r.json()["code"] == "auth.forbidden"
    with live.client("admin") as admin:
        everything = admin.get("/v1/audit", params={"limit": 1000}).json()
        assert [x["seq"] for x in everything] == list(range(1, len(everything) + 1))
        first = admin.get("/v1/audit", params={"limit": 2}).json()
        rest = admin.get("/v1/audit", params={"after_seq": first[-1]["seq"]}).json()
        assert first + rest == everything[: len(first) + len(rest)]
        assert set(first[0]) == {
            "id",
            "seq",
            "at",
            "actor",
            "action",
            "subject",
            "detail",
            "prev_hash",
            "hash",
        }
        keys = admin.get("/v1/audit", params={"action": "key."}).json()
        assert keys and all(x["action"].startswith("key.") for x in keys)
        assert admin.get("/v1/audit", params={"limit": 0}).status_code == 422
        assert admin.get("/v1/audit", params={"after_seq": -1}).status_code == 422


def test_policy_is_recorded_once_across_restarts(live: LiveServer) -> None:
    live.stop()
    live.start()
    with live.client("admin") as admin:
        loaded = admin.get("/v1/audit", params={"action": "policy.", "limit": 1000}).json()
    assert len(loaded) == 1
    detail = json.loads(loaded[0]["detail"])
    default = Path(audit.__file__).parents[1] / "policy" / "default.toml"
    assert detail["sha256"] == hashlib.sha256(default.read_bytes()).hexdigest()
    db = open_database(live.url)
    try:
        assert verify(db).ok
        with db.engine.connect() as conn:
            n = conn.execute(select(func.count()).select_from(AuditRecord)).scalar_one()
        assert n == head(db)[0]
    finally:
        db.close()
