"""The victim portal and the takedown pages in every language, and the portal's errors and
codes, in real Chromium against a real server on 127.0.0.1.

* Each page in each language at a phone's width (375 px): ``<html lang>`` is the language,
  every marked element shows its catalogue text, no visible text is left untranslated (each
  text sits in a translated element or is a name marked ``translate="no"``, and none is an
  English message), and nothing is wider than the screen, with the longest error shown.
* The language comes from the browser's languages, the switcher changes it in place and the
  choice persists; the helplines shown follow the language's region.
* Submit errors stay on screen and say what happened, what to do and how long: offline (the
  request aborted by the browser) and the real per-address limit's 429 with its Retry-After;
  the status page's lockout says how long too.
* After a case is created its number and PIN can be copied, printed (only the codes) and
  saved as a text file made in the page; after a takedown request is sent, the same for the
  receipt's ticket, access code and status page address, in every language at 375 px.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from dignity import samples
from dignity.i18n import LANGUAGES, catalogue_bytes
from tests.integration.browser import browser, save_screenshot
from tests.integration.server import LiveServer

__all__ = ["browser"]  # the module-scoped Chromium fixture, used by every test here

PAGES = {"portal": "/portal", "intake": "/takedown", "status": "/takedown/status"}
READY = {
    "portal": "html[data-portal-ready='1']",
    "intake": "html[data-page-ready='1']",
    "status": "html[data-page-ready='1']",
}
CATALOGUES: dict[str, dict[str, Any]] = {
    lang: json.loads(catalogue_bytes(lang)) for lang in LANGUAGES
}

# Visible text that is not inside a translated element or a name: returned as a list.
UNTRANSLATED = """() => {
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const text = n.textContent.trim();
    if (!/\\p{L}{2,}/u.test(text)) continue;
    const el = n.parentElement;
    if (!el.checkVisibility()) continue;
    if (el.closest("[data-i18n],[data-i18n-html],[data-i18n-said],[translate=no],option")) continue;
    out.push(text);
  }
  return out;
}"""
VISIBLE_TEXTS = """() => {
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.parentElement.checkVisibility() && n.textContent.trim()) out.push(n.textContent.trim());
  }
  return out;
}"""
# Elements whose right edge is past the screen (the page would scroll sideways).
TOO_WIDE = """() => {
  const width = document.documentElement.clientWidth;
  const out = [];
  for (const el of document.body.querySelectorAll("*")) {
    if (!el.checkVisibility() || el.closest(".skip")) continue;
    const box = el.getBoundingClientRect();
    if (box.right > width + 1) out.push(`${el.tagName}#${el.id}.${el.className}: ${box.right}`);
  }
  return [document.documentElement.scrollWidth, window.innerWidth, out];
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with _server(Path(tmp_path_factory.mktemp("i18n"))) as live:
        yield live


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = Path(tmp_path_factory.mktemp("pictures")) / "landscape.png"
    samples.landscape(21, (640, 480)).save(path, "PNG")
    return path


@contextmanager
def _open(browser: Any, url: str, page_name: str, **context: Any) -> Iterator[Any]:
    """A page of a fresh browser context (its own storage), loaded and translated."""
    ctx = browser.new_context(**context)
    try:
        page = ctx.new_page()
        page.goto(url)
        page.wait_for_selector(READY[page_name], state="attached", timeout=30_000)
        yield page
    finally:
        ctx.close()


@contextmanager
def _server(data: Path, **env: str) -> Iterator[LiveServer]:
    live = LiveServer(data, env=env)
    live.start()
    try:
        yield live
    finally:
        live.stop()


def _until(page: Any, predicate: str, timeout: float = 15) -> None:
    """Poll ``predicate`` from outside the page: the pages' CSP forbids the in-page eval that
    ``wait_for_function`` would use."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(predicate):
        assert time.monotonic() < deadline, predicate
        page.wait_for_timeout(50)


def _english_only(lang: str) -> set[str]:
    """English message texts that the language's catalogue says differently."""
    out: set[str] = set()
    for key, english in CATALOGUES["en"].items():
        if english == CATALOGUES[lang][key]:
            continue
        for form in english.values() if isinstance(english, dict) else [english]:
            if "{" not in form and "<" not in form:
                out.add(form.strip())
    return out


def _rich_text(message: str) -> str:
    return re.sub(r"<[^>]+>", "", message).replace("&amp;", "&")


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_is_translated_and_fits_a_phone(
    browser: Any, server: LiveServer, name: str, lang: str
) -> None:
    catalogue = CATALOGUES[lang]
    with _open(
        browser,
        f"{server.base}{PAGES[name]}?lang={lang}",
        name,
        viewport={"width": 375, "height": 740},
    ) as page:
        assert page.evaluate("document.documentElement.lang") == lang
        page.evaluate("document.querySelectorAll('details').forEach((d) => { d.open = true; })")
        # Every marked element shows its own catalogue's text: no key is missing or left as is.
        shown = page.eval_on_selector_all(
            "[data-i18n]", "els => els.map(e => [e.dataset.i18n, e.textContent])"
        )
        assert shown
        for key, text in shown:
            assert key in catalogue, key
            assert text == catalogue[key], (key, text)
        rich = page.eval_on_selector_all(
            "[data-i18n-html]", "els => els.map(e => [e.dataset.i18nHtml, e.textContent])"
        )
        for key, text in rich:
            assert text == _rich_text(catalogue[key]), (key, text)
        assert page.evaluate(UNTRANSLATED) == []
        if lang != "en":
            leftovers = set(page.evaluate(VISIBLE_TEXTS)) & _english_only(lang)
            assert not leftovers, leftovers
        if name == "portal":
            # The longest texts the page can show at once: the codes box and an error.
            longest = max(
                (k for k, v in catalogue.items() if k.startswith("portal.error.")),
                key=lambda k: len(str(catalogue[k])),
            )
            page.evaluate(
                """(text) => {
                  document.getElementById("case-number").textContent = "ABCD-EFGH-JKMN";
                  document.getElementById("case-pin").textContent = "1234-5678-9012";
                  document.getElementById("created").hidden = false;
                  const box = document.getElementById("submit-error");
                  box.textContent = text;
                  box.hidden = false;
                }""",
                catalogue[longest],
            )
        scroll_width, inner_width, wide = page.evaluate(TOO_WIDE)
        save_screenshot(page, f"i18n-{name}-{lang}")
        assert scroll_width <= inner_width and not wide, (scroll_width, inner_width, wide)


def test_language_follows_the_browser_and_the_switcher_persists(
    browser: Any, server: LiveServer
) -> None:
    with _open(browser, f"{server.base}/portal", "portal", locale="de-AT") as page:
        assert page.evaluate("document.documentElement.lang") == "de"
        assert page.locator("h1").inner_text() == CATALOGUES["de"]["portal.h1"]
        # Helplines for the language's region: Austria, and names shown in German.
        assert page.locator("#helpline-country").input_value() == "AT"
        assert "Rat auf Draht" in page.locator("#helplines").text_content()
        page.select_option("#language", "fr")
        _until(page, "document.documentElement.lang === 'fr'")
        assert page.locator("h1").inner_text() == CATALOGUES["fr"]["portal.h1"]
        assert "lang=fr" in page.url
        # Another country by hand; both choices outlive a reload without ?lang=.
        page.click("#help-details summary")
        page.select_option("#helpline-country", "BE")
        assert "Child Focus" in page.locator("#helplines").text_content()
        page.goto(f"{server.base}/takedown/status")
        page.wait_for_selector(READY["status"], state="attached")
        assert page.evaluate("document.documentElement.lang") == "fr"
        page.goto(f"{server.base}/portal")
        page.wait_for_selector(READY["portal"], state="attached")
        assert page.evaluate("document.documentElement.lang") == "fr"
        assert page.locator("#helpline-country").input_value() == "BE"


def _hash_and_tick(page: Any, picture: Path) -> None:
    page.set_input_files("#files", [str(picture)])
    page.wait_for_selector("#items li[data-state='ready']")
    page.check("#adult")
    page.check("#consent")


@pytest.mark.parametrize("lang", ["en", "pl"])
def test_offline_submit_error_stays_until_the_person_acts(
    browser: Any, server: LiveServer, picture: Path, lang: str
) -> None:
    catalogue = CATALOGUES[lang]
    with _open(browser, f"{server.base}/portal?lang={lang}", "portal") as page:
        _hash_and_tick(page, picture)
        # The browser itself fails the request, as with the network gone.
        page.route("**/portal/api/cases", lambda route: route.abort("internetdisconnected"))
        page.click("#submit")
        error = page.locator("#submit-error")
        error.wait_for(state="visible")
        page.wait_for_timeout(1000)  # nothing may overwrite it meanwhile
        assert error.inner_text() == catalogue["portal.error.offline.submit"]
        assert error.get_attribute("role") == "alert"
        # The codes are still here, ready to send again.
        assert page.locator("#submit-status").inner_text() == catalogue["portal.status.ready"][
            "one"
        ].replace("{n}", "1")
        assert page.is_enabled("#submit")
        assert page.locator("#items li").count() == 1
        page.uncheck("#consent")  # the person acts: the old error goes
        assert error.is_hidden()


def _minutes_text(seconds: int) -> str:
    """What the page shows for a Retry-After in English: whole minutes, rounded up."""
    if seconds < 60:
        return f"{seconds} second{'' if seconds == 1 else 's'}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'' if minutes == 1 else 's'}"


def test_rate_limited_submit_says_how_long_and_codes_can_be_kept(
    browser: Any, tmp_path: Path, picture: Path
) -> None:
    """One case an hour per address: the second submit meets the real limiter's 429."""
    with (
        _server(tmp_path, DIGNITY_PORTAL_IP_CASES_PER_HOUR="1") as live,
        _open(
            browser,
            f"{live.base}/portal",
            "portal",
            accept_downloads=True,
            permissions=["clipboard-read", "clipboard-write"],
        ) as page,
    ):
        _hash_and_tick(page, picture)
        page.click("#submit")
        page.wait_for_selector("#created:not([hidden])")
        number = page.locator("#case-number").inner_text()
        pin = page.locator("#case-pin").inner_text()
        assert re.fullmatch(r"[0-9A-Z]{4}(-[0-9A-Z]{4}){2}", number), number

        # Save as a file: made in the page (no request), holding number and PIN.
        name, text, requests = _save(page, "#download")
        assert name == f"case-{number}.txt"
        assert f"Case number: {number}\nPIN: {pin}\n" in text
        assert f"{live.base}/portal" in text
        assert not [u for u in requests if u.startswith(live.base)], requests
        # Copy: the same text on the clipboard.
        page.click("#copy")
        page.wait_for_selector("#keep-status:not(:empty)")
        assert page.evaluate("navigator.clipboard.readText()") == text
        assert page.locator("#keep-status").inner_text().startswith("Copied.")
        # Print: only the codes box is printed.
        page.emulate_media(media="print")
        assert page.is_visible("#created") and page.is_visible("#case-pin")
        assert page.is_hidden("#manage-form") and page.is_hidden("header")
        assert page.is_hidden("#case-form")
        page.emulate_media(media="screen")

        # A second case from the same address: the limiter's 429, shown with its wait.
        # The first case is made to look half an hour old, so the wait (about 30 minutes)
        # differs from the page's fallback when it ignores Retry-After (an hour).
        with sqlite3.connect(live.data / "dignity.sqlite3") as db:
            db.execute("UPDATE address_tries SET at = at - 1800 WHERE scope = 'portal.cases'")
        _hash_and_tick(page, picture)
        with page.expect_response("**/portal/api/cases") as answer:
            page.click("#submit")
        response = answer.value
        assert response.status == 429
        wait = int(response.headers["retry-after"])
        assert 1700 < wait <= 1800
        error = page.locator("#submit-error")
        error.wait_for(state="visible")
        page.wait_for_timeout(500)
        shown = error.inner_text()
        assert shown.startswith("Not sent: too many cases were made from this internet")
        assert f"Please wait {_minutes_text(wait)} (until about " in shown, shown
        assert "Keep this page open" in shown
        save_screenshot(page, "i18n-portal-rate-limited")
        body = response.json()
        assert body["code"] == "rate.limited" and body["message"][0].isupper(), body


# The intake form by field ids, so the same steps work in every language.
INTAKE_FIELDS = {
    "#requester_name": "Alex Example",
    "#requester_contact": "alex@example.org",
    "#content": "https://pics.example/p/abc123",
    "#description": "An intimate picture of me, posted without my consent.",
    "#signature_name": "Alex Example",
}


def _send_takedown_request(page: Any) -> tuple[str, str]:
    """Fill and send the intake form; the receipt's ticket and access code."""
    for selector, value in INTAKE_FIELDS.items():
        page.fill(selector, value)
    page.check("input[name=ai_made][value=ai]")
    page.select_option("#jurisdiction", "EU")
    page.check("#good_faith")
    page.check("#signature_confirmed")
    page.click("#submit")
    page.wait_for_selector("#receipt:not(.hidden)")
    # A valid request: its receipt has no English reasons from the server's checker.
    page.wait_for_selector("#receipt-state.ok")
    ticket = page.locator("#receipt-ticket").inner_text()
    code = page.locator("#receipt-code").inner_text()
    assert ticket.startswith("TD-") and code, (ticket, code)
    return ticket, code


def _save(page: Any, button: str) -> tuple[str, str, list[str]]:
    """Click a page's Save button: the file's suggested name and text, and the list of every
    request the page makes from now on (saving must add none: the file is made in the page)."""
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    with page.expect_download() as download_info:
        page.click(button)
    download = download_info.value
    return download.suggested_filename, Path(download.path()).read_text(encoding="utf-8"), requests


@pytest.mark.parametrize("lang", LANGUAGES)
def test_intake_receipt_codes_can_be_kept_in_every_language(
    browser: Any, server: LiveServer, lang: str
) -> None:
    catalogue = CATALOGUES[lang]
    status = "document.getElementById('receipt-keep-status').textContent"
    with _open(
        browser,
        f"{server.base}/takedown?lang={lang}",
        "intake",
        viewport={"width": 375, "height": 740},
        accept_downloads=True,
        permissions=["clipboard-read", "clipboard-write"],
    ) as page:
        ticket, code = _send_takedown_request(page)
        expected = catalogue["intake.keep.text"].format(
            ticket=ticket, code=code, page=f"{server.base}/takedown/status"
        )

        # Save: a file made in the page (no request) with the ticket, code and status page.
        name, text, requests = _save(page, "#receipt-save")
        assert name == f"takedown-{ticket}.txt"
        assert text == expected
        assert page.evaluate(status) == catalogue["intake.keep.saved"]
        # Copy: the same text on the clipboard.
        page.click("#receipt-copy")
        _until(page, f"{status} === {json.dumps(catalogue['intake.keep.copied'])}")
        assert page.evaluate("navigator.clipboard.readText()") == expected
        assert not [u for u in requests if u.startswith(server.base)], requests

        # Every text on screen is this language's, and the receipt fits a phone even with the
        # longest status line it can show.
        shown = page.eval_on_selector_all(
            "#receipt [data-i18n]", "els => els.map(e => [e.dataset.i18n, e.textContent])"
        )
        assert {"intake.keep.copy", "intake.keep.print", "intake.keep.save"} <= dict(shown).keys()
        for key, text in shown:
            assert text == catalogue[key], (key, text)
        assert page.evaluate(UNTRANSLATED) == []
        if lang != "en":
            leftovers = set(page.evaluate(VISIBLE_TEXTS)) & _english_only(lang)
            assert not leftovers, leftovers
        longest = max(
            ("intake.keep.copied", "intake.keep.copy_failed", "intake.keep.saved"),
            key=lambda k: len(catalogue[k]),
        )
        page.evaluate(
            "(text) => { document.getElementById('receipt-keep-status').textContent = text; }",
            catalogue[longest],
        )
        scroll_width, inner_width, wide = page.evaluate(TOO_WIDE)
        save_screenshot(page, f"i18n-intake-receipt-{lang}")
        assert scroll_width <= inner_width and not wide, (scroll_width, inner_width, wide)

        # Print: only the receipt, with the status page's full address and without the buttons.
        page.emulate_media(media="print")
        assert page.is_visible("#receipt-code") and page.is_hidden("header")
        assert page.is_hidden(".intro") and page.is_hidden("#receipt-copy")
        assert page.locator("#receipt-address").inner_text() == f"{server.base}/takedown/status"
        page.emulate_media(media="screen")
        assert page.is_hidden("#receipt-address")


def test_receipt_copy_falls_back_and_says_when_it_cannot(browser: Any, server: LiveServer) -> None:
    """Without the async clipboard (an http page, an older browser) the codes are copied as
    selected text; where that fails too, the status line says what to do instead."""
    catalogue = CATALOGUES["de"]
    status = "document.getElementById('receipt-keep-status').textContent"
    with _open(
        browser,
        f"{server.base}/takedown?lang=de",
        "intake",
        permissions=["clipboard-read", "clipboard-write"],
    ) as page:
        ticket, code = _send_takedown_request(page)
        page.evaluate(
            "() => { navigator.clipboard.writeText = () => Promise.reject(new Error('denied')); }"
        )
        page.focus("#receipt-copy")
        page.keyboard.press("Enter")
        _until(page, f"{status} === {json.dumps(catalogue['intake.keep.copied'])}")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert f"{ticket}\n" in copied and f"{code}\n" in copied, copied
        assert page.evaluate("document.activeElement.id") == "receipt-copy"  # still on the button
        page.evaluate("() => { document.execCommand = () => false; }")
        page.keyboard.press("Enter")
        _until(page, f"{status} === {json.dumps(catalogue['intake.keep.copy_failed'])}")


def test_wrong_pins_then_lockout_say_what_to_do_and_how_long(browser: Any, tmp_path: Path) -> None:
    """Check with a wrong case number and PIN until the per-address limit answers 429: first
    what to check, then how long to wait; the takedown status page says the same."""
    with _server(tmp_path, DIGNITY_PORTAL_IP_FAILURES_PER_HOUR="2") as live:
        with _open(browser, f"{live.base}/portal?lang=es", "portal") as page:
            out = page.locator("#manage-status")
            page.fill("#manage-number", "AAAA-BBBB-CCCC")
            page.fill("#manage-pin", "1111-2222-3333")
            for _ in range(2):
                page.click("#check")
                _until(
                    page,
                    "document.getElementById('manage-status').textContent !== "
                    f"{json.dumps(CATALOGUES['es']['portal.manage.checking'])}",
                )
                assert out.inner_text() == CATALOGUES["es"]["portal.error.bad_credentials"]
                page.evaluate("document.getElementById('manage-status').textContent = ''")
            page.click("#check")
            _until(page, "document.getElementById('manage-status').textContent.startsWith('Desde')")
            shown = out.inner_text()
            assert "Espera " in shown and re.search(r"\d+ minutos", shown), shown
        with _open(browser, f"{live.base}/takedown/status", "status") as page:
            error = page.locator("#lookup-error")
            page.fill("#ticket", "TD-AAAAA-BBBBB")
            page.fill("#access_code", "wrong-code")
            for _ in range(3):
                page.click("#lookup-submit")
                _until(page, "document.getElementById('lookup-error').textContent !== ''")
                if error.inner_text().startswith("Too many"):
                    break
                assert error.inner_text() == CATALOGUES["en"]["takedown.error.bad_credentials"]
                page.evaluate("document.getElementById('lookup-error').textContent = ''")
            shown = error.inner_text()
            assert shown.startswith("Too many tries from this internet connection. Please wait ")
            assert re.search(r"wait \d+ minutes? \(until about ", shown), shown


def test_catalogue_and_helpline_routes(server: LiveServer) -> None:
    for lang in LANGUAGES:
        r = httpx.get(f"{server.base}/i18n/{lang}.json")
        assert r.status_code == 200 and r.json() == CATALOGUES[lang]
        assert r.headers["content-type"].startswith("application/json")
        assert "default-src 'none'" in r.headers["content-security-policy"]
    missing = httpx.get(f"{server.base}/i18n/xx.json")
    assert missing.status_code == 404 and missing.json()["message"][0].isupper()
    assert httpx.get(f"{server.base}/i18n/..%2Fhelplines.json").status_code == 404
    helplines = httpx.get(f"{server.base}/i18n/helplines.json").json()
    assert "GB" in helplines["countries"] and helplines["everywhere"]
