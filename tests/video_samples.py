"""Small synthetic videos for tests: benign generated landscapes (dignity.samples), a few
seconds each, written with PyAV. A video is a list of scenes; each scene is one landscape that
pans slowly for its seconds, so one-frame-a-second sampling sees a different picture each
second and consecutive seconds of one video differ. Edits (trim, clip inside another video,
mirror, other container) are made by choosing the scenes and frames, not by re-decoding."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps

from dignity.samples import landscape

SIZE = (320, 240)  # at 160 x 120 a mirrored frame's dihedral hash is ~30 bits off: too small
FPS = 10


def scene_frames(
    seed: int, seconds: int, *, fps: int = FPS, size: tuple[int, int] = SIZE
) -> list[Image.Image]:
    """``seconds`` of one scene: each second its own landscape (a cut), panned a little from
    frame to frame, so that no two seconds look alike."""
    width, height = size
    out = []
    for second in range(seconds):
        wide = landscape(seed * 1000 + second, (width + 2 * fps, height))
        out += [wide.crop((2 * i, 0, 2 * i + width, height)) for i in range(fps)]
    return out


def write_video(
    path: Path,
    scenes: Sequence[tuple[int, int]],
    *,
    mirror: bool = False,
    codec: str = "libx264",
    fps: int = FPS,
    skip_seconds: int = 0,
    size: tuple[int, int] = SIZE,
    bars: int = 0,
    bar_colour: tuple[int, int, int] = (0, 0, 0),
) -> Path:
    """Write ``scenes`` ((seed, seconds) each, in order) to ``path`` (the container from its
    suffix); ``mirror`` flips every frame left to right; ``skip_seconds`` trims the start;
    ``bars`` adds letterbox bars that many pixels high above and below the picture (the frame
    grows by twice that), in ``bar_colour``."""
    frames = [
        f for seed, seconds in scenes for f in scene_frames(seed, seconds, fps=fps, size=size)
    ]
    frames = frames[skip_seconds * fps :]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = size[0], size[1] + 2 * bars
        stream.pix_fmt = "yuv420p"
        for image in frames:
            if mirror:
                image = ImageOps.mirror(image)
            if bars:
                boxed = Image.new("RGB", (size[0], size[1] + 2 * bars), bar_colour)
                boxed.paste(image.convert("RGB"), (0, bars))
                image = boxed
            frame = av.VideoFrame.from_ndarray(np.asarray(image.convert("RGB")), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def still(seed: int, second: int) -> Image.Image:
    """The picture a scene shows at the start of one of its seconds (an image to bank)."""
    return scene_frames(seed, second + 1)[second * FPS]
