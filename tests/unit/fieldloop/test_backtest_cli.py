"""fieldloop.backtest_cli: the flags of `fieldloop rules replay --detection` (which go together,
which do not, and what each error says), the base rules from a file, a directory or a git ref,
the window, and the text the planner reads. In-process; no database is opened."""

from __future__ import annotations

import argparse
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.backtest import backtest, untested
from edge_agent.readings import Reading
from fieldloop.backtest_cli import (
    FlagError,
    Window,
    as_json,
    as_text,
    base_rules,
    rules_at_git_ref,
    window,
)
from fieldloop.cli import build_parser, main
from fieldloop.detection import load_detection
from fieldloop.yamlfile import FileError

RULES = """\
apiVersion: fieldloop/v1
kind: DetectionRules
rules:
  - id: chiller.discharge_temp.high
    title: Discharge temperature high
    profile: chiller
    metric: discharge_temp
    above: 95.0
    for: 5s
"""
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def cand(tmp_path: Path) -> Path:
    path = tmp_path / "candidate.yaml"
    path.write_text(RULES, encoding="utf-8")
    return path


def replay(*argv: str | Path) -> list[str]:
    return ["rules", "replay", *map(str, argv)]


def args(*argv: str | Path) -> argparse.Namespace:
    return build_parser().parse_args(replay(*argv))


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        ((), "--db: a detection backtest replays the readings of this database URL"),
        (("--db", "sqlite://", "--events", "e.jsonl"), "--events: not with --detection"),
        (("--db", "sqlite://", "--candidate", "rules"), "--candidate: not with --detection (the "
         "candidate detection file is --detection FILE)"),
        (("--db", "sqlite://", "--fail-if", "changed > 0"), "--fail-if: not with --detection"),
        (("--db", "sqlite://", "--show", "-1"), "--show: -1 is negative"),
        (("--db", "sqlite://", "--site", "deploy/sites/demo.yaml"),
         "--site: 'deploy/sites/demo.yaml' looks like a file; --site takes a site id to replay, "
         "the edge's site file goes to --site-file"),
        (("--db", "sqlite://", "--from", "2026-11-01", "--to", "2026-10-01"),
         "--from: the window 2026-11-01T00:00:00Z .. 2026-10-01T00:00:00Z is empty"),
        (("--db", "sqlite://", "--base", "no-such-ref"), "--base: 'no-such-ref' is not a file, a "
         "directory, or a git ref of"),
    ],
)  # fmt: skip
def test_a_wrong_flag_exits_2_naming_it(
    cand: Path, extra: tuple[str, ...], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(replay("--detection", cand, *extra)) == 2
    err = capsys.readouterr().err
    assert f"fieldloop rules replay: {said}" in err


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (("--days", "0"), "argument --days: 0 must be greater than 0"),
        (("--from", "last tuesday"), "argument --from: 'last tuesday' is not a date or ISO time"),
        (("--from", "2026-10-01", "--days", "7"), "argument --days: not allowed with argument "
         "--from"),
    ],
)  # fmt: skip
def test_argparse_refuses_what_it_can_with_exit_2(
    cand: Path, extra: tuple[str, ...], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(replay("--detection", cand, "--db", "sqlite://", *extra))
    assert exit_.value.code == 2
    assert said in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (("--base", "rules", "--db", "sqlite://", "--days", "7"),
         "--days is for a detection backtest: add --detection FILE, or leave it out"),
        (("--base", "rules", "--db", "sqlite://", "--site-file", "s.yaml"),
         "--site-file is for a detection backtest"),
        (("--db", "sqlite://"), "--base is required"),
    ],
)  # fmt: skip
def test_a_decision_rule_replay_refuses_the_backtest_flags(
    argv: tuple[str, ...], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(replay(*argv)) == 2
    assert said in capsys.readouterr().err


def test_a_wrong_rule_file_is_reported_at_its_line_and_column(
    tmp_path: Path, cand: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cand.write_text(RULES.replace("for: 5s", "for: 5 sec"), encoding="utf-8")
    assert main(replay("--detection", cand, "--db", "sqlite://")) == 2
    err = capsys.readouterr().err
    assert "fieldloop rules replay: a rule or site file is wrong:" in err
    assert f"{cand}:9:5: rules.0.for: '5 sec' is not a duration" in err
    # the base too, and a site file
    base = tmp_path / "base.yaml"
    base.write_text(RULES.replace("profile: chiller", "profile: [chiller]"), encoding="utf-8")
    cand.write_text(RULES, encoding="utf-8")
    assert main(replay("--detection", cand, "--base", base, "--db", "sqlite://")) == 2
    assert f"{base}:6:5: rules.0.profile: Input should be a valid string" in capsys.readouterr().err
    site = tmp_path / "site.yaml"
    site.write_text("apiVersion: fieldloop/v1\nkind: Site\nsite: a\ndevices: []\n", "utf-8")
    assert main(replay("--detection", cand, "--site-file", site, "--db", "sqlite://")) == 2
    assert f"{site}:4:1: devices: List should have at least 1 item" in capsys.readouterr().err


def test_the_base_is_the_live_file_unless_given(
    tmp_path: Path, cand: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = tmp_path / "live.yaml"
    live.write_text(RULES.replace("95.0", "97.0"), encoding="utf-8")
    monkeypatch.setenv("FIELDLOOP_DETECTION_RULES", str(live))
    label, rules = base_rules(None, tmp_path)
    assert (label, rules.rules[0].threshold) == (str(live), 97.0)
    label, rules = base_rules(str(cand), tmp_path)  # a file
    assert (label, rules.rules[0].threshold) == (str(cand), 95.0)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "detection.yaml").write_text(RULES, encoding="utf-8")
    label, rules = base_rules(str(tmp_path / "dir"), tmp_path)  # a directory's detection.yaml
    assert rules.rules[0].threshold == 95.0


def git(repo: Path, *argv: str) -> None:
    subprocess.run(["git", "-C", str(repo), *argv], check=True, capture_output=True)


def test_the_base_at_a_git_ref_with_errors_pointing_into_it(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "rules").mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / "rules" / "detection.yaml").write_text(RULES, encoding="utf-8")
    (repo / "other.yaml").write_text(RULES.replace("for: 5s", "fr: 5s"), encoding="utf-8")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "rules")
    (repo / "rules" / "detection.yaml").write_text("changed since", encoding="utf-8")

    assert rules_at_git_ref("HEAD", repo).rules[0].threshold == 95.0
    label, _ = base_rules("HEAD", repo)
    assert label == "HEAD:rules/detection.yaml"
    with pytest.raises(FileError) as err:
        rules_at_git_ref("HEAD:other.yaml", repo)
    assert str(err.value).startswith("HEAD:other.yaml:9:5: unknown key 'fr'")
    with pytest.raises(FlagError, match=r"--base: 'HEAD:gone.yaml' is not a file, .* gone.yaml"):
        rules_at_git_ref("HEAD:gone.yaml", repo)


