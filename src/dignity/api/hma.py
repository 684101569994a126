"""HMA 2.0 ("Open Media Match") compatible routes, so an HMA client switches by its base URL.

The hasher (``/h``), matcher (``/m``) and curator (``/c``) routes and ``/status`` take and
return the same query parameters, multipart fields, JSON bodies, status codes and response
shapes as OpenMediaMatch, over dignity's own services. Differences, each on purpose:

* Every route but ``/status`` needs ``Authorization: Bearer <key>`` (HMA has no auth):
  hasher routes a platform or curator key, matcher routes a platform key (``/m/index/status``
  too), curator routes a curator key (a reviewer may read banks, exchanges, signal and
  content types). ``/status`` is open, as HMA's load balancers and liveness probes call it,
  and says no more than HMA's does. 401/403/429 bodies are ours.
* ``/c/exchanges``, ``/c/signal_type`` and ``/c/content_type`` are read-only: exchanges are
  set up with ``dignity exchange``, and signal and content types are fixed (enabled_ratio 1).
  ``/m/index/status`` reports dignity's in-memory index: ``size`` counts active entries of
  that type (a video once, under ``vpdq``) and ``built_to`` is when it last caught up.
* Error bodies are dignity's ``{code, message, detail}``; HMA's clients read ``message``,
  which is there. Statuses follow HMA: bad input is 400 (dignity says 422 elsewhere), a
  bank that already exists is 403, a failed or refused URL fetch is 400.
* HMA banks are dignity banks; ``matching_enabled_ratio`` is dignity's ``enabled`` flag, so
  only 0 and 1 are accepted (a fractional coin-flip ratio is refused rather than rounded).
  Banks made here are ``block`` banks with the default threshold. An ``allow`` bank made
  elsewhere still suppresses matches in ``/m/lookup`` (not in ``/m/raw_lookup``).
* A bank content id is a dignity entry id. One entry holds one hash, so content added with
  several signals gets one entry per signal and ``id`` is the first one's.
* Signal types: HMA's ``pdq``, ``video_md5`` and ``vpdq`` (py-tx's vPDQ extension) are ours;
  ``md5`` and ``sha256`` are also accepted by their dignity names. ``md5`` and ``video_md5`` are
  one digest of the file's bytes under two names: a lookup by either finds entries of both.
  Content types are ``photo`` (decoded; PDQ) and ``video``: its ``video_md5`` and, where the
  bytes decode as a video, its ``vpdq`` (by default both; HMA's shape, py-tx's JSON list of
  ``"pdq_hex,quality,timestamp"``). A video is banked as one entry (``vpdq``, its MD5 on it).
  A vpdq match's ``distance`` is its nearest frame pair's, and it adds
  ``query_match_percent`` and ``compared_match_percent`` (HMA's VPDQ similarity).
* Distances are strings as in HMA; an exact-hash match reports ``"0"`` (HMA prints ``"-"``).
* Uploaded photos are matched with all 8 rotations/mirrors when ``match_dihedral`` is on, and,
  when ``match_regions`` is on, so are the pictures found inside them (a screenshot, a
  collage): such a match carries ``region`` ({x, y, w, h} in the upload's pixels) besides
  ``bank_content_id`` and ``distance``.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from dignity.api import errors
from dignity.api.deps import Services, ServicesDep, run_heavy, run_light
from dignity.api.schemas import MAX_ID, ErrorBody
from dignity.api.uploads import read_file
from dignity.api.v1 import Curator, Hasher, Platform, Reader, fetch, written
from dignity.errors import BankNotFound, DignityError, MediaError, error_class
from dignity.hashing.digests import md5_hex, sha256_hex
from dignity.hashing.registry import DistanceSignalType, signal_types
from dignity.hashing.signals import ImageHashes, hash_bytes, normalize_hash
from dignity.matching.banks import DEFAULT_THRESHOLD, BankInfo, EntryInfo, NewEntry, read_frames
from dignity.matching.engine import Match, MatchOutcome
from dignity.settings import Settings
from dignity.video.formats import parse_vpdq_text, vpdq_digest, vpdq_pytx_json
from dignity.video.vpdq import VpdqFrame, VpdqResult

# -- errors --------------------------------------------------------------------------------
# Where HMA answers a case with its own status, these win over the error class's status.
_HMA_STATUS: dict[str, int] = {
    "bank.exists": 403,  # HMA: 403 "Bank already exists"
    "url.too_large": 413,  # HMA: 413 "Content too large"
    "url.unavailable": 501,  # this server was built without the URL fetcher
}


def hma_error(exc: DignityError) -> Response:
    """Our error body with HMA's status: bad input is 400, never 415/422."""
    response = errors.error_response(exc)
    status = exc.http_status
    if exc.code in _HMA_STATUS:
        status = _HMA_STATUS[exc.code]
    elif exc.code.startswith("url."):
        status = 400  # HMA answers every refused or failed fetch with 400
    elif status in (415, 422):
        status = 400
    response.status_code = status
    return response


