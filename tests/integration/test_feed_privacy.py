"""The partner feed never links one person's hashes: batches across cases, random order inside
a batch, one time per batch, for additions and withdrawals alike; and a partner's cursor still
never skips a change.

The attack tested is the one a partner can run: group items by ``updated_at`` and by ``seq``
adjacency. Each ``updated_at`` must mix several cases, and inside those groups the number of
neighbours (by ``seq``) from the same case must be what a random order gives: the observed count
is compared with the counts of many shuffles within the same groups.
"""

from __future__ import annotations

import itertools
import random
import secrets
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from dignity.cases.service import CaseService, FeedBatching, HashIn
from dignity.exchanges.feed_client import DignityFeedCollabConfig, DignityFeedSignalExchangeAPI
from dignity.storage.db import Database
from tests.integration.server import LiveServer

HASHES_PER_CASE = 3
MIN_CASES = 3


def _same_case_neighbours(items: Sequence[dict[str, Any]], case_of: dict[str, int]) -> int:
    """Pairs of items next to each other in ``seq`` order, with one ``updated_at``, from one
    case: what a partner would group as "probably one person"."""
    ordered = sorted(items, key=lambda i: i["seq"])
    return sum(
        1
        for a, b in itertools.pairwise(ordered)
        if a["updated_at"] == b["updated_at"] and case_of[a["value"]] == case_of[b["value"]]
    )


def _chance_p_value(items: Sequence[dict[str, Any]], case_of: dict[str, int]) -> float:
    """How often a random order inside each ``updated_at`` group links at least as many
    neighbours as the feed's own order (one-sided permutation test)."""
    observed = _same_case_neighbours(items, case_of)
    ordered = sorted(items, key=lambda i: i["seq"])
    rng = random.Random(7)
    trials, as_many = 2000, 0
    for _ in range(trials):
        shuffled: list[dict[str, Any]] = []
        groups: dict[str, list[dict[str, Any]]] = {}
        for item in ordered:
            groups.setdefault(item["updated_at"], []).append(item)
        for group in groups.values():
            values = [i["value"] for i in group]
            rng.shuffle(values)
            shuffled += [{**i, "value": v} for i, v in zip(group, values, strict=True)]
        as_many += _same_case_neighbours(shuffled, case_of) >= observed
    return (as_many + 1) / (trials + 1)


def _cases_per_time(items: Sequence[dict[str, Any]], case_of: dict[str, int]) -> list[int]:
    groups: dict[str, set[int]] = {}
    for item in items:
        groups.setdefault(item["updated_at"], set()).add(case_of[item["value"]])
    return [len(g) for g in groups.values()]


