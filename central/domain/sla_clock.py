"""The SLA clocks of one ticket, derived from nothing but its event log. Pure: the log, the
pinned policy, its business calendar and ``now`` are passed in; nothing is stored or timed.

The same set of entries always gives the same answer: entries are put in order by their time
(``at``, then ``seq``), whatever order they come in, so a late entry counts where its time
says; the view is the ticket as of ``now`` (entries after ``now`` are not seen yet); an entry
timed before the ticket's creation counts at its creation, so no interval is ever negative.

**Clocks** (each only when the policy gives it a time; all from the ``created`` entry):

* ``response``: until the first ``accept``; ``arrival``: until the first ``arrive``. If the
  ticket ends before that (cancel, auto_resolve, close) and is reopened, they run again until
  it happens.
* ``resolution``: until ``complete``; a later ``reject`` or ``reopen`` starts it again until
  the next ``complete``, and the time of every run adds up.
* stages, each from the end of the one before, so a breach shows where the time went:
  ``classification`` until the first ``classified`` (or ``dispatch``/``accept``, if those come
  first); a ticket no rules classified has a classification of 0 s (central logs
  ``classified`` with the creation; a first one logged later takes the time before it from
  the dispatch stage). ``dispatch`` from there
  until the first ``dispatch`` or ``accept`` (a claim). ``acceptance`` from the first
  ``dispatch`` to the first ``accept`` (a claimed job has none). ``arrival`` from the first
  ``accept`` to the first ``arrive``. ``repair`` from the first ``arrive`` to ``complete``,
  and again from each ``reject``/``reopen`` to the next ``complete`` (rework is repair).
  ``verification`` from each ``complete`` to ``confirm``, ``close``, ``reject`` or ``reopen``.
* ``cancel``, ``auto_resolve`` and ``close`` stop every clock still running. A clock that
  stopped is ``met`` if it used no more than its time, else ``breached``, however it stopped.

**Pauses** are the intervals the ticket spent waiting for parts (待料) or for the customer
(待客户), from entering the state to the next lifecycle step out of it; every pause is listed,
but a clock leaves out a pause's time only when the policy's ``pause_on`` names its reason.

**Shares** split each stage's time (pauses left out as for its clock, and for every stage,
budget or not) by who held the ticket: the engineer a ``dispatch`` or ``accept`` names, or
whoever accepted; otherwise whoever last moved it (the creator, a transferring supervisor);
and by department: the created entry's ``department``, then each transfer's
``to_department``. **worst** is the stage that used the largest share of its budget.

**Status**: ``not_started``; ``running`` or ``paused`` while it runs within its time;
``met`` once stopped within it; ``breached`` once past it, running or not (``stopped_at`` and
``due_at`` tell which). A running clock is breached from its ``due_at`` on; a stopped one
when it used more than its time (stopping exactly on time is met).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from central.domain.business_time import BusinessCalendar
from central.domain.lifecycle import Action, State
from fieldloop.rules.policies import STAGES, TARGETS, SlaPolicy

EPS = 5e-7  # seconds: below the microsecond instants are kept to
#: entries that move the ticket (the others are notes, decisions, SLA records)
LIFECYCLE = frozenset(a.value for a in Action) | {"created"}
ENDS = frozenset({Action.cancel.value, Action.auto_resolve.value, Action.close.value})
PAUSE_REASONS = (State.waiting_parts.value, State.waiting_customer.value)
_STATE_OF = {Action.wait_parts.value: State.waiting_parts.value,
             Action.wait_customer.value: State.waiting_customer.value}  # fmt: skip
_HOLDERS = frozenset({Action.dispatch.value, Action.accept.value})

Span = tuple[datetime, datetime | None]  # end None: still running at ``now``


@dataclass(frozen=True)
class LogEntry:
    at: datetime
    seq: int  # unique per ticket: the order of entries logged at the same instant
    action: str
    from_state: str | None
    to_state: str | None
    actor: str
    data: Mapping[str, Any] = field(default_factory=dict)  # engineer, to_department, ...


@dataclass(frozen=True)
class Pause:
    reason: str  # waiting_parts | waiting_customer
    start: datetime
    end: datetime | None  # None: still waiting at ``now``


@dataclass(frozen=True)
class Clock:
    name: str  # response | arrival | resolution | stage.<name>
    target: float  # business seconds allowed
    started_at: datetime | None
    stopped_at: datetime | None  # None while it runs or is paused
    elapsed: float  # business seconds used (pauses left out when the policy pauses on them)
    due_at: datetime | None  # the breach if nothing changes; only while running
    breached: bool
    used: float  # elapsed / target
    status: str  # not_started | running | paused | met | breached


@dataclass(frozen=True)
class Share:
    """Business seconds of a stage while one engineer (or whoever last moved the ticket) held
    it in one department."""

    stage: str
    who: str
    department: str | None
    seconds: float


@dataclass(frozen=True)
class SlaView:
    clocks: tuple[Clock, ...]
    pauses: tuple[Pause, ...]
    shares: tuple[Share, ...]
    worst: str | None  # the stage that used the most of its budget
    #: per clock, the intervals it ran with the paused time taken out; the last one open
    #: (end None) while it runs. Thresholds find when a share of the target was, or will be,
    #: used from these.
    runs: Mapping[str, tuple[Span, ...]] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Threshold:
    key: str  # warn:<clock>:<percent> | esc:<escalation id>: fires once per ticket
    clock: str
    percent: float
    due_at: datetime | None  # when the share is used: past once reached; None if it can't be
    kind: str  # warning | escalation
    to: str | None  # the role to tell (escalations)
    message: str | None
    reached: bool


def _aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{what} must be timezone-aware (e.g. UTC), got the naive {value.isoformat()}"
        )


def _order(e: LogEntry) -> tuple[Any, ...]:
    return (e.at, e.seq, e.action, e.actor, e.from_state or "", e.to_state or "")


Timeline = Sequence[tuple[datetime, LogEntry]]


def _first(tl: Timeline, actions: set[str]) -> int | None:
    return next((i for i, (_, e) in enumerate(tl) if e.action in actions), None)


def _runs(
    tl: Timeline,
    begin: int | None,
    stops: frozenset[str],
    restarts: frozenset[str] = frozenset(),
    *,
    again_unmet: bool = False,
) -> tuple[list[Span], int | None]:
    """The spans a clock runs: from entry ``begin`` until an entry in ``stops`` (met) or an end
    (cancel, close ...), then again from an entry in ``restarts``, or, ``again_unmet``, from a
    ``reopen`` when it was ended before it was met. Also the index of the first stop."""
    if begin is None:
        return [], None
    spans: list[Span] = []
    start: datetime | None = tl[begin][0]
    met = False
    first_stop = None
    for i in range(begin, len(tl)):
        t, e = tl[i]
        a = e.action
        if start is not None:
            if a in stops:
                spans.append((start, t))
                start, met = None, True
                first_stop = i if first_stop is None else first_stop
            elif a in ENDS:
                spans.append((start, t))
                start = None
        elif a in restarts or (again_unmet and not met and a == Action.reopen.value):
            start, met = t, False
    if start is not None:
        spans.append((start, None))
    return spans, first_stop


def _spans(tl: Timeline) -> dict[str, list[Span]]:
    """Every clock's spans (targets by name, stages as stage.<name>), pauses not yet out."""
    f = frozenset
    out: dict[str, list[Span]] = {}
    out["response"] = _runs(tl, 0, f({"accept"}), again_unmet=True)[0]
    out["arrival"] = _runs(tl, 0, f({"arrive"}), again_unmet=True)[0]
    out["resolution"] = _runs(tl, 0, f({"complete"}), f({"reject", "reopen"}))[0]
    if _first(tl, {"classified"}) is not None:
        cls, cls_end = _runs(tl, 0, f({"classified", "dispatch", "accept"}))
    else:
        cls, cls_end = [(tl[0][0], tl[0][0])], 0  # nothing classified it: no time taken
    out["stage.classification"] = cls
    out["stage.dispatch"] = _runs(tl, cls_end, f({"dispatch", "accept"}))[0]
    out["stage.acceptance"] = _runs(tl, _first(tl, {"dispatch"}), f({"accept"}))[0]
    out["stage.arrival"] = _runs(tl, _first(tl, {"accept"}), f({"arrive"}))[0]
    out["stage.repair"] = _runs(
        tl, _first(tl, {"arrive"}), f({"complete"}), f({"reject", "reopen"})
    )[0]
    out["stage.verification"] = _runs(
        tl, _first(tl, {"complete"}), f({"confirm", "close", "reject", "reopen"}), f({"complete"})
    )[0]
    return out


