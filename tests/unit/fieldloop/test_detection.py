"""fieldloop.detection: durations, threshold rules and the rules file."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from fieldloop.detection import (
    CounterRule,
    DetectionFile,
    Flapping,
    ImplausibleRule,
    RateOfChangeRule,
    StuckRule,
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
    r = rules.rules[0]
    assert [type(x) for x in rules.rules] == [
        ThresholdRule,
        CounterRule,
        StuckRule,
        ImplausibleRule,
    ]
    assert {x.profile for x in rules.rules} == {"chiller"}
    assert isinstance(r, ThresholdRule)
    assert r.id == "chiller.discharge_temp.high"
    assert (r.profile, r.metric) == ("chiller", "discharge_temp")
    assert (r.above, r.below, r.clear_below) == (95.0, None, 90.0)
    assert r.for_ == 5.0
    assert r.severity is Severity.major
    assert "压缩机排气温度过高" in r.title
    assert r.cooldown == 30.0
    assert r.flapping == Flapping(transitions=6, window=180.0)


def test_shipped_example_rules_stay_valid(tmp_path):
    """The commented-out examples in the shipped file load once uncommented."""
    text = SHIPPED_RULES.read_text(encoding="utf-8")
    block = text.split("# --- examples\n")[1].split("# --- end of examples")[0]
    uncommented = "".join(line[1:] + "\n" for line in block.splitlines())
    path = tmp_path / "detection.yaml"
    path.write_text(text + uncommented, encoding="utf-8")
    rules = load_detection(path)
    assert [type(r) for r in rules.rules] == [
        ThresholdRule,
        CounterRule,
        StuckRule,
        ImplausibleRule,
        RateOfChangeRule,
    ]
    assert {r.profile for r in rules.rules} == {"chiller"}


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


# ---------------------------------------------------------------- rule types


def typed(rule_type: str, **fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "id": "r1",
        "type": rule_type,
        "title": "t",
        "profile": "chiller",
        "metric": "m",
    }
    spec.update(fields)
    return spec


def load_rules(*rules: dict[str, Any]) -> DetectionFile:
    return DetectionFile.model_validate(
        {"apiVersion": "fieldloop/v1", "kind": "DetectionRules", "rules": list(rules)}
    )


def test_type_defaults_to_threshold_in_the_file(tmp_path):
    path = write_rules(tmp_path, "  - {id: x, title: t, profile: p, metric: m, above: 1}\n")
    (r,) = load_detection(path).rules
    assert isinstance(r, ThresholdRule)
    assert r.type == "threshold"


def test_every_rule_type_loads_from_yaml_with_its_defaults(tmp_path):
    path = write_rules(
        tmp_path,
        "  - {id: t, title: t, profile: p, metric: a, type: threshold, below: 4}\n"
        "  - {id: r, title: t, profile: p, metric: a, type: rate_of_change, rise: 0.5,"
        " window: 30s}\n"
        "  - {id: c, title: t, profile: p, metric: h, type: counter, every: 2000}\n"
        "  - {id: s, title: t, profile: p, metric: a, type: stuck, for: 30m}\n"
        "  - {id: i, title: t, profile: p, metric: a, type: implausible}\n",
    )
    t, r, c, s, i = load_detection(path).rules
    assert isinstance(t, ThresholdRule)
    assert (t.cooldown, t.flapping, t.severity) == (0.0, None, Severity.major)
    assert isinstance(r, RateOfChangeRule)
    assert (r.rise, r.fall, r.max_rate, r.window) == (0.5, None, None, 30.0)
    assert isinstance(c, CounterRule)
    assert (c.every, c.first_due) == (2000.0, None)
    assert isinstance(s, StuckRule)
    assert (s.for_, s.epsilon) == (1800.0, 0.0)
    assert isinstance(i, ImplausibleRule)
    assert (i.min, i.max, i.for_) == (None, None, 0.0)


def test_common_keys_on_every_episode_rule_type():
    common = {
        "severity": "minor",
        "cooldown": "2m",
        "flapping": {"transitions": 3, "window": "10m"},
        "title": "排气温度传感器故障 / sensor fault",
    }
    rules = load_rules(
        typed("threshold", id="a", above=1, **common),
        typed("rate_of_change", id="b", max_rate=2, window=5, **common),
        typed("stuck", id="c", **{"for": "1h", "epsilon": 0.1}, **common),
        typed("implausible", id="d", min=-5, max=5, **{"for": "250ms"}, **common),
    ).rules
    for r in rules:
        assert r.severity is Severity.minor
        assert r.cooldown == 120.0
        assert r.flapping == Flapping(transitions=3, window=600.0)
        assert r.title.startswith("排气温度传感器故障")


@pytest.mark.parametrize(
    ("rule_type", "fields", "message"),
    [
        (
            "rate_of_change",
            {"window": "1m"},
            "give rise and/or fall (units per second), or max_rate",
        ),
        ("rate_of_change", {"rise": 1, "max_rate": 2, "window": 5}, "max_rate limits both"),
        ("rate_of_change", {"fall": 1, "max_rate": 2, "window": 5}, "max_rate limits both"),
        ("rate_of_change", {"rise": 1}, "window"),
        ("rate_of_change", {"rise": 1, "window": 0}, "the window must be longer than 0s"),
        ("rate_of_change", {"rise": 0, "window": 5}, "greater than 0"),
        ("rate_of_change", {"fall": -1, "window": 5}, "greater than 0"),
        ("rate_of_change", {"rise": 1, "window": 5, "above": 3}, "above"),
        ("counter", {}, "every"),
        ("counter", {"every": 0}, "greater than 0"),
        ("counter", {"every": 10, "first_due": 0}, "greater than 0"),
        ("counter", {"every": 10, "cooldown": "1m"}, "cooldown does not apply"),
        ("counter", {"every": 10, "cooldown": 0}, "cooldown does not apply"),
        (
            "counter",
            {"every": 10, "flapping": {"transitions": 3, "window": 60}},
            "flapping does not apply",
        ),
        ("stuck", {}, "for"),
        ("stuck", {"for": 0}, "a stuck rule's 'for' must be longer than 0s"),
        ("stuck", {"for": "5m", "epsilon": -0.1}, "greater than or equal to 0"),
        ("stuck", {"for": "5m", "above": 3}, "above"),
        ("implausible", {"min": 5, "max": 5}, "min (5.0) must be below max (5.0)"),
        ("implausible", {"min": 6, "max": 5}, "min (6.0) must be below max (5.0)"),
        ("implausible", {"for": "soon"}, "is not a duration"),
        ("threshold", {"above": 1, "cooldown": "-1s"}, "is not a duration"),
        ("threshold", {"above": 1, "cooldown": -1}, "not negative"),
        ("threshold", {"above": 1, "flapping": {"transitions": 1, "window": 60}}, "2"),
        ("threshold", {"above": 1, "flapping": {"transitions": "3", "window": 60}}, "integer"),
        ("threshold", {"above": 1, "flapping": {"transitions": 2.5, "window": 60}}, "integer"),
        ("threshold", {"above": 1, "flapping": {"transitions": True, "window": 60}}, "integer"),
        ("threshold", {"above": 1, "flapping": {"transitions": 3, "window": 0}}, "longer than 0s"),
        ("threshold", {"above": 1, "flapping": {"transitions": 3}}, "window"),
        ("threshold", {"above": 1, "flapping": {"window": 60}}, "transitions"),
        (
            "threshold",
            {"above": 1, "flapping": {"transitions": 3, "window": 9, "n": 1}},
            "flapping.n",
        ),
        ("threshold", {"above": 1, "flapping": 3}, "flapping"),
    ],
)
def test_invalid_rules_of_each_type(rule_type, fields, message):
    with pytest.raises(ValidationError) as exc:
        load_rules(typed(rule_type, **fields))
    assert message in str(exc.value)


@pytest.mark.parametrize(
    ("rule_type", "fields"),
    [
        ("rate_of_change", {"rise": math.nan, "window": 5}),
        ("rate_of_change", {"max_rate": math.inf, "window": 5}),
        ("rate_of_change", {"rise": 1, "window": math.inf}),
        ("counter", {"every": math.inf}),
        ("counter", {"every": 10, "first_due": math.nan}),
        ("stuck", {"for": 60, "epsilon": math.nan}),
        ("stuck", {"for": math.inf}),
        ("implausible", {"min": math.nan}),
        ("implausible", {"max": -math.inf}),
        ("threshold", {"above": 1, "cooldown": math.inf}),
        ("threshold", {"above": 1, "flapping": {"transitions": 3, "window": math.nan}}),
    ],
)
def test_non_finite_values_are_rejected_in_every_rule_type(rule_type, fields):
    with pytest.raises(ValidationError):
        load_rules(typed(rule_type, **fields))


def test_implausible_with_one_bound_is_valid():
    (r,) = load_rules(typed("implausible", max=150)).rules
    assert (r.min, r.max) == (None, 150.0)


def test_counter_with_first_due():
    (r,) = load_rules(typed("counter", every=500, first_due=1200)).rules
    assert (r.every, r.first_due) == (500.0, 1200.0)


# ---------------------------------------------------------------- rule types in the file


def test_unknown_rule_type_points_at_type_with_a_suggestion(tmp_path):
    path = write_rules(
        tmp_path,
        "  - id: r1\n"
        "    title: t\n"
        "    type: rate_of_chnage\n"  # 6
        "    profile: chiller\n"
        "    metric: m\n",
    )
    with pytest.raises(FileError) as exc:
        load_detection(path)
    p = only_problem(exc)
    assert (p.line, p.col) == (6, 5)
    assert p.message == (
        "rules.0.type: unknown type 'rate_of_chnage'; did you mean 'rate_of_change'? "
        "(allowed: counter, implausible, rate_of_change, stuck, threshold)"
    )


def test_non_text_rule_type(tmp_path):
    path = write_rules(tmp_path, "  - {id: r1, title: t, profile: p, metric: m, type: 3}\n")
    with pytest.raises(FileError) as exc:
        load_detection(path)
    p = only_problem(exc)
    assert p.line == 4
    assert "rules.0.type: unknown type '3'" in p.message


def test_unknown_key_in_a_counter_lists_the_counter_keys(tmp_path):
    path = write_rules(
        tmp_path,
        "  - id: pm\n"
        "    type: counter\n"
        "    title: t\n"
        "    profile: chiller\n"
        "    metric: run_hours\n"
        "    every: 2000\n"
        "    frist_due: 500\n",  # 10
    )
    with pytest.raises(FileError) as exc:
        load_detection(path)
    p = only_problem(exc)
    assert (p.line, p.col) == (10, 5)
    assert p.message == (
        "unknown key 'frist_due'; did you mean 'first_due'? (allowed: cooldown, every, "
        "first_due, flapping, id, metric, profile, severity, title, type)"
    )


def test_threshold_keys_are_unknown_in_a_stuck_rule(tmp_path):
    path = write_rules(
        tmp_path,
        "  - id: s\n"
        "    type: stuck\n"
        "    title: t\n"
        "    profile: chiller\n"
        "    metric: m\n"
        "    for: 10m\n"
        "    above: 5\n",  # 10
    )
    with pytest.raises(FileError) as exc:
        load_detection(path)
    p = only_problem(exc)
    assert (p.line, p.col) == (10, 5)
    assert p.message.startswith("unknown key 'above'")
    assert "epsilon" in p.message


def test_error_inside_a_typed_rule_points_at_its_key(tmp_path):
    path = write_rules(
        tmp_path,
        "  - id: ok\n"  # 4
        "    title: t\n"
        "    profile: chiller\n"
        "    metric: m\n"
        "    above: 5\n"
        "  - id: s\n"  # 9
        "    type: stuck\n"
        "    title: t\n"
        "    profile: chiller\n"
        "    metric: m\n"
        "    for: 10 minutes\n",  # 14
    )
    with pytest.raises(FileError) as exc:
        load_detection(path)
    p = only_problem(exc)
    assert (p.line, p.col) == (14, 5)
    assert p.message.startswith("rules.1.for: '10 minutes' is not a duration")


def test_bad_combination_in_a_typed_rule_points_at_the_rule(tmp_path):
    path = write_rules(
        tmp_path,
        "  - id: r\n"  # 4
        "    type: rate_of_change\n"
        "    title: t\n"
        "    profile: chiller\n"
        "    metric: m\n"
        "    rise: 1\n"
        "    max_rate: 2\n"
        "    window: 1m\n",
    )
    with pytest.raises(FileError) as exc:
        load_detection(path)
    p = only_problem(exc)
    assert (p.line, p.col) == (4, 5)
    assert p.message == (
        "rules.0: max_rate limits both directions: give it alone, or rise and/or fall"
    )


@pytest.mark.parametrize(("key", "value", "line"), [("cooldown", "5m", 10), ("flapping", "", 10)])
def test_counter_cooldown_and_flapping_point_at_the_key(tmp_path, key, value, line):
    extra = (
        f"    {key}: {value}\n"
        if value
        else f"    {key}:\n      transitions: 3\n      window: 1h\n"
    )
    path = write_rules(
        tmp_path,
        "  - id: pm\n"
        "    type: counter\n"
        "    title: t\n"
        "    profile: chiller\n"
        "    metric: run_hours\n"
        "    every: 2000\n" + extra,
    )
    with pytest.raises(FileError) as exc:
        load_detection(path)
    p = only_problem(exc)
    assert (p.line, p.col) == (line, 5)
    assert p.message.startswith(f"rules.0.{key}: a counter rule raises maintenance_due")
    assert p.message.endswith(f"so {key} does not apply; remove it")


def test_flapping_errors_point_inside_the_mapping(tmp_path):
    path = write_rules(
        tmp_path,
        "  - id: r1\n"
        "    title: t\n"
        "    profile: chiller\n"
        "    metric: m\n"
        "    above: 5\n"
        "    flapping:\n"  # 9: the mapping that lacks 'window'
        "      transitions: 1\n"  # 10
        "      windw: 5m\n",  # 11
    )
    with pytest.raises(FileError) as exc:
        load_detection(path)
    problems = sorted(exc.value.problems, key=lambda p: p.line)
    assert [(p.line, p.col) for p in problems] == [(9, 5), (10, 7), (11, 7)]
    assert problems[0].message == "rules.0.flapping.window: required key is missing; add it"
    assert problems[1].message.startswith("rules.0.flapping.transitions: ")
    assert "greater than or equal to 2" in problems[1].message
    assert problems[2].message == (
        "unknown key 'windw'; did you mean 'window'? (allowed: transitions, window)"
    )


@pytest.mark.parametrize(
    "line",
    [
        "{id: r, type: rate_of_change, title: t, profile: p, metric: m, rise: .nan, window: 5}",
        "{id: r, type: counter, title: t, profile: p, metric: m, every: .inf}",
        "{id: r, type: stuck, title: t, profile: p, metric: m, for: .inf}",
        "{id: r, type: implausible, title: t, profile: p, metric: m, max: .nan}",
        "{id: r, title: t, profile: p, metric: m, above: 1, cooldown: .inf}",
        "{id: r, title: t, profile: p, metric: m, above: 1, flapping: {transitions: 3,"
        " window: .nan}}",
    ],
)
def test_non_finite_values_in_typed_rules_in_the_file(tmp_path, line):
    path = write_rules(tmp_path, f"  - {line}\n")
    with pytest.raises(FileError) as exc:
        load_detection(path)
    assert only_problem(exc).line == 4


def test_duplicate_ids_across_rule_types(tmp_path):
    path = write_rules(
        tmp_path,
        "  - {id: r1, title: t, profile: p, metric: m, above: 5}\n"
        "  - {id: r1, type: counter, title: t, profile: p, metric: h, every: 10}\n",  # 5
    )
    with pytest.raises(FileError) as exc:
        load_detection(path)
    p = only_problem(exc)
    assert (p.line, p.col) == (5, 6)  # the second rule's id
    assert "rule id 'r1' is used twice" in p.message


def test_a_rule_that_is_not_a_mapping(tmp_path):
    path = write_rules(tmp_path, "  - just text\n")
    with pytest.raises(FileError) as exc:
        load_detection(path)
    assert only_problem(exc).line == 4
