"""Policy: turn what we know about an upload into a decision with reasons. Pure, no I/O.

What we know is flattened into *facts* (:func:`facts_of`): bank matches by purpose, AI
evidence, each signal plug-in's report under its name, classifier scores. A policy (rules as
data, see :mod:`dignity.policy.rules`; the shipped one is ``default.toml``) maps facts to one of
``allow | label | review | block`` with a priority, the reasons (rule, fact, value) and a
statement of reasons carrying the fields EU DSA Art. 17(3) asks for: what is restricted, the
facts relied on, whether automated means were used, the ground, and how to appeal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from dignity.matching.engine import MatchOutcome
from dignity.policy.rules import (
    ACTIONS,
    Policy,
    PolicyError,
    Reason,
    evaluate,
    parse_condition,
    parse_policy,
    reasons_of,
)

__all__ = [
    "ACTIONS",
    "CORE_FACTS",
    "Decision",
    "Policy",
    "PolicyError",
    "decide",
    "default_policy",
    "fact_checker",
    "facts_of",
    "parse_condition",
    "parse_policy",
]

# Facts the core always provides, whatever plug-ins are installed. ``derivative_of`` is filled by
# edited-derivative detection when it runs (None otherwise).
CORE_FACTS: frozenset[str] = frozenset(
    {
        "match",
        "match.block",
        "match.review",
        "match.allow",
        "match.any",
        "match.best_distance",
        "match.region",
        "ai_evidence",
        "ai_evidence.sources",
        "ai_evidence.c2pa",
        "ai_evidence.xmp",
        "ai_evidence.metadata",
        "ai_evidence.watermark",
        "derivative_of",
        # Videos: the video's length, the matched segments (time ranges in both videos) and
        # nudity over its sampled frames: the highest score, and the share of frames at or over
        # DIGNITY_VIDEO_NUDITY_THRESHOLD. For an image, nudity.max is its nudity score and
        # nudity.share None (one picture has no share); video.duration_s is None.
        "video.duration_s",
        "match.segments",
        "nudity.max",
        "nudity.share",
    }
)


def fact_checker(namespaces: Iterable[str]) -> Any:
    """A ``known_fact`` predicate: the core facts, plus ``NAME`` and ``NAME.anything`` for each
    signal namespace (a provenance check's name or a classifier's signal)."""
    spaces = frozenset(namespaces)

    def known(fact: str) -> bool:
        return fact in CORE_FACTS or fact.split(".", 1)[0] in spaces

    return known


def facts_of(outcome: MatchOutcome, signals: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Flatten matches and the ``signals`` object of a scan into the facts rules test."""
    signals = signals or {}

    def entries(purpose: str | None) -> list[dict[str, object]]:
        found = outcome.allowed_by if purpose == "allow" else outcome.matches
        return [m.to_dict() for m in found if purpose in (None, "allow", m.purpose)]

    evidence = list(signals.get("ai_evidence") or [])
    sources = sorted({str(e.get("source")) for e in evidence if isinstance(e, Mapping)})
    facts: dict[str, Any] = {
        "match": entries(None),
        "match.any": entries(None),
        "match.block": entries("block"),
        "match.review": entries("review"),
        "match.allow": entries("allow"),
        "match.best_distance": min((m.distance for m in outcome.matches), default=None),
        # The regions ({x, y, w, h}) of the matches found inside the upload rather than as the
        # whole image (a screenshot, a collage): empty, so false, when there are none.
        "match.region": [m.region.to_dict() for m in outcome.matches if m.region is not None],
        "ai_evidence": evidence,
        "ai_evidence.sources": sources,
        "derivative_of": signals.get("derivative_of"),
        "match.segments": [
            segment for m in outcome.matches for segment in _as_list(m.to_dict().get("segments"))
        ],
    }
    video = signals.get("video")
    video_nudity = video.get("nudity") if isinstance(video, Mapping) else None
    if isinstance(video_nudity, Mapping):
        facts["nudity.max"] = video_nudity.get("max")
        facts["nudity.share"] = video_nudity.get("share")
    else:
        score = signals.get("nudity")
        facts["nudity.max"] = score if isinstance(score, (int, float)) else None
        facts["nudity.share"] = None
    for source in ("c2pa", "xmp", "metadata", "watermark"):
        facts[f"ai_evidence.{source}"] = [
            e for e in evidence if isinstance(e, Mapping) and e.get("source") == source
        ]
    for name, value in signals.items():
        if name in ("ai_evidence", "plugins", "classifiers") or name in facts:
            continue
        facts[name] = value
        if isinstance(value, Mapping):
            for key, inner in value.items():
                facts.setdefault(f"{name}.{key}", inner)
    facts.setdefault("video.duration_s", None)
    return facts


