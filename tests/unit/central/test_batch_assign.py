"""central.domain.batch_assign: the optimiser against brute force and against greedy, the hard
constraints and capacities it keeps, and greedy ranking as decide() does."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from central.domain.batch_assign import BatchResult, assign_batch, greedy_batch
from central.domain.dispatch import EngineerProfile, Job, decide
from fieldloop.rules.policies import OBJECTIVES, DispatchPolicy

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # Tuesday 10:00 in Shanghai
LAT, LON = 31.23, 121.47
CERTS = {"electrical": ["electrician-licence"]}
SKILLS = ["hvac", "electrical", "plumbing"]
SHIFTS = [{}, {}, {"tue": ((time(8), time(17)),)}, {"mon": ((time(8), time(17)),)}]


def policy(id: str, **kw: Any) -> DispatchPolicy:
    return DispatchPolicy.model_validate({"id": id, **kw})


POLICIES = {
    "P1": policy("emergency", constraints={"same_department": False, "max_open_jobs": 4,
                                           "max_distance_km": 30},
                 weights={"distance": 0.6, "sla_slack": 0.1, "load": 0.1, "skill_level": 0.15,
                          "last_engineer": 0.05, "first_time_fix": 0}),
    "P2": policy("urgent", constraints={"max_open_jobs": 3, "max_distance_km": 20}),
    "P3": policy("standard", constraints={"max_open_jobs": 2, "same_region": False},
                 weights={"distance": 0.3, "sla_slack": 0.2, "load": 0.25, "skill_level": 0.05,
                          "last_engineer": 0.1, "first_time_fix": 0.1}),
    "P4": policy("any", constraints={"max_open_jobs": None, "same_department": False,
                                     "on_shift": False}),
}  # fmt: skip


def policy_for(j: Job) -> DispatchPolicy:
    return POLICIES[j.priority or "P4"]


def engineer(rnd: random.Random, i: int) -> EngineerProfile:
    return EngineerProfile(
        id=f"e{i:02d}",
        name=f"Engineer {i}",
        department=rnd.choice(["facilities", "plumbing"]),
        regions=frozenset(rnd.sample(["r1", "r2", "r3"], rnd.randint(0, 2))),
        skills={s: rnd.randint(1, 5) for s in rnd.sample(SKILLS, rnd.randint(1, 3))},
        certifications={"electrician-licence": date(2027, 1, 1)} if rnd.random() < 0.7 else {},
        lat=None if rnd.random() < 0.1 else LAT + rnd.uniform(-0.15, 0.15),
        lon=LON + rnd.uniform(-0.15, 0.15),
        shifts=rnd.choice(SHIFTS),
        leave=(),
        open_jobs=rnd.randint(0, 3),
        first_time_fix={"hvac": (rnd.randint(0, 4), rnd.randint(4, 8))},
        active=rnd.random() > 0.05,
    )  # fmt: skip


def job(rnd: random.Random, t: int, ids: list[str]) -> Job:
    return Job(
        ticket_id=t,
        skills=tuple((s, rnd.randint(1, 3)) for s in rnd.sample(SKILLS, rnd.choice([0, 1, 1, 2]))),
        queue=rnd.choice(["facilities", "plumbing", None]),
        site=None,
        region=rnd.choice(["r1", "r2", "r3"]),
        lat=LAT + rnd.uniform(-0.15, 0.15),
        lon=LON + rnd.uniform(-0.15, 0.15),
        priority=rnd.choice(["P1", "P2", "P3", "P4"]),
        category=rnd.choice(["hvac", None]),
        sla_due=NOW + timedelta(minutes=rnd.randint(-5, 120)) if rnd.random() < 0.7 else None,
        last_engineer=rnd.choice([None, *ids]),
        exclude=frozenset(rnd.sample(ids, 1)) if ids and rnd.random() < 0.2 else frozenset(),
    )


def instance(
    seed: int, jobs: int, engineers: int, *, loose: bool = False
) -> tuple[list[Job], list[EngineerProfile]]:
    """Random jobs and engineers; ``loose``: most engineers may take most jobs, so that they
    compete (for the tiny instances)."""
    rnd = random.Random(seed)
    people = [engineer(rnd, i) for i in range(engineers)]
    if loose:
        anyone = {"department": "facilities", "regions": frozenset(), "shifts": {}}
        people = [
            replace(e, **anyone, skills={s: rnd.randint(2, 5) for s in SKILLS}) for e in people
        ]
    ids = [e.id for e in people]
    return [job(rnd, t + 1, ids) for t in range(jobs)], people


def solve(fn: Any, jobs: list[Job], people: list[EngineerProfile], **kw: Any) -> BatchResult:
    return fn(jobs, people, policy_for, now=NOW, tz=SH, certified_skills=CERTS, **kw)


def strict(j: Job) -> DispatchPolicy:
    """The job's policy offering to one, nothing relaxed: a batch never relaxes."""
    return policy_for(j).model_copy(update={"relax": (), "mode": "offer", "parallel": 1})


