// The victim portal page: hash chosen pictures (PDQ) and videos (the file's MD5, and vPDQ: the
// PDQ of one frame a second, read through a <video> element) on this device, show local
// previews, and send only the hashes to open a case; check or withdraw a case by number + PIN.
// Nothing here sends a file, a file name, a size or metadata: the only requests are the three
// JSON calls below (and the GETs of this page's translations and helplines), and the server's
// Content-Security-Policy allows no other destination. Every text comes from the translation
// catalogue (i18n.js). A refused or failed submit stays on screen, saying what happened, what
// to do and how long to wait, until the person acts (adds or removes a file, ticks a box,
// presses the button again); the case number and PIN can be copied, printed or saved as a
// small text file made here (keep.js, shared with the takedown receipt).
import { clockIn, duration, say, showHelplines, startI18n, t } from "./i18n.js";
import { keepButtons } from "./keep.js";
import { pdqHash } from "./pdq.js";
import { md5File } from "./md5.js";
import { vpdqOfFile } from "./vpdq.js";

const MIN_QUALITY = 50; // the server's default PDQ quality floor: plainer pictures match badly
const $ = (id) => document.getElementById(id);
// {id, kind, state, hashes: [{signal, value, quality?} | {signal: "vpdq", frames}], url, progress?}
const items = [];
let nextId = 1;

/** Full-size, upright pixels: EXIF orientation applied, no colour management, no scaling. */
async function pixelsOf(file) {
  const bitmap = await createImageBitmap(file, {
    imageOrientation: "from-image",
    colorSpaceConversion: "none",
    premultiplyAlpha: "none",
  });
  try {
    const { width, height } = bitmap;
    const canvas =
      typeof OffscreenCanvas !== "undefined"
        ? new OffscreenCanvas(width, height)
        : Object.assign(document.createElement("canvas"), { width, height });
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0);
    return { rgba: ctx.getImageData(0, 0, width, height).data, width, height };
  } finally {
    bitmap.close();
  }
}

async function hashImage(file) {
  const { rgba, width, height } = await pixelsOf(file);
  const { hash, quality } = pdqHash(rgba, width, height);
  if (quality >= MIN_QUALITY) {
    return { hashes: [{ signal: "pdq", value: hash, quality }], pdq: hash, quality };
  }
  // Too plain for a similarity code: protect exact copies of the file instead.
  const md5 = await md5File(file);
  return { hashes: [{ signal: "md5", value: md5 }], pdq: hash, quality, plain: true };
}

/** A video's codes: the MD5 of the file always; its vPDQ where this browser can decode it and
 * some frame has enough detail; `note` says which (full, plain or unreadable). */
async function hashVideo(file, onProgress, signal) {
  const md5 = await md5File(file, (share) => {
    const percent = Math.round(share * 100);
    onProgress(percent, 100, ["portal.video.reading", { n: percent }]);
  });
  const hashes = [{ signal: "video_md5", value: md5 }];
  let result;
  try {
    result = await vpdqOfFile(file, {
      onProgress: (done, total) =>
        onProgress(done, total, ["portal.video.frames", { n: done, total }]),
      signal,
    });
  } catch {
    // Any failure to decode (a codec this browser lacks, a damaged file): the MD5 still works.
    return { hashes, frames: null, note: "unreadable" };
  }
  if (!result.frames.some((f) => f.quality >= MIN_QUALITY)) {
    return { hashes, frames: result.frames, note: "plain" };
  }
  hashes.push({ signal: "vpdq", frames: result.frames });
  return { hashes, frames: result.frames, note: "full" };
}

const VIDEO_STATES = {
  full: "portal.video.full",
  plain: "portal.video.plain",
  unreadable: "portal.video.unreadable",
};

