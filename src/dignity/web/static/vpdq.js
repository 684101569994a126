// vPDQ of a video, worked out in this browser the way Meta's vpdq (and dignity's server,
// src/dignity/video/vpdq.py) works it out: with frame_mod = int(seconds_per_hash * frame_rate),
// frame i is hashed when i % frame_mod == 0, each by PDQ over the whole frame (no 512 px step).
// A browser does not say a video's frame rate, so it is read from the container here (MP4/MOV:
// the video track's sample times, as FFmpeg's average rate; WebM/Matroska: DefaultDuration),
// reading only the few boxes needed through File.slice. Frames are then read through a
// <video> element: seek into the middle of frame i (so rounding cannot land on its neighbour),
// draw it to a canvas at the video's coded size (a display rotation turned back, as vpdq hashes
// coded frames) and hash the pixels with pdq.js. Nothing leaves the page: the file is opened
// through a blob: URL and the result is a list of codes.
// (WebCodecs would decode every frame in order, but needs a demuxer for each container written
// here; seeking agrees with the server's decoder to a few bits, see test_portal_video.py.)
//
//   vpdqOfFile(file, {onProgress, signal}) -> {frames: [{frame, timestamp, pdq, quality}],
//                                              frameRate, frameStep, width, height, rotation}
//   throws VideoUnreadable where this browser cannot decode the video or find its frame rate.
import { pdqHashFullSize } from "./pdq.js";

export const SECONDS_PER_HASH = 1.0;
// Three hours at one frame a second: the server's limit for a case's video (and far past any
// clip a person is likely to hold); longer videos are protected by their MD5 alone.
export const MAX_FRAMES = 10800;
const MAX_HEADER_BYTES = 64 * 1024 * 1024; // a moov box (sample tables) of a very long video
const WEBM_HEAD_BYTES = 4 * 1024 * 1024; // Matroska puts Tracks before the first Cluster
const LOAD_TIMEOUT_MS = 20000;
const SEEK_TIMEOUT_MS = 20000;
const SETTLE_MS = 30;
const SETTLE_TRIES = 10;

export class VideoUnreadable extends Error {}

/** vpdq's frame_mod: every n-th frame, at least every frame. */
export function frameStep(secondsPerHash, frameRate) {
  return Math.max(1, Math.floor(secondsPerHash * frameRate));
}

async function bytesOf(file, start, end) {
  return new Uint8Array(await file.slice(start, Math.min(end, file.size)).arrayBuffer());
}

function fourcc(bytes, at) {
  return String.fromCharCode(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]);
}

/** ISO-BMFF boxes inside bytes[start, end): {type, start (payload), end}. */
function* boxes(bytes, start, end) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = start;
  while (at + 8 <= end) {
    let size = view.getUint32(at);
    let header = 8;
    if (size === 1) {
      if (at + 16 > end) return;
      size = Number(view.getBigUint64(at + 8));
      header = 16;
    } else if (size === 0) {
      size = end - at;
    }
    if (size < header || at + size > end) return;
    yield { type: fourcc(bytes, at + 4), start: at + header, end: at + size };
    at += size;
  }
}

function child(bytes, box, type) {
  for (const b of boxes(bytes, box.start, box.end)) if (b.type === type) return b;
  return null;
}

/** The first video track's rate and sample count from a moov payload, as FFmpeg's mov demuxer
 * computes avg_frame_rate: timescale * samples / total sample duration (from stts). */