class HmaRoute(APIRoute):
    """Routes whose DignityErrors and validation errors get HMA's statuses (see hma_error)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except DignityError as exc:
                return hma_error(exc)
            except RequestValidationError as exc:
                detail = errors.invalid_detail(exc.errors())
                return JSONResponse(
                    errors.error_body("request.invalid", "the request is not valid", detail),
                    status_code=400,
                )

        return route


def bad(message: str, code: str = "request.invalid", **detail: Any) -> DignityError:
    return error_class(code)(message, code=code, **detail)


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 413, 429, 503)
}

router = APIRouter(tags=["hma"], route_class=HmaRoute, responses=ERRORS)


# -- signal and content types --------------------------------------------------------------
# HMA signal type name -> dignity signal. HMA's video_md5 is the MD5 of the file's bytes,
# which is exactly our md5 (StopNCII and NCMEC exchange it for videos and files alike).
SIGNAL_TYPES: dict[str, str] = {
    "pdq": "pdq",
    "video_md5": "video_md5",
    "md5": "md5",
    "sha256": "sha256",
    "vpdq": "vpdq",
}
# dignity signal -> the HMA name it is reported under when the client did not name one.
HMA_NAMES: dict[str, str] = {
    "pdq": "pdq",
    "md5": "video_md5",
    "video_md5": "video_md5",
    "sha256": "sha256",
    "vpdq": "vpdq",
}
# HMA signal type -> the dignity signals of the matches reported under it.
MATCHED_AS: dict[str, frozenset[str]] = {
    "video_md5": frozenset({"video_md5", "md5"}),
    "md5": frozenset({"video_md5", "md5"}),
}
# Content type -> (signal types it can be hashed to, those hashed when `types` is not given).
CONTENT_TYPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "photo": (("pdq", "md5", "sha256"), ("pdq",)),
    "video": (("video_md5", "vpdq", "md5", "sha256"), ("video_md5", "vpdq")),
}
# HMA bank names (its storage refuses others); ours also caps the length and bars a leading _.
_HMA_BANK_NAME = re.compile(r"\A[A-Z_][A-Z0-9_]*\Z")
# HMA's /status turns INDEX-STALE when the matcher's index has not refreshed for 65 s.
_STALE_AFTER_S = 65.0


def our_signal(signal_type: str) -> str:
    try:
        return SIGNAL_TYPES[signal_type]
    except KeyError:
        raise bad(f"No such SignalType '{signal_type}'", code="hash.unknown_signal") from None


def content_type_of(name: str) -> str:
    if name not in CONTENT_TYPES:
        raise bad(f"no such content_type: '{name}' (photo, video)")
    return name


def signal_types_for(content_type: str, types: str | None) -> tuple[str, ...]:
    """The signal types to hash ``content_type`` to: HMA's ``types=a,b`` or the default."""
    allowed, default = CONTENT_TYPES[content_type]
    if types is None:
        return default
    chosen: list[str] = []
    for raw in types.split(","):
        name = raw.strip()
        if not name:
            continue
        if name not in allowed:
            raise bad(f"signal type '{name}' doesn't exist or is disabled for {content_type}")
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise bad("empty signal type selection")
    return tuple(chosen)


def _looks_like_video(data: bytes) -> bool:
    """Container magic numbers, for a URL fetched without ``content_type`` (HMA reads the
    response's Content-Type; our fetcher hands back only bytes)."""
    head = data[:16]
    return (
        head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free")  # MP4 / MOV
        or head.startswith(b"\x1a\x45\xdf\xa3")  # Matroska / WebM
        or (head.startswith(b"RIFF") and head[8:12] == b"AVI ")
        or head.startswith(b"FLV")
    )


@dataclass(frozen=True)
class Hashed:
    """One piece of content hashed: HMA signal type -> value, and the image's hashes (or the
    video's vPDQ) if any."""

    content_type: str
    values: dict[str, str]
    image: ImageHashes | None = None
    video: VpdqResult | None = None


