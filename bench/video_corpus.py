"""A small, seeded corpus of benign videos and their edited copies, for bench/video.py and tests.

Every picture is synthetic: dignity's landscapes (``dignity.samples.landscape``) and flat-shaded
shape scenes, shown as a slideshow whose shots pan and zoom (a Ken Burns move), so consecutive
seconds differ as real footage does. Each *original* gets the copies a video goes through when
it is re-shared: re-encoded with another codec and bitrate, resized, at another frame rate,
trimmed, mirrored, as a 4 s clip inside a longer unrelated video (a compilation), remuxed into
Matroska and re-encoded into WebM, and with letterbox bars added (or, for an original that has
bars baked in, removed). *Unrelated* videos, made from other seeds, count false matches.

Everything is made with PyAV (FFmpeg inside its wheel), one encoder thread, from seeds alone, so
the frames are the same on every machine with the same PyAV; files go to a cache folder keyed by
:data:`CORPUS_VERSION` and the parameters, and a second :func:`build_corpus` reuses them.
:func:`synthetic_video` writes one longer video (the hashing and memory benchmarks' inputs).
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np
from av.video.stream import VideoStream
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter

try:
    from dignity.samples import landscape
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from dignity.samples import landscape

CORPUS_VERSION = 2
DEFAULT_CACHE = Path(__file__).resolve().parent / ".cache" / "video-corpus"

Frame = NDArray[np.uint8]

# The edits every original goes through (the letterbox edit depends on the original: bars are
# added to one without, removed from one that has them).
EDITS = (
    "reencode",
    "resize",
    "fps",
    "trim",
    "mirror",
    "compilation",
    "mkv",
    "webm",
    "letterbox",
)


@dataclass(frozen=True)
class Clip:
    """One corpus file. ``role`` is "original", "copy" or "unrelated"; a copy names its
    ``source`` original and its ``edit``; ``segment`` is where the original's footage lies in
    the copy (start, end seconds) for a compilation, else None."""

    name: str
    path: str
    role: str
    source: str | None = None
    edit: str | None = None
    segment: tuple[float, float] | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class Corpus:
    root: Path
    clips: tuple[Clip, ...]
    build_seconds: float

    def originals(self) -> list[Clip]:
        return [c for c in self.clips if c.role == "original"]

    def copies(self) -> list[Clip]:
        return [c for c in self.clips if c.role == "copy"]

    def unrelated(self) -> list[Clip]:
        return [c for c in self.clips if c.role == "unrelated"]

    def by_name(self, name: str) -> Clip:
        return next(c for c in self.clips if c.name == name)


# -- scenes --------------------------------------------------------------------------------------


def shapes(seed: int, size: tuple[int, int]) -> Image.Image:
    """A flat-shaded abstract scene: a two-colour gradient under random boxes, discs and bands."""
    rng = random.Random(seed)
    w, h = size
    a = np.array([rng.randrange(256) for _ in range(3)], np.float32)
    b = np.array([rng.randrange(256) for _ in range(3)], np.float32)
    t = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]
    base = np.broadcast_to(a + (b - a) * t, (h, w, 3)).astype(np.uint8)
    img = Image.fromarray(np.ascontiguousarray(base))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randrange(12, 24)):
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        x0, y0 = rng.randrange(w), rng.randrange(h)
        x1 = x0 + rng.randrange(w // 12, w // 3)
        y1 = y0 + rng.randrange(h // 12, h // 3)
        kind = rng.randrange(3)
        if kind == 0:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        elif kind == 1:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        else:
            draw.line([(x0, y0), (x1, y1)], fill=colour, width=rng.randrange(6, 30))
    return img.filter(ImageFilter.SMOOTH)


def scene(seed: int, size: tuple[int, int]) -> Image.Image:
    """Landscapes for even seeds, shape scenes for odd ones (two looks, so the corpus is not
    one texture)."""
    return landscape(seed, size) if seed % 2 == 0 else shapes(seed, size)


@dataclass(frozen=True)
class Shot:
    seed: int
    seconds: float
    move: str  # "pan-left", "pan-right", "zoom-in", "zoom-out", "drift"


MOVES = ("pan-left", "pan-right", "zoom-in", "zoom-out", "drift")


def shot_list(seed: int, seconds: float) -> list[Shot]:
    """Shots of 4-9 s, each a new scene with its own move, filling ``seconds``."""
    rng = random.Random(seed * 7919 + 1)
    shots: list[Shot] = []
    left = seconds
    while left > 1e-6:
        length = min(left, rng.uniform(4.0, 9.0))
        shots.append(Shot(rng.randrange(1 << 30), length, rng.choice(MOVES)))
        left -= length
    return shots


def render(shots: list[Shot], size: tuple[int, int], fps: float) -> Iterator[Frame]:
    """Frames (H x W x 3 RGB) of a slideshow of ``shots`` at ``fps``: each shot's scene is drawn
    once at 1.5x the frame size and each frame is a moving window of it, resized to ``size``."""
    w, h = size
    big = (int(w * 1.5), int(h * 1.5))
    for shot in shots:
        image = scene(shot.seed, big)
        count = max(1, round(shot.seconds * fps))
        for i in range(count):
            t = i / max(1, count - 1)
            box = _window(shot.move, t, big, size)
            frame = image.resize(size, Image.Resampling.BILINEAR, box=box)
            yield np.asarray(frame)


def _window(
    move: str, t: float, big: tuple[int, int], size: tuple[int, int]
) -> tuple[float, float, float, float]:
    bw, bh = big
    w, h = size
    if move in ("zoom-in", "zoom-out"):
        z = t if move == "zoom-in" else 1.0 - t
        # From a window 1.3x the frame down to 1.15x: a slideshow's slow zoom (a few percent
        # a second). Faster moves put frames half a second apart (a trim's offset from the
        # one-a-second grid) 30-50 PDQ bits apart, which no frame-sampling matcher survives.
        scale = 1.3 - 0.15 * z
        cw, ch = w * scale, h * scale
        return ((bw - cw) / 2, (bh - ch) / 2, (bw + cw) / 2, (bh + ch) / 2)
    # Pans travel a tenth of the frame width in a shot (slow, as in a slideshow).
    cw, ch = w * 1.25, h * 1.25
    if move == "drift":
        x = (bw - cw) * (0.45 + 0.1 * t)
        y = (bh - ch) * (0.5 + 0.1 * math.sin(3 * t))
    else:
        travel = 0.1 * w / (bw - cw)
        x = (bw - cw) * (0.5 + travel * ((t if move == "pan-right" else 1.0 - t) - 0.5))
        y = (bh - ch) / 2
    return (x, y, x + cw, y + ch)


# -- encoding ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoding:
    codec: str = "libx264"
    fps: float = 24.0
    options: tuple[tuple[str, str], ...] = (("preset", "veryfast"), ("crf", "23"))
    bit_rate: int | None = None
    pix_fmt: str = "yuv420p"


H264 = Encoding()


def write_video(path: Path, frames: Iterator[Frame], enc: Encoding = H264) -> int:
    """Encode RGB frames to ``path`` (container from the suffix) with one encoder thread, so
    the bytes do not depend on the machine's core count. Returns the frame count."""
    rate = Fraction(enc.fps).limit_denominator(1001)
    count = 0
    with av.open(str(path), mode="w") as out:
        stream: VideoStream | None = None
        for pixels in frames:
            if stream is None:
                stream = cast(VideoStream, out.add_stream(enc.codec, rate=rate))
                stream.height, stream.width = pixels.shape[:2]
                stream.pix_fmt = enc.pix_fmt
                options: dict[str, object] = dict(enc.options)
                if enc.codec == "libx264":
                    options["threads"] = "1"
                stream.options = options
                if enc.bit_rate is not None:
                    stream.bit_rate = enc.bit_rate
                stream.codec_context.thread_count = 1
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            out.mux(stream.encode(frame))
            count += 1
        if stream is not None:
            out.mux(stream.encode(None))
    return count


