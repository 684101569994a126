"""Type stub of the compiled shortlist (``_shortlist.c``); the result is packed int64 bytes."""

from typing import Any

def agreeing(
    starts: Any,
    postings: Any,
    check: Any,
    desc: Any,
    xy: Any,
    stride: int,
    nrec: int,
    qdesc: Any,
    qxy: Any,
    qkeys: Any,
    qcheck: Any,
    key_bits: int,
    max_bucket: int,
    check_distance: int,
    preselect: int,
    min_votes: int,
    shortlist_distance: int,
    min_count: int,
    shift_bin: int,
    norm_side: int,
    xy_step: float,
) -> bytes: ...
def knn2(desc: Any, qdesc: Any) -> bytes: ...