def test_the_window_is_30_days_to_now_unless_given() -> None:
    assert window(args("--detection", "x"), NOW) == Window(NOW - timedelta(days=30), NOW)
    w = window(args("--detection", "x", "--days", "1.5", "--to", "2026-10-02T12:00"), NOW)
    assert w == Window(datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 2, 12, tzinfo=UTC))
    w = window(args("--detection", "x", "--from", "2026-10-01T08:00+08:00"), NOW)
    assert w == Window(datetime(2026, 10, 1, tzinfo=UTC), NOW)
    assert str(w) == "2026-10-01T00:00:00Z .. 2026-11-01T12:00:00Z"


def test_the_text_lists_the_differences_then_the_table_then_the_summary(tmp_path: Path) -> None:
    base_file = tmp_path / "base.yaml"
    base_file.write_text(RULES, encoding="utf-8")
    cand_file = tmp_path / "cand.yaml"
    cand_file.write_text(RULES.replace("95.0", "92.0"), encoding="utf-8")
    t0 = datetime(2026, 10, 1, tzinfo=UTC)
    values = [85.0] * 10 + [93.5] * 10 + [85.0] * 10 + [97.0] * 10 + [85.0] * 10 + [93.5] * 10
    readings = [
        ("plant-a", Reading("chiller-1", "CH-01", "discharge_temp", t0 + timedelta(seconds=i), v))
        for i, v in enumerate(values)
    ]
    readings.append(("plant-a", Reading("pump-9", "P-09", "discharge_temp", t0, 1.0)))
    report = backtest(load_detection(base_file), load_detection(cand_file), readings,
                      {("plant-a", "chiller-1"): "chiller"})  # fmt: skip
    span = Window(t0, t0 + timedelta(days=1))
    lines = as_text(report, span, "base.yaml", "cand.yaml", show=1)
    assert lines == [
        "ONLY CANDIDATE  2026-10-01T00:00:15Z  plant-a/CH-01 (chiller-1)  "
        "chiller.discharge_temp.high  fault_opened  discharge_temp 93.5 (threshold 92)",
        "... and 2 more (--show N prints more, --json all)",
        "",
        "RULE                         SITE     ASSET  EVENT          BASE  CANDIDATE  ONLY BASE  "
        "ONLY CANDIDATE",
        "chiller.discharge_temp.high  plant-a  CH-01  fault_opened      1          3          0  "
        "             2",
        "chiller.discharge_temp.high  plant-a  CH-01  fault_cleared     1          2          0  "
        "             1",
        "skipped 1 device(s) with no known profile (1 reading(s)): plant-a/pump-9; their edges "
        "have not reported one: give their site's file with --site-file",
        "backtest 2026-10-01T00:00:00Z .. 2026-10-02T00:00:00Z: 1 device(s), 60 reading(s); base "
        "raised 2 event(s), candidate 5; 3 only by the candidate, 0 only by the base; base "
        "base.yaml, candidate cand.yaml",
    ]  # fmt: skip
    doc = as_json(report, span, "base.yaml", "cand.yaml", {"reported": 1, "site_file": 0})
    assert [(e["kind"], e["time"], e["value"], e["threshold"])
            for e in doc["only_candidate"]] == [
        ("fault_opened", "2026-10-01T00:00:15Z", 93.5, 92.0),  # 5 s after it crossed 92
        ("fault_cleared", "2026-10-01T00:00:20Z", 85.0, 92.0),
        ("fault_opened", "2026-10-01T00:00:55Z", 93.5, 92.0),
    ]  # fmt: skip
    assert doc["only_base"] == []
    assert doc["rules"][0] == {
        "rule": "chiller.discharge_temp.high", "site": "plant-a", "asset": "CH-01",
        "kind": "fault_opened", "base": 1, "candidate": 3, "only_base": 0, "only_candidate": 2,
    }  # fmt: skip


