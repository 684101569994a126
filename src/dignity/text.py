"""Free text in and out of storage: checks for text that will be stored (valid Unicode, no NUL),
and reading JSON back out of text that may be malformed.

JSON lets a client send lone surrogates ("\\ud800") and NUL ("\\u0000"). SQLite stores either,
but the row then cannot be sent back as UTF-8 JSON, and PostgreSQL refuses NUL outright; both
would surface later as server errors. Refusing them at the door keeps every stored string
printable and portable. Going the other way, JSON kept as text (a column written by an older
version, a metadata field in an uploaded image) is read with :func:`parse_json`, which treats
anything unreadable as absent instead of failing the request that wanted it.
"""

from __future__ import annotations

import json
from typing import Any

from dignity.errors import error_class


def clean_text(value: str, what: str, *, code: str = "request.bad_text") -> str:
    """``value`` unchanged if it is storable text, else the refusal that owns ``code``
    (``bank.bad_text``, ``webhook.bad_url``, ...), naming ``what``."""
    refused = error_class(code)
    if "\x00" in value:
        raise refused(f"{what} contains a NUL character", code=code, field=what)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise refused(
            f"{what} is not valid Unicode (lone surrogate)", code=code, field=what
        ) from exc
    return value


def parse_json(text: str | None, *, max_chars: int | None = None) -> Any:
    """The value ``text`` holds as JSON (any JSON type, hence ``Any``), or None when it is
    empty, longer than ``max_chars``, malformed, or nested too deeply to parse."""
    if not text or (max_chars is not None and len(text) > max_chars):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # malformed, truncated, too deep, huge integers
        return None


def json_object(text: str | None) -> dict[str, Any]:
    """The JSON object kept in ``text``; ``{}`` for none, unreadable text or another JSON type."""
    value = parse_json(text)
    return value if isinstance(value, dict) else {}
