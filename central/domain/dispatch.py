"""Dispatch: who is offered a job, and why (派工). Pure: the engineers' profiles, the job, the
policy from ``dispatch.yaml`` and the moment are passed in; nothing is read, stored or timed here.

A decision takes three steps:

1. **Hard constraints**, one :class:`Check` per constraint and engineer (:data:`CHECKS`).
   Being active and having every needed skill at its level gate the rest: only active engineers
   with the skills are assessed, ranked and listed; the others are only counted. When nobody
   passes every check, the constraints of the policy's ``relax`` list are dropped one at a time,
   cumulatively, in its order, until somebody does. Skills, certificates, declines and being
   active are never relaxed.
2. **Objectives**, each scored 0-1 (:data:`OBJECTIVES`), combined by the policy's weights into a
   weighted mean. Ties are broken by road distance, then open jobs, then engineer id, so the
   answer never depends on the order the engineers come in.
3. **The outcome** by the policy's mode: offer to the best ``parallel`` at once, open the job
   for grabbing (抢单), or leave it to a dispatcher (调度员); always with the ranking and a
   one-sentence reason, and :func:`explain` for the dispatcher's screen.

:class:`EngineerIndex` keeps per-skill sets so that a decision among thousands of engineers
scores only those who have the skills (:func:`decide_indexed`), with the same answer as
:func:`decide` over everyone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, tzinfo

from fieldloop.rules.policies import OBJECTIVES, RELAXABLE, DispatchPolicy

EARTH_RADIUS_KM = 6371.0088  # the mean radius (IUGG)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: the hard constraints, in the order checks are listed and explained
CHECKS = (
    "skills", "certification", "same_department", "same_region", "on_shift", "max_open_jobs",
    "max_distance_km", "not_declined", "active",
)  # fmt: skip
NEVER_RELAXED = frozenset({"skills", "certification", "not_declined", "active"})
DEFAULT_REACH_KM = 50.0  # the distance objective's scale when the policy sets no limit
DEFAULT_LOAD = 10  # the load objective's scale when the policy sets no limit
SHOWN_INELIGIBLE = 5  # ineligible engineers kept in the ranking, to explain who missed and why
MIDNIGHT = time(0, 0)

#: check -> (one engineer fails it, several fail it, Chinese), for reasons and explanations
CHECK_LABELS: dict[str, tuple[str, str, str]] = {
    "skills": ("lacks the skills", "lack the skills", "技能不足"),
    "certification": ("no valid certificate", "have no valid certificate", "无有效证书"),
    "same_department": ("another department", "are in another department", "非本部门"),
    "same_region": ("does not cover the site", "do not cover the site", "不负责该片区"),
    "on_shift": ("not on shift", "are not on shift", "不在班"),
    "max_open_jobs": ("too many open jobs", "have too many open jobs", "手上工单已满"),
    "max_distance_km": ("too far", "are too far away", "距离太远"),
    "not_declined": (
        "declined or let the offer lapse", "declined or let the offer lapse", "已拒单或超时",
    ),
    "active": ("inactive", "are inactive", "已停用"),
}  # fmt: skip
#: a relaxable constraint, dropped, in words
RELAXED_WORDS = {
    "max_distance_km": "the distance limit (最远距离)",
    "same_region": "the region (同片区)",
    "same_department": "the department (同部门)",
    "max_open_jobs": "the open-job limit (工单上限)",
}
assert set(CHECK_LABELS) == set(CHECKS) and set(RELAXABLE) == set(RELAXED_WORDS)
assert len(OBJECTIVES) == 6  # _Row.score spells the weighted sum out


# --- the public records -----------------------------------------------------------------------


@dataclass(frozen=True)
class EngineerProfile:
    id: str  # the username
    name: str
    department: str | None  # compared with the job's queue
    regions: frozenset[str]  # sites or regions covered; empty = everywhere
    skills: Mapping[str, int]  # skill -> level 1..5
    certifications: Mapping[str, date | None]  # certificate -> expiry date (None: no expiry)
    lat: float | None  # current position (app-reported) or home base
    lon: float | None
    #: "mon".."sun" -> local ranges; an EMPTY mapping = always on shift; end time(0, 0) means
    #: midnight; a night shift is "22:00-00:00" plus the next day's "00:00-06:00" (a range
    #: that ends before it starts, "22:00-06:00", is read the same way)
    shifts: Mapping[str, tuple[tuple[time, time], ...]]
    leave: tuple[tuple[datetime, datetime], ...]  # [start, end) intervals, aware UTC
    open_jobs: int  # jobs assigned and not yet completed
    first_time_fix: Mapping[str, tuple[int, int]]  # category -> (fixed first time, completed)
    active: bool = True


@dataclass(frozen=True)
class Job:
    ticket_id: int
    skills: tuple[tuple[str, int], ...]  # (skill, minimum level)
    queue: str | None  # department that owns it
    site: str | None
    region: str | None  # the site's region, when known
    lat: float | None
    lon: float | None
    priority: str | None  # P1..P4
    category: str | None
    sla_due: datetime | None  # when the response/arrival promise falls due
    last_engineer: str | None  # who last worked on this asset
    exclude: frozenset[str] = frozenset()  # engineers who declined or let an offer lapse


@dataclass(frozen=True)
class Check:
    """One hard constraint for one engineer. A constraint the policy does not set passes with
    "not required"; one relaxed to find anyone passes with "relaxed (放宽): <why it failed>"."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Candidate:
    engineer: str
    eligible: bool
    checks: tuple[Check, ...]
    scores: Mapping[str, float]  # objective -> 0..1 (OBJECTIVES names)
    total: float  # weighted mean of scores, 0..1
    distance_km: float | None  # by road (great-circle x the policy's road_factor)
    eta_minutes: float | None
    # the facts behind the scores, so that explain() can say them in plain words
    name: str = ""
    open_jobs: int = 0
    skill_levels: tuple[tuple[str, int], ...] = ()  # the engineer's level per needed skill
    history: tuple[str, int, int] | None = None  # (category, fixed first time, completed)


