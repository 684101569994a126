// PDQ perceptual hash, computed the way dignity's server computes it (src/dignity/hashing/pdq.py),
// which follows Meta's C++ reference (pdq/cpp/io/pdqio.cpp + pdqhashing.cpp). One ES module,
// no dependencies, the same in the browser and in Node (`node --test`).
//
//   pdqHash(rgba, width, height) -> {hash: "64 lowercase hex, MSB first", quality: 0..100}
//   pdqHashFullSize(rgba, width, height) -> the same without step 1, for video frames: Meta's
//       vpdq (and the server's pdq_from_full_pixels) blurs the whole frame, not a 512 px sample.
//
// `rgba` is a Uint8ClampedArray (or Uint8Array) of the full-size image, already turned upright
// (the page decodes with createImageBitmap(..., {imageOrientation: "from-image"})). The module
// does every step itself on raw pixels, so the browser's canvas scaler never touches the hash:
//   1. images over 512 px on either side: nearest-neighbour resample to 512 x 512 on CImg's
//      grid, source index floor(i * size / 512) (both axes, as the reference does);
//   2. luma 0.299 R + 0.587 G + 0.114 B (alpha ignored, as the reference drops it);
//   3. the Jarosz tent filter: two passes of the reference's box filter along each axis, window
//      ceil(size / 128), shrinking at the edges rather than padding;
//   4. decimation to 64 x 64 at "centres, not corners": index floor((i + 0.5) * size / 64);
//   5. the 16 x 16 low-frequency block of the 64-point DCT-II (DC row skipped);
//   6. bit (i * 16 + j) set where coefficient (i, j) exceeds the lower median; printed bit 255
//      first, as python-threatexchange and HMA print hashes;
//   7. quality: the reference's gradient sum over the 64 x 64 grid, in float32 as the C++ does.
// Images smaller than 5 px on a side hash to all zeros with quality 0, as in the reference.

const DOWNSAMPLE = 512;
const GRID = 64;
const MIN_HASHABLE_DIM = 5;
const PASSES = 2;

/** The 16 x 64 DCT matrix: rows 1..16 of the 64-point DCT-II, scaled by sqrt(2/64). */
const DCT = (() => {
  const m = new Float64Array(16 * GRID);
  const scale = Math.sqrt(2 / GRID);
  for (let i = 1; i <= 16; i++) {
    for (let j = 0; j < GRID; j++) {
      m[(i - 1) * GRID + j] = Math.fround(scale * Math.cos((Math.PI / 2 / GRID) * i * (2 * j + 1)));
    }
  }
  return m;
})();

/** Nearest-neighbour source indices: floor(i * size / 512), exact in doubles. */
function sampleIndex(size, target) {
  const idx = new Int32Array(target);
  for (let i = 0; i < target; i++) idx[i] = Math.floor((i * size) / target);
  return idx;
}

/** Luma of the (resampled, unless `fullSize`) image as float64 rows x cols. */
function lumaPlane(rgba, width, height, fullSize) {
  const resample = !fullSize && (width > DOWNSAMPLE || height > DOWNSAMPLE);
  const rows = resample ? DOWNSAMPLE : height;
  const cols = resample ? DOWNSAMPLE : width;
  const rowIdx = resample ? sampleIndex(height, DOWNSAMPLE) : null;
  const colIdx = resample ? sampleIndex(width, DOWNSAMPLE) : null;
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const sr = rowIdx ? rowIdx[r] : r;
    const base = sr * width;
    for (let c = 0; c < cols; c++) {
      const p = (base + (colIdx ? colIdx[c] : c)) * 4;
      out[r * cols + c] = 0.299 * rgba[p] + 0.587 * rgba[p + 1] + 0.114 * rgba[p + 2];
    }
  }
  return { plane: out, rows, cols };
}

/**
 * The reference's box1DFloat along one line of n values (read at `start` with `stride`):
 * output o is the mean of inputs max(0, o - (w - h)) .. min(n - 1, o + h - 1), h = (w + 2) >> 1.
 */
function boxLine(src, dst, start, stride, n, window, prefix) {
  const half = (window + 2) >> 1;
  prefix[0] = 0;
  for (let k = 0; k < n; k++) prefix[k + 1] = prefix[k] + src[start + k * stride];
  for (let o = 0; o < n; o++) {
    const lo = Math.max(0, o - (window - half));
    const hi = Math.min(n - 1, o + half - 1);
    dst[start + o * stride] = (prefix[hi + 1] - prefix[lo]) / (hi - lo + 1);
  }
}

/** Two box passes along rows and along columns (the Jarosz tent), in place. */
function jarosz(plane, rows, cols) {
  const windowAlongRow = Math.floor((cols + 2 * GRID - 1) / (2 * GRID));
  const windowAlongCol = Math.floor((rows + 2 * GRID - 1) / (2 * GRID));
  const tmp = new Float64Array(plane.length);
  const prefix = new Float64Array(Math.max(rows, cols) + 1);
  let a = plane;
  let b = tmp;
  for (let pass = 0; pass < PASSES; pass++) {
    for (let r = 0; r < rows; r++) boxLine(a, b, r * cols, 1, cols, windowAlongRow, prefix);
    for (let c = 0; c < cols; c++) boxLine(b, a, c, cols, rows, windowAlongCol, prefix);
  }
  return a;
}

