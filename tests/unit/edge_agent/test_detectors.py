"""edge_agent.detectors: the detector bank (threshold, rate of change, counter, stuck, implausible;
cooldown and flapping; snapshot/restore), the single-rule ThresholdDetector and CommWatch, all on
event time only."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge_agent.detectors import (
    CommWatch,
    Detection,
    DetectorBank,
    StateError,
    ThresholdDetector,
)
from edge_agent.readings import Quality, Reading
from fieldloop.detection import DetectionFile, ThresholdRule, load_detection
from fieldloop.messages import CLEARING_KINDS, COMM_RULE_ID, OPENING_KINDS, EventKind, Severity

SHIPPED_RULES = Path(__file__).resolve().parents[3] / "rules" / "detection.yaml"

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def rule(**overrides: Any) -> ThresholdRule:
    spec: dict[str, Any] = {
        "id": "chiller.discharge_temp.high",
        "title": "Discharge temperature high",
        "profile": "chiller",
        "metric": "discharge_temp",
        "above": 95.0,
        "for": "5s",
        "clear_below": 90.0,
        "severity": "major",
    }
    spec.update(overrides)
    return ThresholdRule.model_validate({k: v for k, v in spec.items() if v is not None})


def reading(
    t: float,
    value: float,
    *,
    device: str = "chiller-1",
    metric: str = "discharge_temp",
    quality: Quality = "good",
    asset: str = "CH-01",
) -> Reading:
    return Reading(device, asset, metric, at(t), value, quality)


def run(det: ThresholdDetector, series: list[Reading]) -> list[Detection]:
    return [d for r in series if (d := det.observe(r)) is not None]


def kinds(detections: list[Detection]) -> list[tuple[EventKind, datetime]]:
    return [(d.kind, d.time) for d in detections]


# ---------------------------------------------------------------- duration


def test_no_event_before_the_duration():
    det = ThresholdDetector(rule())
    assert det.observe(reading(0, 96)) is None
    assert det.pending_since("chiller-1") == at(0)
    assert det.observe(reading(2, 97)) is None
    assert det.observe(reading(4.999, 99)) is None
    assert not det.is_active("chiller-1")
    assert det.pending_since("chiller-1") == at(0)


def test_event_exactly_when_the_duration_is_reached():
    det = ThresholdDetector(rule())
    assert det.observe(reading(0, 96)) is None
    d = det.observe(reading(5, 97.5))
    assert d == Detection(
        kind=EventKind.fault_opened,
        rule_id="chiller.discharge_temp.high",
        title="Discharge temperature high",
        severity=Severity.major,
        device="chiller-1",
        asset="CH-01",
        time=at(5),
        metric="discharge_temp",
        value=97.5,
        threshold=95.0,
    )
    assert det.is_active("chiller-1")
    assert det.pending_since("chiller-1") is None


def test_sparse_readings_open_at_the_first_reading_past_the_duration():
    det = ThresholdDetector(rule())
    detections = run(det, [reading(0, 96), reading(60, 96)])
    assert kinds(detections) == [(EventKind.fault_opened, at(60))]


def test_only_one_open_per_episode():
    det = ThresholdDetector(rule())
    detections = run(det, [reading(t, 100) for t in range(0, 60)])
    assert kinds(detections) == [(EventKind.fault_opened, at(5))]


def test_zero_duration_opens_on_the_first_breach():
    det = ThresholdDetector(rule(**{"for": 0}))
    assert det.observe(reading(0, 94)) is None
    d = det.observe(reading(1, 95.1))
    assert d is not None
    assert (d.kind, d.time) == (EventKind.fault_opened, at(1))


def test_value_equal_to_threshold_is_not_a_breach():
    det = ThresholdDetector(rule())
    assert run(det, [reading(t, 95.0) for t in range(0, 20)]) == []
    assert det.pending_since("chiller-1") is None


def test_dip_below_threshold_resets_the_pending_timer():
    det = ThresholdDetector(rule())
    series = [
        reading(0, 96),
        reading(3, 94),  # dip: not above 95 any more
        reading(4, 96),  # pending again from t=4
        reading(6, 96),  # 6 s since t=0 but only 2 s since t=4
        reading(8.9, 96),
        reading(9, 96),  # 5 s since t=4
    ]
    detections = run(det, series)
    assert kinds(detections) == [(EventKind.fault_opened, at(9))]


def test_pending_timer_reset_is_visible():
    det = ThresholdDetector(rule())
    det.observe(reading(0, 96))
    assert det.pending_since("chiller-1") == at(0)
    det.observe(reading(1, 92))  # between clear level and threshold still resets
    assert det.pending_since("chiller-1") is None
    det.observe(reading(2, 96))
    assert det.pending_since("chiller-1") == at(2)


# ---------------------------------------------------------------- hysteresis


def test_hysteresis_clears_only_below_clear_below():
    det = ThresholdDetector(rule())
    opened = run(det, [reading(0, 100), reading(5, 100)])
    assert kinds(opened) == [(EventKind.fault_opened, at(5))]
    # between clear_below (90) and above (95): still active, nothing emitted
    assert run(det, [reading(6, 94), reading(7, 92), reading(8, 90.5), reading(9, 90.0)]) == []
    assert det.is_active("chiller-1")
    cleared = det.observe(reading(10, 89.9))
    assert cleared is not None
    assert cleared.kind is EventKind.fault_cleared
    assert cleared.time == at(10)
    assert cleared.value == 89.9
    assert cleared.threshold == 95.0
    assert cleared.rule_id == "chiller.discharge_temp.high"
    assert not det.is_active("chiller-1")


def test_rebreach_while_active_does_not_reopen():
    det = ThresholdDetector(rule())
    run(det, [reading(0, 100), reading(5, 100)])
    assert run(det, [reading(6, 92), reading(7, 100), reading(20, 100)]) == []


def test_without_clear_below_the_threshold_itself_clears():
    det = ThresholdDetector(rule(clear_below=None))
    run(det, [reading(0, 100), reading(5, 100)])
    assert det.observe(reading(6, 95.0)) is None  # not below 95
    d = det.observe(reading(7, 94.99))
    assert d is not None
    assert d.kind is EventKind.fault_cleared


def test_new_episode_after_clear_needs_the_full_duration_again():
    det = ThresholdDetector(rule())
    series = [
        reading(0, 100),
        reading(5, 100),  # open
        reading(6, 80),  # clear
        reading(7, 100),
        reading(11, 100),
        reading(12, 100),  # 5 s after t=7: second open
        reading(13, 85),  # second clear
    ]
    assert kinds(run(det, series)) == [
        (EventKind.fault_opened, at(5)),
        (EventKind.fault_cleared, at(6)),
        (EventKind.fault_opened, at(12)),
        (EventKind.fault_cleared, at(13)),
    ]


# ---------------------------------------------------------------- below rules


def below_rule(**overrides: Any) -> ThresholdRule:
    base: dict[str, Any] = {
        "id": "chiller.supply.low",
        "title": "Supply water too cold",
        "metric": "supply_water_temp",
        "above": None,
        "below": 4.0,
        "clear_below": None,
        "clear_above": 5.5,
        "for": "10s",
        "severity": "critical",
    }
    base.update(overrides)
    return rule(**base)


def supply(t: float, v: float, **kw: Any) -> Reading:
    return reading(t, v, metric="supply_water_temp", **kw)


def test_below_rule_opens_after_duration_and_clears_above_clear_above():
    det = ThresholdDetector(below_rule())
    series = [
        supply(0, 5.0),
        supply(1, 3.9),
        supply(10, 3.0),  # 9 s
        supply(11, 3.5),  # 10 s: open
        supply(12, 4.5),  # above 'below' but not above clear_above
        supply(13, 5.5),  # equal to clear_above: still active
        supply(14, 5.6),  # clear
    ]
    detections = run(det, series)
    assert kinds(detections) == [
        (EventKind.fault_opened, at(11)),
        (EventKind.fault_cleared, at(14)),
    ]
    opened = detections[0]
    assert opened.severity is Severity.critical
    assert opened.threshold == 4.0
    assert opened.metric == "supply_water_temp"
    assert opened.value == 3.5


def test_below_rule_value_equal_to_threshold_is_not_a_breach():
    det = ThresholdDetector(below_rule(**{"for": 0}))
    assert det.observe(supply(0, 4.0)) is None
    assert det.observe(supply(1, 3.99)) is not None


def test_below_rule_high_values_never_breach():
    det = ThresholdDetector(below_rule(**{"for": 0}))
    assert run(det, [supply(t, 1000.0) for t in range(10)]) == []


def test_below_rule_without_clear_above_clears_above_below():
    det = ThresholdDetector(below_rule(clear_above=None, **{"for": 0}))
    assert det.observe(supply(0, 3.0)) is not None
    assert det.observe(supply(1, 4.0)) is None
    d = det.observe(supply(2, 4.01))
    assert d is not None
    assert d.kind is EventKind.fault_cleared


# ---------------------------------------------------------------- filtering


def test_bad_quality_readings_are_ignored():
    det = ThresholdDetector(rule(**{"for": 0}))
    assert det.observe(reading(0, 500.0, quality="bad")) is None
    assert det.observe(reading(1, 500.0, quality="uncertain")) is None
    assert not det.is_active("chiller-1")
    assert det.pending_since("chiller-1") is None


def test_bad_readings_neither_reset_the_timer_nor_clear():
    det = ThresholdDetector(rule())
    series = [
        reading(0, 96),
        reading(2, -50, quality="bad"),  # would reset the timer if it counted
        reading(5, 96),
    ]
    assert kinds(run(det, series)) == [(EventKind.fault_opened, at(5))]
    assert det.observe(reading(6, -50, quality="bad")) is None  # would clear if it counted
    assert det.is_active("chiller-1")


def test_other_metrics_are_ignored():
    det = ThresholdDetector(rule(**{"for": 0}))
    assert det.observe(reading(0, 1000.0, metric="supply_water_temp")) is None
    assert det.observe(reading(1, 1000.0, metric="compressor_current")) is None
    assert not det.is_active("chiller-1")
    # and they do not reset a pending breach either
    det2 = ThresholdDetector(rule())
    series = [reading(0, 96), reading(3, 0.0, metric="return_water_temp"), reading(5, 96)]
    assert kinds(run(det2, series)) == [(EventKind.fault_opened, at(5))]


def test_devices_are_independent():
    det = ThresholdDetector(rule())
    series = [
        reading(0, 96, device="a", asset="A"),
        reading(2, 96, device="b", asset="B"),
        reading(3, 80, device="b", asset="B"),  # b dips; a keeps pending
        reading(5, 96, device="a", asset="A"),  # a opens
        reading(6, 96, device="b", asset="B"),
        reading(11, 96, device="b", asset="B"),  # b opens 5 s after its own restart
        reading(12, 80, device="a", asset="A"),  # a clears, b stays open
    ]
    detections = run(det, series)
    assert [(d.device, d.asset, d.kind, d.time) for d in detections] == [
        ("a", "A", EventKind.fault_opened, at(5)),
        ("b", "B", EventKind.fault_opened, at(11)),
        ("a", "A", EventKind.fault_cleared, at(12)),
    ]
    assert not det.is_active("a")
    assert det.is_active("b")
    assert not det.is_active("never-seen")
    assert det.pending_since("never-seen") is None


# ---------------------------------------------------------------- event time, determinism


def scenario() -> list[Reading]:
    series = []
    for i in range(300):
        t = i * 0.7
        # a slow sawtooth between 85 and 105 on two devices, out of phase
        va = 85 + (i % 40) * 0.5
        vb = 85 + ((i + 17) % 40) * 0.5
        series.append(reading(t, va, device="a"))
        series.append(reading(t + 0.1, vb, device="b", quality="bad" if i % 13 == 0 else "good"))
    return series


def test_replay_through_a_fresh_detector_is_identical():
    series = scenario()
    first = run(ThresholdDetector(rule()), series)
    second = run(ThresholdDetector(rule()), series)
    assert len(first) >= 4  # the scenario really opens and clears episodes
    assert {d.kind for d in first} == {EventKind.fault_opened, EventKind.fault_cleared}
    assert first == second


def test_detection_times_are_reading_times_not_wall_clock():
    long_ago = datetime(2001, 1, 1, tzinfo=UTC)
    det = ThresholdDetector(rule())
    series = [
        Reading("d", "a", "discharge_temp", long_ago + timedelta(seconds=s), 99.0)
        for s in (0, 1, 5)
    ]
    detections = run(det, series)
    assert [d.time for d in detections] == [long_ago + timedelta(seconds=5)]


def test_opens_and_clears_alternate_per_device():
    detections = run(ThresholdDetector(rule()), scenario())
    for device in ("a", "b"):
        seq = [d.kind for d in detections if d.device == device]
        assert seq
        expected = [EventKind.fault_opened, EventKind.fault_cleared] * len(seq)
        assert seq == expected[: len(seq)]


# ---------------------------------------------------------------- restored state


def test_active_device_from_restart_emits_a_clear_but_not_a_second_open():
    det = ThresholdDetector(rule(), active_devices={"d"})
    assert det.is_active("d")
    still_high = [reading(t, 100, device="d") for t in range(0, 30)]
    assert run(det, still_high) == []
    d = det.observe(reading(30, 85, device="d"))
    assert d is not None
    assert (d.kind, d.device, d.time) == (EventKind.fault_cleared, "d", at(30))
    assert not det.is_active("d")


def test_active_devices_only_cover_the_listed_devices():
    det = ThresholdDetector(rule(), active_devices={"d"})
    assert not det.is_active("e")
    detections = run(det, [reading(0, 100, device="e"), reading(5, 100, device="e")])
    assert kinds(detections) == [(EventKind.fault_opened, at(5))]


# ---------------------------------------------------------------- CommWatch


def test_comm_watch_one_lost_for_repeated_failures_and_one_restored():
    cw = CommWatch("chiller-1", "CH-01")
    lost = [cw.failed(at(t), "timeout") for t in range(5)]
    assert [d is not None for d in lost] == [True, False, False, False, False]
    first = lost[0]
    assert first is not None
    assert first.kind is EventKind.comm_lost
    assert first.rule_id == COMM_RULE_ID
    assert first.severity is Severity.major
    assert (first.device, first.asset, first.time) == ("chiller-1", "CH-01", at(0))
    assert "chiller-1" in first.title
    assert "timeout" in first.title
    assert first.metric is None
    assert first.value is None
    assert first.threshold is None
    assert cw.lost

    restored = [cw.answered(at(10 + t)) for t in range(3)]
    assert [d is not None for d in restored] == [True, False, False]
    back = restored[0]
    assert back is not None
    assert back.kind is EventKind.comm_restored
    assert back.rule_id == COMM_RULE_ID
    assert back.severity is Severity.info
    assert back.time == at(10)
    assert not cw.lost


def test_comm_watch_answering_device_emits_nothing():
    cw = CommWatch("d", "a")
    assert [cw.answered(at(t)) for t in range(5)] == [None] * 5


def test_comm_watch_second_outage_is_a_new_episode():
    cw = CommWatch("d", "a")
    events = [
        cw.failed(at(0), "refused"),
        cw.answered(at(1)),
        cw.failed(at(2), "refused"),
        cw.failed(at(3), "refused"),
        cw.answered(at(4)),
    ]
    assert [e.kind if e else None for e in events] == [
        EventKind.comm_lost,
        EventKind.comm_restored,
        EventKind.comm_lost,
        None,
        EventKind.comm_restored,
    ]


def test_comm_watch_restored_as_lost_after_restart():
    cw = CommWatch("d", "a", lost=True)
    assert cw.failed(at(0), "timeout") is None
    d = cw.answered(at(1))
    assert d is not None
    assert d.kind is EventKind.comm_restored


def test_comm_watch_title_is_bounded_to_200_characters():
    cw = CommWatch("d", "a")
    d = cw.failed(at(0), "x" * 1000)
    assert d is not None
    assert len(d.title) == 200
    assert d.title.startswith("Communication lost with d: x")


@pytest.mark.parametrize("device", ["a", "b"])
def test_comm_watches_are_per_device(device):
    watches = {name: CommWatch(name, name.upper()) for name in ("a", "b")}
    assert watches[device].failed(at(0), "timeout") is not None
    other = next(n for n in watches if n != device)
    assert not watches[other].lost
    assert watches[other].failed(at(1), "timeout") is not None


# ================================================================ the detector bank


def rules_file(*specs: dict[str, Any]) -> DetectionFile:
    return DetectionFile.model_validate(
        {"apiVersion": "fieldloop/v1", "kind": "DetectionRules", "rules": list(specs)}
    )


def spec(rule_id: str = "r", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": rule_id,
        "title": f"rule {rule_id}",
        "profile": "chiller",
        "metric": "discharge_temp",
    }
    base.update(fields)
    return base


DEVICES = {"chiller-1": "chiller", "chiller-2": "chiller", "pump-1": "pump"}
ASSETS = {"chiller-1": "CH-01", "chiller-2": "CH-02", "pump-1": "P-01"}


def make_bank(*specs: dict[str, Any], **kw: Any) -> DetectorBank:
    return DetectorBank(rules_file(*specs), DEVICES, ASSETS, **kw)


def feed(bank: DetectorBank, series: Iterable[Reading]) -> list[Detection]:
    return [d for r in series for d in bank.observe(r)]


def values(
    vals: Iterable[float],
    *,
    start: float = 0,
    step: float = 1,
    device: str = "chiller-1",
    metric: str = "discharge_temp",
    quality: Quality = "good",
) -> list[Reading]:
    return [
        Reading(device, ASSETS[device], metric, at(start + i * step), v, quality)
        for i, v in enumerate(vals)
    ]


def timeline(detections: list[Detection]) -> list[tuple[EventKind, float]]:
    return [(d.kind, (d.time - T0).total_seconds()) for d in detections]


def assert_one_opening_per_episode(detections: list[Detection]) -> None:
    """Per (device, rule): openings and clears alternate, starting with an opening."""
    is_open: dict[tuple[str, str], bool] = {}
    for d in detections:
        key = (d.device, d.rule_id)
        if d.kind in OPENING_KINDS:
            assert not is_open.get(key), f"a second ticket-raising event in one episode: {d}"
            is_open[key] = True
        else:
            assert d.kind in CLEARING_KINDS
            assert is_open.get(key), f"a clear with no open episode: {d}"
            is_open[key] = False


FLAP = {"transitions": 4, "window": "1m"}
BARE = spec("bare", above=80, flapping=FLAP)  # no 'for', no hysteresis
SHIPPED_STYLE = spec(
    "shipped_style",
    above=80,
    clear_below=75,
    severity="major",
    cooldown="30s",
    flapping={"transitions": 6, "window": "3m"},
    **{"for": "5s"},
)


def flapping_10_minutes(threshold: float, device: str = "chiller-1") -> list[Reading]:
    """threshold -/+ 0.1 every second for 10 minutes (below at even seconds)."""
    return values(
        [threshold + (0.1 if i % 2 else -0.1) for i in range(600)],
        device=device,
    )


# ---------------------------------------------------------------- the must-hold: flapping


@pytest.mark.parametrize("rule_spec", [BARE, SHIPPED_STYLE], ids=["bare", "shipped-style"])
def test_flapping_around_a_threshold_raises_at_most_one_ticket_per_episode(rule_spec):
    bank = make_bank(rule_spec)
    detections = feed(bank, flapping_10_minutes(80.0))
    assert_one_opening_per_episode(detections)
    openings = [d for d in detections if d.kind in OPENING_KINDS]
    assert len(openings) <= 3  # not one per breach (300 of them)


def test_flapping_around_the_shipped_rule_raises_at_most_one_ticket_per_episode():
    shipped = load_detection(SHIPPED_RULES).rules[0]
    assert isinstance(shipped, ThresholdRule)
    bank = DetectorBank(DetectionFile(apiVersion="fieldloop/v1", kind="DetectionRules",
                                      rules=[shipped]), DEVICES, ASSETS)  # fmt: skip
    detections = feed(bank, flapping_10_minutes(shipped.threshold))
    assert_one_opening_per_episode(detections)
    assert detections == []  # 'for: 5s' never holds: nothing to raise


def test_flapping_bare_rule_exact_events():
    bank = make_bank(BARE)
    detections = feed(bank, flapping_10_minutes(80.0))
    # 4 transitions are allowed through; the 5th (an opening) is one flapping event instead
    assert timeline(detections) == [
        (EventKind.fault_opened, 1),
        (EventKind.fault_cleared, 2),
        (EventKind.fault_opened, 3),
        (EventKind.fault_cleared, 4),
        (EventKind.flapping, 5),
    ]
    flap = detections[-1]
    assert flap.title == "Flapping: rule bare"
    assert (flap.rule_id, flap.device, flap.asset) == ("bare", "chiller-1", "CH-01")
    assert (flap.value, flap.threshold) == (80.1, 80.0)
    assert flap.kind in OPENING_KINDS
    assert bank.open_episodes() == {("chiller-1", "bare")}
    # it stops flapping below the threshold at t=600; stable for the window (60 s) -> clear
    tail = feed(bank, values([79.0] * 120, start=600))
    assert timeline(tail) == [(EventKind.fault_cleared, 660)]
    assert bank.open_episodes() == set()


def test_flapping_shipped_style_slow_enough_to_pass_its_for():
    """12 s cycles (6 s at 96, 6 s at 70) beat 'for: 5s' and the hysteresis every time."""
    bank = make_bank(SHIPPED_STYLE)
    detections = feed(bank, values([96.0 if (i // 6) % 2 == 0 else 70.0 for i in range(600)]))
    assert_one_opening_per_episode(detections)
    assert [d.kind for d in detections][-1] is EventKind.flapping
    assert sum(d.kind in OPENING_KINDS for d in detections) == 4  # 3 faults, then flapping


def test_flapping_settled_in_fault_stays_open_until_a_real_clear():
    bank = make_bank(BARE)
    feed(bank, flapping_10_minutes(80.0))
    assert feed(bank, values([85.0] * 300, start=600)) == []  # settled in fault: quiet, open
    assert bank.open_episodes() == {("chiller-1", "bare")}
    assert "settled in fault" in "\n".join(bank.notices())
    cleared = feed(bank, values([70.0], start=900))
    assert timeline(cleared) == [(EventKind.fault_cleared, 900)]
    # counting starts afresh: the next 4 transitions are events again
    again = feed(bank, values([85, 70, 85, 70], start=901))
    assert [d.kind for d in again] == [
        EventKind.fault_opened,
        EventKind.fault_cleared,
        EventKind.fault_opened,
        EventKind.fault_cleared,
    ]


def test_flapping_quiet_period_restarts_at_every_change():
    bank = make_bank(BARE)
    feed(bank, flapping_10_minutes(80.0))
    # stable below for 59 s, one blip above, then stable: 60 s from the blip's end
    series = values([79.0] * 59, start=600) + values([81.0], start=659)
    series += values([79.0] * 100, start=660)
    assert timeline(feed(bank, series)) == [(EventKind.fault_cleared, 720)]


def test_transitions_spread_wider_than_the_window_are_not_flapping():
    bank = make_bank(spec(above=80, flapping={"transitions": 2, "window": "10s"}))
    # a transition every 6 s: at most 2 within any 10 s
    detections = feed(bank, values([85.0 if (i // 6) % 2 == 0 else 75.0 for i in range(120)]))
    assert EventKind.flapping not in {d.kind for d in detections}
    assert len(detections) == 20


def test_flapping_with_two_transitions():
    bank = make_bank(spec(above=80, flapping={"transitions": 2, "window": "1m"}))
    detections = feed(bank, values([81, 79, 81, 79, 81]))
    assert timeline(detections) == [
        (EventKind.fault_opened, 0),
        (EventKind.fault_cleared, 1),
        (EventKind.flapping, 2),
    ]


def test_when_the_extra_transition_is_a_clear_the_next_opening_is_the_flapping_event():
    bank = make_bank(spec(above=80, flapping={"transitions": 3, "window": "1m"}))
    detections = feed(bank, values([81, 79, 81, 79, 79, 81]))
    assert timeline(detections) == [
        (EventKind.fault_opened, 0),
        (EventKind.fault_cleared, 1),
        (EventKind.fault_opened, 2),
        (EventKind.fault_cleared, 3),  # 4th transition: the episode still closes normally
        (EventKind.flapping, 5),
    ]
    assert_one_opening_per_episode(detections)


def test_flapping_title_is_bounded_to_200_characters():
    title = "排" * 200
    bank = make_bank(spec(title=title, above=80, flapping={"transitions": 2, "window": 60}))
    flap = feed(bank, values([81, 79, 81]))[-1]
    assert flap.kind is EventKind.flapping
    assert len(flap.title) == 200
    assert flap.title.startswith("Flapping: 排")


def test_flapping_is_per_device():
    bank = make_bank(BARE)
    both = sorted(
        flapping_10_minutes(80.0) + flapping_10_minutes(80.0, device="chiller-2"),
        key=lambda r: r.time,
    )
    detections = feed(bank, both)
    assert_one_opening_per_episode(detections)
    for device in ("chiller-1", "chiller-2"):
        mine = [d.kind for d in detections if d.device == device]
        assert mine.count(EventKind.flapping) == 1
        assert len(mine) == 5


def test_flapping_applies_to_other_rule_types():
    bank = make_bank(spec(type="implausible", flapping={"transitions": 2, "window": "1m"}))
    series = [
        Reading("chiller-1", "CH-01", "discharge_temp", at(i), 500.0, "bad" if i % 2 else "good")
        for i in range(100)
    ]
    detections = feed(bank, series)
    assert_one_opening_per_episode(detections)
    assert [d.kind for d in detections] == [
        EventKind.fault_opened,
        EventKind.fault_cleared,
        EventKind.flapping,
    ]


# ---------------------------------------------------------------- cooldown


COOL = spec(above=80, cooldown="30s")


def test_rebreach_inside_the_cooldown_does_not_open():
    bank = make_bank(COOL)
    detections = feed(bank, values([85, 75] + [75] * 10 + [85, 75] + [75] * 20))
    assert timeline(detections) == [(EventKind.fault_opened, 0), (EventKind.fault_cleared, 1)]
    assert bank.open_episodes() == set()


def test_condition_still_holding_when_the_cooldown_ends_opens_at_the_next_reading():
    bank = make_bank(COOL)
    feed(bank, values([85, 75]))  # cleared at t=1: cooldown until t=31
    detections = feed(bank, values([85] * 20, start=20, step=2))  # t = 20, 22, ... 58
    assert timeline(detections) == [(EventKind.fault_opened, 32)]
    assert "raising at the first reading from 2024-05-01T12:00:31" in "\n".join(bank.notices())


def test_cooldown_ends_exactly_on_time():
    bank = make_bank(COOL)
    feed(bank, values([85, 75]))
    assert feed(bank, values([85], start=30.999)) == []
    assert timeline(feed(bank, values([85], start=31))) == [(EventKind.fault_opened, 31)]


def test_cooldown_and_hysteresis_the_condition_holds_in_the_band():
    bank = make_bank(spec(above=80, clear_below=70, cooldown="10s"))
    feed(bank, values([85, 65]))  # open, clear at t=1
    feed(bank, values([85], start=5))  # breach during the cooldown: held back
    # back in the band (not above 80, not below 70): the condition still holds at t=11
    detections = feed(bank, values([75], start=11))
    assert timeline(detections) == [(EventKind.fault_opened, 11)]
    assert detections[0].value == 75


def test_cooldown_with_a_duration_opens_when_the_duration_is_up():
    bank = make_bank(spec(above=80, cooldown="10s", **{"for": "5s"}))
    feed(bank, values([85] * 6 + [75]))  # opens at t=5, clears at t=6: cooldown until 16
    detections = feed(bank, values([85] * 20, start=14))  # breach from t=14, holds 5 s at 19
    assert timeline(detections) == [(EventKind.fault_opened, 19)]


def test_no_cooldown_by_default():
    bank = make_bank(spec(above=80))
    detections = feed(bank, values([85, 75, 85, 75]))
    assert [d.kind for d in detections] == [
        EventKind.fault_opened,
        EventKind.fault_cleared,
        EventKind.fault_opened,
        EventKind.fault_cleared,
    ]


# ---------------------------------------------------------------- rate of change


RATE = spec("rate", type="rate_of_change", rise=0.1, window="10s")


def test_rate_rise_opens_once_measured_over_the_window_and_clears_when_it_slows():
    bank = make_bank(RATE)
    ramp = [50 + 0.2 * i for i in range(31)] + [56.0] * 20  # 0.2/s up to t=30, then flat
    detections = feed(bank, values(ramp))
    assert timeline(detections) == [
        (EventKind.fault_opened, 10),  # the first reading with one 10 s old
        (EventKind.fault_cleared, 35),  # (56 - 55) / 10 s = 0.1: not above 0.1
    ]
    opened, cleared = detections
    assert opened.value == pytest.approx(0.2)
    assert opened.threshold == 0.1
    assert opened.metric == "discharge_temp"
    assert cleared.value == pytest.approx(0.1)


def test_rate_needs_a_full_window_of_history():
    bank = make_bank(RATE)
    # a jump in the first seconds: no reading 10 s old yet, so no opinion
    assert feed(bank, values([50, 60, 70, 80], step=2)) == []
    # at t=10 the reference is t=0 (50): (90 - 50) / 10 = 4/s
    assert timeline(feed(bank, values([90], start=10))) == [(EventKind.fault_opened, 10)]


def test_rate_reference_is_the_newest_reading_at_least_a_window_old():
    bank = make_bank(RATE)
    feed(bank, values([50.0] * 10))  # t = 0..9
    # at t=12 the reference is t=2 (50): a 0.9 rise over 10 s is below 0.1/s
    assert feed(bank, values([50.9], start=12)) == []
    # sparse: next reading 100 s later; the reference is t=12 (50.9): (61 - 50.9) / 100 s
    detections = feed(bank, values([61.0], start=112))
    assert timeline(detections) == [(EventKind.fault_opened, 112)]
    assert detections[0].value == pytest.approx(0.101)


def test_rate_at_exactly_the_limit_is_not_a_breach():
    bank = make_bank(RATE)
    assert feed(bank, values([50 + 0.1 * i for i in range(40)])) == []


def test_rate_fall_and_rise_only_rules():
    falling = values([100 - 0.5 * i for i in range(30)])
    assert feed(make_bank(RATE), falling) == []  # a rise rule ignores falls
    detections = feed(make_bank(spec(type="rate_of_change", fall=0.2, window=10)), falling)
    assert timeline(detections) == [(EventKind.fault_opened, 10)]
    assert detections[0].value == pytest.approx(-0.5)
    assert detections[0].threshold == -0.2


@pytest.mark.parametrize(("slope", "threshold"), [(0.5, 0.3), (-0.5, -0.3)])
def test_rate_max_rate_limits_both_directions(slope, threshold):
    bank = make_bank(spec(type="rate_of_change", max_rate=0.3, window="5s"))
    detections = feed(bank, values([50 + slope * i for i in range(10)]))
    assert timeline(detections) == [(EventKind.fault_opened, 5)]
    assert detections[0].threshold == threshold


def test_rate_window_memory_is_bounded():
    bank = make_bank(RATE)
    feed(bank, values([50.0] * 5000, step=0.5))
    state = bank.snapshot()["rules"]["rate"]["devices"]["chiller-1"]
    assert len(state["window"]) == 21  # 10 s of readings every 0.5 s, plus the reference


def test_rate_ignores_bad_readings():
    bank = make_bank(RATE)
    series = values([50.0] * 20)
    series[15] = Reading("chiller-1", "CH-01", "discharge_temp", at(15), 500.0, "bad")
    assert feed(bank, series) == []


def test_rate_restarts_its_window_when_the_clock_goes_back():
    bank = make_bank(RATE)
    feed(bank, values([50.0] * 20))  # t = 0..19
    # the edge clock steps back an hour: a rise measured against t=9 would be nonsense
    assert feed(bank, values([90.0, 91.0], start=-3600)) == []
    state = bank.snapshot()["rules"]["rate"]["devices"]["chiller-1"]
    assert [t for t, _ in state["window"]] == [
        (T0 - timedelta(seconds=3600) - datetime(1970, 1, 1, tzinfo=UTC))
        // timedelta(microseconds=1),
        (T0 - timedelta(seconds=3599) - datetime(1970, 1, 1, tzinfo=UTC))
        // timedelta(microseconds=1),
    ]


# ---------------------------------------------------------------- counter


PM = spec("pm", type="counter", metric="run_hours", every=2000)


def hours(vals: Iterable[float], start: float = 0, **kw: Any) -> list[Reading]:
    return values(vals, start=start, metric="run_hours", **kw)


def test_counter_counts_on_across_a_reset():
    """1,990 h -> reset to 0 -> 15 h counts as 2,005 h."""
    bank = make_bank(PM)
    assert feed(bank, hours([1990.0, 0.0])) == []
    assert bank.counter_total("chiller-1", "pm") == 1990.0
    assert "dropped from 1990 to 0: counter reset" in "\n".join(bank.notices())
    detections = feed(bank, hours([15.0], start=2))
    assert bank.counter_total("chiller-1", "pm") == 2005.0
    (due,) = detections
    assert due == Detection(
        kind=EventKind.maintenance_due,
        rule_id="pm",
        title="rule pm",
        severity=Severity.major,
        device="chiller-1",
        asset="CH-01",
        time=at(2),
        metric="run_hours",
        value=2005.0,
        threshold=2000.0,
    )


def test_counter_raises_at_each_multiple_and_never_clears():
    bank = make_bank(spec("pm", type="counter", metric="run_hours", every=500))
    detections = feed(bank, hours([100, 499, 500, 501, 999, 1000.5, 1400]))
    assert [(d.value, d.threshold) for d in detections] == [(500, 500), (1000.5, 1000)]
    assert {d.kind for d in detections} == {EventKind.maintenance_due}
    assert bank.open_episodes() == set()  # the edge never clears maintenance


def test_counter_first_reading_sets_the_baseline():
    bank = make_bank(spec("pm", type="counter", metric="run_hours", every=500))
    assert feed(bank, hours([1234.0])) == []  # dues passed before we watched are not raised
    detections = feed(bank, hours([1500.0], start=1))
    assert [(d.value, d.threshold) for d in detections] == [(1500, 1500)]


def test_counter_jump_over_several_dues_raises_once():
    bank = make_bank(spec("pm", type="counter", metric="run_hours", every=100))
    detections = feed(bank, hours([50, 420, 450, 500]))
    assert [(d.value, d.threshold) for d in detections] == [(420, 100), (500, 500)]


def test_counter_first_due():
    bank = make_bank(spec("pm", type="counter", metric="run_hours", every=500, first_due=1200))
    detections = feed(bank, hours([100, 1199, 1200, 1699, 1700]))
    assert [(d.value, d.threshold) for d in detections] == [(1200, 1200), (1700, 1700)]


def test_counter_already_past_first_due_is_due_at_once():
    bank = make_bank(spec("pm", type="counter", metric="run_hours", every=500, first_due=1200))
    detections = feed(bank, hours([1350, 1360, 1700]))
    assert [(d.value, d.threshold) for d in detections] == [(1350, 1200), (1700, 1700)]


def test_counter_ignores_readings_that_are_not_good():
    bank = make_bank(spec("pm", type="counter", metric="run_hours", every=500))
    feed(bank, hours([400.0]))
    # a bad reading would otherwise look like a reset and count 399 again
    feed(bank, hours([1.0], start=1, quality="bad"))
    feed(bank, hours([2.0], start=2, quality="uncertain"))
    feed(bank, hours([401.0], start=3))
    assert bank.counter_total("chiller-1", "pm") == 401.0


def test_counter_negative_readings_count_as_zero():
    bank = make_bank(spec("pm", type="counter", metric="run_hours", every=500))
    feed(bank, hours([400.0, -5.0, 10.0]))
    assert bank.counter_total("chiller-1", "pm") == 410.0


def test_counter_several_resets():
    bank = make_bank(spec("pm", type="counter", metric="run_hours", every=1000))
    detections = feed(bank, hours([900, 950, 0, 30, 10, 70]))
    assert bank.counter_total("chiller-1", "pm") == 950 + 30 + 70  # 0 and 10 were resets
    assert [(d.value, d.threshold) for d in detections] == [(1050, 1000)]


# ---------------------------------------------------------------- stuck


STUCK = spec("stuck", type="stuck", metric="supply_water_temp", epsilon=0.05, **{"for": "10s"})


def supply_values(vals: Iterable[float], start: float = 0, **kw: Any) -> list[Reading]:
    return values(vals, start=start, metric="supply_water_temp", **kw)


def test_stuck_opens_after_the_duration_and_clears_when_it_moves():
    bank = make_bank(STUCK)
    detections = feed(bank, supply_values([7.0] * 15 + [7.2, 7.2]))
    assert timeline(detections) == [(EventKind.fault_opened, 10), (EventKind.fault_cleared, 15)]
    opened, cleared = detections
    assert (opened.value, opened.threshold) == (7.0, None)
    assert cleared.value == 7.2


def test_stuck_small_moves_within_epsilon_of_the_reference_still_count_as_stuck():
    bank = make_bank(STUCK)
    jitter = [7.0, 7.04, 6.96, 7.05, 6.95, 7.0] * 3
    assert timeline(feed(bank, supply_values(jitter))) == [(EventKind.fault_opened, 10)]


def test_stuck_slow_drift_is_measured_from_the_reference_not_the_last_reading():
    bank = make_bank(STUCK)
    drift = [7.0 + 0.02 * i for i in range(60)]  # each step < epsilon, but it keeps moving
    assert feed(bank, supply_values(drift)) == []


def test_stuck_needs_the_full_duration_again_after_moving():
    bank = make_bank(STUCK)
    series = supply_values([7.0] * 8 + [7.5] * 12)
    assert timeline(feed(bank, series)) == [(EventKind.fault_opened, 18)]


def test_stuck_with_epsilon_zero_needs_exactly_equal_values():
    bank = make_bank(spec(type="stuck", **{"for": 5}))
    assert feed(bank, values([80.0, 80.0, 80.0, 80.001] * 5)) == []
    assert timeline(feed(bank, values([80.0] * 6, start=20))) == [(EventKind.fault_opened, 25)]


def test_stuck_ignores_readings_that_are_not_good():
    bank = make_bank(STUCK)
    series = supply_values([7.0] * 12)
    series[5] = Reading("chiller-1", "CH-01", "supply_water_temp", at(5), -10.0, "bad")
    assert timeline(feed(bank, series)) == [(EventKind.fault_opened, 10)]


# ---------------------------------------------------------------- implausible


def test_implausible_range():
    bank = make_bank(spec("sensor", type="implausible", min=-20, max=160))
    detections = feed(bank, values([20, 160, 160.5, 170, 160, -20, -20.1, 25]))
    assert timeline(detections) == [
        (EventKind.fault_opened, 2),
        (EventKind.fault_cleared, 4),
        (EventKind.fault_opened, 6),
        (EventKind.fault_cleared, 7),
    ]
    assert [d.threshold for d in detections] == [160, None, -20, None]
    assert detections[0].value == 160.5


def test_implausible_range_ignores_the_reading_quality():
    bank = make_bank(spec("sensor", type="implausible", max=200))
    assert feed(bank, values([170.0] * 3, quality="bad")) == []  # within the rule's range
    assert len(feed(bank, values([250.0], start=3, quality="good"))) == 1


def test_implausible_without_a_range_uses_the_reading_quality():
    bank = make_bank(spec("sensor", type="implausible"))
    series = [
        Reading("chiller-1", "CH-01", "discharge_temp", at(t), v, q)
        for t, v, q in [
            (0, 80.0, "good"),
            (1, 999.0, "bad"),  # outside the profile's min/max
            (2, 999.0, "bad"),
            (3, 80.0, "uncertain"),  # no opinion
            (4, 80.0, "good"),
        ]
    ]
    assert timeline(feed(bank, series)) == [
        (EventKind.fault_opened, 1),
        (EventKind.fault_cleared, 4),
    ]


def test_implausible_with_a_duration():
    bank = make_bank(spec("sensor", type="implausible", max=160, **{"for": "3s"}))
    detections = feed(bank, values([170, 170, 20, 170, 170, 170, 170, 20]))
    assert timeline(detections) == [(EventKind.fault_opened, 6), (EventKind.fault_cleared, 7)]
    notes = bank.notices()
    assert notes[0] == (
        "chiller-1 discharge_temp = 170.00 is outside [None, 160.0] (rule sensor); "
        "raising a sensor fault if it stays so for 3s"
    )


def test_a_broken_sensor_is_a_sensor_fault_not_a_process_fault():
    bank = make_bank(
        spec("hot", above=95),
        spec("sensor", type="implausible"),
    )
    broken = [Reading("chiller-1", "CH-01", "discharge_temp", at(0), 6553.5, "bad")]
    (d,) = feed(bank, broken)
    assert (d.rule_id, d.kind) == ("sensor", EventKind.fault_opened)


# ---------------------------------------------------------------- the bank


def test_rules_apply_to_the_devices_of_their_profile_and_metric():
    bank = make_bank(spec("hot", above=80), spec("pump_hot", profile="pump", above=50))
    series = [
        Reading("chiller-1", "X", "discharge_temp", at(0), 85.0),
        Reading("chiller-1", "X", "supply_water_temp", at(1), 85.0),  # other metric
        Reading("pump-1", "P", "discharge_temp", at(2), 60.0),
        Reading("unknown-device", "U", "discharge_temp", at(3), 99.0),
    ]
    detections = feed(bank, series)
    assert [(d.device, d.rule_id, d.asset) for d in detections] == [
        ("chiller-1", "hot", "CH-01"),  # the asset comes from the site, not the reading
        ("pump-1", "pump_hot", "P-01"),
    ]


def test_several_rules_on_one_reading_come_in_file_order():
    bank = make_bank(
        spec("z_second_in_name", above=80),
        spec("a_first_in_name", above=70),
        spec("other_metric", metric="supply_water_temp", above=1),
    )
    assert [d.rule_id for d in bank.observe(values([90.0])[0])] == [
        "z_second_in_name",
        "a_first_in_name",
    ]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_not_readings(value):
    bank = make_bank(spec(type="implausible", max=10), spec("t", above=1))
    assert bank.observe(values([value])[0]) == []
    assert bank.snapshot()["rules"]["r"]["devices"] == {}


def test_bank_threshold_ignores_bad_readings():
    bank = make_bank(spec(above=80))
    assert feed(bank, values([500.0] * 3, quality="bad")) == []


def test_notices_say_what_is_pending_and_are_drained():
    bank = make_bank(spec("chiller.discharge_temp.high", above=95.0, **{"for": "5s"}))
    assert feed(bank, values([95.74])) == []
    assert bank.notices() == [
        "chiller-1 discharge_temp = 95.74 crossed > 95.0 (rule chiller.discharge_temp.high); "
        "raising if it holds for 5s"
    ]
    assert bank.notices() == []
    feed(bank, values([96.0, 97.0], start=1))  # still the same crossing: no new notice
    assert bank.notices() == []


def test_no_crossing_notice_without_a_duration():
    bank = make_bank(spec(above=95.0))
    feed(bank, values([96.0]))
    assert bank.notices() == []


def test_notices_are_bounded_when_nobody_reads_them():
    bank = make_bank(spec(above=95.0, **{"for": "5s"}))
    feed(bank, values([96.0, 90.0] * 1500))
    notes = bank.notices()
    assert len(notes) == 1001
    assert notes[0] == "(500 earlier notice(s) dropped: nobody read them)"


def test_open_episodes_and_seeding_from_the_outbox():
    bank = make_bank(
        spec("hot", above=80),
        spec("pm", type="counter", metric="run_hours", every=10),
        open_episodes=[
            ("chiller-1", "hot"),
            ("chiller-1", "pm"),  # counters have no episodes
            ("chiller-1", "gone"),  # no such rule any more
            ("pump-1", "hot"),  # not a chiller
        ],
    )
    assert bank.open_episodes() == {("chiller-1", "hot")}
    assert feed(bank, values([90.0])) == []  # no second opening
    assert timeline(feed(bank, values([70.0], start=1))) == [(EventKind.fault_cleared, 1)]
    assert bank.open_episodes() == set()


def test_dirty_tracks_state_changes():
    bank = make_bank(spec(above=80, **{"for": "5s"}))
    assert not bank.dirty
    feed(bank, values([70.0]))
    assert bank.dirty  # a device seen for the first time
    bank.snapshot()
    assert not bank.dirty
    feed(bank, values([70.0, 71.0], start=1))  # nothing pending, nothing open: no change
    assert not bank.dirty
    feed(bank, values([85.0], start=3))  # pending
    assert bank.dirty
    bank.snapshot()
    feed(bank, values([86.0], start=4))  # still pending since t=3
    assert not bank.dirty
    feed(bank, values([86.0], start=8))  # opens
    assert bank.dirty


def test_readings_need_timezone_aware_times():
    bank = make_bank(spec(above=80))
    with pytest.raises(TypeError):
        bank.observe(Reading("chiller-1", "CH-01", "discharge_temp", datetime(2024, 5, 1), 1.0))


def test_threshold_pending_timer_survives_the_clock_going_back():
    bank = make_bank(spec(above=80, **{"for": "5s"}))
    feed(bank, values([85.0], start=10))
    # the clock steps back 3 s: the breach is timed from the earlier reading
    assert timeline(feed(bank, values([85.0] * 6, start=7))) == [(EventKind.fault_opened, 12)]


# ---------------------------------------------------------------- snapshot / restore


def test_snapshot_is_versioned_json():
    bank = make_bank(
        spec("hot", above=80, cooldown=10, flapping=FLAP, **{"for": 2}),
        RATE,
        PM,
        STUCK,
        spec("sensor", type="implausible", max=100),
    )
    feed(bank, values([85.0] * 5 + [50.0]))
    feed(bank, hours([10.0, 20.0]))
    feed(bank, supply_values([7.0] * 3))
    state = bank.snapshot()
    assert state["version"] == 1
    assert set(state["rules"]) == {"hot", "rate", "pm", "stuck", "sensor"}
    assert json.loads(json.dumps(state, allow_nan=False)) == state
    hot = state["rules"]["hot"]
    assert hot["type"] == "threshold"
    assert hot["devices"]["chiller-1"]["cooldown_until"] is not None
    assert state["rules"]["pm"]["devices"]["chiller-1"] == {
        "prev": 20.0,
        "base": 0.0,
        "next_due": 2000.0,
    }


def test_restore_continues_an_open_episode_and_its_timers():
    first = make_bank(spec("hot", above=80, **{"for": "5s"}), STUCK)
    feed(first, values([85.0] * 6))  # open at t=5
    feed(first, supply_values([7.0] * 6))  # stuck reference since t=0
    state = json.loads(json.dumps(first.snapshot()))

    second = make_bank(spec("hot", above=80, **{"for": "5s"}), STUCK)
    second.restore(state)
    assert second.open_episodes() == {("chiller-1", "hot")}
    assert second.dirty
    assert feed(second, values([90.0], start=6)) == []  # no second opening
    assert timeline(feed(second, supply_values([7.0], start=10))) == [
        (EventKind.fault_opened, 10)  # 10 s since the reference taken before the restart
    ]
    assert timeline(feed(second, values([70.0], start=11))) == [(EventKind.fault_cleared, 11)]


def test_restore_drops_rules_that_are_gone_and_starts_new_rules_fresh():
    old = make_bank(spec("gone", above=80), spec("kept", above=80))
    feed(old, values([85.0]))
    state = old.snapshot()
    new = make_bank(spec("kept", above=80), spec("new", above=80))
    new.restore(state)
    assert new.open_episodes() == {("chiller-1", "kept")}
    assert new.notices() == [
        "rule gone is no longer in the rules file: its open episode(s) on chiller-1 will not "
        "be cleared by the edge"
    ]
    assert [d.rule_id for d in feed(new, values([90.0], start=1))] == ["new"]


def test_restore_drops_devices_the_rule_no_longer_applies_to():
    old = make_bank(spec("hot", above=80))
    feed(old, values([85.0]))
    new = DetectorBank(rules_file(spec("hot", above=80)), {"chiller-1": "pump"}, ASSETS)
    new.restore(old.snapshot())
    assert new.open_episodes() == set()
    assert "chiller-1 is no longer a chiller device" in new.notices()[0]


def test_restore_of_a_changed_rule_keeps_the_episode_and_measures_afresh():
    old = make_bank(spec("hot", above=80, **{"for": "5s"}))
    feed(old, values([85.0] * 6 + [60.0] + [85.0] * 2))  # opened, cleared, pending since t=7
    feed(old, values([85.0] * 6, start=20, device="chiller-2"))  # open on chiller-2
    new = make_bank(spec("hot", above=90, **{"for": "5s"}))  # the planner raised the level
    new.restore(old.snapshot())
    assert "rule hot changed since the state was saved" in new.notices()[0]
    assert new.open_episodes() == {("chiller-2", "hot")}
    assert new.snapshot()["rules"]["hot"]["devices"]["chiller-1"]["pending"] is None
    assert timeline(feed(new, values([70.0], start=30, device="chiller-2"))) == [
        (EventKind.fault_cleared, 30)
    ]


def test_restore_when_a_rule_changed_type_keeps_an_open_episode():
    old = make_bank(spec("sensor", above=150))
    feed(old, values([170.0]))
    new = make_bank(spec("sensor", type="implausible", max=160))
    new.restore(old.snapshot())
    assert new.open_episodes() == {("chiller-1", "sensor")}
    assert timeline(feed(new, values([20.0], start=1))) == [(EventKind.fault_cleared, 1)]


def test_restore_of_a_counter_whose_schedule_changed_keeps_its_total():
    old = make_bank(PM)
    feed(old, hours([1990.0, 0.0, 15.0]))
    new = make_bank(spec("pm", type="counter", metric="run_hours", every=500))
    new.restore(old.snapshot())
    assert new.counter_total("chiller-1", "pm") == 2005.0
    assert feed(new, hours([300.0], start=10)) == []  # 2290: the new schedule's next is 2500
    assert [(d.value, d.threshold) for d in feed(new, hours([510.0], start=11))] == [(2500, 2500)]


@pytest.mark.parametrize(
    "state",
    [
        {"version": 2, "rules": {}},
        {"rules": {}},
        [],
        {"version": 1},
        {"version": 1, "rules": {"hot": {"type": "threshold", "devices": {"chiller-1": 5}}}},
        {
            "version": 1,
            "rules": {
                "hot": {
                    "type": "threshold",
                    "fingerprint": "",
                    "devices": {"chiller-1": {"open": "yes"}},
                }
            },
        },
    ],
)
def test_unreadable_state_raises_and_changes_nothing(state):
    bank = make_bank(spec("hot", above=80))
    feed(bank, values([85.0]))
    before = bank.snapshot()
    with pytest.raises(StateError):
        bank.restore(state)
    assert bank.snapshot() == before


def test_restore_in_the_middle_of_flapping_settles_the_same_way():
    stream = flapping_10_minutes(80.0) + values([79.0] * 120, start=600)
    whole = feed(make_bank(BARE), stream)
    first = make_bank(BARE)
    head = feed(first, stream[:300])
    second = make_bank(BARE)
    second.restore(json.loads(json.dumps(first.snapshot())))
    assert head + feed(second, stream[300:]) == whole


def synthetic_stream(seed: int, n: int = 6000) -> list[Reading]:
    """Several devices and metrics: random walks with spikes, flapping stretches, bad readings,
    flat (stuck) stretches, counter resets, uneven intervals and the odd clock step back."""
    rng = random.Random(seed)
    out: list[Reading] = []
    t = 0.0
    level = {("chiller-1", m): 80.0 for m in METRICS} | {("chiller-2", m): 80.0 for m in METRICS}
    counter = {"chiller-1": 1900.0, "chiller-2": 10.0}
    flat_until = 0.0
    for _ in range(n):
        t += rng.choice([0.25, 0.5, 1.0, 1.0, 2.0, 7.0])
        if rng.random() < 0.002:
            t -= rng.choice([3.0, 30.0])  # the edge clock steps back
        device = rng.choice(["chiller-1", "chiller-2", "pump-1"])
        metric = rng.choice(METRICS)
        quality: Quality = "good"
        if metric == "run_hours":
            counter[device] = (
                rng.uniform(0, 5) if rng.random() < 0.01 else counter.get(device, 0) + 3.0
            )
            value = counter[device]
        else:
            key = (device, metric)
            if t < flat_until:
                value = level.get(key, 80.0)
            else:
                if rng.random() < 0.005:
                    flat_until = t + 40
                step = rng.gauss(0, 1.5)
                if rng.random() < 0.02:
                    step += rng.choice([-15, 15])  # a spike
                value = level[key] = min(max(level.get(key, 80.0) + step, 40.0), 120.0)
                if rng.random() < 0.15:
                    value = 80.0 + rng.choice([-0.1, 0.1])  # flapping around the threshold
        if rng.random() < 0.03:
            quality = rng.choice(["bad", "uncertain"])
            value = rng.choice([value, 999.0])
        out.append(Reading(device, ASSETS[device], metric, at(t), round(value, 3), quality))
    return out


METRICS = ["discharge_temp", "supply_water_temp", "run_hours"]
PROPERTY_RULES = [
    spec("hot", above=80, flapping={"transitions": 4, "window": "1m"}),
    spec("hot_held", above=90, clear_below=85, cooldown="20s", **{"for": "5s"}),
    spec("cold", metric="supply_water_temp", below=70, clear_above=75, cooldown=15),
    spec("rise", type="rate_of_change", rise=0.5, window="10s", flapping=FLAP),
    spec("swing", type="rate_of_change", metric="supply_water_temp", max_rate=1, window=5),
    spec("pm", type="counter", metric="run_hours", every=100),
    spec("pm2", type="counter", metric="run_hours", every=250, first_due=1950),
    spec("flat", type="stuck", **{"for": "30s"}, epsilon=0.2, cooldown=5),
    spec("sensor", type="implausible", max=110, flapping={"transitions": 2, "window": 30}),
    spec("quality", type="implausible", metric="supply_water_temp", **{"for": "2s"}),
    spec("pump", profile="pump", above=85, flapping=FLAP),
]


@pytest.mark.parametrize("seed", range(12))
def test_restoring_a_snapshot_mid_stream_gives_the_same_detections(seed):
    rules = rules_file(*PROPERTY_RULES)
    stream = synthetic_stream(seed)
    reference = DetectorBank(rules, DEVICES, ASSETS)
    expected = feed(reference, stream)
    kinds_seen = {d.kind for d in expected}
    assert {EventKind.fault_opened, EventKind.fault_cleared, EventKind.maintenance_due} <= (
        kinds_seen
    )

    rng = random.Random(1000 + seed)
    cuts = sorted(rng.sample(range(1, len(stream)), 5))
    got: list[Detection] = []
    bank = DetectorBank(rules, DEVICES, ASSETS)
    start = 0
    for cut in [*cuts, len(stream)]:
        got += feed(bank, stream[start:cut])
        text = json.dumps(bank.snapshot(), allow_nan=False)  # as the agent would store it
        bank = DetectorBank(rules, DEVICES, ASSETS)  # a restarted agent
        bank.restore(json.loads(text))
        start = cut
    assert got == expected
    assert bank.open_episodes() == reference.open_episodes()
    assert bank.snapshot() == reference.snapshot()


def test_the_property_stream_exercises_flapping_and_every_rule():
    rules = rules_file(*PROPERTY_RULES)
    detections: list[Detection] = []
    for seed in range(12):
        detections += feed(DetectorBank(rules, DEVICES, ASSETS), synthetic_stream(seed))
    assert EventKind.flapping in {d.kind for d in detections}
    assert {d.rule_id for d in detections} == {r["id"] for r in PROPERTY_RULES}


def test_replay_through_a_fresh_bank_is_identical():
    rules = rules_file(*PROPERTY_RULES)
    stream = synthetic_stream(99)
    first = feed(DetectorBank(rules, DEVICES, ASSETS), stream)
    assert first == feed(DetectorBank(rules, DEVICES, ASSETS), stream)
    for device in DEVICES:
        assert_one_opening_per_episode(
            [d for d in first if d.device == device and d.kind is not EventKind.maintenance_due]
        )


def test_restoring_after_every_reading_gives_the_same_detections():
    rules = rules_file(*PROPERTY_RULES)
    stream = synthetic_stream(7, n=1500)
    expected = feed(DetectorBank(rules, DEVICES, ASSETS), stream)
    got: list[Detection] = []
    bank = DetectorBank(rules, DEVICES, ASSETS)
    for r in stream:
        got += bank.observe(r)
        state = json.loads(json.dumps(bank.snapshot()))
        bank = DetectorBank(rules, DEVICES, ASSETS)
        bank.restore(state)
    assert got == expected
