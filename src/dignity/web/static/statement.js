// The appeal form of a statement of reasons: sends the appeal code and the text as JSON to
// /statements/api/<public id>/appeal and says what happened. The code travels in the body,
// never in a URL. Without script the page still shows the whole statement.
const form = document.getElementById("appeal-form");

function say(text, kind) {
  const status = document.getElementById("appeal-status");
  status.textContent = text;
  status.className = kind;
}

async function submit(event) {
  event.preventDefault();
  const button = form.querySelector("button[type=submit]");
  const code = form.elements.code.value.trim();
  const text = form.elements.text.value.trim();
  if (!code || !text) {
    say("Enter the appeal code from your notice and say why the decision is wrong.", "error");
    (code ? form.elements.text : form.elements.code).focus();
    return;
  }
  button.disabled = true;
  say("Sending your appeal…", "");
  try {
    const response = await fetch(`/statements/api/${encodeURIComponent(form.dataset.publicId)}/appeal`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ code, text }),
      credentials: "same-origin",
    });
    const body = await response.json().catch(() => ({}));
    if (response.ok) {
      form.reset();
      form.classList.add("hidden");
      say(
        `Your appeal was received (reference ${body.appeal_id}). A person who did not take the ` +
          "decision will review it; you will be told the outcome.",
        "ok",
      );
      document.getElementById("appeal-status").focus();
      return;
    }
    say(body.message || `The appeal could not be sent (HTTP ${response.status}).`, "error");
  } catch (err) {
    say("The appeal could not be sent: check your connection and try again.", "error");
  } finally {
    button.disabled = false;
  }
}

if (form) {
  form.addEventListener("submit", submit);
}
