"""Policy: the shipped rules decide as documented, conditions mean what they say, and every
mistake in a policy file is reported with its file, line and rule.

Classifier output is injected as facts here: the positive path of nudity is tested without
any explicit image."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dignity.matching.engine import Match, MatchOutcome
from dignity.policy import (
    BUILTIN_NAMESPACES,
    PolicyError,
    decide,
    default_policy,
    fact_checker,
    facts_of,
    parse_condition,
    parse_policy,
)
from dignity.scanning import read_policy

KNOWN = fact_checker(BUILTIN_NAMESPACES)
AI = [{"source": "c2pa", "detail": "C2PA manifest declares trainedAlgorithmicMedia"}]


def outcome(*purposes: str, allow: bool = False) -> MatchOutcome:
    matches = [Match(f"bank-{p}", p, i + 1, "pdq", 4) for i, p in enumerate(purposes)]
    allowed = [Match("cleared", "allow", 99, "pdq", 2)] if allow else []
    return MatchOutcome(
        matches=[] if allow else matches, suppressed=matches if allow else [], allowed_by=allowed
    )


def signals(
    nudity: float | None = None, evidence: list[dict[str, str]] | None = None, **more: Any
) -> dict[str, Any]:
    return {"ai_evidence": evidence or [], "nudity": nudity, **more}


def test_default_policy_is_valid_and_ordered() -> None:
    p = default_policy()
    ids = [r.id for r in p.rules]
    assert ids[0] == "allow-bank" and {"bank-block", "bank-review", "ai-nudity", "ai-label"} <= set(
        ids
    )
    assert all(r.line > 0 for r in p.rules)


@pytest.mark.parametrize(
    ("case", "purposes", "sig", "allow", "action", "priority", "rules"),
    [
        ("nothing known", (), signals(0.01), False, "allow", 0, ["default"]),
        ("block bank", ("block",), signals(0.01), False, "block", 100, ["bank-block"]),
        ("review bank", ("review",), signals(), False, "review", 75, ["bank-review"]),
        (
            "both banks: block wins",
            ("review", "block"),
            signals(),
            False,
            "block",
            100,
            ["bank-block"],
        ),
        ("nudity + AI", (), signals(0.93, AI), False, "review", 100, ["ai-nudity"]),
        ("AI alone", (), signals(0.02, AI), False, "label", 25, ["ai-label"]),
        ("nudity alone is allowed by default", (), signals(0.99), False, "allow", 0, ["default"]),
        (
            "nudity just under the threshold",
            (),
            signals(0.7999, AI),
            False,
            "label",
            25,
            ["ai-label"],
        ),
        (
            "allow bank overrides block",
            ("block",),
            signals(0.99, AI),
            True,
            "allow",
            0,
            ["allow-bank"],
        ),
        (
            "derivative",
            (),
            signals(0.1, derivative_of={"source_id": 3}),
            False,
            "review",
            75,
            ["derivative"],
        ),
        (
            "derivative + nudity",
            (),
            signals(0.7, derivative_of={"source_id": 3}),
            False,
            "review",
            100,
            ["derivative", "derivative-nudity"],
        ),
        (
            "nudity unknown (classifier off)",
            (),
            signals(None, AI),
            False,
            "label",
            25,
            ["ai-label"],
        ),
    ],
)
def test_default_policy_decisions(
    case: str,
    purposes: tuple[str, ...],
    sig: dict[str, Any],
    allow: bool,
    action: str,
    priority: int,
    rules: list[str],
) -> None:
    d = decide(outcome(*purposes, allow=allow), sig)
    assert (d.action, d.priority, d.rules) == (action, priority, rules), case
    out = d.to_dict()
    assert out["action"] == action and out["statement"]["redress"]
    for reason in out["reasons"]:
        assert set(reason) == {"rule", "signal", "value"}


def test_reasons_carry_the_facts_relied_on() -> None:
    d = decide(outcome(), signals(0.93, AI))
    by_signal = {r.signal: r.value for r in d.reasons if r.rule == "ai-nudity"}
    assert by_signal == {"nudity": 0.93, "ai_evidence": AI}
    # The AI label survives the review, and its reason is listed too.
    assert d.labels == ["AI-generated"] and any(r.rule == "ai-label" for r in d.reasons)
    block = decide(outcome("block"), signals())
    (reason,) = block.reasons
    assert reason.rule == "bank-block" and reason.value[0]["bank"] == "bank-block"


def test_statement_of_reasons_has_the_dsa_fields() -> None:
    review = decide(outcome(), signals(0.93, AI)).statement
    assert review["restriction"] and review["facts"] and review["redress"]
    assert review["automated_detection"] is True and review["automated_decision"] is False
    assert "classifier" in review["automated_means"]
    assert review["contractual_ground"]
    block = decide(outcome("block"), signals()).statement
    assert block["automated_decision"] is True and "TAKE IT DOWN" in block["legal_ground"]
    label = decide(outcome(), signals(0.0, AI)).statement
    assert "AI" in label["restriction"] and "AI Act" in label["legal_ground"]
    allow = decide(outcome(), signals()).statement
    assert allow["restriction"] is None and allow["facts"] == ["No rule of the policy applied."]


def test_facts_flatten_plugin_reports() -> None:
    f = facts_of(
        outcome("review"), signals(0.5, AI, c2pa={"state": "valid", "digital_source_types": ["x"]})
    )
    assert f["c2pa.state"] == "valid" and f["c2pa.digital_source_types"] == ["x"]
    assert f["ai_evidence.c2pa"] == AI and f["ai_evidence.xmp"] == []
    assert f["ai_evidence.sources"] == ["c2pa"] and f["match.block"] == []
    assert f["match.review"][0]["entry_id"] == 1 and f["match.best_distance"] == 4


GOOD = """
[policy]
name = "custom"
version = "7"

