"""The validity checker, table-driven: what each change to a complete request makes missing
under the TAKE IT DOWN Act and under DSA Art. 16(2), and which malformed inputs are refused."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from dignity.settings import Settings
from dignity.takedown.validity import (
    MAX_ITEMS,
    RequestForm,
    TakedownError,
    check,
    normalize,
    resolve,
)

PATTERN = r"https://pics\.example/p/(?P<content_id>[A-Za-z0-9]+)"
SETTINGS = Settings(content_url_pattern=PATTERN, platform_name="Pics")
NO_PATTERN = Settings(content_url_pattern=None)

COMPLETE = RequestForm(
    requester_kind="self",
    requester_name="Alex Example",
    requester_contact="alex@example.org",
    content=("https://pics.example/p/abc123",),
    description="An intimate picture of me that was posted without my consent.",
    good_faith=True,
    signature_name="Alex Example",
    signature_confirmed=True,
    ai_made="ai",
    jurisdiction="EU",
)

# (case id, changes to COMPLETE, settings, missing under TAKE IT DOWN, missing under DSA, valid)
CASES: list[tuple[str, dict[str, Any], Settings, set[str], set[str], bool]] = [
    ("complete", {}, SETTINGS, set(), set(), True),
    ("no signature", {"signature_name": ""}, SETTINGS, {"signature"}, set(), True),
    (
        "signature not confirmed",
        {"signature_confirmed": False},
        SETTINGS,
        {"signature_confirmed"},
        set(),
        True,
    ),
    ("no good faith", {"good_faith": False}, SETTINGS, {"good_faith"}, {"accuracy"}, False),
    ("no content", {"content": ()}, SETTINGS, {"location"}, {"exact_location"}, False),
    ("content id only", {"content": ("abc123",)}, SETTINGS, set(), set(), True),
    (
        "one url of another site among good lines",
        {"content": ("abc123", "https://elsewhere.example/p/abc123")},
        SETTINGS,
        set(),
        set(),
        True,
    ),
    (
        "url of another site",
        {"content": ("https://elsewhere.example/p/abc123",)},
        SETTINGS,
        {"location"},
        {"exact_location"},
        False,
    ),
    (
        "any url without a pattern",
        {"content": ("https://elsewhere.example/p/abc123",)},
        NO_PATTERN,
        set(),
        set(),
        True,
    ),
    ("no name", {"requester_name": ""}, SETTINGS, set(), {"name"}, True),
    (
        "phone instead of email",
        {"requester_contact": "+1 (555) 010-9999"},
        SETTINGS,
        set(),
        {"email"},
        True,
    ),
    (
        "no contact",
        {"requester_contact": ""},
        SETTINGS,
        {"contact"},
        {"email"},
        False,
    ),
    (
        "unreachable contact",
        {"requester_contact": "ask around"},
        SETTINGS,
        {"contact"},
        {"email"},
        False,
    ),
    ("short explanation", {"description": "it's me"}, SETTINGS, set(), {"explanation"}, True),
    (
        "representative without authority",
        {"requester_kind": "representative"},
        SETTINGS,
        {"authority"},
        {"authority"},
        False,
    ),
    (
        "representative with authority",
        {
            "requester_kind": "representative",
            "authority_statement": "I am her lawyer, with her written authorisation.",
        },
        SETTINGS,
        set(),
        set(),
        True,
    ),
    (
        "only DSA complete",
        {"signature_name": "", "signature_confirmed": False},
        SETTINGS,
        {"signature", "signature_confirmed"},
        set(),
        True,
    ),
    (
        "only TAKE IT DOWN complete",
        {"content": ("abc123",), "description": "", "requester_name": ""},
        SETTINGS,
        set(),
        {"explanation", "name"},
        True,
    ),
    (
        "empty form",
        {
            "requester_name": "",
            "requester_contact": "",
            "content": (),
            "description": "",
            "good_faith": False,
            "signature_name": "",
            "signature_confirmed": False,
        },
        SETTINGS,
        {"signature", "signature_confirmed", "location", "good_faith", "contact"},
        {"explanation", "exact_location", "name", "email", "accuracy"},
        False,
    ),
]


@pytest.mark.parametrize(
    ("changes", "settings", "tid", "dsa", "valid"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_missing_elements(
    changes: dict[str, Any], settings: Settings, tid: set[str], dsa: set[str], valid: bool
) -> None:
    validity = check(normalize(replace(COMPLETE, **changes)), settings)
    assert set(validity.take_it_down.keys()) == tid
    assert set(validity.dsa_art16.keys()) == dsa
    assert validity.valid is valid
    assert validity.take_it_down.valid is (not tid)
    assert validity.dsa_art16.valid is (not dsa)
    for m in validity.missing:  # every message is a short sentence a person can act on
        assert m.message.endswith(".") and 10 < len(m.message) < 300, m
        assert m.field in {
            "requester_name",
            "requester_contact",
            "authority_statement",
            "content",
            "description",
            "good_faith",
            "signature_name",
            "signature_confirmed",
        }
    assert {m.key for m in validity.missing} == tid | dsa


def test_round_trip_and_messages_name_the_platform() -> None:
    validity = check(
        normalize(replace(COMPLETE, content=("https://elsewhere.example/x",))), SETTINGS
    )
    data = validity.to_dict()
    assert data["valid"] is False
    assert data["take_it_down"]["missing"][0]["key"] == "location"
    assert "Pics" in data["take_it_down"]["missing"][0]["message"]
    assert "https://elsewhere.example/x" in data["take_it_down"]["missing"][0]["message"]
    [problem] = data["item_problems"]
    assert problem["ref"] == "https://elsewhere.example/x" and "Pics" in problem["message"]
    from dignity.takedown.validity import Validity

    assert Validity.from_dict(data) == validity


@pytest.mark.parametrize(
    ("ref", "is_url", "content_id"),
    [
        ("https://pics.example/p/abc123", True, "abc123"),
        ("https://pics.example/p/abc123?utm=x", True, "abc123"),
        ("https://elsewhere.example/p/abc123", True, None),
        ("abc123", False, "abc123"),
        ("post:998", False, "post:998"),
    ],
)
def test_resolve(ref: str, is_url: bool, content_id: str | None) -> None:
    got = resolve(ref, SETTINGS)
    assert (got.is_url, got.content_id) == (is_url, content_id)


def test_normalize_trims_dedups_and_canonicalises() -> None:
    form = normalize(
        replace(
            COMPLETE,
            requester_kind="Representative",
            ai_made="AI",
            jurisdiction="uk",
            requester_name="  Alex  ",
            content=("", "  abc  ", "abc", "www.pics.example/p/x1", ""),
        )
    )
    assert form.requester_kind == "representative"
    assert form.ai_made == "ai"
    assert form.jurisdiction == "UK"
    assert form.requester_name == "Alex"
    assert form.content == ("abc", "https://www.pics.example/p/x1")
    assert normalize(replace(COMPLETE, jurisdiction="")).jurisdiction == ""
    # A list from JSON becomes a tuple: the form stays hashable and frozen.
    assert RequestForm(content=["a", "b"]).content == ("a", "b")  # type: ignore[arg-type]


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("kind", {"requester_kind": "friend"}, "takedown.invalid"),
    ("ai", {"ai_made": "maybe"}, "takedown.invalid"),
    ("jurisdiction", {"jurisdiction": "Mars"}, "takedown.invalid"),
    ("name too long", {"requester_name": "x" * 201}, "takedown.too_long"),
    ("description too long", {"description": "x" * 8001}, "takedown.too_long"),
    ("control characters", {"requester_name": "a\x00b"}, "takedown.invalid"),
    ("too many items", {"content": tuple(f"id{i}" for i in range(51))}, "takedown.too_many_items"),
    ("spaces in a line", {"content": ("see https://pics.example/p/1",)}, "takedown.bad_content"),
    ("other scheme", {"content": ("ftp://pics.example/p/1",)}, "takedown.bad_content"),
    ("huge url", {"content": ("https://pics.example/" + "a" * 2100,)}, "takedown.bad_content"),
    ("good faith not a bool", {"good_faith": "yes"}, "takedown.invalid"),
]


@pytest.mark.parametrize(("changes", "code"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_malformed_input_is_refused(changes: dict[str, Any], code: str) -> None:
    with pytest.raises(TakedownError) as info:
        normalize(replace(COMPLETE, **changes))
    assert info.value.code == code


def test_limits() -> None:
    fifty = tuple(f"id{i}" for i in range(MAX_ITEMS))
    assert len(normalize(replace(COMPLETE, content=fifty)).content) == MAX_ITEMS
    # Duplicates do not count towards the limit.
    assert len(normalize(replace(COMPLETE, content=fifty + fifty[:5])).content) == MAX_ITEMS
    assert normalize(replace(COMPLETE, description="x" * 8000)).description == "x" * 8000


def test_unknown_field_is_refused() -> None:
    with pytest.raises(TakedownError) as info:
        RequestForm.from_mapping({"requester_name": "A", "password": "x"})
    assert info.value.code == "takedown.unknown_field"


def test_bad_pattern_setting() -> None:
    bad = Settings(content_url_pattern=r"https://x/(?P<id>\w+)")
    with pytest.raises(TakedownError) as info:
        check(normalize(COMPLETE), bad)
    assert info.value.code == "takedown.bad_setting"