function moovTiming(moov) {
  const view = new DataView(moov.buffer, moov.byteOffset, moov.byteLength);
  for (const trak of boxes(moov, 0, moov.length)) {
    if (trak.type !== "trak") continue;
    const mdia = child(moov, trak, "mdia");
    const hdlr = mdia && child(moov, mdia, "hdlr");
    if (!hdlr || fourcc(moov, hdlr.start + 8) !== "vide") continue;
    const mdhd = child(moov, mdia, "mdhd");
    const stbl = child(moov, child(moov, mdia, "minf") || { start: 0, end: 0 }, "stbl");
    const stts = stbl && child(moov, stbl, "stts");
    if (!mdhd || !stts) return null;
    const timescale = view.getUint32(mdhd.start + (moov[mdhd.start] === 1 ? 20 : 12));
    const entries = view.getUint32(stts.start + 4);
    let samples = 0;
    let duration = 0;
    for (let e = 0; e < entries && stts.start + 16 + e * 8 <= stts.end; e++) {
      const count = view.getUint32(stts.start + 8 + e * 8);
      samples += count;
      duration += count * view.getUint32(stts.start + 12 + e * 8);
    }
    if (!timescale || !samples || !duration) return null;
    return {
      frameRate: (timescale * samples) / duration,
      frameCount: samples,
      rotation: tkhdRotation(moov, view, child(moov, trak, "tkhd")),
    };
  }
  return null;
}

/** The angle of the track's tkhd matrix, atan2(b, a), in degrees (0, 90, 180, 270): the
 * browser shows the coded frame turned by it, so drawing turned back by it gives the coded
 * frame (checked against PyAV on clips of every display rotation). */
function tkhdRotation(moov, view, tkhd) {
  if (!tkhd) return 0;
  const matrix = tkhd.start + (moov[tkhd.start] === 1 ? 52 : 40);
  if (matrix + 36 > tkhd.end) return 0;
  const a = view.getInt32(matrix) / 65536;
  const b = view.getInt32(matrix + 4) / 65536;
  const degrees = Math.round((Math.atan2(b, a) * 180) / Math.PI / 90) * 90;
  return ((degrees % 360) + 360) % 360;
}

async function mp4Timing(file) {
  let at = 0;
  while (at + 8 <= file.size) {
    const head = await bytesOf(file, at, at + 16);
    const view = new DataView(head.buffer);
    let size = view.getUint32(0);
    let header = 8;
    if (size === 1) {
      size = Number(view.getBigUint64(8));
      header = 16;
    } else if (size === 0) {
      size = file.size - at;
    }
    if (size < header) return null;
    const type = fourcc(head, 4);
    if (at === 0 && type !== "ftyp" && type !== "moov" && type !== "wide" && type !== "free") {
      return null;
    }
    if (type === "moov") {
      if (size > MAX_HEADER_BYTES) return null;
      return moovTiming(await bytesOf(file, at + header, at + size));
    }
    at += size;
  }
  return null;
}

/** EBML variable-length integer at `at`: {value, length}; `keepMarker` for element IDs. */
function vint(bytes, at, keepMarker) {
  const first = bytes[at];
  if (first === undefined || first === 0) return null;
  let length = 1;
  while (!(first & (0x80 >> (length - 1)))) length++;
  if (at + length > bytes.length) return null;
  let value = keepMarker ? first : first & (0xff >> length);
  let allOnes = value === (0xff >> length);
  for (let k = 1; k < length; k++) {
    value = value * 256 + bytes[at + k];
    if (bytes[at + k] !== 0xff) allOnes = false;
  }
  return { value, length, unknown: !keepMarker && allOnes };
}

const EBML_SEGMENT = 0x18538067;
const EBML_TRACKS = 0x1654ae6b;
const EBML_TRACK_ENTRY = 0xae;
const EBML_TRACK_TYPE = 0x83;
const EBML_DEFAULT_DURATION = 0x23e383;
const EBML_CLUSTER = 0x1f43b675;
const EBML_INFO = 0x1549a966;
const EBML_TIMECODE_SCALE = 0x2ad7b1;
const EBML_DURATION = 0x4489;

function uintOf(bytes, start, end) {
  let v = 0;
  for (let k = start; k < end; k++) v = v * 256 + bytes[k];
  return v;
}

