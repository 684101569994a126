// The takedown status page: the requester enters their ticket and access code (kept in this
// page's memory only, sent in request bodies, never in the address), sees the state, the
// deadline, what is missing and the outcome; completes an incomplete request with just the
// missing fields; or withdraws an open request after confirming.

import { errorMessage, formatTime, missingList, postJSON, say, startI18n, t } from "./intake.js";

const STATE_CLASS = {
  incomplete: "warn",
  valid: "ok",
  removed: "ok",
  rejected: "error",
  withdrawn: "hint",
};
const ITEM_STATES = ["pending", "removed", "kept", "not_found", "invalid"];
// How each field is asked for when it is missing (labels: catalogue keys field.<name>).
const FIELDS = {
  requester_name: "text",
  requester_contact: "text",
  authority_statement: "textarea",
  content: "textarea",
  description: "textarea",
  signature_name: "text",
  good_faith: "checkbox",
  signature_confirmed: "checkbox",
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
    const kind = FIELDS[name];
    const id = fieldId(name);
    const value = current ? current[name] : undefined;
    if (kind === "checkbox") {
      const label = document.createElement("label");
      label.className = "check";
      const input = document.createElement("input");
      input.type = "checkbox";
      input.id = id;
      input.name = name;
      input.checked = Boolean(value);
      const text = document.createElement("span");
      text.dataset.i18n = `field.${name}.statement`;
      text.textContent = t(text.dataset.i18n);
      label.append(input, " ", text);
      container.append(label);
      continue;
    }
    const label = document.createElement("label");
    label.htmlFor = id;
    label.dataset.i18n = `field.${name}`;
    label.textContent = t(label.dataset.i18n);
    const input = document.createElement(kind === "textarea" ? "textarea" : "input");
    if (kind === "text") input.type = "text";
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
    if (FIELDS[name] === "checkbox") out[name] = input.checked;
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
  if (STATE_CLASS[data.state]) say(state, `status.state.${data.state}`);
  else state.textContent = data.state;
  state.className = "state " + (STATE_CLASS[data.state] || "");
  state.dataset.state = data.state;
  $("request-received").textContent = formatTime(data.received_at);
  if (data.due_at) say($("request-due"), "status.due", { due: formatTime(data.due_at) });
  else say($("request-due"), "status.due.none");

  const items = $("request-items");
  items.replaceChildren();
  for (const item of data.items) {
    const li = document.createElement("li");
    const ref = document.createElement("span");
    ref.className = "mono";
    ref.textContent = item.ref;
    const what = document.createElement("span");
    if (ITEM_STATES.includes(item.state)) say(what, `status.item.${item.state}`);
    else what.textContent = item.state;
    li.append(ref, " — ", what);
    if (item.problem) li.append(` (${item.problem})`); // what to fix in a new request
    items.append(li);
  }

  const outcome = $("outcome");
  if (data.outcome) {
    if (data.outcome.reason) {
      say($("outcome-reason"), "status.reason", { reason: data.outcome.reason });
    } else {
      say($("outcome-reason"), null);
    }
    // Only a refusal comes with how to contest it (none once the content was removed).
    if (data.outcome.how_to_contest) {
      say($("outcome-contest"), "status.contest", { how: data.outcome.how_to_contest });
    } else {
      say($("outcome-contest"), null);
    }
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
  say(error, null);
  if (!form.reportValidity()) return;
  const attempt = { ticket: $("ticket").value.trim(), access_code: $("access_code").value.trim() };
  const result = await postJSON("/takedown/api/status", attempt);
  if (!result.ok) {
    const [key, params] = errorMessage(result);
    say(error, key, params);
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
  say(error, null);
  const result = await postJSON("/takedown/api/complete", {
    ...credentials,
    fields: readFields(shownFields),
  });
  if (!result.ok) {
    const [key, params] = errorMessage(result);
    say(error, key, params);
    return;
  }
  render(result.data);
  $("request").focus();
}

async function withdraw() {
  const error = $("withdraw-error");
  say(error, null);
  const result = await postJSON("/takedown/api/withdraw", credentials);
  if (!result.ok) {
    const [key, params] = errorMessage(result);
    say(error, key, params);
    return;
  }
  render(result.data);
  $("request").focus();
}

async function init() {
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
  try {
    await startI18n($("language-box"));
  } catch (err) {
    console.warn("translations unavailable:", err); // the English page still works
  }
  document.documentElement.dataset.pageReady = "1";
}

init();
