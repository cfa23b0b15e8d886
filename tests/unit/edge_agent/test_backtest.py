"""edge_agent.backtest: the edge's detectors over recorded readings with a base and a candidate
rule file, and what only one of them raises; real rule files, real DetectorBanks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge_agent.backtest import (
    Backtest,
    Difference,
    Tally,
    backtest,
    untested,
    watched_metrics,
)
from edge_agent.readings import Quality, Reading
from fieldloop.detection import DetectionFile, load_detection
from fieldloop.messages import EventKind

SHIPPED = Path(__file__).resolve().parents[3] / "rules" / "detection.yaml"
T0 = datetime(2026, 10, 1, tzinfo=UTC)

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
    clear_below: 90.0
  - id: chiller.discharge_temp.sensor
    type: implausible
    title: Discharge temperature sensor fault
    profile: chiller
    metric: discharge_temp
    for: 2s
    severity: minor
  - id: chiller.run_hours.service
    type: counter
    title: Compressor service due
    profile: chiller
    metric: run_hours
    every: 100
"""


def rules(tmp_path: Path, name: str, text: str = RULES) -> DetectionFile:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_detection(path)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def temps(
    series: list[tuple[int, float]], device: str = "chiller-1", site: str = "plant-a",
    quality: Quality = "good", asset: str = "CH-01",
) -> list[tuple[str, Reading]]:  # fmt: skip
    """One discharge_temp reading a second: (from second, value) steps, to the next step."""
    out = []
    for (start, value), (end, _) in zip(
        series, [*series[1:], (series[-1][0] + 1, 0.0)], strict=True
    ):
        for t in range(start, end):
            out.append((site, Reading(device, asset, "discharge_temp", at(t), value, quality)))
    return out


# 85 degC, then 93.5 for 20 s (between a 92 and a 95 threshold), 85, then 97 for 20 s, 85
SERIES = [(0, 85.0), (10, 93.5), (30, 85.0), (40, 97.0), (60, 85.0), (70, 85.0)]
PROFILES = {("plant-a", "chiller-1"): "chiller"}


def events(diffs: list[Difference]) -> list[tuple[str, EventKind, datetime, float | None]]:
    return [(d.detection.rule_id, d.detection.kind, d.detection.time, d.detection.value)
            for d in diffs]  # fmt: skip


def test_identical_files_raise_the_same_events_and_differ_in_nothing(tmp_path: Path) -> None:
    same = rules(tmp_path, "a.yaml")
    report = backtest(same, rules(tmp_path, "b.yaml"), temps(SERIES), PROFILES)
    assert report.differences == []
    assert report.readings == 71
    assert report.devices == {("plant-a", "chiller-1")}
    assert report.tallies == {
        ("chiller.discharge_temp.high", "plant-a", "CH-01", "fault_opened"): Tally(1, 1),
        ("chiller.discharge_temp.high", "plant-a", "CH-01", "fault_cleared"): Tally(1, 1),
    }
    assert report.raised("base") == report.raised("candidate") == 2


def test_a_lowered_threshold_raises_more_with_the_times_and_values(tmp_path: Path) -> None:
    base = rules(tmp_path, "base.yaml")
    cand = rules(tmp_path, "cand.yaml", RULES.replace("above: 95.0", "above: 92.0"))
    report = backtest(base, cand, temps(SERIES), PROFILES)

    high = "chiller.discharge_temp.high"
    assert report.only("base") == []
    assert events(report.only("candidate")) == [
        (high, EventKind.fault_opened, at(15), 93.5),  # 5 s above 92 ('for' is unchanged)
        (high, EventKind.fault_cleared, at(30), 85.0),
    ]
    opened = report.only("candidate")[0]
    assert (opened.site, opened.detection.device, opened.detection.asset) == (
        "plant-a", "chiller-1", "CH-01",
    )  # fmt: skip
    assert opened.detection.threshold == 92.0
    assert opened.detection.metric == "discharge_temp"
    # the 97 degC episode both raise, at the same readings
    assert report.tallies[(high, "plant-a", "CH-01", "fault_opened")] == Tally(1, 2, 0, 1)
    assert report.tallies[(high, "plant-a", "CH-01", "fault_cleared")] == Tally(1, 2, 0, 1)
    assert (report.raised("base"), report.raised("candidate")) == (2, 4)


