"""The parameters of ``dispatch.yaml`` and ``sla.yaml``: named policies that first-hit rules
choose between (``use_policy``), and, for SLAs, the business calendars their clocks run on.

These are schemas only: the dispatcher and the SLA clocks read the validated models. Everything
a planner can get wrong is refused here, so a policy that loads is one they can run."""

from __future__ import annotations

import re
from datetime import date, time
from itertools import pairwise
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from fieldloop.durations import parse_duration
from fieldloop.yamlfile import LocatedValueError, require_unique

POLICY_ID = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
Name = Annotated[str, Field(pattern=_NAME)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def check_zone(name: str) -> str:
    """``name`` if it is an IANA time zone (Asia/Shanghai, UTC), else ValueError saying so."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. Asia/Shanghai, UTC)") from exc
    return name


def _seconds(v: object) -> float:
    seconds = parse_duration(v)  # type: ignore[arg-type]
    if seconds <= 0:
        raise ValueError("a duration here must be more than zero")
    return seconds


# --- dispatch --------------------------------------------------------------------------------

#: the hard constraints a policy may relax, when nobody qualifies, in the order it lists them;
#: skills and certifications are never relaxed (an unqualified engineer is not an answer)
RELAXABLE = ("max_distance_km", "same_region", "same_department", "max_open_jobs")
OBJECTIVES = ("distance", "sla_slack", "load", "skill_level", "last_engineer", "first_time_fix")


class Constraints(_Strict):
    """Who may be offered the job at all."""

    certification: bool = Field(
        True, description="skills listed under certified_skills need the certificate"
    )
    same_department: bool = Field(True, description="the engineer is in the ticket's queue")
    same_region: bool = Field(True, description="the engineer covers the ticket's site")
    on_shift: bool = Field(True, description="on shift now and not on leave")
    max_open_jobs: int | None = Field(5, ge=1, le=100, description="none: no limit")
    max_distance_km: float | None = Field(None, gt=0, le=20_000, description="none: no limit")


class Weights(_Strict):
    """How much each objective counts in the score (0 = ignored); each objective scores 0-1."""

    distance: float = Field(0.4, ge=0, le=100)
    sla_slack: float = Field(0.2, ge=0, le=100)
    load: float = Field(0.2, ge=0, le=100)
    skill_level: float = Field(0.1, ge=0, le=100)
    last_engineer: float = Field(0.05, ge=0, le=100)
    first_time_fix: float = Field(0.05, ge=0, le=100)

    @model_validator(mode="after")
    def _some(self) -> Self:
        if not any(getattr(self, k) for k in OBJECTIVES):
            raise ValueError("at least one weight must be above 0, or every engineer ties")
        return self


_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _clock(value: object, what: str) -> time:
    if not isinstance(value, str) or not _CLOCK.match(value.strip()):
        raise ValueError(f'{what} is a time of day in quotes, like "08:30", not {value!r}')
    h, m = value.strip().split(":")
    return time(int(h), int(m))


class Grab(_Strict):
    """抢单: open jobs shown to every qualifying engineer, the first claim wins."""

    backlog_at_least: int | None = Field(
        None, ge=1, description="turn grab on when this many jobs wait for an engineer"
    )
    between: tuple[time, time] | None = Field(
        None, description='a daily window in site time, e.g. ["18:00", "08:00"] (overnight)'
    )
    claim_limit: int = Field(2, ge=1, le=50, description="open claimed jobs per engineer")

    @field_validator("between", mode="before")
    @classmethod
    def _window(cls, v: object) -> object:
        if v is None:
            return v
        if not isinstance(v, list | tuple) or len(v) != 2:
            raise ValueError('between takes two times of day, e.g. ["18:00", "08:00"]')
        start, end = (_clock(x, "between") for x in v)
        if start == end:
            raise ValueError("between: the start and the end are the same time")
        return (start, end)

    @model_validator(mode="after")
    def _when(self) -> Self:
        if self.backlog_at_least is None and self.between is None:
            raise ValueError("grab needs backlog_at_least, between, or both: when is it on?")
        return self


class DispatchPolicy(_Strict):
    id: str = Field(pattern=POLICY_ID)
    description: str | None = Field(None, max_length=500)
    mode: Literal["offer", "grab", "queue"] = Field(
        "offer", description="offer to the best; grab: engineers claim; queue: a dispatcher picks"
    )
    parallel: int = Field(1, ge=1, le=10, description="offer to the best N at once, first wins")
    accept_within: float = Field(300.0, description="an offer lapses after this long")
    max_misses: int = Field(3, ge=1, le=50, description="declines and lapses before the queue")
    constraints: Constraints = Field(default_factory=Constraints)
    weights: Weights = Field(default_factory=Weights)
    road_factor: float = Field(1.3, ge=1, le=5, description="road distance / great-circle")
    speed_kmh: float = Field(30.0, gt=0, le=200, description="average travel speed for the ETA")
    relax: tuple[Literal[RELAXABLE], ...] = Field(  # type: ignore[valid-type]
        (), description="constraints dropped in turn when nobody qualifies"
    )
    grab: Grab | None = None

    @field_validator("accept_within", mode="before")
    @classmethod
    def _accept(cls, v: object) -> float:
        return _seconds(v)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.mode == "grab" and self.grab is None:
            raise ValueError("mode grab needs a `grab:` section (claim_limit at least)")
        if len(set(self.relax)) != len(self.relax):
            raise ValueError("relax names a constraint twice")
        return self


# --- SLA ------------------------------------------------------------------------------------

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_ALIASES = {"周一": "mon", "周二": "tue", "周三": "wed", "周四": "thu", "周五": "fri",
                "周六": "sat", "周日": "sun", "星期一": "mon", "星期二": "tue", "星期三": "wed",
                "星期四": "thu", "星期五": "fri", "星期六": "sat", "星期日": "sun",
                "星期天": "sun", "周天": "sun"}  # fmt: skip
_FULL_DAYS = {"monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu",
              "friday": "fri", "saturday": "sat", "sunday": "sun"}  # fmt: skip
_SPAN = re.compile(r"^\s*(\S+?)\s*-\s*(\S+)\s*$")


def day_names(key: str) -> list[str]:
    """'mon', 'mon-fri', '周一-周五' -> the days (mon..sun) it covers."""
    k = str(key).strip().casefold()
    m = _SPAN.match(k)
    ends = [m.group(1), m.group(2)] if m else [k]
    idx = []
    for e in ends:
        e = _DAY_ALIASES.get(e, e)
        e = _FULL_DAYS.get(e, e)
        if e not in _DAYS:
            raise ValueError(
                f"{key!r} is not a day or a range of days; write mon, tue ... sun, or mon-fri"
                " (周一-周五)"
            )
        idx.append(_DAYS.index(e))
    if len(idx) == 1:
        return [_DAYS[idx[0]]]
    a, b = idx
    if b < a:
        raise ValueError(f"{key!r}: a range of days runs forward (mon-fri, not fri-mon)")
    return list(_DAYS[a : b + 1])


class Calendar(_Strict):
    """When an SLA clock runs: working hours in a time zone, less holidays, plus make-up working
    days (调休: a weekend worked in exchange for a holiday); or round the clock."""

    id: str = Field(pattern=POLICY_ID)
    description: str | None = Field(None, max_length=500)
    timezone: str = Field(description="an IANA time zone, e.g. Asia/Shanghai")
    always: bool = Field(False, description="24x7: the clock never stops (hours not used)")
    hours: dict[str, tuple[tuple[time, time], ...]] = Field(
        default_factory=dict, description='e.g. {mon-fri: ["08:30-12:00", "13:00-17:30"]}'
    )
    holidays: tuple[date, ...] = Field((), description="days off, YYYY-MM-DD")
    holidays_file: str | None = Field(
        None, description="an iCalendar (.ics) file of days off, next to this file"
    )
    workdays: tuple[date, ...] = Field((), description="make-up working days (调休上班)")

    @field_validator("holidays_file")
    @classmethod
    def _beside(cls, v: str | None) -> str | None:
        if v is not None and (not v.endswith(".ics") or "/" in v or "\\" in v or v[:1] == "."):
            raise ValueError(f"{v!r}: name a .ics file in the rules directory, no path")
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        return check_zone(v)

    @field_validator("hours", mode="before")
    @classmethod
    def _hours(cls, v: object) -> object:
        if not isinstance(v, dict):
            raise ValueError('hours maps days to time ranges, e.g. {mon-fri: ["08:30-17:30"]}')
        out: dict[str, list[tuple[time, time]]] = {}
        for key, spans in v.items():
            if not isinstance(spans, list):
                raise ValueError(f'{key}: give a list of ranges, e.g. ["08:30-12:00"]')
            ranges = []
            for s in spans:
                m = _SPAN.match(str(s))
                if not m or not isinstance(s, str):
                    raise ValueError(f'{key}: {s!r} is not a range like "08:30-12:00"')
                start = _clock(m.group(1), f"{key}: the start of {s!r}")
                end = _clock(m.group(2), f"{key}: the end of {s!r}")
                if end <= start and end != time(0, 0):
                    raise ValueError(
                        f"{key}: {s} ends before it starts; split a night shift at midnight "
                        '("22:00-00:00" and "00:00-06:00")'
                    )
                ranges.append((start, end))
            for day in day_names(str(key)):
                if day in out:
                    raise ValueError(f"{day} is given twice (in {key!r} and before)")
                out[day] = sorted(ranges)
        for day, ranges in out.items():
            for (_, e1), (s2, _) in pairwise(ranges):
                if e1 == time(0, 0) or s2 < e1:
                    shown = ", ".join(f"{a:%H:%M}-{b:%H:%M}" for a, b in ranges)
                    raise ValueError(f"{day}: working hours overlap ({shown})")
        return {d: tuple(r) for d, r in out.items()}

    @field_serializer("hours")
    def _hours_out(self, v: dict[str, tuple[tuple[time, time], ...]]) -> dict[str, list[str]]:
        # written back as a planner writes it, so a dump validates again (pinned to tickets)
        return {d: [f"{a:%H:%M}-{b:%H:%M}" for a, b in r] for d, r in v.items()}

    @model_validator(mode="after")
    def _some_time(self) -> Self:
        if self.always and self.hours:
            raise ValueError("a calendar is either always (24x7) or has hours, not both")
        if not self.always and not self.hours:
            raise ValueError('give hours (e.g. {mon-fri: ["08:30-17:30"]}) or always: true')
        clash = set(self.holidays) & set(self.workdays)
        if clash:
            raise ValueError(f"{min(clash)} is both a holiday and a working day")
        return self


TARGETS = ("response", "arrival", "resolution")
STAGES = ("classification", "dispatch", "acceptance", "arrival", "repair", "verification")
#: what stops the clock, with the Chinese words planners use
PAUSES = {"waiting_parts": "waiting_parts", "待料": "waiting_parts",
          "waiting_customer": "waiting_customer", "待客户": "waiting_customer",
          "客户原因": "waiting_customer"}  # fmt: skip
ROLES = ("assignee", "dispatcher", "supervisor", "service_director", "customer_service")


class Targets(_Strict):
    """Promises to the customer: first engineer action, on site, fixed."""

    response: float | None = None
    arrival: float | None = None
    resolution: float | None = None

    @field_validator("response", "arrival", "resolution", mode="before")
    @classmethod
    def _d(cls, v: object) -> float | None:
        return None if v is None else _seconds(v)

    @model_validator(mode="after")
    def _order(self) -> Self:
        given = [(k, getattr(self, k)) for k in TARGETS if getattr(self, k) is not None]
        if not given:
            raise ValueError("give at least one of response, arrival, resolution")
        for (k1, v1), (k2, v2) in pairwise(given):
            if v2 < v1:
                raise ValueError(f"{k2} ({v2:g} s) is shorter than {k1} ({v1:g} s)")
        return self


class Stages(_Strict):
    """Internal budgets per stage, so a breach can be traced to the stage that used the time."""

    classification: float | None = None
    dispatch: float | None = None
    acceptance: float | None = None
    arrival: float | None = None
    repair: float | None = None
    verification: float | None = None

    @field_validator(*STAGES, mode="before")
    @classmethod
    def _d(cls, v: object) -> float | None:
        return None if v is None else _seconds(v)


_TARGET_REF = re.compile(r"^(response|arrival|resolution|stage\.[a-z]+)$")


class Escalation(_Strict):
    id: str = Field(pattern=POLICY_ID, description="fires once per ticket")
    target: str = Field(description="response, arrival, resolution, or stage.<name>")
    at: float = Field(description='share of the target used, "100%" = at the breach')
    to: Literal[ROLES]  # type: ignore[valid-type]
    message: str | None = Field(None, max_length=1000)

    @field_validator("at", mode="before")
    @classmethod
    def _percent(cls, v: object) -> float:
        return _percent_value(v, "at", 1, 1000)

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        if not _TARGET_REF.match(v) or (v.startswith("stage.") and v[6:] not in STAGES):
            raise ValueError(
                f"{v!r} is not a target; use response, arrival, resolution or stage.<name> "
                f"({', '.join(STAGES)})"
            )
        return v

    @field_validator("message")
    @classmethod
    def _message(cls, v: str | None) -> str | None:
        from fieldloop.rules.actions import template

        return None if v is None else template(v, "message")


def _percent_value(v: object, what: str, low: float, high: float) -> float:
    if isinstance(v, bool):
        raise ValueError(f"{what} is a percentage like 75%")
    if isinstance(v, str) and v.strip().endswith("%"):
        v = v.strip()[:-1]
    try:
        n = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is a percentage like 75%, not {v!r}") from exc
    if not low <= n <= high:
        raise ValueError(f"{what} is between {low:g}% and {high:g}%, not {n:g}%")
    return n


class SlaPolicy(_Strict):
    id: str = Field(pattern=POLICY_ID)
    description: str | None = Field(None, max_length=500)
    calendar: str = Field(pattern=POLICY_ID, description="a calendar id from `calendars:`")
    targets: Targets
    stages: Stages = Field(default_factory=Stages)
    pause_on: tuple[str, ...] = Field((), description="waiting_parts 待料, waiting_customer 待客户")
    warn_at: tuple[float, ...] = Field((75.0, 90.0), description="warnings, share of a target")
    escalations: tuple[Escalation, ...] = ()

    @field_validator("pause_on", mode="before")
    @classmethod
    def _pauses(cls, v: object) -> object:
        if not isinstance(v, list):
            raise ValueError("pause_on takes a list, e.g. [waiting_parts, waiting_customer]")
        out = []
        for p in v:
            name = PAUSES.get(str(p).strip().casefold())
            if name is None:
                raise ValueError(f"{p!r} cannot pause a clock; one of " + ", ".join(PAUSES))
            if name not in out:
                out.append(name)
        return tuple(out)

    @field_validator("warn_at", mode="before")
    @classmethod
    def _warn(cls, v: object) -> object:
        if not isinstance(v, list):
            raise ValueError("warn_at takes a list of percentages, e.g. [75%, 90%]")
        values = [_percent_value(x, "warn_at", 1, 99.99) for x in v]
        if values != sorted(set(values)):
            raise ValueError("warn_at: list the percentages once each, lowest first")
        return tuple(values)

    @model_validator(mode="after")
    def _refs(self) -> Self:
        require_unique([e.id for e in self.escalations], "escalation id", "id", "escalations")
        for i, e in enumerate(self.escalations):
            given = (
                getattr(self.stages, e.target[6:])
                if e.target.startswith("stage.")
                else getattr(self.targets, e.target)
            )
            if given is None:
                raise LocatedValueError(
                    f"escalation {e.id!r} watches {e.target}, which this policy gives no "
                    "time for; add it under targets/stages or pick another",
                    ("escalations", i, "target"),
                )
        return self


class Handoffs(_Strict):
    """The hand-off circuit breaker: when a ticket or a stage goes wrong in ways that are
    about the organisation rather than the fault, a named role is told and the ticket flagged."""

    max_bounces: int = Field(2, ge=1, le=20, description="transfers between departments")
    stage_overdue_rate: float = Field(30.0, description="a stage overdue this often in window")
    window: float = Field(7 * 86400.0, description="the window the overdue rate is taken over")
    min_tickets: int = Field(10, ge=1, description="fewer tickets in the window: no rate alert")
    repeat_within: float = Field(30 * 86400.0, description="the same problem again this soon")
    escalate_to: Literal[ROLES] = "supervisor"  # type: ignore[valid-type]

    @field_validator("stage_overdue_rate", mode="before")
    @classmethod
    def _rate(cls, v: object) -> float:
        return _percent_value(v, "stage_overdue_rate", 1, 100)

    @field_validator("window", "repeat_within", mode="before")
    @classmethod
    def _d(cls, v: object) -> float:
        return _seconds(v)


def policy_ids(policies: Any) -> list[str]:
    return [p.id for p in policies]
