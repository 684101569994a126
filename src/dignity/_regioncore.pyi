"""Type stub of the compiled kernel dignity._regioncore (see _regioncore.c)."""

from typing import Any

def runs(
    s: Any,
    q: Any,
    rgb: Any,
    height1: int,
    width1: int,
    x0: int,
    y0: int,
    x1: int,
    y1: int,
    axis: int,
    plain_std: float,
    step: float,
    drift: float,
    sharp_std: float,
    sharp_step: float,
    sharp_lines: int,
    /,
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]: ...
def edge_runs(
    grey: Any, height: int, width: int, axis: int, min_len: int, step: int, most: int, /
) -> list[tuple[int, int, int]]: ...
def first_off(
    grey: Any,
    height: int,
    width: int,
    x0: int,
    y0: int,
    x1: int,
    y1: int,
    axis: int,
    backward: bool,
    plain_std: float,
    sharp_step: float,
    /,
) -> int: ...
def fill_corner(
    sample: Any, height: int, width: int, corner: int, c: int, low: int, high: int, /
) -> int: ...
def dominant(
    sample: Any, height: int, width: int, x0: int, y0: int, x1: int, y1: int, /
) -> float: ...
