// Keeping codes a page shows only once (the portal's case number and PIN, the takedown
// receipt's ticket and access code): Copy puts them on the clipboard, Print prints the page
// (each page's print stylesheet keeps only the codes), Save downloads them as a small text file.
// The file is made in this tab from a blob: URL, so keeping the codes never sends them anywhere
// (and the pages' Content-Security-Policy would stop any other destination). Both the portal
// (portal.js) and the takedown intake page (intake.js) use this one module; the status line
// goes through say(), so it follows a change of language like the rest of the page.

import { say } from "./i18n.js";

/** Put `text` on the clipboard; true when it got there. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard permission (an older browser, an http page): select a copy and copy that.
    const back = document.activeElement;
    const area = Object.assign(document.createElement("textarea"), { value: text });
    area.readOnly = true; // no on-screen keyboard on a phone for the moment it has the focus
    document.body.append(area);
    area.select();
    let copied = false;
    try {
      copied = document.execCommand("copy");
    } catch {
      copied = false;
    }
    area.remove();
    if (back instanceof HTMLElement) back.focus(); // keyboard users stay on the button
    return copied;
  }
}

/** Download `text` as the file `name`, made here: a blob: URL, never a request to the server. */
export function saveText(text, name) {
  const blob = new Blob([text], { type: "text/plain;charset=utf-8" });
  const url = URL.createObjectURL(blob);
  const link = Object.assign(document.createElement("a"), { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  // Revoked later, not at once: the browser may still be reading the blob for the download.
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** Wire a page's Copy, Print and Save buttons. `text()` and `filename()` are asked at each
 * press, as the codes only exist once the page has them; `status` says what happened, with the
 * catalogue keys in `messages` ({copied, copy_failed, saved}). */
export function keepButtons({ copy, print, save, status, text, filename, messages }) {
  copy.addEventListener("click", async () => {
    const copied = await copyText(text());
    say(status, copied ? messages.copied : messages.copy_failed);
  });
  print.addEventListener("click", () => window.print());
  save.addEventListener("click", () => {
    saveText(text(), filename());
    say(status, messages.saved);
  });
}
