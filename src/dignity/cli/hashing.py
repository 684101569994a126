"""``dignity hash`` and ``dignity match``: per-file JSON lines, failures reported per file.

Both decode each file once. A file whose first bytes are a video container's
(:func:`dignity.video.looks_like_video`), or a GIF or WebP animation of two frames or more (as
``dignity scan`` tells them), is a video: its vPDQ (one frame per ``--seconds-per-hash``), MD5
and SHA-256 are computed streaming, and ``kind`` says ``"video"``; anything else is an image
(``kind`` ``"image"``). A file that cannot be read or decoded yields
``{path, error}`` and the command carries on with the rest, exiting 1 at the end so scripts
notice.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from dignity.cli.app import EXIT_PARTIAL, Context, cli, emit, handles_errors, pass_ctx
from dignity.errors import DignityError, InputError, MediaTooLarge
from dignity.hashing.signals import ImageHashes, hash_bytes
from dignity.settings import Settings

if TYPE_CHECKING:
    from dignity.video.vpdq import VpdqResult

_HEAD = 512  # bytes read to tell a video container from an image
# Bytes read to count an animation's first two frames: the frame walk seeks past pixel data,
# and a first frame of more than this counts as a still (as it would past the image limit).
_ANIMATION_PREFIX = 64 * 1024 * 1024

seconds_per_hash_option = click.option(
    "--seconds-per-hash",
    type=click.FloatRange(0, 60),
    default=1.0,
    show_default=True,
    help="Videos: hash one frame per this many seconds (0: every frame), as Meta's vpdq.",
)


def is_video_file(path: str) -> bool:
    """Whether ``path`` is a video as ``scan`` tells them (:func:`dignity.scanning.is_video`):
    a video container by its first bytes, or a GIF or WebP animation of two frames or more
    (its frames counted from the start of the file). Unreadable files are not videos: the
    image path reports them."""
    from dignity.video import is_animation, looks_like_video

    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEAD)
            if looks_like_video(head):
                return True
            if head[:3] != b"GIF" and head[8:12] != b"WEBP":
                return False
            return is_animation(head + fh.read(_ANIMATION_PREFIX))
    except OSError:
        return False


def hash_video_file(
    path: str,
    settings: Settings,
    *,
    seconds_per_hash: float = 1.0,
    dihedral: bool = False,
    trim_bars: bool | None = None,
) -> VpdqResult:
    """The vPDQ (and digests) of a video file, streaming, under the settings' video limits
    (``DIGNITY_VIDEO_MAX_SECONDS`` and the rest; no request to answer in time here); raises
    the ``media.*`` errors."""
    from dignity.video.vpdq import vpdq_hash

    try:
        return vpdq_hash(
            path,
            seconds_per_hash=seconds_per_hash,
            dihedral=dihedral,
            trim_bars=trim_bars,
            max_seconds=settings.video_max_seconds,
            max_frame_pixels=settings.video_max_pixels,
            max_bytes=settings.video_max_bytes,
            decode_seconds=settings.video_decode_seconds,
        )
    except IsADirectoryError as exc:
        raise InputError("is a directory", code="input.unreadable") from exc
    except OSError as exc:
        raise InputError(exc.strerror or str(exc), code="input.unreadable") from exc


def video_to_dict(path: str, video: VpdqResult) -> dict[str, Any]:
    """``dignity hash`` output for a video (the interface contract's fields)."""
    from dignity.video.formats import frames_to_json

    return {
        "path": path,
        "kind": "video",
        "md5": video.md5,
        "sha256": video.sha256,
        "duration_s": round(video.duration, 3),
        "vpdq": frames_to_json(video.frames),
    }


def hash_file(
    path: str, settings: Settings, *, dihedral: bool, regions: bool = False
) -> ImageHashes:
    """Hash one file; raises DignityError (MediaError for bad media or unreadable files)."""
    data = read_upload_file(path, settings)
    if regions:
        from dignity.regions import hash_upload

        return hash_upload(data, settings, dihedral=dihedral)
    return hash_bytes(data, settings=settings, dihedral=dihedral)


def read_upload_file(path: str, settings: Settings) -> bytes:
    """A file's bytes; ``input.unreadable`` when it cannot be read, ``media.too_large`` over the
    upload size limit."""
    try:
        size = os.stat(path).st_size
        if size > settings.max_bytes:
            # Refuse before reading: a 10 GB file must not be pulled into memory to be rejected.
            raise MediaTooLarge(
                f"file is {size} bytes; the limit is {settings.max_bytes}",
                code="media.too_large",
                size=size,
                limit=settings.max_bytes,
            )
        with open(path, "rb") as fh:
            return fh.read()
    except IsADirectoryError as exc:
        raise InputError("is a directory", code="input.unreadable") from exc
    except OSError as exc:
        raise InputError(exc.strerror or str(exc), code="input.unreadable") from exc


def hashes_to_dict(path: str, h: ImageHashes, *, dihedral: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"path": path, "kind": "image", **h.fields()}
    if dihedral and h.pdq and h.pdq.dihedral:
        out["pdq_dihedral"] = list(h.pdq.dihedral)
    return out


def each_hashed(
    files: tuple[str, ...],
    settings: Settings,
    *,
    dihedral: bool,
    seconds_per_hash: float = 1.0,
    regions: bool = False,
) -> Iterator[tuple[str, ImageHashes | VpdqResult]]:
    """Hash each file in turn (an image, or a video by its first bytes), emitting
    ``{path, error}`` for failures; exit 1 at the end if any."""
    failed = 0
    for path in files:
        try:
            h: ImageHashes | VpdqResult
            if is_video_file(path):
                h = hash_video_file(
                    path, settings, seconds_per_hash=seconds_per_hash, dihedral=dihedral
                )
            else:
                h = hash_file(path, settings, dihedral=dihedral, regions=regions)
        except DignityError as exc:
            failed += 1
            emit({"path": path, "error": {"code": exc.code, "message": exc.message}})
            continue
        yield path, h
    if failed:
        click.echo(f"dignity: {failed} of {len(files)} files failed", err=True)
        sys.exit(EXIT_PARTIAL)


@cli.command("hash")
@click.option("--dihedral", is_flag=True, help="Also print the 8 rotation/mirror PDQ hashes.")
@seconds_per_hash_option
@click.argument("files", nargs=-1, required=True, type=click.Path())
@pass_ctx
@handles_errors
def hash_cmd(ctx: Context, dihedral: bool, seconds_per_hash: float, files: tuple[str, ...]) -> None:
    """Print the hashes of each FILE as one JSON object per line: an image's PDQ (+quality),
    MD5 and SHA-256; a video's MD5, SHA-256, duration and vPDQ frames."""
    # vPDQ frames are printed as Meta's vpdq gives them; --dihedral is for images.
    for path, h in each_hashed(
        files, ctx.settings, dihedral=dihedral, seconds_per_hash=seconds_per_hash
    ):
        if isinstance(h, ImageHashes):
            emit(hashes_to_dict(path, h, dihedral=dihedral))
        else:
            emit(video_to_dict(path, h))


@cli.command("match")
@click.option(
    "--dihedral/--no-dihedral",
    default=None,
    help="Match rotated/mirrored copies too (default: DIGNITY_MATCH_DIHEDRAL, on).",
)
@seconds_per_hash_option
@click.argument("files", nargs=-1, required=True, type=click.Path())
@pass_ctx
@handles_errors
def match_cmd(
    ctx: Context, dihedral: bool | None, seconds_per_hash: float, files: tuple[str, ...]
) -> None:
    """Match each FILE (image or video) against every enabled bank; one JSON object per file.

    Each object has ``path`` and ``matches`` (a list of {bank, entry_id, signal, distance});
    when an allow bank matched, ``allowed_by`` and the ``suppressed`` matches are shown too.
    A video's matches are ``vpdq`` (with ``query_match_percent``, ``compared_match_percent``
    and ``segments``), ``video_md5``/``md5``, or ``pdq`` (a frame against an image entry, with
    its ``timestamp``). A banked picture found inside an image file (a screenshot, collage,
    meme, chat forward or bordered repost) is a match with ``region`` {x, y, w, h}
    (DIGNITY_MATCH_REGIONS, on).
    """
    use_dihedral = ctx.settings.match_dihedral if dihedral is None else dihedral
    engine = ctx.engine()
    regions = ctx.settings.match_regions
    for path, h in each_hashed(
        files,
        ctx.settings,
        dihedral=use_dihedral,
        seconds_per_hash=seconds_per_hash,
        regions=regions,
    ):
        if isinstance(h, ImageHashes):
            outcome = engine.match_image(h, dihedral=use_dihedral)
        else:
            outcome = engine.match_video(h, dihedral=use_dihedral)
        emit({"path": path, **outcome.to_dict()})
