"""``fieldloop rules test``: run a file's ``tests:`` through an engine and compare the outcome
with ``expect`` (only the keys a test gives).

An engine answers one question, which rules hold for these facts (``matching``); deciding the
outcome from that is shared (``decide_classification`` / ``decide_priority``), so every engine is
held to the same answer. The reference engine is the pure-Python evaluator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from fieldloop.rules import evaluate
from fieldloop.rules.check import input_problems
from fieldloop.rules.conditions import normalise_facts
from fieldloop.rules.files import ClassificationFile, RuleSet
from fieldloop.yamlfile import FileProblem, position


class Engine(Protocol):
    name: str

    def matching(self, ruleset: RuleSet, facts: Mapping[str, Any]) -> list[str]:
        """Ids of the rules whose condition holds for ``facts``, in file order."""
        ...


class ReferenceEngine:
    name = "reference"

    def matching(self, ruleset: RuleSet, facts: Mapping[str, Any]) -> list[str]:
        return evaluate.matching(ruleset, facts)


def default_engines() -> list[Engine]:
    """The engines ``fieldloop rules test`` runs every test on."""
    return [ReferenceEngine()]


@dataclass(frozen=True)
class CaseResult:
    """One test on one engine; ``problem`` is None when it passed."""

    name: str
    engine: str
    line: int
    col: int
    problem: FileProblem | None

    @property
    def passed(self) -> bool:
        return self.problem is None


def run_tests(ruleset: RuleSet, data: Any, engine: Engine) -> list[CaseResult]:
    """Every test of ``ruleset`` on ``engine``; ``data`` is the parsed file, for positions."""
    spec = ruleset.spec
    if spec is None:
        return []
    results = []
    for i, t in enumerate(spec.tests):
        line, col = position(data, ("tests", i))
        bad = input_problems(t.input)
        if bad:  # the rules could not compare these values: say so rather than crash
            name, message = bad[0]
            at = position(data, ("tests", i, "input", name))
            problem = FileProblem(ruleset.path, *at, f"test {t.name!r}: {message}")
        else:
            hits = engine.matching(ruleset, normalise_facts(t.input))
            if isinstance(spec, ClassificationFile):
                wrong, why = _classification(ruleset, t.expect, hits)
            elif ruleset.mode == "first_hit":
                wrong, why = _policy(ruleset, t.expect, hits)
            else:
                wrong, why = _priority(ruleset, t.expect, hits)
            problem = (
                FileProblem(ruleset.path, line, col, f"test {t.name!r}: {'; '.join(wrong)} ({why})")
                if wrong
                else None
            )
        results.append(CaseResult(t.name, engine.name, line, col, problem))
    return results


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | set | frozenset):
        return "[" + ", ".join(sorted(map(str, value))) + "]"
    return str(value)


def _compare(expect: Any, actual: dict[str, Any]) -> list[str]:
    """'expected K E, got A' for each key the test gives whose value differs."""
    wrong = []
    for key in type(expect).model_fields:
        if key not in expect.model_fields_set:
            continue  # only what the test asks about
        want = getattr(expect, key)
        got = actual[key]
        if isinstance(want, list):
            same = {str(w).casefold() for w in want} == {str(g).casefold() for g in got}
        elif isinstance(want, str) and isinstance(got, str):
            same = want.strip().casefold() == got.casefold()
        else:
            same = want == got
        if not same:
            wrong.append(f"expected {key} {_show(want)}, got {_show(got)}")
    return wrong


def _classification(ruleset: RuleSet, expect: Any, hits: list[str]) -> tuple[list[str], str]:
    c = evaluate.decide_classification(ruleset, hits)
    skills = [f"{s.skill}:{s.level}" for s in c.skills]
    if expect.skills is not None:  # "gas" means level 1, as in set_skills
        expect = expect.model_copy(
            update={"skills": [s if ":" in s else f"{s}:1" for s in expect.skills]}
        )
    actual = {
        "rule": c.rule,
        "category": c.category,
        "queue": c.queue,
        "skills": skills,
        "tags": list(c.tags),
        "suppressed": c.suppressed is not None,
    }
    return _compare(expect, actual), f"rule {c.rule}" if c.rule else "no rule matched"


def _priority(ruleset: RuleSet, expect: Any, hits: list[str]) -> tuple[list[str], str]:
    p = evaluate.decide_priority(ruleset, hits)
    actual = {"priority": p.priority, "score": p.score, "rules": list(p.rules)}
    why = f"score {p.score} from {', '.join(p.rules)}" if p.rules else "no rule matched"
    if p.forced_by:
        why += f"; {p.priority} set by {p.forced_by}"
    return _compare(expect, actual), why


def _policy(ruleset: RuleSet, expect: Any, hits: list[str]) -> tuple[list[str], str]:
    c = evaluate.decide_policy(ruleset, hits[:1])
    actual = {"rule": c.rule, "policy": c.policy}
    return _compare(expect, actual), f"rule {c.rule}" if c.rule else "no rule matched"