function render(item) {
  if (item.removed) return; // removed while its codes were being worked out
  let li = document.querySelector(`li[data-item="${item.id}"]`);
  if (!li) {
    li = document.createElement("li");
    li.dataset.item = String(item.id);
    const preview = document.createElement(item.kind === "video" ? "video" : "img");
    preview.src = item.url; // a blob: URL, local to this tab
    if (item.kind === "video") preview.muted = true;
    // (its alt text is set below with the other texts, in the page's language)
    const text = document.createElement("div");
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "secondary";
    remove.addEventListener("click", () => {
      clearError();
      item.removed = true;
      item.stop.abort(); // a video stops being read at the next frame
      items.splice(items.indexOf(item), 1);
      URL.revokeObjectURL(item.url);
      li.remove();
      update();
    });
    li.append(preview, text, remove);
    $("items").append(li);
  }
  if (item.pdq) {
    // Kept on the element for the page's own tests (it is a code, never the picture).
    li.dataset.pdq = item.pdq;
    li.dataset.quality = String(item.quality);
  }
  if (item.frames) li.dataset.vpdq = JSON.stringify(item.frames); // codes too, for the tests
  if (item.note) li.dataset.note = item.note;
  li.dataset.state = item.error ? "error" : item.hashes.length ? "ready" : "working";
  const remove = li.children[2];
  remove.textContent = t("portal.item.remove");
  remove.setAttribute("aria-label", t("portal.item.remove_n", { n: item.id }));
  if (item.kind !== "video") li.children[0].alt = t("portal.item.preview", { n: item.id });
  const text = li.children[1];
  text.textContent = "";
  const label = document.createElement("div");
  const [stateKey, stateParams] = item.state;
  label.textContent = t(item.kind === "video" ? "portal.item.video" : "portal.item.picture", {
    n: item.id,
    state: t(stateKey, stateParams),
  });
  if (item.error) label.className = "bad";
  text.append(label);
  if (item.progress && !item.hashes.length && !item.error) {
    const [done, total, [whatKey, whatParams]] = item.progress;
    const bar = document.createElement("progress");
    bar.max = total;
    bar.value = done;
    bar.setAttribute(
      "aria-label",
      t("portal.item.video", { n: item.id, state: t(whatKey, whatParams) }),
    );
    text.append(bar);
  }
  for (const h of item.hashes) {
    const code = document.createElement("code");
    const value = h.frames ? t("portal.item.frames", { n: h.frames.length }) : h.value;
    code.textContent = `${h.signal} ${value}`;
    code.dataset.signal = h.signal;
    code.dataset.value = value;
    if (h.quality !== undefined) code.dataset.quality = String(h.quality);
    text.append(code);
  }
}

function ready() {
  return items.filter((i) => !i.error && i.hashes.length);
}

function update() {
  const busy = items.some((i) => !i.error && !i.hashes.length);
  const n = ready().length;
  $("submit").disabled = busy || n === 0 || !$("adult").checked || !$("consent").checked;
  if (busy) say($("submit-status"), "portal.status.working");
  else if (n) say($("submit-status"), "portal.status.ready", { n });
  else if (!created) say($("submit-status"), null);
}

let created = false;

/** Show a submit failure until the person acts: update() never touches this element. */
function showError(element, message) {
  const [key, params] = message;
  say(element, key, params);
  element.hidden = false;
}

function clearError() {
  const box = $("submit-error");
  say(box, null);
  box.hidden = true;
}

async function addFiles(files) {
  for (const file of files) {
    const kind = file.type.startsWith("video/") ? "video" : "image";
    const item = { id: nextId++, kind, state: ["portal.item.working"], hashes: [], error: false };
    item.stop = new AbortController();
    item.url = URL.createObjectURL(file);
    items.push(item);
    render(item);
    update();
    try {
      if (kind === "video") {
        const result = await hashVideo(file, (done, total, what) => {
          item.progress = [done, total, what];
          item.state = ["portal.item.working_video", { what: t(what[0], what[1]) }];
          render(item);
        }, item.stop.signal);
        item.hashes = result.hashes;
        item.frames = result.frames;
        item.note = result.note;
        item.state = [VIDEO_STATES[result.note]];
      } else {
        const result = await hashImage(file);
        item.hashes = result.hashes;
        item.pdq = result.pdq;
        item.quality = result.quality;
        item.state = [result.plain ? "portal.item.plain" : "portal.item.ready"];
      }
    } catch (err) {
      item.error = true;
      item.state = ["portal.item.unreadable"];
    }
    render(item);
    update();
  }
}

/** A failed request: `kind` offline (never reached the server) or refused (an HTTP error). */
class RequestFailed extends Error {
  constructor(kind, status = 0, data = null, retryAfter = null) {
    super(data && data.message ? data.message : `HTTP ${status}`);
    this.kind = kind;
    this.status = status;
    this.code = data && data.code ? data.code : "";
    this.detail = data && data.detail ? data.detail : null;
    this.retryAfter = retryAfter;
  }
}

async function post(path, body) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
  } catch {
    throw new RequestFailed("offline"); // no answer at all: offline, or the server is down
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const header = Number.parseInt(response.headers.get("Retry-After") || "", 10);
    const wait = Number.isFinite(header)
      ? header
      : data && data.detail && Number.isFinite(data.detail.retry_after)
        ? data.detail.retry_after
        : null;
    throw new RequestFailed("refused", response.status, data, wait);
  }
  return data;
}

