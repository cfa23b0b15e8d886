"""Schemas of the planners' decision-rule files and their loading into an engine-independent
compiled form (RuleSet). ``classification.yaml`` is first-hit (a catch-all last);
``priority.yaml`` collects every matching rule's score and maps the sum to bands P1-P4;
``dispatch.yaml`` and ``sla.yaml`` hold named policies (and the SLA's calendars) and first-hit
rules that choose one (``use_policy``).

Loading never runs code from a file: ``when`` and ``then`` go through the closed language in
``conditions`` and ``actions``; every problem is reported as file:line:col."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fieldloop.rules.actions import PRIORITIES, Action, parse_actions
from fieldloop.rules.conditions import ConditionError, Node, Problem, parse_condition
from fieldloop.rules.fields import did_you_mean
from fieldloop.rules.ical import IcalError, read_days_off
from fieldloop.rules.policies import Calendar, DispatchPolicy, Handoffs, SlaPolicy
from fieldloop.yamlfile import (
    FileError,
    FileProblem,
    LocatedValueError,
    parse_yaml,
    position,
    require_unique,
    validate,
)

RULE_ID = r"^[a-z0-9][a-z0-9_.-]{0,127}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RuleSpec(_Strict):
    id: str = Field(pattern=RULE_ID, description="unique in the file; decisions record it")
    description: str | None = Field(None, max_length=500)
    when: Any = Field(None, description="the condition; none: every ticket (a catch-all)")
    then: list[Any] = Field(description="the actions, e.g. [{set_category: plumbing}]")


class ClassificationExpect(_Strict):
    rule: str | None = None
    category: str | None = None
    queue: str | None = None
    skills: list[str] | None = None  # "skill:level"
    tags: list[str] | None = None
    suppressed: bool | None = None


class PriorityExpect(_Strict):
    priority: Literal["P1", "P2", "P3", "P4"] | None = None
    score: int | None = None
    rules: list[str] | None = None


class PolicyExpect(_Strict):
    rule: str | None = None
    policy: str | None = None


class _Test(_Strict):
    name: str = Field(min_length=1, max_length=200)
    input: dict[str, Any] = Field(description="field -> value, as `fieldloop rules fields` names")


class ClassificationTest(_Test):
    expect: ClassificationExpect


class PriorityTest(_Test):
    expect: PriorityExpect


class PolicyTest(_Test):
    expect: PolicyExpect


class Band(_Strict):
    band: Literal["P1", "P2", "P3", "P4"]
    min: int | None = Field(None, description="lowest score in the band (none: no floor)")
    below: int | None = Field(None, description="scores from here up are above the band")


class _File(_Strict):
    api_version: Literal["fieldloop/v1"] = Field(alias="apiVersion")
    rules: list[RuleSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        require_unique([r.id for r in self.rules], "rule id", "id", "rules")
        return self


class ClassificationFile(_File):
    kind: Literal["ClassificationRules"]
    tests: list[ClassificationTest] = Field(default_factory=list)


class PriorityFile(_File):
    kind: Literal["PriorityRules"]
    bands: list[Band] = Field(min_length=1)
    tests: list[PriorityTest] = Field(default_factory=list)


class _PolicyFile(_File):
    @model_validator(mode="after")
    def _policies(self) -> Self:
        policies = getattr(self, "policies")  # noqa: B009 - declared by the subclasses
        require_unique([p.id for p in policies], "policy id", "id", "policies")
        return self


class DispatchFile(_PolicyFile):
    kind: Literal["DispatchRules"]
    certified_skills: dict[str, list[str]] = Field(
        default_factory=dict,
        description="skill -> the certificates an engineer needs for it (电工证, gas-safe ...)",
    )
    policies: list[DispatchPolicy] = Field(min_length=1)
    tests: list[PolicyTest] = Field(default_factory=list)


class SlaFile(_PolicyFile):
    kind: Literal["SlaRules"]
    calendars: list[Calendar] = Field(min_length=1)
    policies: list[SlaPolicy] = Field(min_length=1)
    handoffs: Handoffs = Field(default_factory=Handoffs)
    tests: list[PolicyTest] = Field(default_factory=list)

    @model_validator(mode="after")
    def _calendars(self) -> Self:
        require_unique([c.id for c in self.calendars], "calendar id", "id", "calendars")
        known = [c.id for c in self.calendars]
        for i, p in enumerate(self.policies):
            if p.calendar not in known:
                raise LocatedValueError(
                    f"calendar {p.calendar!r} is not defined{did_you_mean(p.calendar, known)}; "
                    "calendars: " + ", ".join(known),
                    ("policies", i, "calendar"),
                )
        return self


KINDS: dict[str, type[_File]] = {
    "ClassificationRules": ClassificationFile,
    "PriorityRules": PriorityFile,
    "DispatchRules": DispatchFile,
    "SlaRules": SlaFile,
}
FIRST_HIT = frozenset({"ClassificationRules", "DispatchRules", "SlaRules"})


@dataclass(frozen=True)
class CompiledRule:
    id: str
    pri: int  # position in the file: first-hit order, and the tie-break everywhere
    condition: Node
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class RuleSet:
    """One file, compiled: what every engine (reference or durable-rules) evaluates."""

    kind: str
    mode: Literal["first_hit", "collect"]
    rules: tuple[CompiledRule, ...]
    version: str  # sha256 of the file's bytes: decisions record it
    path: str
    bands: tuple[Band, ...] = ()
    spec: _File | None = None  # the validated file (its tests)
    policies: Mapping[str, Any] = field(default_factory=dict)  # id -> Dispatch/SlaPolicy
    calendars: Mapping[str, Calendar] = field(default_factory=dict)
    days_off: Mapping[str, frozenset[date]] = field(default_factory=dict)  # calendar -> holidays


def load_ruleset(
    path: Path, text: str | None = None, data: Any = None, raw: bytes | None = None
) -> RuleSet:
    """Parse, validate and compile one rule file, or raise FileError listing every problem.
    ``data``: the file already parsed from ``text`` (the checker parses once, not twice);
    ``raw``: the bytes ``text`` was decoded from (the version is their digest)."""
    if text is None:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise FileError([FileProblem(str(path), 1, 1, f"cannot read the file: {exc}")]) from exc
        text = raw.decode("utf-8", errors="replace")
    elif raw is None:
        raw = text.encode()
    if data is None:
        data = parse_yaml(path, text)
    kind = data.get("kind") if hasattr(data, "get") else None
    model = KINDS.get(str(kind))
    if model is None:
        line, col = position(data, ["kind"])
        raise FileError(
            [
                FileProblem(
                    str(path), line, col,
                    f"kind: {kind!r} is not a decision-rule file; use one of "
                    + ", ".join(KINDS) + " (DetectionRules files are checked by the edge's loader)",
                )
            ]
        )  # fmt: skip
    spec = validate(path, data, model)
    problems: list[Problem] = []
    rules = []
    policies = {p.id: p for p in getattr(spec, "policies", ())}
    for i, r in enumerate(spec.rules):
        try:
            cond = parse_condition(r.when, ("rules", i, "when"))
        except ConditionError as exc:
            problems.extend(exc.problems)
            continue
        actions = parse_actions(r.then, spec.kind, ("rules", i, "then"), problems)
        uses = [j for j, a in enumerate(actions) if a.name == "use_policy"]
        if len(uses) > 1:
            problems.append(
                Problem(
                    ("rules", i, "then", uses[1], "use_policy"),
                    "a rule chooses one policy: remove the second use_policy",
                )
            )
        for j, a in enumerate(actions):
            if a.name == "use_policy" and a.value not in policies:
                problems.append(
                    Problem(
                        ("rules", i, "then", j, "use_policy"),
                        f"policy {a.value!r} is not defined"
                        f"{did_you_mean(a.value, list(policies))}; policies: "
                        + ", ".join(policies),
                    )
                )
        rules.append(CompiledRule(r.id, i, cond, actions))
    calendars: dict[str, Calendar] = {}
    days_off: dict[str, frozenset[date]] = {}
    for i, c in enumerate(getattr(spec, "calendars", ())):
        calendars[c.id] = c
        days = set(c.holidays)
        if c.holidays_file is not None:
            try:
                days |= read_days_off(path.parent / c.holidays_file)
            except IcalError as exc:
                problems.append(Problem(("calendars", i, "holidays_file"), str(exc)))
        days_off[c.id] = frozenset(days - set(c.workdays))
    if problems:
        raise FileError(
            [FileProblem(str(path), *position(data, p.path), p.message) for p in problems]
        )
    return RuleSet(
        kind=spec.kind,
        mode="first_hit" if spec.kind in FIRST_HIT else "collect",
        rules=tuple(rules),
        version=hashlib.sha256(raw).hexdigest(),
        path=str(path),
        bands=tuple(spec.bands) if isinstance(spec, PriorityFile) else (),
        spec=spec,
        policies=policies,
        calendars=calendars,
        days_off=days_off,
    )


def band_for(bands: tuple[Band, ...], score: int) -> str | None:
    for b in bands:
        if (b.min is None or score >= b.min) and (b.below is None or score < b.below):
            return b.band
    return None


__all__ = ["PRIORITIES", "CompiledRule", "RuleSet", "band_for", "load_ruleset"]