def hash_content(
    services: Services,
    data: bytes,
    content_type: str,
    types: Sequence[str],
    *,
    dihedral: bool = False,
    regions: bool = False,
) -> Hashed:
    if content_type == "photo":
        s = services.settings
        if regions:  # a lookup: the pictures inside the photo are matched too
            from dignity.regions import hash_upload

            image = hash_upload(data, s, dihedral=dihedral)
        else:
            image = hash_bytes(data, settings=s, dihedral=dihedral)
        # Like HMA (PdqSignal.hash_from_bytes), a PDQ below the quality floor is "".
        pdq = image.pdq.hex if image.pdq and image.pdq.quality >= s.pdq_min_quality else ""
        every = {"pdq": pdq, "md5": image.md5, "sha256": image.sha256}
        return Hashed(content_type, {t: every[t] for t in types}, image)
    md5 = md5_hex(data)
    every = {"video_md5": md5, "md5": md5, "sha256": sha256_hex(data)}
    video = None
    if "vpdq" in types:
        try:
            video = hash_video_bytes(data, services.settings, dihedral=dihedral)
        except MediaError:
            # Asked for by name, a video that does not decode is the client's error; by
            # default (no `types`) the bytes' digests still stand, as HMA hashes what it can.
            if tuple(types) != CONTENT_TYPES["video"][1]:
                raise
        if video is not None:
            every["vpdq"] = vpdq_pytx_json(video.frames)
    return Hashed(content_type, {t: every[t] for t in types if t in every}, video=video)


def hash_video_bytes(data: bytes, settings: Settings, *, dihedral: bool = False) -> VpdqResult:
    """A video's vPDQ (one frame a second) from its bytes, under the limits of a request;
    raises the ``media.*`` errors."""
    from dignity.video.analysis import hash_video

    return hash_video(data, settings, dihedral=dihedral, sync=True)