def _pauses(tl: Timeline) -> list[Pause]:
    found: list[Pause] = []
    waiting: tuple[str, datetime] | None = None
    for t, e in tl:
        if e.action not in LIFECYCLE:
            continue
        state = e.to_state or _STATE_OF.get(e.action)
        if waiting is not None and state != waiting[0]:
            found.append(Pause(waiting[0], waiting[1], t))
            waiting = None
        if waiting is None and state in PAUSE_REASONS:
            waiting = (state, t)
    if waiting is not None:
        found.append(Pause(waiting[0], waiting[1], None))
    return found


def _without(spans: list[Span], holes: list[Span]) -> tuple[Span, ...]:
    """``spans`` less ``holes`` (both in order, holes apart), empty pieces dropped."""
    out: list[Span] = []
    for a, b in spans:
        cursor: datetime | None = a
        for h0, h1 in holes:
            if cursor is None or (b is not None and h0 >= b):
                break
            if h1 is not None and h1 <= cursor:
                continue
            if h0 > cursor:
                out.append((cursor, h0))
            cursor = h1
        if cursor is not None and (b is None or cursor < b):
            out.append((cursor, b))
    return tuple(out)


Between = Callable[[datetime, datetime], float]


def _memo(cal: BusinessCalendar) -> Between:
    """``cal.seconds_between`` remembering its answers: the clocks and the shares of one
    ticket ask about the same intervals."""
    known: dict[tuple[datetime, datetime], float] = {}

    def between(a: datetime, b: datetime) -> float:
        got = known.get((a, b))
        if got is None:
            got = known[(a, b)] = cal.seconds_between(a, b)
        return got

    return between