/** WebM/Matroska: the video track's DefaultDuration (ns) and the segment's duration. */
function matroskaTiming(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let defaultDuration = 0;
  let scale = 1000000;
  let duration = 0;
  // Elements we descend into; everything else is skipped by its size.
  const containers = new Set([EBML_SEGMENT, EBML_TRACKS, EBML_TRACK_ENTRY, EBML_INFO]);
  const walk = (start, end) => {
    let at = start;
    while (at < end) {
      const id = vint(bytes, at, true);
      if (!id) return;
      const size = vint(bytes, at + id.length, false);
      if (!size) return;
      const body = at + id.length + size.length;
      const stop = size.unknown ? end : Math.min(end, body + size.value);
      if (id.value === EBML_CLUSTER) return; // the frames themselves: the header is over
      if (containers.has(id.value)) {
        if (id.value === EBML_TRACK_ENTRY) {
          const track = { type: 0, duration: 0 };
          walkEntry(body, stop, track);
          if (track.type === 1 && track.duration && !defaultDuration) {
            defaultDuration = track.duration;
          }
        } else {
          walk(body, stop);
        }
      } else if (id.value === EBML_TIMECODE_SCALE) {
        scale = uintOf(bytes, body, stop);
      } else if (id.value === EBML_DURATION) {
        duration = stop - body === 8 ? view.getFloat64(body) : view.getFloat32(body);
      }
      if (size.unknown) return;
      at = stop;
    }
  };
  const walkEntry = (start, end, track) => {
    let at = start;
    while (at < end) {
      const id = vint(bytes, at, true);
      const size = id && vint(bytes, at + id.length, false);
      if (!id || !size || size.unknown) return;
      const body = at + id.length + size.length;
      const stop = Math.min(end, body + size.value);
      if (id.value === EBML_TRACK_TYPE) track.type = uintOf(bytes, body, stop);
      if (id.value === EBML_DEFAULT_DURATION) track.duration = uintOf(bytes, body, stop);
      at = stop;
    }
  };
  walk(0, bytes.length);
  if (!defaultDuration) return null;
  let frameRate = 1e9 / defaultDuration;
  // Matroska stores whole nanoseconds (33333333 for 30 fps); FFmpeg reduces the ratio to a
  // fraction with small terms, which gives back the round rate.
  if (Math.abs(frameRate - Math.round(frameRate)) < 1e-3) frameRate = Math.round(frameRate);
  const seconds = (duration * scale) / 1e9;
  return { frameRate, frameCount: seconds ? Math.round(seconds * frameRate) : null };
}

/** {frameRate, frameCount | null, rotation?} from the file's container, or null where it
 * cannot say. */
export async function containerTiming(file) {
  const head = await bytesOf(file, 0, 12);
  if (head.length >= 8 && fourcc(head, 4) === "ftyp") return mp4Timing(file);
  if (head.length >= 4 && uintOf(head, 0, 4) === 0x1a45dfa3) {
    return matroskaTiming(await bytesOf(file, 0, WEBM_HEAD_BYTES));
  }
  return mp4Timing(file); // a QuickTime file may open with another box (wide, free, mdat)
}

function once(target, okEvents, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const done = (fn, value) => {
      clearTimeout(timer);
      for (const e of okEvents) target.removeEventListener(e, ok);
      target.removeEventListener("error", bad);
      fn(value);
    };
    const ok = (event) => done(resolve, event);
    const bad = () => done(reject, new VideoUnreadable("this browser cannot decode the video"));
    const late = () => done(reject, new VideoUnreadable(`${what} took too long`));
    const timer = setTimeout(late, timeoutMs);
    for (const e of okEvents) target.addEventListener(e, ok);
    target.addEventListener("error", bad);
  });
}

function seekTo(video, time) {
  const seeked = once(video, ["seeked"], SEEK_TIMEOUT_MS, "reading a frame");
  video.currentTime = time;
  return seeked;
}

function sameSample(a, b) {
  for (let p = 0; p < a.length; p += 4 * 97) {
    if (a[p] !== b[p] || a[p + 1] !== b[p + 1]) return false;
  }
  return true;
}

