"""`fieldloop rules check | test | fields`, run in-process: every bad file a planner could write is
refused at file:line:col with a fix, nothing in a file ever runs, and good files pass."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fieldloop.cli import main

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]

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
"""

ALIAS_BOMB = """\
apiVersion: fieldloop/v1
kind: ClassificationRules
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
rules: [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, name: str = "rules.yaml"
) -> tuple[int, Path, str]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    code = main(["rules", "check", str(path)])
    return code, path, capsys.readouterr().out


def refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> tuple[Path, list[str]]:
    """Check one bad file: exit 1, a FAILED verdict; the problem lines without the path."""
    code, path, out = check(tmp_path, capsys, text)
    assert code == 1, out
    *problems, verdict, summary = out.splitlines()
    assert verdict == f"Checking {path}  FAILED: {len(problems)} problem(s)"
    assert summary == "0 of 1 file(s) OK"
    assert all(p.startswith(f"{path}:") for p in problems)
    return path, [p.removeprefix(f"{path}:") for p in problems]


def test_good_files_succeed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "classification.yaml").write_text(CLASSIFICATION, encoding="utf-8")
    (tmp_path / "priority.yaml").write_text(PRIORITY, encoding="utf-8")
    (tmp_path / "detection.yaml").write_bytes((REPO / "rules/detection.yaml").read_bytes())
    assert main(["rules", "check", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"Checking {tmp_path / 'classification.yaml'}  SUCCESS",
        f"Checking {tmp_path / 'detection.yaml'}  SUCCESS",
        f"Checking {tmp_path / 'priority.yaml'}  SUCCESS",
        "3 of 3 file(s) OK",
    ]


def test_the_default_is_the_repositorys_rules_directory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check"]) == 0
    assert f"Checking {REPO / 'rules' / 'detection.yaml'}  SUCCESS" in capsys.readouterr().out


def test_a_python_object_tag_is_refused_and_nothing_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"
    text = CLASSIFICATION.replace(
        "      - set_category: general\n",
        f'      - set_category: !!python/object/apply:os.system ["touch {marker}"]\n',
    )
    _, problems = refused(tmp_path, capsys, text)
    assert problems == [
        "23:23: tag !!python/object/apply:os.system is refused: rule files hold plain values, "
        "never objects or code; remove the tag (quote the value if you mean text)"
    ]
    assert main(["rules", "test", str(tmp_path / "rules.yaml")]) == 1
    assert not marker.exists()


def test_an_alias_bomb_is_refused_in_well_under_a_second(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = time.perf_counter()
    _, problems = refused(tmp_path, capsys, ALIAS_BOMB)
    assert time.perf_counter() - start < 0.5
    assert problems[0] == (
        "3:4: anchor &a is refused (no anchors or aliases in rule files); remove it and write "
        "the value out where it is used"
    )
    assert problems[-1] == (
        "11:9: alias *h (used 9 times) is refused (no anchors or aliases in rule files); write "
        "the value out here instead"
    )


def test_a_10_mb_file_is_refused_without_reading_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "big.yaml"
    with big.open("w", encoding="utf-8") as f:
        f.write(CLASSIFICATION)
        f.write("# padding\n" * 1_000_000)  # 10 MB of comments: valid YAML, just too much
    start = time.perf_counter()
    assert main(["rules", "check", str(big)]) == 1
    assert time.perf_counter() - start < 0.5
    size = big.stat().st_size
    assert capsys.readouterr().out.splitlines()[0] == (
        f"{big}:1:1: the file is {size:,} bytes; rule files are limited to 1 MB (1,048,576 "
        "bytes): split it"
    )


CASES = [
    pytest.param(
        CLASSIFICATION.replace("    then:\n      - set_category: plumbing", "    then\n", 1),
        ["20:18: invalid YAML: while scanning a simple key (from line 18, column 5) could not "
         "find expected ':'; fix the syntax here"],
        id="syntax-error",
    ),
    pytest.param(
        PRIORITY.replace("{add_score: 30}", '{add_score: "lots"}'),
        ["9:13: add_score takes a whole number from -1000 to 1000, not 'lots'"],
        id="wrong-type",
    ),
    pytest.param(
        CLASSIFICATION.replace("- set_queue: facilities", "- set_queu: facilities"),
        ["20:9: unknown action 'set_queu'; did you mean 'set_queue'?; a ClassificationRules "
         "rule may: set_category, set_queue, set_skills, add_tags, suppress, notify, open_ticket"],
        id="unknown-action",
    ),
    pytest.param(
        CLASSIFICATION.replace("- problem_type: {in:", "- problem_typ: {in:"),
        ["17:11: unknown field 'problem_typ'; did you mean 'problem_type'? (`fieldloop rules "
         "fields` lists them)"],
        id="unknown-field",
    ),
    pytest.param(
        CLASSIFICATION.replace("text: {contains_any: [漏水", "text: {contain_any: [漏水"),
        ["16:18: unknown operator 'contain_any'; did you mean 'contains_any'?; use one of "
         "contains_any, eq, exists, in, matches, ne, not_in"],
        id="unknown-op",
    ),
    pytest.param(
        PRIORITY.replace("{urgency: {in: [critical, high]}}", "{reopened: {eq: on}}"),
        ["8:23: reopened is true or false; 'on' is not",
         "8:27: 'on' means true/false in YAML 1.1 but text in YAML 1.2, so tools disagree "
         'about it; quote it ("on") if you mean the word, or write true/false'],
        id="yaml11-on",
    ),
    pytest.param(
        CLASSIFICATION.replace("input: {title: 卫生间漏水, urgency: high}",
                               "input: {title: 卫生间漏水, reopened: no}"),
        ["27:37: 'no' means true/false in YAML 1.1 but text in YAML 1.2, so tools disagree "
         'about it; quote it ("no") if you mean the word, or write true/false',
         "27:27: test 'a leak in Chinese': reopened takes true or false, not 'no'"],
        id="yaml11-no",
    ),
    pytest.param(
        CLASSIFICATION.replace("urgency: high}", "site: 1:30}"),
        ['27:33: \'1:30\' is a base-60 number in YAML 1.1 (1:30 is 90) but text in YAML 1.2; '
         'quote it ("1:30")'],
        id="sexagesimal",
    ),
    pytest.param(
        CLASSIFICATION.replace("      - set_queue: dispatch\n",
                               "      - set_queue: dispatch\n    id: fallback\n"),
        ["25:5: duplicate key 'id': it is already at line 21, column 5; keep one of them (YAML "
         "would silently keep only one value)"],
        id="duplicate-key",
    ),
    pytest.param(
        CLASSIFICATION.replace("  - id: catch-all\n", """\
  - id: leaking.pipe
    when: {all: [{text: {contains_any: [pipe]}}, {text: {contains_any: [leaking]}}]}
    then: [{set_category: pipes}]
  - id: catch-all
