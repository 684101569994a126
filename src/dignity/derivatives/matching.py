"""Find whether a scanned image is an edited copy of a registered photo, and show the evidence.

Two stages. **Shortlist**: every stored keypoint sits in a hash table keyed by
:data:`KEY_BITS` fixed bits of its descriptor (locality-sensitive hashing by bit sampling).
Each keypoint of the scanned image (as scanned and mirrored) looks up its own key and every key
one bit away. Candidates are filtered on 16 further *check bits* kept next to the postings (read
in runs, cheap), the :data:`PRESELECT` photos with the most survivors have their candidates'
full descriptors compared (within :data:`SHORTLIST_DISTANCE` bits). Reading full descriptors at
random all over the table is what a scan would otherwise spend its time on. The photos go on
ranked by how many of those keypoints *agree on one shift* between the two frames (a coarse
Hough vote, :meth:`_Segment.agreeing`), not by how many there are: a photo that merely shares
many common corners with the scan scatters its shifts, while an edited copy's untouched part
moves as one; photos with fewer than :data:`MIN_AGREEING` agreeing votes are not verified at
all. **Verification**: each shortlisted photo's keypoints are
matched to the scanned image's (nearest neighbour, ratio test, one-to-one), and RANSAC fits a
similarity transform (scale, rotation, shift); it counts only with a transform an edit would
make (scale near 1 since both sides are normalised, little rotation) and either at least
:data:`SURE_INLIERS` inliers or at least :data:`MIN_INLIERS` whose hull covers
:data:`MIN_AREA` of the image: unrelated pairs that chance aligns bunch their inliers in a
patch. A strong match (:data:`DONE_INLIERS`) ends the search. A photo taken against the same
background can pass this, which is why the policy only ever sends derivatives to review.
The shortlist and the nearest-neighbour search of verification run in a small C kernel
(``_shortlist.c``); :meth:`_Segment.agreeing_numpy` and OpenCV's brute-force matcher are the
same computations, the fallbacks without it and the tests' oracles.

The index is an immutable snapshot swapped in one assignment, so scans on other threads never
see half an update: a large *main* segment and a small *tail* of recent additions (rebuilt on
every change, folded into main when it grows), plus tombstones for removed ids. A segment holds
~40 bytes a keypoint: descriptor 32, position 2 (2 px steps), posting 4, check bits 2.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from dignity.derivatives.features import (
    NORM_SIDE,
    STORED_KEYPOINTS,
    Features,
    QueryFeatures,
    query_features,
)

try:
    from dignity.derivatives import _shortlist as _core
except ImportError:  # pragma: no cover - a checkout whose extension was never compiled
    _core = None  # type: ignore[assignment]
    warnings.warn(
        "dignity.derivatives._shortlist is not built (pip install -e . compiles it): "
        "derivative scans fall back to numpy, about 3 times slower",
        RuntimeWarning,
        stacklevel=1,
    )

KEY_BITS = 20  # bits per hash key: 1M buckets, ~10 keypoints each at 1e5 photos
SHORTLIST_DISTANCE = 48  # descriptor bits; ORB matches under edits are mostly under 40
MAX_BUCKET = 256  # a key shared by more stored keypoints says nothing (flat sky, a wall)
SHORTLIST_SIZE = 12  # photos verified per scan, at most (ranked by agreeing votes)
CHECK_DISTANCE = 5  # of the 16 check bits (see _check_bits)
PRESELECT = 1000  # photos (by candidates passing the check) whose full descriptors are read
MIN_VOTES = 2  # a photo with fewer shortlist votes is not worth verifying
RATIO = 0.85  # nearest / second-nearest descriptor distance (Lowe's ratio test)
MATCH_DISTANCE = 64
MIN_INLIERS = 8  # unrelated pairs in the evaluation reach 13, but under MIN_AREA (see _verify)
REPROJECTION_PX = 6.0  # in the normalised 512 px frame
SCALE_RANGE = (0.7, 1.6)  # crops of up to 10% a side enlarge by at most 1.25
MAX_ROTATION_DEG = 12.0
MIN_COVERAGE = 0.1  # inliers' hull over the hull of all the photo's keypoints, projected
MIN_AREA = 0.1  # share of the scanned image the inliers' hull must cover, under SURE_INLIERS
# Unrelated pairs in the evaluation reach 13 inliers, all bunched (hull < 0.1 of the image)
# once the agreeing-shift ranking puts such pairs in the shortlist.
SURE_INLIERS = 16
DONE_INLIERS = 30  # a verified candidate this strong ends the search
SHIFT_BIN = 48  # px of the normalised frame per shift cell (see _Segment.agreeing)
MIN_AGREEING = 5  # votes agreeing on one shift a photo needs to be verified
CHANGE_GRID = 6  # cells per side of the changed-region mask
_TAIL_LIMIT = 2048  # records in the tail before it is folded into the main segment

# Fixed, spread-out bit positions of the 256-bit descriptor used as the hash key. Fixed so
# that every process (and every version reading the same stored descriptors) agrees.
_KEY_POSITIONS = np.asarray([(i * 97 + 13) % 256 for i in range(KEY_BITS)], dtype=np.intp)


# 16 descriptor bits outside the hash key whose agreement is checked before a candidate's
# full descriptor is read. Chosen by measurement (ORB's bits are not equally informative):
# over 1.2M same-bucket pairs of unrelated photos these disagree 40% of the time against 31%
# for a run of 16 adjacent bits (38% of bucket candidates pass the check instead of 60%),
# while true pairs (RANSAC inliers of edited copies) flip them as rarely as any bit (3%).
_CHECK_POSITIONS = np.asarray(
    [2, 11, 45, 71, 89, 109, 133, 134, 136, 147, 151, 174, 195, 197, 203, 251], dtype=np.intp
)
_XY_STEP = 2.0  # in-memory position step, px
assert not set(_CHECK_POSITIONS.tolist()) & set(_KEY_POSITIONS.tolist())


def _bits_at(desc: NDArray[np.uint8], positions: NDArray[np.intp]) -> NDArray[np.int64]:
    """The bits of each descriptor at ``positions``, MSB first, as one integer each."""
    out = np.zeros(len(desc), np.int64)
    for pos in positions.tolist():
        bit = (desc[:, pos // 8] >> (7 - pos % 8)) & 1
        out = (out << 1) | bit.astype(np.int64)
    return out


def _keys(desc: NDArray[np.uint8]) -> NDArray[np.int64]:
    """Each descriptor's hash key: its bits at :data:`_KEY_POSITIONS`."""
    return _bits_at(desc, _KEY_POSITIONS)


