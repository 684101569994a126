"""The scan log: the hashes and a compact decision summary of every ``/v1/scan``, never the media.

It is what makes the TAKE IT DOWN Act's "known identical copies" findable after a takedown: a
removal sweeps the log for earlier scans of other content with the same bytes (SHA-256 or MD5)
or a near PDQ hash (:meth:`ScanLog.find_copies`), its own or that of a picture found inside it
(``scan_regions``: a screenshot's photo, a collage's cell; see :mod:`dignity.regions`).
:meth:`ScanLog.record` writes one row per scan (and one per region) in one short transaction
(plus a ``review_items`` row, kind ``scan``, when the policy said ``review``); its detail
JSON is capped at :data:`MAX_DETAIL` bytes so the log stays small at millions of rows. The
PDQ part of a sweep streams the log in id order, a batch at a time, and compares each batch
with the removed hashes in the compiled kernel of :class:`~dignity.matching.index.MihIndex`,
so memory stays flat whatever the log's size.
:meth:`ScanLog.purge` applies ``scan_log_retention_days`` but keeps every row that a removal or
an open review item still refers to.

Videos (``analysis.video``) are logged by their MD5 and SHA-256 like any file, and their vPDQ
frames go to ``scan_video`` packed (:class:`VideoFrames`: 41 bytes a frame, plus 224 for the
dihedral variants when the scan computed them). A sweep for a video compares its frames with
every logged video's, a bounded page of videos at a time, in the same compiled kernel, and turns
the near pairs (distance <= 31, quality >= 50: HMA's vPDQ thresholds) into shared segments with
:func:`dignity.video.compare.compare`: three consecutive seconds of one stretch of footage make a
``copy_video``, even as a clip inside a longer compilation, and mirrored or turned copies match
through the dihedral variants of whichever side has them. A removed *image* finds the logged
videos that show it (``copy_frame``, with the frame's time), and a removed video the images
that show one of its frames (``copy_still``).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from sqlalchemy import CursorResult, and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from dignity import audit
from dignity.errors import RequestRefused, ScanNotFound, StorageError
from dignity.hashing.pdq import DIHEDRAL_NAMES, PdqHash
from dignity.settings import Settings
from dignity.storage.db import Database
from dignity.storage.models import Entry
from dignity.storage.types import json_default
from dignity.takedown.clock import Clock, SystemClock, utc
from dignity.takedown.models import Removal, ReviewItem, ScanRecord, ScanRegion, ScanVideo
from dignity.video.compare import FramePair, Segment, compare

if TYPE_CHECKING:
    from dignity.hashing.signals import ImageHashes, RegionHash
    from dignity.keys import KeyInfo
    from dignity.scanning import ScanResult
    from dignity.video.vpdq import VpdqFrame, VpdqResult

MAX_DETAIL = 4096  # bytes of detail JSON per scan: the evidence panel's needs, no more
MAX_REF = 255  # content_id / uploader: the columns' width
SWEEP_BATCH = 50_000  # scan-log ids per PDQ comparison window
_MAX_MATCHES = 20
_MAX_REASONS = 10
_MAX_EVIDENCE = 5
_SHORT = 160  # characters kept of a free-text value in the detail
_PURGE_BATCH = 5000
# A logged video's frames: frame number, timestamp in milliseconds, PDQ quality, PDQ.
FRAME = struct.Struct("<IIB32s")
# The same layout for numpy: a page of logged videos unpacks without a Python loop per frame.
_FRAME_DTYPE = np.dtype([("number", "<u4"), ("ms", "<u4"), ("quality", "u1"), ("pdq", "u1", (32,))])
_NO_FRAMES = np.zeros(0, dtype=_FRAME_DTYPE)
VARIANTS = 8  # dihedral variants of a PDQ hash, the original first (DIHEDRAL_NAMES order)
VIDEO_SWEEP_PAGE = 256  # logged videos per comparison (up to ~4 MB of frames at 1 h each)
VIDEO_MAX_DISTANCE = 31  # HMA's vPDQ frame threshold
VIDEO_MIN_QUALITY = 50  # HMA's vPDQ frame quality floor: flat frames match everything
VIDEO_MIN_SEGMENT_S = 3.0  # consecutive seconds of shared footage that make a copy
VIDEO_WHOLE_PERCENT = 80.0  # HMA's rule, both ways: whole copies too short for a segment
_MAX_SEGMENTS = 5
# The variant that undoes a variant (rotating 90 one way is undone by 270; flips by themselves).
_INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)
# The review queue's priorities (0 urgent .. 3 low) from the policy's 0-100 scale, where the
# policy's names are urgent 100, high 75, normal 50, low 25.
_QUEUE_STEPS = ((100, 0), (75, 1), (50, 2))


def queue_priority(decision_priority: int) -> int:
    """The review queue's priority (0 urgent, 1 high, 2 normal, 3 low) of a policy priority."""
    for floor, level in _QUEUE_STEPS:
        if decision_priority >= floor:
            return level
    return 3


def check_ref(value: str | None, what: str) -> str | None:
    """A platform identifier (``content_id``, ``uploader``): None, or 1-255 printable
    characters; anything else raises ``request.bad_<what>`` (422)."""
    if value is None:
        return None
    if not value or len(value) > MAX_REF or not value.isprintable():
        raise RequestRefused(
            f"{what} must be 1 to {MAX_REF} printable characters",
            code=f"request.bad_{what}",
            field=what,
        )
    return value