@dataclass(frozen=True)
class Decision:
    ticket_id: int
    policy: str
    mode: str  # offer | grab | queue
    relaxed: tuple[str, ...]  # constraints dropped to find anyone
    #: eligible best-first, then (for the explanation) up to 5 ineligible ones that failed fewest
    #: checks; only active engineers with the skills are ever listed
    ranked: tuple[Candidate, ...]
    chosen: tuple[str, ...]  # engineers to offer it to now: up to policy.parallel
    reason: str  # one sentence: why these / why nobody
    weights: Mapping[str, float] = field(default_factory=dict)  # the policy's, for explain()


# --- geometry ---------------------------------------------------------------------------------


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """The haversine distance between two points given in degrees, in km."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


# --- one decision's fixed inputs ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ctx:
    job: Job
    policy: DispatchPolicy
    now: datetime
    tz: tzinfo
    local: datetime
    day: str
    today: date
    in_force: frozenset[str]
    certs: tuple[tuple[str, tuple[str, ...]], ...]  # needed skill -> certificates, one of which
    max_open: int | None
    max_km: float | None
    reach_km: float
    load_limit: int
    weights: tuple[float, ...]
    weight_sum: float
    sla_window_s: float | None  # sla_due - now


def _aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got the naive {value.isoformat()}")


def _context(
    job: Job,
    policy: DispatchPolicy,
    now: datetime,
    tz: tzinfo,
    certified_skills: Mapping[str, Sequence[str]],
) -> _Ctx:
    _aware(now, "now")
    if job.sla_due is not None:
        _aware(job.sla_due, f"ticket {job.ticket_id}'s sla_due")
    c = policy.constraints
    in_force = {"skills", "not_declined", "active"}
    for name, on in (
        ("certification", c.certification),
        ("same_department", c.same_department),
        ("same_region", c.same_region),
        ("on_shift", c.on_shift),
        ("max_open_jobs", c.max_open_jobs is not None),
        ("max_distance_km", c.max_distance_km is not None),
    ):
        if on:
            in_force.add(name)
    certs: tuple[tuple[str, tuple[str, ...]], ...] = ()
    if c.certification:
        certs = tuple(
            (skill, tuple(certified_skills[skill]))
            for skill, _ in job.skills
            if certified_skills.get(skill)
        )
    local = now.astimezone(tz)
    weights = tuple(float(getattr(policy.weights, o)) for o in OBJECTIVES)
    return _Ctx(
        job=job,
        policy=policy,
        now=now,
        tz=tz,
        local=local,
        day=DAYS[local.weekday()],
        today=local.date(),
        in_force=frozenset(in_force),
        certs=certs,
        max_open=c.max_open_jobs,
        max_km=c.max_distance_km,
        reach_km=c.max_distance_km or DEFAULT_REACH_KM,
        load_limit=c.max_open_jobs or DEFAULT_LOAD,
        weights=weights,
        weight_sum=sum(weights),
        sla_window_s=None if job.sla_due is None else (job.sla_due - now).total_seconds(),
    )


# --- the hard constraints: a fast test each, and the words for the few shown -----------------


def has_skills(e: EngineerProfile, job: Job) -> bool:
    skills = e.skills
    for skill, level in job.skills:
        have = skills.get(skill)
        if have is None or have < level:
            return False
    return True


def valid_certificate(e: EngineerProfile, name: str, today: date) -> bool:
    """Held and not expired: a certificate is good up to and including its expiry date."""
    if name not in e.certifications:
        return False
    expiry = e.certifications[name]
    return expiry is None or expiry >= today


def _certified(e: EngineerProfile, x: _Ctx) -> bool:
    today = x.today
    return all(any(valid_certificate(e, n, today) for n in names) for _, names in x.certs)


def covers(e: EngineerProfile, job: Job) -> bool:
    if not e.regions or (job.region is None and job.site is None):
        return True
    return job.region in e.regions or job.site in e.regions


def shift_state(
    e: EngineerProfile, now: datetime, local: datetime
) -> tuple[bool, tuple[datetime, datetime] | None, tuple[time, time] | None]:
    """(on shift and not on leave, the leave ``now`` falls in, the shift range it falls in);
    ``local`` is ``now`` in the sites' time zone, whose wall clock the shifts are written in."""
    for start, end in e.leave:
        if start <= now < end:
            return False, (start, end), None
    if not e.shifts:
        return True, None, None
    t = local.time()
    for start, end in e.shifts.get(DAYS[local.weekday()], ()):
        if end == MIDNIGHT or end <= start:  # runs to midnight (and past it, when overnight)
            if t >= start:
                return True, None, (start, end)
        elif start <= t < end:
            return True, None, (start, end)
    for start, end in e.shifts.get(DAYS[local.weekday() - 1], ()):  # "22:00-06:00" the day before
        if end != MIDNIGHT and end <= start and t < end:
            return True, None, (start, end)
    return False, None, None


