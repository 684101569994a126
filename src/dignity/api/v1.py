"""The native API under ``/v1``: hashing, matching, scanning, banks and entries, bulk import.

Roles: ``platform`` hashes, matches and scans; ``curator`` manages banks (and may hash, to add
files); ``reviewer`` may read banks and entries; ``admin`` may do everything. Heavy work (decode,
hash, bulk writes) runs through :func:`~dignity.api.deps.run_heavy`.
"""

from __future__ import annotations

from typing import Annotated, Any, BinaryIO

import anyio
from fastapi import APIRouter, Depends, Path, Query, Request, Response

from dignity.api.deps import Services, ServicesDep, require, run_heavy, run_light
from dignity.api.schemas import (
    MAX_ID,
    AddOut,
    BankIn,
    BankOut,
    BankPatch,
    ContentIdQuery,
    CountOut,
    EntriesIn,
    EntryIn,
    EntryOut,
    ErrorBody,
    HashByUrl,
    HashOut,
    ImportOut,
    MatchByHashes,
    MatchResult,
    ScanOut,
    UploaderQuery,
    WithdrawIn,
    WithdrawOut,
    scan_object,
)
from dignity.api.uploads import openapi_upload_or_json, read_media_or_json, read_upload_or_json
from dignity.errors import ImportFormatError, RequestRefused, RequestTooLarge
from dignity.hashing.signals import ImageHashes, hash_bytes
from dignity.keys import KeyInfo
from dignity.matching.banks import NewEntry, parse_import_line
from dignity.scanning import HEAD_BYTES, format_name, is_video
from dignity.video.analysis import sync_decode_seconds
from dignity.video.formats import frames_from_json, parse_vpdq_text

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
}

router = APIRouter(prefix="/v1", responses=ERRORS)

Platform = Annotated[KeyInfo, Depends(require("platform"))]
Hasher = Annotated[KeyInfo, Depends(require("platform", "curator"))]
Curator = Annotated[KeyInfo, Depends(require("curator"))]
Reader = Annotated[KeyInfo, Depends(require("curator", "reviewer"))]


def hashes_out(h: ImageHashes, *, dihedral: bool) -> HashOut:
    return HashOut(
        pdq=h.pdq.hex if h.pdq else None,
        quality=h.pdq.quality if h.pdq else None,
        md5=h.md5,
        sha256=h.sha256,
        width=h.width,
        height=h.height,
        format=h.format,
        pdq_dihedral=list(h.pdq.dihedral) if dihedral and h.pdq and h.pdq.dihedral else None,
    )


def fetch(services: Services, url: str) -> bytes:
    from dignity.fetch import FetchPolicy, fetch_url

    s = services.settings
    policy = FetchPolicy(
        max_bytes=s.max_bytes,
        timeout_s=s.url_timeout_s,
        allow_hosts=frozenset(h.lower() for h in s.url_allow_hosts),
    )
    return fetch_url(url, policy)


async def media_bytes(request: Request, services: Services) -> bytes:
    """An uploaded file, or the bytes behind ``{"url": ...}`` fetched with the SSRF guard."""
    got = await read_upload_or_json(request, HashByUrl, services.settings.max_bytes)
    if isinstance(got, HashByUrl):
        return await run_heavy(services, fetch, services, got.url)
    return got


async def media_source(request: Request, services: Services) -> bytes | BinaryIO:
    """Like :func:`media_bytes`, but an uploaded video stays in its temporary file (under
    ``DIGNITY_VIDEO_MAX_BYTES``) and is hashed from there."""
    s = services.settings
    got = await read_media_or_json(request, HashByUrl, s.max_bytes, s.video_max_bytes)
    if isinstance(got, HashByUrl):
        return await run_heavy(services, fetch, services, got.url)
    return got


def heavy_timeout(services: Services, data: bytes | BinaryIO) -> float | None:
    """The time limit of a heavy call on ``data``: a video gets a little more than its decode
    limit inside a request, so that the clear ``media.decode_timeout`` answers first."""
    if isinstance(data, bytes) and not is_video(data[:HEAD_BYTES], data):
        return None
    s = services.settings
    return sync_decode_seconds(s) + s.request_timeout_s


@router.post(
    "/hash",
    response_model=HashOut,
    openapi_extra=openapi_upload_or_json("HashByUrl"),
    summary='Hash an uploaded image or video (field `file`), or an image by URL (`{"url": ...}`)',
)
async def hash_route(
    request: Request, services: ServicesDep, _: Hasher, dihedral: bool = False
) -> HashOut:
    data = await media_source(request, services)
    if not isinstance(data, bytes) or is_video(data[:HEAD_BYTES], data):
        timeout = heavy_timeout(services, data)
        return await run_heavy(services, _hash_video, data, services, dihedral, timeout_s=timeout)
    h = await run_heavy(services, _hash, data, services, dihedral)
    return hashes_out(h, dihedral=dihedral)


