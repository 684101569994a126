// The review UI: sign-in page and queue page (body[data-page] says which).
//
// Everything shown comes from JSON and is put on the page with textContent, never as HTML:
// request texts and appeals are written by strangers. Previews arrive as JPEG blobs that the
// server already blurred and greyscaled; the clear image is asked for only by a deliberate
// reveal (button or "v"), which the server records. A video is never played: its preview is a
// contact sheet of a few frames that the server made (and blurred) from it, with their times. State-changing calls carry the session's
// CSRF token in X-CSRF-Token. Styles come from review.css classes only (strict CSP).

const JSON_HEADERS = { "Content-Type": "application/json" };

function $(id) {
  return document.getElementById(id);
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

async function errorOf(response) {
  try {
    const body = await response.json();
    return { code: body.code || "error", message: body.message || response.statusText };
  } catch {
    return { code: "error", message: `HTTP ${response.status}` };
  }
}

// -- sign-in page ----------------------------------------------------------------------------

function loginPage() {
  const form = $("login-form");
  const key = $("key");
  const error = $("login-error");
  key.focus();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    if (!key.value.trim()) {
      error.textContent = "Enter your API key.";
      key.focus();
      return;
    }
    $("login-button").disabled = true;
    try {
      const r = await fetch("/review/api/login", {
        method: "POST",
        headers: JSON_HEADERS,
        body: JSON.stringify({ key: key.value.trim() }),
        credentials: "same-origin",
      });
      if (r.ok) {
        key.value = "";
        window.location.assign("/review");
        return;
      }
      const e = await errorOf(r);
      error.textContent = e.message;
      key.select();
    } catch {
      error.textContent = "The server could not be reached. Try again.";
    } finally {
      $("login-button").disabled = false;
    }
  });
}

// -- queue page ------------------------------------------------------------------------------

const state = {
  csrf: "",
  name: "",
  items: [],
  index: -1, // selected position in items; -1: none
  detached: false, // the selected item was just decided and left the list
  current: null, // the item shown in the panel
  previewUrls: [],
  revealed: false,
  pendingOutcome: null,
  platform: "this platform", // the platform's name, from the session
};

function toLogin() {
  window.location.assign("/review/login");
}

async function api(path, options = {}) {
  const init = { credentials: "same-origin", ...options };
  if (init.method && init.method !== "GET") {
    init.headers = { ...JSON_HEADERS, "X-CSRF-Token": state.csrf, ...(init.headers || {}) };
  }
  const r = await fetch(path, init);
  if (r.status === 401) {
    toLogin();
    throw new Error("signed out");
  }
  return r;
}

function say(text, cls) {
  const status = $("status");
  status.textContent = text;
  status.className = `status ${cls || ""}`;
}

