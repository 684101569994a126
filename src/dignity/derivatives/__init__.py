"""Edited-derivative detection: people register their own (clothed) photos; uploads that are
edited copies of one (a region repainted or inpainted, cropped, resized, re-encoded, mirrored)
are found and sent to review with the evidence.

:mod:`~dignity.derivatives.features` computes what is stored per photo (ORB keypoints, never
pixels), :mod:`~dignity.derivatives.matching` holds them in memory and matches scans,
:mod:`~dignity.derivatives.service` registers, lists and removes sources with their consent
record and keeps each process's matcher current, :mod:`~dignity.derivatives.models` is the
schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dignity.derivatives.features import FeatureError, Features, source_features
from dignity.derivatives.matching import DerivativeMatch, DerivativeMatcher, Record
from dignity.media import Media

if TYPE_CHECKING:
    from dignity.hashing.signals import RegionHash

__all__ = [
    "REGION_LIMIT",
    "DerivativeMatch",
    "DerivativeMatcher",
    "FeatureError",
    "Features",
    "Record",
    "match_media",
    "source_features",
]


# Proposals (largest first) an upload's edited-derivative search goes on to when the whole
# image is not a derivative: each costs a feature extraction (~10-20 ms), unlike a PDQ.
REGION_LIMIT = 3
# A proposal whose PDQ quality is under this (PDQ's default floor) is too flat to carry the
# corners a match needs (text, a UI bar, a sky): not worth an extraction.
REGION_MIN_QUALITY = 50
# A proposal overlapping one already tried this much (IoU) shows the same picture at nearly
# the same scale (a block and the same block grown over a flat band): its features would be
# the same ones.
REGION_SAME = 0.8


def match_media(
    matcher: DerivativeMatcher, media: Media, regions: Sequence[RegionHash] = ()
) -> dict[str, Any] | None:
    """``signals.derivative_of`` for one decoded upload: the evidence, or None. When the whole
    image is no edited copy, the pictures found inside it (``regions``, see
    :mod:`dignity.regions`) are tried at their own scale, largest first, at most
    :data:`REGION_LIMIT` of them, skipping those too flat to match and near-copies of one
    tried; evidence found in one carries ``region`` ({x, y, w, h} in the upload's pixels)."""
    if not len(matcher):
        return None
    found = matcher.match(media.image, (media.width, media.height))
    if found is not None:
        return found.to_dict()
    by_size = sorted(regions, key=lambda r: -(r.region.w * r.region.h))
    tried: list[tuple[int, int, int, int]] = []
    for rh in by_size:
        if len(tried) >= REGION_LIMIT:
            break
        if rh.pdq.quality < REGION_MIN_QUALITY or any(_iou(rh.box, b) > REGION_SAME for b in tried):
            continue
        tried.append(rh.box)
        part = matcher.match(media.image.crop(rh.box), (rh.region.w, rh.region.h))
        if part is not None:
            evidence = part.to_dict()
            changed = dict(evidence["changed_region"])
            box = changed.get("box")
            if box is not None:  # in the upload's pixels, like the region itself
                changed["box"] = [box[0] + rh.region.x, box[1] + rh.region.y, box[2], box[3]]
            return {**evidence, "changed_region": changed, "region": rh.region.to_dict()}
    return None


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0