async def read_upload(request: Request, services: Services) -> tuple[str, bytes]:
    """HMA's upload: one multipart file whose *field name* is its content type."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "multipart/form-data":
        raise bad("Missing multipart/form-data file upload")
    try:
        form = await request.form(max_files=2, max_fields=10)
    except Exception as exc:  # malformed multipart, or more than 2 files: the client's fault
        raise bad(f"cannot read the multipart body: {exc}") from exc
    try:
        files = [(k, v) for k, v in form.multi_items() if isinstance(v, UploadFile)]
        if not files:
            raise bad("Missing multipart/form-data file upload")
        if len(files) > 1:
            raise bad("Only one file allowed per request")
        field, upload = files[0]
        return content_type_of(field), await read_file(upload, services.settings.max_bytes)
    finally:
        await form.close()


async def fetch_url(services: Services, url: str) -> bytes:
    """The bytes behind ``url``, through the SSRF-guarded fetcher (never a fetcher of our own)."""
    try:
        return await run_heavy(services, fetch, services, url)
    except ImportError as exc:
        raise bad("hashing by URL is not available on this server", code="url.unavailable") from exc


async def hash_url(
    services: Services,
    url: str,
    content_type: str | None,
    types: str | None,
    *,
    dihedral: bool = False,
    regions: bool = False,
) -> Hashed:
    if content_type:  # refuse bad parameters before fetching anything
        signal_types_for(content_type_of(content_type), types)
    data = await fetch_url(services, url)
    ctype = content_type or ("video" if _looks_like_video(data) else "photo")
    chosen = signal_types_for(ctype, types)
    hasher = _hash_for_lookup if regions else _hash
    return await run_heavy(services, hasher, services, data, ctype, chosen, dihedral)


def _hash(
    services: Services, data: bytes, ctype: str, types: Sequence[str], dihedral: bool
) -> Hashed:
    return hash_content(services, data, ctype, types, dihedral=dihedral)


def _hash_for_lookup(
    services: Services, data: bytes, ctype: str, types: Sequence[str], dihedral: bool
) -> Hashed:
    """As :func:`_hash`, with the pictures inside a photo (``match_regions``) to match too."""
    regions = services.settings.match_regions
    return hash_content(services, data, ctype, types, dihedral=dihedral, regions=regions)


# -- hasher --------------------------------------------------------------------------------
@router.get(
    "/h/hash",
    response_model=dict[str, str],
    summary="Hash media by URL: {signal_type: hash}",
)
async def hash_get(
    services: ServicesDep,
    _: Hasher,
    url: str | None = None,
    content_type: Annotated[str | None, Query(description="photo or video")] = None,
    types: Annotated[str | None, Query(description="comma-separated signal types")] = None,
) -> dict[str, str]:
    if url is None:
        raise bad("url is required")
    hashed = await hash_url(services, url, content_type, types)
    return hashed.values


# HMA's uploads: one file in a multipart field named after its content type.
MEDIA_UPLOAD: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "photo": {"type": "string", "format": "binary"},
                        "video": {"type": "string", "format": "binary"},
                    },
                }
            }
        },
    }
}


@router.post(
    "/h/hash",
    response_model=dict[str, str],
    summary="Hash an uploaded file (multipart field named `photo` or `video`)",
    openapi_extra=MEDIA_UPLOAD,
)
async def hash_post(
    request: Request,
    services: ServicesDep,
    _: Hasher,
    types: Annotated[str | None, Query(description="comma-separated signal types")] = None,
) -> dict[str, str]:
    ctype, data = await read_upload(request, services)
    chosen = signal_types_for(ctype, types)
    hashed = await run_heavy(services, _hash, services, data, ctype, chosen, False)
    return hashed.values


# -- matcher -------------------------------------------------------------------------------
MatchList = list[dict[str, Any]]


def _distance(m: Match) -> str:
    return str(m.distance)


def group_by_bank(matches: Iterable[Match], banks: set[str] | None) -> dict[str, MatchList]:
    out: dict[str, MatchList] = {}
    for m in matches:
        if banks is not None and m.bank not in banks:
            continue
        item: dict[str, Any] = {"bank_content_id": m.entry_id, "distance": _distance(m)}
        if m.region is not None:  # ours: the banked picture was found inside the upload
            item["region"] = m.region.to_dict()
        if m.query_match_percent is not None:
            item["query_match_percent"] = m.query_match_percent
            item["compared_match_percent"] = m.compared_match_percent
        out.setdefault(m.bank, []).append(item)
    return out


def _banks_param(banks: str | None) -> set[str] | None:
    return {b.strip() for b in banks.split(",") if b.strip()} if banks else None


def _signal_pair(signal_type: str, signal: str) -> tuple[str, str]:
    sig = our_signal(signal_type)
    try:
        if sig == "vpdq":  # the frames themselves (py-tx's JSON, or Meta's text)
            parse_vpdq_text(signal)
            return sig, signal
        return normalize_hash(sig, signal)
    except DignityError as exc:
        raise bad(f"invalid signal: {exc.message}", code="hash.malformed") from exc


def lookup_hashed(services: Services, hashed: Hashed) -> MatchOutcome:
    """Match content hashed here: an image with all its hashes (and its dihedral family), or a
    video by its frames and digests."""
    if hashed.image is not None:
        return services.engine.match_image(hashed.image, dihedral=services.settings.match_dihedral)
    if hashed.video is not None:
        return services.engine.match_video(hashed.video, dihedral=services.settings.match_dihedral)
    pairs = [(SIGNAL_TYPES[t], v) for t, v in hashed.values.items() if v]
    return services.engine.match_hashes(pairs)


def by_signal_type(
    hashed: Hashed, outcome: MatchOutcome, banks: set[str] | None
) -> dict[str, dict[str, MatchList]]:
    """HMA's ``{signal_type: {bank: [{bank_content_id, distance}]}}`` from one outcome."""
    out: dict[str, dict[str, MatchList]] = {}
    for name, value in hashed.values.items():
        ours = MATCHED_AS.get(name, frozenset({SIGNAL_TYPES[name]}))
        wanted = [m for m in outcome.matches if m.signal in ours] if value else []
        out[name] = group_by_bank(wanted, banks)
    return out


@router.get(
    "/m/lookup",
    response_model=dict[str, Any],
    summary="Banks matching a hash ({bank: [...]}) or a URL ({signal_type: {bank: [...]}})",
)
async def lookup_get(
    services: ServicesDep,
    _: Platform,
    signal: str | None = None,
    signal_type: str | None = None,
    url: str | None = None,
    content_type: str | None = None,
    types: str | None = None,
    banks: Annotated[str | None, Query(description="comma-separated bank names")] = None,
    seed: Annotated[str | None, Query(description="accepted; ratios are 0 or 1")] = None,
    bypass_coinflip: Annotated[bool, Query(description="accepted; no effect here")] = False,
) -> dict[str, Any]:
    wanted = _banks_param(banks)
    if url:
        hashed = await hash_url(
            services,
            url,
            content_type,
            types,
            dihedral=services.settings.match_dihedral,
            regions=True,
        )
        outcome = await run_heavy(services, lookup_hashed, services, hashed)
        result = by_signal_type(hashed, outcome, wanted)
        if signal_type is not None:  # HMA elides the outer object when a type is named
            return dict(result.get(signal_type, {}))
        return dict(result)
    if not signal or not signal_type:
        raise bad("Either url or both signal and signal_type are required")
    pair = _signal_pair(signal_type, signal)
    outcome = await run_light(services, services.engine.match_hashes, [pair])
    return dict(group_by_bank(outcome.matches, wanted))


