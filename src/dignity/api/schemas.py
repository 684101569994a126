"""Pydantic models for the HTTP API: request and response shapes, with examples for OpenAPI.

These exist only at the edge; the core speaks in frozen dataclasses and the routes convert.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from dignity.errors import BankRefused, HashError

if TYPE_CHECKING:
    from dignity.scanning import ScanResult

MAX_ID = 2**63 - 1  # entry ids are 64-bit signed integers in every database we support
PDQ_EXAMPLE = "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22"


class ErrorBody(BaseModel):
    code: str = Field(examples=["bank.not_found"])
    message: str = Field(examples=["no bank named 'x'"])
    detail: object | None = None


class VpdqFrameOut(BaseModel):
    """One hashed video frame (Meta's vpdq: one a second by default)."""

    frame: int = Field(ge=0, description="0-based decode index")
    timestamp: float = Field(ge=0, description="Seconds from the first frame")
    pdq: str
    quality: int = Field(ge=0, le=100)


class HashOut(BaseModel):
    kind: Literal["image", "video"] = "image"
    pdq: str | None = Field(None, examples=[PDQ_EXAMPLE])
    quality: int | None = Field(None, examples=[100])
    md5: str = Field(examples=["0cc175b9c0f1b6a831c399e269772661"])
    sha256: str
    width: int
    height: int
    format: str = Field(examples=["JPEG"])
    pdq_dihedral: list[str] | None = None
    duration_s: float | None = Field(default=None, description="A video's length in seconds")
    vpdq: list[VpdqFrameOut] | None = Field(default=None, description="A video's vPDQ frames")
    partial: bool | None = Field(
        default=None, description="A video hashed up to damage in its stream (truncated or corrupt)"
    )


# The platform's own ids of a scanned upload (query parameters of /v1/scan and /v1/jobs),
# checked by ``takedown.scanlog.check_ref`` before the body is read.
ContentIdQuery = Annotated[
    str | None, Query(description="The platform's id of this content (1-255 printable)")
]
UploaderQuery = Annotated[
    str | None, Query(description="The platform's id of the uploader (1-255 printable)")
]


class HashByUrl(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=4096, examples=["https://cdn.example.com/u/123.jpg"])


# A vpdq value is its frames as text (py-tx's JSON or Meta's lines): 3 h at one frame a second
# is about 0.8 MB.
VPDQ_MAX_CHARS = 2_000_000
_SIGNALS = ("pdq", "md5", "sha256", "vpdq", "video_md5")


def _known_signal(value: Any) -> Any:
    """An unknown signal name is ``hash.unknown_signal``, as from the CLI and HMA routes, not a
    generic ``request.invalid`` (an error raised here that is not a ValueError passes through
    pydantic to the error handlers unchanged)."""
    if isinstance(value, str) and value not in _SIGNALS:
        raise HashError(
            f"unknown signal type {value[:40]!r} (known: {', '.join(_SIGNALS)})",
            code="hash.unknown_signal",
            signal=value[:40],
        )
    return value


SignalName = Annotated[
    Literal["pdq", "md5", "sha256", "vpdq", "video_md5"], BeforeValidator(_known_signal)
]


class SignalValue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    signal: SignalName = "pdq"
    value: str = Field(
        min_length=1,
        max_length=VPDQ_MAX_CHARS,
        examples=[PDQ_EXAMPLE],
        description="Hex; for vpdq, its frames (py-tx's JSON list or Meta's hash-file text)",
    )


class MatchByHashes(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"hashes": [{"signal": "pdq", "value": PDQ_EXAMPLE}]}]},
    )
    hashes: list[SignalValue] = Field(min_length=1, max_length=1000)


class RegionOut(BaseModel):
    """Where in the upload a matched picture was found (its pixels; x, y the top-left)."""

    x: int
    y: int
    w: int
    h: int


class SegmentOut(BaseModel):
    query_start: float
    query_end: float
    entry_start: float
    entry_end: float


class MatchOut(BaseModel):
    bank: str
    entry_id: int
    signal: str
    distance: int
    purpose: str
    transform: str | None = None
    region: RegionOut | None = Field(
        None,
        description="Set when the banked picture was found inside the upload (a screenshot, "
        "a collage, a meme) rather than as the whole image",
    )
    timestamp: float | None = Field(
        None, description="A video frame that matched an image entry: seconds into the video"
    )
    query_match_percent: float | None = None
    compared_match_percent: float | None = None
    segments: list[SegmentOut] | None = None


