"""The reference evaluator: the compiled rules run in plain Python. Central's durable-rules
runtime must agree with it on every input (a differential test holds them to that)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fieldloop.rules.actions import PRIORITIES, FollowUp, Skill
from fieldloop.rules.conditions import holds
from fieldloop.rules.files import RuleSet, band_for


@dataclass(frozen=True)
class Classification:
    rule: str | None  # the deciding rule (first hit); None: no rule matched
    category: str | None = None
    queue: str | None = None
    skills: tuple[Skill, ...] = ()
    tags: tuple[str, ...] = ()
    suppressed: str | None = None  # the reason, when a rule suppressed the ticket
    notify: tuple[tuple[str, str], ...] = ()
    open_tickets: tuple[FollowUp, ...] = ()


@dataclass(frozen=True)
class Priority:
    priority: str | None
    score: int
    rules: tuple[str, ...]  # every matching rule, in file order
    forced_by: str | None = None  # a rule whose set_priority decided, if any
    notify: tuple[tuple[str, str], ...] = ()
    escalate: tuple[tuple[str, str], ...] = field(default=())
    open_tickets: tuple[FollowUp, ...] = ()


@dataclass(frozen=True)
class PolicyChoice:
    """A dispatch or SLA policy chosen by first hit."""

    rule: str | None
    policy: str | None


def matching(ruleset: RuleSet, facts: Mapping[str, Any]) -> list[str]:
    """Ids of every rule whose condition holds, in file order (the engines' common answer)."""
    return [r.id for r in ruleset.rules if holds(r.condition, facts)]


def decide_classification(ruleset: RuleSet, hits: list[str]) -> Classification:
    """The outcome of first-hit classification, given the rules that matched."""
    if not hits:
        return Classification(None)
    rule = next(r for r in ruleset.rules if r.id == hits[0])
    out: dict[str, Any] = {"rule": rule.id}
    tags: list[str] = []
    notify = []
    follow: list[FollowUp] = []
    for a in rule.actions:
        if a.name == "set_category":
            out["category"] = a.value
        elif a.name == "set_queue":
            out["queue"] = a.value
        elif a.name == "set_skills":
            out["skills"] = a.value
        elif a.name == "add_tags":
            tags.extend(t for t in a.value if t not in tags)
        elif a.name == "suppress":
            out["suppressed"] = a.value
        elif a.name == "notify":
            notify.append(a.value)
        elif a.name == "open_ticket":
            follow.append(a.value)
    return Classification(**out, tags=tuple(tags), notify=tuple(notify), open_tickets=tuple(follow))


def decide_priority(ruleset: RuleSet, hits: list[str]) -> Priority:
    """Scores of every matching rule summed and mapped to a band; a set_priority in a matching
    rule is a floor the band cannot go under (the most urgent such rule decides)."""
    by_id = {r.id: r for r in ruleset.rules}
    score = 0
    forced: tuple[int, str] | None = None
    notify, escalate, follow = [], [], []
    for rid in hits:
        for a in by_id[rid].actions:
            if a.name == "add_score":
                score += a.value
            elif a.name == "set_priority":
                rank = PRIORITIES.index(a.value)
                if forced is None or rank < forced[0]:
                    forced = (rank, rid)
            elif a.name == "notify":
                notify.append(a.value)
            elif a.name == "escalate":
                escalate.append(a.value)
            elif a.name == "open_ticket":
                follow.append(a.value)
    band = band_for(ruleset.bands, score)
    forced_by = None
    if forced is not None and (band is None or forced[0] < PRIORITIES.index(band)):
        band, forced_by = PRIORITIES[forced[0]], forced[1]
    return Priority(
        band, score, tuple(hits), forced_by, tuple(notify), tuple(escalate), tuple(follow)
    )


def decide_policy(ruleset: RuleSet, hits: list[str]) -> PolicyChoice:
    """The policy the first matching rule names (dispatch.yaml, sla.yaml)."""
    if not hits:
        return PolicyChoice(None, None)
    rule = next(r for r in ruleset.rules if r.id == hits[0])
    policy = next((a.value for a in rule.actions if a.name == "use_policy"), None)
    return PolicyChoice(rule.id, policy)


def choose_policy(ruleset: RuleSet, facts: Mapping[str, Any]) -> PolicyChoice:
    first = next((r.id for r in ruleset.rules if holds(r.condition, facts)), None)
    return decide_policy(ruleset, [first] if first else [])


def classify(ruleset: RuleSet, facts: Mapping[str, Any]) -> Classification:
    first = next((r.id for r in ruleset.rules if holds(r.condition, facts)), None)
    return decide_classification(ruleset, [first] if first else [])


def prioritise(ruleset: RuleSet, facts: Mapping[str, Any]) -> Priority:
    return decide_priority(ruleset, matching(ruleset, facts))
