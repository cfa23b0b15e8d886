"""central.domain.sla_clock: the clocks of one ticket from its log alone, with the shipped
``rules/sla.yaml`` policies: each target and stage, pauses the policy does and does not pause
on, reopened work adding up, cancel and auto-resolve, late and out-of-order entries, shares
per holder and department, warnings and escalations; properties checked by hypothesis (the
same entries in any order give the same view; no clock runs backwards)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from central.domain.business_time import BusinessCalendar
from central.domain.sla_clock import (
    Clock,
    LogEntry,
    Pause,
    Share,
    SlaView,
    compute,
    thresholds,
)
from fieldloop.rules.files import RuleSet, load_ruleset
from fieldloop.rules.policies import SlaPolicy

REPO = Path(__file__).resolve().parents[3]
RULES: RuleSet = load_ruleset(REPO / "rules" / "sla.yaml")
SHANGHAI = ZoneInfo("Asia/Shanghai")
T = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # Tuesday 09:00 in Shanghai
MIN = 60.0


def policy(pid: str) -> tuple[SlaPolicy, BusinessCalendar]:
    p: SlaPolicy = RULES.policies[pid]
    return p, BusinessCalendar(RULES.calendars[p.calendar], RULES.days_off[p.calendar])


#: the state each action leads to, as the lifecycle moves the ticket
TO = {"created": "new", "dispatch": "dispatched", "accept": "accepted", "decline": "new",
      "depart": "en_route", "arrive": "on_site", "start": "in_progress",
      "wait_parts": "waiting_parts", "wait_customer": "waiting_customer",
      "resume": "in_progress", "complete": "completed",
      "request_verification": "pending_verification", "confirm": "verified",
      "reject": "reopened", "close": "closed", "cancel": "cancelled", "reopen": "reopened",
      "transfer": "new", "auto_resolve": "closed"}  # fmt: skip


class Log:
    """A ticket's log written in minutes after ``start``, seq in the order written."""

    def __init__(self, start: datetime = T) -> None:
        self.start = start
        self.entries: list[LogEntry] = []

    def __call__(self, minutes: float, action: str, actor: str = "eng1", **data: Any) -> Log:
        self.entries.append(
            LogEntry(
                at=self.start + timedelta(minutes=minutes),
                seq=len(self.entries) + 1,
                action=action,
                from_state=None,
                to_state=TO.get(action),
                actor=actor,
                data=data,
            )
        )
        return self

    def at(self, minutes: float) -> datetime:
        return self.start + timedelta(minutes=minutes)


def clocks(view: SlaView) -> dict[str, Clock]:
    return {c.name: c for c in view.clocks}


def elapsed_min(view: SlaView) -> dict[str, float]:
    return {c.name: c.elapsed / MIN for c in view.clocks}


def full_job() -> Log:
    log = Log()
    log(0, "created", "system:ingest", department="hvac")(0, "classified", "system:rules")
    log(5, "dispatch", "disp", engineer="eng1")(12, "accept")(15, "depart")(100, "arrive")
    log(105, "start")(150, "wait_parts", parts=["valve"])(210, "resume")
    log(240, "wait_customer", reason="tenant out")(270, "resume")(330, "complete", report="ok")
    return log


def finished_job() -> Log:
    log = full_job()
    return log(331, "request_verification")(400, "confirm", "customer")(401, "close", "disp")


# --- a whole job --------------------------------------------------------------------------------


def test_a_job_from_report_to_close_on_the_24x7_calendar() -> None:
    p, cal = policy("p2-urgent")  # pauses on waiting_parts only
    view = compute(finished_job().entries, p, cal, now=T + timedelta(days=2))
    assert elapsed_min(view) == {
        "response": 12, "arrival": 100, "resolution": 330 - 60,
        "stage.classification": 0, "stage.dispatch": 5, "stage.acceptance": 7,
        "stage.arrival": 88, "stage.repair": 230 - 60, "stage.verification": 70,
    }  # fmt: skip
    c = clocks(view)
    assert all(x.status == "met" and not x.breached and x.due_at is None for x in view.clocks)
    assert c["response"].started_at == T and c["response"].stopped_at == T + timedelta(minutes=12)
    assert c["response"].target == 30 * MIN and c["response"].used == pytest.approx(12 / 30)
    assert c["stage.verification"].stopped_at == T + timedelta(minutes=400)
    assert view.worst == "repair"  # 170 of 240 minutes
    assert view.pauses == (
        Pause("waiting_parts", T + timedelta(minutes=150), T + timedelta(minutes=210)),
        Pause("waiting_customer", T + timedelta(minutes=240), T + timedelta(minutes=270)),
    )


