"""SLA clocks: one ticket's clocks computed from its log by ``central.domain.sla_clock``,
against a naive recomputation that walks the ticket's life minute by minute, in the same run.

The tickets (seeded): one log each of 22 entries, as central writes them: created (with a
department), classified and sla_attached at the same instant, a dispatch, a decline and a
second dispatch, accept, depart, arrive, start, a wait for parts (hours to three days) and a
wait for the customer, each resumed, complete, request_verification, a rejected fix, the
rework, complete again, request_verification, confirm, close. Creation times are spread over
2026 at any hour of any day, so the clocks cross nights, weekends and the statutory holidays
of the shipped calendar. Six tickets in ten are finished (``now`` up to a day after the close);
the others are cut at a random entry and looked at before the next one (running clocks, open
pauses). Every time is a whole minute, so the two ways must agree to the second.

The policies are the shipped ones of ``rules/sla.yaml``: ``p4-planned`` on the ``office``
calendar (Mon-Fri 08:30-12:00 and 13:00-17:30 Shanghai, the 2026 holidays from the .ics) and
``p3-standard`` on ``extended`` (every day 08:00-20:00; all nine clocks).

* ours: ``compute(entries, policy, calendar, now=now)``, the calendar built once per policy
  (its working days cached); also shown: with a calendar built afresh for every ticket, as
  ``central.services.sla.pinned`` does, and ``compute`` + ``thresholds``;
* naive: the log sorted, then one step per minute from the creation to ``now``: the entries
  due by then applied to each clock's running flag and the pause state, and each running,
  unpaused clock credited a minute if the calendar is open then (the local time checked
  against the day's hours and the days off).

Both must give every clock the same elapsed seconds (checked on every ticket timed both ways).
Figures: µs per ticket (mean and p50) over the same tickets, and naive / ours.

    .venv/bin/python bench/sla_clock.py [--quick] [--tickets N] [--naive-every K] [--seed S]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time as clock
from collections.abc import Set
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from central.domain.business_time import BusinessCalendar
from central.domain.sla_clock import LogEntry, compute, thresholds
from fieldloop.rules.files import RuleSet, load_ruleset
from fieldloop.rules.policies import STAGES, TARGETS, Calendar, SlaPolicy

REPO = Path(__file__).resolve().parent.parent
YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
POLICIES = ("p4-planned", "p3-standard")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MIDNIGHT = time(0, 0)
ENDS = frozenset({"cancel", "auto_resolve", "close"})
LIFECYCLE_EXTRA = frozenset({"sla_attached", "classified", "note"})  # entries that move nothing
WAITING = frozenset({"waiting_parts", "waiting_customer"})

#: (action, who takes it, state after, minutes after the entry before: low, high)
STEPS = [
    ("created", "system:ingest", "new", 0, 0),
    ("classified", "system:rules", None, 0, 0),
    ("sla_attached", "system:sla", None, 0, 0),
    ("dispatch", "dispatcher", "dispatched", 5, 240),
    ("decline", "eng", "new", 2, 60),
    ("dispatch", "dispatcher", "dispatched", 1, 45),
    ("accept", "eng2", "accepted", 2, 90),
    ("depart", "eng2", "en_route", 5, 120),
    ("arrive", "eng2", "on_site", 20, 180),
    ("start", "eng2", "in_progress", 1, 15),
    ("wait_parts", "eng2", "waiting_parts", 20, 240),
    ("resume", "eng2", "in_progress", 120, 3 * 24 * 60),
    ("wait_customer", "eng2", "waiting_customer", 30, 240),
    ("resume", "eng2", "in_progress", 30, 24 * 60),
    ("complete", "eng2", "completed", 20, 300),
    ("request_verification", "eng2", "pending_verification", 1, 10),
    ("reject", "customer", "reopened", 60, 24 * 60),
    ("resume", "eng2", "in_progress", 30, 600),
    ("complete", "eng2", "completed", 30, 300),
    ("request_verification", "eng2", "pending_verification", 1, 10),
    ("confirm", "customer", "verified", 60, 2 * 24 * 60),
    ("close", "dispatcher", "closed", 1, 60),
]


def ticket(rnd: random.Random) -> tuple[list[LogEntry], datetime]:
    """One ticket's log (seq in the order written) and the moment it is looked at."""
    at = YEAR_START + timedelta(minutes=rnd.randrange(360 * 24 * 60))
    engineers = rnd.sample([f"eng{i:03d}" for i in range(200)], 2)
    entries = []
    for seq, (action, who, state, low, high) in enumerate(STEPS, 1):
        at += timedelta(minutes=rnd.randint(low, high))
        actor = {"eng": engineers[0], "eng2": engineers[1]}.get(who, who)
        data: dict[str, object] = {}
        if action == "created":
            data = {"department": rnd.choice(["facilities", "hvac", "plumbing"])}
        elif action == "dispatch":
            data = {"engineer": engineers[0] if seq < 5 else engineers[1]}
        entries.append(LogEntry(at, seq, action, None, state, actor, data))
    if rnd.random() < 0.6:
        return entries, at + timedelta(minutes=rnd.randint(0, 24 * 60))
    cut = rnd.randrange(3, len(entries) - 1)
    gap = int((entries[cut].at - entries[cut - 1].at) / MINUTE)
    return entries[:cut], entries[cut - 1].at + timedelta(minutes=rnd.randint(0, gap))