def _check_bits(desc: NDArray[np.uint8]) -> NDArray[np.uint16]:
    """The 16 bits at :data:`_CHECK_POSITIONS`, as one uint16 per descriptor."""
    return np.ascontiguousarray(_bits_at(desc, _CHECK_POSITIONS).astype(np.uint16))


_SHIFT_CELLS = 2 * -(-NORM_SIDE // SHIFT_BIN) + 3

_PROBES = np.concatenate(
    [np.zeros(1, np.int64), np.left_shift(np.int64(1), np.arange(KEY_BITS, dtype=np.int64))]
)


@dataclass(frozen=True)
class Record:
    """One registered photo as the index holds it."""

    source_id: int
    subject: str
    features: Features


@dataclass(frozen=True, eq=False)
class _Segment:
    """Records laid out at a fixed stride (record r's keypoints are rows ``r * stride`` on,
    ``counts[r]`` of them; the rest is padding no posting points at), so a posting's record is
    a division away: no per-keypoint owner array, and no search."""

    ids: NDArray[np.int64]  # (R,) source ids
    subjects: tuple[str, ...]
    stride: int
    counts: NDArray[np.uint16]  # (R,) keypoints of each record
    desc: NDArray[np.uint8]  # (R * stride, 32)
    xy: NDArray[np.uint8]  # (R * stride, 2) in 2 px steps: RANSAC's tolerance is 6 px
    sizes: NDArray[np.uint16]  # (R, 2) normalised width, height
    starts: NDArray[np.int32]  # (2**KEY_BITS + 1,) CSR row starts by key
    postings: NDArray[np.int32]  # (K,) keypoint rows ordered by key
    check: NDArray[np.uint16]  # (K,) check bits of each entry of postings, in that order

    @classmethod
    def build(cls, records: Sequence[Record]) -> _Segment:
        counts = np.asarray([len(r.features) for r in records], dtype=np.int64)
        stride = max(STORED_KEYPOINTS, int(counts.max()) if len(counts) else 0)
        desc = np.zeros((len(records) * stride, 32), np.uint8)
        xy8 = np.zeros((len(records) * stride, 2), np.uint8)
        for r, rec in enumerate(records):
            at = r * stride
            desc[at : at + len(rec.features)] = rec.features.descriptors
            xy8[at : at + len(rec.features)] = np.clip(np.rint(rec.features.xy / _XY_STEP), 0, 255)
        valid = (np.arange(stride)[None, :] < counts[:, None]).ravel()
        rows = np.flatnonzero(valid).astype(np.int32)
        keys = _keys(desc[rows]) if len(rows) else np.zeros(0, np.int64)
        order = np.argsort(keys, kind="stable")
        postings = rows[order]
        starts = np.searchsorted(keys[order], np.arange(2**KEY_BITS + 1)).astype(np.int32)
        return cls(
            ids=np.asarray([r.source_id for r in records], dtype=np.int64),
            subjects=tuple(r.subject for r in records),
            stride=stride,
            counts=counts.astype(np.uint16),
            desc=desc,
            xy=xy8,
            sizes=np.asarray(
                [(r.features.width, r.features.height) for r in records], dtype=np.uint16
            ).reshape(-1, 2),
            starts=starts,
            postings=postings,
            check=np.ascontiguousarray(_check_bits(desc)[postings]),
        )

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def record(self, row: int) -> Record:
        a = row * self.stride
        b = a + int(self.counts[row])
        w, h = (int(v) for v in self.sizes[row])
        xy = self.xy[a:b].astype(np.float32) * _XY_STEP
        feats = Features(self.desc[a:b], xy, w, h)
        return Record(int(self.ids[row]), self.subjects[row], feats)

    def records(self) -> list[Record]:
        return [self.record(i) for i in range(len(self))]

    def nbytes(self) -> int:
        arrays = (self.ids, self.counts, self.desc, self.xy, self.sizes, self.starts)
        return sum(a.nbytes for a in arrays) + self.postings.nbytes + self.check.nbytes

    def _near(
        self, qdesc: NDArray[np.uint8]
    ) -> tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.int32]]:
        """Candidate pairs (stored row, query row, distance) within :data:`SHORTLIST_DISTANCE`.

        Reading every candidate's full descriptor is what costs (random reads all over the
        table), so candidates are first filtered on :func:`_check_bits`, kept next to the
        postings in the same order and so read in runs; only the candidates of the photos
        with the most of those have their full descriptors compared."""
        none = np.zeros(0, np.int32)
        if len(self) == 0 or len(qdesc) == 0:
            return none, none, none
        probes = (_keys(qdesc)[:, None] ^ _PROBES[None, :]).ravel()
        lo = self.starts[probes].astype(np.int64)
        n = self.starts[probes + 1].astype(np.int64) - lo
        # Flatten the variable-length bucket ranges without a Python loop; crowded buckets
        # are skipped like stop words: they would cost the most and tell the least.
        keep = (n > 0) & (n <= MAX_BUCKET)
        total = int(n[keep].sum())
        if total == 0:
            return none, none, none
        lo, n = lo[keep], n[keep]
        qrow = np.repeat(np.repeat(np.arange(len(qdesc), dtype=np.int32), len(_PROBES))[keep], n)
        first = np.cumsum(n) - n
        idx = np.arange(total, dtype=np.int64) - np.repeat(first - lo, n)
        # Cheap first filter on 16 more bits, read in runs like the postings, then only the
        # PRESELECT photos with the most such candidates have their full descriptors read.
        qcheck = _check_bits(qdesc)[qrow]
        same = np.bitwise_count(qcheck ^ self.check[idx]) <= CHECK_DISTANCE
        rows, qrow = self.postings[idx[same]], qrow[same]
        owners = rows // self.stride
        if len(self) > PRESELECT:
            # The PRESELECT-th largest count, ties included: the same set however the
            # records are ordered.
            raw = np.bincount(owners, minlength=len(self))
            floor = int(np.partition(raw, len(raw) - PRESELECT)[len(raw) - PRESELECT])
            pick = raw[owners] >= max(floor, MIN_VOTES, 1)
            rows, qrow = rows[pick], qrow[pick]
        q64 = np.ascontiguousarray(qdesc).view(np.uint64)
        s64 = self.desc.view(np.uint64)
        dist = np.bitwise_count(q64[qrow] ^ s64[rows]).sum(axis=1, dtype=np.int32)
        close = dist <= SHORTLIST_DISTANCE
        return rows[close], qrow[close], dist[close]

    def votes(self, qdesc: NDArray[np.uint8], dead: frozenset[int]) -> dict[int, int]:
        """Source id -> number of its keypoints near some query keypoint (by key and bits),
        for the photos with at least :data:`MIN_VOTES`."""
        rows, _, _ = self._near(qdesc)
        # Each stored keypoint counts once, however many query keypoints it is near.
        near = np.unique(rows)
        if near.size == 0:
            return {}
        counts = np.bincount(near // self.stride)
        found = np.flatnonzero(counts >= MIN_VOTES)
        return {
            sid: int(counts[row])
            for row in found.tolist()
            if (sid := int(self.ids[row])) not in dead
        }

    def agreeing(self, query: Features, dead: frozenset[int]) -> dict[int, tuple[int, int]]:
        """Source id -> (votes that agree on one shift, votes), for the photos with at least
        :data:`MIN_AGREEING` votes.

        A vote is a stored keypoint near some query keypoint (each stored keypoint counts
        once, with its nearest). In an edited copy the untouched keypoints moved together:
        their shifts (query position minus stored position, both in normalised frames) fall
        close together, give or take the scale a crop adds (up to 1.25, so ~130 px across the
        frame); an unrelated photo's chance votes scatter over the whole plane. Counting the
        votes in the best square of 3 x 3 :data:`SHIFT_BIN` cells (144 px) ranks a true source
        above photos that merely share many common corners, and lets photos with too few
        agreeing votes go unverified: the geometric check was most of an unrelated scan's
        cost when the 32 photos with the most votes were all verified.

        The compiled kernel (``_shortlist.c``) does this in one pass over the buckets; without
        it (a checkout whose extension was never built) :meth:`agreeing_numpy` gives the same
        result about 3 times slower (19 against 6 ms a view at 1e5 photos, measured)."""
        if len(self) == 0 or len(query) == 0:
            return {}
        if _core is None:
            found = self.agreeing_numpy(query)
        else:
            qdesc = np.ascontiguousarray(query.descriptors, dtype=np.uint8)
            raw = _core.agreeing(
                self.starts,
                self.postings,
                self.check,
                self.desc,
                self.xy,
                self.stride,
                len(self),
                qdesc,
                np.ascontiguousarray(query.xy, dtype=np.float32),
                np.ascontiguousarray(_keys(qdesc)),
                _check_bits(qdesc),
                KEY_BITS,
                MAX_BUCKET,
                CHECK_DISTANCE,
                PRESELECT,
                MIN_VOTES,
                SHORTLIST_DISTANCE,
                max(MIN_VOTES, MIN_AGREEING),
                SHIFT_BIN,
                NORM_SIDE,
                _XY_STEP,
            )
            found = np.frombuffer(raw, np.int64).reshape(-1, 3)
        return {
            sid: (int(a), int(n))
            for row, a, n in found.tolist()
            if (sid := int(self.ids[row])) not in dead
        }

    def agreeing_numpy(self, query: Features) -> NDArray[np.int64]:
        """What the kernel computes, in numpy: (record row, agreeing votes, votes) rows for
        the records with at least max(:data:`MIN_VOTES`, :data:`MIN_AGREEING`) votes, in row
        order. The fallback without the compiled kernel, and the tests' oracle for it."""
        none = np.zeros((0, 3), np.int64)
        rows, qrow, dist = self._near(query.descriptors)
        if rows.size == 0:
            return none
        # Nearest query keypoint per stored keypoint (the first of equals, in query order):
        # a stable sort by (row, distance), keep firsts.
        order = np.argsort(rows.astype(np.int64) * 64 + dist, kind="stable")  # dist < 64
        rows, qrow = rows[order], qrow[order]
        first = np.ones(rows.size, bool)
        first[1:] = rows[1:] != rows[:-1]
        rows, qrow = rows[first], qrow[first]
        owners = rows // self.stride
        counts = np.bincount(owners, minlength=len(self))
        # A photo cannot have more agreeing votes than votes: only those that could pass.
        cand = np.flatnonzero(counts >= max(MIN_VOTES, MIN_AGREEING))
        if cand.size == 0:
            return none
        local = np.full(len(self), -1, np.int64)
        local[cand] = np.arange(cand.size)
        mine = local[owners]
        pick = mine >= 0
        rows, qrow, mine = rows[pick], qrow[pick], mine[pick]
        shift = query.xy[qrow] - self.xy[rows].astype(np.float32) * np.float32(_XY_STEP)
        # Shifts lie in (-NORM_SIDE, NORM_SIDE); one empty cell each side for the 3 x 3 sum.
        cells = _SHIFT_CELLS
        b = np.clip(
            ((shift + np.float32(NORM_SIDE)) / np.float32(SHIFT_BIN)).astype(np.intp) + 1,
            1,
            cells - 2,
        )
        flat = (mine * cells + b[:, 1]) * cells + b[:, 0]
        grid = np.bincount(flat, minlength=cand.size * cells * cells).reshape(
            cand.size, cells, cells
        )
        box = grid[:, : cells - 2, : cells - 2].copy()
        for dy in range(3):
            for dx in range(3):
                if dy or dx:
                    box += grid[:, dy : dy + cells - 2, dx : dx + cells - 2]
        best = box.reshape(cand.size, -1).max(axis=1)
        return np.stack([cand, best, counts[cand]], axis=1).astype(np.int64)


@dataclass(frozen=True, eq=False)
class _Snapshot:
    main: _Segment
    tail: _Segment
    dead: frozenset[int]  # removed ids still present in main
    where: dict[int, tuple[bool, int]] = field(default_factory=dict)  # id -> (in tail, row)

    @classmethod
    def of(cls, main: _Segment, tail: _Segment, dead: frozenset[int]) -> _Snapshot:
        where = {int(i): (False, r) for r, i in enumerate(main.ids.tolist()) if i not in dead}
        where.update({int(i): (True, r) for r, i in enumerate(tail.ids.tolist())})
        return cls(main, tail, dead, where)

    def record(self, source_id: int) -> Record | None:
        spot = self.where.get(source_id)
        if spot is None:
            return None
        return (self.tail if spot[0] else self.main).record(spot[1])


@dataclass(frozen=True)
class DerivativeMatch:
    """The evidence that a scanned image is an edited copy of registered photo ``source_id``."""

    source_id: int
    subject: str
    confidence: float
    matched_area: float  # share of the scanned image covered by the inliers' hull
    changed_region: dict[str, Any]
    inliers: int
    mirrored: bool

    def to_dict(self) -> dict[str, Any]:
        """The contract's shape: ``{source_id, subject, confidence, matched_area,
        changed_region}``."""
        return {
            "source_id": self.source_id,
            "subject": self.subject,
            "confidence": self.confidence,
            "matched_area": self.matched_area,
            "changed_region": self.changed_region,
        }


_BF = cv2.BFMatcher(cv2.NORM_HAMMING)


@dataclass(frozen=True)
class _Fit:
    inliers: int
    transform: NDArray[np.float64]
    src_xy: NDArray[np.float32]
    dst_xy: NDArray[np.float32]
    inlier_mask: NDArray[np.bool_]
    src_rows: NDArray[np.intp]


def _nearest_two(
    source: Features, view: Features
) -> tuple[NDArray[np.intp], NDArray[np.int32], NDArray[np.int32]]:
    """For each source keypoint: the nearest view keypoint, its distance and the distance of
    the second nearest (257 when there is none)."""
    if _core is not None:
        raw = _core.knn2(
            np.ascontiguousarray(source.descriptors, dtype=np.uint8),
            np.ascontiguousarray(view.descriptors, dtype=np.uint8),
        )
        out = np.frombuffer(raw, np.int32).reshape(-1, 3)
        return out[:, 0].astype(np.intp), out[:, 1], out[:, 2]
    n = len(source)
    best, d1, d2 = np.full(n, -1, np.intp), np.full(n, 257, np.int32), np.full(n, 257, np.int32)
    for pair in _BF.knnMatch(source.descriptors, view.descriptors, k=2):
        if pair:
            best[pair[0].queryIdx] = pair[0].trainIdx
            d1[pair[0].queryIdx] = int(pair[0].distance)
            if len(pair) == 2:
                d2[pair[0].queryIdx] = int(pair[1].distance)
    return best, d1, d2


def _fit(source: Features, view: Features) -> _Fit | None:
    if len(view) < 2 or len(source) < 2:
        return None
    best, d1, d2 = _nearest_two(source, view)
    # Nearest neighbours that pass the ratio test, one-to-one: the closest pairs claim their
    # view keypoint first (of equal distances, the earlier source keypoint).
    ok = np.flatnonzero((d1 <= MATCH_DISTANCE) & (d1 < RATIO * d2) & (best >= 0))
    ok = ok[np.argsort(d1[ok], kind="stable")]
    _, first = np.unique(best[ok], return_index=True)
    chosen = ok[np.sort(first)]
    src_rows = chosen.tolist()
    dst_rows = best[chosen].tolist()
    if len(src_rows) < MIN_INLIERS:
        return None
    src = source.xy[src_rows]
    dst = view.xy[dst_rows]
    transform, mask = cv2.estimateAffinePartial2D(
        src,
        dst,
        method=cv2.RANSAC,
        ransacReprojThreshold=REPROJECTION_PX,
        maxIters=500,
        confidence=0.995,
        refineIters=10,
    )
    if transform is None or mask is None:
        return None
    scale = math.hypot(float(transform[0, 0]), float(transform[1, 0]))
    angle = math.degrees(math.atan2(float(transform[1, 0]), float(transform[0, 0])))
    if not (SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]) or abs(angle) > MAX_ROTATION_DEG:
        return None
    inlier = mask.ravel().astype(bool)
    rows = np.asarray(src_rows, dtype=np.intp)
    return _Fit(int(inlier.sum()), np.asarray(transform, np.float64), src, dst, inlier, rows)


