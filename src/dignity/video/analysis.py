"""The signals of a video scan, computed in the same pass that hashes it.

:func:`analyze_video` hashes the video (vPDQ with dihedral variants, MD5, SHA-256) and, from
that single decode, keeps a bounded, evenly spread sample of frames (``video_signal_frames``,
16 by default; the sample halves itself as the video goes on, so memory stays flat whatever
the length) turned upright and scaled to at most 512 px. Those frames go to every classifier of
the signal suite (nudity: the highest score is the ``nudity`` signal, so the image rules apply
unchanged, and ``video.nudity`` gives ``max``, ``share`` of sampled frames at or over
``video_nudity_threshold``, and each frame's score) and to edited-derivative detection. What
the file says about itself is read without decoding: a C2PA manifest (MP4/MOV ``uuid`` box,
read by c2pa-python from the stream) and generator metadata in the container's tags (an AI
video tool's name in ``encoder``/``software``/``handler_name``, or a ComfyUI workflow in
``comment`` as its video nodes write it). The signals object has the image scan's keys
(``ai_evidence``, ``c2pa``, ``generator``, ``nudity``, ``classifiers``, ``plugins``,
``derivative_of``) plus ``video``.
"""

from __future__ import annotations

import io
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from dignity.errors import MediaTooLarge
from dignity.media import Media
from dignity.settings import Settings
from dignity.signals.base import ClassifierReport, Evidence
from dignity.signals.runner import plugin_timing as _timing
from dignity.video.decode import DecodedFrame
from dignity.video.vpdq import VpdqFrame, VpdqResult, upright_rgb, vpdq_hash

if TYPE_CHECKING:
    from dignity.derivatives import DerivativeMatcher
    from dignity.signals.runner import SignalSuite

__all__ = [
    "FrameSampler",
    "VideoScan",
    "analyze_video",
    "frames_json",
    "generator_from_tags",
    "hash_video",
    "sync_decode_seconds",
]

# Sampled frames are scaled so that their longer side is at most this: the classifiers
# resize to a few hundred pixels anyway, and derivative detection works at this size.
SAMPLE_SIDE: Final = 512

# C2PA's box for a manifest store in ISO-BMFF (C2PA spec, "Embedding manifests into BMFF").
_C2PA_UUID: Final = bytes.fromhex("d8fec3d61b0e483c92975828877ec481")
_MAX_BOXES: Final = 4096

# AI video tools that name themselves in container tags, as (lowercase prefix, name).
_VIDEO_GENERATORS: Final = (
    ("sora", "OpenAI Sora"),
    ("runway", "Runway"),
    ("gen-3", "Runway"),
    ("pika", "Pika"),
    ("luma dream machine", "Luma Dream Machine"),
    ("dream machine", "Luma Dream Machine"),
    ("kling", "Kling"),
    ("hailuo", "Hailuo (MiniMax)"),
    ("minimax", "Hailuo (MiniMax)"),
    ("google veo", "Google Veo"),
    ("veo", "Google Veo"),
    ("stable video diffusion", "Stable Video Diffusion"),
    ("animatediff", "AnimateDiff"),
    ("comfyui", "ComfyUI"),
    ("hunyuanvideo", "HunyuanVideo"),
    ("wan2", "Wan"),
    ("ltx-video", "LTX-Video"),
    ("deforum", "Deforum"),
    ("invideo ai", "invideo AI"),
    ("synthesia", "Synthesia"),
    ("heygen", "HeyGen"),
)
# Tags whose whole value names the writing tool (a prefix match is safe there).
_TOOL_TAGS: Final = (
    "encoder",
    "encoded_by",
    "software",
    "com.apple.quicktime.software",
    "creation_tool",
    "stream:handler_name",
    "stream:encoder",
)
# Tags that carry free text or JSON (ComfyUI's video nodes write the prompt graph here).
_TEXT_TAGS: Final = ("comment", "description", "synopsis", "title")


@dataclass(frozen=True)
class VideoScan:
    """A video's hashes (:class:`VpdqResult`) and its signals object."""

    video: VpdqResult
    signals: dict[str, Any]