def test_a_stage_without_a_budget_has_no_clock() -> None:
    p, cal = policy("p4-planned")  # classification, dispatch and verification only
    view = compute(finished_job().entries, p, cal, now=T + timedelta(days=2))
    assert [c.name for c in view.clocks] == [
        "response", "resolution", "stage.classification", "stage.dispatch",
        "stage.verification",
    ]  # fmt: skip
    # the shares still say where every stage's time went
    assert {s.stage for s in view.shares} == {
        "dispatch",
        "acceptance",
        "arrival",
        "repair",
        "verification",
    }


# --- pauses -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pid", "resolution", "repair"),
    [
        ("p1-emergency", 330, 230),  # never pauses
        ("p2-urgent", 270, 170),  # waiting for parts only
        ("key-account", 270, None),  # waiting for parts only; no repair budget
        ("p3-standard", 240, 140),  # both (08:00-20:00 Shanghai: all of it in hours)
    ],
)
def test_a_pause_counts_only_when_the_policy_pauses_on_it(
    pid: str, resolution: float, repair: float | None
) -> None:
    p, cal = policy(pid)
    view = compute(full_job().entries, p, cal, now=T + timedelta(days=1))
    got = elapsed_min(view)
    assert got["resolution"] == resolution
    assert got.get("stage.repair") == repair
    assert len(view.pauses) == 2  # every pause is on record, whatever the policy


def test_an_open_pause_holds_the_clock_until_the_work_resumes() -> None:
    log = Log()(0, "created", "system")(5, "dispatch", "disp", engineer="eng1")(10, "accept")
    log(20, "arrive")(25, "start")(150, "wait_parts", parts=["pump"])
    p, cal = policy("p2-urgent")
    view = compute(log.entries, p, cal, now=log.at(200))
    res = clocks(view)["resolution"]
    assert (res.status, res.elapsed, res.due_at, res.stopped_at) == (
        "paused",
        150 * MIN,
        None,
        None,
    )
    assert view.pauses == (Pause("waiting_parts", log.at(150), None),)
    # resumed: the breach moves back by the hour of the pause
    log(210, "resume")
    res = clocks(compute(log.entries, p, cal, now=log.at(220)))["resolution"]
    assert (res.status, res.elapsed) == ("running", 160 * MIN)
    assert res.due_at == T + timedelta(hours=8, minutes=60)
    # p1-emergency never pauses: the same wait runs the clock
    p1, cal1 = policy("p1-emergency")
    res = clocks(compute(log.entries[:-1], p1, cal1, now=log.at(200)))["resolution"]
    assert (res.status, res.elapsed, res.due_at) == ("running", 200 * MIN, T + timedelta(hours=4))


def test_waiting_for_the_customer_pauses_only_where_the_policy_says() -> None:
    log = Log()(0, "created", "system")(5, "accept")(20, "arrive")(30, "wait_customer", reason="x")
    for pid, status in (("p3-standard", "paused"), ("p2-urgent", "running")):
        p, cal = policy(pid)
        res = clocks(compute(log.entries, p, cal, now=log.at(90)))["resolution"]
        assert res.status == status, pid


# --- reopened work, cancel, auto-resolve ------------------------------------------------------


def test_a_rejected_fix_runs_resolution_again_and_the_time_adds_up() -> None:
    log = full_job()(331, "request_verification")(400, "reject", "customer", reason="still leaks")
    log(410, "resume")(460, "complete", report="fixed")(461, "request_verification")
    log(500, "confirm", "customer")(501, "close", "disp")
    p, cal = policy("p2-urgent")
    view = compute(log.entries, p, cal, now=log.at(600))
    c = clocks(view)
    assert c["resolution"].elapsed == (270 + 60) * MIN  # 0-330 less the parts, then 400-460
    assert (c["resolution"].started_at, c["resolution"].stopped_at) == (T, log.at(460))
    assert c["stage.repair"].elapsed == (170 + 60) * MIN  # rework is repair
    assert c["stage.verification"].elapsed == (70 + 40) * MIN
    assert view.runs["resolution"] == (
        (T, log.at(150)), (log.at(210), log.at(330)), (log.at(400), log.at(460)),
    )  # fmt: skip
    # in between, while the customer looked at the first fix, resolution was met
    between = clocks(compute(log.entries, p, cal, now=log.at(350)))["resolution"]
    assert (between.status, between.elapsed) == ("met", 270 * MIN)