/** 64 x 64 samples of the blurred plane, as float32 values (the reference's buffer type). */
function decimate(plane, rows, cols) {
  const grid = new Float64Array(GRID * GRID);
  for (let i = 0; i < GRID; i++) {
    const r = Math.floor(((i + 0.5) * rows) / GRID);
    for (let j = 0; j < GRID; j++) {
      const c = Math.floor(((j + 0.5) * cols) / GRID);
      grid[i * GRID + j] = Math.fround(plane[r * cols + c]);
    }
  }
  return grid;
}

/** The reference's quality metric (pdqhashing.cpp computePDQImageDomainQualityMetric). */
function quality(grid) {
  const f = Math.fround;
  const k100 = f(100);
  const k255 = f(255);
  let total = 0;
  for (let i = 0; i < GRID - 1; i++) {
    for (let j = 0; j < GRID; j++) {
      const u = grid[i * GRID + j];
      const v = grid[(i + 1) * GRID + j];
      total += Math.abs(Math.trunc(f(f(f(u - v) * k100) / k255)));
    }
  }
  for (let i = 0; i < GRID; i++) {
    for (let j = 0; j < GRID - 1; j++) {
      const u = grid[i * GRID + j];
      const v = grid[i * GRID + j + 1];
      total += Math.abs(Math.trunc(f(f(f(u - v) * k100) / k255)));
    }
  }
  return Math.min(100, Math.floor(total / 90));
}

/** D * grid * D^T: the 16 x 16 low-frequency DCT block, row-major. */
function dct16(grid) {
  const tmp = new Float64Array(16 * GRID); // D * grid
  for (let a = 0; a < 16; a++) {
    for (let k = 0; k < GRID; k++) {
      let s = 0;
      for (let j = 0; j < GRID; j++) s += DCT[a * GRID + j] * grid[j * GRID + k];
      tmp[a * GRID + k] = s;
    }
  }
  const block = new Float64Array(256);
  for (let a = 0; a < 16; a++) {
    for (let b = 0; b < 16; b++) {
      let s = 0;
      for (let k = 0; k < GRID; k++) s += tmp[a * GRID + k] * DCT[b * GRID + k];
      block[a * 16 + b] = s;
    }
  }
  return block;
}

/** Bits above the lower median, printed most significant (bit 255) first. */
function toHex(block) {
  const sorted = Array.from(block).sort((x, y) => x - y);
  const median = sorted[127];
  const bytes = new Uint8Array(32);
  for (let k = 0; k < 256; k++) {
    if (block[k] > median) bytes[31 - (k >> 3)] |= 1 << (k & 7);
  }
  let hex = "";
  for (const byte of bytes) hex += byte.toString(16).padStart(2, "0");
  return hex;
}

function hashPixels(rgba, width, height, fullSize) {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 0 || height < 0) {
    throw new RangeError(`width and height must be non-negative integers, got ${width} x ${height}`);
  }
  if (!rgba || typeof rgba.length !== "number" || rgba.length !== width * height * 4) {
    throw new RangeError(`expected ${width * height * 4} RGBA bytes, got ${rgba && rgba.length}`);
  }
  if (width < MIN_HASHABLE_DIM || height < MIN_HASHABLE_DIM) {
    return { hash: "0".repeat(64), quality: 0 };
  }
  const { plane, rows, cols } = lumaPlane(rgba, width, height, fullSize);
  const blurred = jarosz(plane, rows, cols);
  const grid = decimate(blurred, rows, cols);
  return { hash: toHex(dct16(grid)), quality: quality(grid) };
}

/**
 * PDQ hash and quality of an upright RGBA image.
 * @param {Uint8ClampedArray|Uint8Array} rgba width * height * 4 bytes, row by row
 * @param {number} width
 * @param {number} height
 * @returns {{hash: string, quality: number}}
 */
export function pdqHash(rgba, width, height) {
  return hashPixels(rgba, width, height, false);
}

/**
 * PDQ of a whole video frame, without the 512 px resample (vpdq's frame hash).
 * @param {Uint8ClampedArray|Uint8Array} rgba width * height * 4 bytes, row by row
 * @param {number} width
 * @param {number} height
 * @returns {{hash: string, quality: number}}
 */
export function pdqHashFullSize(rgba, width, height) {
  return hashPixels(rgba, width, height, true);
}

/** Hamming distance between two 64-hex-digit PDQ hashes. */
export function hammingDistance(a, b) {
  if (a.length !== 64 || b.length !== 64) throw new RangeError("PDQ hashes are 64 hex digits");
  let d = 0;
  for (let i = 0; i < 64; i += 8) {
    let x = (parseInt(a.slice(i, i + 8), 16) ^ parseInt(b.slice(i, i + 8), 16)) >>> 0;
    while (x) {
      x &= x - 1;
      d++;
    }
  }
  return d;
}
