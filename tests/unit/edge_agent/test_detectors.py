"""edge_agent.detectors: threshold-with-duration and communication watch, on event time only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edge_agent.detectors import CommWatch, Detection, ThresholdDetector
from edge_agent.readings import Quality, Reading
from fieldloop.detection import ThresholdRule
from fieldloop.messages import COMM_RULE_ID, EventKind, Severity

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
