"""Where a backfill's items come from: a directory (recursive), a file of URLs (one a line), or
an S3 bucket and prefix (any S3-compatible server), each listed in pages in a stable order and
read one item at a time.

A source is described by a small JSON-ready dict (what a job's payload carries, so that any
worker on any machine rebuilds it) and named by a canonical ``id`` (what the per-item record is
keyed by, so that two runs of one source share their record). Listing never reads an item:
a directory is walked in sorted order, a URL file read line by line, a bucket listed with
``list_objects_v2`` pages. Reading enforces the byte limit before it reads (a file's size, an
object's ``ContentLength``; a URL is cut off by the fetch guard), fetches URLs only through the
SSRF guard (:func:`dignity.fetch.fetch_url`), and raises a :class:`~dignity.errors.DignityError`
with a stable code for an item that cannot be had, which the batch records as a failed item.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from dignity.errors import (
    DignityError,
    InputError,
    MediaTooLarge,
    Refused,
    Unavailable,
    UpstreamFailed,
)
from dignity.fetch import FetchPolicy, fetch_url
from dignity.settings import Settings

DEFAULT_PAGE = 100  # items per batch job: a few seconds of scanning, one heartbeat an item


class BackfillError(DignityError):
    """Domain of backfill errors (never raised itself)."""


class BackfillRefused(BackfillError, Refused):
    """A source that cannot be a backfill source (no such directory, a bad S3 address)."""

    codes: ClassVar[tuple[str, ...]] = ("backfill.bad_source",)


class BackfillUnavailable(BackfillError, Unavailable):
    """The source cannot be listed now (the object store did not answer): worth a retry."""

    codes: ClassVar[tuple[str, ...]] = ("backfill.source_unavailable",)


class BackfillItemFailed(BackfillError, UpstreamFailed):
    """One object of the store could not be read (gone since the listing, access denied)."""

    codes: ClassVar[tuple[str, ...]] = ("backfill.item_unreadable",)


class Source(Protocol):
    """A listable, readable collection of items."""

    @property
    def id(self) -> str:
        """The canonical name of the source (the per-item record's key)."""
        ...

    def to_payload(self) -> dict[str, Any]:
        """What a job carries to rebuild this source on any worker."""
        ...

    def pages(self, size: int) -> Iterator[list[str]]:
        """The item keys, ``size`` at a time, in a stable order."""
        ...

    def read(self, key: str) -> bytes:
        """The bytes of one item; raises a DignityError with a stable code if it cannot."""
        ...


def _chunks(keys: Iterator[str], size: int) -> Iterator[list[str]]:
    page: list[str] = []
    for key in keys:
        page.append(key)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


def _too_large(size: int, limit: int, what: str) -> MediaTooLarge:
    return MediaTooLarge(
        f"{what} is {size} bytes, over the limit of {limit}", code="media.too_large", size=size
    )


@dataclass(frozen=True)
class DirectorySource:
    """Every regular file below ``root`` (symbolic links are not followed), as paths relative
    to it, in sorted order directory by directory."""

    root: Path
    max_bytes: int

    @property
    def id(self) -> str:
        return f"dir:{self.root}"

    def to_payload(self) -> dict[str, Any]:
        return {"kind": "dir", "path": str(self.root)}

    def _walk(self) -> Iterator[str]:
        for top, dirs, files in os.walk(self.root, followlinks=False):
            dirs.sort()  # os.walk descends in this list's order: sorted, so stable
            base = Path(top)
            for name in sorted(files):
                path = base / name
                if path.is_file() and not path.is_symlink():
                    yield path.relative_to(self.root).as_posix()

    def pages(self, size: int) -> Iterator[list[str]]:
        return _chunks(self._walk(), size)

    def read(self, key: str) -> bytes:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise InputError(f"{key!r} is outside the source", code="input.unreadable")
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                raise _too_large(size, self.max_bytes, key)
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise InputError(f"{key}: gone since the listing", code="input.not_found") from exc
        except OSError as exc:
            raise InputError(
                f"{key}: {exc.strerror or type(exc).__name__}", code="input.unreadable"
            ) from exc


def fetch_policy(settings: Settings) -> FetchPolicy:
    """The SSRF guard's limits for a backfill's URLs: those of ``/v1/scan?url=``."""
    return FetchPolicy(
        max_bytes=settings.max_bytes,
        timeout_s=settings.url_timeout_s,
        allow_hosts=frozenset(h.lower() for h in settings.url_allow_hosts),
    )


@dataclass(frozen=True)
class UrlListSource:
    """The URLs in a text file, one a line (blank lines and ``#`` comments skipped), in file
    order; each fetched through the SSRF guard."""

    path: Path
    policy: FetchPolicy = field(compare=False)

    @property
    def id(self) -> str:
        return f"urls:{self.path}"

    def to_payload(self) -> dict[str, Any]:
        return {"kind": "urls", "path": str(self.path)}

    def _lines(self) -> Iterator[str]:
        try:
            with self.path.open(encoding="utf-8", errors="replace") as f:
                for line in f:
                    url = line.strip()
                    if url and not url.startswith("#"):
                        yield url
        except OSError as exc:
            raise BackfillRefused(
                f"cannot read the URL list {self.path}: {exc.strerror}", code="backfill.bad_source"
            ) from exc

    def pages(self, size: int) -> Iterator[list[str]]:
        return _chunks(self._lines(), size)

    def read(self, key: str) -> bytes:
        return fetch_url(key, self.policy)


@dataclass(frozen=True)
class S3Source:
    """The objects under ``prefix`` in ``bucket``, in key order (S3's listing order), listed
    with ``list_objects_v2`` a page at a time. ``endpoint_url`` names an S3-compatible server
    (MinIO, Ceph, moto); without it boto3's own configuration applies (``AWS_ENDPOINT_URL_S3``,
    credentials from the environment or the instance role)."""

    bucket: str
    prefix: str
    max_bytes: int
    endpoint_url: str | None = None

    @property
    def id(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def to_payload(self) -> dict[str, Any]:
        return {
            "kind": "s3",
            "bucket": self.bucket,
            "prefix": self.prefix,
            "endpoint_url": self.endpoint_url,
        }

    def _client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url)

    def pages(self, size: int) -> Iterator[list[str]]:
        from botocore.exceptions import BotoCoreError, ClientError

        client = self._client()
        pager = client.get_paginator("list_objects_v2")
        try:
            for page in pager.paginate(
                Bucket=self.bucket, Prefix=self.prefix, PaginationConfig={"PageSize": size}
            ):
                keys = [
                    str(o["Key"]) for o in page.get("Contents", []) if not o["Key"].endswith("/")
                ]
                if keys:
                    yield keys
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchBucket", "AccessDenied", "InvalidBucketName"):
                raise BackfillRefused(
                    f"cannot list s3://{self.bucket}/{self.prefix}: {code}",
                    code="backfill.bad_source",
                ) from exc
            raise BackfillUnavailable(
                f"listing s3://{self.bucket}/{self.prefix} failed: {code or exc}",
                code="backfill.source_unavailable",
            ) from exc
        except BotoCoreError as exc:
            raise BackfillUnavailable(
                f"the object store did not answer: {type(exc).__name__}",
                code="backfill.source_unavailable",
            ) from exc

    def read(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        client = self._client()
        try:
            obj = client.get_object(Bucket=self.bucket, Key=key)
            size = int(obj.get("ContentLength") or 0)
            if size > self.max_bytes:
                obj["Body"].close()
                raise _too_large(size, self.max_bytes, key)
            # Read one byte past the limit: a store that under-reports the length is cut off.
            data = bytes(obj["Body"].read(self.max_bytes + 1))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise BackfillItemFailed(
                f"s3 object {key!r}: {code or exc}", code="backfill.item_unreadable"
            ) from exc
        except BotoCoreError as exc:
            raise BackfillItemFailed(
                f"s3 object {key!r}: {type(exc).__name__}", code="backfill.item_unreadable"
            ) from exc
        if len(data) > self.max_bytes:
            raise _too_large(len(data), self.max_bytes, key)
        return data


def parse_source(spec: str, *, endpoint_url: str | None = None) -> dict[str, Any]:
    """A command line's SOURCE as a payload: ``s3://bucket/prefix``, a directory, or a file of
    URLs. Paths are made absolute (workers resolve them on their own machine: a shared mount)."""
    if spec.startswith("s3://"):
        bucket, _, prefix = spec[5:].partition("/")
        if not bucket:
            raise BackfillRefused(
                f"{spec!r}: an S3 source is s3://BUCKET[/PREFIX]", code="backfill.bad_source"
            )
        return {"kind": "s3", "bucket": bucket, "prefix": prefix, "endpoint_url": endpoint_url}
    path = Path(spec).expanduser()
    if path.is_dir():
        return {"kind": "dir", "path": str(path.resolve())}
    if path.is_file():
        return {"kind": "urls", "path": str(path.resolve())}
    raise BackfillRefused(
        f"{spec!r} is not a directory, a file of URLs or s3://BUCKET/PREFIX",
        code="backfill.bad_source",
    )


def source_from_payload(payload: Mapping[str, Any], settings: Settings) -> Source:
    """Rebuild a source from a job's payload, with this process's limits (the larger of the
    image and video limits: the scanner holds each kind to its own)."""
    kind = payload.get("kind")
    limit = max(settings.max_bytes, settings.video_max_bytes)
    if kind == "dir" and isinstance(payload.get("path"), str):
        root = Path(payload["path"])
        if not root.is_dir():
            raise BackfillRefused(f"{root} is not a directory here", code="backfill.bad_source")
        return DirectorySource(root.resolve(), limit)
    if kind == "urls" and isinstance(payload.get("path"), str):
        return UrlListSource(Path(payload["path"]), fetch_policy(settings))
    if kind == "s3" and isinstance(payload.get("bucket"), str):
        endpoint = payload.get("endpoint_url")
        return S3Source(
            payload["bucket"],
            str(payload.get("prefix") or ""),
            limit,
            endpoint if isinstance(endpoint, str) else None,
        )
    raise BackfillRefused(f"not a backfill source: {dict(payload)!r}", code="backfill.bad_source")
