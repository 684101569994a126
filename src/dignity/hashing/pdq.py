"""PDQ, computed exactly as Meta's C++ reference computes it, in a few vectorised numpy steps.

Meta's reference reader (``pdq/cpp/io/pdqio.cpp``) first resizes any image larger than 512 px
on a side to 512 x 512 with CImg's default nearest-neighbour resampling; it then takes float
luma, blurs it with two passes of a box filter per axis (the "Jarosz" tent filter), samples a
64 x 64 grid, takes the 16 x 16 low-frequency DCT block and sets a bit per coefficient above the
median. python-threatexchange skips the 512 px step and hashes the full image, which is slower
and a few bits off the reference.

Why not call ``pdqhash`` (the C++ code behind a Cython binding) for the last steps? It blurs every
pixel of the 512 x 512 buffer and computes luma in float64 first: ~7 ms an image, twice the
time of decoding a 0.8 MP JPEG. The blur-and-sample step is linear, so we build it once per
image size from the reference's own box-filter edge rules as a band of weights (each of the 64
samples reads ~7 rows and ~7 columns) and apply it with a gather and a short sum; the result
equals the reference up to float rounding. ``pdqhash`` stays the oracle in our tests (bit for
bit on every fixture, dihedral hashes included).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from threadpoolctl import threadpool_limits

PDQ_DOWNSAMPLE = 512  # pdqio.cpp's DOWNSAMPLE_DIMS
_GRID = 64  # the reference samples a 64 x 64 grid after blurring
_MIN_HASHABLE_DIM = 5  # smaller images hash to all zeros with quality 0, as in the reference

# Order of the 8 dihedral hashes (the C++ reference's order).
DIHEDRAL_NAMES: tuple[str, ...] = (
    "original",
    "rotate90",
    "rotate180",
    "rotate270",
    "flipx",
    "flipy",
    "flip_plus1",
    "flip_minus1",
)


@dataclass(frozen=True)
class PdqHash:
    """A PDQ hash (64 lowercase hex, MSB first), its quality 0-100, and optional dihedrals."""

    hex: str
    quality: int
    dihedral: tuple[str, ...] | None = None
    # The same hashes as bytes, back to back (the 8 dihedrals, or the one hash), for matching:
    # the hex fields are for output.
    packed: bytes = field(default=b"", compare=False, repr=False)

    def query_bytes(self, *, dihedral: bool) -> bytes:
        """The hash (or, with ``dihedral`` and when computed, all 8) as rows of 32 bytes."""
        packed = self.packed or bytes.fromhex("".join(self.dihedral or (self.hex,)))
        if dihedral and self.dihedral:
            return packed
        return packed[:32]


def reference_downsample(pixels: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Nearest-neighbour resize to 512 x 512 when either side exceeds 512, as pdqio.cpp does."""
    height, width = pixels.shape[:2]
    if height <= PDQ_DOWNSAMPLE and width <= PDQ_DOWNSAMPLE:
        return pixels
    # CImg's nearest-neighbour source index is floor(i * size / target); integer arithmetic
    # gives the same indices exactly for every size we accept.
    rows = np.arange(PDQ_DOWNSAMPLE, dtype=np.intp) * height // PDQ_DOWNSAMPLE
    cols = np.arange(PDQ_DOWNSAMPLE, dtype=np.intp) * width // PDQ_DOWNSAMPLE
    small: NDArray[np.uint8] = np.take(np.take(pixels, rows, axis=0), cols, axis=1)
    return small


def reference_downsample_image(image: Image.Image) -> Image.Image:
    """The same nearest-neighbour resize done by Pillow's C code, without a full-size array.

    Pillow's affine nearest sampler reads source ``int(a * (x + 0.5) + c)``; with ``a = size/512``
    and ``c = -a/2`` that is ``floor(x * size / 512)``, computed exactly because ``size/512`` is
    a dyadic fraction. Tests check it against :func:`reference_downsample` pixel for pixel.
    """
    width, height = image.size
    if height <= PDQ_DOWNSAMPLE and width <= PDQ_DOWNSAMPLE:
        return image
    sx = width / PDQ_DOWNSAMPLE
    sy = height / PDQ_DOWNSAMPLE
    return image.transform(
        (PDQ_DOWNSAMPLE, PDQ_DOWNSAMPLE),
        Image.Transform.AFFINE,
        (sx, 0.0, -0.5 * sx, 0.0, sy, -0.5 * sy),
        resample=Image.Resampling.NEAREST,
    )