def _drain(client: httpx.Client, cursor: int, into: list[dict[str, Any]]) -> int:
    """Read the feed from ``cursor`` in small pages, as a partner polls; the new cursor."""
    while True:
        r = client.get("/v1/feed", params={"cursor": cursor, "limit": 5})
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["next_cursor"] >= cursor
        into += page["items"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return cursor


def test_feed_does_not_link_a_cases_hashes(tmp_path: Path) -> None:
    server = LiveServer(
        tmp_path / "helpline",
        env={
            "DIGNITY_FEED_BATCH_S": "3600",
            "DIGNITY_FEED_BATCH_ITEMS": "12",
            "DIGNITY_FEED_BATCH_MIN_CASES": str(MIN_CASES),
            "DIGNITY_PORTAL_IP_CASES_PER_HOUR": "1000",
        },
    )
    server.start()
    case_of: dict[str, int] = {}
    made: list[dict[str, Any]] = []
    seen: list[dict[str, Any]] = []
    cursor = 0
    try:
        with server.client("partner") as partner, server.client() as person:
            for n in range(40):
                values = [secrets.token_hex(16) for _ in range(HASHES_PER_CASE)]
                r = person.post(
                    "/portal/api/cases",
                    json={"hashes": [{"signal": "md5", "value": v} for v in values], "adult": True},
                )
                assert r.status_code == 201, r.text
                made.append(r.json())
                case_of.update(dict.fromkeys(values, n))
                cursor = _drain(partner, cursor, seen)
                if n == 1:  # two cases are not yet a batch: nothing to group them by
                    assert seen == []
            for n in random.sample(range(40), 40):
                creds = {"case_number": made[n]["case_number"], "pin": made[n]["pin"]}
                r = person.post("/portal/api/cases/withdraw", json=creds)
                assert r.status_code == 200, r.text
                cursor = _drain(partner, cursor, seen)

            # The py-tx client a subscribing dignity runs reads the same feed from scratch.
            api = DignityFeedSignalExchangeAPI(
                DignityFeedCollabConfig(name="h", base_url=server.base), server.keys["partner"]
            )
            fetched: dict[str, Any] = {}
            for delta in api.fetch_iter([], None):
                fetched.update(delta.updates)
    finally:
        server.stop()

    # Nothing lost, nothing twice; every withdrawal after its addition.
    seqs = [i["seq"] for i in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert Counter((i["value"], i["status"]) for i in seen) == Counter(
        {(v, s): 1 for v in case_of for s in ("active", "withdrawn")}
    )
    by_change = {(i["value"], i["status"]): i["seq"] for i in seen}
    assert all(by_change[v, "active"] < by_change[v, "withdrawn"] for v in case_of)
    assert {item.value for item in fetched.values()} == set(case_of)
    assert all(item.status == "withdrawn" for item in fetched.values())

    for status in ("active", "withdrawn"):
        items = [i for i in seen if i["status"] == status]
        # One time per batch, and every batch mixes several people's cases.
        assert min(_cases_per_time(items, case_of)) >= MIN_CASES, status
        # Inside a batch the order says nothing: no more neighbours than a shuffle gives.
        assert _chance_p_value(items, case_of) > 0.001, status


@pytest.fixture
def batched(db: Database) -> CaseService:
    return CaseService(
        db,
        bank_name="cases",
        batching=FeedBatching(batch_s=3600, items=4, min_cases=2, max_hold_s=3600),
    )


def _md5s(n: int) -> list[HashIn]:
    return [HashIn("md5", secrets.token_hex(16)) for _ in range(n)]


def test_a_withdrawal_waits_for_its_addition(batched: CaseService) -> None:
    a = batched.create(_md5s(2))
    batched.withdraw(a.number, a.pin)  # before its hashes were ever published
    assert batched.feed(0).items == []  # one case: neither batch may close
    batched.create(_md5s(2))
    items = batched.feed(0).items
    # The additions (two cases, four items) went out; a's withdrawals, one case, still wait.
    assert [i.status for i in items] == ["active"] * 4
    b = batched.create(_md5s(2))
    batched.withdraw(b.number, b.pin)
    # b's additions wait (one case); so do its withdrawals (after the additions), and a's
    # withdrawals alone are one case: nothing is published.
    assert batched.feed(items[-1].seq).items == []
    batched.create(_md5s(2))
    later = batched.feed(items[-1].seq).items
    # Now b's additions go (with the new case's), then a's and b's withdrawals, after them.
    assert [i.status for i in later] == ["active"] * 4 + ["withdrawn"] * 4
    seq = {(i.id, i.status): i.seq for i in later}
    assert all(
        seq[i, "active"] < s
        for (i, st), s in seq.items()
        if st == "withdrawn" and (i, "active") in seq
    )


def test_a_lone_case_goes_out_after_the_longest_hold(db: Database) -> None:
    cases = CaseService(
        db, bank_name="cases", batching=FeedBatching(batch_s=0, items=1, min_cases=5, max_hold_s=0)
    )
    cases.create(_md5s(3))
    assert len(cases.feed(0).items) == 3


def test_publishers_at_once_publish_each_change_once(db: Database) -> None:
    cases = CaseService(
        db, bank_name="cases", batching=FeedBatching(batch_s=0, items=1, min_cases=1)
    )
    for _ in range(10):
        cases.create(_md5s(3))
    errors: list[BaseException] = []

    def publish() -> None:
        try:
            cases.publish()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    items = list(cases.iter_feed(0))
    assert len(items) == 30 and len({i.id for i in items}) == 30
