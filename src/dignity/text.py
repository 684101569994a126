"""Checks for free text that will be stored: it must be valid Unicode and carry no NUL.

JSON lets a client send lone surrogates ("\\ud800") and NUL ("\\u0000"). SQLite stores either,
but the row then cannot be sent back as UTF-8 JSON, and PostgreSQL refuses NUL outright; both
would surface later as server errors. Refusing them at the door keeps every stored string
printable and portable.
"""

from __future__ import annotations

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
