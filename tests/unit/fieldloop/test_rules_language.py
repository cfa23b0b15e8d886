"""fieldloop.rules: the closed condition language, the action vocabulary and the file schemas,
with problems reported at file:line:col."""

from __future__ import annotations

from pathlib import Path

import pytest

from fieldloop.rules import conditions as c
from fieldloop.rules.actions import Skill
from fieldloop.rules.conditions import (
    All,
    Always,
    AnyOf,
    ConditionError,
    Not,
    holds,
    normalise_facts,
    parse_condition,
)
from fieldloop.rules.evaluate import classify, prioritise
from fieldloop.rules.fields import FIELDS, FieldType
from fieldloop.rules.files import band_for, load_ruleset
from fieldloop.yamlfile import FileError


def facts(**raw: object) -> dict[str, object]:
    return normalise_facts({k.replace("__", "."): v for k, v in raw.items()})


def problems_of(data: object) -> list[str]:
    with pytest.raises(ConditionError) as exc:
        parse_condition(data)
    return [f"{'.'.join(map(str, p.path))}: {p.message}" for p in exc.value.problems]


# --- conditions ---------------------------------------------------------------------------


def test_a_tree_parses_into_nodes() -> None:
    node = parse_condition(
        {"all": [{"text": {"contains_any": ["漏水", "Leak"]}},
                 {"not": {"urgency": {"eq": "LOW"}}},
                 {"any": [{"fault.value": {"between": [1, 2]}}, {"site": {"exists": True}}]}]}
    )  # fmt: skip
    assert node == All(
        (
            c.Test("text", "contains_any", ("漏水", "leak")),
            Not(c.Test("urgency", "eq", "low")),
            AnyOf((c.Test("fault.value", "between", (1, 2)), c.Test("site", "exists", True))),
        )
    )
    assert parse_condition(None) == Always()


@pytest.mark.parametrize(
    ("cond", "ticket", "expected"),
    [
        ({"text": {"contains_any": ["漏水"]}}, facts(title="卫生间漏水了"), True),
        ({"text": {"contains_any": ["LEAK"]}}, facts(description="water leaking"), True),
        ({"text": {"contains_any": ["leak"]}}, facts(title="blocked drain"), False),
        ({"urgency": {"in": ["critical", "high"]}}, facts(urgency="High"), True),
        ({"urgency": {"not_in": ["low"]}}, facts(), False),  # missing fails every test
        ({"urgency": {"exists": False}}, facts(), True),
        ({"not": {"urgency": {"eq": "low"}}}, facts(), True),
        ({"fault.value": {"gt": 95}}, facts(fault__value=95.0), False),
        ({"fault.value": {"gte": 95}}, facts(fault__value=95.0), True),
        ({"fault.value": {"between": [90, 95]}}, facts(fault__value=95), True),
        ({"fault.value": {"lt": 0}}, facts(fault__value=-1), True),
        ({"tags": {"contains_any": ["hazard"]}}, facts(tags=["Hazard", "x"]), True),
        ({"tags": {"contains_any": ["haz"]}}, facts(tags=["hazard"]), False),  # members, not text
        ({"title": {"matches": r"^E\d{2}$"}}, facts(title="e42"), True),
        ({"reopened": {"eq": True}}, facts(reopened=True), True),
        ({"hour": {"between": [0, 6]}}, facts(hour=7), False),
    ],
)
def test_semantics(cond: dict, ticket: dict, expected: bool) -> None:
    assert holds(parse_condition(cond), ticket) is expected


def test_every_problem_is_named_at_its_path() -> None:
    got = problems_of(
        {"all": [{"txt": {"contains_any": ["a"]}}, {"urgency": {"eq": "hgh"}},
                 {"fault.value": {"gtt": 3}}, {"fault.value": {"contains_any": ["x"]}},
                 {"any": []}, {"hour": {"between": [5, 1]}}, {"site": {"eq": 3}}]}
    )  # fmt: skip
    assert got == [
        "when.all.0.txt: unknown field 'txt'; did you mean 'text'? "
        "(`fieldloop rules fields` lists them)",
        "when.all.1.urgency.eq: 'hgh' is not a urgency; did you mean 'high'?; one of critical, "
        "high, medium, low",
        "when.all.2.fault.value.gtt: unknown operator 'gtt'; did you mean 'gt'?; use one of "
        "between, eq, exists, gt, gte, in, lt, lte, ne, not_in",
        "when.all.3.fault.value.contains_any: contains_any does not apply to fault.value "
        "(number); use one of between, eq, exists, gt, gte, in, lt, lte, ne, not_in",
        "when.all.4.any: any: needs a non-empty list of conditions",
        "when.all.5.hour.between: between [5, 1]: low is above high",
        "when.all.6.site.eq: site takes text; 3 is not",
    ]