def _seconds(between: Between, pieces: tuple[Span, ...], now: datetime) -> list[float]:
    return [between(a, now if b is None else b) for a, b in pieces]


def _reach(
    cal: BusinessCalendar, pieces: tuple[Span, ...], secs: Sequence[float], amount: float
) -> datetime | None:
    """When the clock has used ``amount`` seconds: in the past, in the running piece's future,
    or None when it stopped (or paused) before."""
    used = 0.0
    for (a, b), s in zip(pieces, secs, strict=True):
        if b is None:
            return cal.add(a, max(0.0, amount - used))
        if used + s >= amount - EPS:
            return cal.add(a, min(s, max(0.0, amount - used)))
        used += s
    return None


def _clock(
    name: str,
    target: float,
    spans: list[Span],
    pieces: tuple[Span, ...],
    cal: BusinessCalendar,
    between: Between,
    now: datetime,
) -> Clock:
    if not spans:
        return Clock(name, target, None, None, 0.0, None, False, 0.0, "not_started")
    secs = _seconds(between, pieces, now)
    elapsed = max(0.0, sum(secs))
    live = spans[-1][1] is None
    running = live and bool(pieces) and pieces[-1][1] is None
    if live:
        breached = elapsed >= target - EPS
        status = "breached" if breached else "running" if running else "paused"
    else:
        breached = elapsed > target + EPS
        status = "breached" if breached else "met"
    return Clock(
        name=name,
        target=target,
        started_at=spans[0][0],
        stopped_at=None if live else spans[-1][1],
        elapsed=elapsed,
        due_at=_reach(cal, pieces, secs, target) if running else None,
        breached=breached,
        used=elapsed / target,
        status=status,
    )


def _budgets(policy: SlaPolicy) -> list[tuple[str, float]]:
    out = [(k, getattr(policy.targets, k)) for k in TARGETS]
    out += [(f"stage.{k}", getattr(policy.stages, k)) for k in STAGES]
    return [(k, v) for k, v in out if v is not None]


def _holders(tl: Timeline) -> tuple[list[datetime], list[tuple[str, str | None]]]:
    """Who held the ticket from when: the engineer a dispatch or accept names (else whoever
    accepted), otherwise whoever last moved it; the department from creation and transfers."""
    times: list[datetime] = []
    who: list[tuple[str, str | None]] = []
    department: str | None = None
    for t, e in tl:
        if e.action not in LIFECYCLE:
            continue
        if e.action == "created":
            department = e.data.get("department")
        elif e.action == Action.transfer.value:
            department = e.data.get("to_department", department)
        holder = e.data.get("engineer") if e.action in _HOLDERS else None
        times.append(t)
        who.append((str(holder or e.actor), department))
    return times, who


