"""Benign synthetic sample images (landscapes of shapes and gradients) for the demo and tests.

A fresh clone has no photos and must never carry imagery of people, so the demo and the test
suite draw their own: seeded, deterministic scenes with enough structure that PDQ rates them
well above its quality floor, plus the everyday edits a copy goes through on its way round
the internet (re-encoding, resizing, cropping, rotating, mirroring).
"""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw, ImageFilter


def landscape(seed: int, size: tuple[int, int] = (800, 600)) -> Image.Image:
    """A deterministic RGB scene: sky gradient, sun, layered hills, scattered trees."""
    rng = random.Random(seed)
    w, h = size
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)
    top = (rng.randrange(40, 120), rng.randrange(80, 180), rng.randrange(150, 255))
    bottom = (rng.randrange(180, 255), rng.randrange(120, 220), rng.randrange(60, 160))
    for y in range(h):
        t = y / max(1, h - 1)
        draw.line(
            [(0, y), (w, y)],
            fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)),
        )
    r = rng.randrange(h // 12, h // 6)
    cx, cy = rng.randrange(r, w - r), rng.randrange(r, h // 2)
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(255, rng.randrange(180, 250), 90))
    for layer in range(rng.randrange(3, 6)):
        base = int(h * (0.45 + 0.1 * layer))
        pts = [(0, h)]
        for x in range(0, w + 40, 40):
            pts.append((x, base + rng.randrange(-h // 8, h // 8)))
        pts.append((w, h))
        shade = 30 + 35 * layer
        draw.polygon(pts, fill=(shade // 2, shade, shade // 3 + rng.randrange(0, 60)))
    for _ in range(rng.randrange(10, 30)):
        x, y = rng.randrange(0, w), rng.randrange(h // 2, h)
        s = rng.randrange(8, 30)
        draw.polygon(
            [(x, y - 3 * s), (x - s, y), (x + s, y)], fill=(10, rng.randrange(60, 120), 20)
        )
        draw.rectangle([x - s // 5, y, x + s // 5, y + s], fill=(70, 45, 20))
    return img.filter(ImageFilter.SMOOTH)


def encode(img: Image.Image, fmt: str = "JPEG", **params: object) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG" and img.mode not in ("RGB", "L", "CMYK"):
        img = img.convert("RGB")
    img.save(buf, fmt, **params)
    return buf.getvalue()


def edited_copies(img: Image.Image) -> dict[str, Image.Image]:
    """The copies a shared image turns into: smaller, re-encoded, cropped, turned, mirrored."""
    w, h = img.size
    return {
        "resized": img.resize((w * 3 // 4, h * 3 // 4), Image.Resampling.LANCZOS),
        "recompressed": Image.open(io.BytesIO(encode(img, quality=60))).convert("RGB"),
        "cropped": img.crop((w // 200, h // 200, w - w // 200, h - h // 200)),
        "rotated": img.transpose(Image.Transpose.ROTATE_90),
        "mirrored": img.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    }
