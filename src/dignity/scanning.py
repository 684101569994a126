"""The scan pipeline: bytes -> one decode -> hashes + signals -> bank matches -> decision.

Split in two halves because ``dignity scan`` runs them in different processes: :func:`analyze`
(decode, hash, every signal plug-in; CPU-bound, runs in workers) and :meth:`Scanner.finish`
(match against the in-memory index and apply the policy; cheap, runs where the index lives).
The HTTP service and the CLI share both, so ``/v1/scan`` and ``dignity scan`` say the same
thing about the same file.

Videos (by their first bytes: :func:`dignity.video.looks_like_video`; GIF and WebP animations
of two frames or more too) take the video path: :func:`dignity.video.analysis.analyze_video`
hashes them from the file or stream (never a second copy of the bytes) and computes their
signals over sampled frames, and :meth:`Scanner.finish` matches them with
``MatchEngine.match_video``. The result has the same shape with ``kind`` = ``"video"``, the
video's ``duration_s``, its ``vpdq`` frames and ``partial`` (frames read before damage).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from dignity.hashing.signals import ImageHashes, decode_upload, hash_media
from dignity.matching.engine import MatchEngine, MatchOutcome
from dignity.policy import (
    BUILTIN_NAMESPACES,
    Decision,
    Policy,
    decide,
    default_policy,
    fact_checker,
    parse_policy,
)
from dignity.settings import Settings
from dignity.signals.runner import SignalSuite

if TYPE_CHECKING:
    from dignity.derivatives import DerivativeMatcher
    from dignity.video.vpdq import VpdqResult

# Bytes read from the front of a file to tell a video from an image (MPEG-TS needs 377).
HEAD_BYTES = 512


@dataclass(frozen=True)
class Analysis:
    """What one upload is, independent of banks and policy: its hashes and its signals.

    For a video, ``kind`` is ``"video"``, ``video`` holds its vPDQ and ``hashes`` its file
    digests and frame size (``pdq`` None), so that every consumer of the digests (scan log,
    events) reads them from one place whatever the kind."""

    hashes: ImageHashes
    signals: dict[str, Any]
    kind: str = "image"
    video: VpdqResult | None = None


def is_video(head: bytes, data: bytes | None = None) -> bool:
    """Whether an upload goes the video path: a video container by its first bytes, or a GIF
    or WebP animation (``data`` is needed to count an animation's frames)."""
    from dignity.video import is_animation, looks_like_video

    if looks_like_video(head):
        return True
    return data is not None and is_animation(data)


def analyze(
    data: bytes | BinaryIO | Path,
    settings: Settings,
    suite: SignalSuite,
    *,
    dihedral: bool = False,
    derivatives: DerivativeMatcher | None = None,
    sync: bool = False,
) -> Analysis:
    """Analyse an image (bytes) or a video (bytes, a seekable binary file, or a path; a file
    is closed once read). ``sync`` holds videos to ``video_sync_max_seconds`` (a request)."""
    if not isinstance(data, bytes):
        return analyze_video_upload(
            data, settings, suite, dihedral=dihedral, derivatives=derivatives, sync=sync
        )
    if is_video(data[:HEAD_BYTES], data):
        return analyze_video_upload(
            io.BytesIO(data),
            settings,
            suite,
            dihedral=dihedral,
            derivatives=derivatives,
            sync=sync,
        )
    media = decode_upload(data, settings)
    signals = suite.run(media)
    # The pictures inside this one (issue 20), hashed from the same decode.
    hashes = hash_media(media, data, dihedral=dihedral)
    if settings.match_regions:
        from dignity.regions import with_regions

        hashes = with_regions(hashes, media, dihedral=dihedral)
    # An edited copy of a registered photo (issue 7): the evidence, or None.
    signals["derivative_of"] = None
    if derivatives is not None:
        from dignity.derivatives import match_media

        signals["derivative_of"] = match_media(derivatives, media, hashes.regions)
    return Analysis(hashes, signals)


def analyze_video_upload(
    source: BinaryIO | Path,
    settings: Settings,
    suite: SignalSuite,
    *,
    dihedral: bool = True,
    derivatives: DerivativeMatcher | None = None,
    sync: bool = False,
) -> Analysis:
    """The video path of :func:`analyze`."""
    from dignity.video.analysis import analyze_video

    scan = analyze_video(
        source,
        settings,
        suite,
        dihedral=dihedral,
        derivatives=derivatives,
        sync=sync,
    )
    video = scan.video
    hashes = ImageHashes(
        pdq=None,
        md5=video.md5,
        sha256=video.sha256,
        width=video.width,
        height=video.height,
        format=format_name(video.container),
        digests={"md5": bytes.fromhex(video.md5), "sha256": bytes.fromhex(video.sha256)},
    )
    return Analysis(hashes, scan.signals, kind="video", video=video)


def format_name(container: str) -> str:
    # FFmpeg names demuxers by families ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm").
    first = container.split(",")[0] if container else "video"
    return {"mov": "MP4", "matroska": "MATROSKA"}.get(first, first.upper())


@dataclass(frozen=True)
class ScanResult:
    analysis: Analysis
    outcome: MatchOutcome
    decision: Decision

    def to_dict(self) -> dict[str, Any]:
        """The contract's flat shape: ``kind``, the hash fields of ``dignity hash`` (for a
        video: md5, sha256, duration_s, vpdq frames, partial), then matches, signals and
        decision."""
        return {
            "kind": self.analysis.kind,
            **self.hash_fields(),
            **self.outcome.to_dict(),
            "signals": self.analysis.signals,
            "decision": self.decision.to_dict(),
        }

    def hash_fields(self) -> dict[str, Any]:
        fields = self.analysis.hashes.fields()
        video = self.analysis.video
        if video is None:
            return fields
        from dignity.video.analysis import frames_json

        return {
            "md5": video.md5,
            "sha256": video.sha256,
            "duration_s": round(video.duration, 3),
            "vpdq": frames_json(video.frames),
            "partial": video.partial is not None,
            "width": fields["width"],
            "height": fields["height"],
            "format": fields["format"],
        }


def load_policy(settings: Settings, suite: SignalSuite | None = None) -> Policy:
    """The policy named by ``DIGNITY_POLICY_FILE``, validated, or the shipped default."""
    if settings.policy_file is None:
        return default_policy()
    return read_policy(settings.policy_file, suite)


def read_policy(path: Path, suite: SignalSuite | None = None) -> Policy:
    """Read and validate a policy file; raise ``PolicyError`` (with file:line) if unusable."""
    from dignity.policy import PolicyError

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([f"{path}: cannot read: {exc}"], str(path)) from exc
    spaces = set(BUILTIN_NAMESPACES) | (suite.namespaces() if suite else set())
    return parse_policy(text, str(path), fact_checker(spaces))


class Scanner:
    """Everything a scan needs in one process: engine, signal suite, policy."""

    def __init__(
        self,
        settings: Settings,
        engine: MatchEngine,
        suite: SignalSuite | None = None,
        policy: Policy | None = None,
        derivatives: DerivativeMatcher | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.derivatives = derivatives
        self.suite = suite or SignalSuite.from_settings(settings)
        self.policy = policy or load_policy(settings, self.suite)
        self.dihedral = settings.match_dihedral

    def warm(self) -> None:
        """Run every plug-in once on a small generated image, so that model loading happens
        at start-up and not inside the first user's request."""
        from dignity.samples import encode, landscape

        self.analyze(encode(landscape(0, size=(96, 64)), "PNG"))

    def analyze(self, data: bytes | BinaryIO | Path, *, sync: bool = False) -> Analysis:
        return analyze(
            data,
            self.settings,
            self.suite,
            dihedral=self.dihedral,
            derivatives=self.derivatives,
            sync=sync,
        )

    def finish(self, analysis: Analysis) -> ScanResult:
        if analysis.video is not None:
            outcome = self.engine.match_video(analysis.video, dihedral=self.dihedral)
        else:
            outcome = self.engine.match_image(analysis.hashes, dihedral=self.dihedral)
        decision = decide(outcome, analysis.signals, self.policy)
        return ScanResult(analysis, outcome, decision)

    def scan(self, data: bytes | BinaryIO | Path, *, sync: bool = False) -> ScanResult:
        """Analyse and finish one upload; ``sync`` is for scans inside a request (videos
        over ``video_sync_max_seconds`` are refused with 413)."""
        return self.finish(self.analyze(data, sync=sync))
