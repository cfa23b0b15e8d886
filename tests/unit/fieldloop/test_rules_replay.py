"""fieldloop.rules.replay: what a candidate rule set would change, from recorded facts, a git
ref or a directory as the base; nothing written."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fieldloop.messages import Event, EventKind, Severity
from fieldloop.rules.replay import (
    facts_of_events,
    fails,
    load_sets,
    parse_fail_if,
    replay,
    sets_at_git_ref,
)

CLASSIFICATION = """\
apiVersion: fieldloop/v1
kind: ClassificationRules
rules:
  - id: water.leak
    when: {text: {contains_any: [漏水, leak]}}
    then: [{set_category: plumbing}, {set_queue: facilities}]
  - id: chiller
    when: {fault.code: {matches: "^chiller[.]"}}
    then: [{set_category: hvac}, {set_queue: hvac}]
  - id: catch-all
    then: [{set_category: general}, {set_queue: dispatch}]
"""
PRIORITY = """\
apiVersion: fieldloop/v1
kind: PriorityRules
rules:
  - id: urgent
    when: {urgency: {in: [critical, high]}}
    then: [{add_score: 60}]
bands:
  - {band: P1, min: 80}
  - {band: P2, min: 50, below: 80}
  - {band: P4, below: 50}
"""

RECORDED = [
    ("ticket #1", {"title": "卫生间漏水", "urgency": "high"}),
    ("ticket #2", {"title": "空调不制冷", "urgency": "low"}),
    ("ticket #3", {"title": "water leak in lobby", "urgency": "medium"}),
    ("ticket #4", {"title": "门锁坏了", "urgency": "high"}),
]


def rules(tmp_path: Path, name: str, classification: str, priority: str = PRIORITY) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "classification.yaml").write_text(classification, encoding="utf-8")
    (d / "priority.yaml").write_text(priority, encoding="utf-8")
    return d


def test_changed_outcomes_are_listed_with_the_deciding_rules(tmp_path: Path) -> None:
    base = load_sets("base", rules(tmp_path, "a", CLASSIFICATION))
    cand_text = CLASSIFICATION.replace("[漏水, leak]", "[漏水]").replace(
        "  - id: catch-all", "  - id: hvac.words\n    when: {text: {contains_any: [空调]}}\n"
        "    then: [{set_category: hvac}, {set_queue: hvac}]\n  - id: catch-all"
    )  # fmt: skip
    cand = load_sets("candidate", rules(tmp_path, "b", cand_text))
    report = replay(base, cand, RECORDED)
    assert report.total == 4
    assert [(c.ref, c.fields) for c in report.changes] == [
        ("ticket #2", ("category", "queue")),
        ("ticket #3", ("category", "queue")),
    ]
    two = report.changes[0]
    assert (two.base.rule, two.candidate.rule) == ("catch-all", "hvac.words")
    assert report.by_field == {"category": 2, "queue": 2}
    assert report.changed_share == 0.5
    assert fails(report, parse_fail_if("changed > 5%"))
    assert not fails(report, parse_fail_if("changed > 50%"))
    assert fails(report, parse_fail_if("changed >= 2"))
    assert replay(base, base, RECORDED).changes == []


@pytest.mark.parametrize("bad", ["changes > 5%", "changed < 5", "changed > five", ""])
def test_fail_if_says_how_to_write_it(bad: str) -> None:
    with pytest.raises(ValueError, match="changed > 5%"):
        parse_fail_if(bad)


def test_the_base_can_be_a_git_ref(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "rules").mkdir(parents=True)
    (repo / "rules" / "classification.yaml").write_text(CLASSIFICATION, encoding="utf-8")
    (repo / "rules" / "priority.yaml").write_text(PRIORITY, encoding="utf-8")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@x"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "rules"], check=True)
    (repo / "rules" / "classification.yaml").write_text(
        CLASSIFICATION.replace("set_queue: facilities", "set_queue: plumbing"), encoding="utf-8"
    )
    base = sets_at_git_ref("HEAD", repo, "rules", tmp_path / "base")
    cand = load_sets("working copy", repo / "rules")
    report = replay(base, cand, RECORDED)
    assert [(c.ref, c.fields) for c in report.changes] == [
        ("ticket #1", ("queue",)),
        ("ticket #3", ("queue",)),
    ]
    with pytest.raises(ValueError, match="--base nope"):
        sets_at_git_ref("nope", repo, "rules", tmp_path / "x")


def test_recorded_edge_events_replay_on_their_own_clock() -> None:
    opened = Event(
        site="plant-1", device="ch-1", asset="CH-01",
        event_time=datetime(2026, 11, 29, 3, 0, tzinfo=UTC), seq=1,
        kind=EventKind.fault_opened, rule_id="chiller.discharge_temp.high",
        title="Discharge temperature high", severity=Severity.major, value=97.0,
    )  # fmt: skip
    cleared = opened.model_copy(update={"kind": EventKind.fault_cleared, "seq": 2, "id": "x" * 26})
    lines = [opened.to_json().decode(), "", cleared.to_json().decode()]
    [(ref, facts)] = list(facts_of_events(lines, "events.jsonl"))
    assert ref.startswith(f"event {opened.id}")
    assert (facts["fault.code"], facts["hour"], facts["weekday"]) == (
        "chiller.discharge_temp.high", 3, 7,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"events.jsonl:1: not an edge event"):
        list(facts_of_events(["{nope"], "events.jsonl"))