@lru_cache(maxsize=1024)
def _blur_and_sample(n: int) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
    """Two box passes along an axis of length n, then the 64-point decimation, as a band.

    The reference's 1-D box filter (box1DFloat) averages inputs ``max(0, o - (w - h)) ..
    min(n - 1, o + h - 1)`` for output ``o``, where ``h = (w + 2) // 2``: a window of ``w``
    that shrinks at both edges rather than padding. Two passes and the decimation make a
    64 x n matrix with ~2 windows of non-zeros per row, kept as (64, k) column indices and
    weights: applying it is a gather and a k-term sum. Only the 64 sampled rows of the two
    passes are built, term by term in the order a dense product sums them (the same floats
    as squaring the n x n box matrix, which cost up to 7 ms per new size at n = 512: a
    region of a new size paid it on its first hash).
    """
    window = (n + 2 * _GRID - 1) // (2 * _GRID)
    half = (window + 2) // 2
    out = np.arange(n)
    lo = np.maximum(0, out - (window - half))
    hi = np.minimum(n - 1, out + half - 1)
    inv = 1.0 / (hi - lo + 1)
    # decimateFloat samples "centers not corners": index int((i + 0.5) * n / 64).
    picks = ((np.arange(_GRID) + 0.5) * n / _GRID).astype(np.intp)
    first, last = lo[lo[picks]], hi[hi[picks]]  # the band of each sampled row
    k = int((last - first + 1).max())
    span = first[:, None] + np.arange(k)[None, :]
    index = np.minimum(span, n - 1)
    weights = np.zeros((_GRID, k))
    # Row p of the square is the sum over the inputs m of the first pass's row p of row m
    # of the second pass's, each weighted 1 / its window.
    for step in range(int((hi[picks] - lo[picks]).max()) + 1):
        m = np.minimum(lo[picks] + step, n - 1)
        inside = (index >= lo[m][:, None]) & (index <= hi[m][:, None])
        inside &= (lo[picks] + step <= hi[picks])[:, None]
        weights += np.where(inside, (inv[picks] * inv[m])[:, None], 0.0)
    weights[span > last[:, None]] = 0.0  # clipped positions past the band count for nothing
    return index, weights.astype(np.float32)


def _dct_matrix() -> NDArray[np.float32]:
    # Rows 1..16 of the 64-point DCT-II (the DC row is skipped), scaled by sqrt(2/64).
    i = np.arange(1, 17)[:, None]
    j = np.arange(_GRID)[None, :]
    d = np.sqrt(2.0 / _GRID) * np.cos(np.pi / 2.0 / _GRID * i * (2 * j + 1))
    matrix: NDArray[np.float32] = d.astype(np.float32)
    return matrix


_DCT = _dct_matrix()

# The products here are small (64 x 512); OpenBLAS's thread pool costs more than it saves, and
# when the other cores are busy (scan workers, a loaded server) it waits for them: measured 10x
# slower. dignity parallelises across processes, so BLAS stays on one thread in ours.
threadpool_limits(limits=1, user_api="blas")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# Each dihedral transform of the image is a transpose and/or sign pattern on the 16 x 16 DCT
# block (pdqhashing.cpp, dct16OriginalTo*): (transpose?, sign matrix).
_I = np.arange(16)[:, None]
_J = np.arange(16)[None, :]
_ONES = np.ones((16, 16), dtype=np.float32)
_ODD_J = np.where(_J & 1, 1.0, -1.0).astype(np.float32) * _ONES
_ODD_I = np.where(_I & 1, 1.0, -1.0).astype(np.float32) * _ONES
_CHECKER = np.where((_I + _J) & 1, -1.0, 1.0).astype(np.float32)
_DIHEDRAL: tuple[tuple[bool, NDArray[np.float32]], ...] = (
    (False, _ONES),
    (True, _ODD_J),
    (False, _CHECKER),
    (True, _ODD_I),
    (False, _ODD_I),
    (False, _ODD_J),
    (True, _ONES),
    (True, _CHECKER),
)