@router.post(
    "/m/lookup",
    response_model=dict[str, dict[str, list[dict[str, Any]]]],
    summary="Banks matching an uploaded file: {signal_type: {bank: [...]}}",
    openapi_extra=MEDIA_UPLOAD,
)
async def lookup_post(
    request: Request,
    services: ServicesDep,
    _: Platform,
    types: str | None = None,
    banks: str | None = None,
    seed: str | None = None,
    bypass_coinflip: bool = False,
) -> dict[str, dict[str, MatchList]]:
    ctype, data = await read_upload(request, services)
    chosen = signal_types_for(ctype, types)
    dihedral = services.settings.match_dihedral
    hashed = await run_heavy(services, _hash_for_lookup, services, data, ctype, chosen, dihedral)
    outcome = await run_heavy(services, lookup_hashed, services, hashed)
    return by_signal_type(hashed, outcome, _banks_param(banks))


@router.get(
    "/m/raw_lookup",
    response_model=dict[str, list[Any]],
    summary="Content ids matching a hash, allow banks not applied: {matches: [...]}",
)
async def raw_lookup(
    services: ServicesDep,
    _: Platform,
    signal: str | None = None,
    signal_type: str | None = None,
    include_distance: bool = False,
    banks: str | None = None,
) -> dict[str, list[Any]]:
    if signal is None:
        raise bad("signal is required")
    if signal_type is None:
        raise bad("signal_type is required")
    pair = _signal_pair(signal_type, signal)
    outcome = await run_light(services, services.engine.match_hashes, [pair])
    wanted = _banks_param(banks)
    # Raw: every hit in an enabled bank, before an allow bank cancels anything.
    hits = sorted(
        [*outcome.matches, *outcome.suppressed, *outcome.allowed_by],
        key=lambda m: (m.distance, m.entry_id),
    )
    hits = [m for m in hits if wanted is None or m.bank in wanted]
    if include_distance:
        return {
            "matches": [{"bank_content_id": m.entry_id, "distance": _distance(m)} for m in hits]
        }
    return {"matches": [m.entry_id for m in hits]}


@router.post(
    "/m/compare",
    response_model=dict[str, Any],
    summary='Compare pairs of hashes: {"pdq": [a, b]} -> {"pdq": [match, {"distance": d}]}',
)
async def compare(request: Request, _: Platform) -> dict[str, Any]:
    body = _json_body(await request.body())
    if not isinstance(body, dict):
        raise bad("Request input was not a dict")
    out: dict[str, Any] = {}
    for name, pair in body.items():
        if not isinstance(pair, list):
            raise bad(f"Comparison hashes for {name} was not a list")
        if len(pair) != 2:
            raise bad("Comparison hash list length must be exactly 2")
        sig = our_signal(name)
        if not all(isinstance(v, str) for v in pair):
            raise bad(f"Invalid {name} hash: hashes are strings")
        try:
            left = normalize_hash(sig, pair[0])[1]
            right = normalize_hash(sig, pair[1])[1]
        except DignityError as exc:
            raise bad(f"Invalid {name} hash: {exc.message}", code="hash.malformed") from exc
        kind = signal_types().get(sig)
        if isinstance(kind, DistanceSignalType):
            # HMA's PdqSignal.compare_hash: a match within the type's default threshold (31
            # for PDQ, HMA's confident threshold).
            dist = kind.distance(bytes.fromhex(left), bytes.fromhex(right))
            out[name] = [dist <= kind.default_threshold, {"distance": dist}]
        else:
            # Exact hashes have no distance (HMA's SignalSimilarityInfo carries no fields).
            out[name] = [left == right, {}]
    return out


def _json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError as exc:
        raise bad(f"the body is not JSON: {exc}") from exc
    except RecursionError as exc:  # "[[[[...": the parser's recursion, not our bug
        raise bad("the JSON body is nested too deeply") from exc


