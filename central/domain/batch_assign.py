"""Batch dispatch: many waiting jobs to many engineers at once (批量派工), best overall rather
than best for each job in turn. Pure, like :mod:`central.domain.dispatch`, whose constraints and
scores it applies, vectorised over the whole jobs x engineers matrix.

The model:

* A pair is feasible when the engineer passes every hard constraint of the job's policy
  (nothing is relaxed here: a job nobody qualifies for is left for :func:`decide` and, after
  it, the dispatcher). The policy's mode is not consulted: the caller chooses the jobs (a
  dispatcher assigning their queue's backlog is the dispatcher deciding).
* An engineer takes at most ``max_open_jobs - open_jobs`` new jobs, and at most
  ``max_new_per_engineer`` in one batch (also the capacity when no policy sets a limit). Each
  free place is a column of its own: the k-th new job of an engineer (k = 0, 1, ...) is scored
  with ``open_jobs + k`` open jobs, so the load objective sees the jobs given in the same
  batch, and it is feasible only if ``open_jobs + k`` is under that job's limit.
* The cost of a pair is ``1 - total`` (the weighted mean of the objectives, as in
  :func:`decide`). :func:`assign_batch` minimises it with ``linear_sum_assignment``;
  infeasible pairs cost more than any feasible solution can, so the answer assigns as many jobs
  as can be, then at the least cost. :func:`greedy_batch` is the baseline: jobs one at a time,
  P1 first then by ticket id, each to the best remaining engineer (the ranking of
  :func:`decide`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo

import numpy as np
from scipy.optimize import linear_sum_assignment

from central.domain.dispatch import (
    DEFAULT_LOAD,
    DEFAULT_REACH_KM,
    EARTH_RADIUS_KM,
    EngineerProfile,
    Job,
    shift_state,
    valid_certificate,
)
from fieldloop.rules.policies import OBJECTIVES, DispatchPolicy

PRIORITY_ORDER = {"P1": 0, "P2": 1, "P3": 2, "P4": 3}
MAX_NEW_PER_ENGINEER = 5
_D, _SLA, _LOAD, _SKILL, _LAST, _FTF = range(len(OBJECTIVES))
assert OBJECTIVES[_LOAD] == "load" and OBJECTIVES[_FTF] == "first_time_fix"


@dataclass(frozen=True)
class BatchResult:
    assignments: dict[int, str]  # ticket id -> engineer id
    unassigned: tuple[int, ...]  # ticket ids, in the order given
    total_cost: float  # the sum of 1 - total over the assignments made


class _Problem:
    """The jobs x engineers matrices that do not depend on how many jobs an engineer takes:
    feasibility (``ok``), the score without the load objective (``base``), road distance."""

    def __init__(
        self,
        jobs: Sequence[Job],
        engineers: Sequence[EngineerProfile],
        policy_for: Callable[[Job], DispatchPolicy],
        now: datetime,
        tz: tzinfo,
        certified_skills: Mapping[str, Sequence[str]],
        max_new_per_engineer: int,
    ) -> None:
        _aware(now, "now")
        if max_new_per_engineer < 1:
            raise ValueError(f"max_new_per_engineer is 1 or more, not {max_new_per_engineer}")
        _unique([j.ticket_id for j in jobs], "ticket")
        _unique([e.id for e in engineers], "engineer")
        for j in jobs:
            if j.sla_due is not None:
                _aware(j.sla_due, f"ticket {j.ticket_id}'s sla_due")
        self.jobs, self.engineers = js, es = list(jobs), list(engineers)
        policies = [policy_for(j) for j in js]
        c = [p.constraints for p in policies]
        local = now.astimezone(tz)
        self.open = np.array([e.open_jobs for e in es], dtype=np.int64)
        self.id_rank = np.argsort(np.argsort(np.array([e.id for e in es], dtype=str)))
        self.max_open = np.array(
            [np.iinfo(np.int64).max if k.max_open_jobs is None else k.max_open_jobs for k in c],
            dtype=np.int64,
        )
        self.load_limit = np.array([k.max_open_jobs or DEFAULT_LOAD for k in c], dtype=float)
        active = np.array([e.active for e in es], dtype=bool)

        # distance, and the objectives that depend on it
        factor = np.array([p.road_factor for p in policies], dtype=float)
        self.road = road = _great_circle(js, es) * factor[:, None]
        unknown = np.isnan(road)
        reach = np.array([k.max_distance_km or DEFAULT_REACH_KM for k in c], dtype=float)[:, None]
        distance = np.where(
            unknown, 0.5, 1.0 - np.minimum(np.where(unknown, 0, road), reach) / reach
        )
        window = np.array(
            [np.nan if j.sla_due is None else (j.sla_due - now).total_seconds() for j in js]
        )[:, None]
        speed = np.array([p.speed_kmh for p in policies], dtype=float)[:, None]
        eta = np.where(unknown, reach / 2, road) / speed * 3600.0  # unknown: half the reach
        with np.errstate(divide="ignore", invalid="ignore"):
            sla = np.clip((window - eta) / window, 0.0, 1.0)
        sla = np.where(np.isnan(window), 1.0, np.where(window <= 0, 0.0, sla))
        max_km = np.array([np.inf if k.max_distance_km is None else k.max_distance_km for k in c])

        # the other hard constraints and objectives
        skilled, skills = _skills(js, es)
        on_shift = np.array([shift_state(e, now, local)[0] for e in es], dtype=bool)
        shift_on = np.array([k.on_shift for k in c], dtype=bool)
        self.ok = (
            active[None, :]
            & skilled
            & (unknown | (road <= max_km[:, None]))
            & _certified(js, es, policies, certified_skills, local.date())
            & _same_department(js, es, policies)
            & _same_region(js, es, policies)
            & (~shift_on[:, None] | on_shift[None, :])
        )
        col = {e.id: i for i, e in enumerate(es)}
        last = np.zeros(road.shape)
        for i, j in enumerate(js):
            self.ok[i, [col[who] for who in j.exclude if who in col]] = False
            if j.last_engineer in col:
                last[i, col[j.last_engineer]] = 1.0

        w = np.array([[getattr(p.weights, o) for o in OBJECTIVES] for p in policies], dtype=float)
        w = w.reshape(len(js), len(OBJECTIVES))
        wsum = w.sum(axis=1)
        self.base = (
            w[:, _D, None] * distance
            + w[:, _SLA, None] * sla
            + w[:, _SKILL, None] * skills
            + w[:, _LAST, None] * last
            + w[:, _FTF, None] * _first_time_fix(js, es)
        ) / wsum[:, None]
        self.w_load = w[:, _LOAD] / wsum
        # the places an engineer can take in this batch
        limit = min(int(self.max_open.max(initial=0)), np.iinfo(np.int64).max // 2)
        self.capacity = np.clip(limit - np.maximum(self.open, 0), 0, max_new_per_engineer)
        self.capacity[~active] = 0

    def cost(self, slot: int | np.ndarray) -> np.ndarray:
        """1 - total for every pair, the engineers holding ``open_jobs + slot`` open jobs."""
        held = np.maximum(self.open + slot, 0)[None, :]
        load = 1.0 - np.minimum(held, self.load_limit[:, None]) / self.load_limit[:, None]
        return 1.0 - (self.base + self.w_load[:, None] * load)

    def fits(self, slot: int | np.ndarray) -> np.ndarray:
        """Feasible pairs with the engineers' ``slot``-th new job (0 = the first)."""
        held = (self.open + slot)[None, :]
        return self.ok & (held < self.max_open[:, None]) & (slot < self.capacity)[None, :]

    def result(self, pairs: dict[int, int], costs: dict[int, float]) -> BatchResult:
        return BatchResult(
            assignments={self.jobs[j].ticket_id: self.engineers[e].id for j, e in pairs.items()},
            unassigned=tuple(j.ticket_id for i, j in enumerate(self.jobs) if i not in pairs),
            total_cost=float(sum(costs[j] for j in pairs)),
        )