def _as_list(value: object) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


@dataclass(frozen=True)
class Decision:
    action: str
    priority: int = 0
    reasons: list[Reason] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    statement: dict[str, Any] = field(default_factory=dict)
    policy: str = ""

    @property
    def rule(self) -> str:
        """The first deciding rule's id (what event payloads and logs show)."""
        return self.rules[0] if self.rules else "default"

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "priority": self.priority,
            "rule": self.rule,
            "rules": list(self.rules),
            "labels": list(self.labels),
            "reasons": [r.to_dict() for r in self.reasons],
            "statement": self.statement,
            "policy": self.policy,
        }


_DEFAULT: Policy | None = None


def default_policy() -> Policy:
    """The shipped policy (``dignity/policy/default.toml``), validated against core facts and
    the built-in signals' namespaces."""
    global _DEFAULT
    if _DEFAULT is None:
        text = resources.files("dignity.policy").joinpath("default.toml").read_text("utf-8")
        _DEFAULT = parse_policy(text, "default.toml", fact_checker(BUILTIN_NAMESPACES))
    return _DEFAULT


# The namespaces the built-in signal plug-ins report under.
BUILTIN_NAMESPACES = ("c2pa", "xmp", "generator", "watermark", "nudity")


def decide(
    outcome: MatchOutcome,
    signals: Mapping[str, Any] | None = None,
    policy: Policy | None = None,
) -> Decision:
    """Apply ``policy`` (default: the shipped one) to the matches and signals of one upload."""
    policy = policy or default_policy()
    facts = facts_of(outcome, signals)
    result = evaluate(policy, facts)
    decisive = result.decisive()
    action = decisive[0][0].action if decisive else "allow"
    priority = max((rule.priority for rule, _ in decisive), default=0)
    # Labels apply whatever else happens (an AI label stays true on content sent to review),
    # unless a final rule (an allow bank) settled the matter.
    final = bool(decisive) and decisive[0][0].final
    shown = decisive if final else list(result.applied)
    labels = [] if final else sorted({rule.label for rule, _ in result.applied if rule.label})
    reasons = reasons_of(shown, facts)
    statement = _statement(policy, action, decisive, shown, labels, signals or {})
    return Decision(
        action=action,
        priority=priority,
        reasons=reasons,
        rules=[rule.id for rule, _ in decisive] or ["default"],
        labels=labels,
        statement=statement,
        policy=f"{policy.name} {policy.version}".strip(),
    )


def _statement(
    policy: Policy,
    action: str,
    decisive: list[Any],
    shown: list[Any],
    labels: list[str],
    signals: Mapping[str, Any],
) -> dict[str, Any]:
    """The statement of reasons (DSA Art. 17(3)): (a) restriction, (b) facts relied on,
    (c) automated means, (d)/(e) legal or contractual ground, (f) redress."""
    restriction = policy.restrictions.get(action, "")
    if action != "label" and labels:
        label_words = policy.restrictions.get("label", "")
        restriction = " ".join(x for x in (restriction, label_words) if x)
    facts = [rule.reason for rule, _ in shown if rule.reason] or (
        ["No rule of the policy applied."] if not decisive else []
    )
    legal = sorted({rule.legal_ground for rule, _ in decisive if rule.legal_ground})
    terms = sorted({rule.terms_ground for rule, _ in decisive if rule.terms_ground})
    means = ["hash matching against banks", "file provenance checks"]
    if isinstance(signals.get("nudity"), (int, float)):
        means.append("an image classifier")
    return {
        "restriction": restriction or None,
        "facts": facts,
        "automated_detection": True,
        "automated_decision": action != "review",
        "automated_means": ", ".join(means)
        + (
            "; a person reviews before the content is restored or removed."
            if action == "review"
            else "; the decision was taken automatically under the policy."
        ),
        "legal_ground": "; ".join(legal) or None,
        "contractual_ground": "; ".join(terms) or None,
        "redress": policy.appeal or None,
        "policy": f"{policy.name} {policy.version}".strip(),
    }
