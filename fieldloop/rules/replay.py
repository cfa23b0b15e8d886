"""Replaying recorded tickets through two versions of the decision rules: what would change if
the candidate went live. Pure: the caller supplies the rule sets and the recorded facts, and
nothing is written anywhere."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fieldloop.rules.conditions import normalise_facts
from fieldloop.rules.evaluate import (
    Classification,
    Priority,
    choose_policy,
    classify,
    decide_priority,
    matching,
)
from fieldloop.rules.files import RuleSet, load_ruleset

FILES = ("classification.yaml", "priority.yaml", "dispatch.yaml", "sla.yaml")


@dataclass(frozen=True)
class RuleSets:
    label: str
    classification: RuleSet | None
    priority: RuleSet | None
    dispatch: RuleSet | None = None
    sla: RuleSet | None = None


@dataclass(frozen=True)
class Outcome:
    category: str | None
    queue: str | None
    priority: str | None
    rule: str | None  # the classification rule that decided
    priority_rules: tuple[str, ...]
    dispatch_policy: str | None = None
    sla_policy: str | None = None

    def differs(self, other: Outcome) -> list[str]:
        return [
            name
            for name in ("category", "queue", "priority", "dispatch_policy", "sla_policy")
            if getattr(self, name) != getattr(other, name)
        ]


@dataclass(frozen=True)
class Change:
    ref: str  # the ticket or event it is about
    fields: tuple[str, ...]
    base: Outcome
    candidate: Outcome


@dataclass
class Report:
    total: int = 0
    changes: list[Change] = field(default_factory=list)
    by_field: dict[str, int] = field(default_factory=dict)

    @property
    def changed_share(self) -> float:
        return len(self.changes) / self.total if self.total else 0.0


def decide(sets: RuleSets, raw: Mapping[str, Any]) -> Outcome:
    facts = normalise_facts({k: v for k, v in raw.items() if v is not None})
    cl = classify(sets.classification, facts) if sets.classification else Classification(None)
    if sets.priority is not None:
        more = {"category": cl.category, "queue": cl.queue, "tags": list(cl.tags)}
        facts2 = normalise_facts({**raw, **{k: v for k, v in more.items() if v is not None}})
        pr = decide_priority(sets.priority, matching(sets.priority, facts2))
    else:
        pr = Priority(None, 0, ())
    decided = {"category": cl.category, "queue": cl.queue, "tags": list(cl.tags),
               "priority": pr.priority}  # fmt: skip
    facts3 = normalise_facts({**raw, **{k: v for k, v in decided.items() if v is not None}})
    policies = [
        choose_policy(rs, facts3).policy if rs is not None else None
        for rs in (sets.dispatch, sets.sla)
    ]
    return Outcome(cl.category, cl.queue, pr.priority, cl.rule, pr.rules, *policies)


def replay(
    base: RuleSets, candidate: RuleSets, recorded: Iterable[tuple[str, Mapping[str, Any]]]
) -> Report:
    report = Report()
    for ref, raw in recorded:
        report.total += 1
        a, b = decide(base, raw), decide(candidate, raw)
        diff = a.differs(b)
        if diff:
            report.changes.append(Change(ref, tuple(diff), a, b))
            for name in diff:
                report.by_field[name] = report.by_field.get(name, 0) + 1
    return report


def load_sets(label: str, directory: Path) -> RuleSets:
    """The decision files in ``directory`` (any may be missing)."""
    found = [load_ruleset(directory / n) if (directory / n).exists() else None for n in FILES]
    return RuleSets(label, *found)


def sets_at_git_ref(ref: str, repo: Path, rules_path: str, into: Path) -> RuleSets:
    """The decision files as they were at ``ref`` (a commit, branch or tag), written to
    ``into`` so problems still point at file:line:col."""
    into.mkdir(parents=True, exist_ok=True)
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "--name-only", ref, f"{rules_path.rstrip('/')}/"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    calendars = [Path(p).name for p in listed.stdout.split() if p.endswith(".ics")]
    for name in [*FILES, *calendars]:
        proc = subprocess.run(
            ["git", "-C", str(repo), "show", f"{ref}:{rules_path.rstrip('/')}/{name}"],
            capture_output=True,
            check=False,
        )
        if proc.returncode == 0:
            (into / name).write_bytes(proc.stdout)
        elif b"does not exist" not in proc.stderr and b"exists on disk" not in proc.stderr:
            raise ValueError(f"--base {ref}: {proc.stderr.decode(errors='replace').strip()}")
    return load_sets(ref, into)


_FAIL_IF = re.compile(r"^\s*changed\s*(>=|>)\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")


def parse_fail_if(text: str) -> tuple[str, float, bool]:
    """``changed > 5%`` or ``changed >= 10``: (operator, number, is a percentage)."""
    m = _FAIL_IF.match(text)
    if m is None:
        raise ValueError(
            f"--fail-if {text!r}: write it as 'changed > 5%' or 'changed >= 10' (a share or a "
            "count of changed outcomes)"
        )
    return m.group(1), float(m.group(2)), m.group(3) == "%"


def fails(report: Report, rule: tuple[str, float, bool]) -> bool:
    op, limit, pct = rule
    value = report.changed_share * 100 if pct else len(report.changes)
    return value > limit if op == ">" else value >= limit


def facts_of_events(
    lines: Iterable[str], source: str, timezone: str = "UTC"
) -> Iterable[tuple[str, dict[str, Any]]]:
    """Recorded edge events (JSON Lines, one Event per line) as the facts of the tickets they
    open, on the events' own clock (their event time), so the replay is the same every time.
    Clears and other closing events open nothing and are skipped."""
    from zoneinfo import ZoneInfo

    from fieldloop.messages import OPENING_KINDS, Event

    zone = ZoneInfo(timezone)
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = Event.model_validate_json(line)
        except ValueError as exc:
            raise ValueError(f"{source}:{n}: not an edge event: {exc}") from None
        if event.kind not in OPENING_KINDS:
            continue
        yield (
            f"event {event.id} ({event.site}/{event.asset} {event.rule_id})",
            {
                "title": event.title,
                "description": event.title,
                "location": event.location,
                "source": "iot",
                "site": event.site,
                "asset.id": event.asset,
                "fault.code": event.rule_id,
                "fault.kind": event.kind.value,
                "fault.severity": event.severity.value,
                "fault.metric": event.metric,
                "fault.value": event.value,
                "hour": event.event_time.astimezone(zone).hour,
                "weekday": event.event_time.astimezone(zone).isoweekday(),
            },
        )
