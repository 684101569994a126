"""The partner feed: victims' case hashes, and their withdrawals, for partner platforms to block.

A helpline running dignity shares the hashes of its cases with partner platforms through
``GET /v1/feed``, and the same items go to a file with ``dignity feed export``. Only keys with
the ``partner`` role (or ``admin``) may read it; a partner key may do nothing else (``/status``,
a liveness check open to any key, aside). The format, which a subscribing dignity instance (an
exchange of kind ``dignity_feed``) and any other client rely on::

    GET /v1/feed?cursor=<int, default 0>&limit=<1..1000, default 500>
    Authorization: Bearer <partner key>

    200 {"items": [ITEM, ...], "next_cursor": <int>, "has_more": <bool>}

    ITEM = {"seq": 17,                          # position in the feed, strictly increasing
            "id": "cs_5GQ7V3X9MTRK2W4H",        # case-scoped entry id: one hash of one case
            "signal": "pdq",                    # "pdq" (64 hex), "md5" / "video_md5" (32 hex),
                                                # or "vpdq" (value: the frames' SHA-256; an
                                                # active one has "frames": [{frame, timestamp,
                                                # pdq, quality}], one a sampled second)
            "value": "f8f8...",                 # lowercase hex, MSB first (py-tx / HMA text)
            "status": "active",                 # "active" (added) or "withdrawn"
            "updated_at": "2026-11-27T10:00:00.123456+00:00"}   # when its batch was published

* **Cursor.** Start with ``cursor=0`` (or none). Each page holds the changes with
  ``seq > cursor`` in ``seq`` order; ask again with ``cursor=next_cursor`` while ``has_more`` is
  true, then poll later with the last ``next_cursor`` (store it only after applying the page:
  re-reading a page is harmless, every item is idempotent). ``next_cursor`` is the last item's
  ``seq``, or the cursor given when the page is empty. Cursors are plain integers and never
  expire. A cursor that is not a non-negative integer, or a limit out of range, is 422
  ``request.invalid``.
* **Items are changes, not rows.** An ``id`` first appears ``active`` when the case is submitted
  and appears again, ``withdrawn``, when the person (or helpline staff) withdraws the case; the
  item with the higher ``seq`` wins. A withdrawn ``id`` never becomes active again (a new
  submission gets new ids). Withdrawal items carry ``signal`` and ``value`` too, so a
  subscriber that did not keep ids can still find the hash.
* **The same hash under several ids.** Two cases may hold the same hash (two people submitted
  the same picture); each has its own ``id``. A subscriber must treat a value as live while
  *any* id carrying it is active, so one case's withdrawal never unblocks another's picture.
* **Exactly once, in order.** A change is served only once every change before it is
  committed: on PostgreSQL sequence numbers are handed out before commit, so a page stops
  before a ``seq`` gap that is younger than a couple of seconds (the gap is then either filled
  or known to be a rolled-back write). A client therefore never skips a change by moving its
  cursor past it.
* **What is shared.** Hashes only: no case number, PIN, contact detail, note, quality, match
  count or media. Ids are random and say nothing about the case or the person.
* **Batches: one person's hashes are never linked.** Changes are published in batches that mix
  several cases: a batch closes ``feed_batch_s`` (default 600 s) after its oldest change, or at
  ``feed_batch_items`` changes, once it holds changes of at least ``feed_batch_min_cases``
  cases (default 3); a change that waited ``feed_batch_max_hold_s`` (default a day) goes out
  anyway. Additions and withdrawals are batched separately. Within a batch the order is random
  and every item has the batch's one ``updated_at``, so neither ``seq`` nor ``updated_at`` says
  which items came from one person. A withdrawal is published only after its addition. A
  partner therefore sees a case's hashes up to one batch interval late; the cursor rules above
  are unchanged.
* **Export.** ``dignity feed export [--cursor N] [--output FILE]`` writes the same ITEMs, one
  JSON object a line, in ``seq`` order (``--format text`` writes the currently active hashes
  as ``<signal> <hex>`` lines, python-threatexchange's local-file style, without withdrawals).

Errors are the usual ``{code, message, detail}``: 401 without a valid key, 403 for any other
role, 429 + ``Retry-After`` over the key's rate.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from dignity.api.deps import Services, ServicesDep, require
from dignity.api.schemas import ErrorBody
from dignity.cases.service import FEED_DEFAULT_LIMIT, FEED_MAX_LIMIT, CaseService
from dignity.keys import KeyInfo

router = APIRouter(tags=["feed"])
Partner = Annotated[KeyInfo, Depends(require("partner"))]


class FeedFrameOut(BaseModel):
    frame: int
    timestamp: float
    pdq: str
    quality: int


class FeedItemOut(BaseModel):
    seq: int
    id: str
    signal: Literal["pdq", "md5", "video_md5", "vpdq"]
    value: str
    status: Literal["active", "withdrawn"]
    updated_at: str
    frames: list[FeedFrameOut] | None = None


class FeedPageOut(BaseModel):
    items: list[FeedItemOut]
    next_cursor: int
    has_more: bool


def case_service(services: Services) -> CaseService:
    return services.cases


@router.get(
    "/v1/feed",
    response_model=FeedPageOut,
    responses={s: {"model": ErrorBody} for s in (401, 403, 422, 429)},
    summary="Case hashes added and withdrawn since a cursor (partner key)",
    response_model_exclude_none=True,  # "frames" only on active vpdq items
)
def feed_route(
    services: ServicesDep,
    _: Partner,
    cursor: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=FEED_MAX_LIMIT)] = FEED_DEFAULT_LIMIT,
) -> FeedPageOut:
    page = case_service(services).feed(cursor, limit)
    return FeedPageOut.model_validate(page.to_dict())