def pair_cost(j: Job, e: EngineerProfile, slot: int) -> float | None:
    """1 - score of ``e`` taking ``j`` as their ``slot``-th new job, by decide(); None if not
    allowed."""
    d = decide(j, [replace(e, open_jobs=e.open_jobs + slot)], strict(j), now=NOW, tz=SH,
               certified_skills=CERTS)  # fmt: skip
    return 1.0 - d.ranked[0].total if d.ranked and d.ranked[0].eligible else None


def brute_force(jobs: list[Job], people: list[EngineerProfile], max_new: int) -> tuple[int, float]:
    """(jobs left unassigned, total cost), the least of every possible assignment."""
    cost = {
        (j, e, s): pair_cost(jobs[j], people[e], s)
        for j in range(len(jobs))
        for e in range(len(people))
        for s in range(max_new)
    }
    best = (len(jobs), 0.0)
    for choice in itertools.product(range(-1, len(people)), repeat=len(jobs)):
        mine: dict[int, list[int]] = defaultdict(list)
        for j, e in enumerate(choice):
            if e >= 0:
                mine[e].append(j)
        if any(len(js) > max_new for js in mine.values()):
            continue
        total = 0.0
        for e, js in mine.items():  # the best order of an engineer's new jobs
            orders = [
                [cost[j, e, s] for s, j in enumerate(order)] for order in itertools.permutations(js)
            ]
            sums = [sum(c) for c in orders if None not in c]  # type: ignore[misc]
            if not sums:
                break
            total += min(sums)
        else:
            best = min(best, (choice.count(-1), total))
    return best


@pytest.mark.parametrize("seed", range(40))
def test_the_optimiser_matches_brute_force_on_tiny_instances(seed: int) -> None:
    rnd = random.Random(seed)
    jobs, people = instance(seed, rnd.randint(2, 4), rnd.randint(1, 3), loose=seed % 4 != 0)
    max_new = rnd.choice([1, 2])
    got = solve(assign_batch, jobs, people, max_new_per_engineer=max_new)
    unassigned, cost = brute_force(jobs, people, max_new)
    assert len(got.unassigned) == unassigned
    assert got.total_cost == pytest.approx(cost, abs=1e-9)
    assert len(got.assignments) + len(got.unassigned) == len(jobs)


def test_the_optimiser_is_never_worse_than_greedy() -> None:
    better = 0
    for seed in range(30):
        jobs, people = instance(1000 + seed, 30, 12)
        opt = solve(assign_batch, jobs, people)
        greedy = solve(greedy_batch, jobs, people)
        # as many jobs assigned, then no more cost
        assert len(opt.unassigned) <= len(greedy.unassigned)
        if len(opt.unassigned) == len(greedy.unassigned):
            assert opt.total_cost <= greedy.total_cost + 1e-9
        better += (len(opt.unassigned), opt.total_cost) < (
            len(greedy.unassigned),
            greedy.total_cost - 1e-9,
        )
    assert better >= 10  # the instances are hard enough for greedy to go wrong


@pytest.mark.parametrize("fn", [assign_batch, greedy_batch])
def test_hard_constraints_and_capacity_are_kept(fn: Any) -> None:
    for seed in range(20):
        jobs, people = instance(2000 + seed, 40, 10)
        by_ticket = {j.ticket_id: j for j in jobs}
        by_id = {e.id: e for e in people}
        got = solve(fn, jobs, people, max_new_per_engineer=3)
        assert sorted([*got.assignments, *got.unassigned]) == sorted(by_ticket)
        taken: dict[str, list[Job]] = defaultdict(list)
        for ticket, who in got.assignments.items():
            taken[who].append(by_ticket[ticket])
        total = 0.0
        for who, js in taken.items():
            e = by_id[who]
            assert len(js) <= 3
            if fn is greedy_batch:  # an engineer's k-th job in greedy's order is their k-th
                js.sort(key=lambda j: (j.priority, j.ticket_id))
            else:  # some order lets each job find the engineer under its limit: this one does
                js.sort(key=lambda j: policy_for(j).constraints.max_open_jobs or 10**9)
            for slot, j in enumerate(js):
                cost = pair_cost(j, e, slot)
                assert cost is not None, (j, e, slot)
                total += cost
        if fn is greedy_batch:
            assert got.total_cost == pytest.approx(total, abs=1e-9)


def test_greedy_ranks_as_decide_does_and_takes_p1_first() -> None:
    for seed in range(10):
        jobs, people = instance(3000 + seed, 25, 8)
        got = solve(greedy_batch, jobs, people, max_new_per_engineer=2)
        taken: dict[str, int] = defaultdict(int)
        order = sorted(jobs, key=lambda j: (j.priority or "P9", j.ticket_id))
        for j in order:
            free = [replace(e, open_jobs=e.open_jobs + taken[e.id]) for e in people
                    if taken[e.id] < 2]  # fmt: skip
            d = decide(j, free, strict(j), now=NOW, tz=SH, certified_skills=CERTS)
            want = d.chosen[0] if d.chosen else None
            assert got.assignments.get(j.ticket_id) == want, j.ticket_id
            if want:
                taken[want] += 1


