"""Policy rules as data: parse and validate a TOML policy, then evaluate it against facts.

A policy is a list of rules. Each rule has conditions over named *facts* (``nudity >= 0.8``,
``match.block``, ``c2pa.state == 'valid'``), an action (``allow``, ``label``, ``review``,
``block``), a priority and the words a statement of reasons needs. Conditions are a deliberately
small language, not Python: one fact, optionally negated, optionally compared with one literal,
so that a policy can be read by the people it binds and checked before it is used. Everything
wrong with a file (TOML syntax, unknown keys, an unknown fact, a bad literal) is reported with
the file, the line and the rule id, all at once. Evaluation is pure: facts in, decision out.
"""

from __future__ import annotations

import ast
import math
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dignity.errors import BadRequest

ACTIONS: tuple[str, ...] = ("allow", "label", "review", "block")
SEVERITY = {action: i for i, action in enumerate(ACTIONS)}
PRIORITY_NAMES = {"none": 0, "low": 25, "normal": 50, "high": 75, "urgent": 100}

# What each action restricts, in the words of a statement of reasons (DSA Art. 17(3)(a)); a
# policy may replace any of them under [statement.restrictions].
DEFAULT_RESTRICTIONS = {
    "allow": "",
    "label": "The content is shown with a label saying it was made or altered with AI.",
    "review": "The content is withheld from public view until a person has reviewed it.",
    "block": "The content was not published (upload refused) and is kept off the platform.",
}

_OPS = ("==", "!=", ">=", "<=", ">", "<", "in", "contains")
_CONDITION = re.compile(
    r"""\A\s*(?P<neg>not\s+)?(?P<fact>[a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*)
        (?:\s*(?P<op>==|!=|>=|<=|>|<|\bin\b|\bcontains\b)\s*(?P<lit>.+?))?\s*\Z""",
    re.VERBOSE,
)
_RULE_ID = re.compile(r"\A[a-z0-9][a-z0-9_.-]{0,63}\Z")
_RULE_KEYS = {
    "id",
    "description",
    "when",
    "any",
    "action",
    "priority",
    "final",
    "label",
    "reason",
    "terms_ground",
    "legal_ground",
}
_TOP_KEYS = {"policy", "rule", "statement"}


class PolicyError(BadRequest):
    """A policy file that cannot be used; ``problems`` lists every ``file:line: message``."""

    codes = ("policy.invalid",)

    def __init__(self, problems: list[str], source: str) -> None:
        shown = "\n".join(problems)
        super().__init__(
            f"{source}: {len(problems)} problem(s) in the policy:\n{shown}",
            code="policy.invalid",
            problems=problems,
        )
        self.problems = problems


@dataclass(frozen=True)
class Condition:
    """``[not] fact [op literal]``; ``text`` is how the policy wrote it."""

    text: str
    fact: str
    negate: bool = False
    op: str | None = None
    literal: Any = None

    def holds(self, facts: Mapping[str, Any]) -> bool:
        result = self._test(facts.get(self.fact))
        return not result if self.negate else result

    def _test(self, value: Any) -> bool:
        if self.op is None:
            return bool(value)
        if value is None:
            return False
        lit = self.literal
        try:
            if self.op == "==":
                return bool(value == lit)
            if self.op == "!=":
                return bool(value != lit)
            if self.op == "in":
                return value in lit
            if self.op == "contains":
                return isinstance(value, (list, tuple, set, frozenset, str)) and lit in value
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return False
            return bool(_COMPARE[self.op](value, lit))
        except TypeError:  # a fact of an unexpected type never satisfies a comparison
            return False


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
}


@dataclass(frozen=True)
class Rule:
    id: str
    action: str
    priority: int
    conditions: tuple[Condition, ...]
    any_of: bool = False
    final: bool = False
    label: str = ""
    reason: str = ""
    terms_ground: str = ""
    legal_ground: str = ""
    description: str = ""
    line: int = 0

    def matches(self, facts: Mapping[str, Any]) -> list[Condition]:
        """The conditions that held, when the rule applies (all of them, or for ``any`` the
        ones that held); an empty list when it does not apply."""
        held = [c for c in self.conditions if c.holds(facts)]
        if self.any_of:
            return held
        return held if len(held) == len(self.conditions) else []