@dataclass
class FrameSampler:
    """Keeps at most ``limit`` frames evenly spread over a stream of unknown length: every
    ``stride``-th frame is kept, and when the sample is full every other kept frame is dropped
    and the stride doubles (``limit`` even keeps the positions aligned)."""

    limit: int
    stride: int = 1
    kept: list[tuple[float, NDArray[np.uint8]]] = field(default_factory=list)
    last: int = -1  # the index offered last

    def wants(self, index: int) -> bool:
        """Whether the frame of this index would be kept if offered now (the stride only
        grows, so a frame it does not want now it never will): the others need no decoding."""
        return index % self.stride == 0

    def offer(self, item: DecodedFrame, timestamp: float) -> None:
        # Positions are the frames' indices, so that frames left undecoded (not wanted)
        # leave the choice as if every frame had been offered.
        position = item.index
        if position <= self.last:
            # Decoding started again from the first frame (a stream too irregular to skip
            # frames in is decoded again in full): so does the sample.
            self.kept.clear()
            self.stride = 1
        self.last = position
        if position % self.stride:
            return
        if len(self.kept) >= self.limit:
            self.kept = self.kept[::2]
            self.stride *= 2
            if position % self.stride:
                return
        self.kept.append((timestamp, upright_rgb(item, SAMPLE_SIDE)))


def analyze_video(
    source: Path | str | bytes | BinaryIO,
    settings: Settings,
    suite: SignalSuite,
    *,
    dihedral: bool = True,
    derivatives: DerivativeMatcher | None = None,
    max_seconds: float | None = None,
    sync: bool = False,
) -> VideoScan:
    """Hash ``source`` and compute its signals (see the module docstring).

    ``max_seconds`` defaults to ``video_max_seconds``; with ``sync`` a video over it is refused
    as ``media.video_too_long_for_sync`` (413: too long to scan inside a request) instead of
    ``media.too_long``. A corrupt or truncated stream is scanned up to the damage and marked
    ``partial``. A BinaryIO source must be seekable; it is closed when this returns.
    """
    _refuse_many_frames(source, settings)
    plugins: list[dict[str, Any]] = []
    evidence: list[dict[str, str]] = []
    signals: dict[str, Any] = {"ai_evidence": evidence}
    stream = _stream(source)
    names = {c.name for c in suite.checks}
    c2pa = next((c for c in suite.checks if c.name == "c2pa"), None)
    if c2pa is not None:
        started = time.perf_counter()
        error = None
        try:
            report = _c2pa_report(c2pa, stream)
        except Exception as exc:  # a hostile box layout must not stop the scan
            error, report = f"{type(exc).__name__}: {exc}", None
        if report is not None:
            signals["c2pa"] = report.data
            evidence.extend(e.to_dict() for e in report.evidence)
        plugins.append(_timing("c2pa", "provenance", c2pa.version, started, error))
    try:
        stream.seek(0)
    except BaseException:
        stream.close()
        raise
    sampler = FrameSampler(max(2, settings.video_signal_frames + settings.video_signal_frames % 2))
    video = hash_video(
        stream,
        settings,
        dihedral=dihedral,
        max_seconds=max_seconds,
        sync=sync,
        on_frame=sampler.offer,
        on_frame_wants=sampler.wants,
    )
    if "generator" in names:
        started = time.perf_counter()
        data, found = generator_from_tags(video.tags)
        signals["generator"] = data
        if found is not None:
            evidence.append(found.to_dict())
        plugins.append(_timing("generator", "provenance", "video-1", started, None))
    frames = sampler.kept[: settings.video_signal_frames]
    signals.update(_classify(suite, frames, settings, plugins))
    signals["derivative_of"] = _derivative(derivatives, frames) if derivatives else None
    signals["plugins"] = plugins
    signals["video"] = {
        "duration_s": round(video.duration, 3),
        "frame_rate": round(video.frame_rate, 3),
        "frames_decoded": video.frames_decoded,
        "frames_hashed": len(video.frames),
        "width": video.width,
        "height": video.height,
        "rotation": video.rotation,
        "container": video.container,
        "partial": video.partial is not None,
        "partial_reason": video.partial,
        "sampled_frames": len(frames),
        "nudity": signals.pop("_nudity_frames", None),
    }
    return VideoScan(video, signals)


def sync_decode_seconds(settings: Settings) -> float:
    """The decode time limit inside a request: under the request's own time limit, so that a
    slow video is answered ``media.decode_timeout`` (413) rather than a bare timeout."""
    return min(settings.video_decode_seconds, 0.8 * settings.request_timeout_s)