def base_engineer(id: str, **kw: Any) -> EngineerProfile:
    fields: dict[str, Any] = {
        "id": id, "name": id, "department": "facilities", "regions": frozenset(),
        "skills": {"hvac": 3}, "certifications": {}, "lat": LAT, "lon": LON, "shifts": {},
        "leave": (), "open_jobs": 0, "first_time_fix": {},
    }  # fmt: skip
    return EngineerProfile(**(fields | kw))


def base_job(ticket: int, **kw: Any) -> Job:
    fields: dict[str, Any] = {
        "ticket_id": ticket, "skills": (("hvac", 1),), "queue": None, "site": None,
        "region": None, "lat": LAT, "lon": LON, "priority": "P2", "category": None,
        "sla_due": None, "last_engineer": None,
    }  # fmt: skip
    return Job(**(fields | kw))


def test_greedy_serves_p1_first_where_the_optimiser_serves_the_cheaper() -> None:
    only_one = [base_engineer("solo")]
    near_p2 = base_job(1, priority="P2", lat=LAT + 0.01)
    far_p1 = base_job(2, priority="P1", lat=LAT + 0.2)
    greedy = solve(greedy_batch, [near_p2, far_p1], only_one, max_new_per_engineer=1)
    opt = solve(assign_batch, [near_p2, far_p1], only_one, max_new_per_engineer=1)
    assert greedy.assignments == {2: "solo"} and greedy.unassigned == (1,)
    assert opt.assignments == {1: "solo"} and opt.unassigned == (2,)
    assert opt.total_cost < greedy.total_cost


def test_any_mode_is_assigned_and_inactive_or_unqualified_engineers_take_none() -> None:
    """The caller picks the jobs: a dispatcher assigning the queue's backlog is deciding."""
    queue = policy("desk", mode="queue")
    grab = policy("pool", mode="grab", grab={"claim_limit": 2, "backlog_at_least": 3})
    pick = {1: POLICIES["P4"], 2: queue, 3: grab, 4: queue}
    jobs = [base_job(t) for t in (1, 2, 3)] + [base_job(4, skills=(("lift", 1),))]
    people = [base_engineer("a"), base_engineer("b", active=False, skills={"lift": 5})]
    for fn in (assign_batch, greedy_batch):
        got = fn(jobs, people, lambda j: pick[j.ticket_id], now=NOW, tz=SH, certified_skills={})
        assert got.assignments == {1: "a", 2: "a", 3: "a"} and got.unassigned == (4,)


def test_capacity_replicates_engineers_and_max_new_caps_it() -> None:
    jobs = [base_job(t, priority="P4") for t in range(1, 9)]  # no open-job limit
    people = [base_engineer("a"), base_engineer("b", open_jobs=4, lat=LAT + 0.05)]
    got = solve(assign_batch, jobs, people, max_new_per_engineer=3)
    assert sorted(got.assignments.values()) == ["a"] * 3 + ["b"] * 3
    assert len(got.unassigned) == 2
    got = solve(assign_batch, jobs[:3], people)
    assert list(got.assignments.values()).count("a") >= 2  # nearer and less loaded
    # a limit of 3 open jobs: b, with 2, has one place; a, with none, three
    p2 = [replace(j, priority="P2") for j in jobs]
    got = solve(assign_batch, p2, [base_engineer("a"), base_engineer("b", open_jobs=2)])
    assert sorted(got.assignments.values()) == ["a", "a", "a", "b"]


def test_empty_and_bad_input() -> None:
    for fn in (assign_batch, greedy_batch):
        assert solve(fn, [], []) == BatchResult({}, (), 0.0)
        assert solve(fn, [base_job(1)], []) == BatchResult({}, (1,), 0.0)
        assert solve(fn, [], [base_engineer("a")]) == BatchResult({}, (), 0.0)
        with pytest.raises(ValueError, match="ticket 1 is given twice"):
            solve(fn, [base_job(1), base_job(1)], [base_engineer("a")])
        with pytest.raises(ValueError, match="engineer 'a' is given twice"):
            solve(fn, [base_job(1)], [base_engineer("a"), base_engineer("a")])
        with pytest.raises(ValueError, match="now must be timezone-aware"):
            fn([base_job(1)], [base_engineer("a")], policy_for, now=datetime(2026, 12, 1),
               tz=SH, certified_skills={})  # fmt: skip


def test_scores_match_decide() -> None:
    """Every assigned pair costs 1 - decide()'s total for it (the first new job: slot 0)."""
    jobs, people = instance(4000, 60, 30)
    got = solve(assign_batch, jobs, people, max_new_per_engineer=1)
    by_id = {e.id: e for e in people}
    assert got.assignments
    want = sum(
        pair_cost(j, by_id[got.assignments[j.ticket_id]], 0) or 0.0
        for j in jobs
        if j.ticket_id in got.assignments
    )
    assert got.total_cost == pytest.approx(want, abs=1e-9)
    assert set(OBJECTIVES) == set(POLICIES["P1"].weights.model_dump())