[[rule]]
id = "valid-c2pa-ai"
when = ["c2pa.state == 'valid'", "c2pa.digital_source_types contains 'trainedAlgorithmicMedia'"]
action = "review"
priority = 60
reason = "signed AI"

[[rule]]
id = "gen"
any = ["generator.generator in ['NovelAI', 'ComfyUI']", "watermark.found"]
action = "label"
label = "Made with AI"
"""


def test_custom_policy_conditions() -> None:
    p = parse_policy(GOOD, "custom.toml", KNOWN)
    c2pa = {"state": "valid", "digital_source_types": ["trainedAlgorithmicMedia"]}
    d = decide(outcome(), signals(c2pa=c2pa), p)
    assert (d.action, d.priority, d.policy) == ("review", 60, "custom 7")
    assert decide(outcome(), signals(c2pa={**c2pa, "state": "invalid"}), p).action == "allow"
    g = decide(outcome(), signals(generator={"generator": "ComfyUI"}), p)
    assert g.action == "label" and g.labels == ["Made with AI"]
    assert [r.signal for r in g.reasons] == ["generator.generator"]
    w = decide(outcome(), signals(watermark={"found": "sdxl"}), p)
    assert w.action == "label" and w.reasons[0].value == "sdxl"


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.toml", KNOWN)
    return info.value.problems


def test_every_problem_is_reported_with_file_line_and_rule() -> None:
    text = """[policy]
name = "bad"

[[rule]]
id = "one"
when = ["nudty >= 0.8"]
action = "review"

[[rule]]
id = "two"
when = ["nudity >= high"]
action = "destroy"
priority = 500

[[rule]]
id = "one"
when = ["match.block"]
any = ["match.review"]
action = "label"
colour = "red"
"""
    found = problems(text)
    joined = "\n".join(found)
    assert "p.toml:4: rule 'one': unknown fact 'nudty'" in joined
    assert "p.toml:9: rule 'two': action must be one of" in joined
    assert "p.toml:9: rule 'two': priority must be" in joined
    assert "p.toml:9: rule 'two': 'nudity >= high'" in joined
    assert "p.toml:15: rule 'one': duplicate rule id" in joined
    assert "p.toml:15: rule 'one': give exactly one of 'when'" in joined
    assert "p.toml:15: rule 'one': unknown key 'colour'" in joined
    assert "p.toml:15: rule 'one': a label rule needs label" in joined


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("[[rule]\nid = 'x'", "TOML syntax error"),
        ("[policy]\nname = 'empty'\n", "at least one [[rule]]"),
        (
            "flavour = 1\n[[rule]]\nid='a'\nwhen=['match.block']\naction='block'",
            "unknown top-level",
        ),
        ("[[rule]]\nwhen=['match.block']\naction='block'", "every rule needs an id"),
        ("[[rule]]\nid='a'\nwhen=[]\naction='block'", "non-empty list"),
        ("[[rule]]\nid='a'\nwhen=['nudity >=']\naction='block'", "is not a value"),
        ("[[rule]]\nid='a'\nwhen=['c2pa.state in \"valid\"']\naction='block'", "needs a list"),
        ("[[rule]]\nid='a'\nwhen=['nudity > 1e999']\naction='block'", "needs a number"),
        ("[[rule]]\nid='a'\nwhen=['nudity > nan']\naction='block'", "is not a value"),
        ("[[rule]]\nid='a'\nwhen=['match.block']\naction='block'\nfinal='yes'", "final must"),
        ("[[rule]]\nid='a'\nwhen=['__import__(\"os\")']\naction='block'", "cannot read"),
        ("[[rule]]\nid='a'\nwhen=['nudity == __import__(\"os\")']\naction='block'", "is not a"),
    ],
)
def test_bad_policies(text: str, expect: str) -> None:
    assert any(expect in p for p in problems(text)), problems(text)


def test_policy_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text("[[rule]]\nid = 'a'\nwhen = ['nope']\naction = 'block'\n")
    with pytest.raises(PolicyError) as info:
        read_policy(path)
    assert info.value.problems == [f"{path}:1: rule 'a': unknown fact 'nope' in 'nope'"]
    with pytest.raises(PolicyError, match="cannot read"):
        read_policy(tmp_path / "missing.toml")
    (tmp_path / "latin1.toml").write_bytes(b"# caf\xe9\n")
    with pytest.raises(PolicyError, match="cannot read"):
        read_policy(tmp_path / "latin1.toml")


facts_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True),
    st.text(max_size=3),
    st.lists(st.integers(0, 3), max_size=3),
)


@given(value=facts_values, threshold=st.floats(-10, 10, allow_nan=False))
def test_comparisons_follow_numbers_and_never_match_missing_facts(
    value: Any, threshold: float
) -> None:
    for op, fn in ((">=", lambda a, b: a >= b), ("<", lambda a, b: a < b)):
        cond = parse_condition(f"nudity {op} {threshold!r}")
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        expect = (
            numeric
            and not (isinstance(value, float) and math.isnan(value))
            and fn(value, threshold)
        )
        assert cond.holds({"nudity": value}) is bool(expect)
        negated = parse_condition(f"not nudity {op} {threshold!r}")
        assert negated.holds({"nudity": value}) is (not expect)


@given(value=facts_values)
def test_truthiness_equality_and_membership(value: Any) -> None:
    assert parse_condition("x").holds({"x": value}) is bool(value)
    assert parse_condition("not x").holds({}) is True
    assert parse_condition("x == 2").holds({"x": value}) is (value is not None and value == 2)
    holds = parse_condition("x contains 1").holds({"x": value})
    assert holds is (
        isinstance(value, (list, str)) and 1 in value if isinstance(value, list) else False
    )