def _hash(data: bytes, services: Services, dihedral: bool) -> ImageHashes:
    return hash_bytes(data, settings=services.settings, dihedral=dihedral)


def _hash_video(data: bytes | BinaryIO, services: Services, dihedral: bool) -> HashOut:
    from dignity.video.analysis import frames_json, hash_video

    video = hash_video(data, services.settings, dihedral=dihedral, sync=True)
    return HashOut.model_validate(
        {
            "kind": "video",
            "md5": video.md5,
            "sha256": video.sha256,
            "width": video.width,
            "height": video.height,
            "format": format_name(video.container),
            "duration_s": round(video.duration, 3),
            "vpdq": frames_json(video.frames),
            "partial": video.partial is not None,
        }
    )


def result_out(outcome: Any) -> MatchResult:
    return MatchResult.model_validate(
        {
            "matches": [m.to_dict() for m in outcome.matches],
            "suppressed": [m.to_dict() for m in outcome.suppressed],
            "allowed_by": [m.to_dict() for m in outcome.allowed_by],
            "notes": list(outcome.notes),
        }
    )


@router.post(
    "/match",
    response_model=MatchResult,
    openapi_extra=openapi_upload_or_json("MatchByHashes"),
    summary="Match an uploaded image or video, or hashes, against every enabled bank",
)
async def match_route(request: Request, services: ServicesDep, _: Platform) -> MatchResult:
    s = services.settings
    got = await read_media_or_json(request, MatchByHashes, s.max_bytes, s.video_max_bytes)
    if isinstance(got, MatchByHashes):
        pairs = [(h.signal, h.value) for h in got.hashes]
        outcome = await run_light(services, services.engine.match_hashes, pairs)
    else:
        timeout = heavy_timeout(services, got)
        outcome = await run_heavy(services, _match_upload, got, services, timeout_s=timeout)
    return result_out(outcome)


def _match_upload(data: bytes | BinaryIO, services: Services) -> Any:
    dihedral = services.settings.match_dihedral
    if not isinstance(data, bytes) or is_video(data[:HEAD_BYTES], data):
        from dignity.video.analysis import hash_video

        video = hash_video(data, services.settings, dihedral=dihedral, sync=True)
        return services.engine.match_video(video, dihedral=dihedral)
    from dignity.regions import hash_upload

    s = services.settings
    h = hash_upload(data, s, dihedral=dihedral, regions=s.match_regions)
    return services.engine.match_image(h, dihedral=dihedral)


def _entry_in(e: EntryIn) -> NewEntry:
    """A JSON entry; a vpdq one takes its frames from ``frames`` or, as text, from ``value``."""
    if e.signal != "vpdq":
        return NewEntry(e.signal, e.value, e.origin.kind, e.origin.ref, e.note)
    if e.frames is not None:
        frames = frames_from_json([f.model_dump() for f in e.frames])
        value = e.value
    else:
        frames, value = parse_vpdq_text(e.value), ""
    return NewEntry("vpdq", value, e.origin.kind, e.origin.ref, e.note, frames, e.video_md5 or "")


def _upload_entries(data: bytes | BinaryIO, services: Services) -> list[NewEntry]:
    """An uploaded file's entries: an image's PDQ and MD5, or a video as one vpdq entry (its
    frames, and its MD5 on it)."""
    if not isinstance(data, bytes) or is_video(data[:HEAD_BYTES], data):
        from dignity.video.analysis import hash_video

        # Frames as Meta's vpdq gives them: banks exchange them; dihedral is for queries. The
        # letterbox-trimmed hashes are dignity's own (stored beside the frames, never exported).
        video = hash_video(data, services.settings, dihedral=False, sync=True, trim_bars=True)
        return [NewEntry("vpdq", "", "file", frames=video.frames, video_md5=video.md5)]
    h = _hash(data, services, False)
    wanted = ("pdq", "md5")
    return [
        NewEntry(sig, val, "file")
        for sig, val in h.values(services.settings.pdq_min_quality)
        if sig in wanted
    ]


