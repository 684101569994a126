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

from typing import Any

from dignity.derivatives.features import FeatureError, Features, source_features
from dignity.derivatives.matching import DerivativeMatch, DerivativeMatcher, Record
from dignity.media import Media

__all__ = [
    "DerivativeMatch",
    "DerivativeMatcher",
    "FeatureError",
    "Features",
    "Record",
    "match_media",
    "source_features",
]


def match_media(matcher: DerivativeMatcher, media: Media) -> dict[str, Any] | None:
    """``signals.derivative_of`` for one decoded upload: the evidence, or None."""
    found = matcher.match(media.image, (media.width, media.height))
    return None if found is None else found.to_dict()