def test_a_raised_threshold_raises_less_and_the_base_only_events_are_listed(
    tmp_path: Path,
) -> None:
    base = rules(tmp_path, "base.yaml", RULES.replace("above: 95.0", "above: 92.0"))
    cand = rules(tmp_path, "cand.yaml")
    report = backtest(base, cand, temps(SERIES), PROFILES)
    assert report.only("candidate") == []
    assert events(report.only("base")) == [
        ("chiller.discharge_temp.high", EventKind.fault_opened, at(15), 93.5),
        ("chiller.discharge_temp.high", EventKind.fault_cleared, at(30), 85.0),
    ]


def test_a_longer_duration_moves_the_opening_later(tmp_path: Path) -> None:
    base = rules(tmp_path, "base.yaml")
    cand = rules(tmp_path, "cand.yaml", RULES.replace("for: 5s", "for: 10s"))
    report = backtest(base, cand, temps(SERIES), PROFILES)
    assert [(d.side, d.detection.kind, d.detection.time) for d in report.differences] == [
        ("base", EventKind.fault_opened, at(45)),
        ("candidate", EventKind.fault_opened, at(50)),
    ]


def test_bad_readings_are_treated_as_on_the_edge(tmp_path: Path) -> None:
    """A threshold rule ignores a bad reading however high; the implausible rule without a
    range is raised by bad ones, after its 'for'."""
    base = rules(tmp_path, "base.yaml")
    cand = rules(tmp_path, "cand.yaml", RULES.replace("for: 2s", "for: 4s"))
    # good readings at 85 for 5 s, then bad ones at 99 from 5 s to 10 s
    series = temps([(0, 85.0), (4, 85.0)]) + temps([(5, 99.0), (10, 99.0)], quality="bad")
    report = backtest(base, cand, series, PROFILES)
    sensor = "chiller.discharge_temp.sensor"
    assert events(report.differences) == [
        (sensor, EventKind.fault_opened, at(7), 99.0),  # bad from 5 s, 2 s long
        (sensor, EventKind.fault_opened, at(9), 99.0),  # 4 s long
    ]
    assert [d.side for d in report.differences] == ["base", "candidate"]
    assert not any(k[0] == "chiller.discharge_temp.high" for k in report.tallies)


def test_a_device_with_no_known_profile_is_skipped_and_counted(tmp_path: Path) -> None:
    base = rules(tmp_path, "base.yaml")
    readings = temps(SERIES) + temps(SERIES, device="chiller-9")
    report = backtest(base, base, readings, PROFILES)
    assert report.skipped == {("plant-a", "chiller-9"): 71}
    assert report.skipped_readings == 71
    assert report.devices == {("plant-a", "chiller-1")}
    assert report.readings == 71


def test_the_same_device_id_on_two_sites_is_two_devices(tmp_path: Path) -> None:
    """Device ids are unique within a site only: each site's chiller-1 has its own state."""
    base = rules(tmp_path, "base.yaml")
    cand = rules(tmp_path, "cand.yaml", RULES.replace("above: 95.0", "above: 92.0"))
    readings = temps(SERIES) + temps([(0, 93.5), (30, 85.0)], site="plant-b", asset="B-CH-01")
    profiles = {**PROFILES, ("plant-b", "chiller-1"): "chiller"}
    report = backtest(base, cand, readings, profiles)
    assert [(d.site, d.detection.asset, d.detection.kind, d.detection.time)
            for d in report.only("candidate")] == [
        ("plant-a", "CH-01", EventKind.fault_opened, at(15)),
        ("plant-a", "CH-01", EventKind.fault_cleared, at(30)),
        ("plant-b", "B-CH-01", EventKind.fault_opened, at(5)),
        ("plant-b", "B-CH-01", EventKind.fault_cleared, at(30)),
    ]  # fmt: skip


def test_a_rule_of_another_profile_does_not_apply(tmp_path: Path) -> None:
    base = rules(tmp_path, "base.yaml")
    cand = rules(
        tmp_path,
        "cand.yaml",
        RULES.replace(
            "profile: chiller\n    metric: disch", "profile: boiler\n    metric: disch", 1
        ),
    )
    report = backtest(base, cand, temps(SERIES), PROFILES)  # fmt: skip
    assert {(d.side, d.detection.rule_id) for d in report.differences} == {
        ("base", "chiller.discharge_temp.high")
    }


