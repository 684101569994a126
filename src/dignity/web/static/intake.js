// The takedown intake form: builds the JSON request, shows what the request still lacks under
// the TAKE IT DOWN Act and the EU DSA (asked from the server's checker as the person types),
// sends it, and shows the receipt with the ticket and the access code once. The helpers at the
// top are shared with the status page (status.js imports them). No data leaves this page but
// the form's fields, to this origin only (the page's Content-Security-Policy enforces that).

export const FIELD_LABELS = {
  requester_kind: "Who is asking",
  requester_name: "Your full name",
  requester_contact: "Your email address",
  authority_statement: "Your authority to act for them",
  content: "Links to each picture or video",
  description: "Why it should be taken down",
  good_faith: "Good-faith statement",
  signature_name: "Signature",
  signature_confirmed: "Signature confirmation",
  ai_made: "Real or AI-made",
  jurisdiction: "Where you live",
};

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
    return { ok: false, status: 0, data: { message: "Could not reach the server. Check your connection and try again." } };
  }
  let data = {};
  try {
    data = await response.json();
  } catch {
    data = {};
  }
  return { ok: response.ok, status: response.status, data };
}

export function errorText(result) {
  const data = result.data || {};
  if (result.status === 429) {
    return "Too many tries from this connection. Please wait a while and try again.";
  }
  let text = data.message || `Something went wrong (${result.status}).`;
  const errors = data.detail && Array.isArray(data.detail.errors) ? data.detail.errors : [];
  const fields = errors
    .map((e) => (Array.isArray(e.loc) ? e.loc.find((part) => FIELD_LABELS[part]) : null))
    .filter(Boolean);
  if (fields.length) {
    text += ": check " + [...new Set(fields)].map((f) => FIELD_LABELS[f]).join(", ");
  } else if (data.detail && data.detail.field && FIELD_LABELS[data.detail.field]) {
    text += ` (${FIELD_LABELS[data.detail.field]})`;
  }
  return text + (text.endsWith(".") ? "" : ".");
}

export function formatTime(iso) {
  if (!iso) return "";
  const at = new Date(iso);
  const local = at.toLocaleString(undefined, {
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
  summary.textContent = validity.valid
    ? "Your request has what the law asks for. The 48-hour clock starts when you send it."
    : "The 48-hour clock starts once your request has what at least one of these laws asks " +
      "for. You can also send it now and add the rest later on the status page.";
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
    const state = el(
      "span",
      { class: regime.valid ? "ok" : "warn" },
      regime.valid ? " complete" : ` ${regime.missing.length} missing`,
    );
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
  for (const node of document.querySelectorAll("[data-platform]")) node.textContent = meta.content;
}

function init() {
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
      error.textContent = "";
    } else if (result.status !== 429) {
      error.textContent = errorText(result);
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

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearTimeout(timer);
    error.textContent = "";
    if (!form.reportValidity()) return;
    button.disabled = true;
    button.textContent = "Sending…";
    const result = await postJSON("/takedown/api/requests", readForm(form));
    button.disabled = false;
    button.textContent = "Send my request";
    if (!result.ok) {
      error.textContent = errorText(result);
      return;
    }
    showReceipt(form, result.data);
  });
}

function showReceipt(form, receipt) {
  const section = document.getElementById("receipt");
  document.getElementById("receipt-ticket").textContent = receipt.ticket;
  document.getElementById("receipt-code").textContent = receipt.access_code;
  const state = document.getElementById("receipt-state");
  const list = document.getElementById("receipt-missing");
  if (receipt.state === "valid") {
    state.className = "ok";
    state.textContent =
      "Your request is valid. We must act on it by " + formatTime(receipt.due_at) + "." +
      ((receipt.item_problems || []).length
        ? " These lines are not part of it; send them again, corrected, in a new request:"
        : "");
    list.replaceChildren();
  } else {
    state.className = "warn";
    state.textContent =
      "Your request is not complete yet, so the 48-hour clock has not started. Add what is " +
      "missing on the status page:";
    missingList(list, receipt.missing);
  }
  problemItems(list, receipt.item_problems);
  form.reset();
  form.classList.add("hidden");
  section.classList.remove("hidden");
  section.focus();
}

init();