def _short(value: Any) -> Any:
    """A value for the detail: numbers and short strings as they are, the rest summarised."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, default=json_default, sort_keys=True)
    return text if len(text) <= _SHORT else text[: _SHORT - 1] + "…"


def compact_detail(result: ScanResult, origins: Mapping[int, str] | None = None) -> dict[str, Any]:
    """The evidence a reviewer and a statement of reasons need from one scan: matches (bank,
    distance, signal, origin), the decision (reasons, priority, labels) and the key signals
    (nudity score, AI evidence sources, derivative_of, C2PA state); at most MAX_DETAIL bytes."""
    origins = origins or {}
    signals = result.analysis.signals
    decision = result.decision
    matches = [_match_detail(m, origins) for m in result.outcome.matches[:_MAX_MATCHES]]
    evidence = [
        {"source": str(e.get("source")), "detail": _short(e.get("detail"))}
        for e in (signals.get("ai_evidence") or [])
        if isinstance(e, Mapping)
    ][:_MAX_EVIDENCE]
    derivative = signals.get("derivative_of")
    c2pa = signals.get("c2pa")
    generator = signals.get("generator")
    nudity = signals.get("nudity")
    detail: dict[str, Any] = {
        "matches": matches,
        "signals": {
            "nudity": nudity if isinstance(nudity, int | float) else None,
            "ai_evidence": evidence,
            "derivative_of": (
                {
                    k: derivative.get(k)
                    for k in ("source_id", "confidence", "matched_area", "region")
                    if k in derivative
                }
                if isinstance(derivative, Mapping)
                else None
            ),
            "c2pa": c2pa.get("state") if isinstance(c2pa, Mapping) else None,
            "generator": (
                _short(generator.get("generator")) if isinstance(generator, Mapping) else None
            ),
        },
        "decision": {
            "action": decision.action,
            "priority": decision.priority,
            "rules": list(decision.rules)[:_MAX_REASONS],
            "labels": list(decision.labels)[:_MAX_REASONS],
            "reasons": [
                {"rule": r.rule, "signal": r.signal, "value": _short(r.value)}
                for r in decision.reasons[:_MAX_REASONS]
            ],
            "policy": _short(decision.policy),
            # What a statement of reasons quotes: the policy's words for the facts and grounds.
            "statement": {
                "facts": [_short(f) for f in (decision.statement.get("facts") or [])[:3]],
                "legal_ground": _short(decision.statement.get("legal_ground")),
                "contractual_ground": _short(decision.statement.get("contractual_ground")),
            },
        },
        "media": {
            "width": result.analysis.hashes.width,
            "height": result.analysis.hashes.height,
            "format": result.analysis.hashes.format,
        },
    }
    video = result.analysis.video
    if video is not None:
        detail["media"] = {
            "kind": "video",
            "width": video.width,
            "height": video.height,
            "duration": round(video.duration, 3),
            "frames": len(video.frames),
        }
    return fit(detail)


def _match_detail(m: Any, origins: Mapping[int, str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "bank": m.bank,
        "entry_id": m.entry_id,
        "signal": m.signal,
        "distance": m.distance,
        "purpose": m.purpose,
        "origin": origins.get(m.entry_id),
    }
    # A video's matches (video-core's Match fields): where in the video, and how much of it.
    for name in ("timestamp", "query_match_percent", "compared_match_percent"):
        value = getattr(m, name, None)
        if value is not None:
            out[name] = value
    segments = getattr(m, "segments", ())
    if segments:
        out["segments"] = [seg.to_dict() for seg in segments[:_MAX_SEGMENTS]]
    # Where a picture found inside the upload is: the review panel outlines it.
    region = getattr(m, "region", None)
    if region is not None:
        out["region"] = region.to_dict()
    return out


def fit(detail: dict[str, Any], limit: int = MAX_DETAIL) -> dict[str, Any]:
    """Shrink ``detail`` step by step (least useful first) until its JSON fits ``limit``."""
    decision: dict[str, Any] = detail.get("decision") or {}
    signals: dict[str, Any] = detail.get("signals") or {}

    def size() -> int:
        return len(dumps(detail).encode("utf-8"))

    def cut(where: dict[str, Any], key: str, keep: int) -> None:
        if isinstance(where.get(key), list):
            where[key] = where[key][:keep]

    steps = (
        lambda: [r.pop("value", None) for r in decision.get("reasons") or []],
        lambda: cut(decision.get("statement") or {}, "facts", 0),
        lambda: cut(signals, "ai_evidence", 1),
        lambda: [m.pop("segments", None) for m in detail.get("matches") or []],
        lambda: cut(detail, "matches", 3),
        lambda: cut(decision, "reasons", 3),
        lambda: cut(detail, "matches", 1),
    )
    for step in steps:
        if size() <= limit:
            return detail
        step()
    if size() > limit:  # only pathological plug-in output gets here: keep the decision
        detail = {"decision": {"action": decision.get("action")}, "truncated": True}
    return detail


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, default=json_default)


@dataclass(frozen=True)
class VideoFrames:
    """A video's sampled frames as the scan log keeps them: numbers, times (s), qualities, the
    PDQ hashes back to back (32 bytes each), and optionally each frame's 7 other dihedral
    variants back to back (7 x 32 bytes a frame) and each frame's PDQ with the video's
    letterbox bars trimmed (32 bytes a frame; :mod:`dignity.video.bars`)."""

    numbers: tuple[int, ...]
    times: tuple[float, ...]
    qualities: tuple[int, ...]
    hashes: bytes
    dihedral: bytes | None = None
    duration: float = 0.0
    trimmed: bytes | None = None

    @property
    def count(self) -> int:
        return len(self.times)

    def vpdq_frames(self) -> tuple[VpdqFrame, ...]:
        """The frames as vPDQ frames (without variants; with their letterbox-trimmed hash
        where the video has bars), e.g. to bank a removed video."""
        from dignity.video.vpdq import VpdqFrame

        cut = self.trimmed
        return tuple(
            VpdqFrame(
                n,
                t,
                self.hashes[32 * i : 32 * (i + 1)].hex(),
                q,
                trimmed=cut[32 * i : 32 * (i + 1)] if cut else None,
            )
            for i, (n, t, q) in enumerate(
                zip(self.numbers, self.times, self.qualities, strict=True)
            )
        )

    @classmethod
    def from_vpdq(cls, result: VpdqResult) -> VideoFrames:
        """The frames of a :class:`~dignity.video.vpdq.VpdqResult`; its dihedral variants
        are kept when every frame has them (``vpdq_hash(..., dihedral=True)``)."""
        frames = result.frames
        packed = [getattr(f, "dihedral", None) for f in frames]
        whole = bool(frames) and all(
            isinstance(p, bytes) and len(p) == VARIANTS * 32 for p in packed
        )
        cut = [getattr(f, "trimmed", None) for f in frames]
        trimmed = bool(frames) and all(isinstance(t, bytes) and len(t) >= 32 for t in cut)
        return cls(
            numbers=tuple(int(f.frame_number) for f in frames),
            times=tuple(round(float(f.timestamp), 3) for f in frames),
            qualities=tuple(int(f.quality) for f in frames),
            hashes=bytes.fromhex("".join(f.pdq_hex for f in frames)),
            dihedral=b"".join(cast(bytes, p)[32:] for p in packed) if whole else None,
            duration=float(result.duration),
            trimmed=b"".join(cast(bytes, t)[:32] for t in cut) if trimmed else None,
        )

    def pack(self) -> bytes:
        return b"".join(
            FRAME.pack(n, max(0, round(t * 1000)), q, self.hashes[i * 32 : i * 32 + 32])
            for i, (n, t, q) in enumerate(
                zip(self.numbers, self.times, self.qualities, strict=True)
            )
        )

    @classmethod
    def unpack(
        cls, frames: bytes, dihedral: bytes | None, duration: float, trimmed: bytes | None = None
    ) -> VideoFrames:
        rows = np.frombuffer(frames, dtype=_FRAME_DTYPE) if frames else _NO_FRAMES
        n = int(rows.shape[0])
        if dihedral is not None and len(dihedral) != n * (VARIANTS - 1) * 32:
            dihedral = None  # a damaged row: the originals still sweep
        if trimmed is not None and len(trimmed) != n * 32:
            trimmed = None
        return cls(
            numbers=tuple(rows["number"].tolist()),
            times=tuple((rows["ms"] / 1000.0).tolist()),
            qualities=tuple(rows["quality"].tolist()),
            hashes=np.ascontiguousarray(rows["pdq"]).tobytes(),
            dihedral=dihedral,
            duration=duration,
            trimmed=trimmed,
        )

    @property
    def step(self) -> float:
        """The sampling interval in seconds (the median gap between frames; 1 s by default)."""
        gaps = sorted(b - a for a, b in zip(self.times, self.times[1:], strict=False) if b > a)
        return gaps[len(gaps) // 2] if gaps else 1.0

    def usable(self) -> np.ndarray[Any, np.dtype[np.intp]]:
        """Indices of the frames good enough to compare (quality >= VIDEO_MIN_QUALITY)."""
        return np.flatnonzero(np.asarray(self.qualities, dtype=np.int32) >= VIDEO_MIN_QUALITY)

    def rows(self) -> np.ndarray[Any, np.dtype[np.uint8]]:
        """The original hashes as an (n, 32) array."""
        return np.frombuffer(self.hashes, dtype=np.uint8).reshape(-1, 32)

    def variant_rows(self) -> np.ndarray[Any, np.dtype[np.uint8]] | None:
        """All 8 variants as an (n, 8, 32) array, the original first; None without them."""
        if self.dihedral is None:
            return None
        rest = np.frombuffer(self.dihedral, dtype=np.uint8).reshape(-1, VARIANTS - 1, 32)
        return np.concatenate([self.rows()[:, None, :], rest], axis=1)


@dataclass(frozen=True)
class HashSet:
    """The hashes of one piece of content, as a sweep's query (``video``: a video's frames)."""

    pdq: str | None
    md5: str
    sha256: str
    pdq_quality: int | None = None
    video: VideoFrames | None = None
    # The image's 7 other dihedral PDQ hashes back to back (DIHEDRAL_NAMES order), when known.
    pdq_dihedral: bytes | None = None


@dataclass(frozen=True)
class Copy:
    """A scan-log row found by a sweep: another piece of content with the same or near hashes.

    ``query`` is the index of the :class:`HashSet` it matched; ``reason`` ``copy_exact``
    (distance 0), ``copy_pdq`` (PDQ distance), ``copy_video`` (a video sharing ``segments``
    of footage with a removed video, or matching it whole by HMA's 80% rule; ``orientation``
    says how the copy is turned or mirrored), ``copy_frame`` (a video showing a removed
    image at ``timestamp`` seconds) or ``copy_still`` (an image showing the removed video's
    frame at ``source_timestamp`` seconds)."""

    scan_id: int
    content_id: str
    query: int
    reason: str
    distance: int
    segments: tuple[Segment, ...] = ()
    timestamp: float | None = None
    query_match_percent: float | None = None
    compared_match_percent: float | None = None
    orientation: str | None = None
    source_timestamp: float | None = None
    # Set when the copy is a picture inside that scan (a screenshot, a collage): where it is.
    region: dict[str, int] | None = None

    @property
    def seconds(self) -> float:
        return sum(seg.seconds for seg in self.segments)

    @property
    def rank(self) -> tuple[int, int, float, int]:
        """Which finding of one content id counts: exact before near, then nearer, then more
        shared footage, then older."""
        return (0 if self.reason == "copy_exact" else 1, self.distance, -self.seconds, self.scan_id)

    def evidence(self) -> dict[str, Any]:
        """What a video finding adds to a removal's event and audit record: the matched time
        ranges (``source_*`` in the removed video, ``copy_*`` in this one)."""
        out: dict[str, Any] = {}
        if self.segments:
            out["segments"] = [
                {
                    "source_start": round(seg.query_start, 3),
                    "source_end": round(seg.query_end, 3),
                    "copy_start": round(seg.entry_start, 3),
                    "copy_end": round(seg.entry_end, 3),
                }
                for seg in self.segments[:_MAX_SEGMENTS]
            ]
        if self.timestamp is not None:
            out["timestamp"] = round(self.timestamp, 3)
        if self.source_timestamp is not None:
            out["source_timestamp"] = round(self.source_timestamp, 3)
        if self.query_match_percent is not None:
            out["source_match_percent"] = self.query_match_percent
            out["copy_match_percent"] = self.compared_match_percent
        if self.orientation is not None and self.orientation != "original":
            out["orientation"] = self.orientation
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "scan_id": self.scan_id,
            "content_id": self.content_id,
            "reason": self.reason,
            "distance": self.distance,
            **self.evidence(),
            **({"region": self.region} if self.region is not None else {}),
        }


def _hex_rows(values: Sequence[str]) -> np.ndarray[Any, np.dtype[np.uint8]]:
    return np.frombuffer(bytes.fromhex("".join(values)), dtype=np.uint8).reshape(-1, 32)


class ScanLog:
    """Records scans and finds known copies in them; thread-safe (a session per call)."""

    def __init__(self, db: Database, settings: Settings, clock: Clock | None = None) -> None:
        self.db = db
        self.settings = settings
        self.clock: Clock = clock or SystemClock()

    # -- recording -------------------------------------------------------------------------
    def record(
        self,
        result: ScanResult,
        key: KeyInfo | None,
        *,
        content_id: str | None = None,
        uploader: str | None = None,
        job_id: str | None = None,
        session: Session | None = None,
    ) -> int:
        """Write one scan (and its review item when the decision is ``review``); return its id.

        A queued scan passes its ``job_id`` (the row already written for that job is returned
        instead of a second one) and the job's ``session``, so the row commits with the job's
        end or not at all.

        Raises ``storage.unavailable`` when the write fails, so the scan fails and the platform
        retries: a scan that was answered is always in the log."""
        content_id = check_ref(content_id, "content_id")
        uploader = check_ref(uploader, "uploader")
        origins = self._origins([m.entry_id for m in result.outcome.matches[:_MAX_MATCHES]])
        detail = dumps(compact_detail(result, origins))
        decision = result.decision
        review = queue_priority(decision.priority) if decision.action == "review" else None
        hashes = result.analysis.hashes
        video = result.analysis.video
        return self._insert(
            hashes.pdq.hex if hashes.pdq and video is None else None,
            hashes.pdq.quality if hashes.pdq and video is None else None,
            video.md5 if video is not None else hashes.md5,
            video.sha256 if video is not None else hashes.sha256,
            decision.action,
            detail,
            key_id=key.id if key is not None else None,
            content_id=content_id,
            uploader=uploader,
            review_priority=review,
            video=VideoFrames.from_vpdq(video) if video is not None else None,
            regions=hashes.regions if video is None else (),
            pdq_dihedral=other_orientations(hashes.pdq) if video is None else None,
            job_id=job_id,
            session=session,
        )

    def record_hashes(
        self,
        hashes: ImageHashes,
        *,
        content_id: str,
        uploader: str | None = None,
        decision: str = "fetched",
        detail: Mapping[str, Any] | None = None,
    ) -> int:
        """Log content that was hashed outside ``/v1/scan`` (fetched for a removal), so that it
        is swept like any scan; ``decision`` says why it is there."""
        content_id = cast(str, check_ref(content_id, "content_id"))
        return self._insert(
            hashes.pdq.hex if hashes.pdq else None,
            hashes.pdq.quality if hashes.pdq else None,
            hashes.md5,
            hashes.sha256,
            decision,
            dumps(fit(dict(detail or {"decision": {"action": decision}}))),
            key_id=None,
            content_id=content_id,
            uploader=check_ref(uploader, "uploader"),
            review_priority=None,
            pdq_dihedral=other_orientations(hashes.pdq),
        )

    def record_video(
        self,
        video: VpdqResult,
        *,
        content_id: str,
        uploader: str | None = None,
        decision: str = "fetched",
    ) -> int:
        """Log a video hashed outside ``/v1/scan`` (fetched for a removal) with its frames."""
        content_id = cast(str, check_ref(content_id, "content_id"))
        frames = VideoFrames.from_vpdq(video)
        detail = {
            "decision": {"action": decision},
            "media": {
                "kind": "video",
                "width": video.width,
                "height": video.height,
                "duration": round(video.duration, 3),
                "frames": frames.count,
            },
        }
        return self._insert(
            None,
            None,
            video.md5,
            video.sha256,
            decision,
            dumps(fit(detail)),
            key_id=None,
            content_id=content_id,
            uploader=check_ref(uploader, "uploader"),
            review_priority=None,
            video=frames,
        )

    def _insert(
        self,
        pdq: str | None,
        pdq_quality: int | None,
        md5: str,
        sha256: str,
        action: str,
        detail: str,
        *,
        key_id: int | None,
        content_id: str | None,
        uploader: str | None,
        review_priority: int | None,
        video: VideoFrames | None = None,
        regions: Sequence[RegionHash] = (),
        pdq_dihedral: bytes | None = None,
        job_id: str | None = None,
        session: Session | None = None,
    ) -> int:
        if job_id is not None and session is not None:
            found = self.job_scan(session, job_id)
            if found is not None:
                return found
        now = self.clock.now()
        values = {
            "job_id": job_id,
            "created_at": now,
            "key_id": key_id,
            "content_id": content_id,
            "uploader": uploader,
            "pdq": pdq,
            "pdq_quality": pdq_quality,
            "pdq_dihedral": pdq_dihedral,
            "md5": md5,
            "sha256": sha256,
            "decision": action[:16],
            "detail": detail,
        }
        # A queued scan writes in the transaction that ends its job; /v1/scan in its own.
        own = self.db.session() if session is None else nullcontext(session)
        try:
            with own as s:
                scan_id = int(
                    s.execute(
                        insert(ScanRecord).values(**values).returning(ScanRecord.id)
                    ).scalar_one()
                )
                region_rows = [
                    {
                        "scan_id": scan_id,
                        "pdq": rh.pdq.hex,
                        "pdq_quality": rh.pdq.quality,
                        **rh.region.to_dict(),
                    }
                    for rh in regions
                ]
                if region_rows:
                    s.execute(insert(ScanRegion), region_rows)
                if video is not None:
                    s.execute(
                        insert(ScanVideo).values(
                            scan_id=scan_id,
                            duration=video.duration,
                            frame_count=video.count,
                            frames=video.pack(),
                            dihedral=video.dihedral,
                            trimmed=video.trimmed,
                        )
                    )
                waiting = (
                    self._open_scan_item(s, content_id)
                    if review_priority is not None and content_id is not None
                    else None
                )
                if waiting is not None and review_priority is not None:
                    # The same content is already waiting for a reviewer: one item, not two
                    # (raised to the more urgent priority of the two).
                    s.execute(
                        update(ReviewItem)
                        .where(ReviewItem.id == waiting, ReviewItem.priority > review_priority)
                        .values(priority=review_priority)
                    )
                elif review_priority is not None:
                    s.execute(
                        insert(ReviewItem).values(
                            kind="scan",
                            scan_id=scan_id,
                            priority=review_priority,
                            state="open",
                            note="",
                            created_at=now,
                        )
                    )
                return scan_id
        except SQLAlchemyError as exc:
            raise StorageError(
                f"could not record the scan: {exc.__class__.__name__}", code="storage.unavailable"
            ) from exc

    @staticmethod
    def job_scan(s: Session, job_id: str) -> int | None:
        """The id of the scan a queued job logged, if it did."""
        found = s.scalar(select(ScanRecord.id).where(ScanRecord.job_id == job_id))
        return int(found) if found is not None else None

    @staticmethod
    def _open_scan_item(s: Session, content_id: str) -> int | None:
        """The open review item of an earlier scan of ``content_id``, if one waits."""
        found = s.scalar(
            select(ReviewItem.id)
            .join(ScanRecord, ScanRecord.id == ReviewItem.scan_id)
            .where(
                ScanRecord.content_id == content_id,
                ReviewItem.kind == "scan",
                ReviewItem.state.in_(("open", "deciding")),
            )
            .order_by(ReviewItem.id)
            .limit(1)
        )
        return int(found) if found is not None else None

    def _origins(self, entry_ids: Sequence[int]) -> dict[int, str]:
        """``kind:ref`` of each matched entry (a read on its own connection, before the write:
        an SQLite transaction that reads first could be refused its write)."""
        if not entry_ids:
            return {}
        try:
            with self.db.engine.connect() as conn:
                rows = conn.execute(
                    select(Entry.id, Entry.origin_kind, Entry.origin_ref).where(
                        Entry.id.in_(list(entry_ids))
                    )
                ).all()
        except SQLAlchemyError as exc:
            raise StorageError(
                f"could not read match origins: {exc.__class__.__name__}",
                code="storage.unavailable",
            ) from exc
        return {eid: f"{kind}:{ref}" if ref else kind for eid, kind, ref in rows}

    # -- reading ---------------------------------------------------------------------------
    def get(self, scan_id: int) -> dict[str, Any]:
        """One scan as the review UI shows it (``scan.not_found`` when there is none)."""
        with self.db.session() as s:
            row = s.get(ScanRecord, scan_id)
            if row is None:
                raise ScanNotFound(f"no scan {scan_id}", code="scan.not_found", scan_id=scan_id)
            return scan_dict(row, video_of(s, row.id))

    def latest_for(self, content_id: str) -> dict[str, Any] | None:
        """The newest scan of ``content_id`` (what a takedown item resolves to), or None."""
        with self.db.session() as s:
            row = latest_scan(s, content_id)
            return scan_dict(row, video_of(s, row.id)) if row is not None else None

    # -- sweeping --------------------------------------------------------------------------
    def find_copies(
        self,
        queries: Sequence[HashSet],
        *,
        exclude_content_ids: Iterable[str] = (),
        threshold: int | None = None,
        after_id: int = 0,
        session: Session | None = None,
        stills: bool = True,
    ) -> list[Copy]:
        """Scan-log rows of other content that are copies of ``queries``: equal SHA-256 or MD5
        (``copy_exact``), or PDQ within ``threshold`` (default ``sweep_pdq_threshold``;
        ``copy_pdq``). Rows already removed, rows without a content id and
        ``exclude_content_ids`` are skipped; one result per content id (its closest row).
        PDQ hashes below ``pdq_min_quality`` on either side are not compared: flat images
        have near-identical hashes whatever they show. ``after_id`` limits the search to
        newer rows (a sweep's catch-up inside its transaction). Video queries are compared with
        the logged videos (segments) and, unless ``stills`` is false, their frames with the
        logged images (a walk of the whole log, like the PDQ part)."""
        if not queries:
            return []
        limit = self.settings.sweep_pdq_threshold if threshold is None else threshold
        excluded = set(exclude_content_ids)
        best: dict[str, Copy] = {}

        def keep(found: Copy) -> None:
            if found.content_id in excluded:
                return
            old = best.get(found.content_id)
            if old is None or found.rank < old.rank:
                best[found.content_id] = found

        def run(s: Session) -> None:
            for found in self._exact(s, queries, after_id):
                keep(found)
            for found in self._near(s, queries, limit, after_id, stills=stills):
                keep(found)
            for found in self._videos(s, queries, limit, after_id):
                keep(found)
            for found in self._near_regions(s, queries, limit, after_id):
                keep(found)

        if session is not None:
            run(session)
        else:
            with self.db.session() as s:
                run(s)
        return sorted(best.values(), key=lambda c: (c.query, c.distance, c.scan_id))

    def _exact(self, s: Session, queries: Sequence[HashSet], after_id: int) -> Iterator[Copy]:
        by_sha = {q.sha256: i for i, q in reversed(list(enumerate(queries)))}
        by_md5 = {q.md5: i for i, q in reversed(list(enumerate(queries)))}
        rows = s.execute(
            select(ScanRecord.id, ScanRecord.content_id, ScanRecord.sha256, ScanRecord.md5).where(
                or_(ScanRecord.sha256.in_(list(by_sha)), ScanRecord.md5.in_(list(by_md5))),
                ScanRecord.removed_at.is_(None),
                ScanRecord.content_id.is_not(None),
                ScanRecord.id > after_id,
            )
        )
        for scan_id, content_id, sha, md5 in rows:
            query = by_sha.get(sha, by_md5.get(md5))
            if query is not None:
                yield Copy(int(scan_id), str(content_id), query, "copy_exact", 0)

    def _near(
        self,
        s: Session,
        queries: Sequence[HashSet],
        limit: int,
        after_id: int,
        *,
        stills: bool = True,
    ) -> Iterator[Copy]:
        from dignity.matching.index import MihIndex

        floor = self.settings.pdq_min_quality
        usable = [
            (i, q.pdq)
            for i, q in enumerate(queries)
            if q.pdq is not None and (q.pdq_quality is None or q.pdq_quality >= floor)
        ]
        hashes = [h for _, h in usable if h is not None]
        # Each removed image's rotations and mirror images too, as matching does for uploads:
        # an earlier upload that was turned or mirrored is a known copy (turned_tags: which).
        turned_of: list[int] = []
        turned_tags: list[int] = []
        turned_rows: list[bytes] = []
        for i, _ in usable:
            turned = queries[i].pdq_dihedral
            if turned and len(turned) == 32 * (VARIANTS - 1):
                for k in range(1, VARIANTS):
                    turned_of.append(i)
                    turned_tags.append(k)
                    turned_rows.append(turned[32 * (k - 1) : 32 * k])
        # A removed video's frames find the stills of it posted as images (``copy_still``):
        # index ids past the queries' name (query, frame time) in ``still_of``.
        still_of: list[tuple[int, float]] = []
        still_rows: list[bytes] = []
        for i, q in enumerate(queries):
            if q.video is None or not stills:
                continue
            for k in q.video.usable().tolist():
                if q.video.qualities[k] >= floor:
                    still_of.append((i, q.video.times[k]))
                    still_rows.append(q.video.hashes[k * 32 : k * 32 + 32])
        if not usable and not still_of:
            return
        first_still = len(queries)
        # Index ids: a query's own number for its hash, then one id per still and per turned
        # hash past the queries (an index holds each id once); still_of and turned_of name them.
        first_turned = first_still + len(still_of)
        index_ids = (
            [i for i, _ in usable]
            + list(range(first_still, first_turned))
            + list(range(first_turned, first_turned + len(turned_of)))
        )
        rows = _hex_rows(hashes) if hashes else np.zeros((0, 32), dtype=np.uint8)
        for more in (still_rows, turned_rows):
            if more:
                extra = np.frombuffer(b"".join(more), dtype=np.uint8).reshape(-1, 32)
                rows = np.concatenate([rows, extra])
        # The removed hashes are the (tiny) index; each batch of the log is searched against
        # it with the index's compiled scan, so a batch costs one C call.
        index = MihIndex.from_arrays(
            np.asarray(index_ids, dtype=np.int64),
            np.ascontiguousarray(rows),
            np.zeros(len(index_ids), dtype=np.int32),
            background=False,
        )
        # Windows of ids rather than LIMIT: each batch is an index range on any planner, even
        # on a table whose statistics are stale (a LIMIT query then sorts the whole table).
        # The driver's cursor directly: building ORM rows would cost more than the comparison
        # (3 us a row against 0.3). The statement holds only integers we computed.
        bounds = s.execute(
            select(func.min(ScanRecord.id), func.max(ScanRecord.id)).where(ScanRecord.id > after_id)
        ).one()
        if bounds[0] is None:
            return
        low, high = int(bounds[0]) - 1, int(bounds[1])
        cursor = s.connection().connection.cursor()
        try:
            while low < high:
                top = low + SWEEP_BATCH
                cursor.execute(
                    f"SELECT id, pdq FROM scan_log WHERE id > {low:d} AND id <= {top:d}"
                    " AND pdq IS NOT NULL AND removed_at IS NULL AND content_id IS NOT NULL"
                    f" AND (pdq_quality IS NULL OR pdq_quality >= {int(floor):d})"
                )
                batch = cursor.fetchall()
                low = top
                if not batch:
                    continue
                hits = index.search(_hex_rows([str(row[1]) for row in batch]), limit)
                found = [
                    (int(batch[row_no][0]), int(query), int(dist))
                    for row_no, query, dist in zip(
                        hits.query.tolist(),
                        hits.ids.tolist(),
                        hits.distances.tolist(),
                        strict=True,
                    )
                ]
                if found:
                    ids = {
                        r[0]: r[1]
                        for r in s.execute(
                            select(ScanRecord.id, ScanRecord.content_id).where(
                                ScanRecord.id.in_([f[0] for f in found])
                            )
                        )
                    }
                    for scan_id, query, dist in found:
                        content_id = ids.get(scan_id)
                        if content_id is None:
                            continue
                        if query >= first_turned:
                            j = query - first_turned
                            yield Copy(
                                scan_id,
                                str(content_id),
                                turned_of[j],
                                "copy_pdq",
                                dist,
                                orientation=DIHEDRAL_NAMES[turned_tags[j]],
                            )
                        elif query >= first_still:
                            source, at = still_of[query - first_still]
                            yield Copy(
                                scan_id,
                                str(content_id),
                                source,
                                "copy_still",
                                dist,
                                source_timestamp=at,
                            )
                        else:
                            # Equal PDQ is not equal bytes: exact copies are the digest matches.
                            yield Copy(scan_id, str(content_id), query, "copy_pdq", dist)
        finally:
            cursor.close()

    def _near_regions(
        self, s: Session, queries: Sequence[HashSet], limit: int, after_id: int
    ) -> Iterator[Copy]:
        """PDQ copies among the pictures found inside earlier scans (``scan_regions``): a
        removed picture that was posted inside a screenshot or a collage. Few scans have
        regions that pass the quality floor, so this reads them in batches by region id."""
        from dignity.matching.index import MihIndex

        floor = self.settings.pdq_min_quality
        usable = [
            (i, q.pdq)
            for i, q in enumerate(queries)
            if q.pdq is not None and (q.pdq_quality is None or q.pdq_quality >= floor)
        ]
        if not usable:
            return
        index = MihIndex.from_arrays(
            np.asarray([i for i, _ in usable], dtype=np.int64),
            _hex_rows([h for _, h in usable if h is not None]),
            np.zeros(len(usable), dtype=np.int32),
            background=False,
        )
        last = 0
        while True:
            batch = s.execute(
                select(
                    ScanRegion.id,
                    ScanRegion.pdq,
                    ScanRegion.scan_id,
                    ScanRecord.content_id,
                    ScanRegion.x,
                    ScanRegion.y,
                    ScanRegion.w,
                    ScanRegion.h,
                )
                .join(ScanRecord, ScanRecord.id == ScanRegion.scan_id)
                .where(
                    ScanRegion.id > last,
                    ScanRegion.pdq_quality >= floor,
                    ScanRecord.id > after_id,
                    ScanRecord.removed_at.is_(None),
                    ScanRecord.content_id.is_not(None),
                )
                .order_by(ScanRegion.id)
                .limit(SWEEP_BATCH)
            ).all()
            if not batch:
                return
            last = int(batch[-1][0])
            hits = index.search(_hex_rows([str(row[1]) for row in batch]), limit)
            for row_no, query, dist in zip(
                hits.query.tolist(), hits.ids.tolist(), hits.distances.tolist(), strict=True
            ):
                _, _, scan_id, content_id, x, y, w, h = batch[row_no]
                region = {"x": int(x), "y": int(y), "w": int(w), "h": int(h)}
                yield Copy(
                    int(scan_id), str(content_id), int(query), "copy_pdq", int(dist), region=region
                )

    def _videos(
        self, s: Session, queries: Sequence[HashSet], limit: int, after_id: int
    ) -> Iterator[Copy]:
        """Logged videos that share footage with a video query, or show an image query."""
        from dignity.matching.index import MihIndex

        videos = [
            (i, q.video, _FrameQuery.of(q.video))
            for i, q in enumerate(queries)
            if q.video is not None and q.video.count
        ]
        floor = self.settings.pdq_min_quality
        images = [
            (i, q.pdq)
            for i, q in enumerate(queries)
            if q.video is None
            and q.pdq is not None
            and (q.pdq_quality is None or q.pdq_quality >= floor)
        ]
        image_index = None
        if images:
            image_index = MihIndex.from_arrays(
                np.asarray([i for i, _ in images], dtype=np.int64),
                _hex_rows([h for _, h in images if h is not None]),
                np.zeros(len(images), dtype=np.int32),
                background=False,
            )
        videos = [v for v in videos if v[2] is not None]
        if not videos and image_index is None:
            return
        # A query without its dihedral variants meets turned copies through theirs.
        want_variants = any(v.dihedral is None for _, v, _ in videos)
        for page in _video_pages(s, after_id, with_dihedral=want_variants):
            cands = _Candidates(page)
            if not cands.count:
                continue
            if image_index is not None:
                yield from cands.frames_near(image_index, limit)
            for query_no, video, fq in videos:
                assert fq is not None
                yield from cands.segments(query_no, video, fq)

    def max_id(self, s: Session | None = None) -> int:
        """The newest scan id (0 when the log is empty)."""
        if s is not None:
            return int(s.scalar(select(func.max(ScanRecord.id))) or 0)
        with self.db.session() as own:
            return int(own.scalar(select(func.max(ScanRecord.id))) or 0)

    # -- retention -------------------------------------------------------------------------
    def purge(self, *, now: datetime | None = None) -> int:
        """Delete scans older than ``scan_log_retention_days`` that no removal and no open
        review item refers to; returns how many went. Batched, so a large purge never holds
        the database's write lock for long."""
        cutoff = utc(now or self.clock.now()) - timedelta(
            days=self.settings.scan_log_retention_days
        )
        kept_by_removal = select(Removal.scan_id).where(Removal.scan_id.is_not(None))
        kept_by_review = select(ReviewItem.scan_id).where(
            ReviewItem.scan_id.is_not(None), ReviewItem.state != "decided"
        )

        def batch(s: Session) -> tuple[int, int]:
            ids = list(
                s.scalars(
                    select(ScanRecord.id)
                    .where(
                        and_(
                            ScanRecord.created_at < cutoff,
                            ScanRecord.id.not_in(kept_by_removal),
                            ScanRecord.id.not_in(kept_by_review),
                        )
                    )
                    .order_by(ScanRecord.id)
                    .limit(_PURGE_BATCH)
                )
            )
            if not ids:
                return 0, 0
            gone = s.execute(delete(ScanRecord).where(ScanRecord.id.in_(ids)))
            n = int(cast(CursorResult[Any], gone).rowcount or 0)
            audit.record(
                s, "scanlog.purged", "scan_log", {"rows": n, "first": ids[0], "last": ids[-1]}
            )
            return len(ids), n

        total = 0
        while True:
            found, deleted = self.db.retrying(batch)
            total += deleted
            if found < _PURGE_BATCH:
                return total


@dataclass(frozen=True)
class _FrameQuery:
    """A video query's usable frames as a small index: id = frame index * 8 + variant."""

    index: Any  # MihIndex
    count: int  # usable frames: the percentages' denominator
    variants: bool

    @classmethod
    def of(cls, video: VideoFrames) -> _FrameQuery | None:
        from dignity.matching.index import MihIndex

        usable = video.usable()
        if not usable.size:
            return None
        every = video.variant_rows()
        if every is not None:
            rows = every[usable].reshape(-1, 32)
            ids = (usable[:, None] * VARIANTS + np.arange(VARIANTS)[None, :]).reshape(-1)
        else:
            rows = video.rows()[usable]
            ids = usable * VARIANTS
        if video.trimmed is not None:
            # Trimmed hashes (bars cut off) as the same frames, shifted by the frame count so
            # that ids stay distinct: ``segments`` folds them back.
            cut = np.frombuffer(video.trimmed, dtype=np.uint8).reshape(-1, 32)[usable]
            rows = np.concatenate([rows, cut])
            ids = np.concatenate([ids, (usable + video.count) * VARIANTS])
        index = MihIndex.from_arrays(
            np.ascontiguousarray(ids, dtype=np.int64),
            np.ascontiguousarray(rows),
            np.zeros(len(ids), dtype=np.int32),
            background=False,
        )
        return cls(index, int(usable.size), every is not None)


@dataclass(frozen=True)
class _Logged:
    """A logged video as a page holds it: still packed (most are never unpacked)."""

    scan_id: int
    content_id: str
    frames: bytes
    dihedral: bytes | None
    duration: float
    trimmed: bytes | None = None

    def unpack(self) -> VideoFrames:
        return VideoFrames.unpack(self.frames, self.dihedral, self.duration, self.trimmed)


def _video_pages(s: Session, after_id: int, *, with_dihedral: bool) -> Iterator[list[_Logged]]:
    """Logged videos still up (not removed, with a content id), a page at a time in scan id
    order: keyset pages on the primary key, so each is an index range on any planner."""
    last = after_id
    columns: list[Any] = [
        ScanVideo.scan_id,
        ScanVideo.frames,
        ScanVideo.duration,
        ScanVideo.trimmed,
    ]
    if with_dihedral:
        columns.append(ScanVideo.dihedral)
    while True:
        rows: list[Any] = list(
            s.execute(
                select(*columns)
                .where(ScanVideo.scan_id > last)
                .order_by(ScanVideo.scan_id)
                .limit(VIDEO_SWEEP_PAGE)
            )
        )
        if not rows:
            return
        last = int(rows[-1][0])
        live = {
            int(i): str(c)
            for i, c in s.execute(
                select(ScanRecord.id, ScanRecord.content_id).where(
                    ScanRecord.id.in_([int(r[0]) for r in rows]),
                    ScanRecord.removed_at.is_(None),
                    ScanRecord.content_id.is_not(None),
                )
            )
        }
        yield [
            _Logged(
                int(r[0]),
                live[int(r[0])],
                bytes(r[1]),
                bytes(r[4]) if with_dihedral and r[4] is not None else None,
                float(r[2]),
                bytes(r[3]) if r[3] is not None else None,
            )
            for r in rows
            if int(r[0]) in live
        ]
        if len(rows) < VIDEO_SWEEP_PAGE:
            return


class _Candidates:
    """One page of logged videos' usable frames in one array, for one kernel call a query.

    The page's packed frames are read as one numpy record array (no Python loop per frame or
    per video); a video is unpacked into a :class:`VideoFrames` only when it has a hit."""

    def __init__(self, page: list[_Logged]) -> None:
        self.page = page
        counts = np.asarray([len(v.frames) // FRAME.size for v in page], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        every = np.frombuffer(
            b"".join(
                v.frames[: c * FRAME.size] for v, c in zip(page, counts.tolist(), strict=True)
            ),
            dtype=_FRAME_DTYPE,
        )
        owner = np.repeat(np.arange(len(page), dtype=np.int64), counts)
        frame = np.arange(every.shape[0], dtype=np.int64) - np.repeat(starts, counts)
        keep = every["quality"] >= VIDEO_MIN_QUALITY
        self.owner = owner[keep]
        self.frame = frame[keep]
        self.rows = np.ascontiguousarray(every["pdq"][keep])
        self.usable_counts = np.bincount(self.owner, minlength=len(page)).tolist()
        # Videos logged with letterbox-trimmed hashes add those as more rows of the same
        # frames (after the counts: percentages are over frames, not rows).
        rows, owners, frames = [self.rows], [self.owner], [self.frame]
        for pos, v in enumerate(page):
            n = int(counts[pos])
            if v.trimmed is None or len(v.trimmed) != n * 32:
                continue
            usable = keep[int(starts[pos]) : int(starts[pos]) + n]
            rows.append(np.frombuffer(v.trimmed, dtype=np.uint8).reshape(-1, 32)[usable])
            owners.append(np.full(int(usable.sum()), pos, dtype=np.int64))
            frames.append(np.flatnonzero(usable).astype(np.int64))
        if len(rows) > 1:
            self.rows = np.ascontiguousarray(np.concatenate(rows))
            self.owner = np.concatenate(owners)
            self.frame = np.concatenate(frames)
        self._counts = counts
        self._keep = keep
        self._owner_all = owner
        self._frame_all = frame
        self._unpacked: dict[int, VideoFrames] = {}
        self._variants: tuple[Any, Any, Any, Any] | None = None

    @property
    def count(self) -> int:
        return int(self.rows.shape[0])

    def video(self, pos: int) -> VideoFrames:
        if pos not in self._unpacked:
            self._unpacked[pos] = self.page[pos].unpack()
        return self._unpacked[pos]

    def variants(self) -> tuple[Any, Any, Any, Any]:
        """Owner, frame, variant and hash of the other 7 variants of the candidates' usable
        frames (those that have them)."""
        if self._variants is None:
            per = (VARIANTS - 1) * 32
            has = np.asarray(
                [
                    v.dihedral is not None and len(v.dihedral) == c * per
                    for v, c in zip(self.page, self._counts.tolist(), strict=True)
                ],
                dtype=bool,
            )
            blob = b"".join(
                cast(bytes, v.dihedral) for v, h in zip(self.page, has.tolist(), strict=True) if h
            )
            rows = np.frombuffer(blob, dtype=np.uint8).reshape(-1, VARIANTS - 1, 32)
            mine = has[self._owner_all]  # frames of videos that have variants, in page order
            usable = self._keep[mine]
            rows = rows[usable]
            owners = self._owner_all[mine][usable]
            frames = self._frame_all[mine][usable]
            n = int(owners.shape[0])
            self._variants = (
                np.repeat(owners, VARIANTS - 1),
                np.repeat(frames, VARIANTS - 1),
                np.tile(np.arange(1, VARIANTS, dtype=np.int64), n),
                np.ascontiguousarray(rows.reshape(-1, 32)),
            )
        return self._variants

    def frames_near(self, index: Any, limit: int) -> Iterator[Copy]:
        """Videos with a frame within ``limit`` of a removed image (best frame each)."""
        hits = index.search(self.rows, limit)
        best: dict[tuple[int, int], tuple[int, int]] = {}
        for row, query, dist in zip(
            hits.query.tolist(), hits.ids.tolist(), hits.distances.tolist(), strict=True
        ):
            key = (int(self.owner[row]), int(query))
            if key not in best or dist < best[key][0]:
                best[key] = (int(dist), int(self.frame[row]))
        for (pos, query), (dist, frame) in best.items():
            logged = self.page[pos]
            yield Copy(
                logged.scan_id,
                logged.content_id,
                query,
                "copy_frame",
                dist,
                timestamp=self.video(pos).times[frame],
            )

    def segments(self, query_no: int, video: VideoFrames, fq: _FrameQuery) -> Iterator[Copy]:
        """Videos sharing footage with ``video``, in any of its orientations."""
        pairs: dict[tuple[int, int], list[FramePair]] = {}
        hits = fq.index.search(self.rows, VIDEO_MAX_DISTANCE)
        for row, ident, dist in zip(
            hits.query.tolist(), hits.ids.tolist(), hits.distances.tolist(), strict=True
        ):
            qframe, variant = divmod(int(ident), VARIANTS)
            qframe %= max(1, video.count)  # a trimmed query row: the same frame
            pairs.setdefault((int(self.owner[row]), variant), []).append(
                FramePair(qframe, int(self.frame[row]), int(dist))
            )
        if not fq.variants:
            owner, frame, kind, rows = self.variants()
            if rows.shape[0]:
                hits = fq.index.search(rows, VIDEO_MAX_DISTANCE)
                for row, ident, dist in zip(
                    hits.query.tolist(), hits.ids.tolist(), hits.distances.tolist(), strict=True
                ):
                    # The copy's variant k looks like the original: the copy is turned by
                    # the inverse of k.
                    key = (int(owner[row]), _INVERSE[int(kind[row])])
                    pairs.setdefault(key, []).append(
                        FramePair(
                            int(ident) // VARIANTS % max(1, video.count),
                            int(frame[row]),
                            int(dist),
                        )
                    )
        best: dict[int, Copy] = {}
        step = video.step
        for (pos, variant), found in pairs.items():
            logged, cand = self.page[pos], self.video(pos)
            result = compare(
                video.times,
                cand.times,
                found,
                query_count=fq.count,
                compared_count=self.usable_counts[pos],
                min_segment_seconds=VIDEO_MIN_SEGMENT_S,
                step=step,
            )
            whole = (
                result.query_match_percent >= VIDEO_WHOLE_PERCENT
                and result.compared_match_percent >= VIDEO_WHOLE_PERCENT
            )
            if not result.segments and not whole:
                continue
            copy = Copy(
                logged.scan_id,
                logged.content_id,
                query_no,
                "copy_video",
                result.distance,
                segments=result.segments,
                query_match_percent=result.query_match_percent,
                compared_match_percent=result.compared_match_percent,
                orientation=DIHEDRAL_NAMES[variant],
            )
            old = best.get(pos)
            if old is None or (-copy.seconds, copy.distance) < (-old.seconds, old.distance):
                best[pos] = copy
        yield from best.values()


def latest_scan(s: Session, content_id: str) -> ScanRecord | None:
    """The newest scan of ``content_id``: what a reported content id resolves to."""
    return s.scalars(
        select(ScanRecord)
        .where(ScanRecord.content_id == content_id)
        .order_by(ScanRecord.id.desc())
        .limit(1)
    ).first()


def video_of(s: Session, scan_id: int) -> VideoFrames | None:
    """The logged frames of scan ``scan_id``, or None when it was not a video."""
    row = s.get(ScanVideo, scan_id)
    if row is None:
        return None
    return VideoFrames.unpack(row.frames, row.dihedral, row.duration, row.trimmed)


def hashset_of(s: Session, row: ScanRecord) -> HashSet:
    """A scan-log row as a sweep's query, with its video frames when it is a video."""
    return HashSet(
        row.pdq, row.md5, row.sha256, row.pdq_quality, video_of(s, row.id), row.pdq_dihedral
    )


def other_orientations(pdq: PdqHash | None) -> bytes | None:
    """An image's 7 other dihedral PDQ hashes back to back, when they were computed."""
    if pdq is None or not pdq.dihedral:
        return None
    packed = pdq.query_bytes(dihedral=True)
    return packed[32:] if len(packed) == 32 * VARIANTS else None


def scan_dict(row: ScanRecord, video: VideoFrames | None = None) -> dict[str, Any]:
    try:
        detail = json.loads(row.detail or "{}")
    except ValueError:
        detail = {}
    return {
        "kind": "video" if video is not None else "image",
        "video": (
            {"duration": round(video.duration, 3), "frames": video.count}
            if video is not None
            else None
        ),
        "scan_id": row.id,
        "created_at": row.created_at.isoformat(),
        "content_id": row.content_id,
        "uploader": row.uploader,
        "hashes": {
            "pdq": row.pdq,
            "pdq_quality": row.pdq_quality,
            "md5": row.md5,
            "sha256": row.sha256,
        },
        "decision": row.decision,
        "detail": detail,
        "removed_at": row.removed_at.isoformat() if row.removed_at else None,
    }


__all__ = [
    "MAX_DETAIL",
    "Copy",
    "HashSet",
    "ScanLog",
    "VideoFrames",
    "check_ref",
    "compact_detail",
    "hashset_of",
    "queue_priority",
    "scan_dict",
    "video_of",
]