def test_counter_schedules_compare_by_the_totals_they_fall_due_at(tmp_path: Path) -> None:
    base = rules(tmp_path, "base.yaml")
    cand = rules(tmp_path, "cand.yaml", RULES.replace("every: 100", "every: 150"))
    hours = [("plant-a", Reading("chiller-1", "CH-01", "run_hours", at(3600 * h), 20.0 + h))
             for h in range(0, 400, 10)]  # fmt: skip
    report = backtest(base, cand, hours, PROFILES)
    assert [(d.side, d.detection.kind, d.detection.value, d.detection.threshold)
            for d in report.differences] == [
        ("base", EventKind.maintenance_due, 100.0, 100.0),
        ("candidate", EventKind.maintenance_due, 150.0, 150.0),
        ("base", EventKind.maintenance_due, 200.0, 200.0),
        ("base", EventKind.maintenance_due, 400.0, 400.0),
    ]  # fmt: skip
    # both are due at 300
    key = ("chiller.run_hours.service", "plant-a", "CH-01", "maintenance_due")
    assert report.tallies[key] == Tally(base=4, candidate=2, only_base=3, only_candidate=1)


def test_the_same_reading_raising_another_kind_differs_on_both_sides(tmp_path: Path) -> None:
    """The candidate flaps where the base opens: one difference each way, at that reading."""
    flappy = RULES.replace("clear_below: 90.0", "clear_below: 90.0\n    flapping: "
                           "{transitions: 2, window: 10m}")  # fmt: skip
    base = rules(tmp_path, "base.yaml", RULES.replace("for: 5s", "for: 0s"))
    cand = rules(tmp_path, "cand.yaml", flappy.replace("for: 5s", "for: 0s"))
    series = temps([(0, 97.0), (1, 85.0), (2, 97.0), (3, 85.0), (3, 85.0)])
    report = backtest(base, cand, series, PROFILES)
    # both open at 0 and clear at 1; the third transition within 10 minutes is flapping
    assert [(d.side, d.detection.kind, d.detection.time) for d in report.differences] == [
        ("base", EventKind.fault_opened, at(2)),
        ("candidate", EventKind.flapping, at(2)),
        ("base", EventKind.fault_cleared, at(3)),
    ]
    high = ("chiller.discharge_temp.high", "plant-a", "CH-01")
    assert report.tallies[(*high, "fault_opened")] == Tally(2, 1, 1, 0)
    assert report.tallies[(*high, "flapping")] == Tally(0, 1, 0, 1)


def test_the_shipped_rules_against_themselves_differ_in_nothing() -> None:
    shipped = load_detection(SHIPPED)
    report = backtest(shipped, shipped, temps(SERIES), PROFILES)
    assert isinstance(report, Backtest)
    assert report.differences == []
    assert report.raised("base") > 0


def test_watched_metrics_are_those_of_either_file(tmp_path: Path) -> None:
    base = rules(tmp_path, "base.yaml")
    cand = rules(tmp_path, "cand.yaml", RULES.replace("metric: run_hours", "metric: starts"))
    assert watched_metrics(base, cand) == {"discharge_temp", "run_hours", "starts"}


def test_a_new_or_changed_rule_that_saw_no_reading_is_untested(tmp_path: Path) -> None:
    """A misspelt metric or profile raises nothing, which is no evidence: it is said. Rules the
    candidate did not change are not (a shared file names profiles a site may not have)."""
    base = rules(tmp_path, "base.yaml", RULES + BOILER)
    typo = RULES.replace("metric: discharge_temp\n    above: 95.0", "metric: dischrge_temp\n"
                         "    above: 92.0")  # fmt: skip
    cand = rules(tmp_path, "cand.yaml", typo + BOILER)
    report = backtest(base, cand, temps(SERIES), PROFILES)
    assert [r.id for r in untested(base, cand, report)] == ["chiller.discharge_temp.high"]
    assert report.seen == {("chiller", "discharge_temp")}
    assert untested(base, rules(tmp_path, "same.yaml", RULES + BOILER), report) == []


BOILER = """\
  - id: boiler.flow_temp.high
    title: Boiler flow temperature high
    profile: boiler
    metric: flow_temp
    above: 80
"""