@dataclass(frozen=True)
class Policy:
    name: str
    version: str
    rules: tuple[Rule, ...]
    appeal: str = ""
    restrictions: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_RESTRICTIONS))
    source: str = "<policy>"


def parse_policy(text: str, source: str, known_fact: Callable[[str], bool]) -> Policy:
    """Parse and validate a policy; raise :class:`PolicyError` naming every problem.

    ``known_fact`` says whether a fact name exists (the core's facts plus those of the signal
    plug-ins in use), so that a misspelt fact fails here rather than silently never matching.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError([f"{source}: TOML syntax error: {exc}"], source) from exc
    problems: list[str] = []
    lines = _rule_lines(text)

    def problem(line: int, rule: str | None, message: str) -> None:
        where = f"{source}:{line}" if line else source
        problems.append(f"{where}: rule {rule!r}: {message}" if rule else f"{where}: {message}")

    for key in sorted(set(doc) - _TOP_KEYS):
        problem(0, None, f"unknown top-level key {key!r} (expected: policy, rule, statement)")
    meta = doc.get("policy", {})
    if not isinstance(meta, dict):
        problem(0, None, "[policy] must be a table")
        meta = {}
    statement = doc.get("statement", {})
    if not isinstance(statement, dict):
        problem(0, None, "[statement] must be a table")
        statement = {}
    restrictions = dict(DEFAULT_RESTRICTIONS)
    given = statement.get("restrictions", {})
    if isinstance(given, dict):
        for action, words in given.items():
            if action not in ACTIONS or not isinstance(words, str):
                problem(0, None, f"[statement.restrictions] {action!r} must be an action: text")
            else:
                restrictions[action] = words
    raw_rules = doc.get("rule", [])
    if not isinstance(raw_rules, list) or not raw_rules:
        problem(0, None, "a policy needs at least one [[rule]]")
        raw_rules = []
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_rules):
        line = lines[i] if i < len(lines) else 0
        rule = _parse_rule(raw, line, known_fact, seen, problem)
        if rule is not None:
            rules.append(rule)
    if problems:
        raise PolicyError(problems, source)
    return Policy(
        name=str(meta.get("name", source)),
        version=str(meta.get("version", "")),
        rules=tuple(rules),
        appeal=str(statement.get("appeal", "")),
        restrictions=restrictions,
        source=source,
    )


def _rule_lines(text: str) -> list[int]:
    """1-based line of each ``[[rule]]`` header, in order: tomllib keeps no positions, and the
    n-th header is the n-th rule in the parsed list."""
    return [
        n
        for n, line in enumerate(text.splitlines(), start=1)
        if re.match(r"\s*\[\[\s*rule\s*\]\]\s*(#.*)?\Z", line)
    ]


def _parse_rule(
    raw: Any,
    line: int,
    known_fact: Callable[[str], bool],
    seen: set[str],
    problem: Callable[[int, str | None, str], None],
) -> Rule | None:
    if not isinstance(raw, dict):
        problem(line, None, "each [[rule]] must be a table")
        return None
    rid = raw.get("id")
    if not isinstance(rid, str) or not _RULE_ID.match(rid):
        problem(line, None, "every rule needs an id: lowercase letters, digits, '-', '_', '.'")
        return None
    ok = True

    def bad(message: str) -> None:
        nonlocal ok
        ok = False
        problem(line, rid, message)

    if rid in seen:
        bad("duplicate rule id")
    seen.add(rid)
    for key in sorted(set(raw) - _RULE_KEYS):
        bad(f"unknown key {key!r} (expected one of: {', '.join(sorted(_RULE_KEYS))})")
    action = raw.get("action")
    if action not in ACTIONS:
        bad(f"action must be one of {', '.join(ACTIONS)}; got {action!r}")
    priority = _priority(raw.get("priority", "normal" if action != "allow" else "none"))
    if priority is None:
        bad(
            "priority must be an integer 0-100 or one of "
            f"{', '.join(PRIORITY_NAMES)}; got {raw.get('priority')!r}"
        )
    if ("when" in raw) == ("any" in raw):
        bad("give exactly one of 'when' (all must hold) or 'any' (one must hold)")
    terms = raw.get("when", raw.get("any", []))
    if isinstance(terms, str):
        terms = [terms]
    if not isinstance(terms, list) or not terms or not all(isinstance(t, str) for t in terms):
        bad("conditions must be a non-empty list of strings")
        terms = []
    conditions: list[Condition] = []
    for term in terms:
        try:
            cond = parse_condition(term)
        except ValueError as exc:
            bad(str(exc))
            continue
        if not known_fact(cond.fact):
            bad(f"unknown fact {cond.fact!r} in {term!r}")
        conditions.append(cond)
    texts: dict[str, str] = {}
    for key in ("label", "reason", "terms_ground", "legal_ground", "description"):
        value = raw.get(key, "")
        if not isinstance(value, str):
            bad(f"{key} must be a string")
            value = ""
        texts[key] = value
    final = raw.get("final", False)
    if not isinstance(final, bool):
        bad("final must be true or false")
    if action == "label" and not texts["label"]:
        bad("a label rule needs label = '...' (the words users see)")
    if not ok or priority is None:
        return None
    return Rule(
        id=rid,
        action=str(action),
        priority=priority,
        conditions=tuple(conditions),
        any_of="any" in raw,
        final=bool(final),
        line=line,
        **texts,
    )


def _priority(value: Any) -> int | None:
    if isinstance(value, str):
        return PRIORITY_NAMES.get(value.strip().lower())
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100:
        return value
    return None


def parse_condition(text: str) -> Condition:
    """``[not] fact [op literal]`` with literals as Python/TOML-like values ('x', 0.8, true,
    ['a', 'b']); raise ValueError with a message fit for the person writing the policy."""
    m = _CONDITION.match(text)
    if not m:
        raise ValueError(
            f"cannot read condition {text!r}: write 'fact', 'not fact' or 'fact OP value' "
            f"with OP one of {' '.join(_OPS)}"
        )
    op, lit_text = m.group("op"), m.group("lit")
    literal: Any = None
    if op is not None:
        literal = _literal(lit_text, text)
        if op in (">=", "<=", ">", "<") and (
            isinstance(literal, bool)
            or not isinstance(literal, (int, float))
            or not math.isfinite(literal)
        ):
            raise ValueError(f"{text!r}: {op} needs a number")
        if op == "in" and not isinstance(literal, list):
            raise ValueError(f"{text!r}: 'in' needs a list, e.g. ['a', 'b']")
    return Condition(
        text=text.strip(), fact=m.group("fact"), negate=bool(m.group("neg")), op=op, literal=literal
    )


def _literal(lit: str, text: str) -> Any:
    swapped = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", lit))
    swapped = re.sub(r"\bnull\b", "None", swapped)
    try:
        value = ast.literal_eval(swapped)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(f"{text!r}: {lit!r} is not a value (quote text: 'like this')") from None
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, (str, int, float, bool, list, type(None))):
        raise ValueError(f"{text!r}: {lit!r} is not a string, number, boolean, null or list")
    return value


@dataclass(frozen=True)
class Reason:
    rule: str
    signal: str
    value: Any

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "signal": self.signal, "value": self.value}


@dataclass(frozen=True)
class Outcome:
    """The rules that applied, in policy order, with the conditions that made each apply."""

    applied: tuple[tuple[Rule, tuple[Condition, ...]], ...]

    def decisive(self) -> list[tuple[Rule, tuple[Condition, ...]]]:
        """The rules that set the action: the first applicable ``final`` rule alone, else every
        applied rule of the most severe action among them."""
        for rule, held in self.applied:
            if rule.final:
                return [(rule, held)]
        if not self.applied:
            return []
        worst = max(SEVERITY[rule.action] for rule, _ in self.applied)
        return [(r, h) for r, h in self.applied if SEVERITY[r.action] == worst]


def evaluate(policy: Policy, facts: Mapping[str, Any]) -> Outcome:
    applied: list[tuple[Rule, tuple[Condition, ...]]] = []
    for rule in policy.rules:
        held = rule.matches(facts)
        if held:
            applied.append((rule, tuple(held)))
    return Outcome(tuple(applied))


def reasons_of(
    pairs: Iterable[tuple[Rule, tuple[Condition, ...]]], facts: Mapping[str, Any]
) -> list[Reason]:
    return [Reason(rule.id, c.fact, facts.get(c.fact)) for rule, held in pairs for c in held]
