"""Registered source photos for edited-derivative detection (role-scoped).

``curator`` registers (multipart: ``file`` plus the consent record ``subject``, ``consent_by``,
``for_whom``) and removes; ``reviewer`` (and curator) may list and read them, to see which
photo a flagged upload was matched to and who consented. Only keypoints are stored, never the
photo. A change is effective in this process at once and in every other within
``DIGNITY_INDEX_REFRESH_S``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Query, UploadFile
from pydantic import BaseModel, Field

from dignity.api.deps import Services, ServicesDep, require, run_heavy
from dignity.api.schemas import ErrorBody
from dignity.api.uploads import read_file
from dignity.derivatives.service import (
    MAX_CONSENT_FIELD,
    MAX_SUBJECT,
    NewSource,
    SourceInfo,
)
from dignity.hashing.signals import decode_upload
from dignity.keys import KeyInfo

router = APIRouter(
    prefix="/v1/sources",
    tags=["sources"],
    responses={s: {"model": ErrorBody} for s in (400, 401, 403, 404, 413, 422, 429, 503)},
)

Curator = Annotated[KeyInfo, Depends(require("curator"))]
Reader = Annotated[KeyInfo, Depends(require("curator", "reviewer"))]
MAX_ID = 2**63 - 1


class ConsentOut(BaseModel):
    by: str = Field(description="Who gave consent")
    for_: str = Field(alias="for", description="For whom the photo was registered")
    at: datetime = Field(description="When the photo was registered")


class SourceOut(BaseModel):
    source_id: int
    subject: str
    consent: ConsentOut
    width: int
    height: int
    keypoints: int
    stored_bytes: int = Field(description="Bytes stored for matching (keypoints only)")
    coverage: float = Field(
        description="Share of the photo's frame (8 x 8 cells) holding recognisable detail"
    )
    warning: str | None = Field(
        description="Set when the coverage is low: edits over the detailed part go unrecognised"
    )


def source_out(info: SourceInfo) -> SourceOut:
    return SourceOut.model_validate(info.to_dict())


def _register(data: bytes, services: Services, subject: str, by: str, for_whom: str) -> Any:
    service = services.source_registry
    media = decode_upload(data, services.settings)
    info = service.register([service.prepare(NewSource(media, subject, by, for_whom))])[0]
    services.refresh_sources()  # read-your-writes for the caller's next scan
    return info


@router.post("", response_model=SourceOut, status_code=201, summary="Register a source photo")
async def add_source(
    services: ServicesDep,
    _: Curator,
    file: Annotated[UploadFile, File(description="The photo (never stored)")],
    subject: Annotated[str, Form(min_length=1, max_length=MAX_SUBJECT)],
    consent_by: Annotated[str, Form(max_length=MAX_CONSENT_FIELD)] = "",
    for_whom: Annotated[str, Form(max_length=MAX_CONSENT_FIELD)] = "",
) -> SourceOut:
    data = await read_file(file, services.settings.max_bytes)
    info = await run_heavy(services, _register, data, services, subject, consent_by, for_whom)
    return source_out(info)


@router.get("", response_model=list[SourceOut], summary="Registered source photos, by id")
def list_sources(
    services: ServicesDep,
    _: Reader,
    subject: Annotated[str | None, Query(max_length=MAX_SUBJECT)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after_id: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> list[SourceOut]:
    infos = services.source_registry.list(subject=subject, limit=limit, after_id=after_id)
    return [source_out(i) for i in infos]


@router.get("/{source_id}", response_model=SourceOut, summary="One source photo's record")
def get_source(
    source_id: Annotated[int, Path(ge=1, le=MAX_ID)], services: ServicesDep, _: Reader
) -> SourceOut:
    return source_out(services.source_registry.get(source_id))


@router.delete(
    "/{source_id}",
    response_model=SourceOut,
    summary="Remove a source photo: its descriptors are deleted and it stops matching",
)
def remove_source(
    source_id: Annotated[int, Path(ge=1, le=MAX_ID)], services: ServicesDep, _: Curator
) -> SourceOut:
    info = services.source_registry.remove(source_id)
    services.refresh_sources()
    return source_out(info)
