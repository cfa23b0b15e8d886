"""Screening readings: each kind of bad reading is quarantined with its reason and what was
received, and a good reading beside it is kept as it was."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from central.domain.quarantine import CLOCK_FLOOR, Limits, Reason, screen
from fieldloop.messages import ReceivedTelemetry, Sample

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
METRICS = frozenset({"temp", "current"})


def one(sample: dict[str, Any], metrics: frozenset[str] | None = METRICS) -> Reason | None:
    out = screen([sample], NOW, Limits(), metrics)
    assert len(out.good) + len(out.bad) == 1
    return out.bad[0].reason if out.bad else None


def s(**kw: Any) -> dict[str, Any]:
    return {"metric": "temp", "time": NOW.isoformat(), "value": 7.5} | kw


@pytest.mark.parametrize(
    ("sample", "reason"),
    [
        (s(time=(NOW + timedelta(days=1)).isoformat()), Reason.future),
        (s(time=(NOW + timedelta(hours=8)).replace(tzinfo=UTC).isoformat()), Reason.future),
        (s(time="1970-01-01T00:00:00Z"), Reason.reset_clock),
        (s(time="2000-01-01T00:00:05+00:00"), Reason.reset_clock),
        (s(time=0), Reason.reset_clock),
        (s(time=(NOW - timedelta(days=31)).isoformat()), Reason.too_old),
        (s(time=NOW.timestamp() * 1000), Reason.ms_as_seconds),
        (s(time=NOW.timestamp() * 1_000_000), Reason.ms_as_seconds),
        (s(time=1e300), Reason.future),
        (s(time="2026-12-01T08:00:00"), Reason.no_offset),
        (s(time="yesterday"), Reason.bad_time),
        (s(time=None), Reason.bad_time),
        (s(time=True), Reason.bad_time),
        (s(value=math.nan), Reason.not_finite),
        (s(value=math.inf), Reason.not_finite),
        (s(value=-math.inf), Reason.not_finite),
        (s(value="7.5"), Reason.not_a_number),
        (s(value=None), Reason.not_a_number),
        (s(value=True), Reason.not_a_number),
        (s(metric="pressure"), Reason.unknown_metric),
        (s(metric="a/b"), Reason.bad_sample),
        (s(quality="great"), Reason.bad_sample),
        (s(extra=1), Reason.bad_sample),
        ({"metric": "temp", "value": 1}, Reason.bad_sample),
        ([1, 2, 3], Reason.bad_sample),
    ],
)
def test_each_bad_reading_has_its_reason(sample: Any, reason: Reason) -> None:
    assert one(sample) is reason


@pytest.mark.parametrize(
    "sample",
    [
        s(),
        s(time=(NOW + timedelta(minutes=9)).isoformat()),  # a clock a little fast
        s(time=(NOW - timedelta(days=29)).isoformat()),  # an edge back after a month offline
        s(time=NOW.timestamp()),  # seconds since 1970, as numbers
        s(
            time=(NOW.astimezone(timezone(timedelta(hours=8)))).isoformat()
        ),  # Beijing time, with offset
        s(value=3),
        s(quality="bad"),  # a device's own "bad" is a reading, flagged as such
        s(metric="current"),
    ],
)
def test_good_readings_are_kept(sample: dict[str, Any]) -> None:
    assert one(sample) is None


def test_without_a_profile_every_wellformed_metric_is_taken() -> None:
    assert one(s(metric="pressure"), metrics=None) is None


def test_what_is_kept_of_a_bad_reading() -> None:
    out = screen([s(value=math.nan), s(metric="x" * 100, time="garbage" * 30)], NOW, Limits())
    nan, garbage = out.bad
    assert (nan.metric, nan.value, nan.time) == ("temp", "NaN", f'"{NOW.isoformat()}"')  # JSON
    assert nan.detail == "value nan is not a reading"
    assert garbage.reason is Reason.bad_time and len(garbage.time) == 64
    assert garbage.detail.startswith("time 'garbagegarbage") and garbage.metric == "x" * 100


def test_readings_sharing_one_bad_time_each_keep_their_metric_and_value() -> None:
    t = "1970-01-01T00:00:10Z"
    out = screen([s(time=t, value=1), s(time=t, metric="current", value=2)], NOW, Limits())
    assert [(q.metric, q.value, q.reason) for q in out.bad] == [
        ("temp", "1", Reason.reset_clock),
        ("current", "2", Reason.reset_clock),
    ]
    assert out.counts() == {"reset_clock": 2}


def test_the_limits_are_settings() -> None:
    strict = Limits(max_future=timedelta(seconds=1), max_age=timedelta(hours=1))
    ahead, old = (
        s(time=(NOW + timedelta(seconds=5)).isoformat()),
        s(time=(NOW - timedelta(hours=2)).isoformat()),
    )
    out = screen([ahead, old, s()], NOW, strict, METRICS)
    assert [q.reason for q in out.bad] == [Reason.future, Reason.too_old]
    assert len(out.good) == 1


def test_a_batch_mixes_good_and_bad_and_keeps_the_order_of_the_good() -> None:
    """As central receives it: JSON with a literal NaN (Python's json writes one)."""
    samples = [s(value=float(i)) for i in range(5)]
    samples[2]["value"] = math.nan
    samples[4]["time"] = "1970-01-01T00:00:00Z"
    doc = {"id": "b", "site": "s", "device": "d", "asset": "a", "event_time": NOW.isoformat(),
           "seq": 1, "samples": samples}  # fmt: skip
    batch = ReceivedTelemetry.model_validate_json(json.dumps(doc))
    out = screen(batch.samples, NOW, Limits(), METRICS)
    assert [r.value for r in out.good] == [0.0, 1.0, 3.0]
    assert out.counts() == {"not_finite": 1, "reset_clock": 1}


def test_typed_samples_of_a_telemetry_batch_are_screened_too() -> None:
    typed = [Sample(metric="temp", time=NOW, value=1.0), Sample(metric="temp", time=NOW, value=2.0)]
    assert [r.value for r in screen(typed, NOW).good] == [1.0, 2.0]
    out = screen(typed[:1], NOW - timedelta(hours=1))
    assert [q.reason for q in out.bad] == [Reason.future]
    out = screen([Sample(metric="temp", time=CLOCK_FLOOR - timedelta(seconds=1), value=1)], NOW)
    assert [q.reason for q in out.bad] == [Reason.reset_clock]


@given(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(min_value=-30 * 86400 + 1, max_value=600),
)
def test_any_finite_value_at_a_plausible_time_is_good_and_exact(value: float, offset: int) -> None:
    t = NOW + timedelta(seconds=offset)
    out = screen([s(time=t.isoformat(), value=value)], NOW, Limits(), METRICS)
    assert not out.bad
    assert (out.good[0].time, out.good[0].value) == (t, value)
