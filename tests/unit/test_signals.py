"""Hash signal validation and hex round-trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dignity.errors import HashError
from dignity.hashing import hex_to_bytes, normalize_hash, pdq_distance


@given(st.binary(min_size=32, max_size=32))
def test_pdq_hex_round_trip(raw: bytes) -> None:
    sig, value = normalize_hash("PDQ", raw.hex().upper())
    assert sig == "pdq" and value == raw.hex()
    assert hex_to_bytes(value) == raw


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_distance_is_popcount_of_xor(a: bytes, b: bytes) -> None:
    expected = sum(bin(x ^ y).count("1") for x, y in zip(a, b, strict=True))
    assert pdq_distance(a.hex(), b.hex()) == expected


@pytest.mark.parametrize(
    ("signal", "value", "code"),
    [
        ("pdq", "a" * 63, "hash.malformed"),
        ("pdq", "a" * 65, "hash.malformed"),
        ("pdq", "g" * 64, "hash.malformed"),
        ("md5", "a" * 64, "hash.malformed"),
        ("sha256", "", "hash.malformed"),
        ("photodna", "a" * 64, "hash.unknown_signal"),
    ],
)
def test_bad_hashes(signal: str, value: str, code: str) -> None:
    with pytest.raises(HashError) as e:
        normalize_hash(signal, value)
    assert e.value.code == code


def test_whitespace_is_trimmed() -> None:
    assert normalize_hash(" md5 ", " " + "A" * 32 + "\n") == ("md5", "a" * 32)
