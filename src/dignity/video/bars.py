"""Letterbox and pillarbox bars: flat bands of one colour at a video's edges, found over its frames.

A copy with bars added (a 4:3 film put in a 16:9 frame, a landscape clip reposted in a portrait
frame) or with the original's bars cropped away shows the same picture, but every frame's PDQ
changes, because PDQ hashes the whole frame. Dignity's own matching therefore also hashes each
frame with the bars trimmed (:attr:`dignity.video.vpdq.VpdqFrame.trimmed`), and compares raw
against trimmed both ways. Those hashes are never exchanged: vPDQ stays Meta's, of raw frames.

A bar is a run of rows (or columns) from an edge whose pixels all lie within a small tolerance
of the edge's own colour (any colour, not only black; the tolerance absorbs compression noise).
One frame can mislead: a dark scene looks like black bars, a flat sky like a band. So bars are
decided over several frames: a side has a bar only when every informative frame shows one there,
in one colour, and most of them at the same extent (a real bar does not move; a sky's flat part
changes with every shot); it is then the smallest extent any frame shows (dark picture next to a
bar only ever makes it look wider). Bars come in pairs (letterbox above and below, pillarbox
left and right; not always equal): a flat band on one side only is a scene's sky or wall, and
is left. A frame that is flat nearly all over (a black frame, a fade) says nothing. Bars
thinner than :data:`MIN_BAR` of the side are ignored (PDQ hardly notices them), and what is kept
is never under :data:`MIN_KEEP` of the side, so nothing is ever trimmed to nothing.

Cost: the first frames are sampled (every few pixels, rows near the edges only; about 2 ms a
frame at 1080p) until the bars are decided, then only a video with bars pays, one more PDQ a
hashed frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

TOLERANCE = 24  # per channel: H.264 noise in a flat band stays well within it
FLAT_SHARE = 0.97  # of a row's pixels within tolerance for the row to count as bar
MIN_BAR = 0.03  # of the side: thinner edges are left alone
MAX_BAR = 0.4  # of the side, per side: more is a flat scene, not a bar
MIN_KEEP = 0.2  # of the side: the least picture a trim may leave
DETECT_SIDE = 160  # frames are sampled down to at most this many pixels a side to look for bars
FRAMES_TO_DECIDE = 12  # informative frames looked at before deciding (more than one shot)
SAME_EXTENT = 0.02  # of the side (at least 2 px): extents this close are the same bar
MIN_INFORMATIVE = 2  # fewer informative frames than this: no bars


@dataclass(frozen=True)
class Bars:
    """Bar widths in pixels of the hashed frame: ``top``, ``bottom``, ``left``, ``right``."""

    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0

    def __bool__(self) -> bool:
        return bool(self.top or self.bottom or self.left or self.right)

    def crop(self, pixels: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """The picture inside the bars (a view, no copy)."""
        h, w = pixels.shape[:2]
        return pixels[self.top : h - self.bottom, self.left : w - self.right]

    def scaled(self, factor: int) -> Bars:
        """These bars on a frame shrunk ``factor`` times, rounded inwards (a trim never takes
        picture that the full-size trim keeps)."""
        return Bars(
            -(-self.top // factor),
            -(-self.bottom // factor),
            -(-self.left // factor),
            -(-self.right // factor),
        )


def _run(flat: NDArray[np.bool_]) -> int:
    """Length of the leading run of True."""
    off = np.flatnonzero(~flat)
    return int(off[0]) if off.shape[0] else int(flat.shape[0])


def _edge(lines: NDArray[np.uint8], step: int) -> tuple[int, NDArray[np.int16]]:
    """The flat band at the start of ``lines`` (rows x pixels x 3, the edge in row 0) in
    pixels, and its colour, from every ``step``-th row and pixel. Only rows up to just past
    :data:`MAX_BAR` are looked at: a longer band is no bar whatever its exact length."""
    head = lines[: int(MAX_BAR * lines.shape[0]) + 2 * step : step, ::step].astype(np.int16)
    # The mean, not the median: a row that is not flat fails whatever its reference colour.
    ref = head[0].mean(axis=0).astype(np.int16)
    near = np.abs(head - ref).max(axis=2) <= TOLERANCE
    n = _run(near.mean(axis=1) >= FLAT_SHARE)
    if n == 0 or step == 1:
        return n, ref
    # The band ends between the last sampled row in it and the next one: look at those rows.
    start = (n - 1) * step + 1
    between = lines[start : start + step - 1, ::step].astype(np.int16)
    near = np.abs(between - ref).max(axis=2) <= TOLERANCE
    return start + _run(near.mean(axis=1) >= FLAT_SHARE), ref


def frame_bars(pixels: NDArray[np.uint8]) -> Bars | None:
    """The flat bands at the edges of one RGB frame (H x W x 3), or None when the frame says
    nothing about bars (flat nearly all over, or a band past :data:`MAX_BAR`: a dark or plain
    scene, not a bar)."""
    found = _frame_edges(pixels)
    return None if found is None else found[0]


def _frame_edges(pixels: NDArray[np.uint8]) -> tuple[Bars, NDArray[np.int16]] | None:
    """:func:`frame_bars` with each side's edge colour (4 x 3: top, bottom, left, right)."""
    h, w = pixels.shape[:2]
    step = -(-max(h, w) // DETECT_SIDE)
    top, c_top = _edge(pixels, step)
    bottom, c_bottom = _edge(pixels[::-1], step)
    if max(top, bottom) > MAX_BAR * h:
        return None
    inner = pixels[top : h - bottom]
    left, c_left = _edge(inner.transpose(1, 0, 2), step)
    right, c_right = _edge(inner[:, ::-1].transpose(1, 0, 2), step)
    if max(left, right) > MAX_BAR * w:
        return None
    return Bars(top, bottom, left, right), np.stack([c_top, c_bottom, c_left, c_right])


class BarFinder:
    """Bars decided over a video's frames: :meth:`see` frames until :attr:`ready`, then
    :meth:`decide` (also fine earlier, e.g. at the end of a short video)."""

    def __init__(self, frames_to_decide: int = FRAMES_TO_DECIDE) -> None:
        self.frames_to_decide = frames_to_decide
        self._seen: list[Bars] = []
        self._colours: list[NDArray[np.int16]] = []
        self._size: tuple[int, int] | None = None

    @property
    def ready(self) -> bool:
        return len(self._seen) >= self.frames_to_decide

    def see(self, pixels: NDArray[np.uint8]) -> None:
        h, w = pixels.shape[:2]
        if self._size is None:
            self._size = (h, w)
        elif self._size != (h, w):
            return  # a frame of another size (a resolution switch mid-stream): not comparable
        found = _frame_edges(pixels)
        if found is not None:
            self._seen.append(found[0])
            self._colours.append(found[1])

    def decide(self) -> Bars:
        """Each side's bar (see the module docstring); no bars when too few frames were
        informative or what is left would be too small."""
        if len(self._seen) < MIN_INFORMATIVE or self._size is None:
            return Bars()
        h, w = self._size
        colours = np.stack(self._colours)  # frames x 4 sides x 3
        sides = []
        for i, (side, length) in enumerate(zip(_SIDES, (h, h, w, w), strict=True)):
            extents = np.asarray([getattr(b, side) for b in self._seen])
            low = int(extents.min())
            same = extents <= low + max(2, SAME_EXTENT * length)
            spread = np.abs(colours[:, i] - np.median(colours[:, i], axis=0)).max()
            steady = 2 * int(same.sum()) >= extents.shape[0] and spread <= TOLERANCE
            sides.append(low if steady and low >= MIN_BAR * length else 0)
        top, bottom, left, right = sides
        if not (top and bottom):
            top = bottom = 0
        if not (left and right):
            left = right = 0
        if h - top - bottom < MIN_KEEP * h or w - left - right < MIN_KEEP * w:
            return Bars()
        return Bars(top, bottom, left, right)


_SIDES = ("top", "bottom", "left", "right")


def find_bars(frames: list[NDArray[np.uint8]]) -> Bars:
    """The bars of a list of frames (all of them looked at): for tests and small inputs."""
    finder = BarFinder(frames_to_decide=len(frames))
    for f in frames:
        finder.see(f)
    return finder.decide()
