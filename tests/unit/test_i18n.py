"""The pages' translation catalogues and the helpline list, checked as data.

Every catalogue has exactly English's keys; each message has the same ``{placeholders}`` and
the same inline tags (links keep their targets) as the English one; plural messages give every
CLDR plural category their language uses for whole numbers (from Babel's CLDR data, which the
browser's ``Intl.PluralRules`` also follows). The helpline file covers the countries of every
catalogue's language, and each entry has a source and a check date.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date
from typing import Any

import pytest
from babel import Locale

from dignity.i18n import LANGUAGES, catalogue_bytes, helplines_bytes

PLACEHOLDER = re.compile(r"\{(\w+)\}")
TAG = re.compile(r"<(/?[a-z]+)(?:\s[^>]*)?>")
HREF = re.compile(r'href="([^"]*)"')
# The countries the issue asks for: where the catalogues' languages are spoken.
COUNTRIES = {
    "US", "GB", "IE", "AU", "CA", "IN", "ES", "MX", "AR", "FR", "BE", "DE", "AT", "CH", "BR",
    "PT", "IT", "PL",
}  # fmt: skip
WHO = {"adults", "young", "everyone", "women", "emergency"}


def _catalogue(lang: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(catalogue_bytes(lang))
    return data


def _forms(message: Any) -> list[str]:
    return list(message.values()) if isinstance(message, dict) else [message]


def _shape(message: Any) -> tuple[set[str], Counter[str], list[str]]:
    """Placeholders, tags and link targets of every form of a message."""
    names: set[str] = set()
    tags: Counter[str] = Counter()
    links: list[str] = []
    for form in _forms(message):
        names |= set(PLACEHOLDER.findall(form))
        tags |= Counter(TAG.findall(form))
        links += HREF.findall(form)
    return names, tags, sorted(set(links))


def _integer_categories(lang: str) -> set[str]:
    rule = Locale.parse(lang).plural_form
    return {rule(n) for n in range(0, 1001)}


ENGLISH = _catalogue("en")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_catalogue_has_every_key_and_the_same_placeholders(lang: str) -> None:
    catalogue = _catalogue(lang)
    assert set(catalogue) == set(ENGLISH), {
        "missing": sorted(set(ENGLISH) - set(catalogue)),
        "extra": sorted(set(catalogue) - set(ENGLISH)),
    }
    for key, english in ENGLISH.items():
        message = catalogue[key]
        assert isinstance(message, dict) == isinstance(english, dict), key
        assert all(form.strip() for form in _forms(message)), key
        assert _shape(message) == _shape(english), (key, _shape(message), _shape(english))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_plural_messages_give_every_category_their_language_uses(lang: str) -> None:
    needed = _integer_categories(lang)
    allowed = set(Locale.parse(lang).plural_form.tags) | {"other"}
    for key, message in _catalogue(lang).items():
        if isinstance(message, dict):
            assert "other" in message, key
            assert needed <= set(message), (key, needed - set(message))
            assert set(message) <= allowed, (key, set(message) - allowed)


def test_polish_needs_three_forms() -> None:
    # The check above is only as good as Babel's data: Polish must need one, few and many.
    assert {"one", "few", "many"} <= _integer_categories("pl")


@pytest.mark.parametrize("lang", [lang for lang in LANGUAGES if lang != "en"])
def test_catalogue_is_translated(lang: str) -> None:
    """Most messages differ from English (the rest are names, codes and formats)."""
    catalogue = _catalogue(lang)
    same = [k for k, v in ENGLISH.items() if catalogue[k] == v and PLACEHOLDER.sub("", str(v))]
    allowed = {
        "portal.pin",
        "portal.item.video",
        "intake.ai.real",
        "status.due",
        "field.signature_name.short",
    }
    assert set(same) <= allowed, sorted(set(same) - allowed)


def test_helplines_cover_every_language_country_with_sources() -> None:
    data = json.loads(helplines_bytes())
    assert set(data["countries"]) >= COUNTRIES, COUNTRIES - set(data["countries"])
    entries = [e for lines in data["countries"].values() for e in lines] + data["everywhere"]
    for entry in entries:
        assert set(entry) <= {"name", "phone", "url", "languages", "for", "source", "checked"}
        assert entry["name"] and entry["url"].startswith("https://"), entry
        assert entry["source"].startswith("https://"), entry
        assert date.fromisoformat(entry["checked"]) <= date.today(), entry
        assert entry["for"] in WHO, entry
        assert entry["languages"] and all(re.fullmatch(r"[a-z]{2}", x) for x in entry["languages"])
        if "phone" in entry:
            assert re.fullmatch(r"[0-9][0-9 -]{1,18}[0-9]", entry["phone"]), entry
    for country, lines in data["countries"].items():
        assert re.fullmatch(r"[A-Z]{2}", country) and lines, country