def test_identical_rules_print_no_difference_lines(tmp_path: Path, cand: Path) -> None:
    rules = load_detection(cand)
    t0 = datetime(2026, 10, 1, tzinfo=UTC)
    readings = [("s", Reading("d", "a", "discharge_temp", t0 + timedelta(seconds=i), 99.0))
                for i in range(10)]  # fmt: skip
    report = backtest(rules, rules, readings, {("s", "d"): "chiller"})
    lines = as_text(report, Window(t0, t0 + timedelta(days=1)), "a", "b", show=50)
    assert not any(line.startswith("ONLY") for line in lines)
    assert lines[-1].endswith("base raised 1 event(s), candidate 1; 0 only by the candidate, "
                              "0 only by the base; base a, candidate b")  # fmt: skip


def test_a_changed_rule_no_reading_tested_is_said(tmp_path: Path, cand: Path) -> None:
    base = load_detection(cand)
    typo = tmp_path / "typo.yaml"
    typo.write_text(RULES.replace("metric: discharge_temp", "metric: dischrge_temp"), "utf-8")
    candidate = load_detection(typo)
    t0 = datetime(2026, 10, 1, tzinfo=UTC)
    readings = [("s", Reading("d", "a", "discharge_temp", t0, 99.0))]
    report = backtest(base, candidate, readings, {("s", "d"): "chiller"})
    silent = untested(base, candidate, report)
    span = Window(t0, t0 + timedelta(days=1))
    lines = as_text(report, span, "a", "b", show=50, untested=silent)
    assert lines[-2] == (
        "NOT TESTED: no readings for the candidate's new or changed rule(s) "
        "chiller.discharge_temp.high (profile chiller, metric dischrge_temp): check their "
        "profile and metric names, and --site, --device and --asset"
    )
    doc = as_json(report, span, "a", "b", {}, silent)
    assert doc["untested"] == ["chiller.discharge_temp.high"]