class MatchResult(BaseModel):
    matches: list[MatchOut]
    suppressed: list[MatchOut] = []
    allowed_by: list[MatchOut] = []
    notes: list[str] = []


class ReasonOut(BaseModel):
    rule: str
    signal: str
    value: Any = None


class StatementOut(BaseModel):
    """A statement of reasons with the fields of EU DSA Art. 17(3)."""

    restriction: str | None
    facts: list[str]
    automated_detection: bool
    automated_decision: bool
    automated_means: str
    legal_ground: str | None
    contractual_ground: str | None
    redress: str | None
    policy: str


class DecisionOut(BaseModel):
    action: Literal["allow", "label", "review", "block"]
    priority: int = Field(ge=0, le=100)
    rule: str
    rules: list[str]
    labels: list[str]
    reasons: list[ReasonOut]
    statement: StatementOut
    policy: str


class EvidenceOut(BaseModel):
    source: Literal["c2pa", "xmp", "metadata", "watermark"]
    detail: str


class PluginOut(BaseModel):
    name: str
    kind: Literal["provenance", "classifier"]
    version: str
    ms: float
    error: str | None


class ChangedRegionOut(BaseModel):
    """Where the scanned image differs from the registered photo after alignment (coarse)."""

    box: list[int] | None = Field(None, description="[x, y, width, height] in scanned pixels")
    share: float = Field(ge=0, le=1, description="Share of the compared cells that changed")
    grid: int = Field(ge=1, description="Cells per side of mask")
    mask: list[str] = Field(description="Rows: '#' changed, '.' matched, ' ' no evidence")


class DerivativeOut(BaseModel):
    """The upload looks like an edited copy of a registered source photo."""

    source_id: int
    subject: str
    confidence: float = Field(ge=0, le=1)
    matched_area: float = Field(ge=0, le=1, description="Share of the upload the match covers")
    changed_region: ChangedRegionOut
    timestamp: float | None = Field(None, description="For a video: the frame's time in seconds")


class SignalsOut(BaseModel):
    """Every signal plug-in's report under its name; the built-ins' keys are listed."""

    model_config = ConfigDict(extra="allow")
    ai_evidence: list[EvidenceOut]
    c2pa: dict[str, Any] | None = None
    xmp: dict[str, Any] | None = None
    generator: dict[str, Any] | None = None
    watermark: dict[str, Any] | None = None
    nudity: float | None = Field(None, ge=0, le=1)
    classifiers: dict[str, Any] = {}
    plugins: list[PluginOut] = []
    derivative_of: DerivativeOut | None = None
    video: dict[str, Any] | None = Field(
        None, description="A video's facts: duration_s, partial, sampled frames, nudity per frame"
    )


class ScanOut(HashOut, MatchResult):
    """The one scan object: what ``/v1/scan`` answers and ``dignity scan`` prints per file,
    field for field (docs/api.md). The hash fields of /v1/hash, the matches of /v1/match (with
    ``suppressed`` and ``allowed_by``), the signals and the decision; ``path`` is set by the CLI
    only and ``scan_id`` by the API only (the CLI keeps no scan log)."""

    path: str | None = Field(None, description="The scanned file (CLI); null over HTTP")
    status: Literal["matched", "no_match"] = Field(
        description="matched: at least one match stands (not suppressed by an allow bank)"
    )
    signals: SignalsOut
    decision: DecisionOut
    scan_id: int | None = Field(
        None, description="This scan's entry in the scan log (for takedowns and copy sweeps)"
    )


def scan_object(
    result: ScanResult, *, path: str | None = None, scan_id: int | None = None
) -> ScanOut:
    """``result`` as the one scan object both the CLI and the API give (see ScanOut)."""
    status = "matched" if result.outcome.matches else "no_match"
    return ScanOut.model_validate(
        {**result.to_dict(), "path": path, "status": status, "scan_id": scan_id}
    )


def _threshold_in_range(value: Any) -> Any:
    """A PDQ threshold out of 0-63 is ``bank.bad_threshold``, as from the CLI (not the
    generic ``request.invalid`` of the schema's bounds, which stay for OpenAPI)."""
    if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= 63:
        raise BankRefused(
            f"threshold must be between 0 and 63; got {value}", code="bank.bad_threshold"
        )
    return value


