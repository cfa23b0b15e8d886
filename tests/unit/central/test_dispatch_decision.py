"""central.domain.dispatch: each hard constraint, each objective, relaxing, the tie-break, shifts
across midnight (and a DST change), the modes, the reasons and explanations, and the index
giving the same answers as the full scan."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from central.domain.dispatch import (
    CHECKS,
    Candidate,
    Check,
    Decision,
    EngineerIndex,
    EngineerProfile,
    Job,
    decide,
    decide_indexed,
    explain,
    great_circle_km,
)
from fieldloop.rules.policies import OBJECTIVES, DispatchPolicy

SH = ZoneInfo("Asia/Shanghai")
LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # Tuesday 10:00 in Shanghai
LAT, LON = 31.23, 121.47
KM_PER_DEGREE = 6371.0088 * math.pi / 180  # along a meridian
CERTS = {"electrical": ["electrician-licence"], "gas_safety": ["gas-licence", "gas-safe"]}
ZERO = {o: 0.0 for o in OBJECTIVES}


def north(km: float) -> tuple[float, float]:
    """A position ``km`` great-circle kilometres north of the job."""
    return LAT + km / KM_PER_DEGREE, LON


def eng(id: str, *, km: float | None = 0.0, **kw: Any) -> EngineerProfile:
    lat, lon = (None, None) if km is None else north(km)
    fields: dict[str, Any] = {
        "id": id,
        "name": id.replace("_", " ").title(),
        "department": "facilities",
        "regions": frozenset(),
        "skills": {"hvac": 4},
        "certifications": {},
        "lat": lat,
        "lon": lon,
        "shifts": {},
        "leave": (),
        "open_jobs": 0,
        "first_time_fix": {},
    }
    fields.update(kw)
    return EngineerProfile(**fields)


def job(**kw: Any) -> Job:
    fields: dict[str, Any] = {
        "ticket_id": 1,
        "skills": (("hvac", 3),),
        "queue": "facilities",
        "site": "s1",
        "region": "r1",
        "lat": LAT,
        "lon": LON,
        "priority": "P2",
        "category": "hvac",
        "sla_due": None,
        "last_engineer": None,
    }
    fields.update(kw)
    return Job(**fields)


def policy(**kw: Any) -> DispatchPolicy:
    return DispatchPolicy.model_validate({"id": "test", **kw})


def run(j: Job, people: list[EngineerProfile], p: DispatchPolicy | None = None, **kw: Any):
    kw.setdefault("now", NOW)
    kw.setdefault("tz", SH)
    kw.setdefault("certified_skills", CERTS)
    return decide(j, people, p or policy(), **kw)


def cand(d: Decision, engineer: str) -> Candidate:
    return next(c for c in d.ranked if c.engineer == engineer)


def check(d: Decision, engineer: str, name: str) -> Check:
    return next(c for c in cand(d, engineer).checks if c.name == name)


def only(e: EngineerProfile, p: DispatchPolicy | None = None, j: Job | None = None, **kw: Any):
    """The decision over ``e`` alone, and its one candidate."""
    d = run(j or job(), [e], p, **kw)
    assert [c.engineer for c in d.ranked] == [e.id]
    return d, d.ranked[0]


# --- geometry ---------------------------------------------------------------------------------


def test_great_circle_km() -> None:
    assert great_circle_km(LAT, LON, LAT, LON) == 0
    beijing = (39.9042, 116.4074)
    assert great_circle_km(LAT, LON, *beijing) == pytest.approx(1067, abs=2)
    assert great_circle_km(*beijing, LAT, LON) == pytest.approx(great_circle_km(LAT, LON, *beijing))
    assert great_circle_km(LAT, LON, *north(10)) == pytest.approx(10)
    assert great_circle_km(0, 0, 0, 180) == pytest.approx(math.pi * 6371.0088)


# --- the hard constraints ---------------------------------------------------------------------


def test_every_check_is_listed_in_order_and_passes_with_details() -> None:
    d, c = only(eng("li_wei", km=2, open_jobs=1, regions=frozenset({"r1"}), skills={"hvac": 4}))
    assert [k.name for k in c.checks] == list(CHECKS)
    assert c.eligible and all(k.passed for k in c.checks)
    details = {k.name: k.detail for k in c.checks}
    assert details == {
        "skills": "hvac level 4 (needs 3)",
        "certification": "no certificate needed",
        "same_department": "in facilities",
        "same_region": "covers r1",
        "on_shift": "no shift pattern: always on",
        "max_open_jobs": "1 open job (limit 5)",
        "max_distance_km": "not required",
        "not_declined": "has not declined",
        "active": "active",
    }
    assert d.chosen == ("li_wei",)


def test_skills_at_the_level_are_a_gate_never_listed_but_counted() -> None:
    j = job(skills=(("hvac", 3), ("electrical", 2)))
    people = [
        eng(
            "ok", skills={"hvac": 3, "electrical": 5}, certifications={"electrician-licence": None}
        ),
        eng("low", skills={"hvac": 2, "electrical": 5}),
        eng("missing", skills={"hvac": 5}),
    ]
    d = run(j, people, policy(constraints={"certification": False}))
    assert [c.engineer for c in d.ranked] == ["ok"]
    assert check(d, "ok", "skills").detail == "hvac level 3 (needs 3); electrical level 5 (needs 2)"
    d = run(j, people[1:], policy(constraints={"certification": False}))
    assert d.ranked == () and d.chosen == ()
    assert "skills excluded the most, 2 of 2 lack the skills (技能不足)" in d.reason
    none_needed = cand(run(job(skills=()), [eng("any", skills={})]), "any")
    assert none_needed.checks[0] == Check("skills", True, "no skill needed")
    assert none_needed.scores["skill_level"] == 1.0


def test_certification_unexpired_on_the_local_date() -> None:
    j = job(skills=(("electrical", 2),))
    sparky = eng("sparky", skills={"electrical": 3})
    # 2026-11-30 20:00 UTC is already 1 December in Shanghai
    evening = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)
    cases = [
        ({"electrician-licence": date(2027, 3, 1)}, True,
         "electrical: electrician-licence (valid until 2027-03-01)"),
        ({"electrician-licence": None}, True, "electrical: electrician-licence (no expiry)"),
        ({"electrician-licence": date(2026, 12, 1)}, True,  # good through its expiry date
         "electrical: electrician-licence (valid until 2026-12-01)"),
        ({"electrician-licence": date(2026, 11, 30)}, False,  # still 30 Nov in UTC
         "electrical needs electrician-licence: expired 2026-11-30"),
        ({"forklift": None}, False, "electrical needs electrician-licence: none held"),
    ]  # fmt: skip
    for held, passed, detail in cases:
        d, c = only(replace(sparky, certifications=held), j=j, now=evening)
        assert check(d, "sparky", "certification") == Check("certification", passed, detail)
        assert c.eligible is passed
    gas = replace(
        sparky, skills={"gas_safety": 2}, certifications={"gas-licence": date(2026, 1, 1)}
    )
    d, c = only(gas, j=job(skills=(("gas_safety", 1),)), now=evening)
    assert check(d, "sparky", "certification") == Check(
        "certification", False, "gas_safety needs gas-licence: expired 2026-01-01"
    )
    d, c = only(replace(sparky, skills={"gas_safety": 2}, certifications={"gas-safe": None}),
                j=job(skills=(("gas_safety", 1),)))  # fmt: skip
    assert c.eligible, "one of the listed certificates is enough"
    d, c = only(sparky, policy(constraints={"certification": False}), j=j)
    assert c.eligible and check(d, "sparky", "certification").detail == "not required"


def test_certification_is_never_relaxed() -> None:
    p = policy(relax=["max_distance_km", "same_region", "same_department", "max_open_jobs"])
    d = run(job(skills=(("electrical", 1),)), [eng("uncertified", skills={"electrical": 5})], p)
    assert d.chosen == () and d.relaxed == ()
    assert "certification excluded the most" in d.reason
    assert not check(d, "uncertified", "certification").passed


def test_same_department() -> None:
    d, c = only(eng("a", department="plumbing"))
    assert not c.eligible
    assert check(d, "a", "same_department") == Check(
        "same_department", False, "in plumbing, the job is for facilities"
    )
    d, c = only(eng("a", department=None))
    assert check(d, "a", "same_department").detail == "in no department, the job is for facilities"
    d, c = only(eng("a", department="plumbing"), j=job(queue=None))
    assert c.eligible and check(d, "a", "same_department").detail == "the job has no queue"
    d, c = only(eng("a", department="plumbing"), policy(constraints={"same_department": False}))
    assert c.eligible and check(d, "a", "same_department").detail == "not required"


def test_same_region() -> None:
    d, c = only(eng("a", regions=frozenset({"s1"})))
    assert c.eligible and check(d, "a", "same_region").detail == "covers s1"
    d, c = only(eng("a", regions=frozenset({"r3", "r2"})))
    assert not c.eligible
    assert check(d, "a", "same_region") == Check("same_region", False, "covers r2, r3; not r1 / s1")
    d, c = only(eng("a", regions=frozenset({"r2"})), j=job(region=None, site=None))
    assert c.eligible and check(d, "a", "same_region").detail == "the job has no site or region"
    d, c = only(eng("a", regions=frozenset({"r2"})), policy(constraints={"same_region": False}))
    assert c.eligible and check(d, "a", "same_region").detail == "not required"


def test_on_shift_and_leave() -> None:
    day = {d: ((time(8, 0), time(17, 0)),) for d in ("mon", "tue", "wed", "thu", "fri")}
    d, c = only(eng("a", shifts=day))  # Tuesday 10:00 in Shanghai
    assert c.eligible
    assert check(d, "a", "on_shift").detail == "on shift 08:00-17:00, now 10:00 Tue (Asia/Shanghai)"
    d, c = only(eng("a", shifts={"mon": day["mon"]}))
    assert check(d, "a", "on_shift") == Check(
        "on_shift", False, "no shift at 10:00 Tue (Asia/Shanghai)"
    )
    leave = ((NOW - timedelta(days=1), NOW + timedelta(hours=3)),)
    d, c = only(eng("a", leave=leave))
    assert check(d, "a", "on_shift") == Check(
        "on_shift", False, "on leave (请假) until 2026-12-01 05:00 UTC"
    )
    # [start, end): back at work the moment the leave ends; not on leave before it starts
    assert only(eng("a", leave=((NOW - timedelta(days=1), NOW),)))[1].eligible
    assert only(eng("a", leave=((NOW + timedelta(minutes=1), NOW + timedelta(days=1)),)))[
        1
    ].eligible
    d, c = only(eng("a", leave=leave), policy(constraints={"on_shift": False}))
    assert c.eligible and check(d, "a", "on_shift").detail == "not required"


NIGHT = {"mon": ((time(22, 0), time(0, 0)),), "tue": ((time(0, 0), time(6, 0)),)}


@pytest.mark.parametrize(
    ("local", "on"),
    [("2026-11-30 21:59", False), ("2026-11-30 22:00", True), ("2026-11-30 23:59", True),
     ("2026-12-01 00:00", True), ("2026-12-01 05:59", True), ("2026-12-01 06:00", False),
     ("2026-12-01 23:00", False), ("2026-12-07 23:00", True)],
)  # fmt: skip
def test_a_night_shift_across_midnight_in_shanghai(local: str, on: bool) -> None:
    now = datetime.fromisoformat(local).replace(tzinfo=SH).astimezone(UTC)
    for shifts in (NIGHT, {"mon": ((time(22, 0), time(6, 0)),)}):  # split, or written overnight
        d, _ = only(eng("night", shifts=shifts), now=now)
        assert check(d, "night", "on_shift").passed is on, (local, shifts)


@pytest.mark.parametrize(
    ("utc", "on"),
    [
        ("2026-03-22 05:30", True),  # winter: 05:30 GMT, within Sunday's 00:00-06:00
        ("2026-03-29 00:30", True),  # 00:30 GMT, just before the clocks go forward at 01:00 UTC
        ("2026-03-29 04:30", True),  # 05:30 BST
        ("2026-03-29 05:30", False),  # 06:30 BST: the shift is over, though 05:30 UTC
        ("2026-03-28 21:30", False),  # Saturday 21:30 GMT
        ("2026-10-25 00:30", True),  # 01:30 BST, before the clocks go back
        ("2026-10-25 01:30", True),  # 01:30 GMT, the second time round
        ("2026-10-25 05:59", True),  # 05:59 GMT
        ("2026-10-25 06:00", False),
        ("2026-10-24 20:30", False),  # 21:30 BST on Saturday
        ("2026-10-24 21:30", True),  # 22:30 BST on Saturday
    ],
)
def test_a_night_shift_across_midnight_and_a_dst_change_in_london(utc: str, on: bool) -> None:
    shifts = {"sat": ((time(22, 0), time(0, 0)),), "sun": ((time(0, 0), time(6, 0)),)}
    now = datetime.fromisoformat(utc).replace(tzinfo=UTC)
    d, _ = only(eng("night", shifts=shifts), now=now, tz=LONDON)
    assert check(d, "night", "on_shift").passed is on


def test_max_open_jobs() -> None:
    d, c = only(eng("a", open_jobs=4))
    assert check(d, "a", "max_open_jobs") == Check("max_open_jobs", True, "4 open jobs (limit 5)")
    d, c = only(eng("a", open_jobs=5))
    assert check(d, "a", "max_open_jobs") == Check(
        "max_open_jobs", False, "5 open jobs, the limit is 5"
    )
    d, c = only(eng("a", open_jobs=50), policy(constraints={"max_open_jobs": None}))
    assert c.eligible and check(d, "a", "max_open_jobs").detail == "not required"


def test_max_distance_km_by_road() -> None:
    p = policy(constraints={"max_distance_km": 10}, road_factor=1.3)
    d, c = only(eng("near", km=5), p)
    assert c.distance_km == pytest.approx(6.5)
    assert check(d, "near", "max_distance_km") == Check(
        "max_distance_km", True, "6.5 km by road (limit 10 km)"
    )
    d, c = only(eng("far", km=10), p)
    assert check(d, "far", "max_distance_km") == Check(
        "max_distance_km", False, "13.0 km by road, over the 10 km limit"
    )
    d, c = only(eng("nowhere", km=None), p)
    assert c.eligible and c.distance_km is None and c.eta_minutes is None
    assert check(d, "nowhere", "max_distance_km") == Check(
        "max_distance_km", True, "distance unknown"
    )
    d, c = only(eng("far", km=10), p, j=job(lat=None, lon=None))
    assert c.eligible and check(d, "far", "max_distance_km").detail == "distance unknown"


def test_not_declined_is_never_relaxed() -> None:
    p = policy(relax=["max_distance_km", "same_region", "same_department", "max_open_jobs"])
    d = run(job(exclude=frozenset({"a"})), [eng("a")], p)
    assert d.chosen == () and d.relaxed == ()
    assert check(d, "a", "not_declined") == Check(
        "not_declined", False, "declined or let an offer lapse"
    )
    assert "not_declined excluded the most" in d.reason


def test_inactive_engineers_are_counted_not_ranked() -> None:
    d = run(job(), [eng("gone", active=False), eng("here", open_jobs=9)])
    assert [c.engineer for c in d.ranked] == ["here"]
    d = run(job(), [eng("gone", active=False), eng("gone_too", active=False)])
    assert d.ranked == ()
    assert "active excluded the most, 2 of 2 are inactive (已停用)" in d.reason


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        run(job(), [eng("a")], now=datetime(2026, 12, 1, 10, 0))
    with pytest.raises(ValueError, match="sla_due must be timezone-aware"):
        run(job(sla_due=datetime(2026, 12, 1, 12, 0)), [eng("a")])
    with pytest.raises(ValueError, match="'a' is listed twice"):
        run(job(), [eng("a"), eng("a")])


# --- the objectives ---------------------------------------------------------------------------


def scores(e: EngineerProfile, p: DispatchPolicy | None = None, **jobkw: Any) -> dict[str, float]:
    return dict(only(e, p or policy(constraints={"same_region": False}), j=job(**jobkw))[1].scores)


def test_distance_score() -> None:
    assert scores(eng("a", km=10))["distance"] == pytest.approx(1 - 13 / 50)  # no limit: 50 km
    limited = policy(constraints={"max_distance_km": 30})
    assert scores(eng("a", km=10), limited)["distance"] == pytest.approx(1 - 13 / 30)
    assert scores(eng("a", km=100))["distance"] == 0.0
    assert scores(eng("a", km=0))["distance"] == 1.0
    assert scores(eng("a", km=None))["distance"] == 0.5


def test_sla_slack_score() -> None:
    e = eng("a", km=10)  # 13 km by road at 30 km/h: 26 minutes
    assert scores(e)["sla_slack"] == 1.0  # no SLA
    due = NOW + timedelta(minutes=60)
    assert scores(e, sla_due=due)["sla_slack"] == pytest.approx((60 - 26) / 60)
    assert scores(e, sla_due=NOW + timedelta(minutes=20))["sla_slack"] == 0.0  # arrives late
    assert scores(e, sla_due=NOW - timedelta(minutes=1))["sla_slack"] == 0.0  # overdue already
    assert scores(e, sla_due=NOW)["sla_slack"] == 0.0
    # an unknown distance counts as half the 50 km reach, as the distance score does: 50 min
    assert scores(eng("b", km=None), sla_due=due)["sla_slack"] == pytest.approx(10 / 60)
    fast = policy(constraints={"same_region": False}, speed_kmh=60)
    assert scores(e, fast, sla_due=due)["sla_slack"] == pytest.approx((60 - 13) / 60)


def test_load_skill_last_engineer_and_first_time_fix_scores() -> None:
    e = eng("a", open_jobs=2, skills={"hvac": 4, "electrical": 2}, first_time_fix={"hvac": (9, 10)})
    s = scores(e, policy(constraints={"same_region": False, "certification": False}),
               skills=(("hvac", 3), ("electrical", 1)), last_engineer="a")  # fmt: skip
    assert s["load"] == pytest.approx(1 - 2 / 5)
    assert s["skill_level"] == pytest.approx((4 / 5 + 2 / 5) / 2)
    assert s["last_engineer"] == 1.0
    assert s["first_time_fix"] == pytest.approx(10 / 12)
    unlimited = policy(constraints={"same_region": False, "max_open_jobs": None})
    assert scores(e, unlimited)["load"] == pytest.approx(1 - 2 / 10)
    assert scores(e, last_engineer="b")["last_engineer"] == 0.0
    assert scores(e, category="plumbing")["first_time_fix"] == 0.5  # no history: Laplace
    assert scores(e, category=None)["first_time_fix"] == 0.5


def test_total_is_the_weighted_mean() -> None:
    w = {"distance": 3, "sla_slack": 0, "load": 1, "skill_level": 1, "last_engineer": 0.5,
         "first_time_fix": 0.5}  # fmt: skip
    p = policy(weights=w)
    e = eng("a", km=4, open_jobs=3, first_time_fix={"hvac": (1, 4)})
    d, c = only(e, p, j=job(last_engineer="a"))
    want = sum(w[o] * c.scores[o] for o in OBJECTIVES) / sum(w.values())
    assert c.total == pytest.approx(want)
    assert 0 <= c.total <= 1
    assert set(c.scores) == set(OBJECTIVES)
    assert d.weights == {o: float(w[o]) for o in OBJECTIVES}


# --- relaxing ---------------------------------------------------------------------------------


def test_relaxing_drops_constraints_cumulatively_in_the_listed_order() -> None:
    p = policy(
        constraints={"max_distance_km": 5, "max_open_jobs": 3},
        relax=["max_distance_km", "same_region", "max_open_jobs"],
    )
    people = [
        eng("far_out", km=8, regions=frozenset({"r9"})),  # eligible once both are dropped
        eng("busy_out", km=1, regions=frozenset({"r9"}), open_jobs=3),  # needs all three
        eng("declined", km=1),
    ]
    d = run(job(exclude=frozenset({"declined"})), people, p)
    assert d.relaxed == ("max_distance_km", "same_region")
    assert d.chosen == ("far_out",)
    assert check(d, "far_out", "max_distance_km") == Check(
        "max_distance_km", True, "relaxed (放宽): 10.4 km by road, over the 5 km limit"
    )
    assert check(d, "far_out", "same_region").detail == "relaxed (放宽): covers r9; not r1 / s1"
    assert check(d, "busy_out", "max_open_jobs").passed is False  # not relaxed: not reached
    assert "after relaxing the distance limit (最远距离) and the region (同片区)" in d.reason
    # one unrelaxed failure each: then by score (busy_out has three open jobs)
    assert [c.engineer for c in d.ranked] == ["far_out", "declined", "busy_out"]
    assert [c.eligible for c in d.ranked] == [True, False, False]


def test_relaxing_skips_what_is_off_or_fails_nobody_and_stops_when_someone_qualifies() -> None:
    p = policy(relax=["max_distance_km", "same_department", "same_region"])  # no distance limit
    d = run(job(), [eng("out", regions=frozenset({"r9"}))], p)
    assert d.relaxed == ("same_region",)  # distance is not set; nobody is in another department
    d = run(job(), [eng("out", regions=frozenset({"r9"})), eng("in")], p)
    assert d.relaxed == () and d.chosen == ("in",)
    assert [c.eligible for c in d.ranked] == [True, False]


def test_nobody_even_after_relaxing_names_the_constraint_that_excluded_most() -> None:
    p = policy(constraints={"max_distance_km": 5}, relax=["max_distance_km"])
    people = [eng(f"off{i}", km=9, shifts={"sun": ((time(8), time(9)),)}) for i in range(3)]
    people += [eng("other", department="plumbing"), eng("unskilled", skills={"lift": 5})]
    d = run(job(), people, p)
    assert d.chosen == () and d.relaxed == ("max_distance_km",)
    assert d.reason == (
        "Nobody qualifies (无人符合) even after relaxing the distance limit (最远距离): "
        "on_shift excluded the most, 3 of 5 are not on shift (不在班); also 1 lacks the skills "
        "(技能不足), 1 is in another department (非本部门)."
    )
    assert [c.eligible for c in d.ranked] == [False] * 4
    assert run(job(), [], p).reason == (
        "Nobody qualifies (无人符合): there are no engineers to choose from."
    )


# --- ranking ----------------------------------------------------------------------------------


def test_the_tie_break_is_distance_then_open_jobs_then_id_whatever_the_input_order() -> None:
    only_last = policy(
        weights={**ZERO, "last_engineer": 1}, constraints={"max_open_jobs": None}, parallel=10
    )
    people = [
        eng("d_unknown", km=None),
        eng("c_far", km=7),
        eng("b_near_busy", km=2, open_jobs=3),
        eng("a_near_busy", km=2, open_jobs=3),
        eng("z_near_idle", km=2, open_jobs=1),
        eng("y_nearest", km=1, open_jobs=9),
    ]
    want = ("y_nearest", "z_near_idle", "a_near_busy", "b_near_busy", "c_far", "d_unknown")
    rnd = random.Random(8)
    first = None
    for _ in range(20):
        rnd.shuffle(people)
        d = run(job(), people, only_last)
        assert d.chosen == want
        first = first or d
        assert d == first


def test_float_noise_never_reorders() -> None:
    """Totals equal but for the last bits are a tie: the tie-break decides, not the noise."""
    w = {**ZERO, "distance": 0.1, "load": 0.2, "skill_level": 0.7}
    p = policy(weights=w, constraints={"max_open_jobs": 10, "max_distance_km": 10})
    # a: distance 0.7, load 0.4, skill 0.6; b: distance 0.5 (unknown), load 0.5, skill 0.6
    a = eng("a", km=3 / 1.3, open_jobs=6, skills={"hvac": 3})
    b = eng("b", km=None, open_jobs=5, skills={"hvac": 3})
    d = run(job(), [b, a], p)
    ta, tb = cand(d, "a").total, cand(d, "b").total
    assert ta == pytest.approx(tb, abs=1e-12)
    assert tb > ta  # by the noise alone: b would come first without the rounding
    assert [c.engineer for c in d.ranked] == ["a", "b"]  # known distance first, on the tie


# --- modes ------------------------------------------------------------------------------------


def team(n: int) -> list[EngineerProfile]:
    return [eng(f"e{i}", km=i + 1) for i in range(n)]


def test_parallel_offers_the_best_three_at_once() -> None:
    d = run(job(), team(5), policy(parallel=3))
    assert d.mode == "offer" and d.chosen == ("e0", "e1", "e2")
    assert [c.engineer for c in d.ranked] == ["e0", "e1", "e2", "e3", "e4"]
    assert d.reason == (
        "Offered to 3 at once, the first to accept wins (并行派单): E0, E1 and E2, "
        "the best of 5 eligible engineers."
    )
    d = run(job(), team(2), policy(parallel=3))
    assert d.chosen == ("e0", "e1")
    assert d.reason.startswith("Offered at once to all 2 eligible engineers")
    d = run(job(), team(3), policy())
    assert d.chosen == ("e0",)
    assert d.reason.startswith("Offered to E0 (score ")
    assert d.reason.endswith("the best of 3 eligible engineers.")


def test_queue_mode_sends_it_to_the_dispatcher_with_the_ranking_as_advice() -> None:
    d = run(job(), team(3), policy(id="desk", mode="queue", parallel=3))
    assert d.mode == "queue" and d.chosen == ()
    assert [c.engineer for c in d.ranked] == ["e0", "e1", "e2"]
    assert d.reason == (
        "Policy desk leaves the choice to a dispatcher (调度员派单); as advice, E0 ranks first "
        "of the 3 eligible engineers."
    )


def test_grab_mode_opens_it_to_the_eligible_engineers() -> None:
    p = policy(mode="grab", grab={"backlog_at_least": 20})
    d = run(job(), [*team(2), eng("busy", open_jobs=5)], p)
    assert d.mode == "grab" and d.chosen == ()
    assert [c.engineer for c in d.ranked if c.eligible] == ["e0", "e1"]
    assert d.reason == "Open for grabbing (抢单) by the 2 eligible engineers; E0 ranks first."


def test_at_most_five_ineligible_ones_fewest_failures_first() -> None:
    p = policy(constraints={"max_distance_km": 5})
    people = [eng("ok")]
    people += [eng(f"far{i}", km=6 + i) for i in range(4)]  # one failure each
    people += [eng(f"far_busy{i}", km=6, open_jobs=5) for i in range(3)]  # two failures
    d = run(job(), people, p)
    assert [c.engineer for c in d.ranked] == ["ok", "far0", "far1", "far2", "far3", "far_busy0"]


# --- explanations -----------------------------------------------------------------------------


def test_explain_in_plain_words() -> None:
    p = policy(constraints={"max_distance_km": 30})
    li = eng("li_wei", km=2.3 / 1.3, open_jobs=1, first_time_fix={"hvac": (9, 10)})
    zhang = eng("zhang_san", km=6 / 1.3, open_jobs=3, skills={"hvac": 3})
    wu = eng("wu_fang", shifts={"sun": ((time(8), time(17)),)})
    chen = eng("chen_jie", department="plumbing", leave=((NOW, NOW + timedelta(days=1)),))
    d = run(job(), [zhang, wu, li, chen], p)
    lines = explain(d)
    assert lines[0] == d.reason
    assert lines[1] == (
        "Li Wei ranked first (offered 已派): 2.3 km away (about 5 min), 1 open job, hvac level 4, "
        f"fixed first time 9 of 10 hvac jobs (score {cand(d, 'li_wei').total:.2f})."
    )
    assert lines[2].startswith("Zhang San ranked 2nd (score ")
    assert "6.0 km away (about 12 min) against 2.3 km" in lines[2]
    assert "3 open jobs against 1" in lines[2]
    assert "hvac level 3 against 4" in lines[2]
    assert lines[3] == "Wu Fang: not on shift (不在班) — no shift at 10:00 Tue (Asia/Shanghai)."
    assert lines[4] == (
        "Chen Jie: another department (非本部门) — in plumbing, the job is for facilities; "
        "not on shift (不在班) — on leave (请假) until 2026-12-02 02:00 UTC."
    )


def test_explain_relaxed_ties_and_nobody() -> None:
    p = policy(constraints={"max_distance_km": 1}, relax=["max_distance_km"])
    d = run(job(), [eng("b", km=3), eng("a", km=3)], p)
    lines = explain(d)
    assert (
        lines[1]
        == "Relaxed to find anyone (放宽条件): the distance limit (最远距离) (max_distance_km)."
    )
    assert lines[3] == "B ranked 2nd: the same score as A, placed after by username."
    d = run(job(), [eng("a", open_jobs=5)])
    assert explain(d) == [
        d.reason,
        "A: too many open jobs (手上工单已满) — 5 open jobs, the limit is 5.",
    ]
    assert "max_open_jobs excluded the most, 1 of 1 has too many open jobs" in d.reason


def test_explain_keeps_to_a_few_runners_up() -> None:
    d = run(job(), team(12), policy())
    lines = explain(d, runners_up=3)
    assert [line.split(" ranked")[0] for line in lines[1:5]] == ["E0", "E1", "E2", "E3"]
    assert lines[5] == "... and 8 more eligible engineers, ranked lower."


# --- the index --------------------------------------------------------------------------------


def random_engineer(rnd: random.Random, i: int) -> EngineerProfile:
    skills = {s: rnd.randint(1, 5) for s in rnd.sample(SKILLS, rnd.randint(0, 4))}
    shifts = rnd.choice(
        [{}, {"tue": ((time(8), time(17)),)}, NIGHT, {"wed": ((time(9), time(0)),)}]
    )
    return EngineerProfile(
        id=f"e{i:03d}",
        name=f"Engineer {i}",
        department=rnd.choice(["facilities", "plumbing", None]),
        regions=frozenset(rnd.sample(["r1", "r2", "s1", "s2"], rnd.randint(0, 2))),
        skills=skills,
        certifications={
            c: rnd.choice([None, date(2026, 11, 1), date(2027, 1, 1)])
            for c in rnd.sample(sorted({n for v in CERTS.values() for n in v}), rnd.randint(0, 2))
        },
        lat=None if rnd.random() < 0.1 else LAT + rnd.uniform(-0.2, 0.2),
        lon=LON + rnd.uniform(-0.2, 0.2),
        shifts=shifts,
        leave=((NOW - timedelta(hours=1), NOW + timedelta(hours=1)),) if rnd.random() < 0.1 else (),
        open_jobs=rnd.randint(0, 7),
        first_time_fix={"hvac": (rnd.randint(0, 5), rnd.randint(5, 9))} if rnd.random() < 0.5
        else {},
        active=rnd.random() > 0.1,
    )  # fmt: skip


SKILLS = ["hvac", "electrical", "plumbing", "gas_safety", "lift"]


def random_job(rnd: random.Random, t: int, ids: list[str]) -> Job:
    return Job(
        ticket_id=t,
        skills=tuple((s, rnd.randint(1, 4)) for s in rnd.sample(SKILLS, rnd.choice([0, 1, 1, 2]))),
        queue=rnd.choice(["facilities", "plumbing", None]),
        site=rnd.choice(["s1", "s2", None]),
        region=rnd.choice(["r1", "r2", None]),
        lat=LAT + rnd.uniform(-0.1, 0.1),
        lon=None if rnd.random() < 0.05 else LON + rnd.uniform(-0.1, 0.1),
        priority=rnd.choice(["P1", "P2", "P3", None]),
        category=rnd.choice(["hvac", None]),
        sla_due=rnd.choice([None, NOW + timedelta(minutes=rnd.randint(-10, 240))]),
        last_engineer=rnd.choice([None, *ids[:5]]),
        exclude=frozenset(rnd.sample(ids, min(len(ids), rnd.randint(0, 3)))),
    )


def random_policy(rnd: random.Random) -> DispatchPolicy:
    mode = rnd.choice(["offer", "offer", "grab", "queue"])
    return policy(
        mode=mode,
        parallel=rnd.randint(1, 3),
        grab={"claim_limit": 2, "backlog_at_least": 5} if mode == "grab" else None,
        constraints={
            "certification": rnd.random() < 0.8,
            "same_department": rnd.random() < 0.5,
            "same_region": rnd.random() < 0.5,
            "on_shift": rnd.random() < 0.7,
            "max_open_jobs": rnd.choice([None, 3, 5]),
            "max_distance_km": rnd.choice([None, 5, 15]),
        },
        weights={o: rnd.choice([0, 0.1, 0.5, 1]) for o in OBJECTIVES} | {"distance": 0.3},
        relax=rnd.sample(["max_distance_km", "same_region", "same_department", "max_open_jobs"],
                         rnd.randint(0, 4)),
    )  # fmt: skip


def test_decide_indexed_matches_the_full_scan_on_random_populations() -> None:
    rnd = random.Random(20261201)
    offered = nobody = 0
    joined = 1000
    for _ in range(40):
        people = [random_engineer(rnd, i) for i in range(rnd.randint(0, 60))]
        index = EngineerIndex(people)
        # the index follows changes: loads, skills, leaving, joining
        for _ in range(10):
            if not people:
                break
            k = rnd.randrange(len(people))
            change = rnd.random()
            if change < 0.5:
                people[k] = replace(people[k], open_jobs=rnd.randint(0, 7))
                index.upsert(people[k])
            elif change < 0.7:
                people[k] = replace(people[k], skills={"hvac": rnd.randint(1, 5)}, active=True)
                index.upsert(people[k])
            elif change < 0.85:
                index.remove(people.pop(k).id)
            else:
                joined += 1
                people.append(random_engineer(rnd, joined))
                index.upsert(people[-1])
        ids = [e.id for e in people]
        assert len(index) == len(people)
        for t in range(15):
            j, p = random_job(rnd, t, ids), random_policy(rnd)
            now = NOW + timedelta(hours=rnd.randint(-30, 30))
            full = decide(j, people, p, now=now, tz=SH, certified_skills=CERTS)
            fast = decide_indexed(j, index, p, now=now, tz=SH, certified_skills=CERTS)
            assert fast == full
            offered += bool(full.chosen)
            nobody += not any(c.eligible for c in full.ranked)
    assert offered > 50 and nobody > 50  # both kinds of answer were compared


def test_the_index_candidates_are_the_active_engineers_with_the_skills() -> None:
    people = [
        eng("a", skills={"hvac": 5, "lift": 1}),
        eng("b", skills={"hvac": 2, "lift": 4}),
        eng("c", skills={"lift": 5}, active=False),
        eng("d", skills={}),
    ]
    index = EngineerIndex(people)
    ids = lambda j: [e.id for e in index.candidates(j)]  # noqa: E731
    assert ids(job(skills=(("hvac", 3),))) == ["a"]
    assert ids(job(skills=(("lift", 1),))) == ["a", "b"]
    assert ids(job(skills=(("hvac", 2), ("lift", 2)))) == ["b"]
    assert ids(job(skills=(("welding", 1),))) == []
    assert ids(job(skills=())) == ["a", "b", "d"]
    index.upsert(replace(people[2], active=True))
    index.upsert(replace(people[0], skills={"hvac": 1}))
    assert ids(job(skills=(("lift", 1),))) == ["b", "c"]
    assert ids(job(skills=(("hvac", 1),))) == ["a", "b"]
    index.remove("b")
    index.remove("nobody")
    assert ids(job(skills=(("lift", 1),))) == ["c"]
    assert len(index) == 3 and "b" not in index and index.inactive == 0