def _distinct(points: NDArray[np.float32]) -> int:
    """How many of ``points`` are more than :data:`REPROJECTION_PX` from every point counted
    before them: points closer than RANSAC's tolerance are one place."""
    if len(points) < 2:
        return len(points)
    diff = points[:, None, :] - points[None, :, :]
    near = np.einsum("ijk,ijk->ij", diff, diff) <= REPROJECTION_PX**2
    kept: list[int] = []
    for i in range(len(points)):
        if not near[i, kept].any():
            kept.append(i)
    return len(kept)


def _hull_share(points: NDArray[np.float32], width: int, height: int) -> float:
    if len(points) < 3:
        return 0.0
    hull = cv2.convexHull(points.reshape(-1, 1, 2).astype(np.float32))
    return min(1.0, float(cv2.contourArea(hull)) / float(max(1, width * height)))


def _changed_region(
    source: Features, view: Features, fit: _Fit, mirrored: bool, full: tuple[int, int]
) -> dict[str, Any]:
    """Where the scanned image differs from the source after alignment, coarsely: the source's
    keypoints are projected into the scanned frame; a grid cell whose projected keypoints
    (at least 2) almost all failed to match is marked changed. ``mask`` rows are strings,
    ``#`` changed, ``.`` matched, `` `` no evidence; ``box`` is [x, y, width, height] in the
    scanned image's pixels around the changed cells, or null when none changed."""
    g = CHANGE_GRID
    ones = np.ones((len(source), 1), np.float32)
    projected = np.hstack([source.xy, ones]) @ fit.transform.T.astype(np.float32)
    matched = np.zeros(len(source), bool)
    matched[fit.src_rows[fit.inlier_mask]] = True
    inside = (
        (projected[:, 0] >= 0)
        & (projected[:, 0] < view.width)
        & (projected[:, 1] >= 0)
        & (projected[:, 1] < view.height)
    )
    cx = np.minimum((projected[inside, 0] * g / view.width).astype(int), g - 1)
    cy = np.minimum((projected[inside, 1] * g / view.height).astype(int), g - 1)
    total = np.zeros((g, g), int)
    hits = np.zeros((g, g), int)
    np.add.at(total, (cy, cx), 1)
    np.add.at(hits, (cy, cx), matched[inside].astype(int))
    changed = (total >= 2) & (hits <= total * 0.2)
    evidence = (total >= 2) & ~changed
    if mirrored:  # the fit was made on the mirrored view: show the image as it was scanned
        changed, evidence = changed[:, ::-1], evidence[:, ::-1]
    mask = [
        "".join("#" if changed[y, x] else "." if evidence[y, x] else " " for x in range(g))
        for y in range(g)
    ]
    box = None
    if changed.any():
        # The box goes round the largest connected group of changed cells: single cells
        # elsewhere are mostly keypoints JPEG or resizing lost, not edits.
        grid: Any = changed.astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(grid, connectivity=4)
        biggest = 1 + int(np.argmax(stats[1:count, cv2.CC_STAT_AREA]))
        ys, xs = np.nonzero(labels == biggest)
        fw, fh = full
        x0, x1 = xs.min() * fw // g, (xs.max() + 1) * fw // g
        y0, y1 = ys.min() * fh // g, (ys.max() + 1) * fh // g
        box = [int(x0), int(y0), int(x1 - x0), int(y1 - y0)]
    share = float(changed.sum()) / float(max(1, int(changed.sum() + evidence.sum())))
    return {"box": box, "share": round(share, 3), "grid": g, "mask": mask}


