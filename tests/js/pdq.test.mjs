// Vector tests for src/dignity/web/static/pdq.js and md5.js, run by `node --test tests/js/`
// (tests/unit/test_pdq_js.py runs them under pytest). pdq-vectors.json holds integer-defined
// images with the hashes dignity's server computes for them (the Python test checks the server
// still does); DIGNITY_PDQ_FILE_VECTORS, when set, names a JSON list of decoded fixture photos
// ({path, width, height, hash, quality}: raw RGBA files written by the Python test).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { pdqHash, pdqHashFullSize, hammingDistance } from "../../src/dignity/web/static/pdq.js";
import { Md5, md5Hex } from "../../src/dignity/web/static/md5.js";

const here = new URL(".", import.meta.url);
const vectors = JSON.parse(readFileSync(new URL("pdq-vectors.json", here), "utf8"));
// Video frames: hashed at full size (the server's pdq_from_full_pixels, Meta's vpdq).
const fullSizeVectors = JSON.parse(
  readFileSync(new URL("pdq-full-size-vectors.json", here), "utf8"),
);

// The same integer formulas as tests/unit/test_pdq_js.py's `synthetic()`.
function synthetic(kind, w, h, seed) {
  const out = new Uint8ClampedArray(w * h * 4);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let r;
      let g;
      let b;
      if (kind === "pattern") {
        r = (Math.floor((x * x) / (seed + 3)) + y * 3 + seed * 17) % 256;
        g = (((Math.floor(x / (seed + 1)) ^ Math.floor(y / (seed + 2))) * 5) % 256);
        b = Math.floor((x * y) / (7 + seed)) % 256;
      } else {
        r = Math.floor((x * 255) / Math.max(1, w - 1));
        g = Math.floor((y * 255) / Math.max(1, h - 1));
        b = (((x + y) * seed) % 7) + 120;
      }
      const p = (y * w + x) * 4;
      out[p] = r;
      out[p + 1] = g;
      out[p + 2] = b;
      out[p + 3] = 255;
    }
  }
  return out;
}

for (const v of vectors) {
  test(`pdq ${v.kind} ${v.width}x${v.height} seed ${v.seed} agrees with the server`, () => {
    const got = pdqHash(synthetic(v.kind, v.width, v.height, v.seed), v.width, v.height);
    // Patterned images have well-separated DCT coefficients: bit-exact. Smooth gradients put
    // many coefficients within float rounding of the median (the server sums in float32).
    const slack = v.kind === "pattern" ? 0 : 8;
    assert.ok(hammingDistance(got.hash, v.hash) <= slack, `${got.hash} vs ${v.hash}`);
    assert.ok(Math.abs(got.quality - v.quality) <= (slack ? 1 : 0), `${got.quality} vs ${v.quality}`);
  });
}

for (const v of fullSizeVectors) {
  test(`full-size pdq ${v.width}x${v.height} seed ${v.seed} is the server's frame hash`, () => {
    const rgba = synthetic(v.kind, v.width, v.height, v.seed);
    const got = pdqHashFullSize(rgba, v.width, v.height);
    assert.equal(got.hash, v.hash);
    assert.equal(got.quality, v.quality);
    if (v.width > 512 || v.height > 512) {
      // Over 512 px the still-image hash resamples first: a different code, as on the server.
      assert.notEqual(pdqHash(rgba, v.width, v.height).hash, v.hash);
    }
  });
}

test("images under 5 px hash to zeros with quality 0", () => {
  assert.deepEqual(pdqHash(new Uint8ClampedArray(4 * 9 * 4), 4, 9), {
    hash: "0".repeat(64),
    quality: 0,
  });
  assert.equal(pdqHash(new Uint8ClampedArray(0), 0, 0).quality, 0);
});

test("alpha is ignored, as the reference drops it", () => {
  const a = synthetic("pattern", 120, 90, 2);
  const b = Uint8ClampedArray.from(a);
  for (let i = 3; i < b.length; i += 4) b[i] = i % 251;
  assert.equal(pdqHash(a, 120, 90).hash, pdqHash(b, 120, 90).hash);
});

test("bad arguments are refused", () => {
  assert.throws(() => pdqHash(new Uint8ClampedArray(10), 2, 2), RangeError);
  assert.throws(() => pdqHash(new Uint8ClampedArray(16), 2.5, 2), RangeError);
  assert.throws(() => pdqHash(null, 1, 1), RangeError);
  assert.throws(() => hammingDistance("ab", "cd"), RangeError);
});

test("hamming distance", () => {
  const z = "0".repeat(64);
  assert.equal(hammingDistance(z, z), 0);
  assert.equal(hammingDistance(z, "f".repeat(64)), 256);
  assert.equal(hammingDistance(z, "8" + "0".repeat(62) + "1"), 2);
});

test("md5: RFC 1321 test suite", () => {
  const enc = new TextEncoder();
  const suite = {
    "": "d41d8cd98f00b204e9800998ecf8427e",
    a: "0cc175b9c0f1b6a831c399e269772661",
    abc: "900150983cd24fb0d6963f7d28e17f72",
    "message digest": "f96b697d7cb7938d525a2f31aaf161d0",
    abcdefghijklmnopqrstuvwxyz: "c3fcd3d76192e4007dfb496cca67e13b",
    ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789:
      "d174ab98d277d9f5a5611c2c9f419d9f",
    "12345678901234567890123456789012345678901234567890123456789012345678901234567890":
      "57edf4a22be3c955ac49da2e2107b67a",
  };
  for (const [text, want] of Object.entries(suite)) assert.equal(md5Hex(enc.encode(text)), want);
});

test("md5: every length around the padding boundaries, fed in odd pieces", () => {
  const data = new Uint8Array(300);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + 11) & 0xff;
  for (let n = 0; n <= 300; n++) {
    const slice = data.subarray(0, n);
    const want = createHash("md5").update(slice).digest("hex");
    assert.equal(md5Hex(slice), want, `length ${n}`);
    const h = new Md5();
    for (let at = 0; at < n; at += 7) h.update(slice.subarray(at, Math.min(n, at + 7)));
    assert.equal(h.hex(), want, `length ${n} in pieces`);
  }
});

const fileVectors = process.env.DIGNITY_PDQ_FILE_VECTORS;
test("decoded fixture photos agree with the server bit for bit", { skip: !fileVectors }, () => {
  const cases = JSON.parse(readFileSync(fileVectors, "utf8"));
  assert.ok(cases.length > 0);
  for (const c of cases) {
    const rgba = new Uint8ClampedArray(readFileSync(c.path));
    const got = pdqHash(rgba, c.width, c.height);
    assert.equal(hammingDistance(got.hash, c.hash), 0, c.name);
    assert.equal(got.quality, c.quality, c.name);
  }
});
