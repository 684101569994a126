"""The pages' translations and the helpline list: data files, read here and served as JSON.

``catalogues/<lang>.json`` is one flat catalogue per language for the victim portal and the
takedown intake and status pages (message key -> text, or -> {CLDR plural category -> text},
``{name}`` placeholders); English (``en``) is the source every other catalogue must match key
for key and placeholder for placeholder (tests/unit/test_i18n.py). The pages translate
themselves in the browser (``web/static/i18n.js``): most of their text is written by scripts
(states, errors, counts), and the portal must keep working on the device once loaded, so a
catalogue is fetched once and applied there; the browser's ``Intl.PluralRules`` and
``Intl.NumberFormat`` supply the plural rules and unit words the catalogues rely on.
``helplines.json`` lists helplines per country with each entry's source and check date
(docs/helplines.md says how it is kept).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

__all__ = ["LANGUAGES", "catalogue_bytes", "helplines_bytes"]

# The languages every catalogue exists for; English first (the source).
LANGUAGES = ("en", "es", "fr", "de", "it", "pt", "pl", "hi")


@cache
def catalogue_bytes(lang: str) -> bytes:
    """The catalogue of ``lang`` (one of :data:`LANGUAGES`) as stored: UTF-8 JSON."""
    if lang not in LANGUAGES:
        raise KeyError(lang)
    return resources.files("dignity.i18n").joinpath("catalogues", f"{lang}.json").read_bytes()


@cache
def helplines_bytes() -> bytes:
    """The helpline list as stored: UTF-8 JSON."""
    return resources.files("dignity.i18n").joinpath("helplines.json").read_bytes()
