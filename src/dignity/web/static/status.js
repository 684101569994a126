// The takedown status page: the requester enters their ticket and access code (kept in this
// page's memory only, sent in request bodies, never in the address), sees the state, the
// deadline, what is missing and the outcome; completes an incomplete request with just the
// missing fields; or withdraws an open request after confirming.

import { errorText, formatTime, missingList, postJSON } from "./intake.js";

const STATE_TEXT = {
  incomplete:
    "Your request is not complete yet, so the 48-hour clock has not started. Add what is " +
    "missing below.",
  valid: "Your request is valid. A person at the platform is reviewing it.",
  removed: "The content was removed.",
  rejected: "We did not remove the content.",
  withdrawn: "You withdrew this request.",
};
const STATE_CLASS = {
  incomplete: "warn",
  valid: "ok",
  removed: "ok",
  rejected: "error",
  withdrawn: "hint",
};
const ITEM_TEXT = {
  pending: "waiting for review",
  removed: "removed",
  kept: "not removed",
  not_found: "not found",
  invalid: "not acted on",
};
// How each field is asked for when it is missing.
const FIELDS = {
  requester_name: { label: "Your full name", kind: "text" },
  requester_contact: { label: "Your email address (or phone number)", kind: "text" },
  authority_statement: {
    label: "Your authority to act for the person shown",
    kind: "textarea",
  },
  content: { label: "Links to each picture or video (one per line)", kind: "textarea" },
  description: { label: "Why it should be taken down", kind: "textarea" },
  signature_name: { label: "Signature: type your full name", kind: "text" },
  good_faith: {
    label:
      "I believe in good faith that this content was published without the consent of the " +
      "person shown, and that the information in this request is accurate and complete.",
    kind: "checkbox",
  },
  signature_confirmed: {
    label: "I confirm that typing my name is my electronic signature.",
    kind: "checkbox",
  },
};

let credentials = null;

function $(id) {
  return document.getElementById(id);
}

function fieldId(name) {
  return `fix-${name}`;
}

function buildFields(container, missing, current) {
  container.replaceChildren();
  const names = [...new Set(missing.map((m) => m.field))].filter((f) => FIELDS[f]);
  for (const name of names) {
    const spec = FIELDS[name];
    const id = fieldId(name);
    const value = current ? current[name] : undefined;
    if (spec.kind === "checkbox") {
      const label = document.createElement("label");
      label.className = "check";
      const input = document.createElement("input");
      input.type = "checkbox";
      input.id = id;
      input.name = name;
      input.checked = Boolean(value);
      label.append(input, " " + spec.label);
      container.append(label);
      continue;
    }
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = spec.label;
    const input = document.createElement(spec.kind === "textarea" ? "textarea" : "input");
    if (spec.kind === "text") input.type = "text";
    input.id = id;
    input.name = name;
    input.value = Array.isArray(value) ? value.join("\n") : value || "";
    container.append(label, input);
  }
  return names;
}

function readFields(names) {
  const out = {};
  for (const name of names) {
    const input = $(fieldId(name));
    if (!input) continue;
    if (FIELDS[name].kind === "checkbox") out[name] = input.checked;
    else if (name === "content")
      out[name] = input.value
        .split(/\r?\n/)
        .map((line) => line.trim())
        .filter(Boolean);
    else out[name] = input.value;
  }
  return out;
}

let shownFields = [];

function render(data) {
  $("request-ticket").textContent = data.ticket;
  const state = $("request-state");
  state.textContent = STATE_TEXT[data.state] || data.state;
  state.className = "state " + (STATE_CLASS[data.state] || "");
  state.dataset.state = data.state;
  $("request-received").textContent = formatTime(data.received_at);
  $("request-due").textContent = data.due_at
    ? formatTime(data.due_at)
    : "The 48-hour clock starts when your request is complete.";

  const items = $("request-items");
  items.replaceChildren();
  for (const item of data.items) {
    const li = document.createElement("li");
    const ref = document.createElement("span");
    ref.className = "mono";
    ref.textContent = item.ref;
    li.append(ref, ` — ${ITEM_TEXT[item.state] || item.state}`);
    if (item.problem) li.append(` (${item.problem})`); // what to fix in a new request
    items.append(li);
  }

  const outcome = $("outcome");
  if (data.outcome) {
    $("outcome-reason").textContent = data.outcome.reason
      ? `Reason: ${data.outcome.reason}`
      : "";
    // Only a refusal comes with how to contest it (none once the content was removed).
    $("outcome-contest").textContent = data.outcome.how_to_contest
      ? `If you disagree: ${data.outcome.how_to_contest}`
      : "";
    outcome.classList.remove("hidden");
  } else {
    outcome.classList.add("hidden");
  }

  const complete = $("complete");
  if (data.state === "incomplete") {
    missingList($("complete-missing"), data.missing, Object.fromEntries(
      Object.keys(FIELDS).map((name) => [name, fieldId(name)]),
    ));
    shownFields = buildFields($("complete-fields"), data.missing, data.form);
    complete.classList.remove("hidden");
  } else {
    complete.classList.add("hidden");
    shownFields = [];
  }

  const open = data.state === "incomplete" || data.state === "valid";
  $("withdraw-block").classList.toggle("hidden", !open);
  $("withdraw-confirm").classList.add("hidden");
  $("withdraw-ticket").textContent = data.ticket;
  const section = $("request");
  section.classList.remove("hidden");
}

async function lookup(event) {
  event.preventDefault();
  const form = $("lookup");
  const error = $("lookup-error");
  error.textContent = "";
  if (!form.reportValidity()) return;
  const attempt = { ticket: $("ticket").value.trim(), access_code: $("access_code").value.trim() };
  const result = await postJSON("/takedown/api/status", attempt);
  if (!result.ok) {
    error.textContent = errorText(result);
    $("request").classList.add("hidden");
    return;
  }
  credentials = attempt;
  render(result.data);
  $("request").focus();
}

async function complete(event) {
  event.preventDefault();
  const error = $("complete-error");
  error.textContent = "";
  const result = await postJSON("/takedown/api/complete", {
    ...credentials,
    fields: readFields(shownFields),
  });
  if (!result.ok) {
    error.textContent = errorText(result);
    return;
  }
  render(result.data);
  $("request").focus();
}

async function withdraw() {
  const error = $("withdraw-error");
  error.textContent = "";
  const result = await postJSON("/takedown/api/withdraw", credentials);
  if (!result.ok) {
    error.textContent = errorText(result);
    return;
  }
  render(result.data);
  $("request").focus();
}

function init() {
  $("lookup").addEventListener("submit", lookup);
  $("complete").addEventListener("submit", complete);
  $("withdraw").addEventListener("click", () => {
    $("withdraw-confirm").classList.remove("hidden");
    $("withdraw-no").focus();
  });
  $("withdraw-no").addEventListener("click", () => {
    $("withdraw-confirm").classList.add("hidden");
    $("withdraw").focus();
  });
  $("withdraw-yes").addEventListener("click", withdraw);
}

init();
