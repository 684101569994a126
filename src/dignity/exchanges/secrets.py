"""Exchange credentials at rest: encrypted in the database with a key that lives elsewhere.

Credentials (API keys, passwords, app tokens) must reach every process that fetches, which
may be on another host sharing a PostgreSQL database, so they live in the ``exchanges`` table;
but a database dump or backup alone must not give them away, so each is stored as a Fernet token
(AES-128-CBC + HMAC-SHA256, from ``cryptography``). The key comes from the setting
``DIGNITY_EXCHANGE_SECRET_KEY`` when set (give every host the same one), otherwise from the file
``<data_dir>/exchange-secret.key``, created on first use readable by its owner only. Nothing
ever prints credentials back: listings say only whether they are set, and fetch errors are
scrubbed of them (:func:`redact`).
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from dignity.exchanges.base import ExchangeError
from dignity.settings import Settings

KEY_FILE = "exchange-secret.key"


def _key(settings: Settings, *, create: bool) -> bytes | None:
    configured = settings.exchange_secret_key
    if configured is not None:
        return configured.strip().encode()
    path = Path(settings.data_dir) / KEY_FILE
    if path.exists():
        return path.read_bytes().strip()
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    # O_EXCL: two processes racing to create the key must not each write their own.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
    return key


def _fernet(key: bytes) -> Fernet:
    try:
        return Fernet(key)
    except (ValueError, TypeError) as exc:
        raise ExchangeError(
            "the exchange secret key is not a Fernet key (32 url-safe base64-encoded bytes)",
            code="exchange.bad_secret",
        ) from exc


def encrypt(settings: Settings, plaintext: str) -> str:
    key = _key(settings, create=True)
    assert key is not None
    return _fernet(key).encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(settings: Settings, token: str, exchange: str) -> str:
    key = _key(settings, create=False)
    if key is None:
        raise ExchangeError(
            f"exchange {exchange!r} has stored credentials but there is no secret key "
            f"(set DIGNITY_EXCHANGE_SECRET_KEY or restore {KEY_FILE} in the data directory)",
            code="exchange.bad_secret",
            exchange=exchange,
        )
    try:
        return _fernet(key).decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken as exc:
        raise ExchangeError(
            f"cannot decrypt the credentials of exchange {exchange!r}: the secret key is not "
            "the one they were stored with; set them again with `dignity exchange update "
            f"{exchange} --credentials ...`",
            code="exchange.bad_secret",
            exchange=exchange,
        ) from exc


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (and its URL-encoded forms) replaced by ``***``."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}:
            text = text.replace(form, "***")
    return text
