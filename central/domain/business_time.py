"""Business time: when an SLA clock runs, and how much of it lies between two instants. Pure:
instants are passed in, nothing reads the clock.

A :class:`BusinessCalendar` runs on a ``sla.yaml`` calendar (:class:`Calendar`): working hours
per weekday as local wall-clock ranges in the calendar's time zone, less the days off (whole
local dates), plus the make-up working days (调休上班), which work the calendar's usual hours;
or round the clock (``always``), where days off do not apply.

**A range is the real time between two wall-clock readings.** It opens the first moment the
local clock shows its start and closes the first moment after that it shows its end (an end
of 00:00 is the next midnight). So across a change of the clocks the elapsed time is what
counts: a range that spans a spring-forward gap is shorter, a fall-back hour inside a range
counts twice (in New York, 00:00-06:00 is 5 h the night the clocks go 02:00 -> 03:00, and 7 h
the night they go back). A start or end that falls in a gap is the moment of the jump; one
that the clock shows twice is its first showing.

Everything inside is counted in whole microseconds since the Unix epoch, so sums are exact:
``seconds_between(a, c) == seconds_between(a, b) + seconds_between(b, c)``. Long spans are
not walked day by day: whole days are counted by weeks, then the few days that differ from
their weekday (days off, make-up days, days the clocks change) are corrected one by one.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from fieldloop.rules.policies import Calendar

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MIDNIGHT = time(0, 0)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_US = 1_000_000  # microseconds in a second
_DAY = timedelta(days=1)
_WALK_DAYS = 31  # add() walks this many days one by one before it counts whole days
_MAX_DAYS = 366 * 200  # add() gives up beyond this: the calendar has (almost) no working time
_CACHE_DAYS = 4096  # days whose intervals one calendar keeps


def _aware(value: datetime, what: str) -> None:
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{what} must be timezone-aware (e.g. UTC), got the naive {value.isoformat()}"
        )


def _us(value: datetime) -> int:
    return (value - _EPOCH) // _ONE_US


def _dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _to_us(seconds: float) -> int:
    """Seconds as whole microseconds, rounded up (the earliest instant that has used them);
    a float within rounding error of a whole microsecond is that microsecond."""
    x = seconds * _US
    r = round(x)
    return int(r) if abs(x - r) <= max(0.01, abs(x) * 4e-16) else math.ceil(x)


def _first_showing(zone: ZoneInfo, day: date, at: time) -> int:
    """The first instant (µs) at which the wall clock in ``zone`` shows ``day at`` or later:
    the time itself, its first showing when the clock falls back over it, or the moment the
    clock springs forward over it."""
    wall = datetime.combine(day, at)
    u = _us(wall.replace(tzinfo=zone))  # fold=0: the first showing, or past a gap
    if _dt(u).astimezone(zone).replace(tzinfo=None) == wall:
        return u
    # in a gap: fold=0 maps past the jump, fold=1 before it; the jump is at a whole second
    lo, hi = sorted((_us(wall.replace(tzinfo=zone, fold=1)), u))
    while hi - lo > _US:
        mid = lo + (hi - lo) // (2 * _US) * _US
        if _dt(mid).astimezone(zone).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return hi


@lru_cache(maxsize=2048)
def _uneven_days(zone: ZoneInfo, year: int) -> tuple[date, ...]:
    """The days of ``year`` on which the zone's clocks change (or whose midnight the change
    touches): the only days whose ranges may not last as long as they read."""
    found: set[date] = set()
    d = date(year, 1, 1) - _DAY
    end = date(year + 1, 1, 1) + _DAY
    before = zone.utcoffset(datetime.combine(d, MIDNIGHT))
    while d < end:
        nxt = d + _DAY
        midnight = datetime.combine(nxt, MIDNIGHT)
        after = zone.utcoffset(midnight)
        if after != before:
            found.add(d)
        if zone.utcoffset(midnight.replace(fold=1)) != after:  # midnight itself in a change
            found.update((d, nxt))
        before, d = after, nxt
    return tuple(sorted(x for x in found if x.year == year))


@lru_cache(maxsize=16384)
def _day_spans(
    zone: ZoneInfo, day: date, hours: tuple[tuple[time, time], ...]
) -> tuple[tuple[int, int], ...]:
    """The intervals (µs) that ``hours`` read on ``day`` in ``zone``, in order, none empty.
    Shared by every calendar, so one built afresh for each ticket starts warm."""
    spans = []
    for start, end in hours:
        a = _first_showing(zone, day, start)
        b = _first_showing(zone, day + _DAY if end == MIDNIGHT else day, end)
        if b > a:
            spans.append((a, b))
    return tuple(spans)


def _ranges_us(ranges: tuple[tuple[time, time], ...]) -> int:
    total = 0
    for start, end in ranges:
        stop = 24 * 3600 if end == MIDNIGHT else end.hour * 3600 + end.minute * 60 + end.second
        total += (stop - (start.hour * 3600 + start.minute * 60 + start.second)) * _US
    return total


class BusinessCalendar:
    """Working time on one calendar. All instants in and out are timezone-aware; results are
    in UTC. Holidays in ``days_off`` are local dates (the calendar's zone) closed all day."""

    def __init__(self, calendar: Calendar, days_off: frozenset[date] | None = None) -> None:
        """``days_off``: the holidays less the make-up working days, as
        ``RuleSet.days_off[calendar.id]`` gives them (with the ``holidays_file`` read); None
        takes the calendar's own ``holidays`` less its ``workdays`` (no file is read here)."""
        self.calendar = calendar
        self.zone = ZoneInfo(calendar.timezone)
        self.workdays = frozenset(calendar.workdays)
        if days_off is None:
            days_off = frozenset(calendar.holidays) - self.workdays
        self.days_off = frozenset(days_off)
        self.twenty_four_seven = calendar.always
        self._hours = tuple(tuple(calendar.hours.get(day, ())) for day in DAYS)
        usual = Counter(h for h in self._hours if h)
        # a make-up working day works the hours most working weekdays have (the first of equals)
        self._makeup = max(usual, key=lambda h: (usual[h], -self._hours.index(h)), default=())
        self._nominal = tuple(_ranges_us(h) for h in self._hours)
        self._week = sum(self._nominal)
        twice = self._nominal * 2
        self._prefix = tuple(sum(twice[:i]) for i in range(15))
        # days that differ from their weekday other than by the clocks changing
        self._special = tuple(sorted(self.days_off | self.workdays))
        self._days: dict[date, tuple[tuple[int, int], ...]] = {}

    @classmethod
    def always(cls, tz: str = "UTC") -> BusinessCalendar:
        """Round the clock (24x7): every second counts, holidays included."""
        return cls(Calendar(id="24x7", timezone=tz, always=True), frozenset())

    def __repr__(self) -> str:
        kind = "24x7" if self.twenty_four_seven else f"{len(self.days_off)} days off"
        return f"BusinessCalendar({self.calendar.id}, {self.calendar.timezone}, {kind})"

    # --- one day ------------------------------------------------------------------------------

    def hours_on(self, day: date) -> tuple[tuple[time, time], ...]:
        """The working ranges of a local date, as the wall clock reads them."""
        if self.twenty_four_seven:
            return ((MIDNIGHT, MIDNIGHT),)
        if day in self.days_off:
            return ()
        if day in self.workdays:
            return self._makeup
        return self._hours[day.weekday()]

    def _day(self, day: date) -> tuple[tuple[int, int], ...]:
        """The working intervals of a local date in µs, in order, none empty."""
        got = self._days.get(day)
        if got is None:
            got = _day_spans(self.zone, day, self.hours_on(day))
            if len(self._days) >= _CACHE_DAYS:
                self._days.clear()
            self._days[day] = got
        return got

    def _day_total(self, day: date) -> int:
        return sum(b - a for a, b in self._day(day))

    def _local_date(self, us: int) -> date:
        return _dt(us).astimezone(self.zone).date()

    def _whole_days(self, first: date, stop: date) -> int:
        """Working µs of the local dates ``first`` up to ``stop`` (excluded), whole: by weeks,
        then corrected on the days that do not work their weekday's hours."""
        n = (stop - first).days
        if n <= 0:
            return 0
        weeks, rest = divmod(n, 7)
        wd = first.weekday()
        total = weeks * self._week + self._prefix[wd + rest] - self._prefix[wd]
        odd = set(
            self._special[bisect_left(self._special, first) : bisect_left(self._special, stop)]
        )
        for year in range(first.year, (stop - _DAY).year + 1):
            odd.update(d for d in _uneven_days(self.zone, year) if first <= d < stop)
        for d in odd:
            total += self._day_total(d) - self._nominal[d.weekday()]
        return total

    def _clipped(self, first: date, last: date, s: int, e: int) -> int:
        total = 0
        d = first
        while d <= last:
            for a, b in self._day(d):
                a, b = max(a, s), min(b, e)
                if b > a:
                    total += b - a
            d += _DAY
        return total

    def _between(self, s: int, e: int) -> int:
        if self.twenty_four_seven:
            return e - s
        da, db = self._local_date(s), self._local_date(e)
        if (db - da).days <= 4:
            return self._clipped(da - _DAY, db + _DAY, s, e)
        # the days around each end clipped; whole days in between counted by weeks
        return (
            self._clipped(da - _DAY, da + _DAY, s, e)
            + self._whole_days(da + 2 * _DAY, db - _DAY)
            + self._clipped(db - _DAY, db + _DAY, s, e)
        )

    def _add(self, s: int, need: int) -> int:
        if self.twenty_four_seven:
            return s + need
        d = self._local_date(s) - _DAY
        for _ in range(_WALK_DAYS):
            for a, b in self._day(d):
                if b <= s:
                    continue
                a = max(a, s)
                if b - a >= need:
                    return a + need
                need -= b - a
            d += _DAY
        if not self._week:  # no weekday works: only make-up days are left
            for day in self._special[bisect_left(self._special, d) :]:
                for a, b in self._day(day):
                    if b - a >= need:
                        return a + need
                    need -= b - a
            raise ValueError(
                f"calendar {self.calendar.id!r} has no working hours left after "
                f"{_dt(s).isoformat()}: {need / _US:g} s can never be used; give it hours"
            )
        # every day from d on lies wholly after s: find the day the time runs out on
        lo, hi = 0, 7 * (need // self._week + 1)
        while self._whole_days(d, d + timedelta(days=hi)) < need:
            lo, hi = hi, hi * 2
            if hi > _MAX_DAYS:
                raise ValueError(
                    f"calendar {self.calendar.id!r} has no {need / _US:g} s of working time in "
                    f"the {_MAX_DAYS} days after {_dt(s).isoformat()}; give it working hours"
                )
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._whole_days(d, d + timedelta(days=mid)) >= need:
                hi = mid
            else:
                lo = mid
        day = d + timedelta(days=hi - 1)
        need -= self._whole_days(d, day)
        for a, b in self._day(day):
            if b - a >= need:
                return a + need
            need -= b - a
        raise AssertionError("unreachable: the day was counted as covering what is needed")

    # --- the public answers -------------------------------------------------------------------

    def open_intervals(self, start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The working time within [start, end), as UTC intervals in order; touching intervals
        (a night shift across midnight) come as one."""
        _aware(start, "start")
        _aware(end, "end")
        s, e = _us(start), _us(end)
        if e <= s:
            return
        if self.twenty_four_seven:
            yield _dt(s), _dt(e)
            return
        held: tuple[int, int] | None = None
        d, last = self._local_date(s) - _DAY, self._local_date(e) + _DAY
        while d <= last:
            for a, b in self._day(d):
                a, b = max(a, s), min(b, e)
                if b <= a:
                    continue
                if held is not None and held[1] >= a:
                    held = (held[0], max(held[1], b))
                    continue
                if held is not None:
                    yield _dt(held[0]), _dt(held[1])
                held = (a, b)
            d += _DAY
        if held is not None:
            yield _dt(held[0]), _dt(held[1])

    def seconds_between(self, start: datetime, end: datetime) -> float:
        """Working seconds in [start, end); 0 when end is not after start."""
        _aware(start, "start")
        _aware(end, "end")
        s, e = _us(start), _us(end)
        return self._between(s, e) / _US if e > s else 0.0

    def add(self, start: datetime, seconds: float) -> datetime:
        """The earliest instant t >= start with ``seconds_between(start, t) == seconds`` (to the
        microsecond, rounded up): the inverse of :meth:`seconds_between`. Time that runs out at
        the end of a range gives that end, not the next opening; 0 seconds gives ``start``
        itself (in UTC), even when the calendar is closed then."""
        _aware(start, "start")
        if isinstance(seconds, bool) or not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds to add must be a finite number >= 0, not {seconds!r}")
        s = _us(start)
        need = _to_us(seconds)
        return _dt(s if need == 0 else self._add(s, need))

    def is_open(self, at: datetime) -> bool:
        """Whether ``at`` lies in working time (a range's start is in, its end is out)."""
        _aware(at, "at")
        if self.twenty_four_seven:
            return True
        u = _us(at)
        d = self._local_date(u)
        return any(a <= u < b for x in (d - _DAY, d, d + _DAY) for a, b in self._day(x))
