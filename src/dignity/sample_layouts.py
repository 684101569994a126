"""Benign layouts around a picture, as pictures are re-shared: phone screenshots (light and
dark), desktop browser windows, 2 x 2 collages, memes with text bars, chat forwards on a
textured wallpaper, and bordered reposts with an @handle.

For the tests and ``bench/regions.py`` of :mod:`dignity.regions`: each layout is drawn with
Pillow from the picture it is given (a benign photo or a generated landscape) and unrelated
filler pictures, and returns where the picture landed, so that a proposal's tightness can be
measured. Every layout is seeded and deterministic. Nothing here edits the picture itself
beyond scaling it (and rounding the corners of a chat bubble).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from PIL import Image, ImageDraw, ImageFilter, ImageFont

Box = tuple[int, int, int, int]
Layout = Callable[[Image.Image, random.Random, Sequence[Image.Image]], tuple[Image.Image, Box]]

_WORDS = (
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "friends",
    "share",
    "photos",
    "from",
    "trip",
    "weekend",
    "at",
    "lake",
    "sunset",
    "hiking",
    "trail",
    "coffee",
    "morning",
    "view",
    "city",
    "lights",
)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(8, size))


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def _text_lines(
    draw: ImageDraw.ImageDraw,
    rng: random.Random,
    x: int,
    y: int,
    width: int,
    lines: int,
    size: int,
    fill: tuple[int, int, int],
) -> int:
    """Lines of filler text from (x, y) within ``width``; returns the y after them."""
    font = _font(size)
    for _ in range(lines):
        text = _words(rng, rng.randrange(3, 9))
        while len(text) > 4 and draw.textlength(text, font=font) > width:
            text = text[: len(text) * 3 // 4]
        draw.text((x, y), text, fill=fill, font=font)
        y += int(size * 1.5)
    return y


def _fit(picture: Image.Image, width: int, height: int) -> Image.Image:
    """``picture`` scaled to fit ``width`` x ``height`` keeping its aspect."""
    scale = min(width / picture.width, height / picture.height)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture.resize(size, Image.Resampling.LANCZOS)


def _icons(
    draw: ImageDraw.ImageDraw, rng: random.Random, y: int, w: int, size: int, fill: tuple[int, ...]
) -> None:
    n = rng.randrange(3, 6)
    for i in range(n):
        cx = (i + 0.5) * w / n
        if rng.random() < 0.5:
            draw.ellipse([cx - size / 2, y, cx + size / 2, y + size], outline=fill, width=3)
        else:
            draw.rounded_rectangle(
                [cx - size / 2, y, cx + size / 2, y + size], radius=size // 4, outline=fill, width=3
            )


def phone(
    picture: Image.Image, rng: random.Random, others: Sequence[Image.Image], *, dark: bool
) -> tuple[Image.Image, Box]:
    """A social app's post on a phone: status bar, app bar, author row, the picture (full
    width, or inset), caption lines, actions and a navigation bar."""
    w = rng.choice([720, 828, 1080])
    h = int(w * rng.uniform(2.0, 2.2))
    bg = (rng.randrange(0, 30),) * 3 if dark else (rng.randrange(236, 256),) * 3
    ink = (230, 230, 230) if dark else (20, 20, 20)
    img = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(img)
    u = w // 36  # a unit of spacing
    d.text((u, u // 2), f"{rng.randrange(1, 13)}:{rng.randrange(60):02d}", fill=ink, font=_font(u))
    if rng.random() < 0.5:
        _icons(d, rng, u // 2, w // 3, u, ink)
    bar_colour = bg if rng.random() < 0.5 else tuple(rng.randrange(40, 200) for _ in range(3))
    y = 2 * u
    d.rectangle([0, y, w, y + 4 * u], fill=bar_colour)
    d.text((2 * u, y + u), _words(rng, 2).title(), fill=ink, font=_font(int(1.6 * u)))
    y += 5 * u
    d.ellipse([u, y, 4 * u, y + 3 * u], fill=tuple(rng.randrange(60, 220) for _ in range(3)))
    d.text(
        (5 * u, y + u // 2),
        "@" + rng.choice(_WORDS) + str(rng.randrange(99)),
        fill=ink,
        font=_font(int(1.2 * u)),
    )
    y += 4 * u
    inset = 0 if rng.random() < 0.6 else rng.randrange(u, 3 * u)
    shown = _fit(picture, w - 2 * inset, int(h * 0.5))
    x = (w - shown.width) // 2
    img.paste(shown, (x, y))
    box = (x, y, x + shown.width, y + shown.height)
    y += shown.height + u
    _icons(d, rng, y, w // 2, 2 * u, ink)
    y += 3 * u
    y = _text_lines(d, rng, u, y, w - 2 * u, rng.randrange(2, 5), int(1.1 * u), ink)
    d.rectangle([0, h - 5 * u, w, h], fill=bar_colour)
    _icons(d, rng, h - 4 * u, w, 2 * u, ink)
    return img, box


def browser(
    picture: Image.Image, rng: random.Random, others: Sequence[Image.Image]
) -> tuple[Image.Image, Box]:
    """A desktop browser window: tabs, address bar, a page with text and the picture."""
    w, h = rng.choice([(1440, 900), (1920, 1080), (1366, 768)])
    page = (255, 255, 255) if rng.random() < 0.6 else (rng.randrange(230, 250),) * 3
    img = Image.new("RGB", (w, h), page)
    d = ImageDraw.Draw(img)
    chrome = (rng.randrange(200, 235),) * 3 if rng.random() < 0.6 else (rng.randrange(30, 60),) * 3
    d.rectangle([0, 0, w, 80], fill=chrome)
    for i in range(rng.randrange(2, 6)):
        d.rounded_rectangle([10 + i * 230, 8, 230 + i * 230, 38], radius=8, fill=page)
        d.text((24 + i * 230, 14), _words(rng, 2), fill=(60, 60, 60), font=_font(16))
    d.rounded_rectangle([120, 46, w - 200, 74], radius=14, fill=(250, 250, 250), outline=(180,) * 3)
    d.text(
        (140, 52), "https://example.org/" + rng.choice(_WORDS), fill=(40, 40, 40), font=_font(16)
    )
    column = rng.randrange(260, 420)
    _text_lines(d, rng, 40, 120, column - 60, rng.randrange(10, 25), 16, (40, 40, 40))
    d.text((column, 100), _words(rng, 4).title(), fill=(20, 20, 20), font=_font(30))
    avail_w, avail_h = int((w - column - 40) * rng.uniform(0.6, 0.95)), h - 260
    shown = _fit(picture, avail_w, avail_h)
    x, y = column + rng.randrange(0, max(1, w - column - 40 - shown.width)), 160
    img.paste(shown, (x, y))
    _text_lines(d, rng, column, y + shown.height + 20, w - column - 60, 3, 16, (40, 40, 40))
    return img, (x, y, x + shown.width, y + shown.height)


def collage(
    picture: Image.Image, rng: random.Random, others: Sequence[Image.Image]
) -> tuple[Image.Image, Box]:
    """2 x 2 cells of the picture's aspect, with gutters; the picture in one cell."""
    cw = rng.randrange(360, 640)
    ch = round(cw * picture.height / picture.width)
    g = rng.randrange(4, 28)
    colour = rng.choice([(255, 255, 255), (0, 0, 0), tuple(rng.randrange(256) for _ in range(3))])
    img = Image.new("RGB", (2 * cw + 3 * g, 2 * ch + 3 * g), colour)
    spot = rng.randrange(4)
    box: Box = (0, 0, 0, 0)
    for i in range(4):
        x, y = g + (i % 2) * (cw + g), g + (i // 2) * (ch + g)
        src = picture if i == spot else others[rng.randrange(len(others))]
        img.paste(src.resize((cw, ch), Image.Resampling.LANCZOS), (x, y))
        if i == spot:
            box = (x, y, x + cw, y + ch)
    return img, box


def meme(
    picture: Image.Image, rng: random.Random, others: Sequence[Image.Image]
) -> tuple[Image.Image, Box]:
    """The picture full width under a white caption bar (and, half the time, over one)."""
    w = rng.randrange(500, 1000)
    shown = _fit(picture, w, 10 * w)
    size = max(14, w // rng.randrange(14, 22))
    top = int(size * (1.6 * rng.randrange(1, 3) + 0.8))
    bottom = int(size * 2.4) if rng.random() < 0.5 else 0
    bar = (255, 255, 255) if rng.random() < 0.8 else (0, 0, 0)
    ink = (0, 0, 0) if bar == (255, 255, 255) else (255, 255, 255)
    img = Image.new("RGB", (w, top + shown.height + bottom), bar)
    d = ImageDraw.Draw(img)
    font = _font(size)
    y = int(size * 0.4)
    while y + size * 1.6 <= top:
        text = _words(rng, rng.randrange(2, 6)).upper()
        while len(text) > 4 and d.textlength(text, font=font) > w - 20:
            text = text[: len(text) * 3 // 4]
        d.text(((w - d.textlength(text, font=font)) / 2, y), text, fill=ink, font=font)
        y += int(size * 1.6)
    img.paste(shown, (0, top))
    if bottom:
        d.text((10, top + shown.height + size // 2), _words(rng, 3), fill=ink, font=font)
    return img, (0, top, shown.width, top + shown.height)


def chat(
    picture: Image.Image, rng: random.Random, others: Sequence[Image.Image]
) -> tuple[Image.Image, Box]:
    """A chat forward: a patterned wallpaper, text bubbles and an image bubble with padding,
    rounded corners and a time stamp on the picture."""
    w = rng.choice([720, 828, 1080])
    h = int(w * rng.uniform(2.0, 2.2))
    base = tuple(rng.randrange(200, 240) for _ in range(3))
    img = Image.new("RGB", (w, h), base)
    d = ImageDraw.Draw(img)
    # The wallpaper: faint doodles a few levels off the base colour.
    for _ in range(400):
        x, y, s = rng.randrange(w), rng.randrange(h), rng.randrange(10, 40)
        tone = tuple(max(0, c - rng.randrange(8, 25)) for c in base)
        if rng.random() < 0.5:
            d.ellipse([x, y, x + s, y + s], outline=tone, width=2)
        else:
            d.line([x, y, x + s, y + rng.randrange(-s, s)], fill=tone, width=2)
    u = w // 36
    header = tuple(rng.randrange(20, 120) for _ in range(3))
    d.rectangle([0, 0, w, 6 * u], fill=header)
    d.text((6 * u, 2 * u), _words(rng, 2).title(), fill=(255, 255, 255), font=_font(int(1.5 * u)))
    y = 8 * u
    mine = (rng.randrange(200, 230), 250, rng.randrange(190, 220))
    for _ in range(rng.randrange(1, 4)):
        bw = rng.randrange(w // 3, w * 3 // 4)
        left = rng.random() < 0.5
        x = u if left else w - u - bw
        d.rounded_rectangle(
            [x, y, x + bw, y + 4 * u], radius=u, fill=(255, 255, 255) if left else mine
        )
        _text_lines(d, rng, x + u, y + u, bw - 2 * u, 1, int(1.1 * u), (20, 20, 20))
        y += 5 * u
    pad = rng.randrange(4, 12)
    bubble = (255, 255, 255) if rng.random() < 0.5 else mine
    shown = _fit(picture, int(w * rng.uniform(0.6, 0.8)), int(h * 0.45))
    x = u if rng.random() < 0.5 else w - u - shown.width - 2 * pad
    d.rounded_rectangle(
        [x, y, x + shown.width + 2 * pad, y + shown.height + 2 * pad + 3 * u], radius=u, fill=bubble
    )
    mask = Image.new("L", shown.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle(
        [0, 0, shown.width - 1, shown.height - 1], radius=u, fill=255
    )
    img.paste(shown, (x + pad, y + pad), mask)
    stamp = f"{rng.randrange(1, 13)}:{rng.randrange(60):02d}"
    d.text(
        (x + pad + shown.width - 5 * u, y + pad + shown.height - 2 * u),
        stamp,
        fill=(255, 255, 255),
        font=_font(u),
    )
    _text_lines(d, rng, x + pad, y + 2 * pad + shown.height, shown.width, 1, u, (40, 40, 40))
    box = (x + pad, y + pad, x + pad + shown.width, y + pad + shown.height)
    d.rectangle([0, h - 6 * u, w, h], fill=(250, 250, 250))
    d.rounded_rectangle(
        [u, h - 5 * u, w - 6 * u, h - u],
        radius=2 * u,
        fill=(255, 255, 255),
        outline=(200, 200, 200),
    )
    return img, box


def bordered(
    picture: Image.Image, rng: random.Random, others: Sequence[Image.Image]
) -> tuple[Image.Image, Box]:
    """A repost framed in one colour, wider at the bottom, with an @handle there."""
    shown = _fit(picture, rng.randrange(500, 1000), 1000)
    side = [int(shown.width * rng.uniform(0.02, 0.1)) for _ in range(3)]
    bottom = int(shown.height * rng.uniform(0.08, 0.2))
    colour = tuple(rng.randrange(256) for _ in range(3))
    img = Image.new(
        "RGB", (shown.width + side[0] + side[1], shown.height + side[2] + bottom), colour
    )
    img.paste(shown, (side[0], side[2]))
    d = ImageDraw.Draw(img)
    ink = (0, 0, 0) if sum(colour) > 380 else (255, 255, 255)
    size = max(12, bottom // 3)
    d.text(
        (side[0], side[2] + shown.height + bottom // 3),
        "@" + rng.choice(_WORDS) + str(rng.randrange(999)),
        fill=ink,
        font=_font(size),
    )
    return img, (side[0], side[2], side[0] + shown.width, side[2] + shown.height)


LAYOUTS: dict[str, Layout] = {
    "phone-light": lambda p, r, o: phone(p, r, o, dark=False),
    "phone-dark": lambda p, r, o: phone(p, r, o, dark=True),
    "browser": browser,
    "collage-2x2": collage,
    "meme": meme,
    "chat": chat,
    "bordered": bordered,
}


def soften(img: Image.Image, rng: random.Random) -> Image.Image:
    """What re-sharing does to a screenshot: sometimes a slight blur (a resize on the way)."""
    return img.filter(ImageFilter.GaussianBlur(0.6)) if rng.random() < 0.2 else img