@router.post(
    "/scan",
    response_model=ScanOut,
    openapi_extra=openapi_upload_or_json("HashByUrl"),
    summary="Scan an upload: hashes, bank matches and the policy's decision with reasons",
)
async def scan_route(
    request: Request,
    services: ServicesDep,
    key: Platform,
    content_id: ContentIdQuery = None,
    uploader: UploaderQuery = None,
) -> ScanOut:
    from dignity.takedown.scanlog import check_ref

    # Checked before the body is read: a bad id costs no decoding.
    refs = (check_ref(content_id, "content_id"), check_ref(uploader, "uploader"))
    data = await media_source(request, services)
    timeout = heavy_timeout(services, data)
    return await run_heavy(services, _scan, data, services, key, refs, timeout_s=timeout)


def _scan(
    data: bytes | BinaryIO,
    services: Services,
    key: KeyInfo,
    refs: tuple[str | None, str | None],
) -> ScanOut:
    # sync: a video longer than DIGNITY_VIDEO_SYNC_MAX_SECONDS is answered 413
    # (media.video_too_long_for_sync) from its header, before any decoding.
    result = services.scanner.scan(data, sync=True)
    # In this worker call, before answering: a scan the platform was told about is in the log
    # and its events are written (a failed write fails the scan with 503; the platform retries).
    scan_id = services.record_scan(result, key, content_id=refs[0], uploader=refs[1])
    return scan_object(result, scan_id=scan_id)


# -- banks ----------------------------------------------------------------------------------
def written(services: Services) -> None:
    """After a write, catch this process's index up at once: read-your-writes for the caller.
    Other processes catch up on their next refresh tick. It blocks (on the database, and on a
    refresh already running): async routes call :func:`written_async` instead."""
    services.refresh_index()


async def written_async(services: Services) -> None:
    """:func:`written` off the event loop. Not under the request time limit: the write has
    happened, so the caller must hear that it did, not a timeout."""
    await anyio.to_thread.run_sync(written, services)


def bank_out(info: Any) -> BankOut:
    return BankOut.model_validate(info.to_dict())


@router.get("/banks", response_model=list[BankOut], summary="List banks with entry counts")
def list_banks(services: ServicesDep, _: Reader) -> list[BankOut]:
    return [bank_out(b) for b in services.banks.list_banks()]


@router.post("/banks", response_model=BankOut, status_code=201, summary="Create a bank")
def create_bank(body: BankIn, services: ServicesDep, _: Curator) -> BankOut:
    info = services.banks.create_bank(
        body.name,
        purpose=body.purpose,
        threshold=body.threshold,
        enabled=body.enabled,
        description=body.description,
        vpdq_query_percent=body.vpdq_query_percent,
        vpdq_min_segment_s=body.vpdq_min_segment_s,
    )
    written(services)
    return bank_out(info)


@router.get("/banks/{name}", response_model=BankOut, summary="One bank")
def get_bank(name: str, services: ServicesDep, _: Reader) -> BankOut:
    return bank_out(services.banks.get_bank(name))


@router.patch("/banks/{name}", response_model=BankOut, summary="Change a bank")
def patch_bank(name: str, body: BankPatch, services: ServicesDep, _: Curator) -> BankOut:
    info = services.banks.update_bank(
        name,
        purpose=body.purpose,
        threshold=body.threshold,
        enabled=body.enabled,
        description=body.description,
        vpdq_query_percent=body.vpdq_query_percent,
        vpdq_min_segment_s=body.vpdq_min_segment_s,
    )
    written(services)
    return bank_out(info)


@router.delete("/banks/{name}", response_model=CountOut, summary="Delete a bank and its entries")
def delete_bank(name: str, services: ServicesDep, _: Curator) -> CountOut:
    count = services.banks.delete_bank(name)
    written(services)
    return CountOut(count=count)


