"""Screening received readings: the good ones go to the telemetry store, the others to quarantine
with a reason, never into the store as if they were good. Pure: no I/O, no clock.

What a maintenance organisation sees from the field, and what each reason catches:

* ``future``: a time ahead of central's clock by more than ``max_future`` (a gateway whose
  clock runs in local time but says UTC is 8 hours ahead in China);
* ``reset_clock``: before 2001 (a real-time clock that lost power reads 1970-01-01 or
  2000-01-01);
* ``too_old``: older than ``max_age`` (beyond what an edge outbox would still be resending);
* ``ms_as_seconds``: a number of seconds too large to be seconds, but plausible as milliseconds
  (or micro-), as a device that counts milliseconds sends it;
* ``no_offset`` and ``bad_time``: a time with no UTC offset (it would be guessed), or none at all;
* ``not_finite`` and ``not_a_number``: NaN or infinity, or a value that is no number;
* ``unknown_metric``: a metric the device's profile does not have (a misconfigured gateway, or
  another device's readings on this one's topic);
* ``bad_sample``: a sample that is not an object of metric, time, value and quality.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    future = "future"
    reset_clock = "reset_clock"
    too_old = "too_old"
    ms_as_seconds = "ms_as_seconds"
    no_offset = "no_offset"
    bad_time = "bad_time"
    not_finite = "not_finite"
    not_a_number = "not_a_number"
    unknown_metric = "unknown_metric"
    bad_sample = "bad_sample"


#: Nothing FieldLoop receives was measured before this: earlier times are a reset clock.
CLOCK_FLOOR = datetime(2001, 1, 1, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_QUALITIES = frozenset({"good", "uncertain", "bad"})
_KEYS = frozenset({"metric", "time", "value", "quality"})
_METRIC = re.compile(r"^[^\s/+#$]{1,128}$")
_RAW_MAX = 64  # what is kept of a bad time or value, as text


@dataclass(frozen=True, slots=True)
class Limits:
    """How far from central's clock a reading's time may be."""

    max_future: timedelta = timedelta(minutes=10)
    max_age: timedelta = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Reading:
    metric: str
    time: datetime
    value: float
    quality: str


@dataclass(frozen=True, slots=True)
class Quarantined:
    reason: Reason
    detail: str
    metric: str | None
    time: str  # as received (JSON text), cut to 64 characters
    value: str


@dataclass(slots=True)
class Screened:
    good: list[Reading] = field(default_factory=list)
    bad: list[Quarantined] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        return Counter(q.reason.value for q in self.bad)


def screen(
    samples: Iterable[Any],
    received: datetime,
    limits: Limits = Limits(),
    metrics: frozenset[str] | None = None,
) -> Screened:
    """Each sample (as decoded from JSON) to ``good`` or, with its reason, to ``bad``; ``metrics``
    is the device profile's metric names (``None``: the profile is not known here, so every
    well-formed metric is taken)."""
    out = Screened()
    newest = received + limits.max_future
    oldest = received - limits.max_age
    # The samples of one poll share one time, and a device has a handful of metrics: each is
    # judged once per batch. Exact type tests, not isinstance with unions or ABCs: this loop
    # runs for every reading central receives.
    times: dict[object, datetime | Quarantined] = {}
    verdicts: dict[str, Reason | None] = {}
    good, bad = out.good.append, out.bad.append
    isfinite = math.isfinite
    for s in samples:
        if type(s) is not dict:
            s = _as_dict(s)
        try:
            metric, raw_time, value = s["metric"], s["time"], s["value"]
        except (KeyError, TypeError):
            bad(_bad(Reason.bad_sample, _sample_problem(s), s))
            continue
        n = len(s)
        quality = s.get("quality", "good") if n == 4 else "good"
        if (
            (n != 3 and (n != 4 or "quality" not in s))
            or type(metric) is not str
            or (quality != "good" and (type(quality) is not str or quality not in _QUALITIES))
        ):
            bad(_bad(Reason.bad_sample, _sample_problem(s), s))
            continue
        if metric in verdicts:
            verdict = verdicts[metric]
        else:
            verdict = verdicts[metric] = _verdict(metric, metrics)
        if verdict is not None:
            detail = (
                f"{metric!r} is not in the device's profile"
                if verdict is Reason.unknown_metric
                else _sample_problem(s)
            )
            bad(_bad(verdict, detail, s))
            continue
        kind = type(raw_time)
        if kind is str or kind is float or kind is int or kind is datetime:
            when = times.get(raw_time)
            if when is None:
                when = times[raw_time] = _time(raw_time, s, oldest, newest, limits)
        else:
            when = _time(raw_time, s, oldest, newest, limits)
        if type(when) is Quarantined:
            bad(_bad(when.reason, when.detail, s))  # same time, this sample
            continue
        kind = type(value)
        if kind is int:
            value = float(value)
        elif kind is not float:
            bad(_bad(Reason.not_a_number, f"value {_text(value)} is not a number", s))
            continue
        if not isfinite(value):
            bad(_bad(Reason.not_finite, f"value {value} is not a reading", s))
            continue
        good(Reading(metric, when, value, quality))  # type: ignore[arg-type]
    return out


def _as_dict(s: object) -> Any:
    if hasattr(s, "metric") and hasattr(s, "time"):  # a Sample model, already typed
        return {"metric": s.metric, "time": s.time, "value": s.value, "quality": s.quality}  # type: ignore[attr-defined]
    return dict(s) if isinstance(s, Mapping) else s


def _verdict(metric: str, metrics: frozenset[str] | None) -> Reason | None:
    if not _METRIC.match(metric):
        return Reason.bad_sample
    if metrics is not None and metric not in metrics:
        return Reason.unknown_metric
    return None


def _time(
    raw: object, s: Mapping[str, Any], oldest: datetime, newest: datetime, limits: Limits
) -> datetime | Quarantined:
    if isinstance(raw, datetime):
        if raw.tzinfo is None:
            return _bad(Reason.no_offset, f"time {raw.isoformat()} has no UTC offset", s)
        when = raw.astimezone(UTC)
    elif isinstance(raw, bool) or not isinstance(raw, str | int | float):
        return _bad(Reason.bad_time, f"time {_text(raw)} is neither ISO 8601 nor a number", s)
    elif isinstance(raw, str):
        try:
            when = datetime.fromisoformat(raw)
        except ValueError:
            return _bad(Reason.bad_time, f"time {raw[:_RAW_MAX]!r} is not ISO 8601", s)
        if when.tzinfo is None:
            return _bad(Reason.no_offset, f"time {raw!r} has no UTC offset", s)
        when = when.astimezone(UTC)
    else:
        if not math.isfinite(raw):
            return _bad(Reason.bad_time, f"time {raw} is not a number of seconds", s)
        seconds = float(raw)
        for unit, scale in (("milliseconds", 1e3), ("microseconds", 1e6), ("nanoseconds", 1e9)):
            if seconds > 1e11 and _plausible(seconds / scale, oldest, newest):
                return _bad(
                    Reason.ms_as_seconds,
                    f"time {raw} is {unit} sent as seconds (would be "
                    f"{(_EPOCH + timedelta(seconds=seconds / scale)).isoformat()})",
                    s,
                )
        try:
            when = _EPOCH + timedelta(seconds=seconds)
        except OverflowError:
            return _bad(Reason.future, f"time {raw} seconds is past the year 9999", s)
    if when < CLOCK_FLOOR:
        return _bad(Reason.reset_clock, f"time {when.isoformat()} is from a reset clock", s)
    if when > newest:
        return _bad(
            Reason.future, f"time {when.isoformat()} is ahead of central by more than "
            f"{limits.max_future}", s,
        )  # fmt: skip
    if when < oldest:
        return _bad(
            Reason.too_old, f"time {when.isoformat()} is older than {limits.max_age.days} days", s
        )
    return when


def _plausible(seconds: float, oldest: datetime, newest: datetime) -> bool:
    return oldest.timestamp() <= seconds <= newest.timestamp()


def _sample_problem(s: object) -> str:
    if not isinstance(s, Mapping):
        return f"a sample must be an object, not {type(s).__name__}"
    missing = sorted({"metric", "time", "value"} - s.keys())
    if missing:
        return f"missing {', '.join(missing)}"
    extra = sorted(str(k) for k in s.keys() - _KEYS)
    if extra:
        return f"unknown field(s) {', '.join(extra)}"
    if not isinstance(s["metric"], str) or not _METRIC.match(s["metric"]):
        return f"metric {_text(s['metric'])} is not a name (1-128 characters, no / + # $ space)"
    return f"quality {_text(s.get('quality'))} is not good, uncertain or bad"


def _text(v: object) -> str:
    """As it was received: JSON text (NaN as NaN, a string in quotes), cut short."""
    try:
        return json.dumps(v, ensure_ascii=False, allow_nan=True)[:_RAW_MAX]
    except (TypeError, ValueError):  # not from JSON (a typed sample's datetime)
        return str(v)[:_RAW_MAX]


def _bad(reason: Reason, detail: str, s: object) -> Quarantined:
    m = s if isinstance(s, Mapping) else {}
    metric = m.get("metric")
    return Quarantined(
        reason=reason,
        detail=detail,
        metric=metric[:128] if isinstance(metric, str) else None,
        time=_text(m.get("time")),
        value=_text(m.get("value")),
    )
