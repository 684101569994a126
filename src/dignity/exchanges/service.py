"""Exchange configurations, and fetching them into their banks with resumable checkpoints.

:class:`ExchangeService` stores each exchange (type, URL, encrypted credentials, bank) and runs
fetches. A fetch claims the exchange with a lease (one fetcher at a time, across processes and
hosts), then applies one page at a time: first the bank writes through
:class:`~dignity.matching.banks.BankService` (so ``index_log`` carries every addition and
withdrawal to every process), then, in one transaction, the exchange's record memory and the
page's checkpoint. A fetch that dies between the two re-applies that page next time, which is
harmless: adding an active hash and withdrawing a withdrawn one change nothing. So every page
whose checkpoint was stored is applied exactly once in effect, nothing is fetched twice after
that, and no hash is ever added twice.

A hash leaves the bank when no record of any exchange feeding that bank carries it any more,
and only if it came from an exchange (a hash a curator added by hand stays). A *full* fetch
(the first one, ``--full``, a stale checkpoint, or every fetch of a snapshot source such as a
file) also removes, once it completes, every record it did not see.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dignity import audit
from dignity.background import Beat
from dignity.errors import BankExists, BankNotFound, DignityError, HashError
from dignity.exchanges.adapters import build_adapter
from dignity.exchanges.base import (
    VERDICTS,
    Adapter,
    ExchangeError,
    ExchangeSpec,
    Page,
    StoredRecord,
)
from dignity.exchanges.models import EXCHANGE_KINDS, Exchange, ExchangeRecord
from dignity.exchanges.secrets import decrypt, encrypt, redact
from dignity.hashing.registry import has_frames, signal_types
from dignity.hashing.signals import normalize_hash
from dignity.matching.banks import BANK_PURPOSES, DEFAULT_THRESHOLD, BankService, NewEntry
from dignity.settings import Settings
from dignity.storage.db import Database
from dignity.storage.models import Bank, Entry, utcnow
from dignity.storage.types import isoformat, json_default
from dignity.text import clean_text

log = logging.getLogger("dignity.exchanges")

KIND_ALIASES = {"dignity": "dignity_feed", "threatexchange": "fb_threatexchange"}
NEEDS_CREDENTIALS = frozenset({"stopncii", "ncmec", "fb_threatexchange", "dignity_feed"})
_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_CHUNK = 400
_MAX_KEY = 255
_MAX_SAMPLES = 10


@dataclass(frozen=True)
class ExchangeInfo:
    name: str
    kind: str
    base_url: str | None
    config: dict[str, Any]
    has_credentials: bool
    bank: str | None
    enabled: bool
    interval_s: float | None
    checkpoint: dict[str, Any] | None
    full_fetch_pending: bool
    last_status: str | None
    last_fetch_started_at: datetime | None
    last_fetch_finished_at: datetime | None
    last_summary: dict[str, Any] | None
    records: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.kind,
            "url": self.base_url,
            "config": self.config,
            "credentials": "set" if self.has_credentials else None,
            "bank": self.bank,
            "enabled": self.enabled,
            "interval_s": self.interval_s,
            "checkpoint": self.checkpoint,
            "full_fetch_pending": self.full_fetch_pending,
            "last_status": self.last_status,
            "last_fetch_started_at": isoformat(self.last_fetch_started_at),
            "last_fetch_finished_at": isoformat(self.last_fetch_finished_at),
            "records": self.records,
            "last_summary": self.last_summary,
        }


@dataclass
class FetchSummary:
    """What one fetch did; ``to_dict`` is the JSON the CLI prints and the database keeps."""

    exchange: str
    kind: str
    bank: str
    full: bool = False
    status: str = "running"
    pages: int = 0
    records: int = 0
    removed_records: int = 0
    added: Counter[str] = field(default_factory=Counter)
    withdrawn: Counter[str] = field(default_factory=Counter)
    unknown: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[dict[str, str]] = field(default_factory=list)
    notes: Counter[str] = field(default_factory=Counter)
    checkpoint: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    started_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None

    def sample(self, sample: dict[str, str]) -> None:
        if len(self.error_samples) < _MAX_SAMPLES:
            self.error_samples.append(sample)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "exchange": self.exchange,
            "type": self.kind,
            "bank": self.bank,
            "status": self.status,
            "full": self.full,
            "pages": self.pages,
            "records": self.records,
            "removed_records": self.removed_records,
            "added": dict(sorted(self.added.items())),
            "withdrawn": dict(sorted(self.withdrawn.items())),
            "unknown": dict(sorted(self.unknown.items())),
            "errors": dict(sorted(self.errors.items())),
            "error_samples": self.error_samples,
            "notes": dict(sorted((k, v) for k, v in self.notes.items() if v)),
            "checkpoint": self.checkpoint,
            "started_at": isoformat(self.started_at),
            "finished_at": isoformat(self.finished_at),
            "seconds": round(((self.finished_at or utcnow()) - self.started_at).total_seconds(), 3),
        }
        if self.error:
            out["error"] = self.error
        return out


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ExchangeError(
            "an exchange name is 1-64 letters, digits, '_', '.' or '-', starting with a letter "
            f"or digit; got {name!r}",
            code="exchange.bad_name",
        )


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ExchangeError(
            f"--url must be an http(s) URL; got {url[:200]!r}", code="exchange.bad_config"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ExchangeError(
            "--url takes a base URL without query, fragment or user info (credentials go in "
            "--credentials)",
            code="exchange.bad_config",
        )
    return url.rstrip("/")


def _record_key(key: str) -> str:
    # Remote ids are untrusted text: keep them storable and within the column.
    clean = key.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    if len(clean) > _MAX_KEY:
        return "sha256:" + hashlib.sha256(clean.encode()).hexdigest()
    return clean


def _chunks(items: list[Any], n: int = _CHUNK) -> Iterator[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


class ExchangeService:
    """Exchanges in the database. Thread-safe: each call uses its own sessions."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.banks = BankService(db)

    # -- configuration ------------------------------------------------------------------------
    def add(
        self,
        name: str,
        kind: str,
        *,
        base_url: str | None = None,
        credentials: str | None = None,
        config: dict[str, Any] | None = None,
        bank: str | None = None,
        purpose: str = "block",
        threshold: int = DEFAULT_THRESHOLD,
        interval_s: float | None = None,
        enabled: bool = True,
    ) -> ExchangeInfo:
        _check_name(name)
        kind = KIND_ALIASES.get(kind, kind)
        if kind not in EXCHANGE_KINDS:
            raise ExchangeError(
                f"unknown exchange type {kind!r} (one of {', '.join(EXCHANGE_KINDS)})",
                code="exchange.bad_type",
            )
        if purpose not in BANK_PURPOSES:
            raise ExchangeError(f"unknown bank purpose {purpose!r}", code="exchange.bad_config")
        if interval_s is not None and interval_s <= 0:
            raise ExchangeError("--interval must be positive", code="exchange.bad_config")
        url = _check_url(base_url) if base_url else None
        cfg = self._clean_config(kind, dict(config or {}))
        if kind in NEEDS_CREDENTIALS and not credentials:
            raise ExchangeError(
                f"a {kind} exchange needs --credentials", code="exchange.no_credentials"
            )
        if credentials is not None:
            clean_text(credentials, "credentials", code="exchange.bad_credentials")
        if kind == "dignity_feed" and not url:
            raise ExchangeError(
                "a dignity_feed exchange needs --url (the other instance's base URL)",
                code="exchange.bad_config",
            )
        # Builds the py-tx objects without any network call: bad credentials or config
        # formats are refused now rather than at the first fetch.
        build_adapter(
            ExchangeSpec(name, kind, url, cfg, credentials.strip() if credentials else None)
        )
        with self.db.session() as s:
            if s.scalar(select(Exchange.id).where(Exchange.name == name)) is not None:
                raise ExchangeError(f"an exchange named {name!r} exists", code="exchange.exists")
        bank_name = bank or name
        created_bank = False
        try:
            bank_id = self.banks.get_bank(bank_name).id
            if bank is None:
                raise BankExists(
                    f"a bank named {bank_name!r} exists already; pass --bank {bank_name} to fill "
                    "it from this exchange, or pick another bank name",
                    code="bank.exists",
                )
        except BankNotFound:
            bank_id = self.banks.create_bank(
                bank_name,
                purpose=purpose,
                threshold=threshold,
                description=f"hashes fetched from exchange {name} ({kind})",
            ).id
            created_bank = True
        token = encrypt(self.settings, credentials.strip()) if credentials else None
        try:
            with self.db.session() as s:
                s.add(
                    Exchange(
                        name=name,
                        kind=kind,
                        base_url=url,
                        config=json.dumps(cfg, sort_keys=True),
                        credentials=token,
                        bank_id=bank_id,
                        enabled=enabled,
                        interval_s=interval_s,
                        generation=0,
                        full_fetch_pending=False,
                    )
                )
                # Whether credentials are set, never what they are.
                audit.record(
                    s,
                    "exchange.added",
                    f"exchange:{name}",
                    {
                        "type": kind,
                        "url": url,
                        "config": cfg,
                        "credentials": bool(credentials),
                        "bank": bank_name,
                        "bank_created": created_bank,
                        "enabled": enabled,
                        "interval_s": interval_s,
                    },
                )
        except IntegrityError as exc:
            if created_bank:
                self.banks.delete_bank(bank_name)
            raise ExchangeError(
                f"an exchange named {name!r} exists", code="exchange.exists"
            ) from exc
        return self.get(name)

    def _clean_config(self, kind: str, cfg: dict[str, Any]) -> dict[str, Any]:
        allowed = {
            "file": {"filename", "signal_type"},
            "ncmec": {"environment", "only_esp_ids"},
            "fb_threatexchange": {"privacy_group"},
        }.get(kind, set())
        extra = sorted(k for k, v in cfg.items() if v is not None and k not in allowed)
        if extra:
            raise ExchangeError(
                f"option(s) {', '.join(extra)} do not apply to a {kind} exchange",
                code="exchange.bad_config",
            )
        out = {k: v for k, v in cfg.items() if v is not None}
        if kind == "file":
            if not out.get("filename"):
                raise ExchangeError("a file exchange needs --file PATH", code="exchange.bad_config")
            out["filename"] = str(Path(str(out["filename"])).expanduser().resolve())
        return out

    def _row(self, s: Session, name: str) -> Exchange:
        row = s.scalars(select(Exchange).where(Exchange.name == name)).one_or_none()
        if row is None:
            raise ExchangeError(
                f"no exchange named {name!r}", code="exchange.not_found", exchange=name
            )
        return row

    def _info(self, s: Session, row: Exchange) -> ExchangeInfo:
        bank = s.get(Bank, row.bank_id) if row.bank_id is not None else None
        n = s.scalar(
            select(func.count(func.distinct(ExchangeRecord.record_key))).where(
                ExchangeRecord.exchange_id == row.id
            )
        )
        return ExchangeInfo(
            name=row.name,
            kind=row.kind,
            base_url=row.base_url,
            config=json.loads(row.config or "{}"),
            has_credentials=bool(row.credentials),
            bank=bank.name if bank else None,
            enabled=row.enabled,
            interval_s=row.interval_s,
            checkpoint=json.loads(row.checkpoint) if row.checkpoint else None,
            full_fetch_pending=row.full_fetch_pending,
            last_status=row.last_status,
            last_fetch_started_at=row.last_fetch_started_at,
            last_fetch_finished_at=row.last_fetch_finished_at,
            last_summary=json.loads(row.last_summary) if row.last_summary else None,
            records=int(n or 0),
        )

    def get(self, name: str) -> ExchangeInfo:
        with self.db.session() as s:
            return self._info(s, self._row(s, name))

    def list_all(self) -> list[ExchangeInfo]:
        with self.db.session() as s:
            rows = s.scalars(select(Exchange).order_by(Exchange.name)).all()
            return [self._info(s, r) for r in rows]

    def update(
        self,
        name: str,
        *,
        base_url: str | None = None,
        credentials: str | None = None,
        enabled: bool | None = None,
        interval_s: float | None = None,
        bank: str | None = None,
    ) -> ExchangeInfo:
        with self.db.session() as s:
            row = self._row(s, name)
            url = _check_url(base_url) if base_url else row.base_url
            creds = credentials.strip() if credentials is not None else None
            if creds is not None:
                clean_text(creds, "credentials", code="exchange.bad_credentials")
            if creds is not None or base_url:
                current = creds
                if current is None and row.credentials:
                    current = decrypt(self.settings, row.credentials, name)
                build_adapter(
                    ExchangeSpec(name, row.kind, url, json.loads(row.config or "{}"), current)
                )
            if base_url:
                row.base_url = url
            if creds is not None:
                row.credentials = encrypt(self.settings, creds) if creds else None
            if enabled is not None:
                row.enabled = enabled
            if interval_s is not None:
                if interval_s <= 0:
                    raise ExchangeError("--interval must be positive", code="exchange.bad_config")
                row.interval_s = interval_s
            if bank is not None:
                target = s.scalars(select(Bank).where(Bank.name == bank)).one_or_none()
                if target is None:
                    raise BankNotFound(f"no bank named {bank!r}", code="bank.not_found")
                if target.id != row.bank_id:
                    # The new bank holds none of our hashes yet: the next fetch is a full one.
                    row.bank_id = target.id
                    row.checkpoint = None
                    s.execute(delete(ExchangeRecord).where(ExchangeRecord.exchange_id == row.id))
            changed = {
                k: v
                for k, v in (
                    ("url", url if base_url else None),
                    ("credentials", None if creds is None else ("set" if creds else "cleared")),
                    ("enabled", enabled),
                    ("interval_s", interval_s),
                    ("bank", bank),
                )
                if v is not None
            }
            if changed:
                audit.record(s, "exchange.updated", f"exchange:{name}", changed)
        return self.get(name)

    def remove(self, name: str, *, delete_bank: bool = False) -> dict[str, Any]:
        with self.db.session() as s:
            row = self._row(s, name)
            bank = s.get(Bank, row.bank_id) if row.bank_id is not None else None
            bank_name = bank.name if bank else None
            s.delete(row)
            audit.record(
                s,
                "exchange.removed",
                f"exchange:{name}",
                {"bank": bank_name, "delete_bank": delete_bank},
            )
        entries = None
        if delete_bank and bank_name:
            entries = self.banks.delete_bank(bank_name)
        return {"removed": name, "bank": bank_name, "bank_deleted": entries is not None}

    def _spec(self, row: Exchange) -> ExchangeSpec:
        creds = decrypt(self.settings, row.credentials, row.name) if row.credentials else None
        return ExchangeSpec(
            name=row.name,
            kind=row.kind,
            base_url=row.base_url,
            config=json.loads(row.config or "{}"),
            credentials=creds,
            timeout_s=self.settings.exchange_timeout_s,
        )

    # -- fetching ---------------------------------------------------------------------------
    def fetch(
        self,
        name: str,
        *,
        max_pages: int | None = None,
        full: bool = False,
        stop: threading.Event | None = None,
    ) -> FetchSummary:
        """Fetch exchange ``name`` from its checkpoint; returns the summary (never raises for
        remote failures: they end the fetch with status ``failed`` and the error inside)."""
        owner = uuid.uuid4().hex
        now = utcnow()
        lease = timedelta(seconds=self.settings.exchange_lease_s)
        with self.db.session() as s:
            row = self._row(s, name)
            claimed = s.execute(
                update(Exchange)
                .execution_options(synchronize_session=False)
                .where(
                    Exchange.id == row.id,
                    or_(Exchange.lease_until.is_(None), Exchange.lease_until < now),
                )
                .values(lease_owner=owner, lease_until=now + lease, last_fetch_started_at=now)
            )
            if not cast(CursorResult[Any], claimed).rowcount:
                raise ExchangeError(
                    f"exchange {name!r} is being fetched by another process",
                    code="exchange.busy",
                    exchange=name,
                )
        try:
            return self._fetch_claimed(name, owner, max_pages=max_pages, full=full, stop=stop)
        finally:
            with self.db.session() as s:
                s.execute(
                    update(Exchange)
                    .execution_options(synchronize_session=False)
                    .where(Exchange.name == name, Exchange.lease_owner == owner)
                    .values(lease_owner=None, lease_until=None)
                )

    def _fetch_claimed(
        self,
        name: str,
        owner: str,
        *,
        max_pages: int | None,
        full: bool,
        stop: threading.Event | None,
    ) -> FetchSummary:
        with self.db.session() as s:
            row = self._row(s, name)
            bank = s.get(Bank, row.bank_id) if row.bank_id is not None else None
            if bank is None:
                raise ExchangeError(
                    f"the bank of exchange {name!r} was deleted; give it one with "
                    f"`dignity exchange update {name} --bank BANK`",
                    code="exchange.no_bank",
                )
            spec = self._spec(row)
            exchange_id, bank_name, bank_id = row.id, bank.name, bank.id
            checkpoint = json.loads(row.checkpoint) if row.checkpoint else None
            adapter = build_adapter(spec)
            start_over = full or adapter.snapshot or checkpoint is None
            if checkpoint is not None and not start_over and adapter.is_stale(checkpoint):
                start_over = True
            generation = row.generation
            if start_over:
                # A new full fetch, unless one began and never got to store a checkpoint.
                if full or adapter.snapshot or checkpoint is not None or not row.full_fetch_pending:
                    generation += 1
                checkpoint = None
                row.generation = generation
                row.full_fetch_pending = True
                row.checkpoint = None
            sweep = row.full_fetch_pending
        summary = FetchSummary(name, spec.kind, bank_name, full=sweep, checkpoint=checkpoint)
        secrets = _secrets_of(spec)
        ctx = _FetchContext(exchange_id, name, bank_id, bank_name, owner, generation)
        status = "complete"
        try:
            for page in adapter.pages(checkpoint):
                self._apply(ctx, page, summary)
                summary.pages += 1
                if max_pages is not None and summary.pages >= max_pages:
                    status = "partial"
                    break
                if stop is not None and stop.is_set():
                    status = "interrupted"
                    break
            else:
                if sweep:
                    self._sweep(ctx, summary)
        except KeyboardInterrupt:
            summary.status = "interrupted"
            self._finish(ctx, summary)
            raise
        except DignityError as exc:
            status = "failed"
            summary.error = {"code": exc.code, "message": redact(exc.message, secrets)}
        except Exception as exc:  # remote and client-library failures of any kind
            status = "failed"
            summary.error = {
                "code": "exchange.fetch_failed",
                "message": redact(f"{type(exc).__name__}: {exc}", secrets)[:1000],
            }
        summary.status = status
        self._finish(ctx, summary)
        return summary

    def _finish(self, ctx: _FetchContext, summary: FetchSummary) -> None:
        summary.finished_at = utcnow()
        with self.db.session() as s:
            s.execute(
                update(Exchange)
                .execution_options(synchronize_session=False)
                .where(Exchange.id == ctx.exchange_id)
                .values(
                    last_status=summary.status,
                    last_fetch_finished_at=summary.finished_at,
                    last_summary=json.dumps(summary.to_dict(), default=json_default),
                )
            )
            # Counts only (no samples, no messages); a fetch that went well and changed no
            # bank is not worth a record each interval.
            if summary.status != "complete" or any(
                (summary.removed_records, summary.added, summary.withdrawn, summary.errors)
            ):
                audit.record(
                    s,
                    "exchange.fetched",
                    f"exchange:{ctx.name}",
                    {
                        "status": summary.status,
                        "full": summary.full,
                        "pages": summary.pages,
                        "records": summary.records,
                        "removed_records": summary.removed_records,
                        "added": dict(sorted(summary.added.items())),
                        "withdrawn": dict(sorted(summary.withdrawn.items())),
                        "errors": sum(summary.errors.values()),
                        "error": summary.error["code"] if summary.error else None,
                    },
                )

    def _apply(self, ctx: _FetchContext, page: Page, summary: FetchSummary) -> None:
        summary.unknown.update(page.unknown)
        summary.errors.update(page.errors)
        summary.notes.update(page.notes)
        for sample in page.error_samples:
            summary.sample(sample)
        # The newest state of each record in this page wins.
        state: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        # A vpdq record's frames, by (vpdq, digest): the pair is what records and entries
        # are compared by; the frames go with the entry when it is added.
        frames: dict[tuple[str, str], tuple[Any, ...]] = {}
        for rec in page.records:
            key = _record_key(rec.key)
            summary.records += 1
            summary.unknown.update(rec.unknown)
            hashes: dict[tuple[str, str], dict[str, Any]] = {}
            if rec.removed:
                summary.removed_records += 1
            else:
                for signal, value in rec.hashes:
                    try:
                        if has_frames(signal_types().get(signal)):
                            from dignity.video.formats import parse_vpdq_text, vpdq_digest

                            got = parse_vpdq_text(value)
                            pair = (signal, vpdq_digest(got))
                            frames[pair] = got
                            hashes[pair] = rec.meta
                            continue
                        hashes[normalize_hash(signal, value)] = rec.meta
                    except HashError as exc:
                        summary.errors[signal] += 1
                        summary.sample(
                            {"type": signal, "record": key[:100], "message": exc.message}
                        )
            state.pop(key, None)
            state[key] = hashes
        keys = list(state)
        old: dict[str, set[tuple[str, str]]] = {k: set() for k in keys}
        with self.db.session() as s:
            for chunk in _chunks(keys):
                for key, sig, val in s.execute(
                    select(
                        ExchangeRecord.record_key, ExchangeRecord.signal, ExchangeRecord.value
                    ).where(
                        ExchangeRecord.exchange_id == ctx.exchange_id,
                        ExchangeRecord.record_key.in_(chunk),
                    )
                ):
                    old[key].add((sig, val))
        live_now = {pair for hashes in state.values() for pair in hashes}
        to_add: dict[tuple[str, str], str] = {}
        gone: set[tuple[str, str]] = set()
        for key, hashes in state.items():
            for pair in hashes:
                if pair not in old[key]:
                    to_add.setdefault(pair, key)
            gone |= old[key] - set(hashes)
        gone -= live_now
        if gone:
            gone -= self._still_referenced(ctx, gone, exclude_keys=set(keys))
        self._bank_writes(ctx, to_add, gone, summary, frames)
        with self.db.session() as s:
            self._renew(s, ctx, checkpoint=page.checkpoint)
            for chunk in _chunks(keys):
                s.execute(
                    delete(ExchangeRecord).where(
                        ExchangeRecord.exchange_id == ctx.exchange_id,
                        ExchangeRecord.record_key.in_(chunk),
                    )
                )
            now = utcnow()
            rows = [
                {
                    "exchange_id": ctx.exchange_id,
                    "record_key": key,
                    "signal": sig,
                    "value": val,
                    "meta": json.dumps(meta, sort_keys=True, default=json_default),
                    "seen_gen": ctx.generation,
                    "updated_at": now,
                }
                for key, hashes in state.items()
                for (sig, val), meta in hashes.items()
            ]
            for chunk in _chunks(rows, 2000):
                s.execute(insert(ExchangeRecord), chunk)
        summary.checkpoint = page.checkpoint

    def _renew(self, s: Session, ctx: _FetchContext, *, checkpoint: dict[str, Any] | None) -> None:
        until = utcnow() + timedelta(seconds=self.settings.exchange_lease_s)
        res = s.execute(
            update(Exchange)
            .execution_options(synchronize_session=False)
            .where(Exchange.id == ctx.exchange_id, Exchange.lease_owner == ctx.owner)
            .values(
                checkpoint=json.dumps(checkpoint) if checkpoint is not None else None,
                lease_until=until,
            )
        )
        if not cast(CursorResult[Any], res).rowcount:
            raise ExchangeError(
                f"exchange {ctx.name!r} lost its fetch lease (another fetcher took over after "
                "DIGNITY_EXCHANGE_LEASE_S); this page will be applied again by the next fetch",
                code="exchange.lease_lost",
            )

    def _still_referenced(
        self, ctx: _FetchContext, pairs: set[tuple[str, str]], *, exclude_keys: set[str]
    ) -> set[tuple[str, str]]:
        """Which of ``pairs`` some other record feeding the same bank still carries."""
        found: set[tuple[str, str]] = set()
        by_signal: dict[str, list[str]] = {}
        for sig, val in pairs:
            by_signal.setdefault(sig, []).append(val)
        with self.db.session() as s:
            for sig, values in by_signal.items():
                for chunk in _chunks(values):
                    q = (
                        select(
                            ExchangeRecord.value,
                            ExchangeRecord.exchange_id,
                            ExchangeRecord.record_key,
                        )
                        .join(Exchange, Exchange.id == ExchangeRecord.exchange_id)
                        .where(
                            Exchange.bank_id == ctx.bank_id,
                            ExchangeRecord.signal == sig,
                            ExchangeRecord.value.in_(chunk),
                        )
                    )
                    for val, ex_id, key in s.execute(q):
                        if ex_id != ctx.exchange_id or key not in exclude_keys:
                            found.add((sig, val))
        return found

    def _bank_writes(
        self,
        ctx: _FetchContext,
        to_add: dict[tuple[str, str], str],
        gone: set[tuple[str, str]],
        summary: FetchSummary,
        frames: dict[tuple[str, str], tuple[Any, ...]] | None = None,
    ) -> None:
        if to_add:
            result = self.banks.add_entries(
                ctx.bank_name,
                [
                    NewEntry(
                        sig,
                        val,
                        "exchange",
                        f"{ctx.name}:{key}",
                        frames=(frames or {}).get((sig, val), ()),
                    )
                    for (sig, val), key in to_add.items()
                ],
            )
            for (sig, _), (_, how) in result.outcomes.items():
                if how in ("added", "reactivated"):
                    summary.added[sig] += 1
        if gone:
            ids: list[int] = []
            by_signal: dict[str, list[str]] = {}
            for sig, val in gone:
                by_signal.setdefault(sig, []).append(val)
            with self.db.session() as s:
                for sig, values in by_signal.items():
                    for chunk in _chunks(values):
                        for eid, esig in s.execute(
                            select(Entry.id, Entry.signal).where(
                                Entry.bank_id == ctx.bank_id,
                                Entry.signal == sig,
                                Entry.value.in_(chunk),
                                Entry.status == "active",
                                # A hash a curator added by hand is theirs to withdraw.
                                Entry.origin_kind == "exchange",
                            )
                        ):
                            ids.append(eid)
                            summary.withdrawn[esig] += 1
            for chunk in _chunks(ids):
                self.banks.withdraw(ctx.bank_name, chunk)

    def _sweep(self, ctx: _FetchContext, summary: FetchSummary) -> None:
        """End of a full fetch: records it did not see are gone from the exchange."""
        with self.db.session() as s:
            stale = s.execute(
                select(
                    ExchangeRecord.record_key, ExchangeRecord.signal, ExchangeRecord.value
                ).where(
                    ExchangeRecord.exchange_id == ctx.exchange_id,
                    ExchangeRecord.seen_gen < ctx.generation,
                )
            ).all()
        stale_keys = {k for k, _, _ in stale}
        pairs = {(sig, val) for _, sig, val in stale}
        if pairs:
            pairs -= self._still_referenced(ctx, pairs, exclude_keys=stale_keys)
        self._bank_writes(ctx, {}, pairs, summary)
        summary.removed_records += len(stale_keys)
        with self.db.session() as s:
            self._renew(s, ctx, checkpoint=summary.checkpoint)
            s.execute(
                delete(ExchangeRecord).where(
                    ExchangeRecord.exchange_id == ctx.exchange_id,
                    ExchangeRecord.seen_gen < ctx.generation,
                )
            )
            s.execute(
                update(Exchange)
                .execution_options(synchronize_session=False)
                .where(Exchange.id == ctx.exchange_id)
                .values(full_fetch_pending=False)
            )

    # -- scheduling -------------------------------------------------------------------------
    def due(self, now: datetime | None = None) -> list[str]:
        """Enabled exchanges whose interval has passed since their last fetch began."""
        now = now or utcnow()
        out = []
        with self.db.session() as s:
            for row in s.scalars(select(Exchange).where(Exchange.enabled.is_(True))):
                interval = row.interval_s or self.settings.exchange_interval_s
                last = row.last_fetch_started_at
                leased = row.lease_until is not None and row.lease_until > now
                if not leased and (last is None or last + timedelta(seconds=interval) <= now):
                    out.append(row.name)
        return out

    def run_due(
        self, stop: threading.Event | None = None
    ) -> Iterator[FetchSummary | dict[str, Any]]:
        """Fetch every due exchange once; yields each summary (or a refusal, as a dict)."""
        for name in self.due():
            if stop is not None and stop.is_set():
                return
            try:
                yield self.fetch(name, stop=stop)
            except DignityError as exc:
                yield {"exchange": name, "status": "skipped", "error": exc.to_dict()}

    def fetch_loop(
        self,
        stop: threading.Event,
        beat: Beat,
        report: Callable[[FetchSummary | dict[str, Any]], None],
    ) -> None:
        """Fetch whatever is due, then wait, until ``stop`` is set: the body of the
        ``exchange-fetch`` background task. Each summary goes to ``report``; a pass that
        raised is recorded on ``beat`` and the loop goes on."""
        while not stop.is_set():
            try:
                for result in self.run_due(stop):
                    report(result)
                beat.ok()
            except Exception as exc:  # a database blip must not end fetching for good
                log.exception("exchange fetch pass failed")
                beat.failed(exc)
            # Wake at least every second so a new exchange or a changed interval is noticed.
            stop.wait(min(1.0, self.seconds_until_due()))

    def seconds_until_due(self) -> float:
        now = utcnow()
        best = self.settings.exchange_interval_s
        with self.db.session() as s:
            for row in s.scalars(select(Exchange).where(Exchange.enabled.is_(True))):
                interval = row.interval_s or self.settings.exchange_interval_s
                last = row.last_fetch_started_at
                wait = (
                    0.0
                    if last is None
                    else (last + timedelta(seconds=interval) - now).total_seconds()
                )
                best = min(best, max(0.0, wait))
        return best

    # -- feedback ---------------------------------------------------------------------------
    def feedback(
        self, name: str, hashes: Iterable[tuple[str, str]], verdict: str, tags: list[str]
    ) -> dict[str, Any]:
        """Tell the exchange what we made of hashes it gave us (e.g. StopNCII Blocked)."""
        if verdict not in VERDICTS:
            raise ExchangeError(
                f"verdict must be one of {', '.join(VERDICTS)}", code="exchange.bad_verdict"
            )
        wanted = [normalize_hash(sig, val) for sig, val in hashes]
        with self.db.session() as s:
            row = self._row(s, name)
            spec = self._spec(row)
            records: list[StoredRecord] = []
            for sig, val in wanted:
                found = s.execute(
                    select(ExchangeRecord.record_key, ExchangeRecord.meta).where(
                        ExchangeRecord.exchange_id == row.id,
                        and_(ExchangeRecord.signal == sig, ExchangeRecord.value == val),
                    )
                ).all()
                if not found:
                    raise ExchangeError(
                        f"no live record of exchange {name!r} carries {sig}:{val}",
                        code="exchange.no_record",
                    )
                records += [StoredRecord(k, sig, val, json.loads(m or "{}")) for k, m in found]
        adapter: Adapter = build_adapter(spec)
        try:
            result = adapter.feedback(records, verdict, tags)
        except DignityError:
            raise
        except Exception as exc:  # remote failures of any kind
            raise ExchangeError(
                redact(f"feedback failed: {type(exc).__name__}: {exc}", _secrets_of(spec))[:1000],
                code="exchange.feedback_failed",
            ) from exc
        return {"exchange": name, "verdict": verdict, "hashes": len(wanted), **result}


@dataclass(frozen=True)
class _FetchContext:
    exchange_id: int
    name: str
    bank_id: int
    bank_name: str
    owner: str
    generation: int


def _secrets_of(spec: ExchangeSpec) -> list[str]:
    if not spec.credentials:
        return []
    text = spec.credentials
    parts = [text, *re.split(r"[,:|\s\"{}]+", text)]
    return [p for p in parts if len(p) >= 6]


def sleep_until(stop: threading.Event, seconds: float) -> None:
    """Sleep up to ``seconds``, waking at once when ``stop`` is set."""
    stop.wait(max(0.0, seconds))