def hash_video(
    source: Path | str | bytes | BinaryIO,
    settings: Settings,
    *,
    dihedral: bool = True,
    max_seconds: float | None = None,
    sync: bool = False,
    on_frame: Callable[[DecodedFrame, float], None] | None = None,
    on_frame_wants: Callable[[int], bool] | None = None,
    trim_bars: bool | None = None,
) -> VpdqResult:
    """vPDQ (with dihedral variants), MD5 and SHA-256 of a video under the settings' limits,
    a damaged stream read up to the damage (``partial``). With ``sync`` (inside a request) the
    length limit is ``video_sync_max_seconds`` and going over it is
    ``media.video_too_long_for_sync``, refused from the header when it states the length.
    ``trim_bars``: also each frame's letterbox-trimmed hash (default: with ``dihedral``)."""
    _refuse_many_frames(source, settings)
    limit = settings.video_max_seconds if max_seconds is None else max_seconds
    decode_seconds = settings.video_decode_seconds
    if sync:
        limit = min(limit, settings.video_sync_max_seconds)
        decode_seconds = sync_decode_seconds(settings)
    try:
        return vpdq_hash(
            _stream(source),
            dihedral=dihedral,
            trim_bars=trim_bars,
            max_seconds=limit,
            max_frame_pixels=settings.video_max_pixels,
            max_bytes=settings.video_max_bytes,
            decode_seconds=decode_seconds,
            allow_partial=True,
            on_frame=on_frame,
            on_frame_wants=on_frame_wants,
        )
    except MediaTooLarge as exc:
        if sync and exc.code == "media.too_long":
            raise MediaTooLarge(
                f"the video runs over {limit:.0f} s, the longest scanned inside a request;"
                " longer videos go to the background job route",
                code="media.video_too_long_for_sync",
                limit=limit,
                **{k: v for k, v in exc.detail.items() if k == "seconds"},
            ) from exc
        raise


def frames_json(frames: tuple[VpdqFrame, ...]) -> list[dict[str, Any]]:
    """The contract's JSON for vPDQ frames: ``[{frame, timestamp, pdq, quality}]``."""
    return [
        {
            "frame": f.frame_number,
            "timestamp": round(f.timestamp, 3),
            "pdq": f.pdq_hex,
            "quality": f.quality,
        }
        for f in frames
    ]


def _refuse_many_frames(source: Path | str | bytes | BinaryIO, settings: Settings) -> None:
    """A GIF or WebP animation in memory over ``max_frames`` frames is refused before FFmpeg
    reads it (a 1M-frame GIF is 12 MB and took seconds); the walk stops one past the limit."""
    from dignity.media import count_frames, too_many_frames

    if isinstance(source, io.BytesIO):
        with source.getbuffer() as view:  # no copy of the upload
            walked = count_frames(view, settings.max_frames + 1)
    elif isinstance(source, bytes):
        walked = count_frames(source, settings.max_frames + 1)
    else:
        return
    if walked is not None and walked[0] > settings.max_frames:
        raise too_many_frames(settings.max_frames)


def _stream(source: Path | str | bytes | BinaryIO) -> BinaryIO:
    if isinstance(source, bytes):
        return io.BytesIO(source)
    if isinstance(source, (str, Path)):
        return open(source, "rb")  # closed by vpdq_hash
    return source


# -- provenance -------------------------------------------------------------------------


def _c2pa_report(check: Any, stream: BinaryIO) -> Any:
    """The c2pa check's report for an ISO-BMFF file holding a C2PA ``uuid`` box, a "none"
    report for any other ISO-BMFF file, None for other containers (c2pa does not read them)."""
    from dignity.signals.base import ProvenanceReport

    brand = _bmff_c2pa(stream)
    if brand is None:
        return None
    if not brand:
        return ProvenanceReport(
            data={
                "state": "none",
                "claim_generator": None,
                "digital_source_types": [],
                "validation_codes": [],
            }
        )
    stream.seek(0)
    reader = getattr(check, "check_stream", None)
    if reader is None:  # a third-party check under the same name: it reads images only
        return None
    return reader("video/mp4", stream)


def _bmff_c2pa(stream: BinaryIO) -> bool | None:
    """Walk an ISO-BMFF file's top-level boxes (seeking, never reading payloads): True when
    one is C2PA's ``uuid`` box, False when there is none, None when this is not ISO-BMFF."""
    stream.seek(0)
    head = stream.read(8)
    if len(head) < 8 or head[4:8] not in (b"ftyp", b"moov", b"mdat", b"free", b"wide"):
        return None
    stream.seek(0)
    for _ in range(_MAX_BOXES):
        start = stream.tell()
        header = stream.read(8)
        if len(header) < 8:
            return False
        size, kind = struct.unpack(">I4s", header)
        length = 8
        if size == 1:
            big = stream.read(8)
            if len(big) < 8:
                return False
            (size,) = struct.unpack(">Q", big)
            length = 16
        if kind == b"uuid" and stream.read(16) == _C2PA_UUID:
            return True
        if size == 0 or size < length:  # to the end of the file, or malformed
            return False
        stream.seek(start + size)
    return False