# --- the naive recomputation ---------------------------------------------------------------------


class _Run:
    """One clock in the minute walk: begun, running, met, and the seconds it has used."""

    def __init__(self, stops: set[str], restarts: Set[str] = frozenset(), again: bool = False):
        self.stops, self.restarts, self.again = stops, restarts, again
        self.begun = self.running = self.met = False
        self.seconds = 0

    def begin(self) -> None:
        if not self.begun:
            self.begun = self.running = True

    def see(self, action: str) -> None:
        if not self.begun:
            return
        if self.running:
            if action in self.stops:
                self.running, self.met = False, True
            elif action in ENDS:
                self.running = False
        elif action in self.restarts or (self.again and not self.met and action == "reopen"):
            self.running, self.met = True, False


def naive(
    entries: list[LogEntry], policy: SlaPolicy, cal: Calendar, days_off: frozenset[date],
    now: datetime,
) -> dict[str, float]:  # fmt: skip
    zone = ZoneInfo(cal.timezone)
    hours = [cal.hours.get(d, ()) for d in DAYS]

    def is_open(m: datetime) -> bool:
        if cal.always:
            return True
        local = m.astimezone(zone)
        if local.date() in days_off:
            return False
        t = local.time()
        return any(s <= t and (e == MIDNIGHT or t < e) for s, e in hours[local.weekday()])

    log = sorted((e for e in entries if e.at <= now), key=lambda e: (e.at, e.seq))
    runs = {
        "response": _Run({"accept"}, again=True),
        "arrival": _Run({"arrive"}, again=True),
        "resolution": _Run({"complete"}, {"reject", "reopen"}),
        "stage.classification": _Run({"classified", "dispatch", "accept"}),
        "stage.dispatch": _Run({"dispatch", "accept"}),
        "stage.acceptance": _Run({"accept"}),
        "stage.arrival": _Run({"arrive"}),
        "stage.repair": _Run({"complete"}, {"reject", "reopen"}),
        "stage.verification": _Run({"confirm", "close", "reject", "reopen"}, {"complete"}),
    }
    classified = any(e.action == "classified" for e in log)
    begins = {"dispatch": "stage.acceptance", "accept": "stage.arrival",
              "arrive": "stage.repair", "complete": "stage.verification"}  # fmt: skip
    waiting: str | None = None

    def apply(e: LogEntry) -> None:
        nonlocal waiting
        a = e.action
        if a == "created":
            for name in ("response", "arrival", "resolution"):
                runs[name].begin()
            if classified:
                runs["stage.classification"].begin()
            else:
                runs["stage.dispatch"].begin()
        cls = runs["stage.classification"]
        was = cls.running
        cls.see(a)
        if was and not cls.running:
            runs["stage.dispatch"].begin()
        if a in begins:
            runs[begins[a]].begin()
        for name, r in runs.items():
            if name != "stage.classification":
                r.see(a)
        if a not in LIFECYCLE_EXTRA:
            waiting = e.to_state if e.to_state in WAITING else None

    i, m = 0, log[0].at
    while m < now:
        while i < len(log) and log[i].at <= m:
            apply(log[i])
            i += 1
        if (waiting is None or waiting not in policy.pause_on) and is_open(m):
            for r in runs.values():
                if r.running:
                    r.seconds += 60
        m += MINUTE
    while i < len(log):  # entries at now itself
        apply(log[i])
        i += 1
    budgets = [k for k in TARGETS if getattr(policy.targets, k) is not None]
    budgets += [f"stage.{k}" for k in STAGES if getattr(policy.stages, k) is not None]
    return {k: float(runs[k].seconds) for k in budgets}


