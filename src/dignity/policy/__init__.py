"""Policy: turn what we know about media into a decision with reasons. Pure, no I/O.

This first policy reads bank matches only (a later issue adds signals and rules as data): a
standing match in a ``block`` bank blocks, one in a ``review`` bank sends to review, anything
else is allowed. Each decision lists the matches that caused it, so a statement of reasons can
be built from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dignity.matching.engine import Match, MatchOutcome

ACTIONS = ("allow", "label", "review", "block")


@dataclass(frozen=True)
class Decision:
    action: str
    reasons: list[str] = field(default_factory=list)
    rule: str = "default"

    def to_dict(self) -> dict[str, object]:
        return {"action": self.action, "rule": self.rule, "reasons": list(self.reasons)}


def decide(outcome: MatchOutcome) -> Decision:
    block = [m for m in outcome.matches if m.purpose == "block"]
    review = [m for m in outcome.matches if m.purpose == "review"]

    def why(m: Match) -> str:
        return (
            f"{m.signal} match in {m.purpose} bank {m.bank!r} "
            f"(entry {m.entry_id}, distance {m.distance})"
        )

    if block:
        return Decision("block", [why(m) for m in block], rule="bank-block")
    if review:
        return Decision("review", [why(m) for m in review], rule="bank-review")
    reasons = ["no bank match"]
    if outcome.allowed_by:
        reasons = [
            f"allow bank {m.bank!r} matched (entry {m.entry_id})" for m in outcome.allowed_by
        ]
    return Decision("allow", reasons, rule="default")