def _road_km(e: EngineerProfile, x: _Ctx) -> float | None:
    j = x.job
    if e.lat is None or e.lon is None or j.lat is None or j.lon is None:
        return None
    return great_circle_km(e.lat, e.lon, j.lat, j.lon) * x.policy.road_factor


def _failures(e: EngineerProfile, x: _Ctx, road: float | None) -> tuple[str, ...]:
    """The checks in force that ``e`` fails (skills and active are gates, already passed)."""
    on = x.in_force
    job = x.job
    failed = []
    if x.certs and not _certified(e, x):
        failed.append("certification")
    if "same_department" in on and job.queue is not None and e.department != job.queue:
        failed.append("same_department")
    if "same_region" in on and not covers(e, job):
        failed.append("same_region")
    if "on_shift" in on and not shift_state(e, x.now, x.local)[0]:
        failed.append("on_shift")
    if x.max_open is not None and e.open_jobs >= x.max_open:
        failed.append("max_open_jobs")
    if x.max_km is not None and road is not None and road > x.max_km:
        failed.append("max_distance_km")
    if e.id in job.exclude:
        failed.append("not_declined")
    if not e.active:
        failed.append("active")
    return tuple(failed)


def _km(km: float) -> str:
    return f"{km:.1f} km"


def _hm(t: time) -> str:
    return "24:00" if t == MIDNIGHT else t.strftime("%H:%M")


