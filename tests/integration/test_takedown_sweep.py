"""The copy sweep finds what matching blocks: an earlier upload of removed content that was
rotated or mirrored (dihedral PDQ, as :mod:`dignity.matching.engine` matches uploads), and
exact copies by MD5/SHA-256, on SQLite and PostgreSQL."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from dignity.samples import encode, landscape
from dignity.settings import Settings
from dignity.storage.db import Database
from tests.integration.test_removal import World, make_request


@pytest.fixture
def world(db: Database, settings: Settings) -> World:
    return World(db, settings)


def _turned(data: bytes, how: Image.Transpose) -> bytes:
    return encode(Image.open(io.BytesIO(data)).transpose(how), "JPEG", quality=90)


def test_the_sweep_finds_rotated_and_mirrored_earlier_uploads(db: Database, world: World) -> None:
    orig = encode(landscape(1), "JPEG", quality=90)
    world.scan(_turned(orig, Image.Transpose.FLIP_LEFT_RIGHT), "c-mirrored", "u-1")
    world.scan(_turned(orig, Image.Transpose.ROTATE_90), "c-rotated", "u-2")
    world.scan(orig, "c-exact", "u-3")
    world.scan(encode(landscape(2), "JPEG", quality=90), "c-other", "u-4")
    world.scan(orig, "c-orig", "u-5")
    summary = world.removals.remove_request(make_request(db, ["c-orig"]), actor="rv")
    got = {r.content_id: r for r in summary.removals}
    assert set(got) == {"c-orig", "c-mirrored", "c-rotated", "c-exact"}
    assert got["c-exact"].reason == "copy_exact"
    assert got["c-mirrored"].reason == got["c-rotated"].reason == "copy_pdq"
    assert got["c-mirrored"].evidence["orientation"] in ("flipx", "flipy")  # PDQ's naming
    assert got["c-rotated"].evidence["orientation"] in ("rotate90", "rotate270")
    # As matching does for new uploads: the turned copies are blocked from now on too.
    assert world.decision(_turned(orig, Image.Transpose.FLIP_LEFT_RIGHT)) == "block"