# --- the run ------------------------------------------------------------------------------------


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def bench_policy(
    rules: RuleSet, pid: str, tickets: int, every: int, seed: int
) -> tuple[dict[str, list[float]], int] | None:
    policy: SlaPolicy = rules.policies[pid]
    cal, off = rules.calendars[policy.calendar], rules.days_off[policy.calendar]
    business = BusinessCalendar(cal, off)
    rnd = random.Random(seed)
    times: dict[str, list[float]] = {"ours": [], "ours_same": [], "naive": [], "cold": [],
                                     "thresholds": []}  # fmt: skip
    minutes = 0
    for n in range(tickets):
        entries, now = ticket(rnd)
        t0 = clock.perf_counter()
        view = compute(entries, policy, business, now=now)
        t_ours = clock.perf_counter() - t0
        times["ours"].append(t_ours)
        t0 = clock.perf_counter()
        compute(entries, policy, BusinessCalendar(cal, off), now=now)
        times["cold"].append(clock.perf_counter() - t0)
        t0 = clock.perf_counter()
        v = compute(entries, policy, business, now=now)
        thresholds(v, policy, business, now=now)
        times["thresholds"].append(clock.perf_counter() - t0)
        if n % every:
            continue
        t0 = clock.perf_counter()
        slow = naive(entries, policy, cal, off, now)
        times["naive"].append(clock.perf_counter() - t0)
        times["ours_same"].append(t_ours)
        minutes += int((now - min(e.at for e in entries)) / MINUTE)
        ours = {c.name: c.elapsed for c in view.clocks}
        if ours != slow:
            print(f"FAILED: {pid}, ticket {n}: compute() and the minute walk disagree")
            for k in ours:
                if ours[k] != slow[k]:
                    print(f"  {k}: ours {ours[k]:g} s, naive {slow[k]:g} s")
            return None
    return times, minutes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="300 tickets a policy")
    p.add_argument("--tickets", type=int, default=None, help="tickets a policy (2000)")
    p.add_argument("--naive-every", type=int, default=10, help="time the walk on every Kth ticket")
    p.add_argument("--seed", type=int, default=9)
    args = p.parse_args(argv)
    tickets = args.tickets or (300 if args.quick else 2000)
    rules = load_ruleset(REPO / "rules" / "sla.yaml")
    us = 1e6
    print(f"{tickets:,} tickets a policy, 22-entry logs; the minute walk on every "
          f"{args.naive_every}th, checked against compute() clock by clock")  # fmt: skip
    print(f"  {'policy':12} {'per ticket, µs':28} {'mean':>9} {'p50':>9}")
    ratios = []
    for i, pid in enumerate(POLICIES):
        gc.collect()
        got = bench_policy(rules, pid, tickets, args.naive_every, args.seed + i)
        if got is None:
            return 1
        t, minutes = got
        rows = [
            ("ours: compute()", t["ours"]),
            ("ours: fresh calendar each", t["cold"]),
            ("ours: compute + thresholds", t["thresholds"]),
            ("ours (the walked tickets)", t["ours_same"]),
            ("naive minute walk", t["naive"]),
        ]
        for name, values in rows:
            mean, p50 = statistics.fmean(values) * us, pct(values, 50) * us
            print(f"  {pid:12} {name:28} {mean:9,.0f} {p50:9,.0f}")
        ratio = statistics.fmean(t["naive"]) / statistics.fmean(t["ours_same"])
        ratios.append(ratio)
        print(
            f"  {pid:12} naive / ours: {ratio:,.0f}x (mean, same {len(t['naive'])} tickets; "
            f"{minutes / len(t['naive']):,.0f} minutes walked a ticket); every clock the same"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
