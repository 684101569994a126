// The pages' translations: one catalogue per language (src/dignity/i18n/catalogues/<lang>.json,
// served at /i18n/<lang>.json), shared by the victim portal and the takedown intake and status
// pages. The language comes from ?lang=, then the person's earlier choice (localStorage), then
// the browser's languages (navigator.languages), then English. Elements carry their message
// key: data-i18n (text), data-i18n-html (text with <strong>, <em>, <code>, <a> only: catalogue
// text is ours, but it is still rebuilt node by node so a bad translation cannot add script),
// data-i18n-attr ("placeholder:key;aria-label:key"). Text set by the pages' scripts goes through
// say(), which remembers the key so a change of language re-translates it. Plurals use the
// browser's CLDR plural rules (Intl.PluralRules): a message may be {"one": ..., "few": ...,
// "many": ..., "other": ...}, with the categories its language has.

export const LANGUAGES = {
  en: "English",
  es: "Español",
  fr: "Français",
  de: "Deutsch",
  it: "Italiano",
  pt: "Português",
  pl: "Polski",
  hi: "हिन्दी",
};
// The country whose helplines are shown when the browser's language names no region.
const DEFAULT_COUNTRY = {
  en: "GB",
  es: "ES",
  fr: "FR",
  de: "DE",
  it: "IT",
  pt: "PT",
  pl: "PL",
  hi: "IN",
};
const LANG_KEY = "dignity.lang";
const COUNTRY_KEY = "dignity.country";

let lang = "en";
let messages = {};
let english = {};
let englishLoaded = false;

function stored(key) {
  try {
    return window.localStorage.getItem(key);
  } catch {
    return null; // storage turned off: the choice lasts for this page only
  }
}

function store(key, value) {
  try {
    window.localStorage.setItem(key, value);
  } catch {
    // as above
  }
}

function preferred() {
  return navigator.languages && navigator.languages.length
    ? navigator.languages
    : [navigator.language || "en"];
}

/** The language to show: ?lang=, the stored choice, the browser's languages, English. */
export function pickLanguage() {
  const asked = new URLSearchParams(window.location.search).get("lang");
  for (const tag of [asked, stored(LANG_KEY), ...preferred()]) {
    const base = (tag || "").toLowerCase().split("-")[0];
    if (Object.hasOwn(LANGUAGES, base)) return base;
  }
  return "en";
}

/** The country for helplines: the stored choice, the region of a browser language in the
 * chosen language (es-MX: MX), the first browser language with a region, the default. */
export function pickCountry(known) {
  const choice = stored(COUNTRY_KEY);
  if (choice && known.includes(choice)) return choice;
  const regions = preferred()
    .map((tag) => tag.split("-"))
    .filter((parts) => parts.length > 1 && /^[A-Za-z]{2}$/.test(parts[parts.length - 1]));
  const same = regions.find((parts) => parts[0].toLowerCase() === lang);
  for (const parts of same ? [same, ...regions] : regions) {
    const region = parts[parts.length - 1].toUpperCase();
    if (known.includes(region)) return region;
  }
  return DEFAULT_COUNTRY[lang];
}

export function rememberCountry(country) {
  store(COUNTRY_KEY, country);
}

export function currentLanguage() {
  return lang;
}

async function catalogue(code) {
  const response = await fetch(`/i18n/${code}.json`, { credentials: "omit" });
  if (!response.ok) throw new Error(`no catalogue for ${code}`);
  return response.json();
}

/** Load `code`'s catalogue (and English, for the pages' own defaults) and translate the page. */
export async function setLanguage(code) {
  if (!englishLoaded) {
    english = await catalogue("en");
    englishLoaded = true;
  }
  messages = code === "en" ? english : await catalogue(code);
  lang = code;
  document.documentElement.lang = code;
  translate(document);
  document.dispatchEvent(new CustomEvent("languagechange", { detail: code }));
}

/** The message `key` in the current language, {placeholders} filled from `params`; a plural
 * message picks its form by `params.n`. */
export function t(key, params = {}) {
  let message = Object.hasOwn(messages, key) ? messages[key] : english[key];
  if (message === undefined) return key;
  if (typeof message === "object") {
    const form = new Intl.PluralRules(lang).select(Number(params.n ?? 0));
    message = message[form] ?? message.other;
  }
  return message.replace(/\{(\w+)\}/g, (whole, name) =>
    Object.hasOwn(params, name) ? String(params[name]) : whole,
  );
}

/** Show message `key` in `element` (plain text) and remember it for a change of language. */
export function say(element, key, params = {}) {
  if (!key) {
    delete element.dataset.i18nSaid;
    element.textContent = "";
    return;
  }
  element.dataset.i18nSaid = JSON.stringify([key, params]);
  element.textContent = t(key, params);
}

const ALLOWED = new Set(["STRONG", "EM", "CODE", "A", "BR"]);

function rebuild(node) {
  if (node.nodeType === Node.TEXT_NODE) return document.createTextNode(node.textContent);
  if (node.nodeType !== Node.ELEMENT_NODE) return document.createTextNode("");
  if (!ALLOWED.has(node.tagName)) return document.createTextNode(node.textContent);
  const out = document.createElement(node.tagName.toLowerCase());
  if (node.tagName === "A") {
    const href = node.getAttribute("href") || "";
    if (/^(https:\/\/|\/)/.test(href)) out.setAttribute("href", href);
    if (href.startsWith("https://")) {
      out.rel = "noopener noreferrer";
      out.target = "_blank";
    }
    const id = node.getAttribute("id");
    if (id && /^[a-z-]+$/.test(id)) out.id = id;
  }
  out.append(...Array.from(node.childNodes, rebuild));
  return out;
}

