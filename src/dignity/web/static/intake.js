// The takedown intake form: builds the JSON request, shows what the request still lacks under
// the TAKE IT DOWN Act and the EU DSA (asked from the server's checker as the person types),
// sends it, and shows the receipt with the ticket and the access code once, which the person
// can copy, print or save as a small text file made here (keep.js). The helpers at the
// top are shared with the status page (status.js imports them). No data leaves this page but
// the form's fields, to this origin only (the page's Content-Security-Policy enforces that).
// Every text comes from the shared translation catalogue (i18n.js); the reasons the server's
// checker lists are its own (English) words.

import { clockIn, currentLanguage, duration, say, startI18n, t } from "./i18n.js";
import { keepButtons } from "./keep.js";

export { say, startI18n, t };

// Field names the server may name in an error, and the catalogue key of each one's label.
const FIELDS = [
  "requester_kind",
  "requester_name",
  "requester_contact",
  "authority_statement",
  "content",
  "description",
  "good_faith",
  "signature_name",
  "signature_confirmed",
  "ai_made",
  "jurisdiction",
];
const fieldLabel = (name) => t(`field.${name}.short`);

export async function postJSON(url, body) {
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    return { ok: false, status: 0, data: {}, retryAfter: null }; // offline, or the server is down
  }
  let data = {};
  try {
    data = await response.json();
  } catch {
    data = {};
  }
  const header = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  const retryAfter = Number.isFinite(header) ? header : null;
  return { ok: response.ok, status: response.status, data, retryAfter };
}

/** A failed call in the page's language, as [catalogue key, values] for say(): what happened,
 * what to do and, for a limit, how long to wait (from the server's Retry-After). */
export function errorMessage(result) {
  const data = result.data || {};
  if (result.status === 0) return ["takedown.error.offline"];
  if (result.status === 429 || result.status === 503) {
    const seconds = result.retryAfter ?? (result.status === 429 ? 3600 : 30);
    const key = result.status === 429 ? "takedown.error.rate_limited" : "takedown.error.busy";
    return [key, { wait: duration(seconds), time: clockIn(seconds) }];
  }
  if (data.code === "takedown.bad_credentials" || result.status === 403) {
    return ["takedown.error.bad_credentials"];
  }
  const errors = data.detail && Array.isArray(data.detail.errors) ? data.detail.errors : [];
  const fields = errors
    .map((e) => (Array.isArray(e.loc) ? e.loc.find((part) => FIELDS.includes(part)) : null))
    .filter(Boolean);
  if (!fields.length && data.detail && FIELDS.includes(data.detail.field)) {
    fields.push(data.detail.field);
  }
  if (fields.length) {
    return ["takedown.error.fields", { fields: [...new Set(fields)].map(fieldLabel).join(", ") }];
  }
  if (result.status >= 400 && result.status < 500 && typeof data.message === "string") {
    // The server's own reason is the most specific (which line, what to change); it is in
    // English, and the other catalogues say so around it.
    const reason = data.message.trim();
    const sentence = reason.charAt(0).toUpperCase() + reason.slice(1);
    const full = /[.!?]$/.test(sentence) ? sentence : `${sentence}.`;
    return ["takedown.error.reason", { reason: full }];
  }
  if (result.status >= 400 && result.status < 500) return ["takedown.error.invalid"];
  return ["takedown.error.server", { status: result.status }];
}

/** The same as plain text (kept for callers that build their own messages). */
export function errorText(result) {
  const [key, params] = errorMessage(result);
  return t(key, params);
}

export function formatTime(iso) {
  if (!iso) return "";
  const at = new Date(iso);
  const local = at.toLocaleString(currentLanguage(), {
    dateStyle: "medium",
    timeStyle: "short",
  });
  const utc = at.toISOString().replace("T", " ").slice(0, 16);
  return `${local} (${utc} UTC)`;
}

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

// One list item per missing element; a link moves the focus to the field it concerns.
export function missingList(list, missing, fieldIds = {}) {
  list.replaceChildren();
  for (const m of missing) {
    const item = el("li", { "data-key": m.key });
    const target = fieldIds[m.field] || m.field;
    if (document.getElementById(target)) {
      const link = el("a", { href: `#${target}` }, m.message);
      link.addEventListener("click", (event) => {
        event.preventDefault();
        document.getElementById(target).focus();
      });
      item.append(link);
    } else {
      item.textContent = m.message;
    }
    list.append(item);
  }
}

// Content lines that cannot be acted on, each with what to fix (the rest go ahead without them).
export function problemItems(list, problems) {
  for (const p of problems || []) {
    list.append(el("li", { "data-key": p.key, class: "item-problem" }, `${p.ref}: ${p.message}`));
  }
}

// Both regimes: complete, or what each lacks.
export function renderValidity(container, validity, fieldIds = {}) {
  container.replaceChildren();
  const summary = el("p", { class: validity.valid ? "ok" : "warn", id: "checker-summary" });
  say(summary, validity.valid ? "intake.checker.valid" : "intake.checker.invalid");
  container.append(summary);
  if ((validity.item_problems || []).length) {
    const problems = el("ul", { class: "missing", id: "checker-problems" });
    problemItems(problems, validity.item_problems);
    container.append(problems);
  }
  for (const name of ["take_it_down", "dsa_art16"]) {
    const regime = validity[name];
    if (!regime) continue;
    const block = el("div", { class: "regime", "data-regime": name });
    const title = el("h4", {}, regime.title);
    const state = el("span", { class: regime.valid ? "ok" : "warn" });
    if (regime.valid) say(state, "intake.checker.complete");
    else say(state, "intake.checker.missing", { n: regime.missing.length });
    title.append(" ");
    title.append(state);
    block.append(title);
    if (!regime.valid) {
      const list = el("ul", { class: "missing" });
      missingList(list, regime.missing, fieldIds);
      block.append(list);
    }
    container.append(block);
  }
}