def test_a_closed_ticket_reopened_runs_resolution_from_the_reopen() -> None:
    log = finished_job()(1000, "reopen", "customer", reason="leaks again")
    p, cal = policy("p2-urgent")
    res = clocks(compute(log.entries, p, cal, now=log.at(1100)))["resolution"]
    assert (res.status, res.elapsed, res.stopped_at) == ("running", 370 * MIN, None)
    assert res.due_at == log.at(1100 + 110)  # 480 min in all


def test_cancel_stops_every_running_clock_met_or_breached() -> None:
    log = Log()(0, "created", "system")(5, "dispatch", "disp", engineer="eng1")
    log(50, "cancel", "disp", reason="duplicate")
    p, cal = policy("p2-urgent")
    view = compute(log.entries, p, cal, now=log.at(500))
    status = {c.name: (c.status, c.stopped_at) for c in view.clocks}
    assert status == {
        "response": ("breached", log.at(50)),  # 50 of 30 min
        "arrival": ("met", log.at(50)),
        "resolution": ("met", log.at(50)),
        "stage.classification": ("met", T),  # nothing classified it: 0 s
        "stage.dispatch": ("met", log.at(5)),
        "stage.acceptance": ("breached", log.at(50)),  # 45 of 15 min
        "stage.arrival": ("not_started", None),
        "stage.repair": ("not_started", None),
        "stage.verification": ("not_started", None),
    }
    assert all(c.due_at is None for c in view.clocks)
    assert view.worst == "acceptance"


def test_recovered_before_dispatch_then_back_runs_the_unmet_response_again() -> None:
    log = Log()(0, "created", "system")(10, "auto_resolve", "system", note="cleared")
    log(100, "reopen", "system", reason="it came back")(120, "accept")
    p, cal = policy("p2-urgent")
    resp = clocks(compute(log.entries, p, cal, now=log.at(200)))["response"]
    # 10 + 20 minutes: exactly the 30 allowed, and stopping on time is met
    assert (resp.elapsed, resp.status, resp.breached) == (30 * MIN, "met", False)
    gap = clocks(compute(log.entries, p, cal, now=log.at(50)))["response"]
    assert (gap.status, gap.elapsed, gap.stopped_at) == ("met", 10 * MIN, log.at(10))


# --- the stages --------------------------------------------------------------------------------


def test_classification_runs_until_the_rules_classify_it() -> None:
    log = Log()(0, "created", "system")(3, "classified", "system:rules")(8, "dispatch", "d")
    p, cal = policy("p2-urgent")
    c = clocks(compute(log.entries, p, cal, now=log.at(10)))
    assert c["stage.classification"].elapsed == 3 * MIN
    assert (c["stage.dispatch"].started_at, c["stage.dispatch"].elapsed) == (log.at(3), 5 * MIN)
    # before the rules classify it, nothing has: no classification time (0 s, met), and the
    # dispatch stage runs from the creation. (Central logs `classified` in the transaction
    # that creates the ticket; a first classification logged later moves the waiting time
    # from the dispatch stage to classification.)
    early = clocks(compute(log.entries, p, cal, now=log.at(2)))
    assert (early["stage.classification"].status, early["stage.classification"].elapsed) == (
        "met", 0.0
    )  # fmt: skip
    assert (early["stage.dispatch"].status, early["stage.dispatch"].started_at) == ("running", T)


def test_a_claimed_job_has_no_acceptance_stage() -> None:
    log = Log()(0, "created", "system")(0, "classified", "system:rules")(7, "accept", "eng9")
    p, cal = policy("p2-urgent")
    c = clocks(compute(log.entries, p, cal, now=log.at(30)))
    assert c["stage.dispatch"].elapsed == 7 * MIN
    assert c["stage.acceptance"].status == "not_started"
    assert (c["stage.arrival"].status, c["stage.arrival"].elapsed) == ("running", 23 * MIN)


# --- order, late entries, now ------------------------------------------------------------------