def _aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got the naive {value.isoformat()}")


def _great_circle(jobs: list[Job], engineers: list[EngineerProfile]) -> np.ndarray:
    """km between every job and engineer (as great_circle_km), NaN where a position is missing."""
    elat = np.array([np.nan if e.lat is None or e.lon is None else e.lat for e in engineers])
    elon = np.array([np.nan if e.lat is None or e.lon is None else e.lon for e in engineers])
    jlat = np.array([np.nan if j.lat is None or j.lon is None else j.lat for j in jobs])
    jlon = np.array([np.nan if j.lat is None or j.lon is None else j.lon for j in jobs])
    p1, p2 = np.radians(elat)[None, :], np.radians(jlat)[:, None]
    dl = np.radians(jlon[:, None] - elon[None, :])
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    km = 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(h)))
    return km.reshape(len(jobs), len(engineers))


def _skills(jobs: list[Job], engineers: list[EngineerProfile]) -> tuple[np.ndarray, np.ndarray]:
    """(has every needed skill at its level, the skill_level objective), one row per distinct
    set of needs."""
    n = len(engineers)
    needs: dict[tuple[tuple[str, int], ...], int] = {}
    for j in jobs:
        needs.setdefault(j.skills, len(needs))
    ok = np.ones((len(needs), n), dtype=bool)
    score = np.ones((len(needs), n))
    for need, i in needs.items():
        if need:
            total = np.zeros(n)
            for skill, level in need:
                have = np.array([e.skills.get(skill, -1) for e in engineers], dtype=float)
                ok[i] &= have >= level
                total += np.clip(have, 0, 5) / 5
            score[i] = total / len(need)
    of = np.array([needs[j.skills] for j in jobs], dtype=np.int64)
    return ok[of], score[of]


