"""central.domain.stages: time per stage from the history's entry times."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from central.domain.lifecycle import State
from central.domain.stages import Entry, Stage, longest_stage, stage_durations

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def m(minutes: float) -> timedelta:
    return timedelta(minutes=minutes)


PATH = [
    Entry(State.new, at(0)),
    Entry(State.dispatched, at(4)),
    Entry(State.accepted, at(6)),
    Entry(State.en_route, at(10)),
    Entry(State.on_site, at(40)),
    Entry(State.in_progress, at(45)),
    Entry(State.waiting_parts, at(60)),
    Entry(State.in_progress, at(180)),
    Entry(State.completed, at(200)),
    Entry(State.pending_verification, at(201)),
    Entry(State.in_progress, at(300)),  # the customer rejected the fix
    Entry(State.completed, at(330)),
    Entry(State.closed, at(400)),
]


def test_a_whole_job_with_parts_and_a_rejected_fix() -> None:
    got = stage_durations(PATH, now=at(10_000))
    assert list(got) == [
        State.new, State.dispatched, State.accepted, State.en_route, State.on_site,
        State.in_progress, State.waiting_parts, State.completed, State.pending_verification,
        State.closed,
    ]  # fmt: skip
    assert got[State.in_progress] == Stage(State.in_progress, m(15 + 20 + 30), 3)
    assert got[State.waiting_parts].total == m(120)
    assert got[State.completed] == Stage(State.completed, m(1 + 70), 2)
    assert got[State.pending_verification].total == m(99)
    assert got[State.closed].total == timedelta(0)  # an end, not a stage: now does not count
    assert sum((s.total for s in got.values()), timedelta(0)) == m(400)
    assert longest_stage(PATH, at(10_000)) == Stage(State.waiting_parts, m(120), 1)


def test_the_current_stage_runs_until_now() -> None:
    entries = PATH[:7]  # waiting for parts since minute 60
    assert stage_durations(entries, now=at(75))[State.waiting_parts].total == m(15)


def test_a_clock_step_backwards_never_gives_a_negative_duration() -> None:
    entries = [
        Entry(State.new, at(10)),
        Entry(State.dispatched, at(5)),
        Entry(State.accepted, at(7)),
    ]
    got = stage_durations(entries, now=at(8))
    assert got[State.new].total == timedelta(0)
    assert got[State.dispatched].total == m(2)
    assert all(s.total >= timedelta(0) for s in got.values())


def test_no_history_no_stages() -> None:
    assert stage_durations([], now=T0) == {}
    assert longest_stage([], T0) is None


def test_durations_never_negative_and_sum_to_the_span_for_any_history() -> None:
    rng = random.Random(30)
    open_states = [s for s in State if s not in (State.closed, State.cancelled)]
    for _ in range(500):
        t, entries = T0, []
        for _ in range(rng.randrange(1, 12)):
            t += timedelta(seconds=rng.randrange(0, 10_000))
            entries.append(Entry(rng.choice(open_states), t))
        now = t + timedelta(seconds=rng.randrange(0, 1000))
        got = stage_durations(entries, now)
        assert all(s.total >= timedelta(0) for s in got.values())
        assert sum((s.total for s in got.values()), timedelta(0)) == now - entries[0].at
        assert sum(s.visits for s in got.values()) == len(entries)
