"""vPDQ serialisations: Meta's hash-file text, python-threatexchange's JSON, and dignity's JSON.

A video's vPDQ is a sequence of :class:`~dignity.video.vpdq.VpdqFrame`. Three forms travel:

- **text**, one line per frame ``frame_number,quality,pdq_hex,timestamp``: what Meta's ``vpdq``
  hasher writes (``vpdq/cpp``'s hash files, and the reference hashes in ``shared/fixtures/vpdq``),
  timestamps in seconds with 3 decimals. :func:`vpdq_text` writes it; it is also the canonical
  form a ``vpdq`` bank entry's value is the SHA-256 of (:func:`vpdq_digest`), so the same frames
  give the same entry whoever hashed them. :func:`parse_vpdq_text` also reads lines in the order
  ``frame_number,pdq_hex,quality,timestamp`` (the column holding 64 hex digits is the hash).
- **py-tx JSON**, python-threatexchange's vPDQ extension (``VideoVPDQSignal``, the form HMA stores
  and its ``/m/lookup`` takes): a JSON list of ``"pdq_hex,quality,timestamp"`` strings, without
  frame numbers (:func:`vpdq_pytx_json`; :func:`parse_vpdq_text` reads it, numbering frames in
  order).
- **dignity JSON**, the CLI's and API's ``vpdq`` field: ``[{frame, timestamp, pdq, quality}]``
  (:func:`frames_to_json` / :func:`frames_from_json`).

Every reader checks each frame (64 hex digits, quality 0-100, timestamp >= 0 and finite, frame
numbers increasing) and raises ``HashError`` (``hash.malformed``) on bad input, as the other hash
signals do.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dignity.errors import HashError
from dignity.video.vpdq import VpdqFrame

SIGNAL = "vpdq"
# More frames than this in one entry is not a video dignity could have hashed (3 h at 60 fps is
# 648,000) and would overflow the engine's frame ids (entry id << 20 | frame position).
MAX_FRAMES = 1 << 20
_HEX64 = re.compile(r"\A[0-9a-fA-F]{64}\Z")


def _malformed(message: str, **detail: Any) -> HashError:
    return HashError(message, code="hash.malformed", signal=SIGNAL, **detail)


def _frame(
    number: object, pdq: object, quality: object, timestamp: object, where: str
) -> VpdqFrame:
    try:
        n = int(str(number).strip())
        q = int(str(quality).strip())
        t = float(str(timestamp).strip())
    except ValueError as exc:
        raise _malformed(f"{where}: frame number, quality and timestamp must be numbers") from exc
    hex_ = str(pdq).strip()
    if not _HEX64.match(hex_):
        raise _malformed(f"{where}: a frame's pdq is 64 hex digits; got {hex_[:80]!r}")
    if not 0 <= q <= 100:
        raise _malformed(f"{where}: quality must be 0-100; got {q}")
    if n < 0:
        raise _malformed(f"{where}: frame number must be >= 0; got {n}")
    if not math.isfinite(t) or t < 0:
        raise _malformed(f"{where}: timestamp must be a finite number >= 0; got {t}")
    return VpdqFrame(frame_number=n, timestamp=round(t, 3), pdq_hex=hex_.lower(), quality=q)


def _checked(frames: Sequence[VpdqFrame]) -> tuple[VpdqFrame, ...]:
    if not frames:
        raise _malformed("a vpdq hash has at least one frame")
    if len(frames) > MAX_FRAMES:
        raise _malformed(f"a vpdq hash has at most {MAX_FRAMES} frames; got {len(frames)}")
    last = -1
    for f in frames:
        if f.frame_number <= last:
            raise _malformed(
                f"frame numbers must increase; {f.frame_number} follows {last}",
                frame=f.frame_number,
            )
        last = f.frame_number
    return tuple(frames)


def vpdq_text(frames: Iterable[VpdqFrame]) -> str:
    """Meta's hash-file text: ``frame_number,quality,pdq_hex,timestamp`` lines, each ending in
    a newline, timestamps with 3 decimals."""
    return "".join(
        f"{f.frame_number},{f.quality},{f.pdq_hex.lower()},{f.timestamp:.3f}\n" for f in frames
    )


def vpdq_digest(frames: Iterable[VpdqFrame]) -> str:
    """SHA-256 hex of :func:`vpdq_text`: the value of a ``vpdq`` bank entry."""
    return hashlib.sha256(vpdq_text(frames).encode("ascii")).hexdigest()


def vpdq_pytx_json(frames: Iterable[VpdqFrame]) -> str:
    """python-threatexchange's ``VideoVPDQSignal`` string: a JSON list of
    ``"pdq_hex,quality,timestamp"`` (HMA stores and exchanges this form)."""
    return json.dumps([f"{f.pdq_hex},{f.quality},{f.timestamp:.3f}" for f in frames])


def parse_vpdq_text(text: str) -> tuple[VpdqFrame, ...]:
    """Frames from Meta's hash-file text (either column order), or from py-tx's JSON list.

    Blank lines and ``#`` comments are skipped. Raises ``HashError`` (``hash.malformed``).
    """
    body = text.strip()
    if body.startswith("["):
        return _parse_pytx(body)
    frames: list[VpdqFrame] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(",")
        where = f"vpdq line {lineno}"
        if len(parts) != 4:
            raise _malformed(f"{where}: expected frame_number,quality,pdq_hex,timestamp")
        number, a, b, timestamp = parts
        # Meta writes quality before the hash; the other order is accepted too.
        pdq, quality = (b, a) if _HEX64.match(b.strip()) else (a, b)
        frames.append(_frame(number, pdq, quality, timestamp, where))
    return _checked(frames)


def _parse_pytx(body: str) -> tuple[VpdqFrame, ...]:
    try:
        items = json.loads(body)
    except ValueError as exc:
        raise _malformed("vpdq JSON could not be parsed") from exc
    if not isinstance(items, list):
        raise _malformed("vpdq JSON must be a list")
    if items and isinstance(items[0], Mapping):
        return frames_from_json(items)
    frames: list[VpdqFrame] = []
    for i, item in enumerate(items):
        parts = str(item).split(",") if isinstance(item, str) else []
        if len(parts) != 3:
            raise _malformed(f"vpdq item {i}: expected 'pdq_hex,quality,timestamp'")
        frames.append(_frame(i, parts[0], parts[1], parts[2], f"vpdq item {i}"))
    return _checked(frames)


def frames_to_json(frames: Iterable[VpdqFrame]) -> list[dict[str, object]]:
    """dignity's JSON form: ``[{frame, timestamp, pdq, quality}]``."""
    return [
        {
            "frame": f.frame_number,
            "timestamp": round(f.timestamp, 3),
            "pdq": f.pdq_hex,
            "quality": f.quality,
        }
        for f in frames
    ]


def frames_from_json(items: Sequence[object]) -> tuple[VpdqFrame, ...]:
    """Frames from dignity's JSON form (``frame`` may be left out: frames are then numbered in
    order). Raises ``HashError`` (``hash.malformed``)."""
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        raise _malformed("vpdq must be a list of {frame, timestamp, pdq, quality}")
    frames: list[VpdqFrame] = []
    for i, item in enumerate(items):
        where = f"vpdq item {i}"
        if not isinstance(item, Mapping):
            raise _malformed(f"{where}: expected an object {{frame, timestamp, pdq, quality}}")
        try:
            frames.append(
                _frame(
                    item.get("frame", i),
                    item["pdq"],
                    item.get("quality", 100),
                    item.get("timestamp", 0.0 if i == 0 else None),
                    where,
                )
            )
        except KeyError as exc:
            raise _malformed(f"{where}: missing {exc.args[0]!r}") from exc
    return _checked(frames)
