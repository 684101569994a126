"""The audit chain's pure parts: the canonical text a hash covers, the hash itself (pinned by a
vector computed independently here, so the format cannot drift unnoticed), the actor context
(threads, tasks, nesting), and the chain check over exported lines (every kind of tampering)."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from dignity import audit
from dignity.audit.export import to_line
from dignity.audit.verify import verify_lines

AT = datetime(2026, 5, 19, 12, 0, 0, 123456, tzinfo=UTC)


# -- canonical form and time -------------------------------------------------------------------
def test_canonical_sorts_keys_drops_spaces_keeps_utf8() -> None:
    assert audit.canonical({"b": 1, "a": [1, 2], "é": "ü"}) == '{"a":[1,2],"b":1,"é":"ü"}'
    assert audit.canonical({"z": {"y": 1, "x": 2}}) == '{"z":{"x":2,"y":1}}'
    # Anything JSON cannot hold becomes its text, rather than failing inside a transaction.
    assert audit.canonical({"at": AT}) == '{"at":"2026-05-19 12:00:00.123456+00:00"}'


def test_iso_is_utc_with_microseconds_and_reads_naive_as_utc() -> None:
    assert audit.iso(AT) == "2026-05-19T12:00:00.123456Z"
    assert audit.iso(AT.replace(tzinfo=None)) == "2026-05-19T12:00:00.123456Z"
    plus2 = AT.astimezone(timezone(timedelta(hours=2)))
    assert audit.iso(plus2) == "2026-05-19T12:00:00.123456Z"
    assert audit.iso(AT.replace(microsecond=0)) == "2026-05-19T12:00:00.000000Z"


# -- the hash ----------------------------------------------------------------------------------
def test_record_hash_is_sha256_of_the_canonical_list() -> None:
    detail = '{"bank_id":1}'
    text = (
        '["' + audit.GENESIS + '",1,"2026-05-19T12:00:00.123456Z","cli:anna",'
        '"bank.created","bank:x","{\\"bank_id\\":1}"]'
    )
    want = hashlib.sha256(text.encode()).hexdigest()
    got = audit.record_hash(audit.GENESIS, 1, AT, "cli:anna", "bank.created", "bank:x", detail)
    assert got == want
    # Pinned: changing the format breaks every existing chain, so it must be a decision.
    assert got == "2c8408270797b771fde5c72c9d7450192da5bf39fa73ff5ad9663583de501a82"


@pytest.mark.parametrize(
    "field, value",
    [
        ("prev", "1" * 64),
        ("seq", 2),
        ("at", AT + timedelta(microseconds=1)),
        ("actor", "cli:bob"),
        ("action", "bank.deleted"),
        ("subject", "bank:y"),
        ("detail", '{"bank_id":2}'),
    ],
)
def test_every_field_is_covered(field: str, value: Any) -> None:
    base: dict[str, Any] = {
        "prev": audit.GENESIS,
        "seq": 1,
        "at": AT,
        "actor": "cli:anna",
        "action": "bank.created",
        "subject": "bank:x",
        "detail": '{"bank_id":1}',
    }
    before = audit.record_hash(*base.values())
    base[field] = value
    assert audit.record_hash(*base.values()) != before


def test_field_boundaries_cannot_be_shifted() -> None:
    # "ab" + "c" and "a" + "bc" must not hash alike: the list keeps fields apart.
    one = audit.record_hash(audit.GENESIS, 1, AT, "ab", "c.d", "", "{}")
    two = audit.record_hash(audit.GENESIS, 1, AT, "a", "bc.d", "", "{}")
    assert one != two


# -- actor context -----------------------------------------------------------------------------
def test_acting_as_nests_and_restores() -> None:
    ctx = contextvars.copy_context()

    def body() -> None:
        assert audit.current_actor() == "system"
        with audit.acting_as("cli:anna"):
            assert audit.current_actor() == "cli:anna"
            with audit.acting_as("key:1:x"):
                assert audit.current_actor() == "key:1:x"
            assert audit.current_actor() == "cli:anna"
        assert audit.current_actor() == "system"
        with pytest.raises(RuntimeError), audit.acting_as("key:2:y"):
            raise RuntimeError("boom")
        assert audit.current_actor() == "system"  # restored on error too
        audit.set_actor("x" * 500)
        assert audit.current_actor() == "x" * audit.MAX_TEXT

    ctx.run(body)


def test_actor_does_not_leak_into_new_threads_but_follows_copied_contexts() -> None:
    ctx = contextvars.copy_context()
    seen: dict[str, str] = {}

    def body() -> None:
        audit.set_actor("key:7:curator")
        plain = threading.Thread(target=lambda: seen.setdefault("plain", audit.current_actor()))
        plain.start()
        plain.join()
        copied = contextvars.copy_context()
        carried = threading.Thread(
            target=lambda: copied.run(lambda: seen.setdefault("copied", audit.current_actor()))
        )
        carried.start()
        carried.join()

    ctx.run(body)
    assert seen == {"plain": "system", "copied": "key:7:curator"}
    assert audit.current_actor() == "system"  # the outer context never saw the change


def test_concurrent_tasks_keep_their_own_actor() -> None:
    async def handler(name: str, gate: asyncio.Event) -> str:
        audit.set_actor(name)
        await gate.wait()  # both tasks have set their actor before either reads it
        return await asyncio.to_thread(audit.current_actor)

    async def main() -> list[str]:
        gate = asyncio.Event()
        tasks = [asyncio.create_task(handler(n, gate)) for n in ("key:1:a", "key:2:b")]
        await asyncio.sleep(0)
        gate.set()
        return list(await asyncio.gather(*tasks))

    assert asyncio.run(main()) == ["key:1:a", "key:2:b"]


def test_few_bounds_the_ids_kept() -> None:
    assert audit.few([1, 2, 3]) == {"count": 3, "ids": [1, 2, 3], "ids_truncated": False}
    big = audit.few(list(range(1000)))
    assert big["count"] == 1000 and big["ids"] == list(range(100)) and big["ids_truncated"]


# -- the chain check, over exported lines ------------------------------------------------------
def chain(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    prev = audit.GENESIS
    for seq in range(1, n + 1):
        at = AT + timedelta(seconds=seq)
        detail = audit.canonical({"n": seq})
        digest = audit.record_hash(prev, seq, at, "cli:t", "test.done", f"t:{seq}", detail)
        out.append(
            {
                "id": seq,
                "seq": seq,
                "at": audit.iso(at),
                "actor": "cli:t",
                "action": "test.done",
                "subject": f"t:{seq}",
                "detail": detail,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    return out


def lines(records: list[dict[str, Any]]) -> list[str]:
    return [to_line(r) for r in records]


def test_an_intact_chain_verifies() -> None:
    records = chain(10)
    result = verify_lines(lines(records))
    assert result.ok and result.records == 10 and result.head_hash == records[-1]["hash"]
    assert verify_lines([]).ok


def test_altered_detail_is_found_at_its_seq() -> None:
    records = chain(10)
    records[3]["detail"] = '{"n":999}'
    result = verify_lines(lines(records))
    assert (result.ok, result.broken_seq, result.reason) == (False, 4, "altered")
    assert "seq 4" in result.message


def test_rehashed_record_breaks_the_next_link() -> None:
    records = chain(10)
    r = records[3]
    r["detail"] = '{"n":999}'
    at = datetime.strptime(r["at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    r["hash"] = audit.record_hash(
        r["prev_hash"], 4, at, r["actor"], r["action"], r["subject"], r["detail"]
    )
    result = verify_lines(lines(records))
    assert (result.broken_seq, result.reason) == (5, "link")
    # ...and an anchor noted earlier catches even a chain rewritten to the end.
    anchored = verify_lines(lines(records[:4]), expect={4: chain(10)[3]["hash"]})
    assert (anchored.broken_seq, anchored.reason) == (4, "anchor")


def test_missing_swapped_and_out_of_place_records() -> None:
    records = chain(10)
    gone = verify_lines(lines(records[:5] + records[6:]))
    assert (gone.broken_seq, gone.reason) == (6, "missing")
    swapped = [dict(r) for r in records]
    swapped[2]["seq"], swapped[6]["seq"] = 7, 3
    swapped[2], swapped[6] = swapped[6], swapped[2]
    result = verify_lines(lines(swapped))
    assert (result.broken_seq, result.reason) == (3, "altered")
    dup = verify_lines(lines(records[:5] + records[4:]))
    assert (dup.broken_seq, dup.reason) == (5, "unexpected")
    bad = verify_lines([*lines(records[:2]), "{not json"])
    assert (bad.broken_seq, bad.reason) == (3, "format")


def test_a_partial_export_starts_where_it_starts() -> None:
    records = chain(10)
    assert verify_lines(lines(records[4:])).ok
    assert not verify_lines(lines(records[4:5] + records[6:])).ok
    # A chain that claims to start at 1 must start from the genesis hash.
    forged = dict(records[0], prev_hash="f" * 64)
    assert verify_lines(lines([forged])).reason == "altered"


def test_exported_detail_is_the_exact_hashed_text() -> None:
    record = chain(1)[0]
    again = json.loads(to_line(record))
    assert again == record and isinstance(again["detail"], str)
