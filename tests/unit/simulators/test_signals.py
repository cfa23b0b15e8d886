"""simulators.signals: values as pure functions of scenario time."""

from __future__ import annotations

import pytest

from simulators.signals import Constant, Counter, DriftHoldRecover, Signal, noise

# base 10 -> peak 20: starts at 100, ramps 50 s, holds 30 s, recovers 20 s (ends at 200)
SHAPE = {"base": 10.0, "peak": 20.0, "start": 100.0, "ramp": 50.0, "hold": 30.0, "recover": 20.0}


def drift(**overrides) -> DriftHoldRecover:
    return DriftHoldRecover(**(SHAPE | overrides))


# ---------------------------------------------------------------- DriftHoldRecover


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (-10.0, 10.0),  # before the scenario starts
        (0.0, 10.0),
        (99.9, 10.0),  # before the drift starts
        (100.0, 10.0),  # drift starts from base
        (110.0, 12.0),  # 10 s into a 50 s ramp: 1/5 of the way
        (125.0, 15.0),  # mid ramp
        (149.0, 19.8),
        (150.0, 20.0),  # hold starts
        (165.0, 20.0),  # mid hold
        (179.9, 20.0),
        (180.0, 20.0),  # recovery starts from peak
        (185.0, 17.5),
        (190.0, 15.0),  # mid recovery
        (199.0, 10.5),
        (200.0, 10.0),  # back at base
        (1_000.0, 10.0),  # long after, without a period
    ],
)
def test_shape_at_key_times(t, expected):
    assert drift().shape(t) == pytest.approx(expected)


def test_falling_shape_dips_and_recovers():
    dip = drift(base=20.0, peak=5.0)
    assert dip.shape(50) == 20.0
    assert dip.shape(125) == pytest.approx(12.5)
    assert dip.shape(160) == 5.0
    assert dip.shape(190) == pytest.approx(12.5)
    assert dip.shape(250) == 20.0


def test_shape_is_continuous_across_phase_boundaries():
    s = drift()
    for boundary in (100.0, 150.0, 180.0, 200.0):
        assert s.shape(boundary - 1e-6) == pytest.approx(s.shape(boundary + 1e-6), abs=1e-3)


def test_shape_is_monotonic_in_each_phase():
    s = drift()
    ramp = [s.shape(100 + i) for i in range(51)]
    recovery = [s.shape(180 + i) for i in range(21)]
    assert ramp == sorted(ramp)
    assert recovery == sorted(recovery, reverse=True)


def test_zero_length_phases():
    step = drift(ramp=0.0, recover=0.0)
    assert step.shape(100.0) == 10.0
    assert step.shape(100.001) == 20.0
    assert step.shape(129.999) == 20.0
    assert step.shape(130.0) == 10.0


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (125.0, 15.0),
        (300.0 + 125.0, 15.0),  # next period, same phase
        (600.0 + 165.0, 20.0),
        (900.0 + 190.0, 15.0),
        (300.0 + 250.0, 10.0),
        (300.0, 10.0),  # a period boundary is the base again
        (3_000.0 + 110.0, 12.0),
    ],
)
def test_periodic_repetition(t, expected):
    assert drift(period=300.0).shape(t) == pytest.approx(expected)


def test_periodic_shape_repeats_exactly():
    s = drift(period=300.0)
    for t in range(0, 300, 7):
        assert s.shape(t) == pytest.approx(s.shape(t + 300)) == pytest.approx(s.shape(t + 1500))


def test_without_period_there_is_only_one_episode():
    assert drift().shape(425.0) == 10.0


def test_period_equal_to_the_episode_is_allowed():
    s = drift(start=0.0, period=100.0)  # 0 + 50 + 30 + 20
    assert s.shape(125.0) == pytest.approx(15.0)


def test_crossing_times_inside_the_range():
    assert drift().crossing_times(15.0) == pytest.approx((125.0, 190.0))
    assert drift().crossing_times(12.0) == pytest.approx((110.0, 196.0))


def test_crossing_times_match_the_shape():
    s = drift()
    for level in (10.5, 13.3, 17.0, 19.9):
        crossing = s.crossing_times(level)
        assert crossing is not None
        up, down = crossing
        assert s.start < up < s.start + s.ramp
        assert s.start + s.ramp + s.hold < down < s.start + s.ramp + s.hold + s.recover
        assert s.shape(up) == pytest.approx(level)
        assert s.shape(down) == pytest.approx(level)
        assert s.shape(up - 0.01) < level < s.shape(up + 0.01)
        assert s.shape(down - 0.01) > level > s.shape(down + 0.01)


def test_crossing_times_of_a_falling_shape():
    dip = drift(base=20.0, peak=10.0)
    assert dip.crossing_times(12.5) == pytest.approx((137.5, 185.0))


@pytest.mark.parametrize("level", [10.0, 20.0, 9.99, 20.01, -5.0, 1e9])
def test_crossing_times_outside_the_range_is_none(level):
    assert drift().crossing_times(level) is None


def test_crossing_times_of_a_flat_shape_is_none():
    assert drift(peak=10.0).crossing_times(10.0) is None


