"""fieldloop.rules.check and .testing: what only the whole file shows (shadowed rules, the
catch-all, band coverage, the tests' inputs), and running a file's tests on an engine."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from fieldloop.rules import conditions as c
from fieldloop.rules.check import check_dir, check_file, implies, input_problems, load_checked
from fieldloop.rules.testing import ReferenceEngine, default_engines, run_tests

REPO = Path(__file__).resolve().parents[3]

CLASSIFICATION = """\
apiVersion: fieldloop/v1
kind: ClassificationRules
rules:
  - id: gas.leak
    description: gas smell or leak is always a hazard / 燃气泄漏
    when:
      text: {contains_any: [燃气泄漏, 煤气味, gas leak, smell of gas]}
    then:
      - set_category: gas
      - set_queue: emergency
      - set_skills: [{skill: gas, level: 3}]
      - add_tags: [hazard]
  - id: water.leak
    when:
      any:
        - text: {contains_any: [漏水, 渗水, water leak, leaking]}
        - problem_type: {in: [plumbing, 给排水]}
    then:
      - set_category: plumbing
      - set_queue: facilities
  - id: catch-all
    then:
      - set_category: general
      - set_queue: dispatch
tests:
  - name: a leak in Chinese
    input: {title: 卫生间漏水, urgency: high}
    expect: {rule: water.leak, category: plumbing}
  - name: gas
    input: {description: Strong SMELL OF GAS in the kitchen}
    expect: {category: gas, skills: ["gas:3"], tags: [hazard], suppressed: false}
  - name: anything else
    input: {title: door squeaks}
    expect: {rule: catch-all, queue: dispatch}
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
bands:
  - {band: P1, min: 80}
  - {band: P2, min: 50, below: 80}
  - {band: P3, min: 20, below: 50}
  - {band: P4, below: 20}
tests:
  - name: urgent alone is P3
    input: {urgency: high}
    expect: {priority: P3, score: 30, rules: [urgent]}
  - name: a hazard is P1 whatever its score
    input: {tags: [hazard]}
    expect: {priority: P1, score: 60}
