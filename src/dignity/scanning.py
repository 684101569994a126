"""The scan pipeline: bytes -> one decode -> hashes + signals -> bank matches -> decision.

Split in two halves because ``dignity scan`` runs them in different processes: :func:`analyze`
(decode, hash, every signal plug-in; CPU-bound, runs in workers) and :meth:`Scanner.finish`
(match against the in-memory index and apply the policy; cheap, runs where the index lives).
The HTTP service and the CLI share both, so ``/v1/scan`` and ``dignity scan`` say the same
thing about the same file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


@dataclass(frozen=True)
class Analysis:
    """What one upload is, independent of banks and policy: its hashes and its signals."""

    hashes: ImageHashes
    signals: dict[str, Any]
    kind: str = "image"  # "image" | "video"
    video: VpdqResult | None = None  # a video's vPDQ frames and digests


def analyze(
    data: bytes,
    settings: Settings,
    suite: SignalSuite,
    *,
    dihedral: bool = False,
    derivatives: DerivativeMatcher | None = None,
) -> Analysis:
    media = decode_upload(data, settings)
    signals = suite.run(media)
    # An edited copy of a registered photo (issue 7): the evidence, or None.
    signals["derivative_of"] = None
    if derivatives is not None:
        from dignity.derivatives import match_media

        signals["derivative_of"] = match_media(derivatives, media)
    return Analysis(hash_media(media, data, dihedral=dihedral), signals)


@dataclass(frozen=True)
class ScanResult:
    analysis: Analysis
    outcome: MatchOutcome
    decision: Decision

    def to_dict(self) -> dict[str, Any]:
        """The contract's flat shape: the hash fields of ``dignity hash``, then matches,
        signals and decision."""
        return {
            **self.analysis.hashes.fields(),
            **self.outcome.to_dict(),
            "signals": self.analysis.signals,
            "decision": self.decision.to_dict(),
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

    def analyze(self, data: bytes) -> Analysis:
        return analyze(
            data, self.settings, self.suite, dihedral=self.dihedral, derivatives=self.derivatives
        )

    def finish(self, analysis: Analysis) -> ScanResult:
        outcome = self.engine.match_image(analysis.hashes, dihedral=self.dihedral)
        decision = decide(outcome, analysis.signals, self.policy)
        return ScanResult(analysis, outcome, decision)

    def scan(self, data: bytes) -> ScanResult:
        return self.finish(self.analyze(data))
