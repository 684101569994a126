// MD5 (RFC 1321) of file bytes, incremental, for videos: StopNCII and HMA's video_md5 match
// videos by the MD5 of the file. Small and dependency-free; works in the browser and in Node.
//
//   const h = new Md5(); h.update(bytes1); h.update(bytes2); h.hex()   // "32 lowercase hex"
//   md5Hex(bytes)                                                      // one shot
//   await md5File(file, onProgress)                                    // a File/Blob, in chunks

const S = [
  7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14,
  20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15, 21, 6,
  10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
];
const K = new Uint32Array(64);
for (let i = 0; i < 64; i++) K[i] = Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32) >>> 0;

export class Md5 {
  constructor() {
    this.state = new Uint32Array([0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476]);
    this.buffer = new Uint8Array(64);
    this.buffered = 0;
    this.length = 0; // bytes seen (a double: exact up to 2^53, i.e. 8 PB)
    this.words = new Uint32Array(16);
    this.done = false;
  }

  block(bytes, offset) {
    const w = this.words;
    for (let i = 0; i < 16; i++) {
      const p = offset + i * 4;
      w[i] = bytes[p] | (bytes[p + 1] << 8) | (bytes[p + 2] << 16) | (bytes[p + 3] << 24);
    }
    let [a, b, c, d] = this.state;
    for (let i = 0; i < 64; i++) {
      let f;
      let g;
      if (i < 16) {
        f = (b & c) | (~b & d);
        g = i;
      } else if (i < 32) {
        f = (d & b) | (~d & c);
        g = (5 * i + 1) & 15;
      } else if (i < 48) {
        f = b ^ c ^ d;
        g = (3 * i + 5) & 15;
      } else {
        f = c ^ (b | ~d);
        g = (7 * i) & 15;
      }
      const t = d;
      d = c;
      c = b;
      const x = (a + f + K[i] + w[g]) | 0;
      b = (b + ((x << S[i]) | (x >>> (32 - S[i])))) | 0;
      a = t;
    }
    const st = this.state;
    st[0] += a;
    st[1] += b;
    st[2] += c;
    st[3] += d;
  }

  update(bytes) {
    if (this.done) throw new Error("Md5: update() after hex()");
    let i = 0;
    const n = bytes.length;
    this.length += n;
    if (this.buffered) {
      while (i < n && this.buffered < 64) this.buffer[this.buffered++] = bytes[i++];
      if (this.buffered < 64) return this;
      this.block(this.buffer, 0);
      this.buffered = 0;
    }
    for (; i + 64 <= n; i += 64) this.block(bytes, i);
    while (i < n) this.buffer[this.buffered++] = bytes[i++];
    return this;
  }

  hex() {
    if (!this.done) {
      const bits = this.length * 8;
      const pad = new Uint8Array(((this.buffered < 56 ? 56 : 120) - this.buffered) + 8);
      pad[0] = 0x80;
      const at = pad.length - 8;
      const lo = bits >>> 0;
      const hi = Math.floor(bits / 2 ** 32) >>> 0;
      for (let k = 0; k < 4; k++) {
        pad[at + k] = (lo >>> (8 * k)) & 0xff;
        pad[at + 4 + k] = (hi >>> (8 * k)) & 0xff;
      }
      const length = this.length;
      this.update(pad);
      this.length = length;
      this.done = true;
    }
    let out = "";
    for (const word of this.state) {
      for (let k = 0; k < 4; k++) out += ((word >>> (8 * k)) & 0xff).toString(16).padStart(2, "0");
    }
    return out;
  }
}

export function md5Hex(bytes) {
  return new Md5().update(bytes).hex();
}

const CHUNK = 4 * 1024 * 1024;

/** MD5 of a File or Blob, read 4 MiB at a time (a video never sits whole in memory). */
export async function md5File(blob, onProgress) {
  const h = new Md5();
  for (let at = 0; at < blob.size; at += CHUNK) {
    const part = new Uint8Array(await blob.slice(at, at + CHUNK).arrayBuffer());
    h.update(part);
    if (onProgress) onProgress(Math.min(blob.size, at + CHUNK) / blob.size);
  }
  return h.hex();
}