def _certified(
    jobs: list[Job],
    engineers: list[EngineerProfile],
    policies: list[DispatchPolicy],
    certified_skills: Mapping[str, Sequence[str]],
    today: date,
) -> np.ndarray:
    rows: dict[tuple[tuple[str, ...], ...], int] = {}
    of = []
    for j, p in zip(jobs, policies, strict=True):
        need = tuple(
            tuple(certified_skills[s])
            for s, _ in j.skills
            if p.constraints.certification and certified_skills.get(s)
        )
        of.append(rows.setdefault(need, len(rows)))
    ok = np.ones((len(rows), len(engineers)), dtype=bool)
    for need, i in rows.items():
        for names in need:
            ok[i] &= [any(valid_certificate(e, c, today) for c in names) for e in engineers]
    return ok[np.array(of, dtype=np.int64)]


def _same_department(
    jobs: list[Job], engineers: list[EngineerProfile], policies: list[DispatchPolicy]
) -> np.ndarray:
    codes: dict[str | None, int] = {None: -1}
    dept = np.array([codes.setdefault(e.department, len(codes)) for e in engineers], dtype=int)
    anyone, nobody = -2, -3
    queue = np.array(
        [
            anyone if j.queue is None or not p.constraints.same_department
            else codes.get(j.queue, nobody)
            for j, p in zip(jobs, policies, strict=True)
        ],
        dtype=int,
    )  # fmt: skip
    return (queue[:, None] == anyone) | (dept[None, :] == queue[:, None])


def _same_region(
    jobs: list[Job], engineers: list[EngineerProfile], policies: list[DispatchPolicy]
) -> np.ndarray:
    places: dict[str, int] = {}
    for e in engineers:
        for where in e.regions:
            places.setdefault(where, len(places))
    nowhere = len(places)
    cover = np.zeros((nowhere + 1, len(engineers)), dtype=bool)  # the last row: nobody covers
    for i, e in enumerate(engineers):
        for where in e.regions:
            cover[places[where], i] = True
    everywhere = np.array([not e.regions for e in engineers], dtype=bool)
    region = np.array([places.get(j.region, nowhere) for j in jobs], dtype=np.int64)  # type: ignore[arg-type]
    site = np.array([places.get(j.site, nowhere) for j in jobs], dtype=np.int64)  # type: ignore[arg-type]
    free = np.array(
        [
            not p.constraints.same_region or (j.region is None and j.site is None)
            for j, p in zip(jobs, policies, strict=True)
        ],
        dtype=bool,
    )
    return free[:, None] | everywhere[None, :] | cover[region] | cover[site]


def _first_time_fix(jobs: list[Job], engineers: list[EngineerProfile]) -> np.ndarray:
    """(fixed + 1) / (completed + 2) in the job's category; 0.5 without a category."""
    categories: dict[str | None, int] = {None: 0}
    for j in jobs:
        if j.category:
            categories.setdefault(j.category, len(categories))
    rows = np.full((len(categories), len(engineers)), 0.5)
    for category, i in categories.items():
        if category is not None:
            history = [e.first_time_fix.get(category, (0, 0)) for e in engineers]
            fixed = np.array(history, dtype=float).reshape(len(engineers), 2)
            rows[i] = np.clip((fixed[:, 0] + 1) / (fixed[:, 1] + 2), 0.0, 1.0)
    return rows[np.array([categories[j.category or None] for j in jobs], dtype=np.int64)]