def test_entries_count_where_their_time_says_whatever_order_they_come_in() -> None:
    p, cal = policy("p3-standard")
    entries = finished_job().entries
    now = T + timedelta(days=1)
    expected = compute(entries, p, cal, now=now)
    assert compute(list(reversed(entries)), p, cal, now=now) == expected
    # the accept written down late (seq last) but stamped when it happened
    accept = next(e for e in entries if e.action == "accept")
    late = [e for e in entries if e is not accept] + [replace(accept, seq=99)]
    assert clocks(compute(late, p, cal, now=now))["response"].elapsed == 12 * MIN


def test_an_entry_stamped_before_the_ticket_counts_at_its_creation() -> None:
    log = Log()(0, "created", "system")(-5, "accept")  # a device clock behind
    p, cal = policy("p2-urgent")
    c = clocks(compute(log.entries, p, cal, now=log.at(60)))
    assert (c["response"].elapsed, c["response"].status) == (0.0, "met")
    assert c["response"].stopped_at == T
    assert all(x.elapsed >= 0 for x in c.values())


def test_entries_after_now_are_not_seen_yet() -> None:
    p, cal = policy("p2-urgent")
    entries = finished_job().entries
    resp = clocks(compute(entries, p, cal, now=T + timedelta(minutes=10)))["response"]
    assert (resp.status, resp.elapsed, resp.due_at) == ("running", 600.0, T + timedelta(minutes=30))


def test_without_a_created_entry_nothing_has_started() -> None:
    p, cal = policy("p2-urgent")
    entries = [e for e in finished_job().entries if e.action != "created"]
    view = compute(entries, p, cal, now=T + timedelta(days=1))
    assert {c.status for c in view.clocks} == {"not_started"}
    assert (view.pauses, view.shares, view.worst) == ((), (), None)


def test_a_running_clock_past_its_time_is_breached_since_its_due_time() -> None:
    log = Log()(0, "created", "system")
    p, cal = policy("p2-urgent")
    resp = clocks(compute(log.entries, p, cal, now=log.at(45)))["response"]
    assert (resp.status, resp.breached, resp.stopped_at) == ("breached", True, None)
    assert resp.due_at == log.at(30) and resp.used == 1.5
    on_time = clocks(compute(log.entries, p, cal, now=log.at(30)))["response"]
    assert on_time.breached  # at the due time itself


def test_naive_times_are_refused() -> None:
    p, cal = policy("p2-urgent")
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        compute(Log()(0, "created").entries, p, cal, now=datetime(2026, 12, 1))
    naive = LogEntry(datetime(2026, 12, 1), 1, "created", None, "new", "system")
    with pytest.raises(ValueError, match=r"entry 1 \(created\): at must be timezone-aware"):
        compute([naive], p, cal, now=T)


# --- business calendars --------------------------------------------------------------------------


def test_an_office_promise_runs_on_working_hours_and_skips_the_holidays() -> None:
    p, cal = policy("p4-planned")  # response 8h: one working day
    fri = datetime(2026, 12, 4, 17, 0, tzinfo=SHANGHAI)
    view = compute(Log(fri)(0, "created", "portal").entries, p, cal, now=fri)
    # Friday 17:00-17:30, then Monday 08:30-12:00 and 13:00-17:00
    assert clocks(view)["response"].due_at == datetime(2026, 12, 7, 17, 0, tzinfo=SHANGHAI)
    warn = {t.key: t.due_at for t in thresholds(view, p, cal, now=fri)}
    assert warn["warn:response:75"] == datetime(2026, 12, 7, 15, 0, tzinfo=SHANGHAI)
    # National Day (1-3 October) and the weekend are not counted
    wed = datetime(2026, 9, 30, 16, 0, tzinfo=SHANGHAI)
    view = compute(Log(wed)(0, "created", "portal").entries, p, cal, now=wed)
    assert clocks(view)["response"].due_at == datetime(2026, 10, 5, 16, 0, tzinfo=SHANGHAI)
    later = compute(Log(wed)(0, "created", "portal").entries, p, cal, now=wed + timedelta(days=5))
    # Wednesday 16:00-17:30, then Monday 08:30-12:00 and 13:00-16:00
    assert clocks(later)["response"].elapsed == (1.5 + 3.5 + 3) * 3600


# --- shares ---------------------------------------------------------------------------------


