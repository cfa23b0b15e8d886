"""SLA at work: the policy and calendar pinned to a ticket, its clocks derived from its history,
durable timers for warnings and escalations fired exactly once across central processes, the
hand-off circuit breaker, and the overdue root-cause report.

Clocks are never stored as counters: every answer is computed from the ticket's event log with
the pinned policy (``central.domain.sla_clock``), so the same log always gives the same elapsed
time, due dates and breaches. What is stored are the timers' due times, recomputed whenever the
ticket changes, and whether each has fired."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from central.domain.business_time import BusinessCalendar
from central.domain.sla_clock import LogEntry, SlaView, Threshold, compute, thresholds
from central.services import history, notifications
from central.services.live_rules import DecisionRules
from central.services.placeholders import placeholders
from central.storage.models import SlaAlert, SlaTimer, Ticket, TicketEvent, TicketSla
from fieldloop.rules.actions import render
from fieldloop.rules.policies import Calendar, Handoffs, SlaPolicy

SLA_ACTOR = "system:sla"
WHO = f"{socket.gethostname()}:{os.getpid()}"  # which central process fired a timer


# --- pinning ----------------------------------------------------------------------------------


def attach(session: Session, ticket: Ticket, rules: DecisionRules | None, now: datetime) -> None:
    """Pin the ticket's chosen SLA policy and its calendar (holidays included) as they are now,
    with the rules version. Choosing again later (another priority) pins the new policy; the
    history keeps what was pinned when."""
    rs = rules.sla if rules is not None else None
    if rs is None or not ticket.sla_policy or ticket.sla_policy not in rs.policies:
        return
    policy: SlaPolicy = rs.policies[ticket.sla_policy]
    cal: Calendar = rs.calendars[policy.calendar]
    days_off = sorted(rs.days_off.get(cal.id, frozenset()))
    row = session.get(TicketSla, ticket.id)
    body = {
        "policy_id": policy.id,
        "rules_version": rs.version,
        "policy": policy.model_dump(mode="json"),
        "calendar": {**cal.model_dump(mode="json"), "days_off": [d.isoformat() for d in days_off]},
    }
    if row is not None and (row.policy, row.calendar) == (body["policy"], body["calendar"]):
        return
    if row is None:
        session.add(TicketSla(ticket_id=ticket.id, attached_at=now, updated_at=now,
                              breached=False, **body))  # fmt: skip
    else:
        for k, v in body.items():
            setattr(row, k, v)
        row.attached_at = row.updated_at = now
    history.record(
        session, ticket, at=now, actor=SLA_ACTOR, action="sla_attached",
        data={"policy": policy.id, "calendar": cal.id, "rules_version": rs.version},
    )  # fmt: skip
    if ticket.coordinator is None:
        ticket.coordinator = ticket.department


def pinned(row: TicketSla) -> tuple[SlaPolicy, BusinessCalendar]:
    cal = dict(row.calendar)
    days_off = frozenset(date.fromisoformat(d) for d in cal.pop("days_off", []))
    return SlaPolicy.model_validate(row.policy), BusinessCalendar(
        Calendar.model_validate(cal), days_off
    )


# --- clocks -----------------------------------------------------------------------------------


def entries(session: Session, ticket_id: int) -> list[LogEntry]:
    rows = session.execute(
        select(TicketEvent).where(TicketEvent.ticket_id == ticket_id).order_by(TicketEvent.seq)
    ).scalars()
    return [
        LogEntry(at=r.at, seq=r.seq, action=r.action, from_state=r.from_state,
                 to_state=r.to_state, actor=r.actor, data=r.data or {})
        for r in rows
    ]  # fmt: skip


def view(session: Session, ticket: Ticket, now: datetime) -> tuple[TicketSla, SlaView] | None:
    row = session.get(TicketSla, ticket.id)
    if row is None:
        return None
    policy, calendar = pinned(row)
    return row, compute(entries(session, ticket.id), policy, calendar, now=now)


def _thresholds(session: Session, ticket: Ticket, now: datetime) -> list[Threshold] | None:
    row = session.get(TicketSla, ticket.id)
    if row is None:
        return None
    policy, calendar = pinned(row)
    v = compute(entries(session, ticket.id), policy, calendar, now=now)
    row.breached = any(c.breached for c in v.clocks if not c.name.startswith("stage."))
    row.worst_stage = v.worst
    row.updated_at = now
    return thresholds(v, policy, calendar, now=now)


def refresh(session: Session, ticket: Ticket, now: datetime) -> None:
    """Bring the ticket's timers in line with its log (called with the ticket row locked after
    every change): each threshold not yet fired gets its due time; one that can no longer
    fire (the clock stopped or is paused) loses its timer. Fired timers are never touched."""
    found = _thresholds(session, ticket, now)
    if found is None:
        return
    existing = {
        t.key: t
        for t in session.execute(select(SlaTimer).where(SlaTimer.ticket_id == ticket.id)).scalars()
    }
    for th in found:
        timer = existing.get(th.key)
        if timer is not None and timer.fired_at is not None:
            continue
        due = now if th.reached else th.due_at
        if due is None:
            if timer is not None:
                session.delete(timer)
            continue
        if timer is None:
            session.add(SlaTimer(
                ticket_id=ticket.id, key=th.key, kind=th.kind, clock=th.clock,
                percent=th.percent, to_role=th.to, message=th.message, due_at=due,
            ))  # fmt: skip
        else:
            timer.due_at = due


# --- firing -----------------------------------------------------------------------------------


def db_now(session: Session, fallback: datetime) -> datetime:
    """Due times are compared with the database's clock, which every central process shares,
    so a host clock that jumps fires nothing early (SQLite: the process's own clock)."""
    if session.get_bind().dialect.name == "postgresql":
        return session.execute(text("SELECT clock_timestamp()")).scalar_one()
    return fallback


def due_tickets(session: Session, now: datetime, limit: int = 500) -> list[int]:
    """Tickets with an unfired timer due by ``now`` (the partial index on due_at)."""
    q = (
        select(SlaTimer.ticket_id, func.min(SlaTimer.due_at))
        .where(SlaTimer.fired_at.is_(None), SlaTimer.due_at <= now)
        .group_by(SlaTimer.ticket_id)
        .order_by(func.min(SlaTimer.due_at))
        .limit(limit)
    )
    return [tid for tid, _ in session.execute(q).all()]


def fire_due(session: Session, ticket_id: int, now: datetime, who: str = WHO) -> list[str]:
    """Fire what is due on one ticket, exactly once: the ticket row is taken with SKIP LOCKED
    (another process working on it is skipped, not waited for), and each timer is re-checked
    against the clock recomputed from the log before it fires. Returns the keys fired."""
    q = select(Ticket).where(Ticket.id == ticket_id)
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    ticket = session.execute(q.execution_options(populate_existing=True)).scalar_one_or_none()
    if ticket is None:
        return []
    timers = list(
        session.execute(
            select(SlaTimer).where(
                SlaTimer.ticket_id == ticket_id,
                SlaTimer.fired_at.is_(None),
                SlaTimer.due_at <= now,
            )
        ).scalars()
    )
    if not timers:
        return []
    current = {th.key: th for th in (_thresholds(session, ticket, now) or [])}
    fired: list[str] = []
    # one flush at the end instead of one per log entry (the log's own INSERTs would otherwise
    # flush the ticket and the timers before each): a ticket with many due timers stays cheap
    with session.no_autoflush:
        _fire(session, ticket, timers, current, now, who, fired)
    return fired


def _fire(
    session: Session,
    ticket: Ticket,
    timers: list[SlaTimer],
    current: Mapping[str, Threshold],
    now: datetime,
    who: str,
    fired: list[str],
) -> None:
    for timer in sorted(timers, key=lambda t: (t.due_at, t.key)):
        th = current.get(timer.key)
        if th is None or not th.reached:
            # a pause or a stop since the due time was set: move it, or drop it
            if th is not None and th.due_at is not None:
                timer.due_at = th.due_at
            else:
                session.delete(timer)
            continue
        timer.fired_at, timer.fired_by = now, who
        fired.append(timer.key)
        _announce(session, ticket, timer, now)


def _announce(session: Session, ticket: Ticket, timer: SlaTimer, now: datetime) -> None:
    what = "warning" if timer.kind == "warning" else "escalation"
    to = timer.to_role
    recipient = ticket.assignee or "role:dispatcher" if to in (None, "assignee") else f"role:{to}"
    note = (
        render(timer.message, placeholders(ticket))
        if timer.message
        else f"SLA {what}: {timer.clock} {timer.percent:g}% used on ticket #{ticket.id}"
    )
    history.record(
        session, ticket, at=now, actor=SLA_ACTOR, action=f"sla_{what}", note=note,
        data={"key": timer.key, "clock": timer.clock, "percent": timer.percent, "to": recipient},
    )  # fmt: skip
    notifications.enqueue(
        session, kind=f"sla_{what}", recipient=recipient, now=now, ticket_id=ticket.id,
        payload={"ticket": ticket.id, "title": ticket.title, "clock": timer.clock,
                 "percent": timer.percent, "message": note},
    )  # fmt: skip


# --- hand-offs ----------------------------------------------------------------------------------


def handoffs_of(rules: DecisionRules | None) -> Handoffs:
    spec = rules.sla.spec if rules is not None and rules.sla is not None else None
    return getattr(spec, "handoffs", None) or Handoffs()


def check_repeat(
    session: Session, ticket: Ticket, rules: DecisionRules | None, now: datetime
) -> None:
    """A new ticket about a problem raised recently (the same asset, or the same place and
    category) is a repeat complaint: it trips the circuit breaker."""
    h = handoffs_of(rules)
    earlier = repeat_of(session, ticket, timedelta(seconds=h.repeat_within))
    if earlier is not None:
        flag(session, ticket, now, f"repeat complaint: the same problem as ticket #{earlier.id} "
             f"({earlier.created_at:%Y-%m-%d})", to=h.escalate_to)  # fmt: skip


def after_transfer(session: Session, ticket: Ticket, now: datetime, max_bounces: int) -> None:
    """A ticket bounced between departments too often trips the circuit breaker: it is
    flagged and escalated to a supervisor once, and its first department stays coordinator."""
    if ticket.transfers < max_bounces or ticket.flagged:
        return
    flag(session, ticket, now, f"{ticket.transfers} hand-offs between departments "
         f"(coordinator: {ticket.coordinator or '-'})", to="supervisor")  # fmt: skip


def flag(session: Session, ticket: Ticket, now: datetime, why: str, *, to: str) -> None:
    ticket.flagged = why[:255]
    history.record(session, ticket, at=now, actor=SLA_ACTOR, action="circuit_breaker",
                   note=why, data={"to": f"role:{to}"})  # fmt: skip
    notifications.enqueue(
        session, kind="circuit_breaker", recipient=f"role:{to}", now=now, ticket_id=ticket.id,
        payload={"ticket": ticket.id, "title": ticket.title, "why": why},
    )  # fmt: skip


def repeat_of(session: Session, ticket: Ticket, within: timedelta) -> Ticket | None:
    """An earlier ticket about the same problem (the same asset, or the same location and
    category) raised within ``within``: a repeat complaint."""
    if ticket.asset_id:
        same = Ticket.asset_id == ticket.asset_id
    elif ticket.location and ticket.category:
        same = (Ticket.location == ticket.location) & (Ticket.category == ticket.category)
    else:
        return None
    return session.execute(
        select(Ticket)
        .where(same, Ticket.id != ticket.id, Ticket.created_at >= ticket.created_at - within)
        .order_by(Ticket.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def overdue_rates(session: Session, since: datetime, now: datetime) -> dict[str, tuple[int, int]]:
    """Per stage: (tickets whose stage clock breached, tickets that ran that stage) among
    tickets created since ``since``."""
    counts: dict[str, list[int]] = {}
    rows = session.execute(
        select(Ticket, TicketSla).join(TicketSla, TicketSla.ticket_id == Ticket.id)
        .where(Ticket.created_at >= since)
    ).all()  # fmt: skip
    for ticket, sla_row in rows:
        policy, calendar = pinned(sla_row)
        v = compute(entries(session, ticket.id), policy, calendar, now=now)
        for c in v.clocks:
            if not c.name.startswith("stage.") or c.started_at is None:
                continue
            n = counts.setdefault(c.name[6:], [0, 0])
            n[1] += 1
            n[0] += int(c.breached)
    return {k: (v[0], v[1]) for k, v in counts.items()}


def alert_once(session: Session, key: str, now: datetime, data: Mapping[str, Any]) -> bool:
    """Record an alert about many tickets under ``key`` unless it was already raised."""
    if session.get(SlaAlert, key) is not None:
        return False
    session.add(SlaAlert(key=key, at=now, data=dict(data)))
    session.flush()
    return True


def all_views(
    session: Session, start: datetime, end: datetime, now: datetime
) -> Iterable[tuple[Ticket, SlaView]]:
    rows = session.execute(
        select(Ticket, TicketSla).join(TicketSla, TicketSla.ticket_id == Ticket.id)
        .where(Ticket.created_at >= start, Ticket.created_at < end)
        .order_by(Ticket.id)
    ).all()  # fmt: skip
    for ticket, sla_row in rows:
        policy, calendar = pinned(sla_row)
        yield ticket, compute(entries(session, ticket.id), policy, calendar, now=now)


def purge_unfired(session: Session, ticket_id: int) -> None:
    session.execute(
        delete(SlaTimer).where(SlaTimer.ticket_id == ticket_id, SlaTimer.fired_at.is_(None))
    )
