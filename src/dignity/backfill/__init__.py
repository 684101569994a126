"""Backfill: scan a platform's existing archive (a directory, a file of URLs, or an S3 bucket)
into the scan log, resumably, as background jobs.

:mod:`dignity.backfill.sources` lists a source's items in pages and reads one item's bytes;
:mod:`dignity.backfill.service` keeps one row per item (``backfill_items``: done, failed, with
its scan id or error code) so that a second run skips what is done, and scans a batch of items.
The job bodies that fan a source out into batches live in :mod:`dignity.worker.tasks_backfill`;
this package imports no face.
"""

from __future__ import annotations

from dignity.backfill.service import BackfillService, BatchOutcome, ItemOutcome
from dignity.backfill.sources import (
    BackfillRefused,
    BackfillUnavailable,
    Source,
    parse_source,
    source_from_payload,
)

__all__ = [
    "BackfillRefused",
    "BackfillService",
    "BackfillUnavailable",
    "BatchOutcome",
    "ItemOutcome",
    "Source",
    "parse_source",
    "source_from_payload",
]