def _when(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M %Z").strip()


def _detail(name: str, e: EngineerProfile, x: _Ctx, road: float | None) -> str:
    """The words for check ``name`` of ``e``, passed or failed (not knowing about relaxing)."""
    job = x.job
    if name not in x.in_force:
        return "not required"
    if name == "skills":
        if not job.skills:
            return "no skill needed"
        parts = []
        for skill, need in job.skills:
            have = e.skills.get(skill)
            if have is None:
                parts.append(f"no {skill}, needs level {need}")
            elif have < need:
                parts.append(f"{skill} level {have}, needs {need}")
            else:
                parts.append(f"{skill} level {have} (needs {need})")
        return "; ".join(parts)
    if name == "certification":
        if not x.certs:
            return "no certificate needed"
        parts = []
        for skill, names in x.certs:
            good = [n for n in names if valid_certificate(e, n, x.today)]
            if good:
                expiry = e.certifications[good[0]]
                until = "no expiry" if expiry is None else f"valid until {expiry.isoformat()}"
                parts.append(f"{skill}: {good[0]} ({until})")
                continue
            expired = [n for n in names if n in e.certifications]
            if expired:
                when = e.certifications[expired[0]]
                assert when is not None
                parts.append(f"{skill} needs {expired[0]}: expired {when.isoformat()}")
            else:
                parts.append(f"{skill} needs {' or '.join(names)}: none held")
        return "; ".join(parts)
    if name == "same_department":
        if job.queue is None:
            return "the job has no queue"
        if e.department == job.queue:
            return f"in {job.queue}"
        return f"in {e.department or 'no department'}, the job is for {job.queue}"
    if name == "same_region":
        if not e.regions:
            return "covers every site"
        where = " / ".join(w for w in (job.region, job.site) if w is not None)
        if not where:
            return "the job has no site or region"
        if covers(e, job):
            return f"covers {job.region if job.region in e.regions else job.site}"
        return f"covers {', '.join(sorted(e.regions))}; not {where}"
    if name == "on_shift":
        on, leave, span = shift_state(e, x.now, x.local)
        clock = f"{x.local.strftime('%H:%M')} {x.day.capitalize()} ({x.tz})"
        if leave is not None:
            return f"on leave (请假) until {_when(leave[1])}"
        if on and span is None:
            return "no shift pattern: always on"
        if on and span is not None:
            return f"on shift {_hm(span[0])}-{_hm(span[1])}, now {clock}"
        return f"no shift at {clock}"
    if name == "max_open_jobs":
        jobs = f"{e.open_jobs} open job{'' if e.open_jobs == 1 else 's'}"
        if e.open_jobs < (x.max_open or 0):
            return f"{jobs} (limit {x.max_open})"
        return f"{jobs}, the limit is {x.max_open}"
    if name == "max_distance_km":
        if road is None:
            return "distance unknown"
        if road <= (x.max_km or 0):
            return f"{_km(road)} by road (limit {x.max_km:g} km)"
        return f"{_km(road)} by road, over the {x.max_km:g} km limit"
    if name == "not_declined":
        return "declined or let an offer lapse" if e.id in job.exclude else "has not declined"
    if name == "active":
        return "active" if e.active else "inactive"
    raise AssertionError(name)


# --- the objectives ---------------------------------------------------------------------------


def _scores(e: EngineerProfile, x: _Ctx, road: float | None) -> tuple[float, ...]:
    job = x.job
    reach = x.reach_km
    distance = 0.5 if road is None else 1.0 - min(road, reach) / reach
    window = x.sla_window_s
    if window is None:
        sla = 1.0
    elif window <= 0:
        sla = 0.0
    else:  # an unknown distance counts as half the reach, as its distance score does
        eta_s = (reach / 2 if road is None else road) / x.policy.speed_kmh * 3600.0
        sla = min(1.0, max(0.0, (window - eta_s) / window))
    limit = x.load_limit
    load = 1.0 - min(max(e.open_jobs, 0), limit) / limit
    if job.skills:
        levels = [min(max(e.skills.get(s, 0), 0), 5) / 5 for s, _ in job.skills]
        skill = sum(levels) / len(levels)
    else:
        skill = 1.0
    last = 1.0 if job.last_engineer is not None and e.id == job.last_engineer else 0.0
    fixed, done = e.first_time_fix.get(job.category, (0, 0)) if job.category else (0, 0)
    ftf = min(1.0, max(0.0, (fixed + 1) / (done + 2)))
    return (distance, sla, load, skill, last, ftf)


# --- deciding ---------------------------------------------------------------------------------


class _Row:
    """One assessed engineer: the checks failed, then (only when needed for the ranking) the
    scores and the ranking key."""

    __slots__ = ("e", "failed", "key", "missed", "road", "scores", "total")

    def __init__(self, e: EngineerProfile, x: _Ctx) -> None:
        self.e = e
        self.road = _road_km(e, x)
        self.failed = _failures(e, x, self.road)
        self.missed = len(self.failed)

    def score(self, x: _Ctx) -> _Row:
        self.scores = s = _scores(self.e, x, self.road)
        w = x.weights
        self.total = (
            w[0] * s[0] + w[1] * s[1] + w[2] * s[2] + w[3] * s[3] + w[4] * s[4] + w[5] * s[5]
        ) / x.weight_sum
        far = math.inf if self.road is None else self.road
        self.key = (-round(self.total, 9), far, self.e.open_jobs, self.e.id)
        return self


def decide(
    job: Job,
    engineers: Iterable[EngineerProfile],
    policy: DispatchPolicy,
    *,
    now: datetime,
    tz: tzinfo,
    certified_skills: Mapping[str, Sequence[str]],
) -> Decision:
    """Who is offered ``job`` under ``policy`` at ``now`` (aware), shifts read in ``tz``."""
    x = _context(job, policy, now, tz, certified_skills)
    seen: set[str] = set()
    pool = []
    inactive = 0
    for e in engineers:
        if e.id in seen:
            raise ValueError(f"engineer {e.id!r} is listed twice; give each engineer once")
        seen.add(e.id)
        if not e.active:
            inactive += 1
        elif has_skills(e, job):
            pool.append(e)
    return _decide(x, pool, len(seen), inactive)


def decide_indexed(
    job: Job,
    index: EngineerIndex,
    policy: DispatchPolicy,
    *,
    now: datetime,
    tz: tzinfo,
    certified_skills: Mapping[str, Sequence[str]],
) -> Decision:
    """:func:`decide` over every engineer in ``index``, scoring only its candidates."""
    x = _context(job, policy, now, tz, certified_skills)
    pool = [e for e in index.candidates(job) if has_skills(e, job)]
    return _decide(x, pool, len(index), index.inactive)


def _decide(x: _Ctx, pool: list[EngineerProfile], total: int, inactive: int) -> Decision:
    rows = [_Row(e, x) for e in pool]
    relaxed: list[str] = []
    eligible = [r for r in rows if not r.failed]
    if not eligible:
        for name in x.policy.relax:
            if name in NEVER_RELAXED or name not in x.in_force:
                continue
            if not any(name in r.failed for r in rows):
                continue  # nobody fails it: dropping it would change nothing
            relaxed.append(name)
            for r in rows:
                r.missed -= name in r.failed
            eligible = [r for r in rows if not r.missed]
            if eligible:
                break
    dropped = frozenset(relaxed)
    eligible = sorted((r.score(x) for r in eligible), key=lambda r: r.key)
    # the ineligible ones that failed fewest checks; only those can be shown, so only they are
    # scored (ties at the fifth place all are, so that the key decides among them)
    near = [r for r in rows if r.missed]
    if len(near) > SHOWN_INELIGIBLE:
        cut = sorted(r.missed for r in near)[SHOWN_INELIGIBLE - 1]
        near = [r for r in near if r.missed <= cut]
    near = sorted((r.score(x) for r in near), key=lambda r: (r.missed, r.key))
    ranked = tuple(_candidate(r, x, dropped, True) for r in eligible) + tuple(
        _candidate(r, x, dropped, False) for r in near[:SHOWN_INELIGIBLE]
    )
    chosen = (
        tuple(r.e.id for r in eligible[: x.policy.parallel]) if x.policy.mode == "offer" else ()
    )
    if eligible:
        reason = _reason(x, eligible, chosen, relaxed)
    else:
        counts = {"active": inactive, "skills": total - inactive - len(pool)}
        for r in rows:
            for f in r.failed:
                if f not in dropped:
                    counts[f] = counts.get(f, 0) + 1
        reason = _nobody(x, counts, total, relaxed)
    return Decision(
        ticket_id=x.job.ticket_id,
        policy=x.policy.id,
        mode=x.policy.mode,
        relaxed=tuple(relaxed),
        ranked=ranked,
        chosen=chosen,
        reason=reason,
        weights=dict(zip(OBJECTIVES, x.weights, strict=True)),
    )


def _candidate(r: _Row, x: _Ctx, dropped: frozenset[str], eligible: bool) -> Candidate:
    e = r.e
    checks = []
    for name in CHECKS:
        detail = _detail(name, e, x, r.road)
        if name not in r.failed:
            checks.append(Check(name, True, detail))
        elif name in dropped:
            checks.append(Check(name, True, f"relaxed (放宽): {detail}"))
        else:
            checks.append(Check(name, False, detail))
    job = x.job
    eta = None if r.road is None else r.road / x.policy.speed_kmh * 60.0
    history = None
    if job.category:
        fixed, done = e.first_time_fix.get(job.category, (0, 0))
        history = (job.category, fixed, done)
    return Candidate(
        engineer=e.id,
        eligible=eligible,
        checks=tuple(checks),
        scores=dict(zip(OBJECTIVES, r.scores, strict=True)),
        total=r.total,
        distance_km=r.road,
        eta_minutes=eta,
        name=e.name,
        open_jobs=e.open_jobs,
        skill_levels=tuple((s, e.skills.get(s, 0)) for s, _ in job.skills),
        history=history,
    )


def _and(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _engineers(n: int) -> str:
    return f"{n:,} engineer{'' if n == 1 else 's'}"


def _relaxing(relaxed: list[str]) -> str:
    return _and([RELAXED_WORDS[n] for n in relaxed])


def _reason(x: _Ctx, eligible: list[_Row], chosen: tuple[str, ...], relaxed: list[str]) -> str:
    n = len(eligible)
    best = eligible[0]
    after = f", after relaxing {_relaxing(relaxed)}" if relaxed else ""
    if x.policy.mode == "queue":
        return (
            f"Policy {x.policy.id} leaves the choice to a dispatcher (调度员派单); as advice, "
            + (
                f"{best.e.name} ranks first of the {n:,} eligible engineers{after}."
                if n > 1
                else f"{best.e.name} is the only eligible engineer{after}."
            )
        )
    if x.policy.mode == "grab":
        return (
            f"Open for grabbing (抢单) by {'the only' if n == 1 else f'the {n:,}'} eligible "
            f"engineer{'' if n == 1 else 's'}{after}; "
            f"{best.e.name} ranks first."
        )
    names = _and([r.e.name for r in eligible[: len(chosen)]])
    if len(chosen) == 1:
        of = f"the best of {n:,} eligible engineers" if n > 1 else "the only eligible engineer"
        return f"Offered to {names} (score {best.total:.2f}), {of}{after}."
    if n > len(chosen):
        return (
            f"Offered to {len(chosen)} at once, the first to accept wins (并行派单): {names}, "
            f"the best of {n:,} eligible engineers{after}."
        )
    return (
        f"Offered at once to all {n} eligible engineers, the first to accept wins (并行派单): "
        f"{names}{after}."
    )


def _nobody(x: _Ctx, counts: dict[str, int], total: int, relaxed: list[str]) -> str:
    """Why nobody: the constraint that excluded the most engineers, then the next ones.
    Inactive engineers count under active only, and those without the skills under skills
    only; the other constraints count among the active engineers with the skills (one engineer
    can fail several)."""
    even = f" even after relaxing {_relaxing(relaxed)}" if relaxed else ""
    if total == 0:
        return f"Nobody qualifies (无人符合){even}: there are no engineers to choose from."
    worst = sorted(
        ((n, name) for name, n in counts.items() if n > 0),
        key=lambda c: (-c[0], CHECKS.index(c[1])),
    )

    def did(n: int, name: str) -> str:  # "3 are not on shift (不在班)", "1 is ..."
        _, many, zh = CHECK_LABELS[name]
        verb, _, rest = many.partition(" ")
        verb = {"lack": "lacks", "have": "has", "are": "is", "do": "does"}.get(verb, verb)
        return f"{many if n != 1 else f'{verb} {rest}'} ({zh})"

    n, name = worst[0]
    also = [f"{k:,} {did(k, other)}" for k, other in worst[1:3]]
    tail = f"; also {', '.join(also)}" if also else ""
    return (
        f"Nobody qualifies (无人符合){even}: {name} excluded the most, {n:,} of {total:,} "
        f"{did(n, name)}{tail}."
    )


# --- the dispatcher's explanation --------------------------------------------------------------


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _away(c: Candidate) -> str:
    if c.distance_km is None:
        return "distance unknown"
    return f"{_km(c.distance_km)} away (about {round(c.eta_minutes or 0):.0f} min)"


def _jobs(n: int) -> str:
    return "no open jobs" if n == 0 else f"{n} open job{'' if n == 1 else 's'}"


def _levels(c: Candidate) -> str:
    return ", ".join(f"{s} level {lvl}" for s, lvl in c.skill_levels)


def _fixes(c: Candidate) -> str | None:
    if c.history is None:
        return None
    category, fixed, done = c.history
    if done == 0:
        return f"no {category} jobs completed yet"
    return f"fixed first time {fixed} of {done} {category} job{'' if done == 1 else 's'}"


def _facts(c: Candidate, weights: Mapping[str, float]) -> list[str]:
    facts = [_away(c), _jobs(c.open_jobs)]
    if c.skill_levels:
        facts.append(_levels(c))
    fixes = _fixes(c)
    if fixes and weights.get("first_time_fix", 1) > 0:
        facts.append(fixes)
    if c.scores.get("last_engineer") and weights.get("last_engineer", 1) > 0:
        facts.append("last worked on this asset (上次维修该设备)")
    if c.scores.get("sla_slack", 1.0) < 1.0 and weights.get("sla_slack", 1) > 0:
        facts.append(f"would arrive with {c.scores['sla_slack']:.0%} of the SLA time left")
    return facts


def _gap(objective: str, c: Candidate, best: Candidate) -> str:
    """Why ``c`` scores lower than ``best`` on ``objective``, in words."""
    if objective == "distance":
        other = "unknown" if best.distance_km is None else _km(best.distance_km)
        return f"{_away(c)} against {other}"
    if objective == "sla_slack":
        s, b = c.scores["sla_slack"], best.scores["sla_slack"]
        return f"less time to the SLA (SLA 余量) on arrival, {s:.0%} against {b:.0%}"
    if objective == "load":
        return f"{_jobs(c.open_jobs)} against {best.open_jobs}"
    if objective == "skill_level":
        pairs = zip(c.skill_levels, best.skill_levels, strict=True)
        return ", ".join(f"{s} level {a} against {b}" for (s, a), (_, b) in pairs if a != b)
    if objective == "last_engineer":
        return f"{best.name} last worked on this asset"
    if objective == "first_time_fix":
        return f"{_fixes(c)}, against {_fixes(best)}"
    raise AssertionError(objective)


def explain(decision: Decision, *, runners_up: int = 5) -> list[str]:
    """The decision in plain words for a dispatcher: the reason, who ranked first and on what,
    why each runner-up (up to ``runners_up``) ranked lower, and which constraint each listed
    ineligible engineer failed."""
    lines = [decision.reason]
    w = decision.weights or dict.fromkeys(OBJECTIVES, 1.0)  # a Decision made without them
    if decision.relaxed:
        lines.append(
            "Relaxed to find anyone (放宽条件): "
            + ", ".join(f"{RELAXED_WORDS[n]} ({n})" for n in decision.relaxed)
            + "."
        )
    eligible = [c for c in decision.ranked if c.eligible]
    if eligible:
        best = eligible[0]
        offered = " (offered 已派)" if best.engineer in decision.chosen else ""
        lines.append(
            f"{best.name or best.engineer} ranked first{offered}: "
            + ", ".join(_facts(best, w))
            + f" (score {best.total:.2f})."
        )
        for place, c in enumerate(eligible[1 : 1 + runners_up], start=2):
            lines.append(_runner_up(place, c, best, w, c.engineer in decision.chosen))
        more = len(eligible) - 1 - runners_up
        if more > 0:
            lines.append(
                f"... and {more:,} more eligible engineer{'' if more == 1 else 's'}, ranked lower."
            )
    for c in decision.ranked:
        if c.eligible:
            continue
        failed = [k for k in c.checks if not k.passed]
        lines.append(
            f"{c.name or c.engineer}: "
            + "; ".join(
                f"{CHECK_LABELS[k.name][0]} ({CHECK_LABELS[k.name][2]}) — {k.detail}"
                for k in failed
            )
            + "."
        )
    return lines


def _runner_up(
    place: int, c: Candidate, best: Candidate, w: Mapping[str, float], offered: bool
) -> str:
    head = f"{c.name or c.engineer} ranked {_ordinal(place)}"
    if offered:
        head += " (also offered 已派)"
    total = sum(w.values()) or 1.0
    gaps = sorted(
        (
            (w.get(o, 0) * (best.scores[o] - c.scores[o]) / total, OBJECTIVES.index(o), o)
            for o in OBJECTIVES
            if w.get(o, 0) > 0 and best.scores[o] - c.scores[o] > 1e-9
        ),
        key=lambda g: (-g[0], g[1]),
    )
    if round(c.total, 9) == round(best.total, 9):
        if c.distance_km != best.distance_km:
            why = f"the same score as {best.name}, but {_away(c)}"
        elif c.open_jobs != best.open_jobs:
            why = f"the same score as {best.name}, but {_jobs(c.open_jobs)}"
        else:
            why = f"the same score as {best.name}, placed after by username"
        return f"{head}: {why}."
    why = "; ".join(_gap(o, c, best) for _, _, o in gaps[:3])
    return f"{head} (score {c.total:.2f}, {best.total - c.total:.2f} lower): {why}."


# --- the index --------------------------------------------------------------------------------


class EngineerIndex:
    """Engineers by skill level, for fast candidate lookup among many: per skill, the sets of
    engineers holding it at level >= 1, 2, ... 5. Upsert an engineer again when anything about
    them changes (their open jobs, position, shifts); only a change of skills or of being active
    touches the sets."""

    def __init__(self, engineers: Iterable[EngineerProfile] = ()) -> None:
        self._by_id: dict[str, EngineerProfile] = {}
        self._active: set[str] = set()
        self._levels: dict[str, tuple[set[str], ...]] = {}
        for e in engineers:
            self.upsert(e)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, engineer_id: object) -> bool:
        return engineer_id in self._by_id

    def get(self, engineer_id: str) -> EngineerProfile | None:
        return self._by_id.get(engineer_id)

    @property
    def inactive(self) -> int:
        return len(self._by_id) - len(self._active)

    def upsert(self, e: EngineerProfile) -> None:
        old = self._by_id.get(e.id)
        self._by_id[e.id] = e
        if old is not None:
            if old.active == e.active and old.skills == e.skills:
                return
            self._unlink(old)
        if e.active:
            self._active.add(e.id)
        for skill, level in e.skills.items():
            sets = self._levels.get(skill)
            if sets is None:
                sets = self._levels[skill] = (set(), set(), set(), set(), set())
            for k in range(max(1, min(level, 5))):
                sets[k].add(e.id)

    def remove(self, engineer_id: str) -> None:
        old = self._by_id.pop(engineer_id, None)
        if old is not None:
            self._unlink(old)

    def _unlink(self, e: EngineerProfile) -> None:
        self._active.discard(e.id)
        for skill in e.skills:
            for s in self._levels.get(skill, ()):
                s.discard(e.id)

    def candidates(self, job: Job) -> list[EngineerProfile]:
        """The active engineers holding every skill ``job`` needs at its level (a superset of
        those passing the skills check); all active engineers when it needs none."""
        if not job.skills:
            ids: set[str] = self._active
        else:
            groups = []
            for skill, level in job.skills:
                sets = self._levels.get(skill)
                if sets is None:
                    return []
                groups.append(sets[min(max(level, 1), 5) - 1])
            groups.sort(key=len)
            ids = groups[0].intersection(*groups[1:], self._active)
        return [self._by_id[i] for i in sorted(ids)]


__all__ = [
    "CHECKS",
    "Candidate",
    "Check",
    "Decision",
    "EngineerIndex",
    "EngineerProfile",
    "Job",
    "decide",
    "decide_indexed",
    "explain",
    "great_circle_km",
]