def _unique(ids: list[object], what: str) -> None:
    seen: set[object] = set()
    for i in ids:
        if i in seen:
            raise ValueError(f"{what} {i!r} is given twice; give each {what} once")
        seen.add(i)


def assign_batch(
    jobs: Sequence[Job],
    engineers: Sequence[EngineerProfile],
    policy_for: Callable[[Job], DispatchPolicy],
    *,
    now: datetime,
    tz: tzinfo,
    certified_skills: Mapping[str, Sequence[str]],
    max_new_per_engineer: int = MAX_NEW_PER_ENGINEER,
) -> BatchResult:
    """The assignment of ``jobs`` to ``engineers`` that serves the most jobs at the least total
    cost (1 - score), each engineer within their capacity."""
    pr = _Problem(jobs, engineers, policy_for, now, tz, certified_skills, max_new_per_engineer)
    m = len(pr.jobs)
    slots = int(pr.capacity.max(initial=0))
    blocks, owners = [], []
    for s in range(slots):
        fits = pr.fits(s)
        used = fits.any(axis=0)  # engineers some job can have as their s-th new job
        if not used.any():
            break
        cost = pr.cost(s)[:, used]
        blocks.append(np.where(fits[:, used], cost, np.inf))
        owners.append(np.flatnonzero(used))
    if not blocks:
        return pr.result({}, {})
    matrix = np.concatenate(blocks, axis=1)
    owner = np.concatenate(owners)
    rows = np.flatnonzero(np.isfinite(matrix).any(axis=1))  # jobs somebody can take
    matrix = matrix[rows]
    feasible = np.isfinite(matrix)
    big = 2.0 * (m + 1)  # more than any set of feasible costs (each at most 1) adds up to
    r, c = linear_sum_assignment(np.where(feasible, matrix, big))
    pairs, costs = {}, {}
    for i, k in zip(r, c, strict=True):
        if feasible[i, k]:
            pairs[int(rows[i])] = int(owner[k])
            costs[int(rows[i])] = float(matrix[i, k])
    return pr.result(pairs, costs)


def greedy_batch(
    jobs: Sequence[Job],
    engineers: Sequence[EngineerProfile],
    policy_for: Callable[[Job], DispatchPolicy],
    *,
    now: datetime,
    tz: tzinfo,
    certified_skills: Mapping[str, Sequence[str]],
    max_new_per_engineer: int = MAX_NEW_PER_ENGINEER,
) -> BatchResult:
    """Jobs one at a time, P1 first then by ticket id, each to the best engineer still free
    (ranked as :func:`decide` ranks: score, then distance, open jobs, id)."""
    pr = _Problem(jobs, engineers, policy_for, now, tz, certified_skills, max_new_per_engineer)
    order = sorted(
        range(len(pr.jobs)),
        key=lambda i: (PRIORITY_ORDER.get(pr.jobs[i].priority or "", 9), pr.jobs[i].ticket_id),
    )
    taken = np.zeros(len(pr.engineers), dtype=np.int64)
    far = np.where(np.isnan(pr.road), np.inf, pr.road)
    pairs, costs = {}, {}
    for i in order:
        if not pr.ok[i].any():
            continue
        held = pr.open + taken
        fits = pr.ok[i] & (held < pr.max_open[i]) & (taken < pr.capacity)
        if not fits.any():
            continue
        who = np.flatnonzero(fits)
        limit = pr.load_limit[i]
        load = 1.0 - np.minimum(np.maximum(held[who], 0), limit) / limit
        total = pr.base[i, who] + pr.w_load[i] * load
        best = who[np.lexsort((pr.id_rank[who], held[who], far[i, who], -np.round(total, 9)))[0]]
        pairs[i] = int(best)
        costs[i] = float(1.0 - total[who == best][0])
        taken[best] += 1
    return pr.result(pairs, costs)


__all__ = ["BatchResult", "assign_batch", "greedy_batch"]