def generator_from_tags(tags: Mapping[str, str]) -> tuple[dict[str, Any], Evidence | None]:
    """``signals.generator`` for a video from its container and stream tags: an AI video tool
    named by a tool tag (prefix match, as for an image's Software tag), or a ComfyUI prompt
    graph in a text tag (its video nodes save the workflow as the ``comment``)."""
    from dignity.signals import generators

    data: dict[str, Any] = {"generator": None, "field": None, "prompt_sha256": None}
    for key in _TOOL_TAGS:
        value = tags.get(key)
        name = _tool_name(value) if value else None
        if name is not None:
            data.update(generator=name, field=f"video:{key}")
            return data, Evidence("metadata", f"video tag {key!r} names the generator {name}")
    for key in _TEXT_TAGS:
        value = tags.get(key)
        if not value:
            continue
        parsed = _json(value)
        found = None
        if parsed is not None:
            try:
                found = generators._classify_json(parsed)
            except Exception:  # garbage in a hostile tag is no evidence and no error
                found = None
        if found is None:
            found = _prose_tool(value)
        if found is not None:
            tool, prompt = found
            data.update(
                generator=tool,
                field=f"video:{key}",
                prompt_sha256=generators._prompt_sha256(prompt),
            )
            return data, Evidence("metadata", f"video tag {key!r} written by {tool}")
    return data, None


def _tool_name(value: str) -> str | None:
    from dignity.signals import generators

    return generators.tool_by_prefix(value, _VIDEO_GENERATORS)  # "Kling 1.6" yes, "Pikachu" no


def _prose_tool(value: str) -> tuple[str, str | None] | None:
    """ "Generated by Runway Gen-3", "Made with Sora": the tool after such a phrase."""
    lowered = value[:2048].lower()
    for phrase in ("generated by ", "generated with ", "made with ", "created with "):
        at = lowered.find(phrase)
        if at >= 0:
            name = _tool_name(lowered[at + len(phrase) :])
            if name is not None:
                return name, None
    return None


def _json(text: str) -> Any:
    stripped = text.strip()
    if not stripped.startswith("{") or len(stripped) > 1024 * 1024:
        return None
    from dignity.text import parse_json

    try:
        return parse_json(stripped)
    except Exception:
        return None


# -- pictures ---------------------------------------------------------------------------


def _frame_media(pixels: NDArray[np.uint8]) -> Media:
    image = Image.fromarray(pixels, "RGB")
    return Media(
        image=image,
        width=image.width,
        height=image.height,
        format="VIDEO_FRAME",
        mode="RGB",
        orientation=1,
        frames=1,
        reduced=False,
    )


def _classify(
    suite: SignalSuite,
    frames: list[tuple[float, NDArray[np.uint8]]],
    settings: Settings,
    plugins: list[dict[str, Any]],
) -> dict[str, Any]:
    """Each classifier over the sampled frames: the signal is the highest frame score (as two
    models on one signal keep the higher); nudity's per-frame detail goes to ``video``."""
    out: dict[str, Any] = {}
    classifiers: dict[str, Any] = {}
    media = [(t, _frame_media(p)) for t, p in frames]
    for clf in suite.classifiers:
        started = time.perf_counter()
        error = None
        scores: list[tuple[float, float]] = []
        try:
            for timestamp, item in media:
                got = clf.classify(item)
                if not isinstance(got, ClassifierReport):
                    raise TypeError(f"classify() returned {type(got).__name__}")
                if got.score is not None:
                    score = float(got.score)
                    if not 0.0 <= score <= 1.0:
                        raise ValueError(f"score {got.score!r} is outside [0, 1]")
                    scores.append((timestamp, round(score, 4)))
        except Exception as exc:  # a broken plug-in must not stop the scan
            error = f"{type(exc).__name__}: {exc}"
            scores = []
        best = max((s for _, s in scores), default=None)
        classifiers[clf.name] = {"signal": clf.signal, "score": best, "frames": len(scores)}
        prior = out.get(clf.signal)
        if best is not None and (prior is None or best > prior):
            out[clf.signal] = best
            if clf.signal == "nudity":
                threshold = settings.video_nudity_threshold
                over = sum(1 for _, s in scores if s >= threshold)
                out["_nudity_frames"] = {
                    "max": best,
                    "share": round(over / len(scores), 4),
                    "threshold": threshold,
                    "frames": [{"timestamp": round(t, 3), "score": s} for t, s in scores],
                }
        else:
            out.setdefault(clf.signal, prior)
        plugins.append(_timing(clf.name, "classifier", clf.version, started, error))
    out["classifiers"] = classifiers
    return out


def _derivative(
    matcher: DerivativeMatcher, frames: list[tuple[float, NDArray[np.uint8]]]
) -> dict[str, Any] | None:
    """The most confident edited-derivative evidence over the sampled frames, with the
    frame's timestamp, or None."""
    from dignity.derivatives import match_media

    best: dict[str, Any] | None = None
    for timestamp, pixels in frames:
        found = match_media(matcher, _frame_media(pixels))
        if found is not None and (best is None or found["confidence"] > best["confidence"]):
            best = {**found, "timestamp": round(timestamp, 3)}
    return best