"""),
        ["21:5: rule 'leaking.pipe' can never match (first hit wins): every ticket it matches "
         "also matches rule 'water.leak' (line 13), which comes first; move 'leaking.pipe' above "
         "'water.leak' if it is the more specific rule"],
        id="shadowed-rule",
    ),
    pytest.param(
        CLASSIFICATION.replace("  - id: catch-all\n    then:", "  - id: catch-all\n"
                               "    when: {urgency: {eq: low}}\n    then:"),
        ["21:5: no catch-all: a ticket that matches no rule gets no category or queue; add a "
         "last rule without `when`, e.g. `- id: catch-all` with `then: [{set_category: "
         "general}, {set_queue: dispatch}]`"],
        id="missing-catch-all",
    ),
    pytest.param(
        PRIORITY.replace("{band: P2, min: 50, below: 80}", "{band: P2, min: 55, below: 80}"),
        ["12:16: gap: scores 50 to 54 fall in no band; set P2's min to 50 or P3's below to 55"],
        id="band-gap",
    ),
    pytest.param(
        PRIORITY.replace("{band: P1, min: 80}", "{band: P1, min: 70}"),
        ["11:16: overlap: scores 70 to 79 fall in both P2 and P1; set P2's below to 70"],
        id="band-overlap",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_bad_files_are_refused_at_file_line_col(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: list[str]
) -> None:
    _, problems = refused(tmp_path, capsys, text)
    assert sorted(problems) == sorted(expected)


def test_every_file_is_checked_and_the_summary_counts_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_text(PRIORITY, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(PRIORITY.replace("min: 80", "min: 81"), encoding="utf-8")
    (tmp_path / "c.yaml").write_text("kind: Nonsense\n", encoding="utf-8")
    assert main(["rules", "check", str(tmp_path), str(tmp_path / "missing.yaml")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"Checking {tmp_path / 'a.yaml'}  SUCCESS"
    assert f"Checking {tmp_path / 'b.yaml'}  FAILED: 1 problem(s)" in out
    assert f"Checking {tmp_path / 'c.yaml'}  FAILED: 1 problem(s)" in out
    assert f"Checking {tmp_path / 'missing.yaml'}  FAILED: 1 problem(s)" in out
    assert out[-1] == "1 of 4 file(s) OK"


def test_a_directory_without_rule_files_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "check", str(tmp_path)]) == 1
    assert f"no *.yaml files in {tmp_path}" in capsys.readouterr().err


def test_rules_test_passes_and_fails_per_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "classification.yaml"
    good.write_text(CLASSIFICATION, encoding="utf-8")
    (tmp_path / "priority.yaml").write_text(PRIORITY, encoding="utf-8")
    assert main(["rules", "test", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"PASS [reference] {good}:26:5: test 'a leak in Chinese'",
        f"PASS [durable-rules] {good}:26:5: test 'a leak in Chinese'",
        f"Testing {tmp_path / 'priority.yaml'}  no tests",
        "reference: 1 test(s), 1 passed, 0 failed",
        "durable-rules: 1 test(s), 1 passed, 0 failed",
    ]

    good.write_text(
        CLASSIFICATION
        + "  - name: a burst pipe\n    input: {title: burst pipe}\n"
        + "    expect: {category: plumbing}\n",
        encoding="utf-8",
    )
    assert main(["rules", "test", str(good)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"PASS [reference] {good}:26:5: test 'a leak in Chinese'",
        f"FAIL [reference] {good}:29:5: test 'a burst pipe': expected category plumbing, "
        "got general (rule catch-all)",
        f"PASS [durable-rules] {good}:26:5: test 'a leak in Chinese'",
        f"FAIL [durable-rules] {good}:29:5: test 'a burst pipe': expected category plumbing, "
        "got general (rule catch-all)",
        "reference: 2 test(s), 1 passed, 1 failed",
        "durable-rules: 2 test(s), 1 passed, 1 failed",
    ]


def test_rules_test_refuses_a_file_that_does_not_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text(CLASSIFICATION.replace("set_queue: dispatch", "set_queue: [x]"), "utf-8")
    assert main(["rules", "test", str(bad), str(REPO / "rules/detection.yaml")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{bad}:24:9: set_queue is a name")
    assert f"Testing {bad}  FAILED: the file does not load; fix it first" in out
    detection = REPO / "rules/detection.yaml"
    assert f"Testing {detection}  no tests (DetectionRules files have none)" in out
    assert out[-1] == "1 file(s) could not be loaded"


def test_rules_fields_lists_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "fields"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["FIELD", "TYPE", "DESCRIPTION", "VALUES"]
    urgency = next(x for x in out if x.startswith("urgency "))
    assert urgency.split()[:2] == ["urgency", "keyword"] and "as reported" in urgency
    assert urgency.index("critical, high, medium, low") == out[0].index("VALUES")
    assert any(x.split()[:2] == ["fault.value", "number"] for x in out)