@pytest.mark.parametrize(
    "pattern",
    ["(a+)+$", "(x*)*", "(a|a)*c", r"(\w+)\1", "(?=abc)", "(?!x)y", "a" * 201, "(unclosed"],
)
def test_dangerous_or_broken_patterns_are_refused(pattern: str) -> None:
    assert problems_of({"title": {"matches": pattern}})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), True, "7"])
def test_numbers_must_be_finite_numbers(bad: object) -> None:
    assert problems_of({"fault.value": {"gt": bad}})


def test_a_condition_is_one_key() -> None:
    assert problems_of({"text": {"contains_any": ["a"]}, "site": {"eq": "x"}})
    assert problems_of({"text": {"contains_any": ["a"], "matches": "b"}})
    assert problems_of(["text"])


def test_unknown_facts_are_refused_and_text_is_built() -> None:
    with pytest.raises(ValueError, match="did you mean 'urgency'"):
        normalise_facts({"urgncy": "high"})
    assert normalise_facts({"title": "A", "description": "B"})["text"] == "a\nb"


def test_every_field_has_a_type_and_a_description() -> None:
    for f in FIELDS.values():
        assert isinstance(f.type, FieldType) and f.description


# --- files --------------------------------------------------------------------------------

CLASSIFICATION = """\
apiVersion: fieldloop/v1
kind: ClassificationRules
rules:
  - id: gas.leak
    when:
      text: {contains_any: [燃气泄漏, 煤气味, gas leak]}
    then:
      - set_category: gas
      - set_queue: emergency
      - set_skills: [{skill: gas, level: 3}]
      - add_tags: [hazard]
  - id: water.leak
    when:
      any:
        - text: {contains_any: [漏水, leak]}
        - problem_type: {in: [plumbing, 给排水]}
    then:
      - set_category: plumbing
  - id: catch-all
    then:
      - set_category: general
      - notify: {to: dispatch, message: "unclassified: {{ticket.title}}"}
"""