@router.get("/banks/{name}/entries", response_model=list[EntryOut], summary="Entries, by id")
def list_entries(
    name: str,
    services: ServicesDep,
    _: Reader,
    status: Annotated[str | None, Query(pattern="^(active|withdrawn)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after_id: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
) -> list[EntryOut]:
    entries = services.banks.list_entries(name, status=status, limit=limit, after_id=after_id)
    return [EntryOut.model_validate(e.to_dict()) for e in entries]


@router.post(
    "/banks/{name}/entries",
    response_model=AddOut,
    openapi_extra=openapi_upload_or_json("EntriesIn"),
    summary="Add hashes (JSON) or a file (multipart `file`: an image's PDQ and MD5, or a video "
    "as one vpdq entry with its MD5) to a bank",
    responses={201: {"model": AddOut, "description": "something was added or re-activated"}},
)
async def add_entries(
    name: str, request: Request, response: Response, services: ServicesDep, _: Curator
) -> AddOut:
    s = services.settings
    got = await read_media_or_json(request, EntriesIn, s.max_bytes, s.video_max_bytes)
    if isinstance(got, EntriesIn):
        items = [_entry_in(e) for e in got.entries]
    else:
        timeout = heavy_timeout(services, got)
        items = await run_heavy(services, _upload_entries, got, services, timeout_s=timeout)
    result = await run_heavy(services, services.banks.add_entries, name, items)
    await written_async(services)
    response.status_code = 201 if result.added or result.reactivated else 200
    return AddOut.model_validate(result.to_dict())


@router.post(
    "/banks/{name}/import",
    response_model=ImportOut,
    summary="Bulk import, streamed: one hash per line (JSON lines or `signal hex`); all or nothing",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/plain": {
                    "schema": {"type": "string"},
                    "example": "pdq 0f1e...\nmd5 00ff...\n",
                },
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    },
)
async def import_entries(
    name: str, request: Request, services: ServicesDep, _: Curator
) -> ImportOut:
    services.banks.get_bank(name)  # 404 before reading a large body
    limit = services.settings.max_import_bytes
    items: list[NewEntry] = []
    pending = bytearray()
    searched = 0  # pending[:searched] holds no newline
    lineno = 0
    size = 0
    # Parse while the body streams in, a batch of lines at a time in a worker thread: memory
    # holds parsed entries, never the whole upload, and the event loop never stalls on parsing
    # (a stalled loop would also fail uvicorn's worker health checks).
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(
                f"the import is larger than {limit} bytes", code="request.too_large", limit=limit
            )
        pending += chunk
        if len(pending) < _PARSE_BATCH:
            continue
        # Split at the last newline, looking only at bytes not searched before: a body without
        # newlines would otherwise be searched again at every chunk (quadratic).
        cut = pending.rfind(b"\n", searched)
        if cut < 0:
            searched = len(pending)
            if len(pending) > MAX_IMPORT_LINE:
                raise RequestRefused(
                    f"line {lineno + 1} is longer than {MAX_IMPORT_LINE} bytes",
                    code="request.invalid",
                )
            continue
        complete = bytes(pending[:cut]).split(b"\n")
        del pending[: cut + 1]
        searched = 0
        items += await anyio.to_thread.run_sync(_parse_lines, complete, lineno)
        lineno += len(complete)
    tail = bytes(pending).split(b"\n")
    items += await anyio.to_thread.run_sync(_parse_lines, tail, lineno)
    lineno += len(tail) if tail[-1].strip() else len(tail) - 1
    # A bulk import is bounded by its byte limit, not by the per-request time limit meant for
    # decoding; if it still runs out, it completes anyway and a retry finds it already_active.
    result = await run_heavy(
        services,
        services.banks.add_entries,
        name,
        items,
        timeout_s=services.settings.import_timeout_s,
    )
    await written_async(services)
    return ImportOut(
        added=len(result.added),
        reactivated=len(result.reactivated),
        already_active=len(result.already_active),
        lines=lineno,
    )


_PARSE_BATCH = 1 << 20
# One import line is one hash; a video's vPDQ (a frame a second for up to the longest video
# accepted) is the longest kind, well under this.
MAX_IMPORT_LINE = 8 << 20


def _parse_lines(lines: list[bytes], before: int) -> list[NewEntry]:
    out = []
    for n, raw in enumerate(lines, start=before + 1):
        item = parse_import_line(_text(raw, n), n)
        if item is not None:
            out.append(item)
    return out


def _text(raw: bytes, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ImportFormatError(
            f"line {lineno}: not UTF-8; nothing was imported", code="import.bad_line", line=lineno
        ) from exc


@router.post(
    "/banks/{name}/withdraw",
    response_model=WithdrawOut,
    summary="Withdraw entries by id (`entry_ids`) or hash value (`values`)",
)
def withdraw(name: str, body: WithdrawIn, services: ServicesDep, _: Curator) -> WithdrawOut:
    refs: list[int | str] = [*body.entry_ids, *body.values]
    if not refs:
        raise RequestRefused("name entry_ids or values to withdraw", code="request.invalid")
    count = services.banks.withdraw(name, refs)
    written(services)
    return WithdrawOut(bank=name, withdrawn=count)


@router.delete(
    "/banks/{name}/entries/{entry_id}", response_model=CountOut, summary="Delete an entry"
)
def delete_entry(
    name: str,
    entry_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    services: ServicesDep,
    _: Curator,
) -> CountOut:
    count = services.banks.delete_entries(name, [entry_id])
    written(services)
    return CountOut(count=count)
