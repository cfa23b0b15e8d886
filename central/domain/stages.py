"""How long a ticket spent in each stage, from the times it entered them. Pure.

The history is the record: a ticket's transitions in the order they were logged, each with the
state it entered and when. A stage lasts from its entry to the next entry; the stage the ticket
is in now lasts until ``now``, unless it is closed or cancelled (those are ends, not stages).
A clock that stepped backwards between two entries never makes a negative duration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from central.domain.lifecycle import TERMINAL, State

_ZERO = timedelta(0)


@dataclass(frozen=True)
class Entry:
    state: State
    at: datetime


@dataclass(frozen=True)
class Stage:
    state: State
    total: timedelta  # all visits together
    visits: int  # a job back in progress after a rejected fix visits it twice


def stage_durations(entries: Sequence[Entry], now: datetime) -> dict[State, Stage]:
    """Per state the ticket has been in: the time spent there and the number of visits, in the
    order the stages were first entered."""
    totals: dict[State, timedelta] = {}
    visits: dict[State, int] = {}
    for i, e in enumerate(entries):
        visits[e.state] = visits.get(e.state, 0) + 1
        if i + 1 < len(entries):
            end = entries[i + 1].at
        elif e.state in TERMINAL:
            end = e.at
        else:
            end = now
        totals[e.state] = totals.get(e.state, _ZERO) + max(_ZERO, end - e.at)
    return {s: Stage(s, totals[s], visits[s]) for s in totals}


def longest_stage(entries: Sequence[Entry], now: datetime) -> Stage | None:
    """The stage that consumed the most time (the first of equals), or None for no history."""
    stages = list(stage_durations(entries, now).values())
    return max(stages, key=lambda s: s.total) if stages else None
