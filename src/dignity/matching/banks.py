"""Banks and their entries: create, change, delete; add, withdraw, import, export.

Every write that changes which hashes are live also appends to ``index_log`` in the same
transaction, which is how in-memory indexes in this and other processes learn of it. Bulk
operations validate every item before writing anything, so a bad line in an import leaves the
database exactly as it was.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import delete, func, insert, literal, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dignity import audit
from dignity.actions.outbox import emit_bank_deleted, emit_entries
from dignity.errors import (
    BankExists,
    BankNotFound,
    BankRefused,
    DignityError,
    HashError,
    ImportFormatError,
)
from dignity.hashing.registry import has_frames, signal_types
from dignity.hashing.signals import SIGNAL_TYPES, normalize_hash
from dignity.storage.db import Database
from dignity.storage.models import Bank, Entry, EntryFrame, IndexLog, utcnow
from dignity.text import clean_text

if TYPE_CHECKING:
    from dignity.video.vpdq import VpdqFrame

BANK_PURPOSES = ("block", "review", "allow")
ORIGIN_KINDS = ("case", "exchange", "person", "file", "import")
DEFAULT_THRESHOLD = 31
MAX_THRESHOLD = 63
_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_MAX_ID = 2**63 - 1
_CHUNK = 500
_WRITE_BATCH = 5000  # rows per IN (...) lookup; well under every database's bound-parameter limit


@dataclass(frozen=True)
class BankInfo:
    id: int
    name: str
    purpose: str
    threshold: int
    enabled: bool
    description: str
    created_at: datetime | None = None
    active_entries: int = 0
    withdrawn_entries: int = 0
    vpdq_query_percent: float = 80.0
    vpdq_min_segment_s: float = 3.0

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "purpose": self.purpose,
            "threshold": self.threshold,
            "enabled": self.enabled,
            "description": self.description,
            "active_entries": self.active_entries,
            "withdrawn_entries": self.withdrawn_entries,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "vpdq_query_percent": self.vpdq_query_percent,
            "vpdq_min_segment_s": self.vpdq_min_segment_s,
        }


@dataclass(frozen=True)
class NewEntry:
    """A hash to add to a bank, with where it came from.

    A ``vpdq`` entry carries its ``frames``; its ``value`` is then their digest
    (:func:`dignity.video.formats.vpdq_digest`; left empty, it is computed), and ``video_md5``
    is the MD5 of the video file it was hashed from, if known (the entry matches by it too).
    """

    signal: str
    value: str
    origin_kind: str = "person"
    origin_ref: str = ""
    note: str = ""
    frames: tuple[VpdqFrame, ...] = ()
    video_md5: str = ""


@dataclass(frozen=True)
class EntryInfo:
    id: int
    bank: str
    signal: str
    value: str
    origin_kind: str
    origin_ref: str
    note: str
    status: str
    created_at: datetime | None
    withdrawn_at: datetime | None
    video_md5: str | None = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "entry_id": self.id,
            "bank": self.bank,
            "signal": self.signal,
            "value": self.value,
            "origin": {"kind": self.origin_kind, "ref": self.origin_ref},
            "note": self.note,
            "status": self.status,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "withdrawn_at": self.withdrawn_at.isoformat() if self.withdrawn_at else None,
        }
        if self.video_md5:
            out["video_md5"] = self.video_md5
        return out


@dataclass(frozen=True)
class AddResult:
    """Outcome of adding entries: new or re-activated ids, and those already there."""

    added: list[int] = field(default_factory=list)
    reactivated: list[int] = field(default_factory=list)
    already_active: list[int] = field(default_factory=list)
    # (signal, value) -> (entry id, "added" | "reactivated" | "already_active")
    outcomes: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "added": len(self.added),
            "reactivated": len(self.reactivated),
            "already_active": len(self.already_active),
            "entry_ids": self.added + self.reactivated + self.already_active,
        }


def _bank_info(bank: Bank, active: int = 0, withdrawn: int = 0) -> BankInfo:
    return BankInfo(
        id=bank.id,
        name=bank.name,
        purpose=bank.purpose,
        threshold=bank.threshold,
        enabled=bank.enabled,
        description=bank.description,
        created_at=bank.created_at,
        active_entries=active,
        withdrawn_entries=withdrawn,
        vpdq_query_percent=float(bank.vpdq_query_percent),
        vpdq_min_segment_s=float(bank.vpdq_min_segment_s),
    )


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise BankRefused(
            "a bank name is 1-64 letters, digits, '_', '.' or '-', starting with a letter "
            f"or digit; got {name!r}",
            code="bank.bad_name",
        )


def _validate_bank_fields(
    purpose: str | None,
    threshold: int | None,
    query_percent: float | None = None,
    min_segment_s: float | None = None,
) -> None:
    if query_percent is not None and not 0 < query_percent <= 100:
        raise BankRefused(
            f"vpdq_query_percent must be over 0 and at most 100; got {query_percent}",
            code="bank.bad_threshold",
        )
    if min_segment_s is not None and not 0 < min_segment_s <= 3600:
        raise BankRefused(
            f"vpdq_min_segment_s must be over 0 and at most 3600; got {min_segment_s}",
            code="bank.bad_threshold",
        )
    if purpose is not None and purpose not in BANK_PURPOSES:
        raise BankRefused(
            f"purpose must be one of {', '.join(BANK_PURPOSES)}; got {purpose!r}",
            code="bank.bad_purpose",
        )
    if threshold is not None and not 0 <= threshold <= MAX_THRESHOLD:
        raise BankRefused(
            f"threshold must be between 0 and {MAX_THRESHOLD}; got {threshold}",
            code="bank.bad_threshold",
        )


def _validate_entry(item: NewEntry, where: str = "") -> NewEntry:
    frames: tuple[VpdqFrame, ...] = ()
    video_md5 = ""
    if has_frames(signal_types().get(item.signal.strip().lower())):
        from dignity.video.formats import frames_from_json, frames_to_json, vpdq_digest

        if not item.frames:
            raise HashError(
                f"{where}a vpdq entry needs its frames (a value alone cannot be matched)",
                code="hash.malformed",
                signal="vpdq",
            )
        # Round trip through the JSON form: the same checks as any other input of frames.
        frames = frames_from_json(frames_to_json(item.frames))
        # The JSON form is the exchanged one and has no trimmed hashes (dignity's own, see
        # dignity.video.bars): carry them over where the frames came with them.
        frames = tuple(
            replace(g, trimmed=f.trimmed[:32])
            if f.trimmed and len(f.trimmed) >= 32 and len(f.trimmed) % 32 == 0
            else g
            for f, g in zip(item.frames, frames, strict=True)
        )
        digest = vpdq_digest(frames)
        if item.value and item.value.strip().lower() != digest:
            raise HashError(
                f"{where}the vpdq value is not the digest of its frames",
                code="hash.malformed",
                signal="vpdq",
            )
        signal, value = normalize_hash(item.signal, digest)
        if item.video_md5:
            video_md5 = normalize_hash("video_md5", item.video_md5)[1]
    else:
        signal, value = normalize_hash(item.signal, item.value)
    clean_text(item.note, "note", code="bank.bad_text")
    clean_text(item.origin_ref, "origin ref", code="bank.bad_text")
    if item.origin_kind not in ORIGIN_KINDS:
        raise BankRefused(
            f"{where}origin must be one of {', '.join(ORIGIN_KINDS)}; got {item.origin_kind!r}",
            code="bank.bad_origin",
        )
    return NewEntry(signal, value, item.origin_kind, item.origin_ref, item.note, frames, video_md5)


def _frames_of(obj: dict[str, Any]) -> tuple[VpdqFrame, ...]:
    """A JSON import object's frames: ``frames`` (dignity's list of objects), or ``vpdq`` as
    that list, Meta's hash-file text or py-tx's JSON string."""
    from dignity.video.formats import frames_from_json, parse_vpdq_text

    raw = obj.get("frames", obj.get("vpdq"))
    if raw is None:
        return ()
    if isinstance(raw, str):
        return parse_vpdq_text(raw)
    if isinstance(raw, list):
        return frames_from_json(raw)
    raise ValueError("frames must be a list of {frame, timestamp, pdq, quality}")


def parse_import_line(line: str, lineno: int, default_origin: str = "import") -> NewEntry | None:
    """One line of a bulk import: JSON object, ``<signal> <hex>`` (HMA/py-tx text) or bare hex.

    Bare hex is taken as PDQ when 64 digits and MD5 when 32; SHA-256 needs its signal name,
    since its length is PDQ's. Blank lines and ``#`` comments are skipped (None).
    """
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    try:
        if text.startswith("{"):
            obj = json.loads(text)
            if not isinstance(obj, dict):
                raise ValueError("not an object")
            origin = obj.get("origin") or {}
            if not isinstance(origin, dict):
                origin = {"kind": default_origin, "ref": str(origin)}
            signal = str(obj.get("signal", "pdq"))
            frames = _frames_of(obj) if signal.strip().lower() == "vpdq" else ()
            item = NewEntry(
                signal=signal,
                value=str(obj["value"] if not frames else obj.get("value", "")),
                origin_kind=str(origin.get("kind", default_origin)),
                origin_ref=str(origin.get("ref", "")),
                note=str(obj.get("note", "")),
                frames=frames,
                video_md5=str(obj.get("video_md5") or ""),
            )
        elif text.split(None, 1)[0].lower() == "vpdq":
            # py-tx / HMA text: "vpdq <the VideoVPDQSignal JSON>" (it holds spaces).
            from dignity.video.formats import parse_vpdq_text

            frames = parse_vpdq_text(text.split(None, 1)[1] if " " in text else "")
            item = NewEntry("vpdq", "", origin_kind=default_origin, frames=frames)
        else:
            parts = text.split()
            if len(parts) == 1:
                guess = {64: "pdq", 32: "md5"}.get(len(parts[0]))
                if guess is None:
                    raise ValueError("a bare hash must be 64 (pdq) or 32 (md5) hex digits")
                parts = [guess, parts[0]]
            if len(parts) != 2:
                raise ValueError("expected '<signal> <hex>'")
            item = NewEntry(parts[0], parts[1], origin_kind=default_origin)
        return _validate_entry(item)
    except (ValueError, KeyError, TypeError, DignityError) as exc:
        why = exc.message if isinstance(exc, DignityError) else str(exc)
        raise ImportFormatError(
            f"line {lineno}: {why}; nothing was imported", code="import.bad_line", line=lineno
        ) from exc


class BankService:
    """Banks and entries in the database. Thread-safe: each call uses its own session."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- banks ---------------------------------------------------------------------------
    def create_bank(
        self,
        name: str,
        *,
        purpose: str = "block",
        threshold: int = DEFAULT_THRESHOLD,
        enabled: bool = True,
        description: str = "",
        vpdq_query_percent: float = 80.0,
        vpdq_min_segment_s: float = 3.0,
    ) -> BankInfo:
        _check_name(name)
        _validate_bank_fields(purpose, threshold, vpdq_query_percent, vpdq_min_segment_s)
        clean_text(description, "description", code="bank.bad_text")
        try:
            with self.db.session() as s:
                bank = Bank(
                    name=name,
                    purpose=purpose,
                    threshold=threshold,
                    enabled=enabled,
                    description=description,
                    vpdq_query_percent=vpdq_query_percent,
                    vpdq_min_segment_s=vpdq_min_segment_s,
                )
                s.add(bank)
                s.flush()
                audit.record(
                    s,
                    "bank.created",
                    f"bank:{name}",
                    {
                        "bank_id": bank.id,
                        "purpose": purpose,
                        "threshold": threshold,
                        "enabled": enabled,
                        "description": description[:200],
                    },
                )
                return _bank_info(bank)
        except IntegrityError as exc:
            raise BankExists(f"a bank named {name!r} already exists", code="bank.exists") from exc

    def _bank(self, s: Session, name: str) -> Bank:
        bank = s.scalars(select(Bank).where(Bank.name == name)).one_or_none()
        if bank is None:
            raise BankNotFound(f"no bank named {name!r}", code="bank.not_found", bank=name)
        return bank

    def get_bank(self, name: str) -> BankInfo:
        with self.db.session() as s:
            bank = self._bank(s, name)
            counts = dict(
                s.execute(
                    select(Entry.status, func.count())
                    .where(Entry.bank_id == bank.id)
                    .group_by(Entry.status)
                ).all()
            )
            return _bank_info(bank, counts.get("active", 0), counts.get("withdrawn", 0))

    def list_banks(self) -> list[BankInfo]:
        with self.db.session() as s:
            counts: dict[tuple[int, str], int] = {
                (bank_id, status): n
                for bank_id, status, n in s.execute(
                    select(Entry.bank_id, Entry.status, func.count()).group_by(
                        Entry.bank_id, Entry.status
                    )
                ).all()
            }
            return [
                _bank_info(b, counts.get((b.id, "active"), 0), counts.get((b.id, "withdrawn"), 0))
                for b in s.scalars(select(Bank).order_by(Bank.name))
            ]

    def update_bank(
        self,
        name: str,
        *,
        purpose: str | None = None,
        threshold: int | None = None,
        enabled: bool | None = None,
        description: str | None = None,
        vpdq_query_percent: float | None = None,
        vpdq_min_segment_s: float | None = None,
    ) -> BankInfo:
        _validate_bank_fields(purpose, threshold, vpdq_query_percent, vpdq_min_segment_s)
        if description is not None:
            clean_text(description, "description", code="bank.bad_text")
        with self.db.session() as s:
            bank = self._bank(s, name)
            before = (bank.purpose, bank.threshold, bank.enabled, bank.description)
            video_before = (bank.vpdq_query_percent, bank.vpdq_min_segment_s)
            if vpdq_query_percent is not None:
                bank.vpdq_query_percent = vpdq_query_percent
            if vpdq_min_segment_s is not None:
                bank.vpdq_min_segment_s = vpdq_min_segment_s
            video_after = (bank.vpdq_query_percent, bank.vpdq_min_segment_s)
            if purpose is not None:
                bank.purpose = purpose
            if threshold is not None:
                bank.threshold = threshold
            if enabled is not None:
                bank.enabled = enabled
            if description is not None:
                bank.description = description
            after = (bank.purpose, bank.threshold, bank.enabled, bank.description)
            changes: dict[str, list[object]] = {
                k: [str(old)[:200], str(new)[:200]] if k == "description" else [old, new]
                for k, old, new in zip(
                    ("purpose", "threshold", "enabled", "description"), before, after, strict=True
                )
                if old != new
            }
            for key, old, new in zip(
                ("vpdq_query_percent", "vpdq_min_segment_s"), video_before, video_after, strict=True
            ):
                if old != new:
                    changes[key] = [old, new]
            if changes:  # [before, after] per field that changed
                audit.record(s, "bank.updated", f"bank:{name}", {"bank_id": bank.id, **changes})
        return self.get_bank(name)

    def rename_bank(self, name: str, new_name: str) -> BankInfo:
        """Give bank ``name`` a new name; entries, ids and settings stay as they are."""
        _check_name(new_name)
        try:
            with self.db.session() as s:
                bank = self._bank(s, name)
                bank.name = new_name
                audit.record(
                    s, "bank.renamed", f"bank:{new_name}", {"bank_id": bank.id, "from": name}
                )
        except IntegrityError as exc:
            raise BankExists(
                f"a bank named {new_name!r} already exists", code="bank.exists"
            ) from exc
        return self.get_bank(new_name)

    def delete_bank(self, name: str) -> int:
        """Delete a bank and all its entries; returns how many entries went with it."""
        with self.db.session() as s:
            bank = self._bank(s, name)
            s.execute(
                insert(IndexLog).from_select(
                    ["entry_id", "op", "at"],
                    select(Entry.id, literal("remove"), literal(utcnow())).where(
                        Entry.bank_id == bank.id, Entry.status == "active"
                    ),
                )
            )
            gone = s.execute(delete(Entry).where(Entry.bank_id == bank.id))
            n = cast(CursorResult[Any], gone).rowcount
            emit_bank_deleted(s, bank, int(n or 0))
            s.delete(bank)
            audit.record(
                s, "bank.deleted", f"bank:{name}", {"bank_id": bank.id, "entries": int(n or 0)}
            )
            return int(n or 0)

    # -- entries -------------------------------------------------------------------------
    def add_entries(self, bank_name: str, items: Iterable[NewEntry]) -> AddResult:
        """Add hashes to a bank; a withdrawn hash is re-activated, duplicates are kept once."""
        clean: dict[tuple[str, str], NewEntry] = {}
        for item in items:
            v = _validate_entry(item)
            clean.setdefault((v.signal, v.value), v)
        result = AddResult()
        if not clean:
            self.get_bank(bank_name)
            return result
        with self.db.session() as s:
            bank = self._bank(s, bank_name)
            existing: dict[tuple[str, str], tuple[int, str]] = {}
            by_signal: dict[str, list[str]] = {}
            for sig, val in clean:
                by_signal.setdefault(sig, []).append(val)
            for sig, vals in by_signal.items():
                # bank_id, signal, value: the unique index answers this without a scan.
                for i in range(0, len(vals), _CHUNK):
                    rows = s.execute(
                        select(Entry.value, Entry.id, Entry.status).where(
                            Entry.bank_id == bank.id,
                            Entry.signal == sig,
                            Entry.value.in_(vals[i : i + _CHUNK]),
                        )
                    ).all()
                    for val, eid, status in rows:
                        existing[(sig, val)] = (eid, status)
            now = utcnow()
            fresh = [
                {
                    "bank_id": bank.id,
                    "signal": e.signal,
                    "value": e.value,
                    "origin_kind": e.origin_kind,
                    "origin_ref": e.origin_ref,
                    "note": e.note,
                    "status": "active",
                    "created_at": now,
                    "updated_at": now,
                    "video_md5": e.video_md5 or None,
                }
                for k, e in clean.items()
                if k not in existing
            ]
            new_ids: list[int] = []
            # In slices: one statement per few thousand rows keeps each C call (and its hold on
            # the GIL) short, so a server stays responsive during a million-row import.
            for i in range(0, len(fresh), _WRITE_BATCH):
                new_ids += s.scalars(
                    insert(Entry).returning(Entry.id, sort_by_parameter_order=True),
                    fresh[i : i + _WRITE_BATCH],
                )
            if fresh:
                result.added.extend(new_ids)
                for row, eid in zip(fresh, new_ids, strict=True):
                    result.outcomes[(str(row["signal"]), str(row["value"]))] = (eid, "added")
                _write_frames(s, clean, fresh, new_ids)
            for key, (eid, status) in existing.items():
                kind = "reactivated" if status == "withdrawn" else "already_active"
                (result.reactivated if status == "withdrawn" else result.already_active).append(eid)
                result.outcomes[key] = (eid, kind)
            if result.reactivated:
                for i in range(0, len(result.reactivated), _CHUNK):
                    s.execute(
                        update(Entry)
                        .where(Entry.id.in_(result.reactivated[i : i + _CHUNK]))
                        .values(status="active", withdrawn_at=None, updated_at=now)
                    )
            live = result.added + result.reactivated
            for i in range(0, len(live), _WRITE_BATCH):
                s.execute(
                    insert(IndexLog),
                    [{"entry_id": e, "op": "add", "at": now} for e in live[i : i + _WRITE_BATCH]],
                )
            if live:
                emit_entries(s, "entry.added", bank, live)
                # One record per call, ids capped: a million-line import is one record.
                audit.record(
                    s,
                    "entry.added",
                    f"bank:{bank.name}",
                    {
                        "bank_id": bank.id,
                        "added": len(result.added),
                        "reactivated": len(result.reactivated),
                        "already_active": len(result.already_active),
                        "entries": audit.few(live),
                    },
                )
        return result

    def withdraw(self, bank_name: str, refs: Sequence[int | str]) -> int:
        """Withdraw entries by id or by hash value; they stop matching. Returns how many changed."""
        return self._retire(bank_name, refs, hard=False)

    def delete_entries(self, bank_name: str, refs: Sequence[int | str]) -> int:
        """Delete entries for good (by id or hash value). Returns how many were deleted."""
        return self._retire(bank_name, refs, hard=True)

    def _retire(self, bank_name: str, refs: Sequence[int | str], *, hard: bool) -> int:
        ids = [r for r in refs if isinstance(r, int)]
        out_of_range = [r for r in ids if not 0 < r <= _MAX_ID]
        if out_of_range:  # no database could hold it, and SQLite would overflow asking
            raise BankNotFound(
                f"bank {bank_name!r} has no entry with id {out_of_range[0]}",
                code="entry.not_found",
                entry_id=out_of_range[0],
            )
        values = [normalize_hash(_guess_signal(r), r)[1] for r in refs if isinstance(r, str)]
        now = utcnow()
        with self.db.session() as s:
            bank = self._bank(s, bank_name)
            targets: list[tuple[int, str]] = []
            for i in range(0, len(ids), _CHUNK):
                targets += s.execute(
                    select(Entry.id, Entry.status).where(
                        Entry.bank_id == bank.id, Entry.id.in_(ids[i : i + _CHUNK])
                    )
                ).all()
            for i in range(0, len(values), _CHUNK):
                targets += s.execute(
                    select(Entry.id, Entry.status).where(
                        Entry.bank_id == bank.id,
                        # Naming every signal lets the (bank, signal, value) index serve.
                        Entry.signal.in_(list(SIGNAL_TYPES)),
                        Entry.value.in_(values[i : i + _CHUNK]),
                    )
                ).all()
            found = {eid: status for eid, status in targets}
            missing = [r for r in ids if r not in found]
            if missing:
                raise BankNotFound(
                    f"bank {bank_name!r} has no entry with id {missing[0]}",
                    code="entry.not_found",
                    entry_id=missing[0],
                )
            live = [eid for eid, status in found.items() if status == "active"]
            changed = list(found) if hard else live
            emit_entries(s, "entry.deleted" if hard else "entry.withdrawn", bank, changed)
            for i in range(0, len(changed), _CHUNK):
                chunk = changed[i : i + _CHUNK]
                if hard:
                    s.execute(delete(Entry).where(Entry.id.in_(chunk)))
                else:
                    s.execute(
                        update(Entry)
                        .where(Entry.id.in_(chunk))
                        .values(status="withdrawn", withdrawn_at=now, updated_at=now)
                    )
            if live:
                s.execute(
                    insert(IndexLog), [{"entry_id": i, "op": "remove", "at": now} for i in live]
                )
            if changed:
                audit.record(
                    s,
                    "entry.deleted" if hard else "entry.withdrawn",
                    f"bank:{bank.name}",
                    {"bank_id": bank.id, "entries": audit.few(changed)},
                )
            return len(changed)

    def list_entries(
        self,
        bank_name: str,
        *,
        status: str | None = None,
        limit: int | None = None,
        after_id: int | None = None,
    ) -> list[EntryInfo]:
        return list(self.iter_entries(bank_name, status=status, limit=limit, after_id=after_id))

    def iter_entries(
        self,
        bank_name: str,
        *,
        status: str | None = None,
        limit: int | None = None,
        after_id: int | None = None,
    ) -> Iterator[EntryInfo]:
        with self.db.session() as s:
            bank = self._bank(s, bank_name)
            q = select(Entry).where(Entry.bank_id == bank.id).order_by(Entry.id)
            if after_id is not None:
                q = q.where(Entry.id > min(after_id, _MAX_ID))
            if status:
                q = q.where(Entry.status == status)
            if limit:
                q = q.limit(limit)
            for e in s.scalars(q.execution_options(yield_per=2000)):
                yield EntryInfo(
                    id=e.id,
                    bank=bank.name,
                    signal=e.signal,
                    value=e.value,
                    origin_kind=e.origin_kind,
                    origin_ref=e.origin_ref,
                    note=e.note,
                    status=e.status,
                    created_at=e.created_at,
                    withdrawn_at=e.withdrawn_at,
                    video_md5=e.video_md5,
                )

    def import_lines(
        self, bank_name: str, lines: Iterable[str], *, origin_ref: str = ""
    ) -> AddResult:
        """Parse every line first (JSON lines or ``signal hex``), then add all at once."""
        self.get_bank(bank_name)
        items: list[NewEntry] = []
        for n, line in enumerate(lines, start=1):
            item = parse_import_line(line, n)
            if item is not None:
                if origin_ref and not item.origin_ref:
                    item = replace(item, origin_ref=origin_ref)
                items.append(item)
        return self.add_entries(bank_name, items)

    def export_lines(self, bank_name: str, fmt: str = "jsonl") -> Iterator[str]:
        """Active entries as JSON lines (everything) or ``signal hex`` text (HMA/py-tx style)."""
        if fmt not in ("jsonl", "text"):
            raise BankRefused(
                f"unknown export format {fmt!r} (jsonl, text)", code="bank.bad_format"
            )
        batch: list[EntryInfo] = []
        for e in self.iter_entries(bank_name, status="active"):
            batch.append(e)
            if len(batch) >= _CHUNK:
                yield from self._export_batch(batch, fmt)
                batch = []
        yield from self._export_batch(batch, fmt)

    def _export_batch(self, batch: list[EntryInfo], fmt: str) -> Iterator[str]:
        """Lines for a batch of entries; a vpdq entry's frames are read for the batch at once.
        In text form a vpdq entry is py-tx's ``vpdq <JSON>`` line and, when it has one, a
        ``video_md5 <hex>`` line (py-tx has no video that is both)."""
        video = [e.id for e in batch if has_frames(signal_types().get(e.signal))]
        frames: dict[int, tuple[VpdqFrame, ...]] = {}
        if video:
            with self.db.session() as s:
                frames = read_frames(s, video)
        for e in batch:
            if fmt == "text":
                if e.id in frames:
                    from dignity.video.formats import vpdq_pytx_json

                    yield f"{e.signal} {vpdq_pytx_json(frames[e.id])}"
                    if e.video_md5:
                        yield f"video_md5 {e.video_md5}"
                else:
                    yield f"{e.signal} {e.value}"
            else:
                d = e.to_dict()
                d.pop("withdrawn_at", None)
                if e.id in frames:
                    from dignity.video.formats import frames_to_json

                    d["frames"] = frames_to_json(frames[e.id])
                yield json.dumps(d, separators=(",", ":"))