def confidence_of(inliers: int) -> float:
    """0.5 at :data:`MIN_INLIERS`; every 4 more inliers halve the remaining doubt."""
    doubt: float = 0.5 * 0.5 ** (float(inliers - MIN_INLIERS) / 4.0)
    return round(1.0 - doubt, 4)


def _verify(source: Features, view: Features) -> _Fit | None:
    """The fit of ``source`` onto ``view``, if it is evidence of an edited copy: at least
    :data:`SURE_INLIERS` inliers, or at least :data:`MIN_INLIERS` spread over at least
    :data:`MIN_AREA` of the scanned image. Unrelated pairs that chance aligns (shapes the
    generated scenes share, a repeated texture) bunch their few inliers in a small patch."""
    fit = _fit(source, view)
    if fit is None or fit.inliers < MIN_INLIERS:
        return None
    # One corner found at two pyramid levels (or stored twice) is one piece of evidence, not
    # two: an unrelated scene matched a distractor with 8 inliers at only 6 places (a
    # horizon's corners, each twice).
    if _distinct(fit.dst_xy[fit.inlier_mask]) < MIN_INLIERS:
        return None
    area = _hull_share(fit.dst_xy[fit.inlier_mask], view.width, view.height)
    if fit.inliers < SURE_INLIERS and area < MIN_AREA:
        return None
    # Inliers bunched in a small part of where the photo's keypoints land are more likely a
    # repeated pattern than the same picture.
    ones = np.ones((len(source), 1), np.float32)
    projected = np.hstack([source.xy, ones]) @ fit.transform.T.astype(np.float32)
    if area < MIN_COVERAGE * _hull_share(projected, view.width, view.height):
        return None
    return fit