PRIORITY = """\
apiVersion: fieldloop/v1
kind: PriorityRules
rules:
  - id: hazard
    when: {tags: {contains_any: [hazard]}}
    then: [{add_score: 60}, {set_priority: P1}]
  - id: urgent
    when: {urgency: {in: [critical, high]}}
    then: [{add_score: 30}]
  - id: vip
    when: {customer.tier: {eq: gold}}
    then: [{add_score: 15}]
bands:
  - {band: P1, min: 80}
  - {band: P2, min: 50, below: 80}
  - {band: P3, min: 20, below: 50}
  - {band: P4, below: 20}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_classification_is_first_hit(tmp_path: Path) -> None:
    rs = load_ruleset(write(tmp_path, "c.yaml", CLASSIFICATION))
    assert (rs.kind, rs.mode, [r.id for r in rs.rules]) == (
        "ClassificationRules", "first_hit", ["gas.leak", "water.leak", "catch-all"],
    )  # fmt: skip
    assert len(rs.version) == 64
    out = classify(rs, facts(title="厨房有煤气味, 水管也漏水"))
    assert (out.rule, out.category, out.queue, out.skills, out.tags) == (
        "gas.leak", "gas", "emergency", (Skill("gas", 3),), ("hazard",),
    )  # fmt: skip
    assert classify(rs, facts(problem_type="给排水")).category == "plumbing"
    other = classify(rs, facts(title="door handle loose"))
    assert (other.rule, other.category) == ("catch-all", "general")
    assert other.notify == (("dispatch", "unclassified: {{ticket.title}}"),)


def test_priority_sums_scores_into_bands_with_a_floor(tmp_path: Path) -> None:
    rs = load_ruleset(write(tmp_path, "p.yaml", PRIORITY))
    p = prioritise(rs, facts(urgency="high", customer__tier="gold"))
    assert (p.priority, p.score, p.rules, p.forced_by) == ("P3", 45, ("urgent", "vip"), None)
    p = prioritise(rs, facts(tags=["hazard"]))
    assert (p.priority, p.score, p.forced_by) == ("P1", 60, "hazard")  # P2 by score, P1 floor
    assert prioritise(rs, facts()).priority == "P4"
    assert [band_for(rs.bands, s) for s in (-5, 19, 20, 49, 50, 79, 80, 500)] == [
        "P4", "P4", "P3", "P3", "P2", "P2", "P1", "P1",
    ]  # fmt: skip


def test_problems_are_reported_at_file_line_col(tmp_path: Path) -> None:
    bad = (
        CLASSIFICATION.replace("set_queue: emergency", "set_queu: emergency")
        .replace("contains_any: [漏水", "contain_any: [漏水")
        .replace("level: 3", "level: 9")
        .replace("{{ticket.title}}", "{{ticket.secret}}")
    )
    with pytest.raises(FileError) as exc:
        load_ruleset(write(tmp_path, "c.yaml", bad))
    lines = [str(p).split("/")[-1] for p in exc.value.problems]
    assert lines == [
        "c.yaml:9:9: unknown action 'set_queu'; did you mean 'set_queue'?; a ClassificationRules "
        "rule may: set_category, set_queue, set_skills, add_tags, suppress, notify, open_ticket",
        "c.yaml:10:9: set_skills: level is 1 to 5, not 9",
        "c.yaml:15:18: unknown operator 'contain_any'; did you mean 'contains_any'?; use one of "
        "contains_any, eq, exists, in, matches, ne, not_in",
        "c.yaml:22:9: placeholder {{ticket.secret}} is not allowed; did you mean 'ticket.title'?; "
        "allowed: asset.id, asset.name, category, fault.code, location, priority, queue, site, "
        "ticket.id, ticket.title",
    ]


def test_a_priority_action_in_a_classification_file_says_where_it_belongs(tmp_path: Path) -> None:
    bad = CLASSIFICATION.replace("- set_category: plumbing", "- add_score: 10")
    with pytest.raises(FileError, match=r"it belongs in a PriorityRules file"):
        load_ruleset(write(tmp_path, "c.yaml", bad))


def test_schema_errors_and_duplicate_ids(tmp_path: Path) -> None:
    dup = CLASSIFICATION.replace("id: water.leak", "id: gas.leak")
    with pytest.raises(FileError, match=r"c.yaml:12:\d+: .*rule id 'gas.leak' is used twice"):
        load_ruleset(write(tmp_path, "c.yaml", dup))
    wrong_kind = CLASSIFICATION.replace("ClassificationRules", "Classifications")
    with pytest.raises(FileError, match=r"c.yaml:2:1: kind: 'Classifications' is not"):
        load_ruleset(write(tmp_path, "c.yaml", wrong_kind))
    extra = CLASSIFICATION.replace("  - id: catch-all\n", "  - id: catch-all\n    colour: red\n")
    with pytest.raises(FileError, match=r"colour"):
        load_ruleset(write(tmp_path, "c.yaml", extra))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"tags": "hazard"}, "tags is a list of words"),
        ({"fault.value": True}, "fault.value is a number"),
        ({"fault.value": "7"}, "fault.value is a number"),
        ({"fault.value": float("nan")}, "not a finite number"),
        ({"hour": 7.5}, "hour is a whole number"),
        ({"reopened": "yes"}, "reopened is true or false"),
        ({"title": ["a"]}, "title is text"),
    ],
)
def test_facts_of_the_wrong_type_are_refused_by_name(raw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalise_facts(raw)


def test_patterns_and_text_agree_on_case() -> None:
    node = parse_condition({"location": {"matches": "straße"}})
    assert holds(node, facts(location="Hauptstraße 5"))
    assert holds(
        parse_condition({"location": {"contains_any": ["STRASSE"]}}), facts(location="strasse")
    )