/** The pixels on show once they stop changing. 'seeked' can come before the new frame reaches
 * the element on a busy machine (the previous frame was drawn for 2 of 65 frames in one run),
 * and a paused video in a headless browser never calls requestVideoFrameCallback back for a
 * seek; so wait a little, then draw again after each short wait until two draws agree. */
async function settledPixels(ctx, width, height, draw) {
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  draw();
  let pixels = ctx.getImageData(0, 0, width, height).data;
  for (let tries = 0; tries < SETTLE_TRIES; tries++) {
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    draw();
    const again = ctx.getImageData(0, 0, width, height).data;
    if (sameSample(pixels, again)) return again;
    pixels = again;
  }
  return pixels;
}

/**
 * The vPDQ frames of a video file, decoded by this browser.
 * @param {File|Blob} file
 * @param {{onProgress?: (done: number, total: number) => void, secondsPerHash?: number,
 *          signal?: AbortSignal}} options
 */
export async function vpdqOfFile(file, options = {}) {
  const secondsPerHash = options.secondsPerHash ?? SECONDS_PER_HASH;
  const timing = await containerTiming(file).catch(() => null);
  if (!timing || !(timing.frameRate > 0)) {
    throw new VideoUnreadable("the video's frame rate could not be read");
  }
  const url = URL.createObjectURL(file);
  const video = document.createElement("video");
  video.muted = true;
  video.preload = "auto";
  video.playsInline = true;
  try {
    const loaded = once(video, ["loadeddata"], LOAD_TIMEOUT_MS, "opening the video");
    video.src = url;
    await loaded;
    const shownWidth = video.videoWidth;
    const shownHeight = video.videoHeight;
    if (!shownWidth || !shownHeight) {
      throw new VideoUnreadable("the file has no picture this browser can show");
    }
    // The browser shows a phone video upright by its display matrix; vpdq (and the codes that
    // partners exchange) hash the frames as coded, so the turn is undone here.
    const rotation = timing.rotation || 0;
    const sideways = rotation === 90 || rotation === 270;
    const width = sideways ? shownHeight : shownWidth;
    const height = sideways ? shownWidth : shownHeight;
    const step = frameStep(secondsPerHash, timing.frameRate);
    const byDuration = Number.isFinite(video.duration)
      ? Math.floor(video.duration * timing.frameRate + 1e-6)
      : Infinity;
    const frameCount = Math.min(timing.frameCount ?? byDuration, byDuration);
    if (!Number.isFinite(frameCount) || frameCount <= 0) {
      throw new VideoUnreadable("the video's length could not be read");
    }
    const total = Math.ceil(frameCount / step);
    if (total > MAX_FRAMES) throw new VideoUnreadable("the video is too long to hash here");
    const canvas =
      typeof OffscreenCanvas !== "undefined"
        ? new OffscreenCanvas(width, height)
        : Object.assign(document.createElement("canvas"), { width, height });
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.translate(width / 2, height / 2);
    ctx.rotate((-rotation * Math.PI) / 180);
    const draw = () =>
      ctx.drawImage(video, -shownWidth / 2, -shownHeight / 2, shownWidth, shownHeight);
    const frames = [];
    for (let k = 0; k < total; k++) {
      if (options.signal && options.signal.aborted) throw new DOMException("stopped", "AbortError");
      const index = k * step;
      // The middle of frame `index`: its start time would round to the previous frame as
      // often as not. The last frame is clamped inside the stream.
      await seekTo(video, Math.min((index + 0.5) / timing.frameRate, video.duration - 1e-3));
      const pixels = await settledPixels(ctx, width, height, draw);
      const { hash, quality } = pdqHashFullSize(pixels, width, height);
      frames.push({
        frame: index,
        timestamp: Math.round((index / timing.frameRate) * 1000) / 1000,
        pdq: hash,
        quality,
      });
      if (options.onProgress) options.onProgress(k + 1, total);
    }
    return { frames, frameRate: timing.frameRate, frameStep: step, width, height, rotation };
  } finally {
    video.removeAttribute("src");
    video.load(); // releases the decoder
    URL.revokeObjectURL(url);
  }
}
