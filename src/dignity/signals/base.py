"""The contracts every signal plug-in meets: :class:`ProvenanceCheck` and :class:`Classifier`.

A *signal* is something we learn about one upload besides its hashes: whether the file says it
was AI-made (provenance checks: C2PA, XMP, generator metadata, watermarks) or a model's score
for what it shows (classifiers: nudity). Every plug-in, built-in or third-party, receives the
same decoded :class:`~dignity.media.Media` (pixels plus the original bytes and container
metadata), so an upload is decoded once whatever runs. A plug-in reports what it found as
plain JSON-able data; the runner adds its name, version and timing, and the policy reads only
that data, never the plug-in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from dignity.media import Media

# Where AI evidence came from; the interface contract fixes these names.
EvidenceSource = Literal["c2pa", "xmp", "metadata", "watermark"]
EVIDENCE_SOURCES: tuple[str, ...] = ("c2pa", "xmp", "metadata", "watermark")


@dataclass(frozen=True)
class Evidence:
    """One piece of evidence that the media was made or altered by AI, for people to read."""

    source: EvidenceSource
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"source": self.source, "detail": self.detail}


@dataclass(frozen=True)
class ProvenanceReport:
    """What a provenance check found: ``data`` is its JSON-able report (it lands under
    ``signals.<name>``), ``evidence`` the AI evidence it supports (empty when none)."""

    data: dict[str, Any]
    evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True)
class ClassifierReport:
    """A classifier's verdict: ``score`` in [0, 1] (None when it could not judge the media)
    and optional detail such as labelled boxes. ``score`` lands under ``signals.<signal>``."""

    score: float | None
    detail: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class ProvenanceCheck(Protocol):
    """Reads what the file says about its origin. Must not raise for any input that
    :func:`~dignity.media.decode` accepted; must not do network I/O."""

    name: str  # key under ``signals`` and in timings: lowercase, [a-z0-9_]
    version: str

    def check(self, media: Media) -> ProvenanceReport: ...


@runtime_checkable
class Classifier(Protocol):
    """Scores what the pixels show. ``signal`` names the score in ``signals`` (e.g. ``nudity``);
    ``name`` names the model. Must be safe to call from several threads at once."""

    name: str
    signal: str
    version: str

    def classify(self, media: Media) -> ClassifierReport: ...


# IPTC digital source types (https://cv.iptc.org/newscodes/digitalsourcetype/) that say a
# generative model made or helped make the picture. Values arrive as full IRIs, prefixed names
# or bare terms, so they are compared by their last path segment (see :func:`source_type_term`).
AI_SOURCE_TYPES: frozenset[str] = frozenset(
    {"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "algorithmicMedia"}
)


def source_type_term(value: str) -> str:
    """The IPTC term at the end of a digital source type value, however it was written:
    ``http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia``,
    ``digsrctype:trainedAlgorithmicMedia`` and ``trainedAlgorithmicMedia`` all give the term."""
    term = value.strip().rstrip("/")
    for sep in ("/", "#", ":"):
        term = term.rsplit(sep, 1)[-1]
    return term