class DerivativeMatcher:
    """In-memory index of registered photos' features; safe for concurrent ``match`` calls
    while one thread applies changes (``add``/``remove``/``replace``)."""

    def __init__(self, records: Iterable[Record] = ()) -> None:
        self._lock = threading.Lock()
        empty = _Segment.build([])
        self._snap = _Snapshot.of(_Segment.build(list(records)), empty, frozenset())

    def __len__(self) -> int:
        return len(self._snap.where)

    def __contains__(self, source_id: object) -> bool:
        return source_id in self._snap.where

    def ids(self) -> set[int]:
        return set(self._snap.where)

    def memory_bytes(self) -> int:
        snap = self._snap
        strings = sum(len(s) + 49 for s in snap.main.subjects + snap.tail.subjects)
        return snap.main.nbytes() + snap.tail.nbytes() + strings

    def replace(self, records: Iterable[Record]) -> None:
        """Swap in a freshly built index of exactly ``records``."""
        main = _Segment.build(list(records))
        with self._lock:
            self._snap = _Snapshot.of(main, _Segment.build([]), frozenset())

    def add(self, records: Sequence[Record]) -> None:
        """Add (or replace, by id) records; visible to the next ``match``."""
        if not records:
            return
        with self._lock:
            snap = self._snap
            new_ids = {r.source_id for r in records}
            tail = [r for r in snap.tail.records() if r.source_id not in new_ids] + list(records)
            dead = snap.dead | (new_ids & {int(i) for i in snap.main.ids.tolist()})
            self._swap(snap.main, tail, dead)

    def remove(self, ids: Iterable[int]) -> int:
        """Remove records by id (unknown ids are ignored); returns how many were present."""
        gone = {int(i) for i in ids}
        with self._lock:
            snap = self._snap
            present = gone & set(snap.where)
            if not present:
                return 0
            tail = [r for r in snap.tail.records() if r.source_id not in gone]
            in_main = present & {int(i) for i in snap.main.ids.tolist()}
            self._swap(snap.main, tail, snap.dead | in_main)
            return len(present)

    def _swap(self, main: _Segment, tail: list[Record], dead: frozenset[int]) -> None:
        if len(tail) > _TAIL_LIMIT or len(dead) > max(_TAIL_LIMIT, len(main) // 10):
            live = [r for r in main.records() if r.source_id not in dead] + tail
            self._snap = _Snapshot.of(_Segment.build(live), _Segment.build([]), frozenset())
        else:
            self._snap = _Snapshot.of(main, _Segment.build(tail), dead)

    def match(
        self, image: Image.Image, full_size: tuple[int, int] | None = None
    ) -> DerivativeMatch | None:
        """The registered photo ``image`` is an edited copy of, with the evidence, or None.
        ``full_size`` is the scanned image's real size (``image`` may be a reduced decode)."""
        snap = self._snap
        if not snap.where:
            return None
        return self.match_features(query_features(image), full_size or image.size, snap)

    def match_features(
        self,
        query: QueryFeatures,
        full_size: tuple[int, int],
        snap: _Snapshot | None = None,
    ) -> DerivativeMatch | None:
        snap = snap or self._snap
        # Votes per view (as scanned, mirrored): only the view a photo was voted for is
        # verified against it, which halves the verification work.
        ranked: list[tuple[int, int, int, int]] = []  # (-agreeing, -votes, source id, view)
        for v, view in enumerate(query.views):
            found = snap.main.agreeing(view, snap.dead)
            found.update(snap.tail.agreeing(view, frozenset()))
            ranked += [(-a, -n, sid, v) for sid, (a, n) in found.items() if a >= MIN_AGREEING]
        ranked.sort()
        best: tuple[int, Record, Features, _Fit, bool] | None = None
        for _, _, sid, v in ranked[:SHORTLIST_SIZE]:
            record = snap.record(sid)
            if record is None:
                continue
            view, mirrored = query.views[v], query.mirrored[v]
            fit = _verify(record.features, view)
            if fit is None:
                continue
            if best is None or fit.inliers > best[0]:
                best = (fit.inliers, record, view, fit, mirrored)
            if fit.inliers >= DONE_INLIERS:
                break  # no unrelated pair comes near: verifying the rest would only cost
        if best is None:
            return None
        inliers, record, view, fit, mirrored = best
        area = _hull_share(fit.dst_xy[fit.inlier_mask], view.width, view.height)
        return DerivativeMatch(
            source_id=record.source_id,
            subject=record.subject,
            confidence=confidence_of(inliers),
            matched_area=round(area, 3),
            changed_region=_changed_region(record.features, view, fit, mirrored, full_size),
            inliers=inliers,
            mirrored=mirrored,
        )