/** Set `element`'s content to `markup` (a catalogue message with a few inline tags). */
export function setRich(element, markup) {
  const doc = new DOMParser().parseFromString(`<body>${markup}</body>`, "text/html");
  element.replaceChildren(...Array.from(doc.body.childNodes, rebuild));
}

/** Translate every marked element under `root`. */
export function translate(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-html]")) setRich(el, t(el.dataset.i18nHtml));
  for (const el of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of el.dataset.i18nAttr.split(";")) {
      const [attr, key] = pair.split(":");
      el.setAttribute(attr.trim(), t(key.trim()));
    }
  }
  for (const el of root.querySelectorAll("[data-i18n-said]")) {
    const [key, params] = JSON.parse(el.dataset.i18nSaid);
    el.textContent = t(key, params);
  }
}

/** A wait of `seconds` in words ("12 minutes", "12 Minuten", "12 minut"), rounded up. */
export function duration(seconds) {
  const s = Math.max(1, Math.ceil(Number(seconds) || 0));
  const [value, unit] =
    s < 60
      ? [s, "second"]
      : s < 7200
        ? [Math.ceil(s / 60), "minute"]
        : [Math.ceil(s / 3600), "hour"];
  return new Intl.NumberFormat(lang, { style: "unit", unit, unitDisplay: "long" }).format(value);
}

/** The local clock time `seconds` from now, for "until about 14:05". */
export function clockIn(seconds) {
  const at = new Date(Date.now() + Math.max(0, Number(seconds) || 0) * 1000);
  return at.toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" });
}

/** The language switcher: a labelled <select> appended to `container`; a choice is kept in
 * localStorage and in the address (?lang=) and translates the page in place, so nothing the
 * person already did on the page (chosen pictures, typed fields) is lost. */
export function addSwitcher(container) {
  const label = document.createElement("label");
  label.htmlFor = "language";
  label.dataset.i18n = "lang.label";
  label.textContent = t("lang.label");
  const select = document.createElement("select");
  select.id = "language";
  select.translate = false; // each language's own name, the same on every page
  for (const [code, name] of Object.entries(LANGUAGES)) {
    const option = document.createElement("option");
    option.value = code;
    option.lang = code;
    option.textContent = name;
    select.append(option);
  }
  select.value = lang;
  select.addEventListener("change", async () => {
    store(LANG_KEY, select.value);
    const url = new URL(window.location.href);
    url.searchParams.set("lang", select.value);
    window.history.replaceState(null, "", url);
    await setLanguage(select.value);
  });
  const box = document.createElement("div");
  box.className = "language";
  box.append(label, " ", select);
  container.append(box);
  return select;
}

/** Pick the language, translate the page and add the switcher to `container`. */
export async function startI18n(container) {
  await setLanguage(pickLanguage());
  addSwitcher(container);
}

/** Helplines for `country` from /i18n/helplines.json, as a list under `container`, with a
 * country selector (country names in the page's language, from the browser's own data). */
export async function showHelplines(container) {
  const response = await fetch("/i18n/helplines.json", { credentials: "omit" });
  const data = await response.json();
  const codes = Object.keys(data.countries);
  let country = pickCountry(codes);
  const regionName = () => new Intl.DisplayNames([lang], { type: "region" });
  const languageName = () => new Intl.DisplayNames([lang], { type: "language" });

  const label = document.createElement("label");
  label.htmlFor = "helpline-country";
  label.dataset.i18n = "help.country";
  const select = document.createElement("select");
  select.id = "helpline-country";
  const list = document.createElement("ul");
  list.className = "helplines";
  list.id = "helplines";

  const entry = (line) => {
    const li = document.createElement("li");
    li.dataset.country = line.country || "";
    const name = document.createElement("strong");
    name.translate = false; // an organisation's own name
    name.textContent = line.name;
    li.append(name);
    if (line.for) {
      const who = document.createElement("span");
      say(who, `help.for.${line.for}`);
      li.append(" (", who, ")");
    }
    const how = document.createElement("div");
    if (line.phone) {
      const tel = document.createElement("a");
      tel.href = `tel:${line.phone.replace(/[^0-9+]/g, "")}`;
      tel.textContent = line.phone;
      tel.translate = false;
      how.append(tel, " · ");
    }
    const web = document.createElement("a");
    web.href = line.url;
    web.rel = "noopener noreferrer";
    web.target = "_blank";
    web.translate = false;
    web.textContent = line.url.replace(/^https:\/\//, "").replace(/\/$/, "");
    how.append(web);
    const spoken = document.createElement("div");
    spoken.className = "help";
    const names = languageName();
    say(spoken, "help.languages", {
      languages: line.languages.map((code) => names.of(code)).join(", "),
    });
    li.append(how, spoken);
    return li;
  };

  const render = () => {
    label.textContent = t("help.country");
    const names = regionName();
    const options = codes
      .map((code) => [code, names.of(code)])
      .sort((a, b) => a[1].localeCompare(b[1], lang));
    select.replaceChildren(
      ...options.map(([code, name]) => {
        const option = document.createElement("option");
        option.value = code;
        option.textContent = name;
        return option;
      }),
    );
    select.value = country;
    list.replaceChildren(
      ...data.countries[country].map((line) => entry({ ...line, country })),
      ...data.everywhere.map((line) => entry(line)),
    );
  };
  select.addEventListener("change", () => {
    country = select.value;
    rememberCountry(country);
    render();
  });
  document.addEventListener("languagechange", render);
  container.append(label, " ", select, list);
  render();
}
