"""Pictures inside pictures: the rectangles of an upload that may hold an embedded picture.

Intimate images travel as phone screenshots, collages, memes, chat forwards and bordered
reposts, where whole-image PDQ cannot see them. :func:`propose` finds, from the decoded upload
(no second decode), at most :data:`MAX_REGIONS` rectangles tight to the edges of the pictures
in it, with no learned model. It works on a nearest-neighbour sample of the image (long side
:data:`WORK_SIDE`, ~0.2 ms) by recursive XY cuts, as document layout analysis does: a
*separator* is a run of rows (or columns) that are each nearly one colour (light or dark UI,
meme bars, frames, collage gutters, a low-contrast chat wallpaper) and keep that colour along
the run, so that a gradient sky, whose rows are uniform but change colour, is never cut. Each
block is cut across at its separators, then along, until nothing cuts it; every block left is
a candidate. Blocks that are mostly one colour (text, UI bars) or too small to hash are
dropped; the edges of the rest are refined on the decoded pixels to the exact row and column
where the picture starts. For pictures on a textured background (no separator reaches them)
a second pass looks for rectangles bounded by long straight edges.

:func:`region_hashes` hashes each proposal with PDQ (dihedral when asked) from the same decoded
image, read once as grey (luma) pixels: PDQ only reads luma, and a third of the bytes per
proposal is most of their cost once there are several. A low-detail region gets a low PDQ
quality and the engine's quality floor skips it, as it does for whole images. Coordinates
are in the upload's pixels (the decode may be reduced). The steps made of many small array
operations (separator runs, edge runs, edge refinement, dominant levels, corner fills) run in
a compiled kernel (``_regioncore.c``) when it is built; the numpy code here makes the same
decisions and is the fallback and the tests' oracle.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from dignity.hashing.pdq import (
    PDQ_DOWNSAMPLE,
    PdqHash,
    box_sample,
    pdq_from_grey,
    pdq_from_pixels,
)
from dignity.hashing.signals import ImageHashes, Region, RegionHash, decode_upload, hash_media
from dignity.media import Media
from dignity.settings import Settings

try:
    from dignity import _regioncore as _core
except ImportError:  # pragma: no cover - a checkout whose extension was never compiled
    _core = None  # type: ignore[assignment]
    warnings.warn(
        "dignity._regioncore is not built (pip install -e . compiles it): region proposals "
        "fall back to numpy, about 1 ms slower per image",
        RuntimeWarning,
        stacklevel=1,
    )

__all__ = [
    "MAX_REGIONS",
    "Region",
    "RegionHash",
    "hash_upload",
    "propose",
    "region_hashes",
    "with_regions",
]

MAX_REGIONS = 8
WORK_SIDE = 384  # long side of the working sample, px (edges are refined on the image)
PLAIN_STD = 6.0  # a line whose grey levels spread less than this is plain
STEP = 3.0  # a level change between neighbouring plain lines that ends a run
DRIFT = 8.0  # a plain run whose level drifts further is a gradient, not a separator
SHARP_STD = 18.0  # content next to a separator: this busy (text, a picture's edge) ...
SHARP_STEP = 14.0  # ... or this far from the separator's level
SHARP_LINES = 3  # within this many lines
MIN_SIDE = 64  # px of the decoded image: smaller regions carry too little for PDQ
MIN_SHARE = 0.03  # of the image's area
MAX_SHARE = 0.97  # a region covering more is the whole image again (already hashed)
MAX_ASPECT = 4.0
SAME_BOX = 0.97  # IoU over which two proposals are one (PDQ tells 3% apart)
DOMINANT = 0.55  # a block with more of one colour than this is text or UI, not a picture
_MAX_DEPTH = 8
_COMPILED = True  # _regioncore.c's kernels when built (tests compare them with the numpy path)
_MOST_EDGES = 64  # long edge runs kept per axis (pairs of them are tried at once)
CORNER_TOL = 24  # per channel: a corner pixel this close to the colour outside is UI
EDGE_STEP = 18  # grey levels between neighbouring sample pixels that make an edge


Box = tuple[int, int, int, int]  # x0, y0, x1, y1
Rgb = tuple[int, int, int]


@dataclass(frozen=True, eq=False)
class _Sample:
    """A nearest-neighbour sample of the image (long side <= WORK_SIDE): ``grey`` for the
    cuts, ``rgb`` to tell a gradient (whose grey level may stay put while its hue turns) from
    a separator; ``fx``, ``fy`` image pixels per sample pixel. Nearest keeps plain areas
    exactly plain, and costs a fraction of a millisecond."""

    grey: NDArray[np.uint8]
    rgb: NDArray[np.uint8]
    fx: float
    fy: float


def _sample(image: Image.Image) -> _Sample:
    w, h = image.size
    scale = min(1.0, WORK_SIDE / max(w, h))
    ww, wh = max(1, round(w * scale)), max(1, round(h * scale))
    if image.mode != "RGB":
        image = image.convert("RGB")
    small = image if (ww, wh) == (w, h) else image.resize((ww, wh), Image.Resampling.NEAREST)
    return _Sample(_array(small.convert("L")), _array(small), w / ww, h / wh)


def _array(image: Image.Image) -> NDArray[np.uint8]:
    """``image``'s pixels (L or RGB) as a read-only array: ``np.asarray`` on a Pillow image
    goes through its array interface, 4-7 times slower (2-7 ms for an RGB screenshot)."""
    shape = (image.height, image.width) if image.mode == "L" else (image.height, image.width, 3)
    return np.frombuffer(image.tobytes(), dtype=np.uint8).reshape(shape)


class _Stats:
    """Integral images of the sample (sum and sum of squares of grey, sums of RGB), so that
    the mean, spread and colour of any row or column segment cost O(1): the recursion reads
    each block's lines many times."""

    def __init__(self, grey: NDArray[np.uint8], rgb: NDArray[np.uint8]) -> None:
        # Sums are exact integers either way: kept as int32 (a float copy cost more than the
        # integral), they give the same floats once divided.
        s, q = cv2.integral2(grey, sdepth=cv2.CV_32S, sqdepth=cv2.CV_64F)
        self.s = np.asarray(s, dtype=np.int32)
        self.q = q
        # Sums of each channel, for the mean colour of a line (exact in 32 bits).
        self.rgb = np.asarray(cv2.integral(rgb, sdepth=cv2.CV_32S), dtype=np.int32)

    def lines(self, box: Box, axis: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Mean (n,) and standard deviation (n,) of each row (axis 0) or column (axis 1) of
        ``box``, over the box's extent across."""
        x0, y0, x1, y1 = box
        if axis == 0:
            n = x1 - x0
            rows = self.s[y0 : y1 + 1, x1] - self.s[y0 : y1 + 1, x0]
            sq = self.q[y0 : y1 + 1, x1] - self.q[y0 : y1 + 1, x0]
        else:
            n = y1 - y0
            rows = self.s[y1, x0 : x1 + 1] - self.s[y0, x0 : x1 + 1]
            sq = self.q[y1, x0 : x1 + 1] - self.q[y0, x0 : x1 + 1]
        mean = np.diff(rows) / n
        return mean, np.sqrt(np.maximum(np.diff(sq) / n - mean * mean, 0.0))


class _Runs:
    """The runs of plain lines of one block along one axis that may be separators (level held
    within STEP line to line and DRIFT overall, colour held), as ``(start, end)`` lines of
    the block, with whether each meets content sharply at both ends. The strict and the loose
    cuts meet most blocks both: this is computed once per (block, axis) and read by both."""

    __slots__ = ("loose", "strict")

    def __init__(self, stats: _Stats, block: Box, axis: int) -> None:
        self.loose: list[tuple[int, int]] = []
        self.strict: list[tuple[int, int]] = []
        if _core is not None and _COMPILED:
            h1, w1 = stats.s.shape
            self.loose, self.strict = _core.runs(
                stats.s, stats.q, stats.rgb, h1, w1, *block, axis,
                PLAIN_STD, STEP, DRIFT, SHARP_STD, SHARP_STEP, SHARP_LINES,
            )  # fmt: skip
            return
        mean, spread = stats.lines(block, axis)
        n = len(mean)
        plain = spread <= PLAIN_STD
        if not plain.any():
            return
        # A run goes on while lines are plain and each is within STEP of the one before. All
        # runs are judged at once (text makes many short ones).
        joined = np.zeros(n, dtype=bool)
        joined[1:] = plain[1:] & plain[:-1] & (np.abs(np.diff(mean)) <= STEP)
        starts = np.flatnonzero(plain & ~joined)
        breaks = np.append(np.flatnonzero(~joined), n)
        ends = breaks[np.searchsorted(breaks, starts, side="right")]
        bounds = np.stack((starts, ends), axis=1).ravel()
        if bounds[-1] == n:
            bounds = bounds[:-1]
        top = np.maximum.reduceat(mean, bounds)[::2]
        bottom = np.minimum.reduceat(mean, bounds)[::2]
        keep = top - bottom <= DRIFT
        # A run's colour must hold between its quarter points (a hue gradient's does not);
        # its ends are left out, as JPEG's half-resolution chroma bleeds into them.
        quarter = (ends - starts) // 4
        keep &= ((ends - starts) < 4) | _colour_held(
            stats, block, axis, starts + quarter, ends - 1 - quarter
        )
        starts, ends = starts[keep], ends[keep]
        if not len(starts):
            return
        # Both ends of each run at once: the line before it, then the line after it. A
        # picture's own flat part (a dark foot, an overexposed sky) fades into the picture;
        # the UI or a frame around a picture stops at it.
        sharp = _sharp(
            mean,
            spread,
            plain,
            np.concatenate((starts - 1, ends)),
            np.concatenate((mean[starts], mean[ends - 1])),
            np.repeat(np.array([-1, 1]), len(starts)),
        )
        sharp = sharp[: len(starts)] & sharp[len(starts) :]
        self.loose = list(zip(starts.tolist(), ends.tolist(), strict=True))
        self.strict = [run for run, ok in zip(self.loose, sharp.tolist(), strict=True) if ok]


def _colour_held(
    stats: _Stats, block: Box, axis: int, first: NDArray[np.intp], second: NDArray[np.intp]
) -> NDArray[np.bool_]:
    """Whether lines ``first`` and ``second`` of ``block`` (rows for axis 0, columns for 1)
    have mean colours within 2 * DRIFT on every channel, from the integral image (exact
    sums: the same floats as averaging the lines' pixels)."""
    x0, y0, x1, y1 = block
    rsum = stats.rgb

    def colour(lines: NDArray[np.intp]) -> NDArray[np.float64]:
        if axis == 0:
            r = y0 + lines
            total = rsum[r + 1, x1] - rsum[r, x1] - rsum[r + 1, x0] + rsum[r, x0]
            return np.asarray(total / (x1 - x0), dtype=np.float64)
        c = x0 + lines
        total = rsum[y1, c + 1] - rsum[y1, c] - rsum[y0, c + 1] + rsum[y0, c]
        return np.asarray(total / (y1 - y0), dtype=np.float64)

    held: NDArray[np.bool_] = np.abs(colour(first) - colour(second)).max(axis=1) <= 2 * DRIFT
    return held


def _sharp(
    mean: NDArray[np.float64],
    spread: NDArray[np.float64],
    plain: NDArray[np.bool_],
    lines: NDArray[np.intp],
    level: NDArray[np.float64],
    way: NDArray[np.intp],
) -> NDArray[np.bool_]:
    """For runs of plain lines at ``level`` next to ``lines`` (the line just before a run,
    ``way`` -1, or just after it, 1): whether content meets the run sharply there, within
    SHARP_LINES lines that way (the edge of a text line or of a resampled picture is soft).
    The block's edge, or a plain line of another level (a step), is sharp."""
    n = len(mean)
    inside = (lines >= 0) & (lines < n)
    at = np.clip(lines, 0, n - 1)
    # Clipping at the block's ends repeats a line of the window itself: the same max.
    near = np.clip(at[:, None] + way[:, None] * np.arange(SHARP_LINES), 0, n - 1)
    busy = spread[near].max(axis=1) > SHARP_STD
    off = np.abs(mean[near] - level[:, None]).max(axis=1) > SHARP_STEP
    result: NDArray[np.bool_] = ~inside | plain[at] | busy | off
    return result


def _cut(runs: list[tuple[int, int]], n: int) -> list[tuple[int, int, int, int]]:
    """The segments of n lines between separator ``runs`` (sorted, apart), each as
    ``(a, b, ga, gb)``: the segment, and the segment grown over the separator run next to it
    on each side when that run is one of several levels (another run right beyond it: a
    step between it and the rest of the separator). The nearest level may be the picture's
    own flat edge, the farthest is the UI's. Runs that touch differ in level by more than
    STEP (else they would be one run)."""
    by_end = {e: s for s, e in runs}
    by_start = dict(runs)
    out = []
    at = 0
    for s, e in [*runs, (n, n)]:
        if s > at:
            before = by_end.get(at)
            after = by_start.get(s)
            ga = before if before is not None and before in by_end else at
            gb = after if after is not None and after in by_start else s
            out.append((at, s, ga, gb))
        at = e
    return out


def _xy_cut(
    sample: _Sample,
    stats: _Stats,
    min_w: int,
    min_h: int,
    out: list[tuple[Box, int]],
    runs: dict[tuple[Box, int], _Runs],
    *,
    strict: bool,
) -> None:
    """Cut the sample at its separators, across first then along, recursively; every block
    met is appended with its depth (leaves and the blocks they came from). ``runs`` keeps
    each block's runs for the other pass."""
    stack: list[tuple[Box, int]] = [((0, 0, sample.grey.shape[1], sample.grey.shape[0]), 0)]
    while stack:
        block, depth = stack.pop()
        x0, y0, x1, y1 = block
        if x1 - x0 < min_w or y1 - y0 < min_h:
            continue
        out.append((block, depth))
        if depth >= _MAX_DEPTH:
            continue
        for axis in (0, 1):
            lo, n = (y0, y1 - y0) if axis == 0 else (x0, x1 - x0)
            found = runs.get((block, axis))
            if found is None:
                found = runs[block, axis] = _Runs(stats, block, axis)
            segs = _cut(found.strict if strict else found.loose, n)
            if not segs or (len(segs) == 1 and segs[0][:2] == (0, n)):
                continue  # nothing cuts this way: try the other axis
            for a, b, ga, gb in segs:
                child = (x0, lo + a, x1, lo + b) if axis == 0 else (lo + a, y0, lo + b, y1)
                stack.append((child, depth + 1))
                # A picture's own flat band (a clear sky) next to the UI is a separator of
                # another level beside the UI's: also propose the segment grown over it.
                if (ga, gb) != (a, b):
                    grown = (x0, lo + ga, x1, lo + gb) if axis == 0 else (lo + ga, y0, lo + gb, y1)
                    out.append((grown, depth + 1))
            break


def _edge_rects(a: NDArray[np.uint8], min_w: int, min_h: int) -> list[Box]:
    """Rectangles bounded by long straight edges: a picture pasted on a textured background
    (a chat wallpaper) has four, the background's pattern rarely any. An edge row is a row
    whose step to the next one is large along a run of at least ``min_w`` columns."""
    if _core is not None and _COMPILED:
        h, w = a.shape
        found_rows = _core.edge_runs(a, h, w, 0, min_w, EDGE_STEP, _MOST_EDGES)
        found_cols = _core.edge_runs(a, h, w, 1, min_h, EDGE_STEP, _MOST_EDGES)
    else:
        # OpenCV's absolute difference of uint8 lines: a third of the time of numpy's int16.
        dy = cv2.absdiff(a[1:], a[:-1]) > EDGE_STEP  # (h-1, w): step between rows y and y+1
        at = np.ascontiguousarray(a.T)
        dxt = cv2.absdiff(at[1:], at[:-1]) > EDGE_STEP  # (w-1, h): columns x and x+1
        found_rows, found_cols = _runs(dy, min_w), _runs(dxt, min_h)
    rows = np.array(found_rows, dtype=np.intp).reshape(-1, 3)  # (y, x0, x1): an edge
    # below row y, over columns x0..x1
    cols = np.array(found_cols, dtype=np.intp).reshape(-1, 3)  # (x, y0, y1)
    if len(rows) < 2 or not len(cols):
        return []
    # Every pair of edge rows (a above b, in the order of a nested loop over them), at once:
    # the pairs and the columns are at most 64 each, and a Python loop over them was a fifth
    # of the proposals' cost.
    ia, ib = np.triu_indices(len(rows), k=1)
    ya, yb = rows[ia, 0], rows[ib, 0]
    left = np.maximum(rows[ia, 1], rows[ib, 1])
    right = np.minimum(rows[ia, 2], rows[ib, 2])
    keep = (yb - ya >= min_h) & (right - left >= min_w)
    ya, yb, left, right = ya[keep], yb[keep], left[keep], right[keep]
    # Both sides must have a vertical edge spanning the rows between, give or take rounded
    # corners.
    slack = np.maximum(3, (yb - ya) // 8)[:, None]
    cx, cy0, cy1 = cols[:, 0][None, :], cols[:, 1][None, :], cols[:, 2][None, :]
    side = (
        (cy0 <= ya[:, None] + slack)
        & (cy1 >= yb[:, None] - slack)
        & (left[:, None] - slack <= cx)
        & (cx <= right[:, None] + slack)
    )
    big = np.iinfo(np.intp).max
    xl = np.where(side, cx, big).min(axis=1)
    xr = np.where(side, cx, -big).max(axis=1)
    ok = (side.sum(axis=1) >= 2) & (xr - xl >= min_w)
    return [
        (int(a) + 1, int(b) + 1, int(c) + 1, int(d) + 1)
        for a, b, c, d in zip(xl[ok], ya[ok], xr[ok], yb[ok], strict=True)
    ]


def _runs(edges: NDArray[np.bool_], min_len: int) -> list[tuple[int, int, int]]:
    """(line, start, end) of each run of at least ``min_len`` True values along the lines of
    ``edges``, gaps of one value bridged (anti-aliasing, JPEG)."""
    if edges.size == 0:
        return []
    bridged = edges.copy()
    bridged[:, 1:-1] |= edges[:, :-2] & edges[:, 2:]
    # Only lines where a 1 x min_len erosion leaves a pixel can hold such a run: a few of
    # them (a textured picture has many edge pixels per line, rarely in one long run). The
    # border counts as edge here, so a line may be kept for nothing: its runs are measured
    # below all the same.
    kept = cv2.erode(bridged.view(np.uint8), np.ones((1, min_len), dtype=np.uint8))
    lines = np.flatnonzero(cv2.reduce(kept, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel())
    padded = np.zeros((len(lines), bridged.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = bridged[lines]
    change = np.diff(padded, axis=1)
    ys, starts = np.nonzero(change == 1)
    _, ends = np.nonzero(change == -1)
    ys = lines[ys]
    keep = (ends - starts) >= min_len
    return [
        (int(y), int(s), int(e))
        for y, s, e in zip(
            ys[keep].tolist(), starts[keep].tolist(), ends[keep].tolist(), strict=True
        )
    ][:_MOST_EDGES]


def _dominant(a: NDArray[np.uint8], box: Box) -> float:
    """Share of the block's sample pixels in its most common grey level (of 32)."""
    x0, y0, x1, y1 = box
    if _core is not None and _COMPILED:
        return _core.dominant(a, a.shape[0], a.shape[1], x0, y0, x1, y1)
    codes = (a[y0:y1:2, x0:x1:2] >> 3).ravel()
    return float(np.bincount(codes, minlength=32).max()) / float(max(1, codes.size))


def _refine(grey: NDArray[np.uint8], sample: _Sample, block: Box) -> Box:
    """``block`` (sample pixels) in image pixels, each edge moved to the exact row or column
    where the picture starts. The sample line just outside the block was a separator (or the
    edge the rectangle was found at); scanning the image from the pixel it was sampled from
    towards the block, the first line that is busy or off the separator's level is the
    picture's. Nearest sampling put the edge up to ``fx`` (``fy``) pixels off. ``grey`` is
    the image's grey version (Pillow's), read in place."""
    h, w = grey.shape
    fx, fy = sample.fx, sample.fy
    x0, y0 = round(block[0] * fx), round(block[1] * fy)
    x1, y1 = min(w, round(block[2] * fx)), min(h, round(block[3] * fy))
    reach_x, reach_y = int(np.ceil(fx)) + 2, int(np.ceil(fy)) + 2

    def first_off(b: Box, axis: int, backward: bool = False) -> int | None:
        # Lines along ``axis`` (1: rows, 0: columns) of ``b``, from its far side when
        # ``backward``: exact integer sums from OpenCV, then a few lines in Python (numpy's
        # mean and std, then a dozen calls on a handful of lines, were most of this cost),
        # or all of it in the compiled kernel. A line is busy when its variance is over
        # PLAIN_STD squared.
        if _core is not None and _COMPILED:
            # As slicing does, the box is cut at the plane's edges.
            x0, y0, x1, y1 = min(b[0], w), min(b[1], h), min(b[2], w), min(b[3], h)
            at = _core.first_off(
                grey, h, w, x0, y0, x1, y1, axis, backward, PLAIN_STD, SHARP_STEP
            )  # fmt: skip
            return None if at < 0 else at
        part = grey[b[1] : b[3], b[0] : b[2]]
        if not part.size:
            return None
        n = part.shape[axis]
        sums = cv2.reduce(part, axis, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel().tolist()
        squares = cv2.multiply(part, part, dtype=cv2.CV_32S)
        sq = cv2.reduce(squares, axis, cv2.REDUCE_SUM, dtype=cv2.CV_64F).ravel().tolist()
        if backward:
            sums.reverse()
            sq.reverse()
        first = sums[0] / n
        for i, (total, square) in enumerate(zip(sums, sq, strict=True)):
            level = total / n
            if (
                square / n - level * level > PLAIN_STD * PLAIN_STD
                or abs(level - first) > SHARP_STEP
            ):
                return i
        return None

    if block[1] > 0:
        top = min(y0, int((block[1] - 0.5) * fy))
        found = first_off((x0, top, x1, min(y1, y0 + reach_y)), 1)
        if found is not None:
            y0 = top + found
    if block[3] < sample.grey.shape[0]:
        bottom = max(y1, min(h, int((block[3] + 0.5) * fy) + 1))
        found = first_off((x0, max(y0, y1 - reach_y), x1, bottom), 1, backward=True)
        if found is not None:
            y1 = bottom - found
    if block[0] > 0:
        left = min(x0, int((block[0] - 0.5) * fx))
        found = first_off((left, y0, min(x1, x0 + reach_x), y1), 0)
        if found is not None:
            x0 = left + found
    if block[2] < sample.grey.shape[1]:
        right = max(x1, min(w, int((block[2] + 0.5) * fx) + 1))
        found = first_off((max(x0, x1 - reach_x), y0, right, y1), 0, backward=True)
        if found is not None:
            x1 = right - found
    return x0, y0, x1, y1


def _unpad(grey: NDArray[np.uint8], box: Box) -> Box:
    """``box`` without a thin plain padding along its edges: a chat bubble holds its picture
    a few pixels in (4-12 px at phone sizes), and those lines move PDQ by 20-40 bits. A run of
    plain lines of one level from an edge inward is padding when it ends (at the picture's
    first busy or off-level line) within 1/32 of the side; a longer one is the
    picture's own flat part and stays (a shorter one may be too: :func:`propose` keeps the
    box as found as well, and adds this one after the others). Lines are read over the
    middle three quarters of the side, past a bubble's rounded corners."""
    x0, y0, x1, y1 = box

    def inward(lines: NDArray[np.uint8]) -> int:
        a = lines.astype(np.float32)
        mean, spread = a.mean(axis=1), a.std(axis=1)
        off = np.flatnonzero((spread > PLAIN_STD) | (np.abs(mean - mean[0]) > STEP))
        return int(off[0]) if off.size else 0  # all plain: the picture's own, keep it

    ny, nx = max(2, (y1 - y0) // 32), max(2, (x1 - x0) // 32)
    ex, ey = (x1 - x0) // 8, (y1 - y0) // 8
    top = inward(grey[y0 : y0 + ny, x0 + ex : x1 - ex])
    bottom = inward(grey[y1 - ny : y1, x0 + ex : x1 - ex][::-1])
    left = inward(grey[y0 + ey : y1 - ey, x0 : x0 + nx].T)
    right = inward(grey[y0 + ey : y1 - ey, x1 - nx : x1].T[::-1])
    return x0 + left, y0 + top, x1 - right, y1 - bottom


def _trim(stats: _Stats, block: Box, size: tuple[int, int]) -> Box:
    """``block`` without the plain lines along its edges that continue the line outside it
    (the rest of a separator that a cut across a wider block left on this part)."""
    sw, sh = size
    if not _may_trim(stats, block, size):
        return block  # nine blocks in ten

    def cut(box: Box, axis: int) -> Box:
        x0, y0, x1, y1 = box
        lo, hi = (y0, y1) if axis == 0 else (x0, x1)
        end = sh if axis == 0 else sw
        # The box's lines and the line outside it on each side, in one read.
        first, last = max(0, lo - 1), min(end, hi + 1)
        wide = (x0, first, x1, last) if axis == 0 else (first, y0, last, y1)
        mean, spread = stats.lines(wide, axis)
        n, inner = hi - lo, lo - first
        a, b = 0, n

        def run(level: float, lines: slice) -> int:
            # How many lines from the edge continue the outside line (plain, at its level).
            same = (spread[lines] <= PLAIN_STD) & (np.abs(mean[lines] - level) <= STEP)
            return int(same.argmin()) if not same.all() else len(same)

        if lo > 0 and spread[0] <= PLAIN_STD:
            a = min(run(float(mean[0]), slice(inner, inner + n)), max(0, n - 2))
        if hi < end and spread[-1] <= PLAIN_STD:
            back = slice(inner + n - 1, inner - 1 if inner else None, -1)
            b = n - min(run(float(mean[-1]), back), max(0, n - a - 2))
        return (x0, lo + a, x1, lo + b) if axis == 0 else (lo + a, y0, lo + b, y1)

    return cut(cut(block, 0), 1)


def _may_trim(stats: _Stats, block: Box, size: tuple[int, int]) -> bool:
    """Whether any edge of ``block`` has a plain line outside it that its own first line
    continues (plain, within STEP): else :func:`_trim` leaves it as it is. Two lines per edge
    instead of all of them, in plain Python (a dozen numpy calls on four lines cost more than
    reading the block's). Line sums from the integral image are exact integers, so these are
    the floats :meth:`_Stats.lines` gives."""
    x0, y0, x1, y1 = block
    sw, sh = size
    s, q = stats.s.item, stats.q.item

    def row(y: int) -> tuple[float, float]:
        n = x1 - x0
        mean = (s(y + 1, x1) - s(y, x1) - s(y + 1, x0) + s(y, x0)) / n
        var = (q(y + 1, x1) - q(y, x1) - q(y + 1, x0) + q(y, x0)) / n - mean * mean
        return mean, math.sqrt(max(var, 0.0))

    def col(x: int) -> tuple[float, float]:
        n = y1 - y0
        mean = (s(y1, x + 1) - s(y1, x) - s(y0, x + 1) + s(y0, x)) / n
        var = (q(y1, x + 1) - q(y1, x) - q(y0, x + 1) + q(y0, x)) / n - mean * mean
        return mean, math.sqrt(max(var, 0.0))

    def continues(line: Callable[[int], tuple[float, float]], outside: int, inner: int) -> bool:
        level, spread = line(outside)
        if spread > PLAIN_STD:
            return False
        mean, spread = line(inner)
        return spread <= PLAIN_STD and abs(mean - level) <= STEP

    return (
        (y0 > 0 and continues(row, y0 - 1, y0))
        or (y1 < sh and continues(row, y1, y1 - 1))
        or (x0 > 0 and continues(col, x0 - 1, x0))
        or (x1 < sw and continues(col, x1, x1 - 1))
    )


def _iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def propose(
    image: Image.Image, limit: int = MAX_REGIONS, *, planes: _Planes | None = None
) -> list[Box]:
    """Up to ``limit`` boxes ``(x0, y0, x1, y1)`` in ``image``'s pixels that may hold an
    embedded picture, most likely first; never the whole image. ``planes``: the caller's
    :class:`_Planes` of ``image``, which then holds the grey rows the boxes need."""
    w, h = image.size
    if min(w, h) < MIN_SIDE:
        return []
    sample = _sample(image)
    small = sample.grey
    sh, sw = small.shape
    min_w = max(2, int(MIN_SIDE / sample.fx))
    min_h = max(2, int(MIN_SIDE / sample.fy))
    stats = _Stats(small, sample.rgb)
    # Strict cuts stop at a picture's own flat parts; loose ones also cut where text or a
    # ragged column meets the separator softly. Both go in; duplicates fold below.
    blocks: list[tuple[Box, int]] = []
    runs: dict[tuple[Box, int], _Runs] = {}
    _xy_cut(sample, stats, min_w, min_h, blocks, runs, strict=True)
    _xy_cut(sample, stats, min_w, min_h, blocks, runs, strict=False)
    candidates = [(b, d) for b, d in blocks if d > 0]  # depth 0 is the whole image
    edged = _edge_rects(small, max(min_w, sw // 8), max(min_h, sh // 8))
    candidates += [(r, 1) for r in edged]
    # Rectangles found by their edges (a picture on a textured background) may be the frame
    # around a picture: a chat bubble's padding, which the separators never saw.
    trimmed: dict[Box, Box] = {}  # the cuts meet most blocks twice (strict and loose)

    def trim(b: Box) -> Box:
        if b not in trimmed:
            trimmed[b] = _trim(stats, b, (sw, sh))
        return trimmed[b]

    framed = {trim(r) for r in edged}
    scored: list[tuple[float, Box]] = []
    seen: set[Box] = set()
    for b, depth in candidates:
        b = trim(b)
        if b in seen:
            continue
        seen.add(b)
        bw, bh = b[2] - b[0], b[3] - b[1]
        share = bw * bh / float(sw * sh)
        if share < MIN_SHARE or share > MAX_SHARE:
            continue
        if max(bw * sample.fx, bh * sample.fy) > MAX_ASPECT * min(bw * sample.fx, bh * sample.fy):
            continue
        if _dominant(small, b) > DOMINANT:
            continue
        # Blocks inside blocks first (depth 2: a cell of a collage, an inset picture), then the
        # larger: deeper cuts are mostly of a picture at its own flat bands.
        scored.append((-(share + min(depth, 2)), b))
    scored.sort()
    if not scored:
        return []
    if planes is None:
        planes = _Planes(image)
    # Only the rows the candidates span are read from here on (refined edges move by at
    # most a sample pixel and a few lines; the pixel outside a corner is one line out).
    ty0 = min(b[1] for _, b in scored)
    ty1 = max(b[3] for _, b in scored)
    planes.cover(int((ty0 - 1) * sample.fy) - 2, int((ty1 + 1) * sample.fy) + 3)
    plane = planes.grey
    out: list[Box] = []
    padded: list[Box] = []
    for _, b in scored:
        box = _refine(plane, sample, b)
        if box[2] - box[0] < MIN_SIDE or box[3] - box[1] < MIN_SIDE:
            continue
        if _iou(box, (0, 0, w, h)) > MAX_SHARE:
            continue
        if any(_iou(box, o) > SAME_BOX for o in out):
            continue
        out.append(box)
        if b in framed:
            padded.append(box)
        if len(out) >= limit:
            break
    # Then, where there is room, those found by their edges without their padding: after
    # the others, so that they never push one out nor stand in for a tighter one found
    # later (a picture's own thin flat edge looks like padding too).
    for box in padded:
        if len(out) >= limit:
            break
        inner = _unpad(plane, box)
        if inner[2] - inner[0] < MIN_SIDE or inner[3] - inner[1] < MIN_SIDE:
            continue
        if inner in out:  # a few lines of padding are a few % of the box, yet 20-40 bits
            continue
        out.append(inner)
    return out


def _corner_views(pixels: NDArray[np.uint8], c: int) -> tuple[NDArray[np.uint8], ...]:
    """The four c x c corner squares of ``pixels`` (top-left, top-right, bottom-left,
    bottom-right), each flipped so that its corner pixel is at [0, 0]; views, not copies."""
    h, w = pixels.shape[:2]
    return (
        pixels[:c, :c],
        pixels[:c, w - c :][:, ::-1],
        pixels[h - c :, :c][::-1],
        pixels[h - c :, w - c :][::-1, ::-1],
    )


def _round_corners(pixels: NDArray[np.uint8], outside: Sequence[Rgb | None]) -> None:
    """Undo a UI's rounded corners in place, before hashing: a chat bubble or a card rounds a
    picture's corners off in the background's colour, and those bright (or dark) quarter
    discs move PDQ by 20-40 bits on their own. In each corner of the RGB ``pixels`` whose
    pixel has the colour found just outside the region (``outside``: top-left, top-right,
    bottom-left, bottom-right; None where the region meets the image's edge), the pixels of
    that colour joined to the corner take the value of the nearest picture pixel inward along
    the diagonal. :meth:`_Planes.pdq` does the same on grey levels."""
    c = min(pixels.shape[:2]) // 8
    if c < 3:
        return
    for view, colour in zip(_corner_views(pixels, c), outside, strict=True):
        if colour is None:
            continue
        # Three channels: Python ints beat numpy's per-call cost here.
        if max(abs(a - b) for a, b in zip(view[0, 0].tolist(), colour, strict=True)) > CORNER_TOL:
            continue  # the corner is the picture's: nothing rounded it (most corners)
        # Every channel within CORNER_TOL of the colour: one pass in OpenCV.
        low: Rgb = (
            max(0, colour[0] - CORNER_TOL),
            max(0, colour[1] - CORNER_TOL),
            max(0, colour[2] - CORNER_TOL),
        )
        high: Rgb = (
            min(255, colour[0] + CORNER_TOL),
            min(255, colour[1] + CORNER_TOL),
            min(255, colour[2] + CORNER_TOL),
        )

        def close(
            rows: int, cols: int, view: NDArray[np.uint8] = view, low: Rgb = low, high: Rgb = high
        ) -> NDArray[np.bool_]:
            found: NDArray[np.bool_] = (
                cv2.inRange(np.ascontiguousarray(view[:rows, :cols]), low, high) != 0
            )
            return found

        _fill_corner(view, close, c)


def _fill_corner(
    view: NDArray[np.uint8],
    close: Callable[[int, int], NDArray[np.bool_]],
    c: int,
    reach: tuple[int, int] | None = None,
) -> None:
    """Fill the rounding at ``view``'s [0, 0] corner (c x c, see :func:`_corner_views`):
    ``close(rows, cols)`` tells which of the first rows x cols pixels have the UI's colour.
    The corner's own run of that colour is a quarter disc, monotone along rows and columns: a
    pixel belongs when every pixel between it and the corner does, so the run ends within
    the first row's and the first column's (``reach``: their lengths, when the caller has
    them) and only that window is read. A run over a quarter of the square is more than a
    rounding (at most 1 - pi/4 of it): the picture's own, left be."""
    if reach is None:
        row = close(1, c)[0]
        col = close(c, 1)[:, 0]
        reach = (c if row.all() else int(row.argmin()), c if col.all() else int(col.argmin()))
    rx, ry = reach
    if not rx or not ry:
        return
    mask = np.logical_and.accumulate(np.logical_and.accumulate(close(ry, rx), axis=0), axis=1)
    if np.count_nonzero(mask) > 0.25 * c * c:
        return
    ys, xs = np.nonzero(mask)
    # Along each diagonal the mask is a prefix (the set is closed towards the corner), so the
    # first pixel out of the staircase is at the prefix's length: one bincount instead of a
    # step per diagonal offset.
    diag = xs - ys + (c - 1)
    k = np.bincount(diag, minlength=2 * c - 1)[diag] - np.minimum(ys, xs)
    ok = (ys + k < c) & (xs + k < c)
    ys, xs, k = ys[ok], xs[ok], k[ok]
    view[ys, xs] = view[ys + k, xs + k]


def _outside_spots(box: Box, size: tuple[int, int]) -> list[tuple[int, int] | None]:
    """For each corner of ``box`` (top-left, top-right, bottom-left, bottom-right), the pixel
    just outside its edge an eighth of the side in from the corner (past any rounding: the
    diagonal neighbour may be outside a rounded bubble too), or None at the image's edge."""
    x0, y0, x1, y1 = box
    w, h = size
    dx, dy = max(1, (x1 - x0) // 8), max(1, (y1 - y0) // 8)
    spots = (
        ((x0 + dx, y0 - 1), (x0 - 1, y0 + dy)),
        ((x1 - 1 - dx, y0 - 1), (x1, y0 + dy)),
        ((x0 + dx, y1), (x0 - 1, y1 - 1 - dy)),
        ((x1 - 1 - dx, y1), (x1, y1 - 1 - dy)),
    )
    out: list[tuple[int, int] | None] = []
    for pair in spots:
        inside = [(x, y) for x, y in pair if 0 <= x < w and 0 <= y < h]
        out.append(inside[0] if inside else None)
    return out


def _outside_colours(image: Image.Image, box: Box) -> list[Rgb | None]:
    """The colours at :func:`_outside_spots` of an RGB image."""
    return [None if xy is None else _rgb(image, xy) for xy in _outside_spots(box, image.size)]


def _rgb(image: Image.Image, xy: tuple[int, int]) -> Rgb:
    r, g, b = image.getpixel(xy)  # type: ignore[misc]
    return int(r), int(g), int(b)


def region_pdq(image: Image.Image, box: Box, *, dihedral: bool = False) -> PdqHash:
    """PDQ of a proposal: the box sampled as PDQ reads it, rounded corners undone; equal to
    the crop's own PDQ where no corner was rounded. :func:`region_hashes` computes the same
    from one grey copy of the image (:class:`_Planes`), a few bits apart at most."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    pixels = box_sample(image, box)
    _round_corners(pixels, _outside_colours(image, box))
    return pdq_from_pixels(pixels, dihedral=dihedral)


def _grey(image: Image.Image) -> NDArray[np.uint8]:
    # Pillow's grey: ITU-R 601 luma (PDQ's weights) rounded to whole levels.
    return _array(image.convert("L") if image.mode != "L" else image)


class _Planes:
    """The decoded image and its grey (luma) version, made once per upload so that each
    proposal's PDQ reads grey pixels (a third of the bytes of RGB, no crop copied through
    Pillow): with up to 8 proposals, that was most of their cost. Colours (to tell a rounded
    corner) are read from the image itself, two pixels per corner that grey levels do not
    rule out: an RGB copy of a whole screenshot cost more than the rest."""

    def __init__(self, image: Image.Image) -> None:
        self.image = image if image.mode == "RGB" else image.convert("RGB")
        w, h = self.image.size
        # Grey is made for the rows the proposals span only (:meth:`cover`): a picture in a
        # phone screenshot spans a third of its rows, and converting the whole image was a
        # tenth of the cost. Rows not covered stay 0 and are never read (np.zeros maps pages
        # lazily: those rows cost nothing).
        self.grey = np.zeros((h, w), dtype=np.uint8)
        self._rows = (0, 0)  # the rows [a, b) converted

    def cover(self, y0: int, y1: int) -> None:
        """Make rows ``[y0, y1)`` of :attr:`grey` hold the image's grey levels."""
        h = self.grey.shape[0]
        y0, y1 = max(0, y0), min(h, y1)
        a, b = self._rows
        if a == b and y1 - y0 > 0.6 * h:
            # Cropping copies the rows first: past ~60% of them, converting all is cheaper.
            self.grey = _grey(self.image)
            self._rows = (0, h)
            return
        if a == b:
            a = b = y0
        for lo, hi in ((min(y0, a), a), (b, max(y1, b))):
            if hi > lo:
                self.grey[lo:hi] = _grey(self.image.crop((0, lo, self.image.width, hi)))
        self._rows = (min(y0, a), max(y1, b))

    def pdq(self, box: Box, *, dihedral: bool) -> PdqHash:
        """:func:`region_pdq` of ``box`` from the grey plane."""
        x0, y0, x1, y1 = box
        self.cover(y0 - 1, y1 + 1)  # the box and the rows just outside it (corners)
        width, height = x1 - x0, y1 - y0
        if width <= PDQ_DOWNSAMPLE and height <= PDQ_DOWNSAMPLE:
            grey = self.grey[y0:y1, x0:x1].copy()
            last_x, last_y = x1 - 1, y1 - 1
        else:  # PDQ's own nearest-neighbour 512 x 512 sample of the part (box_sample's)
            # OpenCV's nearest reads floor(i * size / 512) too (exact: size / 512 is dyadic),
            # a tenth of the time of numpy's gather.
            side = (PDQ_DOWNSAMPLE, PDQ_DOWNSAMPLE)
            grey = np.asarray(
                cv2.resize(self.grey[y0:y1, x0:x1], side, interpolation=cv2.INTER_NEAREST),
                dtype=np.uint8,
            )
            last_x = x0 + (PDQ_DOWNSAMPLE - 1) * width // PDQ_DOWNSAMPLE
            last_y = y0 + (PDQ_DOWNSAMPLE - 1) * height // PDQ_DOWNSAMPLE
        c = min(grey.shape) // 8
        if c < 3:
            return pdq_from_grey(grey, dihedral=dihedral)
        # Most corners are the picture's: their own pixel is off the colour outside. Grey
        # levels tell most of them apart first: Pillow's luma is a weighted mean of the
        # channels, so pixels within CORNER_TOL per channel are within CORNER_TOL + 1 in grey
        # (rounding); only the few left are read in RGB. The rounding itself is then found on
        # the grey sample (what PDQ reads), by grey level: RGB squares read through Pillow
        # for it were a third of a chat bubble's hash.
        spots = ((x0, y0), (last_x, y0), (x0, last_y), (last_x, last_y))
        plane = self.grey
        tol = CORNER_TOL + 1
        views = _corner_views(grey, c)
        corners = zip(views, _outside_spots(box, self.image.size), spots, strict=True)
        for k, (view, out, spot) in enumerate(corners):
            if out is None:
                continue
            level = int(plane[out[1], out[0]])
            if abs(level - int(plane[spot[1], spot[0]])) > tol:
                continue
            colour, pixel = _rgb(self.image, out), _rgb(self.image, spot)
            if max(abs(a - b) for a, b in zip(pixel, colour, strict=True)) > CORNER_TOL:
                continue
            low, high = max(0, level - tol), min(255, level + tol)
            if _core is not None and _COMPILED:
                _core.fill_corner(grey, grey.shape[0], grey.shape[1], k, c, low, high)
                continue

            def close(
                rows: int,
                cols: int,
                view: NDArray[np.uint8] = view,
                low: int = low,
                high: int = high,
            ) -> NDArray[np.bool_]:
                part = view[:rows, :cols]
                found: NDArray[np.bool_] = (part >= low) & (part <= high)
                return found

            # The first row's and column's runs in Python: a few pixels each, most often.
            reach = []
            for line in (view[0, :c].tolist(), view[:c, 0].tolist()):
                run = 0
                while run < c and low <= line[run] <= high:
                    run += 1
                reach.append(run)
            _fill_corner(view, close, c, (reach[0], reach[1]))
        return pdq_from_grey(grey, dihedral=dihedral)


def region_hashes(
    image: Image.Image,
    full_size: tuple[int, int] | None = None,
    *,
    dihedral: bool = False,
    limit: int = MAX_REGIONS,
) -> tuple[RegionHash, ...]:
    """PDQ of each proposal of ``image``; regions in ``full_size`` pixels (the upload's size
    when ``image`` is a reduced decode)."""
    fw, fh = full_size or image.size
    kx, ky = fw / image.size[0], fh / image.size[1]
    planes = _Planes(image)
    boxes = propose(image, limit, planes=planes)
    out = []
    for box in boxes:
        x0, y0 = round(box[0] * kx), round(box[1] * ky)
        region = Region(x0, y0, round(box[2] * kx) - x0, round(box[3] * ky) - y0)
        out.append(RegionHash(region, planes.pdq(box, dihedral=dihedral), box))
    return tuple(out)


def with_regions(hashes: ImageHashes, media: Media, *, dihedral: bool = False) -> ImageHashes:
    """``hashes`` of decoded ``media`` with the PDQ of each picture found inside it."""
    found = region_hashes(media.image, (media.width, media.height), dihedral=dihedral)
    return replace(hashes, regions=found)


def hash_upload(
    data: bytes, settings: Settings, *, dihedral: bool = False, regions: bool = True
) -> ImageHashes:
    """``hash_bytes`` for matching: one decode, every hash, and with ``regions`` the pictures
    inside the image too (what ``dignity match``, ``/v1/match`` and HMA's lookups match)."""
    media = decode_upload(data, settings)
    hashes = hash_media(media, data, dihedral=dihedral)
    return with_regions(hashes, media, dihedral=dihedral) if regions else hashes