"""

HEAD = "apiVersion: fieldloop/v1\nkind: ClassificationRules\nrules:\n"  # rules from line 4


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def found(tmp_path: Path, text: str) -> list[str]:
    """check_file's problems as `line:col: message` (the file name is the test's own)."""
    path = write(tmp_path, text)
    return [f"{p.line}:{p.col}: {p.message}" for p in check_file(path)]


def rule(rid: str, when: str | None = None, category: str = "x") -> str:
    cond = f"    when: {when}\n" if when else ""
    return f"  - id: {rid}\n{cond}    then: [{{set_category: {category}}}]\n"


CATCH_ALL = rule("catch-all")


# --- the good files -----------------------------------------------------------------------


def test_good_files_have_no_problems(tmp_path: Path) -> None:
    assert check_file(write(tmp_path, CLASSIFICATION)) == []
    assert check_file(write(tmp_path, PRIORITY)) == []


# --- first hit: shadowed rules and the catch-all --------------------------------------------


def test_a_rule_with_the_same_condition_as_an_earlier_one_is_shadowed(tmp_path: Path) -> None:
    when = "{text: {contains_any: [漏水]}}"
    text = HEAD + rule("a", when) + rule("b", when) + CATCH_ALL
    assert found(tmp_path, text) == [
        "7:5: rule 'b' can never match (first hit wins): rule 'a' (line 4) has the same "
        "condition and comes first; remove one of them or merge their actions"
    ]


def test_a_more_specific_rule_after_a_general_one_is_shadowed(tmp_path: Path) -> None:
    text = (
        HEAD
        + rule("leak", "{text: {contains_any: [leak]}}")
        + rule("leak.kitchen", "{all: [{text: {contains_any: [leak]}}, {location: {eq: kitchen}}]}")
        + CATCH_ALL
    )
    assert found(tmp_path, text) == [
        "7:5: rule 'leak.kitchen' can never match (first hit wins): every ticket it matches "
        "also matches rule 'leak' (line 4), which comes first; move 'leak.kitchen' above 'leak' "
        "if it is the more specific rule"
    ]


def test_rules_after_a_catch_all_are_shadowed(tmp_path: Path) -> None:
    text = HEAD + rule("first") + rule("never", "{urgency: {eq: high}}")
    assert found(tmp_path, text) == [
        "6:5: rule 'never' can never match (first hit wins): rule 'first' (line 4) has no "
        "`when`, so it takes every ticket first; a catch-all must be the last rule: move it to "
        "the end"
    ]


def test_a_missing_catch_all_is_reported_at_the_last_rule(tmp_path: Path) -> None:
    text = HEAD + rule("a", "{urgency: {eq: high}}") + rule("b", "{urgency: {eq: low}}")
    (problem,) = found(tmp_path, text)
    assert problem.startswith("7:5: no catch-all: a ticket that matches no rule gets no ")
    assert "add a last rule without `when`" in problem


def test_rules_that_only_overlap_are_not_reported(tmp_path: Path) -> None:
    text = (
        HEAD
        + rule("specific", "{all: [{text: {contains_any: [leak]}}, {location: {eq: kitchen}}]}")
        + rule("general", "{text: {contains_any: [leak]}}")
        + rule("other", "{text: {contains_any: [leak, drip]}}")  # drip is not taken by general
        + rule("either", "{any: [{urgency: {eq: high}}, {text: {contains_any: [fire]}}]}")
        + rule("high", "{all: [{urgency: {eq: low}}, {not: {text: {contains_any: [fire]}}}]}")
        + CATCH_ALL
    )
    assert found(tmp_path, text) == []


L = c.Test  # a leaf: one field, one operator


@pytest.mark.parametrize(
    ("later", "earlier", "expected"),
    [
        (L("text", "contains_any", ("water leak",)), L("text", "contains_any", ("leak",)), True),
        (L("text", "contains_any", ("leak", "drip")), L("text", "contains_any", ("leak",)), False),
        (L("tags", "contains_any", ("hazard",)), L("tags", "contains_any", ("hazard", "x")), True),
        (L("tags", "contains_any", ("hazardous",)), L("tags", "contains_any", ("hazard",)), False),
        (L("urgency", "eq", "high"), L("urgency", "in", ("critical", "high")), True),
        (L("urgency", "in", ("high", "low")), L("urgency", "in", ("critical", "high")), False),
        (
            L("problem_type", "eq", "hvac-chiller"),
            L("problem_type", "contains_any", ("hvac",)),
            True,
        ),
        (L("hour", "gte", 22), L("hour", "exists", True), True),
        (L("hour", "exists", False), L("hour", "exists", True), False),
        (L("hour", "gte", 22), L("hour", "gte", 20), False),  # sound, not complete
        (L("urgency", "eq", "high"), L("source", "eq", "iot"), False),
    ],
)
def test_implies_between_tests(later: c.Node, earlier: c.Node, expected: bool) -> None:
    assert implies(later, earlier) is expected


def test_implies_through_all_any_and_not() -> None:
    a, b, d = L("urgency", "eq", "high"), L("source", "eq", "iot"), L("site", "eq", "s1")
    assert implies(c.All((a, b)), a) and implies(a, c.AnyOf((a, b)))
    assert implies(c.AnyOf((a, c.All((a, b)))), a)
    assert implies(c.All((a, b, d)), c.All((b, a)))
    assert not implies(a, c.All((a, b))) and not implies(c.AnyOf((a, b)), a)
    assert implies(c.Not(a), c.Not(a)) and not implies(c.Not(a), c.Not(c.All((a, b))))
    assert implies(a, c.Always()) and not implies(c.Always(), a)


# --- priority bands -------------------------------------------------------------------------

PRIORITY_HEAD = (
    "apiVersion: fieldloop/v1\nkind: PriorityRules\n"
    "rules:\n  - id: r\n    when: {urgency: {eq: high}}\n    then: [{add_score: 30}]\n"
    "bands:\n"
)  # bands from line 8


def bands(*lines: str) -> str:
    return PRIORITY_HEAD + "".join(f"  - {x}\n" for x in lines)


def test_a_gap_between_bands(tmp_path: Path) -> None:
    text = bands("{band: P1, min: 80}", "{band: P2, min: 50, below: 70}", "{band: P3, below: 50}")
    assert found(tmp_path, text) == [
        "8:16: gap: scores 70 to 79 fall in no band; set P1's min to 70 or P2's below to 80"
    ]


def test_overlapping_bands(tmp_path: Path) -> None:
    text = bands("{band: P1, min: 80}", "{band: P2, min: 40, below: 90}", "{band: P3, below: 50}")
    assert found(tmp_path, text) == [
        "8:16: overlap: scores 80 to 89 fall in both P2 and P1; set P2's below to 80",
        "9:16: overlap: scores 40 to 49 fall in both P3 and P2; set P3's below to 40",
    ]


def test_a_second_open_ended_band_overlaps(tmp_path: Path) -> None:
    text = bands("{band: P1, min: 80}", "{band: P2, min: 50}", "{band: P3, below: 50}")
    assert found(tmp_path, text) == [
        "8:16: overlap: scores from 80 up fall in both P2 and P1; give P2 `below: 80` (only the "
        "highest band leaves it out)"
    ]
    text = bands("{band: P1, min: 50}", "{band: P2, below: 50}", "{band: P3, below: 20}")
    assert found(tmp_path, text)[0].startswith(
        "10:5: bands P2 and P3 both leave out `min`, so both take the lowest scores"
    )


def test_open_ends_are_required(tmp_path: Path) -> None:
    text = bands("{band: P1, min: 50, below: 1000}", "{band: P2, min: 0, below: 50}")
    assert found(tmp_path, text) == [
        "8:25: scores from 1000 up fall in no band; leave out `below` on the highest band (P1) "
        "so it takes every higher score",
        "9:16: scores below 0 fall in no band; leave out `min` on the lowest band (P2) so it "
        "takes every lower score",
    ]


def test_a_band_may_appear_once_and_must_not_be_empty(tmp_path: Path) -> None:
    text = bands("{band: P1, min: 50}", "{band: P1, below: 50}")
    assert found(tmp_path, text) == [
        "9:6: band P1 is already defined at line 8; each of P1-P4 may appear once"
    ]
    text = bands("{band: P1, min: 50}", "{band: P2, min: 30, below: 30}", "{band: P3, below: 30}")
    assert found(tmp_path, text)[0].startswith("9:16: band P2: min 30 is not below `below` 30")


def test_p1_must_hold_the_highest_scores(tmp_path: Path) -> None:
    text = bands("{band: P4, min: 50}", "{band: P1, below: 50}")
    assert found(tmp_path, text) == [
        "8:6: band P4 holds higher scores than P1; higher scores must be more urgent (P4 "
        "lowest ... P1 highest): swap their ranges"
    ]


def test_fewer_than_four_bands_are_fine(tmp_path: Path) -> None:
    assert found(tmp_path, bands("{band: P2, min: 50}", "{band: P4, below: 50}")) == []


# --- the file's tests -----------------------------------------------------------------------


def test_test_inputs_must_use_known_fields_and_values(tmp_path: Path) -> None:
    text = (
        HEAD
        + CATCH_ALL
        + "tests:\n"
        + "  - name: t\n    input: {titel: 漏水, urgency: hgh, hour: ten, reopened: true}\n"
        + "    expect: {rule: catch-al}\n"
    )
    assert found(tmp_path, text) == [
        "8:13: test 't': unknown field 'titel'; did you mean 'title'? (`fieldloop rules "
        "fields` lists them)",
        "8:24: test 't': 'hgh' is not a urgency; did you mean 'high'?; one of critical, high, "
        "medium, low",
        "8:38: test 't': hour takes a number, not 'ten'",
        "9:14: test 't': expects rule 'catch-al', which is not in this file; did you mean "
        "'catch-all'?",
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"hour": 7.5}, "hour takes a whole number, not 7.5"),
        ({"hour": True}, "hour takes a number, not True"),
        ({"fault.value": float("nan")}, "fault.value takes a finite number, not nan"),
        ({"reopened": "yes"}, "reopened takes true or false, not 'yes'"),
        ({"tags": "hazard"}, "tags takes a list of words, e.g. [hazard], not 'hazard'"),
        ({"site": 12}, "site takes text (quote it), not 12"),
    ],
)
def test_input_value_types(raw: Mapping[str, Any], message: str) -> None:
    assert [m for _, m in input_problems(raw)] == [message]


def test_an_absent_value_is_fine() -> None:
    assert input_problems({"asset.class": None, "fault.value": 3, "tags": ["a"]}) == []


# --- kinds and directories ------------------------------------------------------------------


def test_an_unknown_kind_is_reported_at_kind(tmp_path: Path) -> None:
    assert found(tmp_path, "apiVersion: fieldloop/v1\nkind: PriorityRule\nrules: []\n") == [
        "2:1: kind: 'PriorityRule' is not a rule file kind; did you mean 'PriorityRules'?; use "
        "one of ClassificationRules, PriorityRules, DispatchRules, SlaRules, DetectionRules"
    ]


def test_check_dir_covers_every_kind(tmp_path: Path) -> None:
    write(tmp_path, CLASSIFICATION, "classification.yaml")
    write(tmp_path, PRIORITY, "priority.yaml")
    detection = (REPO / "rules/detection.yaml").read_text(encoding="utf-8")
    write(tmp_path, detection, "detection.yaml")
    write(tmp_path, detection.replace("for: 5s", "for: soon", 1), "detection-bad.yaml")
    for name in ("dispatch.yaml", "sla.yaml", "cn-statutory-holidays-2026.ics"):
        write(tmp_path, (REPO / "rules" / name).read_text(encoding="utf-8"), name)
    write(tmp_path, "kind: Other\n", "other.yaml")
    write(tmp_path, "not: checked\n", "notes.txt")
    results = {p.name: [str(x) for x in v] for p, v in check_dir(tmp_path).items()}
    assert sorted(results) == [
        "classification.yaml", "detection-bad.yaml", "detection.yaml", "dispatch.yaml",
        "other.yaml", "priority.yaml", "sla.yaml",
    ]  # fmt: skip
    assert results["classification.yaml"] == results["priority.yaml"] == []
    assert results["dispatch.yaml"] == results["sla.yaml"] == []
    assert results["detection.yaml"] == []
    (bad,) = results["detection-bad.yaml"]
    assert "'soon' is not a duration" in bad
    assert results["other.yaml"][0].endswith(
        "kind: 'Other' is not a rule file kind; use one of ClassificationRules, PriorityRules, "
        "DispatchRules, SlaRules, DetectionRules"
    )


def test_a_missing_file_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    (p,) = check_file(tmp_path / "gone.yaml")
    assert (p.line, p.col) == (1, 1) and p.message.startswith("cannot read the file")


def test_strict_problems_that_do_not_block_loading_come_with_the_loaders(tmp_path: Path) -> None:
    text = HEAD + rule("a", "{reopened: {eq: no}}") + CATCH_ALL
    assert found(tmp_path, text) == [
        "5:23: reopened is true or false; 'no' is not",
        "5:27: 'no' means true/false in YAML 1.1 but text in YAML 1.2, so tools disagree about "
        'it; quote it ("no") if you mean the word, or write true/false',
    ]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "- a\n- b\n",
        "just text\n",
        "kind: ClassificationRules\n",
        HEAD,
        HEAD + "  - 1\n",
        HEAD + "  - {id: a, then: [{set_category: {x: 1}}]}\n",
        HEAD + "  - {id: a, when: {all: []}, then: [{suppress: {}}]}\n",
        HEAD + "  - {id: a, when: [1], then: 3}\n",
        "a: 1\n---\nb: 2\n",
        "\x00",
        CLASSIFICATION.replace("  - name: a leak", "  - name: a leak\n    extra: 1", 1),
        PRIORITY.replace("bands:\n", "bands: 3\nx:\n", 1),
    ],
)
def test_odd_files_give_problems_not_exceptions(tmp_path: Path, text: str) -> None:
    assert check_file(write(tmp_path, text)) != []


# --- running the tests ----------------------------------------------------------------------


def results(tmp_path: Path, text: str) -> list[tuple[str, str | None]]:
    loaded = load_checked(write(tmp_path, text))
    assert loaded.ruleset is not None, loaded.problems
    out = run_tests(loaded.ruleset, loaded.data, ReferenceEngine())
    return [(r.name, f"{p.line}:{p.col}: {p.message}" if (p := r.problem) else None) for r in out]


def test_passing_tests(tmp_path: Path) -> None:
    assert results(tmp_path, CLASSIFICATION) == [
        ("a leak in Chinese", None),
        ("gas", None),
        ("anything else", None),
    ]
    assert results(tmp_path, PRIORITY) == [
        ("urgent alone is P3", None),
        ("a hazard is P1 whatever its score", None),
    ]


def test_a_failing_classification_test_says_what_and_which_rule(tmp_path: Path) -> None:
    text = CLASSIFICATION + (
        "  - name: a leak in English\n"
        "    input: {title: the tap drips}\n"
        "    expect: {category: Plumbing, queue: facilities, skills: [plumbing], tags: []}\n"
    )
    assert results(tmp_path, text)[-1] == (
        "a leak in English",
        "35:5: test 'a leak in English': expected category Plumbing, got general; expected "
        "queue facilities, got dispatch; expected skills [plumbing:1], got [] (rule catch-all)",
    )


def test_a_failing_priority_test_gives_the_score_and_rules(tmp_path: Path) -> None:
    text = PRIORITY + (
        "  - name: both\n    input: {tags: [hazard], urgency: critical}\n"
        "    expect: {priority: P2, score: 90, rules: [urgent, hazard]}\n"
    )
    assert results(tmp_path, text)[-1] == (
        "both",
        "22:5: test 'both': expected priority P2, got P1 (score 90 from hazard, urgent)",
    )


def test_expecting_no_rule_and_a_bad_input(tmp_path: Path) -> None:
    text = (
        HEAD + rule("a", "{urgency: {eq: high}}") + "tests:\n"
        "  - name: none\n    input: {urgency: low}\n    expect: {rule: null, category: null}\n"
        "  - name: bad\n    input: {hour: ten}\n    expect: {rule: a}\n"
    )
    assert results(tmp_path, text) == [
        ("none", None),
        ("bad", "12:13: test 'bad': hour takes a number, not 'ten'"),
    ]


def test_every_engine_is_asked_and_named(tmp_path: Path) -> None:
    class Nothing:
        name = "nothing"

        def matching(self, ruleset: Any, facts: Mapping[str, Any]) -> list[str]:
            return []

    loaded = load_checked(write(tmp_path, CLASSIFICATION))
    assert loaded.ruleset is not None
    out = run_tests(loaded.ruleset, loaded.data, Nothing())
    assert {r.engine for r in out} == {"nothing"} and not any(r.passed for r in out)
    assert out[0].problem is not None and out[0].problem.message == (
        "test 'a leak in Chinese': expected rule water.leak, got nothing; expected category "
        "plumbing, got nothing (no rule matched)"
    )
    assert [e.name for e in default_engines()] == ["reference"]


def test_a_loader_bug_is_a_problem_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: Path, *_: Any) -> Any:
        raise IndexError("list index out of range")

    monkeypatch.setattr("fieldloop.rules.check.load_ruleset", broken)
    assert found(tmp_path, CLASSIFICATION) == [
        "1:1: the file could not be checked: the loader failed with IndexError: list index out "
        "of range (a bug in fieldloop; please report it with this file)"
    ]
