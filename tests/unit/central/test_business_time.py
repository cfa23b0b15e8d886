"""central.domain.business_time: working hours in Asia/Shanghai (no DST), Europe/London and
America/New_York (both changes of the clocks, ranges across them), days off and make-up working
days, midnight and weekends, 24x7, and add() as the inverse of seconds_between(); properties
checked by hypothesis."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from central.domain.business_time import BusinessCalendar
from fieldloop.rules.files import load_ruleset
from fieldloop.rules.policies import Calendar

REPO = Path(__file__).resolve().parents[3]
SHANGHAI = ZoneInfo("Asia/Shanghai")
LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
H = 3600.0


def cal(tz: str, hours: dict[str, list[str]], **kw: object) -> Calendar:
    return Calendar.model_validate({"id": "c", "timezone": tz, "hours": hours, **kw})


def local(zone: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=zone, fold=fold)  # type: ignore[misc]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


OFFICE_HOURS = {"mon-fri": ["08:30-12:00", "13:00-17:30"]}
OFFICE = BusinessCalendar(cal("Asia/Shanghai", OFFICE_HOURS))
# the Spring Festival of 2026 as the State Council set it: nine days off, two Saturdays worked
FESTIVAL = BusinessCalendar(
    cal(
        "Asia/Shanghai",
        OFFICE_HOURS,
        holidays=[f"2026-02-{d}" for d in range(15, 24)],
        workdays=["2026-02-14", "2026-02-28"],
    )
)
# Sundays 00:00-06:00 across both changes (01:00-03:00 local), and office days
NY = BusinessCalendar(cal("America/New_York", {"sun": ["00:00-06:00"], "mon-fri": ["09:00-17:00"]}))
LONDON_NIGHT = BusinessCalendar(cal("Europe/London", {"sun": ["00:30-03:00"]}))
NIGHT_SHIFT = BusinessCalendar(cal("Asia/Shanghai", {"mon-sun": ["00:00-06:00", "22:00-00:00"]}))


def spans(c: BusinessCalendar, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    return list(c.open_intervals(start, end))


# --- Shanghai: no DST ---------------------------------------------------------------------------


def test_a_working_morning_counts_second_for_second() -> None:
    start = local(SHANGHAI, 2026, 12, 1, 9, 0)
    assert OFFICE.seconds_between(start, start + timedelta(hours=2)) == 2 * H


def test_lunch_and_the_night_do_not_count() -> None:
    tue_11 = local(SHANGHAI, 2026, 12, 1, 11, 0)
    assert OFFICE.seconds_between(tue_11, local(SHANGHAI, 2026, 12, 1, 14, 0)) == 2 * H
    # 17:00 to 09:00 the next morning: half an hour each side of the night
    assert (
        OFFICE.seconds_between(
            local(SHANGHAI, 2026, 12, 1, 17, 0), local(SHANGHAI, 2026, 12, 2, 9, 0)
        )
        == 1 * H
    )


def test_a_weekend_does_not_count() -> None:
    fri = local(SHANGHAI, 2026, 12, 4, 16, 0)
    mon = local(SHANGHAI, 2026, 12, 7, 9, 30)
    assert OFFICE.seconds_between(fri, mon) == 2.5 * H
    assert OFFICE.add(fri, 2 * H) == local(SHANGHAI, 2026, 12, 7, 9, 0)
    assert not OFFICE.is_open(local(SHANGHAI, 2026, 12, 5, 10, 0))


def test_the_open_intervals_are_utc_and_clipped() -> None:
    got = spans(OFFICE, local(SHANGHAI, 2026, 12, 1, 10, 0), local(SHANGHAI, 2026, 12, 2, 9, 0))
    assert got == [
        (utc(2026, 12, 1, 2, 0), utc(2026, 12, 1, 4, 0)),
        (utc(2026, 12, 1, 5, 0), utc(2026, 12, 1, 9, 30)),
        (utc(2026, 12, 2, 0, 30), utc(2026, 12, 2, 1, 0)),
    ]
    assert all(a.tzinfo is UTC and b.tzinfo is UTC for a, b in got)


def test_a_range_opens_at_its_start_and_is_shut_at_its_end() -> None:
    assert OFFICE.is_open(local(SHANGHAI, 2026, 12, 1, 8, 30))
    assert not OFFICE.is_open(local(SHANGHAI, 2026, 12, 1, 12, 0))
    assert not OFFICE.is_open(local(SHANGHAI, 2026, 12, 1, 8, 29, 59))


def test_the_shipped_office_calendar_keeps_the_statutory_holidays() -> None:
    rules = load_ruleset(REPO / "rules" / "sla.yaml")
    office = BusinessCalendar(rules.calendars["office"], rules.days_off["office"])
    # National Day: Thursday 1 to Saturday 3 October off
    wed = local(SHANGHAI, 2026, 9, 30, 17, 0)
    assert office.seconds_between(wed, local(SHANGHAI, 2026, 10, 5, 9, 0)) == 1 * H
    assert office.add(wed, 0.5 * H) == local(SHANGHAI, 2026, 9, 30, 17, 30)
    assert office.add(wed, 0.75 * H) == local(SHANGHAI, 2026, 10, 5, 8, 45)
    assert not office.is_open(local(SHANGHAI, 2026, 10, 1, 10, 0))
    # 24x7 ignores holidays
    always = BusinessCalendar(rules.calendars["24x7"], rules.days_off["24x7"])
    assert always.seconds_between(wed, wed + timedelta(days=5)) == 5 * 24 * H


def test_holidays_close_whole_days_and_make_up_saturdays_work_the_usual_hours() -> None:
    sat_14 = local(SHANGHAI, 2026, 2, 14, 0, 0)
    assert FESTIVAL.seconds_between(sat_14, sat_14 + timedelta(days=1)) == 8 * H
    assert FESTIVAL.is_open(local(SHANGHAI, 2026, 2, 14, 13, 0))
    assert not FESTIVAL.is_open(local(SHANGHAI, 2026, 2, 14, 12, 30))  # lunch, as on a Monday
    # Friday 13th: work; 14th (Sat): make-up day; 15th-23rd: off; 24th-27th work; 28th (Sat) too
    feb = FESTIVAL.seconds_between(local(SHANGHAI, 2026, 2, 13), local(SHANGHAI, 2026, 3, 1))
    assert feb == (1 + 1 + 4 + 1) * 8 * H
    # no holiday at all without the calendar: the same weeks have 10 working days
    plain = OFFICE.seconds_between(local(SHANGHAI, 2026, 2, 13), local(SHANGHAI, 2026, 3, 1))
    assert plain == 11 * 8 * H
    # from the last hour before the holiday, 2 hours run into the 24th
    assert FESTIVAL.add(local(SHANGHAI, 2026, 2, 14, 16, 30), 2 * H) == local(
        SHANGHAI, 2026, 2, 24, 9, 30
    )


def test_days_off_default_to_the_calendars_own_lists() -> None:
    c = cal("Asia/Shanghai", OFFICE_HOURS, holidays=["2026-12-02"], workdays=["2026-12-05"])
    assert BusinessCalendar(c).days_off == frozenset({date(2026, 12, 2)})
    assert not BusinessCalendar(c).is_open(local(SHANGHAI, 2026, 12, 2, 10, 0))
    assert BusinessCalendar(c).is_open(local(SHANGHAI, 2026, 12, 5, 10, 0))
    # given explicitly (RuleSet.days_off), they are what counts
    assert BusinessCalendar(c, frozenset()).is_open(local(SHANGHAI, 2026, 12, 2, 10, 0))


def test_a_night_shift_runs_across_midnight_as_one_interval() -> None:
    start = local(SHANGHAI, 2026, 12, 1, 21, 0)
    end = local(SHANGHAI, 2026, 12, 2, 7, 0)
    assert NIGHT_SHIFT.seconds_between(start, end) == 8 * H
    assert spans(NIGHT_SHIFT, start, end) == [(utc(2026, 12, 1, 14, 0), utc(2026, 12, 1, 22, 0))]
    assert NIGHT_SHIFT.is_open(local(SHANGHAI, 2026, 12, 2, 0, 0))
    assert NIGHT_SHIFT.add(start, 2 * H) == local(SHANGHAI, 2026, 12, 2, 0, 0)


# --- 24x7 -------------------------------------------------------------------------------------


def test_round_the_clock_counts_real_seconds_even_across_a_dst_change() -> None:
    c = BusinessCalendar.always("America/New_York")
    sat = local(NEW_YORK, 2026, 10, 31, 12, 0)
    sun = local(NEW_YORK, 2026, 11, 1, 12, 0)
    assert c.seconds_between(sat, sun) == 25 * H  # the wall clock says 24
    assert c.add(sat, 25 * H) == sun
    assert c.is_open(sat)
    assert spans(c, sat, sun) == [(sat.astimezone(UTC), sun.astimezone(UTC))]
    assert BusinessCalendar.always().calendar.timezone == "UTC"


# --- DST: New York and London -------------------------------------------------------------------


def test_new_york_spring_forward_shortens_a_range_across_the_gap() -> None:
    sun = local(NEW_YORK, 2026, 3, 8, 0, 0)
    # 00:00-06:00 reads six hours; the clock jumps 02:00 -> 03:00: five hours pass
    assert NY.seconds_between(sun, sun + timedelta(days=1)) == 5 * H
    assert spans(NY, sun, sun + timedelta(hours=12)) == [
        (utc(2026, 3, 8, 5, 0), utc(2026, 3, 8, 10, 0))
    ]


def test_new_york_fall_back_counts_the_repeated_hour_twice() -> None:
    sun = local(NEW_YORK, 2026, 11, 1, 0, 0)
    assert NY.seconds_between(sun, sun + timedelta(days=1)) == 7 * H
    first_0130 = local(NEW_YORK, 2026, 11, 1, 1, 30)
    second_0130 = local(NEW_YORK, 2026, 11, 1, 1, 30, fold=1)
    assert second_0130 - first_0130 == timedelta(0)  # same wall time, same zone: naive maths
    assert second_0130.astimezone(UTC) - first_0130.astimezone(UTC) == timedelta(hours=1)
    assert NY.seconds_between(first_0130, second_0130) == 1 * H
    assert NY.is_open(first_0130) and NY.is_open(second_0130)
    # the second 01:00 (EST); compared in UTC, as Python never finds a fold=1 time equal to
    # a time in another zone (PEP 495)
    assert NY.add(sun, 2 * H) == second_0130.replace(minute=0).astimezone(UTC)


def test_a_range_starting_in_the_gap_opens_when_the_clock_jumps() -> None:
    c = BusinessCalendar(cal("America/New_York", {"sun": ["02:30-05:00"]}))
    sun = local(NEW_YORK, 2026, 3, 8, 0, 0)
    assert spans(c, sun, sun + timedelta(days=1)) == [
        (utc(2026, 3, 8, 7, 0), utc(2026, 3, 8, 9, 0))  # 03:00 EDT (the jump) to 05:00 EDT
    ]
    # a range wholly inside the gap never opens
    gone = BusinessCalendar(cal("America/New_York", {"sun": ["02:00-02:45"]}))
    assert gone.seconds_between(sun, sun + timedelta(days=1)) == 0
    # and a start the clock shows twice opens at its first showing
    twice = BusinessCalendar(cal("America/New_York", {"sun": ["01:30-03:00"]}))
    nov = local(NEW_YORK, 2026, 11, 1, 0, 0)
    assert spans(twice, nov, nov + timedelta(days=1)) == [
        (utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 8, 0))
    ]


def test_an_end_shown_twice_closes_at_its_first_showing() -> None:
    c = BusinessCalendar(cal("America/New_York", {"sun": ["00:00-01:30"]}))
    assert c.is_open(local(NEW_YORK, 2026, 11, 1, 1, 15))
    assert not c.is_open(local(NEW_YORK, 2026, 11, 1, 1, 15, fold=1))


def test_london_ranges_across_the_0100_change_both_ways() -> None:
    # spring: 01:00 GMT -> 02:00 BST, inside 00:30-03:00: 1.5 h
    mar = local(LONDON, 2026, 3, 29, 0, 0)
    assert LONDON_NIGHT.seconds_between(mar, mar + timedelta(days=1)) == 1.5 * H
    assert spans(LONDON_NIGHT, mar, mar + timedelta(days=1)) == [
        (utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 2, 0))
    ]
    # autumn: 02:00 BST -> 01:00 GMT, the hour 01:00-02:00 twice: 3.5 h
    octo = local(LONDON, 2026, 10, 25, 0, 0)
    assert LONDON_NIGHT.seconds_between(octo, octo + timedelta(days=1)) == 3.5 * H
    assert spans(LONDON_NIGHT, octo, octo + timedelta(days=1)) == [
        (utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 3, 0))
    ]
    # an ordinary Sunday: 2.5 h
    nov = local(LONDON, 2026, 11, 1, 0, 0)
    assert LONDON_NIGHT.seconds_between(nov, nov + timedelta(days=1)) == 2.5 * H


def test_a_year_across_both_changes_matches_the_days_one_by_one() -> None:
    start, end = utc(2026, 1, 1), utc(2027, 1, 1)
    # 2026 has 261 weekdays of 8 h and 52 Sundays of 6 h; one is 5 h, one 7 h
    assert NY.seconds_between(start, end) == (261 * 8 + 52 * 6) * H
    by_day = sum((b - a).total_seconds() for a, b in NY.open_intervals(start, end))
    assert NY.seconds_between(start, end) == by_day


def test_long_spans_are_counted_by_weeks_not_walked_day_by_day() -> None:
    c = BusinessCalendar(FESTIVAL.calendar)
    start, end = local(SHANGHAI, 2016, 1, 6, 10, 0), local(SHANGHAI, 2036, 1, 6, 10, 0)
    total = c.seconds_between(start, end)
    touched = len(c._days)  # the days whose hours were worked out
    assert touched < 40, touched  # the ends, the holidays, no day in between
    assert total == sum((b - a).total_seconds() for a, b in c.open_intervals(start, end))
    assert c.add(start, total) == local(
        SHANGHAI, 2036, 1, 4, 17, 30
    )  # a Sunday: the Friday's 17:30


# --- add and the inputs ---------------------------------------------------------------------


def test_add_gives_the_end_of_a_range_not_the_next_opening() -> None:
    start = local(SHANGHAI, 2026, 12, 1, 11, 0)
    assert OFFICE.add(start, 1 * H) == local(SHANGHAI, 2026, 12, 1, 12, 0)
    assert OFFICE.add(start, 1 * H + 1) == local(SHANGHAI, 2026, 12, 1, 13, 0, 1)


def test_adding_nothing_is_the_start_itself_even_when_closed() -> None:
    sat = local(SHANGHAI, 2026, 12, 5, 10, 0)
    assert OFFICE.add(sat, 0) == sat
    assert OFFICE.add(sat, 0).tzinfo is UTC


def test_adding_rounds_up_to_the_microsecond() -> None:
    start = local(SHANGHAI, 2026, 12, 1, 9, 0)
    assert OFFICE.add(start, 0.3) == start + timedelta(microseconds=300_000)
    assert OFFICE.add(start, 1e-7) == start + timedelta(microseconds=1)


def test_a_calendar_without_hours_never_gets_there() -> None:
    c = BusinessCalendar(cal("UTC", {"mon": []}))
    start = utc(2026, 12, 5)
    assert c.seconds_between(start, start + timedelta(days=30)) == 0
    assert c.add(start, 0) == start
    with pytest.raises(ValueError, match="no working hours left"):
        c.add(start, 1)


@pytest.mark.parametrize(
    "call",
    [
        lambda: OFFICE.seconds_between(datetime(2026, 12, 1), utc(2026, 12, 2)),
        lambda: OFFICE.seconds_between(utc(2026, 12, 1), datetime(2026, 12, 2)),
        lambda: OFFICE.add(datetime(2026, 12, 1), 10),
        lambda: OFFICE.is_open(datetime(2026, 12, 1)),
        lambda: list(OFFICE.open_intervals(datetime(2026, 12, 1), utc(2026, 12, 2))),
    ],
)
def test_naive_datetimes_are_refused(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="timezone-aware"):
        call()


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf")])
def test_add_refuses_what_is_not_a_duration(seconds: float) -> None:
    with pytest.raises(ValueError, match="finite number >= 0"):
        OFFICE.add(utc(2026, 12, 1), seconds)


def test_backwards_spans_are_empty() -> None:
    a, b = utc(2026, 12, 1, 3), utc(2026, 12, 1, 2)
    assert OFFICE.seconds_between(a, b) == 0
    assert spans(OFFICE, a, b) == []


# --- properties -----------------------------------------------------------------------------

CALENDARS = {
    "office": OFFICE,
    "festival": FESTIVAL,
    "new_york": NY,
    "london": LONDON_NIGHT,
    "night": NIGHT_SHIFT,
    "24x7": BusinessCalendar.always("Europe/London"),
}
instants = st.datetimes(
    min_value=datetime(2025, 10, 1), max_value=datetime(2027, 4, 1), timezones=st.just(UTC)
)
calendars = st.sampled_from(sorted(CALENDARS))


@settings(max_examples=300, deadline=None)
@given(calendars, instants, instants, instants)
def test_business_time_adds_up(name: str, a: datetime, b: datetime, c: datetime) -> None:
    a, b, c = sorted((a, b, c))
    k = CALENDARS[name]
    whole = k.seconds_between(a, c)
    assert whole == pytest.approx(k.seconds_between(a, b) + k.seconds_between(b, c), abs=1e-6)
    assert whole == pytest.approx(
        sum((y - x).total_seconds() for x, y in k.open_intervals(a, c)), abs=1e-6
    )


@settings(max_examples=300, deadline=None)
@given(calendars, instants, instants)
def test_add_undoes_seconds_between(name: str, start: datetime, t: datetime) -> None:
    start, t = sorted((start, t))
    k = CALENDARS[name]
    used = k.seconds_between(start, t)
    back = k.add(start, used)
    assert start <= back <= t
    assert k.seconds_between(start, back) == pytest.approx(used, abs=1e-6)
    if k.is_open(t - timedelta(microseconds=1)) and t > start:
        assert back == t  # working up to t: t is the earliest instant with that much used


@settings(max_examples=300, deadline=None)
@given(calendars, instants, st.floats(min_value=0, max_value=400 * 24 * H))
def test_seconds_between_undoes_add(name: str, start: datetime, seconds: float) -> None:
    k = CALENDARS[name]
    end = k.add(start, seconds)
    assert end >= start
    assert k.seconds_between(start, end) == pytest.approx(seconds, abs=1e-6)
    if seconds > 0:  # the earliest such instant: a microsecond less is short of it
        assert k.seconds_between(start, end - timedelta(microseconds=1)) < seconds


@settings(max_examples=200, deadline=None)
@given(calendars, instants)
def test_is_open_agrees_with_the_open_intervals(name: str, at: datetime) -> None:
    k = CALENDARS[name]
    inside = any(
        a <= at < b for a, b in k.open_intervals(at - timedelta(days=2), at + timedelta(days=2))
    )
    assert k.is_open(at) == inside


def test_midnight_in_a_gap_is_the_moment_of_the_jump() -> None:
    # Santiago moves its clocks at midnight: 2026-09-06 00:00 does not exist (-> 01:00 -03)
    c = BusinessCalendar(cal("America/Santiago", {"mon-sun": ["00:00-04:00"]}))
    sun = datetime(2026, 9, 6, 12, tzinfo=ZoneInfo("America/Santiago"))
    day = sun.replace(hour=0)
    got = spans(c, day - timedelta(hours=12), day + timedelta(hours=12))
    assert got == [(utc(2026, 9, 6, 4, 0), utc(2026, 9, 6, 7, 0))]  # 3 h, not 4
    assert c.seconds_between(utc(2026, 8, 1), utc(2026, 10, 1)) == pytest.approx(
        sum((b - a).total_seconds() for a, b in c.open_intervals(utc(2026, 8, 1), utc(2026, 10, 1)))
    )


def test_hours_on_a_day_read_as_written() -> None:
    assert FESTIVAL.hours_on(date(2026, 2, 14)) == (
        (time(8, 30), time(12, 0)),
        (time(13, 0), time(17, 30)),
    )
    assert FESTIVAL.hours_on(date(2026, 2, 16)) == ()
    assert FESTIVAL.hours_on(date(2026, 2, 21)) == ()