def _shares(
    stage_pieces: Mapping[str, tuple[Span, ...]],
    tl: Timeline,
    between: Between,
    now: datetime,
) -> list[Share]:
    times, holders = _holders(tl)
    out: list[Share] = []
    for stage in STAGES:
        got: dict[tuple[str, str | None], float] = {}
        for a, b in stage_pieces[f"stage.{stage}"]:
            end = now if b is None else b
            i = bisect_right(times, a) - 1
            cursor = a
            while True:
                j = i + 1
                cut = times[j] if j < len(times) and times[j] < end else end
                key = holders[max(i, 0)]
                got[key] = got.get(key, 0.0) + between(cursor, cut)
                if cut >= end:
                    break
                cursor, i = cut, j
        out += [Share(stage, w, d, s) for (w, d), s in got.items() if s > 0]
    return out


def compute(
    entries: Iterable[LogEntry],
    policy: SlaPolicy,
    calendar: BusinessCalendar,
    *,
    now: datetime,
) -> SlaView:
    """The ticket's clocks, pauses, stage shares and worst stage as of ``now``."""
    _aware(now, "now")
    now = now.astimezone(UTC)
    log = list(entries)
    for e in log:
        _aware(e.at, f"entry {e.seq} ({e.action}): at")
    seen = [e for e in log if e.at <= now]
    created = min((e for e in seen if e.action == "created"), key=_order, default=None)
    budgets = _budgets(policy)
    if created is None:
        idle = tuple(
            _clock(k, v, [], (), calendar, calendar.seconds_between, now) for k, v in budgets
        )
        return SlaView(idle, (), (), None)
    t0 = created.at.astimezone(UTC)
    tl = sorted(
        ((max(e.at.astimezone(UTC), t0), e) for e in seen if e is created or e.action != "created"),
        key=lambda p: (p[0], p[1] is not created, *_order(p[1])[1:]),
    )
    pauses = _pauses(tl)
    holes = [(p.start, p.end) for p in pauses if p.reason in policy.pause_on]
    spans = _spans(tl)
    pieces = {k: _without(v, holes) for k, v in spans.items()}
    between = _memo(calendar)
    clocks = tuple(_clock(k, v, spans[k], pieces[k], calendar, between, now) for k, v in budgets)
    stages = [c for c in clocks if c.name.startswith("stage.") and c.used > 0]
    worst = max(stages, key=lambda c: c.used).name[6:] if stages else None  # first of equals
    return SlaView(
        clocks=clocks,
        pauses=tuple(pauses),
        shares=tuple(_shares(pieces, tl, between, now)),
        worst=worst,
        runs={c.name: pieces[c.name] for c in clocks},
    )


def thresholds(
    view: SlaView, policy: SlaPolicy, calendar: BusinessCalendar, *, now: datetime
) -> list[Threshold]:
    """Per clock: a warning at each of the policy's ``warn_at`` shares, then its escalations,
    each with the moment that share is used: in the past once reached, ahead while the clock
    runs, None while it is paused or after it stopped short of it (or never started)."""
    _aware(now, "now")
    out: list[Threshold] = []
    for c in view.clocks:
        marks = [(f"warn:{c.name}:{p:g}", p, "warning", None, None) for p in policy.warn_at]
        marks += [
            (f"esc:{e.id}", e.at, "escalation", e.to, e.message)
            for e in policy.escalations
            if e.target == c.name
        ]
        pieces = view.runs.get(c.name)
        secs = _seconds(calendar.seconds_between, pieces, now) if pieces else None
        for key, percent, kind, to, message in marks:
            amount = c.target * percent / 100
            reached = c.elapsed >= amount - EPS
            due: datetime | None = None
            if pieces and secs is not None:
                due = _reach(calendar, pieces, secs, amount)
            elif c.due_at is not None and not reached:  # a view built without its runs
                due = calendar.add(now, amount - c.elapsed)
            out.append(Threshold(key, c.name, percent, due, kind, to, message, reached))
    return out