def _write_frames(
    s: Session,
    clean: dict[tuple[str, str], NewEntry],
    fresh: Sequence[Mapping[str, object]],
    new_ids: list[int],
) -> None:
    """The frames of the new vpdq entries, in the same transaction as the entries."""
    rows: list[dict[str, object]] = []
    for row, eid in zip(fresh, new_ids, strict=True):
        item = clean[(str(row["signal"]), str(row["value"]))]
        rows += [
            {
                "entry_id": eid,
                "position": pos,
                "frame_number": f.frame_number,
                "timestamp": f.timestamp,
                "pdq": f.pdq_hex,
                "quality": f.quality,
                "trimmed_pdq": f.trimmed[:32].hex() if f.trimmed else None,
            }
            for pos, f in enumerate(item.frames)
        ]
        if len(rows) >= _WRITE_BATCH:
            s.execute(insert(EntryFrame), rows)
            rows = []
    if rows:
        s.execute(insert(EntryFrame), rows)


def read_frames(s: Session | Any, entry_ids: Sequence[int]) -> dict[int, tuple[VpdqFrame, ...]]:
    """The frames of the given entries (a session or a connection), by entry id, in order."""
    from dignity.video.vpdq import VpdqFrame

    out: dict[int, list[VpdqFrame]] = {}
    for i in range(0, len(entry_ids), _CHUNK):
        for eid, number, timestamp, pdq, quality in s.execute(
            select(
                EntryFrame.entry_id,
                EntryFrame.frame_number,
                EntryFrame.timestamp,
                EntryFrame.pdq,
                EntryFrame.quality,
            )
            .where(EntryFrame.entry_id.in_(entry_ids[i : i + _CHUNK]))
            .order_by(EntryFrame.entry_id, EntryFrame.position)
        ).all():
            out.setdefault(int(eid), []).append(
                VpdqFrame(int(number), float(timestamp), str(pdq), int(quality))
            )
    return {eid: tuple(frames) for eid, frames in out.items()}


def _guess_signal(value: str) -> str:
    n = len(value.strip())
    return "md5" if n == SIGNAL_TYPES["md5"] else "pdq"