def _luma64(small: NDArray[np.uint8]) -> NDArray[np.float32]:
    rows, cols = small.shape[:2]
    if rows == _GRID and cols == _GRID:
        # The reference copies a 64 x 64 input unfiltered (our band would be the identity).
        luma: NDArray[np.float32] = small.astype(np.float32) @ _LUMA
        return luma
    row_index, row_weights = _blur_and_sample(rows)
    col_index, col_weights = _blur_and_sample(cols)
    # Everything here is linear, so the vertical pass runs first, on only the rows it reads and
    # still in RGB; luma comes after, on 64 rows instead of 512. One pass over the pixels
    # instead of three: on a freshly decoded photo this halves the cost (cache misses).
    k = row_index.shape[1]
    picked = small[row_index].reshape(_GRID, k, cols * 3).astype(np.float32)
    across = np.matmul(row_weights[:, None, :], picked)[:, 0, :].reshape(_GRID, cols, 3) @ _LUMA
    result: NDArray[np.float32] = np.einsum("ck,rck->rc", col_weights, across[:, col_index])
    return result


def _quality(grid: NDArray[np.float32]) -> int:
    # C++ truncates (u - v) * 100 / 255 toward zero before taking abs, then divides by 90.
    down = np.trunc((grid[:-1, :] - grid[1:, :]) * np.float32(100) / np.float32(255))
    across = np.trunc((grid[:, :-1] - grid[:, 1:]) * np.float32(100) / np.float32(255))
    total = int(np.abs(down).sum(dtype=np.int64) + np.abs(across).sum(dtype=np.int64))
    return min(100, total // 90)


def _bits(block: NDArray[np.floating[Any]]) -> bytes:
    flat = block.ravel()
    # torben() returns the lower median of the 256 coefficients; bit k = i*16 + j is set when
    # coefficient (i, j) exceeds it, and the bytes (like the hex string) hold bit 255 first.
    median = np.partition(flat, 127)[127]
    bits = (flat > median)[::-1]
    return np.packbits(bits).tobytes()


def pdq_from_pixels(pixels: NDArray[np.uint8], *, dihedral: bool = False) -> PdqHash:
    """PDQ of an H x W x 3 RGB uint8 array (already oriented as a person sees it)."""
    return _pdq_from_small(reference_downsample(pixels), dihedral=dihedral)


def pdq_from_full_pixels(pixels: NDArray[np.uint8], *, dihedral: bool = False) -> PdqHash:
    """PDQ of an H x W x 3 RGB uint8 array at its full size, without the 512 px resize.

    Meta's vpdq hashes each video frame this way (``PDQFrameBufferHasher`` feeds the whole
    frame to the blur), so vPDQ frame hashes need it to agree with Meta's. ``dihedral`` adds
    the 8 variants (one DCT, sign flips and a transpose: almost free).
    """
    return _pdq_from_small(pixels, dihedral=dihedral)


def pdq_from_image(image: Image.Image, *, dihedral: bool = False) -> PdqHash:
    """PDQ of an RGB Pillow image; only the 512 px sample is ever turned into an array."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    small = np.asarray(reference_downsample_image(image))
    return _pdq_from_small(small, dihedral=dihedral)


def box_sample(image: Image.Image, box: tuple[int, int, int, int]) -> NDArray[np.uint8]:
    """The pixels PDQ reads of the ``(x0, y0, x1, y1)`` part of an RGB Pillow image: the part
    itself when it is at most 512 px a side, else its 512 x 512 nearest-neighbour sample, as
    if it were cropped and hashed on its own, without copying the part at full size."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    x0, y0, x1, y1 = box
    width, height = x1 - x0, y1 - y0
    if width <= PDQ_DOWNSAMPLE and height <= PDQ_DOWNSAMPLE:
        return np.array(image.crop(box))
    # As in reference_downsample_image, with the crop's offset added: Pillow reads source
    # int(a * (x + 0.5) + c) = x0 + floor(x * width / 512) for c = x0 - a / 2.
    sx = width / PDQ_DOWNSAMPLE
    sy = height / PDQ_DOWNSAMPLE
    small = image.transform(
        (PDQ_DOWNSAMPLE, PDQ_DOWNSAMPLE),
        Image.Transform.AFFINE,
        (sx, 0.0, x0 - 0.5 * sx, 0.0, sy, y0 - 0.5 * sy),
        resample=Image.Resampling.NEAREST,
    )
    return np.array(small)


def pdq_from_box(
    image: Image.Image, box: tuple[int, int, int, int], *, dihedral: bool = False
) -> PdqHash:
    """PDQ of the ``(x0, y0, x1, y1)`` part of an RGB Pillow image, equal to the PDQ of that
    part cropped and hashed on its own (see :func:`box_sample`)."""
    return _pdq_from_small(box_sample(image, box), dihedral=dihedral)


# The 8 dihedral blocks, flattened, as one gather and one sign product: block.T.ravel() is
# block.ravel()[_TRANSPOSED].
_TRANSPOSED = np.arange(256).reshape(16, 16).T.ravel()
_DIHEDRAL_ORDER = np.stack([_TRANSPOSED if t else np.arange(256) for t, _ in _DIHEDRAL])
_DIHEDRAL_SIGNS = np.stack([(s.T if t else s).ravel() for t, s in _DIHEDRAL])


def _dihedral_bits(block: NDArray[np.floating[Any]]) -> list[bytes]:
    """:func:`_bits` of the 8 dihedral blocks at once (the same medians and bits: a partition
    per row is exact), in half the time of 8 calls: a region's hash is short enough for that
    to show."""
    flat = block.ravel()[_DIHEDRAL_ORDER] * _DIHEDRAL_SIGNS
    median = np.partition(flat, 127, axis=1)[:, 127:128]
    packed = np.packbits((flat > median)[:, ::-1], axis=1)
    return [row.tobytes() for row in packed]


def _grey64(grey: NDArray[np.uint8]) -> NDArray[np.float32]:
    """:func:`_luma64` of an image that is already luma (H x W): a third of the pixels read."""
    rows, cols = grey.shape
    if rows == _GRID and cols == _GRID:
        same: NDArray[np.float32] = grey.astype(np.float32)
        return same
    row_index, row_weights = _blur_and_sample(rows)
    col_index, col_weights = _blur_and_sample(cols)
    picked = grey[row_index].astype(np.float32)  # (64, k, cols)
    across = np.matmul(row_weights[:, None, :], picked)[:, 0, :]
    result: NDArray[np.float32] = np.einsum("ck,rck->rc", col_weights, across[:, col_index])
    return result


def pdq_from_grey(grey: NDArray[np.uint8], *, dihedral: bool = False) -> PdqHash:
    """PDQ of an H x W uint8 luma array (ITU-R 601 weights, as PDQ's, rounded to integers:
    OpenCV's or Pillow's grey) of at most 512 px a side. It reads a third of the bytes of
    :func:`pdq_from_pixels` and its luma is rounded to whole grey levels, which moves a bit
    only where a coefficient sits at the median (0-2 bits in practice): for hashing many parts
    of one image (``dignity.regions``) from one grey conversion."""
    return _pdq_from_small(grey, dihedral=dihedral)


def _pdq_from_small(small: NDArray[np.uint8], *, dihedral: bool) -> PdqHash:
    height, width = small.shape[:2]
    if height < _MIN_HASHABLE_DIM or width < _MIN_HASHABLE_DIM:
        rows = [bytes(32)] * (8 if dihedral else 1)
        quality = 0
    else:
        grid = _grey64(small) if small.ndim == 2 else _luma64(small)
        block = _DCT @ grid @ _DCT.T
        quality = _quality(grid)
        rows = _dihedral_bits(block) if dihedral else [_bits(block)]
    hexes = tuple(row.hex() for row in rows)
    return PdqHash(
        hex=hexes[0], quality=quality, dihedral=hexes if dihedral else None, packed=b"".join(rows)
    )