def test_shares_split_each_stage_by_holder_and_department() -> None:
    log = Log()(0, "created", "system:ingest", department="plumbing")(0, "classified", "rules")
    log(5, "dispatch", "disp", engineer="eng1")(10, "accept", "eng1")
    log(30, "transfer", "sup", department="hvac", to_department="hvac", engineer="eng1")
    log(40, "dispatch", "disp2", engineer="eng2")(50, "accept", "eng2")(80, "arrive", "eng2")
    log(81, "start", "eng2")(100, "wait_customer", "eng2", reason="x")(130, "resume", "eng2")
    log(200, "complete", "eng2", report="done")
    p, cal = policy("p3-standard")
    view = compute(log.entries, p, cal, now=log.at(200))
    assert view.shares == (
        Share("dispatch", "system:ingest", "plumbing", 5 * MIN),
        Share("acceptance", "eng1", "plumbing", 5 * MIN),
        Share("arrival", "eng1", "plumbing", 20 * MIN),
        Share("arrival", "sup", "hvac", 10 * MIN),
        Share("arrival", "eng2", "hvac", 40 * MIN),
        Share("repair", "eng2", "hvac", 90 * MIN),  # the wait for the customer left out
    )
    c = clocks(view)
    for stage in ("dispatch", "acceptance", "arrival", "repair"):
        held = sum(s.seconds for s in view.shares if s.stage == stage)
        assert held == c[f"stage.{stage}"].elapsed


def test_shares_count_business_time_only() -> None:
    p, cal = policy("p4-planned")  # office hours
    fri = datetime(2026, 12, 4, 17, 0, tzinfo=SHANGHAI)
    log = Log(fri)(0, "created", "portal", department="facilities")
    log(3825, "dispatch", "disp", engineer="eng1")  # Monday 08:45
    view = compute(log.entries, p, cal, now=log.at(3830))
    assert view.shares == (
        Share("dispatch", "portal", "facilities", 45 * MIN),  # Friday's last 30 min and 15
        Share("acceptance", "eng1", "facilities", 5 * MIN),
    )


# --- thresholds --------------------------------------------------------------------------------


def test_warnings_and_escalations_with_their_due_times() -> None:
    p, cal = policy("p1-emergency")  # warn at 50/75/90 %; response 15m; dispatch stage 10m
    log = Log()(0, "created", "system")
    now = log.at(8)
    view = compute(log.entries, p, cal, now=now)
    got = {t.key: t for t in thresholds(view, p, cal, now=now)}
    assert [k for k in got if k.startswith(("warn:response", "esc:"))] == [
        "warn:response:50", "warn:response:75", "warn:response:90",
        "esc:late", "esc:very-late", "esc:unassigned", "esc:not-verified",
    ]  # fmt: skip
    r50, r75 = got["warn:response:50"], got["warn:response:75"]
    assert (r50.reached, r50.due_at, r50.kind, r50.to) == (True, log.at(7.5), "warning", None)
    assert (r75.reached, r75.due_at) == (False, log.at(11.25))
    un = got["esc:unassigned"]
    assert (un.clock, un.percent, un.kind, un.to, un.reached) == (
        "stage.dispatch",
        100.0,
        "escalation",
        "supervisor",
        False,
    )
    assert un.due_at == log.at(10) == clocks(view)["stage.dispatch"].due_at
    assert un.message is not None and un.message.startswith("P1 无人接单")
    assert got["esc:very-late"].due_at == log.at(6 * 60)  # 150 % of 4 h
    nv = got["esc:not-verified"]
    assert (nv.due_at, nv.reached) == (None, False)  # verification has not started


def test_a_paused_or_stopped_clock_has_no_due_time_for_what_it_has_not_reached() -> None:
    log = Log()(0, "created", "system")(12, "accept")(20, "arrive")(30, "start")
    log(400, "wait_parts", parts=["board"])
    p, cal = policy("p2-urgent")  # resolution 8 h, warn at 75 % (6 h) and 90 %
    now = log.at(420)
    got = {t.key: t for t in thresholds(compute(log.entries, p, cal, now=now), p, cal, now=now)}
    assert (got["warn:resolution:75"].reached, got["warn:resolution:75"].due_at) == (
        True, log.at(360)
    )  # fmt: skip
    assert (got["warn:resolution:90"].reached, got["warn:resolution:90"].due_at) == (False, None)
    # response stopped at 12 of 30 minutes: its 75 % will never come
    assert (got["warn:response:75"].reached, got["warn:response:75"].due_at) == (False, None)