function duration(seconds) {
  const s = Math.abs(Math.round(seconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  return `${m} min`;
}

function clockOf(item) {
  if (!item.due_at) return { text: "No deadline", cls: "clock none" };
  const left = (Date.parse(item.due_at) - Date.now()) / 1000;
  if (left < 0) return { text: `Overdue by ${duration(left)}`, cls: "clock overdue" };
  return { text: `Due in ${duration(left)}`, cls: left < 6 * 3600 ? "clock soon" : "clock" };
}

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function kindName(kind) {
  return { scan: "Scan", takedown: "Takedown", appeal: "Appeal" }[kind] || kind;
}

function queueEntry(item, position) {
  const li = el("li");
  const button = el("button", null, "queue-item");
  button.type = "button";
  button.dataset.id = String(item.id);
  button.dataset.position = String(position);
  const top = el("span", null, "line");
  top.append(
    el("span", item.priority_name, `prio prio-${item.priority}`),
    el("span", kindName(item.kind), "kind"),
  );
  const clock = clockOf(item);
  top.append(el("span", clock.text, clock.cls));
  if (item.escalated) top.append(el("span", `escalated (${item.escalated})`, "badge escalated"));
  if (item.flagged) top.append(el("span", "flagged requester", "badge flagged"));
  button.append(top, el("span", item.summary, "summary"));
  button.addEventListener("click", () => select(position, true));
  li.append(button);
  return li;
}

function renderQueue() {
  const list = $("queue-list");
  list.replaceChildren(...state.items.map((item, i) => queueEntry(item, i)));
  $("queue-count").textContent = `(${state.items.length})`;
  $("queue-empty").classList.toggle("hidden", state.items.length > 0);
  markSelected();
}

function markSelected() {
  for (const b of document.querySelectorAll(".queue-item")) {
    const on = !state.detached && Number(b.dataset.position) === state.index;
    if (on) b.setAttribute("aria-current", "true");
    else b.removeAttribute("aria-current");
  }
}

function renderRecent(recent) {
  const list = $("recent-list");
  list.replaceChildren(
    ...recent.map((d) => {
      const li = el("li");
      const b = el("button", null, "recent-item");
      b.type = "button";
      b.append(
        el("span", `${kindName(d.kind)}: ${d.outcome}`, `outcome outcome-${d.outcome}`),
        el("span", ` by ${d.decided_by} at ${when(d.decided_at)}`, "who"),
        el("span", d.summary, "summary"),
      );
      b.addEventListener("click", () => openItem(d.id));
      li.append(b);
      return li;
    }),
  );
  $("recent-empty").classList.toggle("hidden", recent.length > 0);
}

async function loadQueue() {
  const r = await api("/review/api/queue");
  if (!r.ok) {
    say((await errorOf(r)).message, "error");
    return;
  }
  const body = await r.json();
  state.items = body.items;
  if (state.index >= state.items.length) state.index = state.items.length - 1;
  renderQueue();
  renderRecent(body.recent);
}

function select(position, focus) {
  if (!state.items.length) return;
  state.index = Math.max(0, Math.min(position, state.items.length - 1));
  state.detached = false;
  markSelected();
  const button = document.querySelector(`.queue-item[data-position="${state.index}"]`);
  if (button && focus !== false) button.focus();
  openItem(state.items[state.index].id);
}

function move(step) {
  if (!state.items.length) return;
  if (state.index < 0) {
    select(0);
  } else if (state.detached) {
    // The decided item left the list: the one now at its place is "next".
    select(step > 0 ? state.index : state.index - 1);
  } else {
    select(state.index + step);
  }
}

// -- the item panel --------------------------------------------------------------------------

function section(title) {
  const s = el("section", null, "evidence-part");
  s.append(el("h4", title));
  return s;
}

function facts(pairs) {
  const dl = el("dl", null, "facts");
  for (const [k, v] of pairs) {
    if (v === undefined || v === null || v === "") continue;
    dl.append(el("dt", k), el("dd", typeof v === "object" ? JSON.stringify(v) : v));
  }
  return dl;
}

function table(headers, rows) {
  const t = el("table");
  const head = el("tr");
  for (const h of headers) head.append(el("th", h));
  const thead = el("thead");
  thead.append(head);
  const tbody = el("tbody");
  for (const row of rows) {
    const tr = el("tr");
    for (const cell of row) tr.append(el("td", cell === undefined || cell === null ? "" : cell));
    tbody.append(tr);
  }
  t.append(thead, tbody);
  return t;
}

function quote(text) {
  const q = el("blockquote", text || "(empty)", "quote");
  return q;
}

// -- regions: a banked picture found inside the upload (a screenshot, a collage, a meme) ------

function matchRegions(scan) {
  if (!scan || !scan.media || !scan.media.width || !scan.media.height) return [];
  const found = (scan.matches || []).map((m) => m.region).filter((r) => r);
  const derived = scan.signals && scan.signals.derivative_of;
  if (derived && derived.region) found.push(derived.region);
  return found;
}

function whereText(region) {
  if (!region) return "whole image";
  return `inside: ${region.w} × ${region.h} px at (${region.x}, ${region.y})`;
}

function outline(region, media) {
  // Percentages of the upload's size, so the outline sits right on any rendering of it.
  const box = el("div", null, "region-outline");
  box.style.left = `${(100 * region.x) / media.width}%`;
  box.style.top = `${(100 * region.y) / media.height}%`;
  box.style.width = `${(100 * region.w) / media.width}%`;
  box.style.height = `${(100 * region.h) / media.height}%`;
  box.title = whereText(region);
  return box;
}

// A drawing of the upload's frame with the matched parts outlined: no pixels of the upload.
function regionMap(scan) {
  const regions = matchRegions(scan);
  if (!regions.length) return null;
  const frame = el("div", null, "region-map");
  frame.style.aspectRatio = `${scan.media.width} / ${scan.media.height}`;
  frame.setAttribute("role", "img");
  frame.setAttribute(
    "aria-label",
    `Where the match is in the ${scan.media.width} × ${scan.media.height} upload: ` +
      regions.map(whereText).join("; "),
  );
  for (const r of regions) frame.append(outline(r, scan.media));
  const wrap = el("div", null, "region-map-wrap");
  wrap.append(el("p", "Matched part of the upload (outlined):", "region-map-caption"), frame);
  return wrap;
}

function clock(seconds) {
  const s = Math.max(0, Math.floor(Number(seconds) || 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

function span(start, end) {
  return `${clock(start)}–${clock(end)}`;
}

// Other videos with the same footage as this item's video(s): what a removal sweeps besides
// byte-identical copies, with where the footage is in each.
function videoCopiesPart(item) {
  const copies = item.video_copies || [];
  const part = section(`Copies in other videos (${copies.length})`);
  part.classList.add("video-copies");
  if (!copies.length) {
    part.append(el("p", "No other video shares this footage."));
    return part;
  }
  const how = {
    copy_video: "shared footage",
    copy_frame: "shows the image",
    copy_still: "a still of it",
  };
  part.append(
    table(
      ["Content", "Found by", "In the reported video", "In the copy", "Turned", "Match"],
      copies.map((c) => {
        const segs = c.segments || [];
        const percent =
          c.source_match_percent === undefined
            ? ""
            : `${c.source_match_percent}% / ${c.copy_match_percent}%`;
        return [
          c.content_id,
          how[c.reason] || c.reason,
          segs.length
            ? segs.map((g) => span(g.source_start, g.source_end)).join(", ")
            : c.source_timestamp !== undefined
              ? `frame at ${clock(c.source_timestamp)}`
              : "",
          segs.length
            ? segs.map((g) => span(g.copy_start, g.copy_end)).join(", ")
            : c.timestamp !== undefined
              ? `frame at ${clock(c.timestamp)}`
              : "",
          c.orientation || "",
          percent,
        ];
      }),
    ),
  );
  return part;
}

function hasVideo(item) {
  return Object.values(item.content_kinds || {}).includes("video");
}

function scanEvidence(item, body) {
  const scan = item.scan;
  if (!scan) {
    body.append(el("p", "The scan record is no longer kept."));
    return;
  }
  const what = section("Scanned upload");
  what.append(
    facts([
      ["Content", scan.content_id],
      ["Uploader", scan.uploader],
      ["Scanned", when(scan.created_at)],
      ["Decision", scan.decision],
      ["Rules", (scan.rules || []).join(", ")],
      ["Labels", (scan.labels || []).join(", ")],
      ["Already removed", scan.removed_at ? when(scan.removed_at) : ""],
    ]),
  );
  body.append(what);
  const matches = section(`Matches (${scan.matches.length})`);
  if (scan.matches.length) {
    matches.append(
      table(
        ["Bank", "Signal", "Distance", "Purpose", "Where"],
        scan.matches.map((m) => [m.bank, m.signal, m.distance, m.purpose, whereText(m.region)]),
      ),
    );
    const map = regionMap(scan);
    if (map) matches.append(map);
  } else {
    matches.append(el("p", "No bank matched."));
  }
  body.append(matches);
  const reasons = section("Reasons");
  if (scan.reasons.length) {
    const ul = el("ul");
    // The server puts each reason in words (r.text); the raw value is never shown as JSON.
    for (const r of scan.reasons) ul.append(el("li", r.text || `${r.rule}: ${r.signal}`));
    reasons.append(ul);
  } else {
    reasons.append(el("p", "The policy gave no reasons."));
  }
  body.append(reasons);
  const signals = section("Signals");
  const names = Object.keys(scan.signals || {});
  if (names.length) signals.append(facts(names.map((k) => [k, scan.signals[k]])));
  else signals.append(el("p", "No signals recorded."));
  body.append(signals);
  const copies = section(`Known identical copies (${(item.copies || []).length})`);
  if ((item.copies || []).length) {
    copies.append(
      table(
        ["Content", "Scanned", "Removed"],
        item.copies.map((c) => [c.content_id, when(c.created_at), when(c.removed_at)]),
      ),
    );
  } else {
    copies.append(el("p", "None known."));
  }
  body.append(copies);
  if (hasVideo(item)) body.append(videoCopiesPart(item));
}

function validityPart(validity) {
  const part = section("Validity");
  if (!validity || typeof validity !== "object") {
    part.append(el("p", "Not checked."));
    return part;
  }
  const names = { take_it_down: "TAKE IT DOWN Act", dsa_art16: "DSA Art. 16" };
  const ul = el("ul", null, "validity");
  for (const [regime, v] of Object.entries(validity)) {
    if (!v || typeof v !== "object") continue;
    const missing = v.missing || [];
    const label = v.title || names[regime] || regime;
    const li = el("li", `${label}: ${v.valid ? "complete" : "incomplete"}`, v.valid ? "ok" : "warn");
    if (missing.length) {
      const lacks = el("ul");
      for (const m of missing) {
        lacks.append(el("li", typeof m === "object" ? m.message || m.field || m.key : m));
      }
      li.append(lacks);
    }
    ul.append(li);
  }
  part.append(ul);
  return part;
}

function takedownEvidence(item, body) {
  const req = item.request;
  if (!req) {
    body.append(el("p", "The request is gone."));
    return;
  }
  const flagged = item.flagged || req.flagged || (req.requester_flag && req.requester_flag.flagged);
  if (flagged) {
    body.append(
      el(
        "p",
        "This requester is flagged: earlier requests were rejected as manifestly unfounded (DSA Art. 23).",
        "flag-warning",
      ),
    );
  }
  const about = section("Request");
  about.append(
    facts([
      ["Ticket", req.ticket],
      ["Channel", req.channel === "flagger" ? `trusted flagger ${req.flagger_name || ""}` : req.channel],
      ["State", req.state],
      ["Received", when(req.received_at)],
      ["Valid since", when(req.valid_at)],
      ["Due", when(req.due_at)],
      ["Requester", req.requester_kind],
      ["Authority", req.authority_statement],
      ["Real or AI-made", req.ai_made],
      ["Jurisdiction", req.jurisdiction],
      ["Signed", req.signature_name ? `${req.signature_name} ${when(req.signed_at)}` : ""],
      ["Good-faith statement", req.good_faith === undefined ? "" : req.good_faith ? "yes" : "no"],
    ]),
  );
  body.append(about);
  const text = section("What the requester says");
  text.append(quote(req.description));
  body.append(text);
  body.append(validityPart(req.validity));
  const items = req.items || [];
  const part = section(`Reported content (${items.length})`);
  if (items.length) {
    part.append(
      table(
        ["As given", "Content id", "Kind", "Scanned", "State"],
        items.map((i) => [
          i.ref,
          i.content_id || `(not on ${state.platform})`,
          (item.content_kinds || {})[i.content_id] || "",
          i.scan_id ? "yes" : "no",
          i.state,
        ]),
      ),
    );
  }
  body.append(part);
  if (hasVideo(item)) body.append(videoCopiesPart(item));
}

function appealEvidence(item, body) {
  if (!item.appeal) {
    body.append(el("p", "The appeal is gone."));
    return;
  }
  const a = section("Appeal");
  a.append(facts([["Received", when(item.appeal.received_at)], ["State", item.appeal.state]]));
  a.append(quote(item.appeal.text));
  body.append(a);
  if (item.removal) {
    const r = section("The removal appealed against");
    r.append(
      facts([
        ["Content", item.removal.content_id],
        ["Reason", item.removal.reason],
        ["Removed by", item.removal.automated ? "automated" : item.removal.decided_by],
        ["Removed", when(item.removal.created_at)],
        ["Restored", when(item.removal.restored_at)],
      ]),
    );
    body.append(r);
  }
  if (item.statement) {
    const s = section("Statement of reasons");
    const b = item.statement.body || {};
    s.append(
      facts([
        ["Reference", item.statement.public_id],
        ["Content", item.statement.content_id],
        ["Ground", b.decision_ground || b.ground],
        ["Explanation", b.decision_facts || b.facts || b.explanation],
        ["Appeal until", when(item.statement.appeal_until)],
      ]),
    );
    body.append(s);
  }
}

function showDecided(item) {
  const decided = $("item-decided");
  if (item.state === "decided") {
    decided.textContent = `Decided: ${item.outcome} by ${item.decided_by} at ${when(item.decided_at)}${item.note ? ` (note: ${item.note})` : ""}`;
    decided.classList.remove("hidden");
  } else {
    decided.textContent = "";
    decided.classList.add("hidden");
  }
}

// What the note is for: only a takedown rejection's reason goes to a requester.
const NOTE_HINTS = {
  takedown: "(why you decided so; a rejection's reason is sent to the requester)",
  scan: "(why you decided so; kept with the decision)",
  appeal: "(why you decided so; kept with the decision)",
};

function showActions(item) {
  const form = $("decision");
  const open = item.state === "open";
  // An appeal against this reviewer's own removal: no outcome offered, and why.
  const blocked = $("decision-blocked");
  blocked.textContent = open && item.not_yours ? item.not_yours : "";
  blocked.classList.toggle("hidden", !(open && item.not_yours));
  form.classList.toggle("hidden", !open || !item.outcomes.length);
  $("note-hint").textContent = NOTE_HINTS[item.kind] || "";
  for (const b of document.querySelectorAll("button.act")) {
    b.classList.toggle("hidden", !item.outcomes.includes(b.dataset.outcome));
    b.disabled = !open;
  }
  $("unfounded-label").classList.toggle("hidden", item.kind !== "takedown");
  $("unfounded").checked = false;
  $("note").value = "";
  $("decision-error").textContent = "";
}

function clearPreviews() {
  for (const url of state.previewUrls) URL.revokeObjectURL(url);
  state.previewUrls = [];
  $("previews").replaceChildren();
  $("preview-message").textContent = "";
}

async function loadPreviews(item, reveal) {
  clearPreviews();
  const area = $("preview-area");
  area.classList.remove("hidden");
  const revealButton = $("reveal");
  // Enabled only once a preview is on the page: there is nothing to reveal before.
  revealButton.disabled = true;
  const message = $("preview-message");
  const ids = item.content_ids || [];
  if (!ids.length) {
    message.textContent = "No preview: this item has no content id on the platform.";
    revealButton.classList.add("hidden");
    return;
  }
  if (!item.previews) {
    message.textContent =
      "No preview: this server has no preview address set up (DIGNITY_PREVIEW_URL_TEMPLATE).";
    revealButton.classList.add("hidden");
    return;
  }
  revealButton.classList.toggle("hidden", reveal);
  $("preview-hint").textContent = reveal
    ? "Revealed in colour (recorded). It goes back to blurred when you open another item."
    : "Blurred and in greyscale. Reveal only when you need to see it; every reveal is recorded.";
  const shown = ids.slice(0, 6);
  // The scan's own content comes first: outline the matched parts on it (blurred or not).
  const regions = item.kind === "scan" ? matchRegions(item.scan) : [];
  const kinds = item.content_kinds || {};
  const figures = shown.map((id, n) => {
    const fig = el("figure", null, reveal ? "preview revealed" : "preview blurred");
    const img = el("img");
    img.alt = reveal ? `Revealed preview of ${id}` : `Blurred greyscale preview of ${id}`;
    const frame = el("div", null, "preview-frame");
    frame.append(img);
    if (n === 0 && item.scan && id === item.scan.content_id) {
      for (const r of regions) frame.append(outline(r, item.scan.media));
    }
    const caption = el("figcaption", `${id}${reveal ? " (revealed)" : " (blurred)"}`);
    fig.append(frame, caption);
    if (kinds[id] === "video") fig.classList.add("video");
    $("previews").append(fig);
    return { fig, img, caption };
  });
  const itemId = item.id;
  await Promise.all(
    shown.map(async (_, n) => {
      const r = await api(`/review/api/items/${itemId}/preview?n=${n}${reveal ? "&reveal=1" : ""}`);
      if (state.current === null || state.current.id !== itemId) return;
      if (!r.ok) {
        const e = await errorOf(r);
        figures[n].fig.replaceChildren(el("p", `No preview: ${e.message}`, "preview-error"));
        return;
      }
      if (r.headers.get("X-Dignity-Preview-Kind") === "video") {
        // A contact sheet: the frames' times, and never a player.
        const times = (r.headers.get("X-Dignity-Frames") || "").split(",").filter(Boolean);
        const id = shown[n];
        const look = reveal ? "revealed" : "blurred";
        figures[n].fig.classList.add("video");
        figures[n].img.alt = `${reveal ? "Revealed" : "Blurred greyscale"} contact sheet of ${times.length} frames of the video ${id}`;
        figures[n].caption.textContent = `${id}: video, ${times.length} frames at ${times.map(clock).join(", ")} (${look}; the video is not played)`;
      }
      const url = URL.createObjectURL(await r.blob());
      state.previewUrls.push(url);
      figures[n].img.src = url;
      if (!reveal) revealButton.disabled = false;
    }),
  );
  if (ids.length > shown.length) message.textContent = `${ids.length - shown.length} more not shown.`;
  state.revealed = reveal;
}

async function openItem(id) {
  const r = await api(`/review/api/items/${id}`);
  if (!r.ok) {
    say((await errorOf(r)).message, "error");
    return;
  }
  renderItem(await r.json());
}

function renderItem(item) {
  state.current = item;
  state.revealed = false;
  $("item").dataset.id = String(item.id);
  $("item").dataset.kind = kindName(item.kind);
  $("item-title").textContent = `${kindName(item.kind)} #${item.id} · ${item.priority_name}`;
  $("item-summary").textContent = item.summary;
  const clock = clockOf(item);
  const clockEl = $("item-clock");
  clockEl.textContent = item.escalated ? `${clock.text} · escalated (${item.escalated})` : clock.text;
  clockEl.className = clock.cls;
  showDecided(item);
  const body = $("evidence-body");
  body.replaceChildren();
  $("evidence-title").classList.remove("hidden");
  if (item.kind === "scan") scanEvidence(item, body);
  else if (item.kind === "takedown") takedownEvidence(item, body);
  else appealEvidence(item, body);
  showActions(item);
  loadPreviews(item, false);
}

function reveal() {
  const item = state.current;
  if (!item || state.revealed || $("reveal").disabled) return;
  loadPreviews(item, true);
  say("Preview revealed. This is recorded.", "warn");
}

function askOutcome(outcome) {
  const item = state.current;
  if (!item || item.state !== "open" || !item.outcomes.includes(outcome)) return;
  if (outcome === "remove") {
    state.pendingOutcome = outcome;
    const what = item.kind === "takedown"
      ? "All reported content of this request will be removed, with its known copies, and its hashes blocked."
      : "This content will be removed, with its known copies, and its hashes blocked.";
    $("confirm-text").textContent = `${what} The uploader gets a statement of reasons and can appeal.`;
    $("confirm").showModal();
    $("confirm-yes").focus();
    return;
  }
  decide(outcome);
}

async function decide(outcome) {
  const item = state.current;
  if (!item) return;
  const error = $("decision-error");
  error.textContent = "";
  for (const b of document.querySelectorAll("button.act")) b.disabled = true;
  const r = await api(`/review/api/items/${item.id}/decision`, {
    method: "POST",
    body: JSON.stringify({
      outcome,
      note: $("note").value,
      unfounded: outcome === "reject" && $("unfounded").checked,
    }),
  });
  if (!r.ok) {
    const e = await errorOf(r);
    error.textContent = e.message;
    for (const b of document.querySelectorAll("button.act")) b.disabled = false;
    if (e.code === "review.note_required") $("note").focus();
    if (e.code === "review.decided") await loadQueue();
    return;
  }
  const decided = await r.json();
  clearPreviews();
  renderItem(decided);
  say(`Decided: ${outcome} by ${decided.decided_by} at ${when(decided.decided_at)}.`, "ok");
  state.detached = true;
  await loadQueue();
  $("item").focus();
}

function isTyping(target) {
  return target instanceof HTMLElement && target.closest("input, textarea, select") !== null;
}

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if ($("confirm").open || $("help").open) return; // the dialog handles its own keys
  if (isTyping(event.target)) {
    if (event.key === "Escape") event.target.blur();
    return;
  }
  const actions = {
    j: () => move(1),
    k: () => move(-1),
    v: () => reveal(),
    r: () => askOutcome("remove"),
    R: () => askOutcome("reverse"),
    x: () => askOutcome(state.current && state.current.kind === "scan" ? "keep" : "reject"),
    u: () => askOutcome("uphold"),
    n: () => {
      if (!$("decision").classList.contains("hidden")) $("note").focus();
    },
    "?": () => $("help").showModal(),
  };
  const action = actions[event.key];
  if (action) {
    event.preventDefault();
    action();
  }
}

async function queuePage() {
  const r = await api("/review/api/session");
  if (!r.ok) {
    toLogin();
    return;
  }
  const session = await r.json();
  state.csrf = session.csrf;
  state.name = session.name;
  state.platform = session.platform_name || "this platform";
  $("who").textContent = `Signed in as ${session.name} (${session.role})`;

  document.addEventListener("keydown", onKey);
  $("reveal").addEventListener("click", reveal);
  for (const b of document.querySelectorAll("button.act")) {
    b.addEventListener("click", () => askOutcome(b.dataset.outcome));
  }
  $("confirm-yes").addEventListener("click", () => {
    $("confirm").close();
    if (state.pendingOutcome) decide(state.pendingOutcome);
    state.pendingOutcome = null;
  });
  $("confirm-no").addEventListener("click", () => {
    state.pendingOutcome = null;
    $("confirm").close();
  });
  $("confirm").addEventListener("close", () => {
    state.pendingOutcome = null;
  });
  $("help-button").addEventListener("click", () => $("help").showModal());
  $("help-close").addEventListener("click", () => $("help").close());
  $("logout").addEventListener("click", async () => {
    await api("/review/api/logout", { method: "POST", body: "{}" });
    toLogin();
  });
  await loadQueue();
  // Clocks move: refresh the list (and its deadlines) every half minute.
  setInterval(() => {
    loadQueue().catch(() => {});
  }, 30000);
}

if (document.body.dataset.page === "login") loginPage();
else queuePage().catch((e) => say(`The queue could not be loaded: ${e.message}`, "error"));