# -- curator: banks ------------------------------------------------------------------------
class HmaBank(BaseModel):
    name: str
    matching_enabled_ratio: float


class BankCreate(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "TEST_BANK"}]})
    name: str = Field(max_length=64)
    enabled_ratio: float | None = None
    enabled: bool | None = None


class BankUpdate(BaseModel):
    name: str | None = Field(None, max_length=64)
    enabled_ratio: float | None = None
    enabled: bool | None = None


class SuccessOut(BaseModel):
    message: str


class ContentAdded(BaseModel):
    id: int
    signals: dict[str, str]


def hma_bank(info: BankInfo) -> HmaBank:
    return HmaBank(name=info.name, matching_enabled_ratio=1.0 if info.enabled else 0.0)


def enabled_from(ratio: float | None, enabled: bool | None) -> bool | None:
    """HMA's matching_enabled_ratio as our enabled flag; a coin-flip ratio has no equivalent."""
    if ratio is not None:
        if ratio not in (0.0, 1.0):
            raise bad(
                "enabled_ratio must be 0 or 1 here: a bank either matches or does not",
                code="bank.bad_ratio",
            )
        return ratio == 1.0
    return enabled


def check_bank_name(name: str) -> None:
    if not _HMA_BANK_NAME.match(name) or name.startswith("_"):
        raise bad(
            "Bank names must be UPPER_WITH_UNDERSCORE, starting with a letter", code="bank.bad_name"
        )


@router.get("/c/banks", response_model=list[HmaBank], summary="List banks")
def banks_index(services: ServicesDep, _: Reader) -> list[HmaBank]:
    return [hma_bank(b) for b in services.banks.list_banks()]


@router.post("/c/banks", response_model=HmaBank, status_code=201, summary="Create a bank")
def bank_create(body: BankCreate, services: ServicesDep, _: Curator) -> HmaBank:
    check_bank_name(body.name)
    enabled = enabled_from(body.enabled_ratio, body.enabled)
    info = services.banks.create_bank(
        body.name,
        purpose="block",
        threshold=DEFAULT_THRESHOLD,
        enabled=True if enabled is None else enabled,
        description="created through the HMA-compatible API",
    )
    written(services)
    return hma_bank(info)


@router.get("/c/bank/{bank_name}", response_model=HmaBank, summary="One bank")
def bank_show(bank_name: str, services: ServicesDep, _: Reader) -> HmaBank:
    return hma_bank(services.banks.get_bank(bank_name))


@router.put("/c/bank/{bank_name}", response_model=HmaBank, summary="Change (or rename) a bank")
def bank_update(bank_name: str, body: BankUpdate, services: ServicesDep, _: Curator) -> HmaBank:
    info = services.banks.get_bank(bank_name)  # 404 first, as HMA does
    enabled = enabled_from(body.enabled_ratio, body.enabled)
    if body.name is not None and body.name != info.name:
        check_bank_name(body.name)
        services.banks.rename_bank(info.name, body.name)
        bank_name = body.name
    if enabled is not None:
        services.banks.update_bank(bank_name, enabled=enabled)
    written(services)
    return hma_bank(services.banks.get_bank(bank_name))


@router.delete("/c/bank/{bank_name}", response_model=SuccessOut, summary="Delete a bank")
def bank_delete(bank_name: str, services: ServicesDep, _: Curator) -> SuccessOut:
    with contextlib.suppress(BankNotFound):  # HMA: deleting a missing bank succeeds
        services.banks.delete_bank(bank_name)
    written(services)
    return SuccessOut(message="Done")


# -- curator: bank content -----------------------------------------------------------------
_METADATA_KEYS = frozenset({"content_id", "content_uri", "json", "collab"})


def content_metadata(body: Any) -> dict[str, Any] | None:
    """HMA's optional ``{"metadata": {content_id, content_uri, json}}`` JSON body."""
    if not isinstance(body, dict):
        return None
    metadata = body.get("metadata")
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise bad("metadata should be a json object")
    unexpected = sorted(set(metadata) - _METADATA_KEYS)
    if unexpected:
        raise bad(f"Invalid metadata: unexpected keys {', '.join(unexpected)}")
    return metadata


