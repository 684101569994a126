"""Reading request bodies safely: one uploaded file (multipart field ``file``) or a JSON object.

Routes that accept either an upload or JSON (``/v1/hash`` takes a file or ``{"url": ...}``)
read the body here, so size limits and error codes are the same everywhere: 413 past the byte
limit (read no further), 415 for other content types, 422 for a missing field or bad JSON.
Routes that take videos too (``/v1/scan``, ``/v1/hash``) use :func:`read_media_or_json`: an
uploaded video is not read into memory but handed over as the spooled temporary file the
multipart parser already wrote, under its own byte limit (``DIGNITY_VIDEO_MAX_BYTES``).
"""

from __future__ import annotations

import json
from typing import Any, BinaryIO, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from dignity.errors import DignityError, RequestRefused, RequestTooLarge, RequestUnsupported

M = TypeVar("M", bound=BaseModel)

UPLOAD_FIELD = "file"


def too_large(limit: int) -> DignityError:
    return RequestTooLarge(
        f"the upload is larger than {limit} bytes", code="request.too_large", limit=limit
    )


async def read_file(upload: UploadFile, max_bytes: int) -> bytes:
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise too_large(max_bytes)
    return data


async def read_upload_or_json(request: Request, model: type[M], max_bytes: int) -> bytes | M:
    """The uploaded file's bytes, or the JSON body parsed as ``model``."""
    got = await _upload_or_json(request, model)
    if isinstance(got, UploadFile):
        return await read_file(got, max_bytes)
    return got


async def read_media_or_json(
    request: Request, model: type[M], max_bytes: int, video_max_bytes: int
) -> bytes | BinaryIO | M:
    """Like :func:`read_upload_or_json`, but an uploaded video (by its first bytes) comes back
    as its seekable temporary file, refused past ``video_max_bytes`` without being read."""
    from dignity.scanning import HEAD_BYTES
    from dignity.video import looks_like_video

    got = await _upload_or_json(request, model)
    if not isinstance(got, UploadFile):
        return got
    head = await got.read(HEAD_BYTES)
    await got.seek(0)
    if not looks_like_video(head):
        return await read_file(got, max_bytes)
    size = got.size
    if size is None:
        got.file.seek(0, 2)
        size = got.file.tell()
        got.file.seek(0)
    if size > video_max_bytes:
        raise too_large(video_max_bytes)
    return got.file


async def _upload_or_json(request: Request, model: type[M]) -> UploadFile | M:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=10)
        except Exception as exc:  # malformed multipart: the client's fault
            raise RequestRefused(
                f"cannot read the multipart body: {exc}", code="request.invalid"
            ) from exc
        upload = form.get(UPLOAD_FIELD)
        if not isinstance(upload, UploadFile):
            raise RequestRefused(
                f"send the image in the multipart field {UPLOAD_FIELD!r}", code="request.invalid"
            )
        return upload
    if ctype == "application/json":
        return parse_json(await request.body(), model)
    raise RequestUnsupported(
        "send multipart/form-data with a 'file' field, or application/json",
        code="request.unsupported_media_type",
    )


def parse_json(body: bytes, model: type[M]) -> M:
    try:
        raw: Any = json.loads(body)
    except ValueError as exc:
        raise RequestRefused(f"the body is not JSON: {exc}", code="request.invalid") from exc
    except RecursionError as exc:  # "[[[[...": the parser's recursion, not our bug
        raise RequestRefused("the JSON body is nested too deeply", code="request.invalid") from exc
    try:
        return model.model_validate(raw)
    except RecursionError as exc:
        raise RequestRefused("the JSON body is nested too deeply", code="request.invalid") from exc
    except ValidationError as exc:
        from dignity.api.errors import invalid_detail

        raise RequestRefused(
            "the request is not valid", code="request.invalid", **invalid_detail(exc.errors())
        ) from exc


def openapi_upload_or_json(schema_ref: str) -> dict[str, Any]:
    """OpenAPI requestBody for a route taking a multipart ``file`` or a JSON ``schema_ref``."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [UPLOAD_FIELD],
                        "properties": {UPLOAD_FIELD: {"type": "string", "format": "binary"}},
                    }
                },
                "application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}},
            },
        }
    }


async def read_json(request: Request, max_bytes: int) -> bytes:
    """A small JSON body for the pages' private routes: 415 unless it is JSON (a cross-site
    form cannot send JSON without a CORS preflight, which we never allow), 413 when it declares
    or streams more than ``max_bytes`` (refused unread / cut off)."""
    ctype = request.headers.get("content-type", "")
    if ctype.split(";")[0].strip().lower() != "application/json":
        raise RequestUnsupported(
            "send JSON (content-type: application/json)", code="request.unsupported_media_type"
        )
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
        raise RequestTooLarge(
            f"the body is larger than {max_bytes} bytes", code="request.too_large"
        )
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > max_bytes:
            raise RequestTooLarge(
                f"the body is larger than {max_bytes} bytes", code="request.too_large"
            )
    return bytes(data)


async def read_model(request: Request, model: type[M], max_bytes: int) -> M:
    """A small JSON body (:func:`read_json`) validated as ``model`` (422 listing the errors)."""
    return parse_json(await read_json(request, max_bytes), model)
