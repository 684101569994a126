"""Case numbers and PINs: how they are made, written, normalised, stored and checked.

A case number is 12 characters of Crockford's base32 (digits and letters without I, L, O, U),
shown as ``K7QM-3XRT-9WHF``: 60 random bits, so nobody finds a case by trying numbers, yet it
reads aloud and copies by hand without confusing 0/O or 1/I/L (typing those is forgiven). The
PIN is 12 random digits, shown as ``4821-0937-5562`` (39.9 bits): digits because people write
them down and type them on phones under stress, and long enough that the stored hash resists an
offline search.

The PIN is stored only as scrypt(N=2^15, r=8, p=1, 16-byte salt, 32-byte key). Why scrypt and
these numbers: it is in the standard library (no native dependency), memory-hard (32 MiB per
guess, which is what makes GPU and ASIC search expensive, unlike PBKDF2), and these are the
parameters RFC 7914 and OWASP's password storage guidance name for interactive logins. One
check costs ~50-100 ms of one core here: a stolen database needs ~10^12 such guesses for a PIN
(thousands of core-years), while online guessing is stopped long before by the lockout. The
parameters are written into each stored hash, so they can be raised later without breaking old
cases. Checks compare with :func:`hmac.compare_digest`, and an unknown case number is checked
against a dummy hash so that the answer takes as long as for a real case.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
NUMBER_CHARS = 12
PIN_DIGITS = 12
SCRYPT_LOG2_N = 15
SCRYPT_R = 8
SCRYPT_P = 1
_KEY_BYTES = 32
_SALT_BYTES = 16
_MAXMEM = 128 * 1024 * 1024  # well above 128 * r * N = 32 MiB; the default 32 MiB is too tight
_NUMBER = re.compile(r"\A[0-9A-HJKMNP-TV-Z]{12}\Z")
# Crockford's decoding: what people mistype for what they meant.
_FORGIVE = str.maketrans({"O": "0", "I": "1", "L": "1"})


def new_number() -> str:
    """A fresh case number in normalised form (no dashes)."""
    return "".join(secrets.choice(CROCKFORD) for _ in range(NUMBER_CHARS))


def new_pin() -> str:
    """A fresh PIN in normalised form (digits only)."""
    return "".join(secrets.choice("0123456789") for _ in range(PIN_DIGITS))


def group(text: str) -> str:
    """``K7QM3XRT9WHF`` -> ``K7QM-3XRT-9WHF`` (how numbers and PINs are shown)."""
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def normalize_number(text: str) -> str | None:
    """A typed case number in stored form, or None when it cannot be one."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    cleaned = re.sub(r"[\s\-]", "", text).upper().translate(_FORGIVE)
    return cleaned if _NUMBER.match(cleaned) else None


def normalize_pin(text: str) -> str | None:
    """A typed PIN as digits only, or None when it cannot be one."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    cleaned = re.sub(r"[\s\-]", "", text)
    return (
        cleaned if len(cleaned) == PIN_DIGITS and cleaned.isascii() and cleaned.isdigit() else None
    )


def _scrypt(pin: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        pin.encode("ascii"), salt=salt, n=1 << log2_n, r=r, p=p, maxmem=_MAXMEM, dklen=_KEY_BYTES
    )


def hash_pin(pin: str) -> str:
    salt = secrets.token_bytes(_SALT_BYTES)
    key = _scrypt(pin, salt, SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_LOG2_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${key.hex()}"


# Checked against when the case number is unknown, so both answers cost one scrypt.
_DUMMY = hash_pin("0" * PIN_DIGITS)


def verify_pin(pin: str | None, stored: str | None) -> bool:
    """Whether ``pin`` is the PIN behind ``stored``; always costs one scrypt evaluation."""
    try:
        scheme, log2_n, r, p, salt_hex, key_hex = (stored or _DUMMY).split("$")
        if scheme != "scrypt":
            raise ValueError(scheme)
        want = bytes.fromhex(key_hex)
        got = _scrypt(pin or "", bytes.fromhex(salt_hex), int(log2_n), int(r), int(p))
    except ValueError:
        # A stored value we cannot read grants nothing; still spend the time.
        _scrypt(pin or "", b"\x00" * _SALT_BYTES, SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P)
        return False
    return hmac.compare_digest(got, want) and stored is not None and pin is not None
