// The victim portal page: hash chosen pictures (PDQ) and videos (the file's MD5, and vPDQ: the
// PDQ of one frame a second, read through a <video> element) on this device, show local
// previews, and send only the hashes to open a case; check or withdraw a case by number + PIN.
// Nothing here sends a file, a file name, a size or metadata: the only requests are the three
// JSON calls below, and the server's Content-Security-Policy allows no other destination.
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
  const md5 = await md5File(file, (share) =>
    onProgress(Math.round(share * 100), 100, `reading the file: ${Math.round(share * 100)}%`),
  );
  const hashes = [{ signal: "video_md5", value: md5 }];
  let result;
  try {
    result = await vpdqOfFile(file, {
      onProgress: (done, total) => onProgress(done, total, `${done} of ${total} frames`),
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
  full: "codes ready (one for each second of the video, and one for exact copies of the file)",
  plain:
    "code ready (this video is very dark or plain: only exact copies of the file can be matched)",
  unreadable:
    "code ready, but this browser cannot play this video, so only exact copies of the file " +
    "can be matched. Another browser may be able to do more.",
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
    else preview.alt = `Preview of picture ${item.id} (shown only on this device)`;
    const text = document.createElement("div");
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "secondary";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove item ${item.id}`);
    remove.addEventListener("click", () => {
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
  const text = li.children[1];
  text.textContent = "";
  const label = document.createElement("div");
  label.textContent = `${item.kind === "video" ? "Video" : "Picture"} ${item.id}: ${item.state}`;
  if (item.error) label.className = "bad";
  text.append(label);
  if (item.progress && !item.hashes.length && !item.error) {
    const [done, total, what] = item.progress;
    const bar = document.createElement("progress");
    bar.max = total;
    bar.value = done;
    bar.setAttribute("aria-label", `Video ${item.id}: ${what}`);
    text.append(bar);
  }
  for (const h of item.hashes) {
    const code = document.createElement("code");
    const value = h.frames ? `${h.frames.length} frames` : h.value;
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
  $("submit-status").textContent = busy
    ? "Working out the codes on this device…"
    : n
      ? `${n} item${n === 1 ? "" : "s"} ready. Only the codes will be sent.`
      : "";
}

async function addFiles(files) {
  for (const file of files) {
    const kind = file.type.startsWith("video/") ? "video" : "image";
    const item = { id: nextId++, kind, state: "working out the code…", hashes: [], error: false };
    item.stop = new AbortController();
    item.url = URL.createObjectURL(file);
    items.push(item);
    render(item);
    update();
    try {
      if (kind === "video") {
        const result = await hashVideo(file, (done, total, what) => {
          item.progress = [done, total, what];
          item.state = `working out the codes on this device: ${what}…`;
          render(item);
        }, item.stop.signal);
        item.hashes = result.hashes;
        item.frames = result.frames;
        item.note = result.note;
        item.state = VIDEO_STATES[result.note];
      } else {
        const result = await hashImage(file);
        item.hashes = result.hashes;
        item.pdq = result.pdq;
        item.quality = result.quality;
        item.state = result.plain
          ? "code ready (this picture is very plain: only exact copies can be matched)"
          : "code ready";
      }
    } catch (err) {
      item.error = true;
      item.state = "this browser cannot open this file, so it was left out";
    }
    render(item);
    update();
  }
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
    referrerPolicy: "no-referrer",
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = data && data.message ? data.message : `the server answered ${response.status}`;
    throw new Error(message);
  }
  return data;
}

async function submitCase(event) {
  event.preventDefault();
  if ($("submit").disabled) return;
  const hashes = ready().flatMap((i) => i.hashes);
  $("submit").disabled = true;
  $("submit-status").textContent = "Sending the codes…";
  try {
    const created = await post("/portal/api/cases", { hashes, adult: $("adult").checked });
    $("case-number").textContent = created.case_number;
    $("case-pin").textContent = created.pin;
    $("case-count").textContent = String(created.hashes);
    $("created").hidden = false;
    $("created").focus();
    $("submit-status").textContent = "Your case is created. Write down the number and PIN.";
    for (const item of items.splice(0)) URL.revokeObjectURL(item.url);
    $("items").textContent = "";
  } catch (err) {
    update(); // the button again; then the reason, which update() would overwrite
    $("submit-status").textContent = `Not sent: ${err.message}`;
  }
}

function credentials() {
  return { case_number: $("manage-number").value.trim(), pin: $("manage-pin").value.trim() };
}

function describe(status) {
  if (status.status === "withdrawn") {
    return `Case ${status.case_number} is withdrawn: its ${status.hashes} codes are no longer used.`;
  }
  const matched = status.matched
    ? `They matched uploads ${status.matches} time${status.matches === 1 ? "" : "s"}.`
    : "No matches so far.";
  return `Case ${status.case_number} is active with ${status.hashes} codes. ${matched}`;
}

async function manage(action) {
  const body = credentials();
  if (!body.case_number || !body.pin) {
    $("manage-status").textContent = "Enter the case number and the PIN.";
    return;
  }
  if (action === "withdraw" && !window.confirm("Withdraw this case? Its codes stop being used.")) {
    return;
  }
  $("manage-status").textContent = "Checking…";
  try {
    const status = await post(`/portal/api/cases/${action}`, body);
    $("manage-status").textContent = describe(status);
  } catch (err) {
    $("manage-status").textContent = err.message;
  }
}

$("files").addEventListener("change", (event) => {
  const files = Array.from(event.target.files || []);
  event.target.value = ""; // the same file may be chosen again after removing it
  addFiles(files);
});
$("adult").addEventListener("change", update);
$("consent").addEventListener("change", update);
$("case-form").addEventListener("submit", submitCase);
$("manage-form").addEventListener("submit", (event) => {
  event.preventDefault();
  manage("status");
});
$("withdraw").addEventListener("click", () => manage("withdraw"));
document.documentElement.dataset.portalReady = "1";
