"""Retro-matching on a real database (SQLite file and PostgreSQL): uploads scanned first, hashes
banked afterwards, the ``retro_match`` job run through the same claim-and-run path as every
engine: a review item and a ``scan.retro_match`` event appear once per hit, mirrored copies are
found through the derived dihedral variants, unrelated and out-of-retention scans are not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, update

from dignity.actions.models import OutboxEvent
from dignity.actions.webhooks import WebhookService
from dignity.hashing.pdq import pdq_from_image
from dignity.matching.banks import NewEntry
from dignity.samples import edited_copies, encode, landscape
from dignity.services import CLI, Services
from dignity.settings import Settings
from dignity.storage.models import utcnow
from dignity.takedown.models import Removal, ReviewItem, ScanRecord
from dignity.takedown.retro import RetroHit, pdq_variants
from dignity.worker.tasks import run_claimed


@pytest.fixture
def services(tmp_path: Path, database_url: str) -> Iterator[Services]:
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, retro_remove_banks=["auto"]
    )
    svc = Services(settings, profile=CLI)
    WebhookService(svc.db).create(
        url="https://hooks.example.org/retro",
        secret="s3cret-for-tests-0123456789",
        events="scan.retro_match",
    )
    yield svc
    svc.close()


def scan(services: Services, data: bytes, content_id: str) -> int:
    services.refresh_index()
    return services.record_scan(services.scanner.scan(data), None, content_id=content_id)


def retro(services: Services) -> dict[str, Any]:
    job, _ = services.submit_job("retro_match", {"settle_s": 0})
    while (claimed := services.jobs.claim_next("retro-test")) is not None:
        run_claimed(services, services.jobs, claimed, "retro-test")
    done = services.jobs.get(job.id)
    assert done.state == "done", done.error
    assert done.result is not None
    return done.result


def events(services: Services) -> list[dict[str, Any]]:
    with services.db.session() as s:
        rows = s.scalars(select(OutboxEvent).where(OutboxEvent.type == "scan.retro_match"))
        return [json.loads(r.payload) for r in rows]


def review_items(services: Services) -> list[ReviewItem]:
    with services.db.session() as s:
        return list(s.scalars(select(ReviewItem).order_by(ReviewItem.id)))


def pdq_hex(data: bytes) -> str:
    from dignity.hashing.signals import hash_bytes

    hashes = hash_bytes(data)
    assert hashes.pdq is not None
    return hashes.pdq.hex


def test_a_new_block_entry_finds_a_past_upload_once(services: Services) -> None:
    original = encode(landscape(11, (480, 360)))
    earlier = scan(services, original, "post-1")
    unrelated = scan(services, encode(landscape(12, (480, 360))), "post-2")
    assert review_items(services) == []  # nothing was banked when they were scanned

    services.banks.create_bank("ncii", purpose="block")
    services.banks.add_entries("ncii", [NewEntry("pdq", pdq_hex(original))])
    result = retro(services)
    assert result["entries"] == 1 and result["hits"] == 1 and result["review_items"] == 1

    [item] = review_items(services)
    assert item.scan_id == earlier and item.state == "open" and item.priority == 0
    assert "retro-match: ncii" in item.note
    [event] = events(services)
    assert event["scan_id"] == earlier and event["content_id"] == "post-1"
    assert event["bank"] == "ncii" and event["action"] == "review"
    assert event["reason"] == "copy_pdq" and event["distance"] == 0
    assert event["review_item_id"] == item.id
    assert unrelated not in {e["scan_id"] for e in events(services)}

    # A second run, and a run after re-reading the whole log, add nothing.
    again = retro(services)
    assert again["hits"] == 0 and again["entries"] == 0
    with services.db.session() as s:
        s.execute(update(RetroHit).values(created_at=utcnow()))
        from dignity.takedown.retro import RetroCursor

        s.execute(update(RetroCursor).values(seq=0))
    assert retro(services)["hits"] == 0
    assert len(review_items(services)) == 1 and len(events(services)) == 1

    # Another bank's exact hash of the same upload: a second hit, the same open review item.
    services.banks.create_bank("helpline", purpose="review")
    from dignity.hashing.signals import hash_bytes

    services.banks.add_entries("helpline", [NewEntry("md5", hash_bytes(original).md5)])
    third = retro(services)
    assert third["hits"] == 1 and third["review_items"] == 0
    assert len(review_items(services)) == 1
    assert {e["reason"] for e in events(services)} == {"copy_pdq", "copy_exact"}


def test_a_mirrored_earlier_upload_is_found_through_the_dihedral_variants(
    services: Services,
) -> None:
    img = landscape(21, (480, 360))
    mirrored = scan(services, encode(edited_copies(img)["mirrored"]), "post-mirror")
    scan(services, encode(landscape(22, (480, 360))), "post-other")
    services.banks.create_bank("ncii", purpose="review")
    banked = pdq_hex(encode(img))
    # The mirror's own hash is far from the original's: only a turned variant can find it.
    assert (
        bin(int(banked, 16) ^ int(pdq_hex(encode(edited_copies(img)["mirrored"])), 16)).count("1")
        > 64
    )
    services.banks.add_entries("ncii", [NewEntry("pdq", banked)])
    result = retro(services)
    assert result["hits"] == 1
    [event] = events(services)
    assert event["scan_id"] == mirrored and event["orientation"] != "original"


def test_scans_outside_the_retention_window_or_removed_are_not_matched(
    services: Services,
) -> None:
    old_data = encode(landscape(31, (480, 360)))
    old = scan(services, old_data, "post-old")
    with services.db.session() as s:
        s.execute(
            update(ScanRecord)
            .where(ScanRecord.id == old)
            .values(created_at=utcnow() - timedelta(days=400))
        )
    services.banks.create_bank("ncii", purpose="block")
    services.banks.add_entries("ncii", [NewEntry("sha256", _sha(old_data))])
    assert retro(services)["hits"] == 0


def test_a_bank_set_to_remove_removes_the_past_upload(services: Services) -> None:
    data = encode(landscape(41, (480, 360)))
    earlier = scan(services, data, "post-41")
    services.banks.create_bank("auto", purpose="block")
    services.banks.add_entries("auto", [NewEntry("pdq", pdq_hex(data))])
    result = retro(services)
    assert result["removals"] == 1 and result["review_items"] == 0
    with services.db.session() as s:
        [removal] = s.scalars(select(Removal)).all()
        assert removal.scan_id == earlier and removal.content_id == "post-41"
        hit = s.scalars(select(RetroHit)).one()
        assert hit.action == "remove" and hit.removal_id == removal.id
    [event] = events(services)
    assert event["action"] == "remove" and event["removal_id"] == removal.id
    # The removal banked the upload's hashes in the takedown bank: the next run sees those
    # entries, finds only the removed upload, and does nothing more.
    assert retro(services)["hits"] == 0


def test_derived_dihedral_variants_are_close_to_the_computed_ones() -> None:
    worst = 0
    for seed in range(12):
        h = pdq_from_image(landscape(seed, (400, 300)), dihedral=True)
        assert h.dihedral is not None
        derived = pdq_variants(h.hex)
        for k, computed in enumerate(h.dihedral):
            d = bin(int(derived[k].tobytes().hex(), 16) ^ int(computed, 16)).count("1")
            worst = max(worst, d)
        assert derived[0].tobytes().hex() == h.hex
    assert worst <= 24


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_a_threaded_search_finds_what_one_thread_finds() -> None:
    import numpy as np

    from dignity.matching.index import MihIndex
    from dignity.takedown.retro import ScanIndex

    rng = np.random.default_rng(5)
    rows = rng.integers(0, 256, size=(5000, 32), dtype=np.uint8)
    index = ScanIndex(frames=False)
    ids = np.arange(5000, dtype=np.int64) << 2
    index.index = MihIndex.from_arrays(ids, rows, np.zeros(5000, dtype=np.int32))
    queries = np.concatenate([rows[:40], rng.integers(0, 256, size=(60, 32), dtype=np.uint8)])
    one = index.search(queries, 40)
    many = index.search(queries, 40, threads=3)
    assert len(one) >= 40
    for name in ("query", "ids", "distances"):
        assert np.array_equal(getattr(one, name), getattr(many, name))


def test_video_uploads_are_found_by_a_banked_frame_and_by_a_banked_video(
    services: Services, tmp_path: Path
) -> None:
    from dignity.video.vpdq import vpdq_hash
    from tests.videos import film_frame, write_video

    clip = write_video(tmp_path / "clip.mp4", [(7, 0, 8)])
    logged = services.record_scan(services.scanner.scan(clip.read_bytes()), None, content_id="v1")
    other = write_video(tmp_path / "other.mp4", [(2, 0, 8)])
    services.record_scan(services.scanner.scan(other.read_bytes()), None, content_id="v2")

    # A still of second 3 of the clip, banked as an image: the logged video shows it.
    services.banks.create_bank("stills", purpose="review")
    still = pdq_from_image(film_frame(7, 3.0))
    services.banks.add_entries("stills", [NewEntry("pdq", still.hex)])
    first = retro(services)
    assert first["hits"] == 1
    [event] = events(services)
    assert event["scan_id"] == logged and event["reason"] == "copy_frame"
    assert abs(float(event["timestamp"]) - 3.0) <= 1.0

    # The video itself, banked as vPDQ (a re-encode of it: other bytes, same footage).
    copy = write_video(tmp_path / "copy.mp4", [(7, 0, 8)], codec="mpeg4")
    frames = vpdq_hash(copy).frames
    services.banks.create_bank("videos", purpose="block")
    services.banks.add_entries("videos", [NewEntry("vpdq", "", frames=frames)])
    second = retro(services)
    assert second["hits"] == 1
    video_event = events(services)[-1]
    assert video_event["scan_id"] == logged and video_event["reason"] == "copy_video"
    assert video_event["bank"] == "videos"


def test_a_picture_posted_inside_a_screenshot_is_found_with_its_region(
    services: Services,
) -> None:
    import random

    from dignity.sample_layouts import LAYOUTS

    photo = landscape(61, (900, 650))
    others = [landscape(62, (800, 600)), landscape(63, (700, 500))]
    shot, box = LAYOUTS["phone-dark"](photo, random.Random(1), others)
    shot_id = scan(services, encode(shot, "JPEG", quality=85), "shot-1")
    services.banks.create_bank("ncii", purpose="block")
    services.banks.add_entries("ncii", [NewEntry("pdq", pdq_hex(encode(photo, quality=92)))])
    assert retro(services)["hits"] == 1
    [event] = events(services)
    assert event["scan_id"] == shot_id and event["reason"] == "copy_pdq"
    region = event["region"]
    got = (region["x"], region["y"], region["x"] + region["w"], region["y"] + region["h"])
    assert all(abs(a - b) <= 6 for a, b in zip(got, box, strict=True))


def test_a_scan_committed_after_a_higher_id_is_still_indexed(services: Services) -> None:
    from sqlalchemy import delete, insert

    from dignity.takedown.retro import ScanIndex

    first = scan(services, encode(landscape(51, (480, 360))), "late-0")
    late = scan(services, encode(landscape(52, (480, 360))), "late-1")
    scan(services, encode(landscape(53, (480, 360))), "late-2")
    with services.db.session() as s:
        row = s.get(ScanRecord, late)
        assert row is not None
        saved = {c.name: getattr(row, c.name) for c in ScanRecord.__table__.columns}
        # As on PostgreSQL, where an id is handed out before its transaction commits: the
        # middle scan is not visible yet when the index first reads the log.
        s.execute(delete(ScanRecord).where(ScanRecord.id == late))
    index = ScanIndex()
    floor = services.settings.pdq_min_quality
    wanted = np.asarray([late << 2, first << 2], dtype=np.int64)
    assert index.catch_up(services.db, floor) >= 2
    assert index.index.lookup(wanted)[0].tolist() == [False, True]
    with services.db.session() as s:
        s.execute(insert(ScanRecord).values(**saved))
    assert index.catch_up(services.db, floor) == 1
    assert index.index.lookup(wanted)[0].tolist() == [True, True]
    assert index.catch_up(services.db, floor) == 0