def add_signals(
    services: Services,
    bank_name: str,
    values: dict[str, str],
    origin_kind: str,
    metadata: dict[str, Any] | None = None,
    frames: Sequence[VpdqFrame] | None = None,
) -> ContentAdded:
    """Validate every signal, then add them all; one entry per signal, id is the first's."""
    if not values:
        raise bad("No signals given")
    items: list[NewEntry] = []
    normalized: dict[str, str] = {}
    ref = ""
    note = ""
    if metadata:
        ref = str(metadata.get("content_id") or "")[:512]
        note = json.dumps(metadata, separators=(",", ":"), sort_keys=True)[:2000]
    # A video's vPDQ and MD5 together are one entry (the MD5 on it), as `dignity bank add`.
    with_video = "vpdq" in values and "video_md5" in values
    for name, value in values.items():
        sig = our_signal(name)
        if not isinstance(value, str) or not value:
            raise bad(f"Invalid {name} signal: expected a non-empty hex string")
        try:
            if sig == "vpdq":
                got = tuple(frames) if frames is not None else parse_vpdq_text(value)
                md5 = normalize_hash("video_md5", values["video_md5"])[1] if with_video else ""
                normalized[name] = value
                items.insert(0, NewEntry(sig, "", origin_kind, ref, note, got, md5))
                continue
            _, val = normalize_hash(sig, value)
        except DignityError as exc:
            raise bad(f"Invalid {name} signal: {exc.message}", code="hash.malformed") from exc
        normalized[name] = val
        if not (with_video and sig == "video_md5"):
            items.append(NewEntry(sig, val, origin_kind, ref, note))
    result = services.banks.add_entries(bank_name, items)
    written(services)
    first = items[0]
    value = vpdq_digest(first.frames) if first.frames else first.value
    entry_id, _ = result.outcomes[(first.signal, value)]
    return ContentAdded(id=entry_id, signals=normalized)


@router.post(
    "/c/bank/{bank_name}/content",
    response_model=ContentAdded,
    summary="Add content by upload (field `photo`/`video`) or by `?url=`: {id, signals}",
)
async def bank_add_content(
    bank_name: str,
    request: Request,
    services: ServicesDep,
    _: Curator,
    url: str | None = None,
    content_type: str | None = None,
    types: str | None = None,
) -> ContentAdded:
    await anyio.to_thread.run_sync(services.banks.get_bank, bank_name)  # 404 before the body
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    metadata = None
    if ctype == "application/json":
        metadata = content_metadata(_json_body(await request.body()))
    if url:
        hashed = await hash_url(services, url, content_type, types)
    elif ctype == "multipart/form-data":
        kind, data = await read_upload(request, services)
        chosen = signal_types_for(kind, types)
        hashed = await run_heavy(services, _hash, services, data, kind, chosen, False)
    else:
        raise bad("Neither `url` nor multipart file upload was received")
    if "pdq" in hashed.values and not hashed.values["pdq"]:
        raise bad(
            "Invalid pdq signal: the image's PDQ quality is below "
            f"{services.settings.pdq_min_quality}; it would match unrelated images",
            code="hash.low_quality",
        )
    frames = hashed.video.frames if hashed.video is not None else None
    return await run_heavy(
        services, add_signals, services, bank_name, hashed.values, "file", metadata, frames
    )


@router.post(
    "/c/bank/{bank_name}/signal",
    response_model=ContentAdded,
    summary='Add hashes directly: {"pdq": "<hex>"} -> {id, signals}',
)
async def bank_add_signal(
    bank_name: str, request: Request, services: ServicesDep, _: Curator
) -> ContentAdded:
    await anyio.to_thread.run_sync(services.banks.get_bank, bank_name)
    body = _json_body(await request.body())
    if not isinstance(body, dict):
        raise bad('send a JSON object of signal types to hashes, e.g. {"pdq": "<hex>"}')
    return await run_heavy(services, add_signals, services, bank_name, body, "person", None)


def _entry(services: Services, bank_name: str, content_id: int) -> EntryInfo:
    for e in services.banks.list_entries(bank_name, after_id=content_id - 1, limit=1):
        if e.id == content_id:
            return e
    raise BankNotFound(f"content '{content_id}' not found", code="entry.not_found")