// -- the intake form --------------------------------------------------------------------------

function readForm(form) {
  const value = (name) => form.elements[name].value;
  return {
    requester_kind: value("requester_kind"),
    requester_name: value("requester_name"),
    requester_contact: value("requester_contact"),
    authority_statement:
      value("requester_kind") === "representative" ? value("authority_statement") : "",
    content: value("content")
      .split(/\r?\n/)
      .map((line) => line.trim())
      .filter(Boolean),
    description: value("description"),
    good_faith: form.elements.good_faith.checked,
    signature_name: value("signature_name"),
    signature_confirmed: form.elements.signature_confirmed.checked,
    ai_made: value("ai_made"),
    jurisdiction: value("jurisdiction"),
  };
}

// The platform's name, which the server puts in <meta name="dignity-platform">.
function namePlatform() {
  const meta = document.querySelector('meta[name="dignity-platform"]');
  if (!meta || !meta.content) return;
  for (const node of document.querySelectorAll("[data-platform]")) {
    node.textContent = meta.content;
    node.hidden = false;
  }
}

async function init() {
  namePlatform();
  const form = document.getElementById("intake");
  if (!form) return;
  const checker = document.getElementById("checker-body");
  const error = document.getElementById("form-error");
  const button = document.getElementById("submit");
  const authority = document.getElementById("authority-block");
  let timer = null;
  let sequence = 0;

  const toggleAuthority = () => {
    const representative = form.elements.requester_kind.value === "representative";
    authority.classList.toggle("hidden", !representative);
  };

  const check = async () => {
    const mine = ++sequence;
    const result = await postJSON("/takedown/api/check", readForm(form));
    if (mine !== sequence) return; // a newer check is on its way
    if (result.ok) {
      renderValidity(checker, result.data.validity);
      say(error, null);
    } else if (result.status !== 429) {
      const [key, params] = errorMessage(result);
      say(error, key, params);
    }
  };
  const later = () => {
    clearTimeout(timer);
    timer = setTimeout(check, 500);
  };

  form.addEventListener("input", later);
  form.addEventListener("change", (event) => {
    if (event.target.name === "requester_kind") toggleAuthority();
    later();
  });
  toggleAuthority();
  keepReceipt();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearTimeout(timer);
    say(error, null);
    if (!form.reportValidity()) return;
    button.disabled = true;
    button.dataset.i18n = "intake.sending";
    button.textContent = t("intake.sending");
    const result = await postJSON("/takedown/api/requests", readForm(form));
    button.disabled = false;
    button.dataset.i18n = "intake.submit";
    button.textContent = t("intake.submit");
    if (!result.ok) {
      const [key, params] = errorMessage(result);
      say(error, key, params);
      return;
    }
    showReceipt(form, result.data);
  });
  try {
    await startI18n(document.getElementById("language-box"));
  } catch (err) {
    console.warn("translations unavailable:", err); // the English page still works
  }
  document.documentElement.dataset.pageReady = "1";
}

// The receipt's Copy, Print and Save: the ticket, the access code and the status page's full
// address (a file or a note read later, away from this page, has no link to follow).
function keepReceipt() {
  const $ = (id) => document.getElementById(id);
  keepButtons({
    copy: $("receipt-copy"),
    print: $("receipt-print"),
    save: $("receipt-save"),
    status: $("receipt-keep-status"),
    text: () =>
      t("intake.keep.text", {
        ticket: $("receipt-ticket").textContent,
        code: $("receipt-code").textContent,
        page: $("receipt-address").textContent,
      }),
    filename: () => `takedown-${$("receipt-ticket").textContent}.txt`,
    messages: {
      copied: "intake.keep.copied",
      copy_failed: "intake.keep.copy_failed",
      saved: "intake.keep.saved",
    },
  });
}

function showReceipt(form, receipt) {
  const section = document.getElementById("receipt");
  document.getElementById("receipt-ticket").textContent = receipt.ticket;
  document.getElementById("receipt-code").textContent = receipt.access_code;
  const address = new URL(receipt.status_url || "/takedown/status", window.location.origin);
  document.getElementById("receipt-address").textContent = address.href;
  say(document.getElementById("receipt-keep-status"), null);
  const state = document.getElementById("receipt-state");
  const list = document.getElementById("receipt-missing");
  if (receipt.state === "valid") {
    state.className = "ok";
    const key = (receipt.item_problems || []).length
      ? "intake.receipt.valid_bad_lines"
      : "intake.receipt.valid";
    say(state, key, { due: formatTime(receipt.due_at) });
    list.replaceChildren();
  } else {
    state.className = "warn";
    say(state, "intake.receipt.incomplete");
    missingList(list, receipt.missing);
  }
  problemItems(list, receipt.item_problems);
  form.reset();
  form.classList.add("hidden");
  section.classList.remove("hidden");
  section.focus();
}

init();
