"""What every exchange adapter gives the fetch runner: pages of records, each with a checkpoint.

An adapter wraps one python-threatexchange ``SignalExchangeAPI`` (StopNCII, NCMEC, Facebook
ThreatExchange, local file) or our own (a dignity partner feed) and turns what it fetches into
:class:`Record` values: a record key unique within the exchange, the hashes the record now
carries (already mapped to dignity's signal names), the types it carries that dignity cannot
use (counted, never dropped silently), and whether the record is gone (withdrawn, deleted).
Each :class:`Page` ends with a JSON-able checkpoint: once the runner has applied a page it
stores that checkpoint, and a later fetch resumes from it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from dignity.errors import BadRequest


class ExchangeError(BadRequest):
    """An exchange operation was refused or failed (config, credentials, remote errors).

    Exchanges run from the CLI and workers only, so these codes never reach the HTTP API;
    ``exchange.fetch_failed`` is recorded in a fetch summary for any other failure.
    """

    codes = (
        "exchange.bad_config",
        "exchange.bad_name",
        "exchange.bad_type",
        "exchange.bad_credentials",
        "exchange.bad_secret",
        "exchange.bad_verdict",
        "exchange.no_credentials",
        "exchange.no_bank",
        "exchange.no_record",
        "exchange.not_found",
        "exchange.exists",
        "exchange.busy",
        "exchange.lease_lost",
        "exchange.file_missing",
        "exchange.protocol",
        "exchange.feedback_failed",
        "exchange.feedback_unsupported",
        "exchange.fetch_failed",
    )


@dataclass
class Record:
    """The current state of one remote record."""

    key: str
    hashes: list[tuple[str, str]] = field(default_factory=list)  # (dignity signal, raw value)
    removed: bool = False
    unknown: list[str] = field(default_factory=list)  # exchange-side type names we cannot use
    meta: dict[str, Any] = field(default_factory=dict)  # what feedback needs later


@dataclass
class Page:
    records: list[Record]
    checkpoint: dict[str, Any] | None
    # Problems not tied to a stored record (e.g. an item the client library could not parse).
    unknown: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[dict[str, str]] = field(default_factory=list)
    notes: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class ExchangeSpec:
    """Everything an adapter needs, decoded: no database access below this point."""

    name: str
    kind: str
    base_url: str | None
    config: dict[str, Any]
    credentials: str | None
    timeout_s: float = 60.0


@dataclass(frozen=True)
class StoredRecord:
    """A record as the database remembers it (for feedback)."""

    key: str
    signal: str
    value: str
    meta: dict[str, Any]


VERDICTS = ("blocked", "not_blocked")


class Adapter(Protocol):
    """One exchange type. ``snapshot`` adapters return the whole data set on every fetch."""

    snapshot: ClassVar[bool]

    def pages(self, checkpoint: dict[str, Any] | None) -> Iterator[Page]: ...

    def is_stale(self, checkpoint: dict[str, Any]) -> bool: ...

    def feedback(
        self, records: list[StoredRecord], verdict: str, tags: list[str]
    ) -> dict[str, Any]: ...


def unsupported_feedback(kind: str) -> ExchangeError:
    return ExchangeError(
        f"exchanges of type {kind} take no feedback", code="exchange.feedback_unsupported"
    )