@pytest.mark.parametrize("field", ["start", "ramp", "hold", "recover"])
def test_negative_durations_are_rejected(field):
    with pytest.raises(ValueError, match=f"{field} must be >= 0"):
        drift(**{field: -1.0})


def test_period_shorter_than_the_episode_is_rejected():
    with pytest.raises(ValueError, match="period must be at least"):
        drift(period=199.0)


def test_value_without_jitter_is_the_shape():
    s = drift()
    for t in (0.0, 125.0, 165.0, 190.0, 500.0):
        assert s.value(t, seed=1, name="x") == s.shape(t)


def test_value_with_jitter_stays_within_jitter_of_the_shape():
    s = drift(jitter=0.3)
    diffs = [s.value(t / 10, seed=7, name="discharge_temp") - s.shape(t / 10) for t in range(3000)]
    assert all(abs(d) <= 0.3 for d in diffs)
    assert any(d != 0 for d in diffs)


def test_value_with_jitter_is_reproducible():
    s = drift(jitter=0.5)
    a = [s.value(t * 0.37, 3, "m") for t in range(500)]
    b = [s.value(t * 0.37, 3, "m") for t in range(500)]
    assert a == b


# ---------------------------------------------------------------- noise


def test_noise_is_deterministic():
    for t in (0.0, 0.3, 12.7, 1e6):
        assert noise(42, "supply_water_temp", t, 1.0) == noise(42, "supply_water_temp", t, 1.0)


def test_noise_is_constant_within_a_time_bucket():
    assert noise(1, "m", 10.0, 1.0) == noise(1, "m", 10.2, 1.0) == noise(1, "m", 10.49, 1.0)
    assert noise(1, "m", 3.0, 1.0, bucket=2.0) == noise(1, "m", 3.99, 1.0, bucket=2.0)


def test_noise_changes_between_buckets_seeds_and_names():
    base = noise(1, "m", 10.0, 1.0)
    across_buckets = {noise(1, "m", 10.0 + 0.5 * k, 1.0) for k in range(20)}
    across_seeds = {noise(s, "m", 10.0, 1.0) for s in range(20)}
    across_names = {noise(1, f"m{k}", 10.0, 1.0) for k in range(20)}
    assert len(across_buckets) > 15
    assert len(across_seeds) > 15
    assert len(across_names) > 15
    assert base in across_buckets


@pytest.mark.parametrize("amplitude", [0.01, 0.5, 3.0, 250.0])
def test_noise_is_bounded_by_amplitude_and_uses_the_range(amplitude):
    values = [noise(9, "m", t * 0.5, amplitude) for t in range(4000)]
    assert all(-amplitude <= v <= amplitude for v in values)
    assert min(values) < -0.9 * amplitude
    assert max(values) > 0.9 * amplitude
    assert abs(sum(values) / len(values)) < 0.1 * amplitude


def test_noise_scales_linearly_with_amplitude():
    assert noise(5, "m", 7.0, 2.0) == pytest.approx(2 * noise(5, "m", 7.0, 1.0))


def test_zero_amplitude_is_exactly_zero():
    assert noise(1, "m", 5.0, 0.0) == 0.0
    assert noise(1, "m", 5.0, 0) == 0.0


# ---------------------------------------------------------------- Counter and Constant


def test_counter_grows_at_its_rate():
    run_hours = Counter(start=12_000.0, rate=1 / 3600)
    assert run_hours.value(0.0, 1, "run_hours") == 12_000.0
    assert run_hours.value(3600.0, 1, "run_hours") == pytest.approx(12_001.0)
    assert run_hours.value(36_000.0, 1, "run_hours") == pytest.approx(12_010.0)


def test_counter_does_not_run_backwards_before_the_start():
    c = Counter(start=5.0, rate=2.0)
    assert c.value(-100.0, 1, "c") == 5.0
    assert c.value(10.0, 1, "c") == 25.0


def test_counter_ignores_seed_and_name():
    c = Counter(start=0.0, rate=1.0)
    assert c.value(7.0, 1, "a") == c.value(7.0, 99, "b") == 7.0


def test_constant_without_jitter():
    c = Constant(7.5)
    assert [c.value(t, s, "x") for t in (0.0, 10.0, 1e6) for s in (1, 2)] == [7.5] * 6


def test_constant_with_jitter():
    c = Constant(7.0, jitter=0.2)
    values = [c.value(t * 0.5, 3, "supply_water_temp") for t in range(1000)]
    assert all(6.8 <= v <= 7.2 for v in values)
    assert len(set(values)) > 100
    assert values == [c.value(t * 0.5, 3, "supply_water_temp") for t in range(1000)]
    assert c.value(0.0, 3, "x") - 7.0 == pytest.approx(noise(3, "x", 0.0, 0.2))


def test_constant_rejects_negative_jitter():
    with pytest.raises(ValueError, match="jitter must be >= 0"):
        Constant(1.0, jitter=-0.1)


def test_signals_are_immutable():
    with pytest.raises(AttributeError):
        Constant(1.0).level = 2.0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        drift().peak = 0.0  # type: ignore[misc]


def test_all_signals_satisfy_the_protocol():
    signals: list[Signal] = [Constant(1.0), Counter(0.0, 1.0), drift()]
    for s in signals:
        assert isinstance(s.value(1.0, 1, "x"), float)