/** What happened, what to do and how long, as a catalogue key and its values. */
function explain(err, action) {
  const waitParams = (fallback) => {
    const seconds = err.retryAfter ?? fallback;
    return { wait: duration(seconds), time: clockIn(seconds) };
  };
  if (!(err instanceof RequestFailed) || err.kind === "offline") {
    return [`portal.error.offline.${action}`];
  }
  if (err.code === "case.locked") return ["portal.error.locked", waitParams(900)];
  if (err.status === 429) return [`portal.error.rate_limited.${action}`, waitParams(3600)];
  if (err.status === 503) return ["portal.error.busy", waitParams(30)];
  if (err.code === "case.bad_credentials") return ["portal.error.bad_credentials"];
  if (err.code === "case.not_adult") return ["portal.error.not_adult"];
  if (err.code === "case.too_many_hashes") {
    return ["portal.error.too_many", { n: err.detail && err.detail.limit ? err.detail.limit : 0 }];
  }
  if (err.code === "case.bad_hash" || err.code === "case.low_quality") {
    const index = err.detail && Number.isInteger(err.detail.index) ? err.detail.index + 1 : 0;
    return index ? ["portal.error.bad_item", { n: index }] : ["portal.error.invalid"];
  }
  if (err.status === 413) return ["portal.error.too_big"];
  if (err.status >= 400 && err.status < 500) return ["portal.error.invalid"];
  return ["portal.error.server", { status: err.status }];
}

async function submitCase(event) {
  event.preventDefault();
  if ($("submit").disabled) return;
  clearError();
  const hashes = ready().flatMap((i) => i.hashes);
  $("submit").disabled = true;
  say($("submit-status"), "portal.status.sending");
  try {
    const answer = await post("/portal/api/cases", { hashes, adult: $("adult").checked });
    $("case-number").textContent = answer.case_number;
    $("case-pin").textContent = answer.pin;
    $("case-count").textContent = String(answer.hashes);
    $("created").hidden = false;
    $("created").focus();
    created = true;
    say($("submit-status"), "portal.status.created");
    for (const item of items.splice(0)) URL.revokeObjectURL(item.url);
    $("items").textContent = "";
    update();
  } catch (err) {
    update(); // the button again, and "N items ready": the codes are still here
    showError($("submit-error"), explain(err, "submit"));
  }
}

// -- keeping the case number and PIN -------------------------------------------------------

function keepText() {
  return t("portal.keep.text", {
    number: $("case-number").textContent,
    pin: $("case-pin").textContent,
    page: `${window.location.origin}/portal`,
  });
}

// -- checking and withdrawing ---------------------------------------------------------------

function credentials() {
  return { case_number: $("manage-number").value.trim(), pin: $("manage-pin").value.trim() };
}

function describe(status) {
  if (status.status === "withdrawn") {
    return ["portal.case.withdrawn", { number: status.case_number, n: status.hashes }];
  }
  const matched = status.matched
    ? t("portal.case.matched", { n: status.matches })
    : t("portal.case.no_matches");
  return ["portal.case.active", { number: status.case_number, n: status.hashes, matched }];
}

async function manage(action) {
  const body = credentials();
  const out = $("manage-status");
  out.classList.remove("bad");
  if (!body.case_number || !body.pin) {
    say(out, "portal.manage.enter_both");
    return;
  }
  if (action === "withdraw" && !window.confirm(t("portal.manage.confirm"))) {
    return;
  }
  say(out, "portal.manage.checking");
  try {
    const status = await post(`/portal/api/cases/${action}`, body);
    const [key, params] = describe(status);
    say(out, key, params);
  } catch (err) {
    const [key, params] = explain(err, "manage");
    say(out, key, params);
    out.classList.add("bad");
  }
}

$("files").addEventListener("change", (event) => {
  const files = Array.from(event.target.files || []);
  event.target.value = ""; // the same file may be chosen again after removing it
  clearError();
  addFiles(files);
});
for (const box of ["adult", "consent"]) {
  $(box).addEventListener("change", () => {
    clearError();
    update();
  });
}
$("case-form").addEventListener("submit", submitCase);
$("manage-form").addEventListener("submit", (event) => {
  event.preventDefault();
  manage("status");
});
$("withdraw").addEventListener("click", () => manage("withdraw"));
keepButtons({
  copy: $("copy"),
  print: $("print"),
  save: $("download"),
  status: $("keep-status"),
  text: keepText,
  filename: () => `case-${$("case-number").textContent}.txt`,
  messages: {
    copied: "portal.keep.copied",
    copy_failed: "portal.keep.copy_failed",
    saved: "portal.keep.saved",
  },
});
document.addEventListener("languagechange", () => {
  for (const item of items) render(item);
});

try {
  await startI18n($("language-box"));
  await showHelplines($("helpline-box"));
} catch (err) {
  // The English page still works without its catalogue; say why in the console only.
  console.warn("translations unavailable:", err);
}
document.documentElement.dataset.portalReady = "1";