def read_frames(path: Path) -> tuple[list[Frame], float]:
    """All frames of a (small) corpus video as RGB arrays, and its frame rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        rate = float(stream.average_rate or 24)
        frames = [
            np.asarray(f.to_ndarray(format="rgb24"), dtype=np.uint8)
            for f in container.decode(stream)
        ]
    return frames, rate


def remux(src: Path, dst: Path) -> None:
    """Copy the video packets into another container (no re-encode), as a format change does."""
    with av.open(str(src)) as inp, av.open(str(dst), mode="w") as out:
        in_stream = inp.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        for packet in inp.demux(in_stream):
            if packet.dts is None:
                continue
            packet.stream = out_stream
            out.mux(packet)


# -- edits ---------------------------------------------------------------------------------------


def _even(n: float) -> int:
    return max(2, int(n) // 2 * 2)


def _resample(frames: list[Frame], src_fps: float, dst_fps: float) -> list[Frame]:
    """Frames at another rate, each the source frame shown at that instant (drop/duplicate)."""
    count = int(len(frames) / src_fps * dst_fps)
    return [frames[min(len(frames) - 1, int(i * src_fps / dst_fps))] for i in range(count)]


def _resize(frame: Frame, size: tuple[int, int]) -> Frame:
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))


def _pad_bars(frame: Frame, height: int) -> Frame:
    """Black bars above and below, to ``height``."""
    h, w = frame.shape[:2]
    top = (height - h) // 2
    out = np.zeros((height, w, 3), np.uint8)
    out[top : top + h] = frame
    return out


def make_copy(
    original: Path, edit: str, dst_dir: Path, *, filler: list[Shot], barred: bool
) -> Clip:
    """One edited copy of ``original`` (see :data:`EDITS`)."""
    frames, fps = read_frames(original)
    h, w = frames[0].shape[:2]
    stem = f"{original.stem}--{edit}"
    segment: tuple[float, float] | None = None
    if edit == "mkv":
        dst = dst_dir / f"{stem}.mkv"
        remux(original, dst)
        return Clip(stem, str(dst), "copy", original.stem, edit, None, len(frames) / fps)
    dst = dst_dir / f"{stem}.mp4"
    enc = H264
    out: list[Frame] = frames
    if edit == "reencode":
        # MPEG-4 Part 2 at a low bitrate: another codec and visible blocking.
        enc = Encoding(codec="mpeg4", fps=fps, options=(("qmin", "4"),), bit_rate=250_000)
    elif edit == "resize":
        size = (_even(w * 0.55), _even(h * 0.55))
        out = [_resize(f, size) for f in frames]
        enc = Encoding(fps=fps, options=(("preset", "veryfast"), ("crf", "28")))
    elif edit == "fps":
        out = _resample(frames, fps, 15.0)
        enc = Encoding(fps=15.0)
    elif edit == "trim":
        # Cut 2.5 s off the start and a fifth off the end, at frame (not keyframe) accuracy.
        out = frames[int(2.5 * fps) : int(len(frames) * 0.8)]
        enc = Encoding(fps=fps)
    elif edit == "mirror":
        out = [np.ascontiguousarray(f[:, ::-1]) for f in frames]
        enc = Encoding(fps=fps)
    elif edit == "compilation":
        # 4 s of the original (from 5 s in) between two stretches of unrelated footage.
        clip = frames[int(5 * fps) : int(9 * fps)]
        before = list(render(filler[: len(filler) // 2], (w, h), fps))
        after = list(render(filler[len(filler) // 2 :], (w, h), fps))
        out = before + clip + after
        segment = (len(before) / fps, (len(before) + len(clip)) / fps)
        enc = Encoding(fps=fps)
    elif edit == "webm":
        dst = dst_dir / f"{stem}.webm"
        enc = Encoding(
            codec="libvpx-vp9",
            fps=fps,
            options=(("deadline", "realtime"), ("cpu-used", "8"), ("crf", "36"), ("b", "0")),
        )
    elif edit == "letterbox":
        if barred:
            # Bars baked into the original: the copy is cropped back to the picture.
            top = (h - h * 3 // 4) // 2
            out = [np.ascontiguousarray(f[top : top + h * 3 // 4]) for f in frames]
        else:
            out = [_pad_bars(f, _even(h * 4 / 3)) for f in frames]
        enc = Encoding(fps=fps)
    else:
        raise ValueError(f"unknown edit {edit!r}")
    count = write_video(dst, iter(out), enc)
    return Clip(stem, str(dst), "copy", original.stem, edit, segment, count / enc.fps)


# -- the corpus ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """What to build: originals of ``original_seconds`` each (one of them with letterbox bars
    baked in), ``unrelated`` other videos, at ``size`` and ``fps``."""

    original_seconds: tuple[float, ...] = (24.0, 36.0, 14.0, 60.0)
    unrelated_seconds: tuple[float, ...] = (12.0, 20.0, 30.0, 45.0, 16.0, 24.0, 10.0, 36.0)
    size: tuple[int, int] = (480, 272)
    fps: float = 24.0
    seed: int = 16
    barred: int = 2  # index of the original with bars baked in


SMALL = Spec(original_seconds=(12.0, 14.0), unrelated_seconds=(10.0, 12.0), size=(320, 176))


def build_corpus(cache: Path = DEFAULT_CACHE, spec: Spec = Spec(), *, log: bool = False) -> Corpus:
    """Build (or reuse from ``cache``) the corpus for ``spec``; returns its manifest."""
    key = json.dumps({"version": CORPUS_VERSION, "av": av.__version__, **asdict(spec)})
    root = cache / f"corpus-{_crc(key):08x}"
    manifest = root / "manifest.json"
    if manifest.exists():
        data = json.loads(manifest.read_text())
        clips = tuple(_clip(c) for c in data["clips"])
        if all(Path(c.path).exists() for c in clips):
            return Corpus(root, clips, data["build_seconds"])
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    clips_: list[Clip] = []
    w, h = spec.size
    for i, seconds in enumerate(spec.original_seconds):
        seed = spec.seed * 1000 + i
        name = f"original-{i}"
        path = root / f"{name}.mp4"
        barred = i == spec.barred
        frames = render(
            shot_list(seed, seconds), (w, h * 3 // 4 // 2 * 2) if barred else (w, h), spec.fps
        )
        if barred:
            frames = (_pad_bars(f, h) for f in frames)
        count = write_video(path, frames, Encoding(fps=spec.fps))
        clips_.append(Clip(name, str(path), "original", seconds=count / spec.fps))
        filler = shot_list(seed + 500, 24.0)
        for edit in EDITS:
            clips_.append(make_copy(path, edit, root, filler=filler, barred=barred))
            if log:
                print(f"# corpus: {clips_[-1].name}", file=sys.stderr, flush=True)
    for i, seconds in enumerate(spec.unrelated_seconds):
        seed = spec.seed * 1000 + 100 + i
        name = f"unrelated-{i}"
        path = root / f"{name}.mp4"
        count = write_video(path, render(shot_list(seed, seconds), (w, h), spec.fps))
        clips_.append(Clip(name, str(path), "unrelated", seconds=count / spec.fps))
    build = time.perf_counter() - started
    manifest.write_text(
        json.dumps({"clips": [asdict(c) for c in clips_], "build_seconds": build}, indent=1)
    )
    return Corpus(root, tuple(clips_), build)


def synthetic_video(
    path: Path,
    seconds: float,
    *,
    size: tuple[int, int] = (1280, 720),
    fps: float = 30.0,
    seed: int = 1,
    enc: Encoding | None = None,
) -> Path:
    """A slideshow video of ``seconds`` at ``size`` and ``fps`` (``enc``'s codec and options,
    at that rate), cached: an existing file is reused."""
    if path.exists() and path.stat().st_size > 0:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".part-{path.name}")
    write_video(tmp, render(shot_list(seed, seconds), size, fps), replace(enc or H264, fps=fps))
    tmp.replace(path)
    return path


def _crc(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode())


def _clip(data: dict[str, object]) -> Clip:
    seg = data.get("segment")
    return Clip(
        name=str(data["name"]),
        path=str(data["path"]),
        role=str(data["role"]),
        source=None if data.get("source") is None else str(data["source"]),
        edit=None if data.get("edit") is None else str(data["edit"]),
        segment=None if not isinstance(seg, list) else (float(seg[0]), float(seg[1])),
        seconds=float(data.get("seconds", 0.0)),  # type: ignore[arg-type]
    )


if __name__ == "__main__":
    corpus = build_corpus(log=True)
    for c in corpus.clips:
        print(f"{c.role:<9} {c.name:<28} {c.seconds:6.1f} s  {Path(c.path).stat().st_size:>9,} B")
    print(f"built in {corpus.build_seconds:.1f} s into {corpus.root}")
