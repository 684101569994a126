"""Small synthetic videos for takedown tests, written with PyAV: benign generated scenes only.

Each second of a "film" shows its own generated landscape (``dignity.samples.landscape``),
panning slowly within the second, so frames sampled one a second differ from each other while
a re-encode, a clip or a mirrored copy of the film keep their footage recognisable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps

from dignity.samples import landscape

SIZE = (160, 120)
FPS = 10


@lru_cache(maxsize=256)
def _scene(seed: int) -> Image.Image:
    return landscape(seed, size=(SIZE[0] + 40, SIZE[1] + 30))


def film_frame(film: int, t: float) -> Image.Image:
    """Film ``film`` at ``t`` seconds: second ``int(t)``'s scene, panned by the fraction."""
    second = int(t)
    frac = t - second
    scene = _scene(film * 1000 + second)
    x, y = int(40 * frac), int(30 * frac)
    return scene.crop((x, y, x + SIZE[0], y + SIZE[1]))


Shot = tuple[int, float, float]  # (film, from second, to second)


def write_video(
    path: Path,
    shots: Sequence[Shot],
    *,
    fps: int = FPS,
    size: tuple[int, int] = SIZE,
    codec: str = "libx264",
    transform: Callable[[Image.Image], Image.Image] | None = None,
) -> Path:
    """Write the shots one after another (each ``film`` from/to seconds) at ``fps``."""
    container = av.open(str(path), mode="w")
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    for film, start, end in shots:
        n = round((end - start) * fps)
        for i in range(n):
            image = film_frame(film, start + i / fps)
            if transform is not None:
                image = transform(image)
            if image.size != size:
                image = image.resize(size, Image.Resampling.BILINEAR)
            frame = av.VideoFrame.from_ndarray(np.asarray(image.convert("RGB")), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def mirrored(image: Image.Image) -> Image.Image:
    return ImageOps.mirror(image)