Threshold = Annotated[int, BeforeValidator(_threshold_in_range), Field(ge=0, le=63)]


class BankIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "ncii-block", "purpose": "block", "threshold": 31}]
        },
    )
    name: str = Field(min_length=1, max_length=64)
    purpose: Literal["block", "review", "allow"] = "block"
    threshold: Threshold = 31
    enabled: bool = True
    description: str = Field("", max_length=2000)
    vpdq_query_percent: float = Field(
        80.0, gt=0, le=100, description="Videos: share of the query's frames that must match"
    )
    vpdq_min_segment_s: float = Field(
        3.0, gt=0, le=3600, description="Videos: seconds of matching frames that match alone"
    )


class BankPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    purpose: Literal["block", "review", "allow"] | None = None
    threshold: Threshold | None = None
    enabled: bool | None = None
    description: str | None = Field(None, max_length=2000)
    vpdq_query_percent: float | None = Field(None, gt=0, le=100)
    vpdq_min_segment_s: float | None = Field(None, gt=0, le=3600)


class BankOut(BaseModel):
    name: str
    purpose: str
    threshold: int
    enabled: bool
    description: str
    active_entries: int
    withdrawn_entries: int
    created_at: str | None
    vpdq_query_percent: float = 80.0
    vpdq_min_segment_s: float = 3.0


class Origin(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["case", "exchange", "person", "file", "import"] = "person"
    ref: str = Field("", max_length=512)


class FrameIn(BaseModel):
    """One vPDQ frame, as ``dignity hash`` prints it."""

    model_config = ConfigDict(extra="forbid")
    frame: int = Field(ge=0, le=2**31 - 1)
    timestamp: float = Field(ge=0, le=1e7)
    pdq: str = Field(min_length=64, max_length=64)
    quality: int = Field(ge=0, le=100)


class EntryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    signal: SignalName = "pdq"
    value: str = Field(
        "",
        max_length=VPDQ_MAX_CHARS,
        examples=[PDQ_EXAMPLE],
        description="Hex (required but for vpdq); for vpdq the frames' digest, or the frames "
        "as text (py-tx's JSON list or Meta's lines) when `frames` is not given",
    )
    frames: list[FrameIn] | None = Field(
        None, max_length=1 << 20, description="vpdq: the frames (as `dignity hash` prints them)"
    )
    video_md5: str | None = Field(
        None, min_length=32, max_length=32, description="vpdq: the video file's MD5"
    )
    origin: Origin = Field(default_factory=lambda: Origin(kind="person", ref=""))
    note: str = Field("", max_length=2000)


class EntriesIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"entries": [{"signal": "pdq", "value": PDQ_EXAMPLE, "note": "case 17"}]}]
        },
    )
    entries: list[EntryIn] = Field(min_length=1, max_length=10000)


class AddOut(BaseModel):
    added: int
    reactivated: int
    already_active: int
    entry_ids: list[int]


class EntryOut(BaseModel):
    entry_id: int
    bank: str
    signal: str
    value: str
    origin: Origin
    note: str
    status: str
    created_at: str | None
    withdrawn_at: str | None
    video_md5: str | None = None


class WithdrawIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"entry_ids": [17], "values": []}]}
    )
    # By entry id, by hash value, or both in one call; `dignity bank withdraw` takes the same.
    entry_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(
        default_factory=list, max_length=10000
    )
    values: list[str] = Field(default_factory=list, max_length=10000)


class CountOut(BaseModel):
    count: int


class WithdrawOut(BaseModel):
    """What ``dignity bank withdraw`` prints too: the bank, and how many entries stopped
    matching now (an entry already withdrawn is not counted again)."""

    bank: str
    withdrawn: int


class ImportOut(BaseModel):
    added: int
    reactivated: int
    already_active: int
    lines: int


class BackgroundTaskOut(BaseModel):
    """One background task of this process (times in ISO 8601, UTC)."""

    kind: str
    running: bool
    runs: int
    failures: int
    last_success: str | None
    last_error: str | None
    last_error_at: str | None


class Health(BaseModel):
    status: str
    entries: int | None = None
    background: dict[str, BackgroundTaskOut] | None = None
    stalled: list[str] | None = None