def test_thresholds_of_a_view_built_by_hand_use_the_running_clock() -> None:
    p, cal = policy("p2-urgent")
    view = compute(Log()(0, "created", "system").entries, p, cal, now=T + timedelta(minutes=6))
    bare = SlaView(view.clocks, view.pauses, view.shares, view.worst)
    now = T + timedelta(minutes=6)
    full = {t.key: t.due_at for t in thresholds(view, p, cal, now=now)}
    hand = {t.key: t.due_at for t in thresholds(bare, p, cal, now=now)}
    assert hand["warn:response:75"] == full["warn:response:75"] == T + timedelta(minutes=22.5)


# --- properties ----------------------------------------------------------------------------------

ACTIONS = ["classified", "dispatch", "accept", "decline", "depart", "arrive", "start",
           "wait_parts", "wait_customer", "resume", "complete", "request_verification",
           "confirm", "reject", "close", "cancel", "reopen", "transfer", "auto_resolve",
           "note", "sla_warning"]  # fmt: skip
POLICIES = sorted(RULES.policies)


@st.composite
def logs(draw: st.DrawFn) -> list[LogEntry]:
    steps = draw(
        st.lists(
            st.tuples(
                st.integers(-60, 6 * 24 * 60),  # minutes after the creation
                st.sampled_from(ACTIONS),
                st.sampled_from(["eng1", "eng2", "disp", "system"]),
                st.sampled_from([None, "eng1", "eng2"]),
                st.sampled_from([None, "hvac", "plumbing"]),
            ),
            max_size=25,
        )
    )
    entries = [LogEntry(T, 1, "created", None, "new", "system", {"department": "facilities"})]
    for i, (minutes, action, actor, engineer, dept) in enumerate(steps, 2):
        data = {k: v for k, v in (("engineer", engineer), ("to_department", dept)) if v}
        at = T + timedelta(minutes=minutes, seconds=draw(st.integers(0, 59)))
        if action == "classified":  # as central logs it: with the creation
            at = T
        entries.append(LogEntry(at, i, action, None, TO.get(action), actor, data))
    return entries


@settings(max_examples=150, deadline=None)
@given(logs(), st.sampled_from(POLICIES), st.integers(0, 8 * 24 * 60), st.randoms())
def test_the_same_entries_in_any_order_give_the_same_view(
    entries: list[LogEntry], pid: str, minutes: int, rnd: Any
) -> None:
    p, cal = policy(pid)
    now = T + timedelta(minutes=minutes)
    view = compute(entries, p, cal, now=now)
    shuffled = list(entries)
    rnd.shuffle(shuffled)
    assert compute(shuffled, p, cal, now=now) == view
    assert thresholds(compute(shuffled, p, cal, now=now), p, cal, now=now) == thresholds(
        view, p, cal, now=now
    )


@settings(max_examples=150, deadline=None)
@given(logs(), st.sampled_from(POLICIES), st.integers(0, 8 * 24 * 60), st.integers(0, 3000))
def test_no_clock_runs_backwards(entries: list[LogEntry], pid: str, m1: int, more: int) -> None:
    p, cal = policy(pid)
    before_now = T + timedelta(minutes=m1)
    before = compute(entries, p, cal, now=before_now)
    after = compute(entries, p, cal, now=T + timedelta(minutes=m1 + more))
    for a, b in zip(before.clocks, after.clocks, strict=True):
        assert 0 <= a.elapsed <= b.elapsed + 1e-6
        assert a.used == pytest.approx(a.elapsed / a.target)
        assert not a.breached or b.breached  # a breach is never undone
        assert (a.started_at is None) == (a.status == "not_started")
        assert a.breached == (a.status == "breached")
        if a.stopped_at is not None:
            assert a.status in ("met", "breached") and a.due_at is None
        if a.status in ("met", "not_started"):
            assert (a.stopped_at is None) == (a.status == "not_started")
        if a.status in ("running", "paused"):
            assert a.stopped_at is None and (a.due_at is not None) == (a.status == "running")
        if a.due_at is not None:
            assert a.stopped_at is None and (a.due_at > before_now) != a.breached
    for stage in ("dispatch", "acceptance", "arrival", "repair", "verification"):
        clock = next((c for c in after.clocks if c.name == f"stage.{stage}"), None)
        if clock is not None:
            held = sum(s.seconds for s in after.shares if s.stage == stage)
            assert held == pytest.approx(clock.elapsed, abs=1e-6)