@router.get(
    "/c/bank/{bank_name}/content/{content_id}",
    response_model=dict[str, Any],
    summary="One content item: {id, disable_until_ts, original_media_uri, bank[, signals]}",
)
def bank_get_content(
    bank_name: str,
    content_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    services: ServicesDep,
    _: Reader,
    include_signals: bool = False,
    signal_type: str | None = None,
) -> dict[str, Any]:
    bank = services.banks.get_bank(bank_name)
    wanted = None if signal_type is None else our_signal(signal_type)
    e = _entry(services, bank_name, content_id)
    out: dict[str, Any] = {
        "id": e.id,
        # HMA's magic values: 1 = enabled, 0 = disabled (a withdrawn entry).
        "disable_until_ts": 1 if e.status == "active" else 0,
        "original_media_uri": None,
        "bank": hma_bank(bank).model_dump(),
    }
    if include_signals or signal_type is not None:
        # With ?signal_type= (older HMA), only that type's signal, so possibly none.
        if wanted is None or wanted == e.signal:
            value = e.value
            if e.signal == "vpdq":  # HMA shows a vpdq signal as py-tx's string of its frames
                with services.db.session() as s:
                    value = vpdq_pytx_json(read_frames(s, [e.id]).get(e.id, ()))
            out["signals"] = {signal_type or HMA_NAMES[e.signal]: value}
            if e.video_md5 and wanted is None:
                out["signals"]["video_md5"] = e.video_md5
        else:
            out["signals"] = {}
    return out


@router.delete(
    "/c/bank/{bank_name}/content/{content_id}",
    response_model=dict[str, int],
    summary="Remove a content item: {deleted: n}",
)
def bank_delete_content(
    bank_name: str,
    content_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    services: ServicesDep,
    _: Curator,
) -> dict[str, int]:
    services.banks.get_bank(bank_name)
    try:
        count = services.banks.delete_entries(bank_name, [content_id])
    except BankNotFound as exc:
        if exc.code != "entry.not_found":
            raise
        count = 0
    written(services)
    return {"deleted": count}


# -- status --------------------------------------------------------------------------------
@router.get(
    "/status",
    response_class=PlainTextResponse,
    summary="I-AM-ALIVE, or INDEX-STALE (503) when the match index has fallen behind",
    responses={503: {"description": "the match index is not loaded or has stopped refreshing"}},
)
def status(services: ServicesDep) -> PlainTextResponse:
    # No key, as in HMA: probes carry none. It tells no more than HMA's three words.
    if not services.engine.loaded:
        return PlainTextResponse("INDEX-NOT-LOADED", status_code=503)
    stale_after = max(_STALE_AFTER_S, 10 * services.settings.index_refresh_s)
    if time.time() - services.last_refresh > stale_after:
        return PlainTextResponse("INDEX-STALE", status_code=503)
    return PlainTextResponse("I-AM-ALIVE")


class IndexStatus(BaseModel):
    """HMA's per signal type index status."""

    present: bool
    built_to: int = Field(description="Unix time the index last caught up; -1: not built")
    size: int


@router.get(
    "/m/index/status",
    response_model=dict[str, IndexStatus],
    summary="The match index per signal type: {signal_type: {present, built_to, size}}",
)
def index_status(
    services: ServicesDep, _: Platform, signal_type: str | None = None
) -> dict[str, IndexStatus]:
    names = list(SIGNAL_TYPES)
    if signal_type is not None:
        if signal_type not in SIGNAL_TYPES:
            raise bad(f"No such signal type '{signal_type}'", code="hash.unknown_signal")
        names = [signal_type]
    engine = services.engine
    if not engine.loaded:
        return {n: IndexStatus(present=False, built_to=-1, size=0) for n in names}
    sizes = engine.index_sizes()
    built_to = int(services.last_refresh)
    return {
        n: IndexStatus(present=True, built_to=built_to, size=sizes.get(SIGNAL_TYPES[n], 0))
        for n in names
    }


@router.get("/c/exchanges", response_model=list[str], summary="Exchange names (read-only)")
def exchanges_index(services: ServicesDep, _: Reader) -> list[str]:
    return [e.name for e in services.exchanges.list_all()]


class SignalTypeConfig(BaseModel):
    name: str
    enabled_ratio: float


@router.get(
    "/c/signal_type",
    response_model=list[SignalTypeConfig],
    summary="Signal types: [{name, enabled_ratio}] (read-only; every one is enabled)",
)
def signal_type_index(_: Reader) -> list[SignalTypeConfig]:
    return [SignalTypeConfig(name=name, enabled_ratio=1.0) for name in SIGNAL_TYPES]


class ContentTypeConfig(BaseModel):
    name: str
    enabled: bool


@router.get(
    "/c/content_type",
    response_model=list[ContentTypeConfig],
    summary="Content types: [{name, enabled}] (read-only; photo and video)",
)
def content_type_index(_: Reader) -> list[ContentTypeConfig]:
    return [ContentTypeConfig(name=name, enabled=True) for name in CONTENT_TYPES]
