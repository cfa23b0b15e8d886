"""fieldloop.detection: durations, threshold rules and the rules file."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from fieldloop.detection import (
    DetectionFile,
    ThresholdRule,
    default_detection_file,
    load_detection,
    parse_duration,
)
from fieldloop.messages import Severity
from fieldloop.yamlfile import FileError, FileProblem

REPO = Path(__file__).resolve().parents[3]
SHIPPED_RULES = REPO / "rules" / "detection.yaml"

HEAD = """\
apiVersion: fieldloop/v1
kind: DetectionRules
rules:
"""  # the first rule starts on line 4


def rule_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "id": "r1",
        "title": "t",
        "profile": "chiller",
        "metric": "discharge_temp",
        "above": 95.0,
    }
    spec.update(overrides)
    return {k: v for k, v in spec.items() if v is not None}


def write_rules(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "detection.yaml"
    path.write_text(HEAD + body, encoding="utf-8")
    return path


def only_problem(exc: pytest.ExceptionInfo[FileError]) -> FileProblem:
    assert len(exc.value.problems) == 1, exc.value.problems
    return exc.value.problems[0]


# ---------------------------------------------------------------- parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("5s", 5.0),
        ("2m", 120.0),
        ("1.5h", 5400.0),
        ("1d", 86400.0),
        ("0s", 0.0),
        ("90s", 90.0),
        (" 30 s ", 30.0),
        ("0.5m", 30.0),
        ("1000ms", 1.0),
        (30, 30.0),
        (0, 0.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration(text, seconds):
    got = parse_duration(text)
    assert isinstance(got, float)
    assert got == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "5", "five seconds", "5 sec", "5S", "5x", "s", "1e3s", ".5s", "5s5", "1h30m"]
)
def test_parse_duration_rejects_bad_text(text):
    with pytest.raises(ValueError, match="is not a duration; write it like 30s, 5m"):
        parse_duration(text)


@pytest.mark.parametrize("value", [-1, -0.001, "-5s"])
def test_parse_duration_rejects_negative(value):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


def test_parse_duration_negative_number_message():
    with pytest.raises(ValueError, match="not negative"):
        parse_duration(-3)


@pytest.mark.parametrize("value", [True, False])
def test_parse_duration_rejects_booleans(value):
    with pytest.raises(ValueError, match="number of seconds"):
        parse_duration(value)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_parse_duration_rejects_non_finite(value):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


# ---------------------------------------------------------------- ThresholdRule


def test_rule_for_alias_and_defaults():
    r = ThresholdRule.model_validate(rule_spec(**{"for": "2m"}))
    assert r.for_ == 120.0
    assert r.type == "threshold"
    assert r.severity is Severity.major
    assert r.threshold == 95.0
    assert r.clear_below is None
    assert ThresholdRule.model_validate(rule_spec()).for_ == 0.0


def test_rule_threshold_of_a_below_rule():
    r = ThresholdRule.model_validate(rule_spec(above=None, below=4.0, clear_above=5.0))
    assert r.threshold == 4.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"below": 3.0}, "give exactly one of above or below"),
        ({"above": None}, "give exactly one of above or below"),
        ({"clear_below": 96.0}, "clear_below (96.0) must not be above 'above' (95.0)"),
        ({"clear_above": 90.0}, "clears with clear_below, not clear_above"),
        ({"above": None, "below": 4.0, "clear_below": 3.0}, "clears with clear_above"),
        (
            {"above": None, "below": 4.0, "clear_above": 3.0},
            "clear_above (3.0) must not be below 'below' (4.0)",
        ),
        ({"for": "soon"}, "is not a duration"),
        ({"severity": "catastrophic"}, "severity"),
        ({"id": "has space"}, "id"),
        ({"title": ""}, "title"),
        ({"type": "rate_of_change"}, "type"),
        ({"fro": "5s"}, "fro"),
    ],
)
def test_invalid_rules(overrides, message):
    with pytest.raises(ValidationError) as exc:
        ThresholdRule.model_validate(rule_spec(**overrides))
    assert message in str(exc.value)


def test_clear_level_equal_to_threshold_is_allowed():
    assert ThresholdRule.model_validate(rule_spec(clear_below=95.0)).clear_below == 95.0


# ---------------------------------------------------------------- the rules file


def test_shipped_rules_load():
    rules = load_detection(SHIPPED_RULES)
    assert isinstance(rules, DetectionFile)
    (r,) = rules.rules
    assert r.id == "chiller.discharge_temp.high"
    assert (r.profile, r.metric) == ("chiller", "discharge_temp")
    assert (r.above, r.below, r.clear_below) == (95.0, None, 90.0)
    assert r.for_ == 5.0
    assert r.severity is Severity.major
    assert "压缩机排气温度过高" in r.title


def test_default_detection_file_is_the_shipped_one(monkeypatch):
    monkeypatch.delenv("FIELDLOOP_DETECTION_RULES", raising=False)
    assert default_detection_file() == SHIPPED_RULES
    assert load_detection() == load_detection(SHIPPED_RULES)


def test_default_detection_file_honours_the_environment(monkeypatch, tmp_path):
    path = write_rules(tmp_path, "  - {id: x, title: t, profile: p, metric: m, below: 1}\n")
    monkeypatch.setenv("FIELDLOOP_DETECTION_RULES", str(path))
    assert default_detection_file() == path
    assert [r.id for r in load_detection().rules] == ["x"]


def test_empty_rule_list_is_valid(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("apiVersion: fieldloop/v1\nkind: DetectionRules\n")
    assert load_detection(path).rules == []


def test_rule_with_both_above_and_below(tmp_path):
    path = write_rules(
        tmp_path,
        "  - id: r1\n"  # 4
        "    title: t\n"
        "    profile: chiller\n"
        "    metric: m\n"
        "    above: 5\n"
        "    below: 3\n",
    )
    with pytest.raises(FileError) as exc:
        load_detection(path)
    p = only_problem(exc)
    assert (p.path, p.line, p.col) == (str(path), 4, 5)
    assert p.message == "rules.0: give exactly one of above or below"
    assert str(exc.value) == f"{path}:4:5: rules.0: give exactly one of above or below"


def test_clear_below_above_the_threshold(tmp_path):
    path = write_rules(
        tmp_path,
        "  - id: ok\n"  # 4
        "    title: t\n"
        "    profile: chiller\n"
        "    metric: m\n"
        "    above: 5\n"
        "  - id: r2\n"  # 9
        "    title: t\n"
        "    profile: chiller\n"
        "    metric: m\n"
        "    above: 95\n"
        "    clear_below: 97\n",
    )
    with pytest.raises(FileError) as exc:
        load_detection(path)
    p = only_problem(exc)
    assert (p.line, p.col) == (9, 5)
    assert "rules.1: clear_below (97.0) must not be above 'above' (95.0)" in p.message


def test_unknown_key_in_a_rule(tmp_path):
    path = write_rules(
        tmp_path,
        "  - id: r1\n"
        "    title: t\n"
        "    profile: chiller\n"
        "    metric: m\n"
        "    above: 5\n"
        "    clear_belw: 4\n",  # 9
    )
    with pytest.raises(FileError) as exc:
        load_detection(path)
    p = only_problem(exc)
    assert (p.line, p.col) == (9, 5)
    assert "unknown key 'clear_belw'; did you mean 'clear_below'?" in p.message
    assert "for" in p.message  # allowed keys are listed by their YAML names


def test_misspelt_for_suggests_the_alias(tmp_path):
    path = write_rules(
        tmp_path,
        "  - {id: r1, title: t, profile: chiller, metric: m, above: 5,\n     fr: 5s}\n",  # 5
    )
    with pytest.raises(FileError) as exc:
        load_detection(path)
    p = only_problem(exc)
    assert p.line == 5
    assert "did you mean 'for'?" in p.message


def test_bad_duration_points_at_for(tmp_path):
    path = write_rules(
        tmp_path,
        "  - id: r1\n"
        "    title: t\n"
        "    profile: chiller\n"
        "    metric: m\n"
        "    above: 5\n"
        "    for: 5 minutes\n",  # 9
    )
    with pytest.raises(FileError) as exc:
        load_detection(path)
    p = only_problem(exc)
    assert (p.line, p.col) == (9, 5)
    assert p.message.startswith("rules.0.for: ")
    assert "'5 minutes' is not a duration" in p.message


def test_negative_duration_in_file(tmp_path):
    path = write_rules(
        tmp_path, "  - {id: r1, title: t, profile: chiller, metric: m, above: 5, for: -2}\n"
    )
    with pytest.raises(FileError) as exc:
        load_detection(path)
    p = only_problem(exc)
    assert p.line == 4
    assert "not negative" in p.message


def test_duplicate_rule_ids(tmp_path):
    path = write_rules(
        tmp_path,
        "  - {id: r1, title: t, profile: chiller, metric: m, above: 5}\n"
        "  - {id: r2, title: t, profile: chiller, metric: m, above: 6}\n"
        "  - {id: r1, title: t, profile: chiller, metric: n, above: 7}\n",
    )
    with pytest.raises(FileError) as exc:
        load_detection(path)
    p = only_problem(exc)
    assert p.path == str(path)
    assert p.line >= 1
    assert p.col >= 1
    assert "rule id 'r1' is used twice" in p.message


def test_wrong_kind(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("apiVersion: fieldloop/v1\nkind: DeviceProfile\nrules: []\n")
    with pytest.raises(FileError) as exc:
        load_detection(path)
    p = only_problem(exc)
    assert (p.line, p.col) == (2, 1)
    assert p.message.startswith("kind: ")
    assert "'DeviceProfile'" in p.message


def test_several_bad_rules_are_all_reported(tmp_path):
    path = write_rules(
        tmp_path,
        "  - {id: a, title: t, profile: p, metric: m, above: 1, below: 0}\n"  # 4
        "  - {id: b, title: t, profile: p, metric: m, above: 1, for: 1y}\n"  # 5
        "  - {id: c, title: t, profile: p, metric: m, above: 1, colour: red}\n",  # 6
    )
    with pytest.raises(FileError) as exc:
        load_detection(path)
    assert sorted(p.line for p in exc.value.problems) == [4, 5, 6]


@pytest.mark.parametrize("field", ["for: .nan", "for: .inf", "above: .nan"])
def test_non_finite_rule_values_in_file_are_rejected(tmp_path, field):
    path = write_rules(
        tmp_path,
        "  - id: r1\n"
        "    title: t\n"
        "    profile: chiller\n"
        "    metric: m\n"
        + ("    above: 5\n" if not field.startswith("above") else "")
        + f"    {field}\n",
    )
    with pytest.raises(FileError):
        load_detection(path)
