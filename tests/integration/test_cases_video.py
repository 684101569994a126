"""Video cases on real databases (SQLite file and PostgreSQL): a vpdq hash (given by its frames,
as the portal sends it) and a video MD5 become bank entries, the vPDQ one with its frames; bad
frames are refused with ``case.bad_hash`` / ``case.low_quality`` before anything is written.
Needs the video signal types, ``dignity.video.formats`` and ``NewEntry.frames`` (the video-core
branch): skipped without them.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import text

from dignity.cases.service import MAX_VIDEO_FRAMES, CaseError, CaseService, HashIn
from dignity.storage.db import Database

formats = pytest.importorskip("dignity.video.formats", reason="needs the video-core branch")

M1 = "0cc175b9c0f1b6a831c399e269772661"


def _frames(count: int, *, quality: int = 100, seed: int = 1) -> tuple[dict[str, Any], ...]:
    rng = random.Random(seed)
    return tuple(
        {"frame": 30 * k, "timestamp": float(k), "pdq": rng.randbytes(32).hex(), "quality": quality}
        for k in range(count)
    )


@pytest.fixture
def cases(db: Database) -> CaseService:
    return CaseService(db, bank_name="cases", max_hashes=5)


def _count(db: Database, sql: str, **params: object) -> int:
    with db.session() as s:
        return int(s.execute(text(sql), params).scalar_one())


def test_a_video_case_is_one_vpdq_entry_with_its_frames(cases: CaseService, db: Database) -> None:
    frames = _frames(12)
    created = cases.create([HashIn("video_md5", M1), HashIn("vpdq", frames=frames)])
    assert created.hashes == 2
    digest = formats.vpdq_digest(formats.frames_from_json(list(frames)))
    shown = cases.show(created.number, with_hashes=True)
    assert {(h["signal"], h["value"]) for h in shown["hash_list"]} == {  # type: ignore[attr-defined]
        ("video_md5", M1),
        ("vpdq", digest),
    }
    entry_id = _count(db, "SELECT id FROM entries WHERE signal = 'vpdq' AND value = :v", v=digest)
    assert _count(db, "SELECT count(*) FROM entry_frames WHERE entry_id = :e", e=entry_id) == 12
    # The same video again (another case): the same entry, not a second copy of its frames.
    again = cases.create([HashIn("vpdq", digest, frames=frames)])
    assert _count(db, "SELECT count(*) FROM entries WHERE signal = 'vpdq'") == 1
    cases.withdraw(again.number, again.pin)
    assert _count(db, "SELECT count(*) FROM entries WHERE status = 'active'") == 2  # still held
    cases.withdraw(created.number, created.pin)
    assert _count(db, "SELECT count(*) FROM entries WHERE status = 'active'") == 0


@pytest.mark.parametrize(
    ("item", "code"),
    [
        (HashIn("vpdq"), "case.bad_hash"),
        (HashIn("vpdq", frames=()), "case.bad_hash"),
        (HashIn("vpdq", frames=_frames(3, quality=20)), "case.low_quality"),
        (HashIn("vpdq", frames=_frames(3)[::-1]), "case.bad_hash"),
        (HashIn("vpdq", "ab" * 32, frames=_frames(3)), "case.bad_hash"),
        (HashIn("vpdq", frames=({**_frames(1)[0], "pdq": "xyz"},)), "case.bad_hash"),
        (HashIn("vpdq", frames=_frames(MAX_VIDEO_FRAMES + 1)), "case.bad_hash"),
        (HashIn("pdq", "ab" * 32, 90, frames=_frames(1)), "case.bad_hash"),
    ],
)
def test_bad_video_hashes_are_refused(
    cases: CaseService, db: Database, item: HashIn, code: str
) -> None:
    with pytest.raises(CaseError) as caught:
        cases.create([HashIn("md5", M1), item])
    assert caught.value.code == code
    assert _count(db, "SELECT count(*) FROM cases") == 0
