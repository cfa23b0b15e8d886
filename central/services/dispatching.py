"""Dispatch at work: who is offered each job, what happens when they decline or do not answer,
engineers grabbing jobs (抢单), a supervisor's override, and a backlog assigned at once.

The decision itself is pure (``central.domain.dispatch``); this module feeds it from the
database (engineers, their load and history, the site's position, who declined before) and
carries out what it decided inside the caller's transaction, on a locked ticket. Each decision
is stored with every candidate's constraints and scores, so ``GET /tickets/{id}/dispatch`` can
say why."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from central.domain.dispatch import (
    Candidate,
    Check,
    Decision,
    EngineerProfile,
    Job,
    decide,
    explain,
)
from central.domain.lifecycle import Action, State
from central.domain.permissions import Caller, Forbidden, Role
from central.services import history, notifications, offers
from central.services.live_rules import DecisionRules
from central.services.tickets import BadInput, MissingInput, Step, apply_step, lock_ticket
from central.storage.models import (
    DispatchDecisionRow,
    DispatchOffer,
    Engineer,
    EngineerLeave,
    Site,
    Ticket,
)
from fieldloop.rules.policies import DispatchPolicy

DISPATCH_ACTOR = "system:dispatch"
DEFAULT_ACCEPT_WITHIN = timedelta(minutes=15)  # a hand-picked engineer without a policy
#: states in which a job is the engineer's to do (their load)
WORKING = (State.dispatched, State.accepted, State.en_route, State.on_site, State.in_progress,
           State.waiting_parts, State.waiting_customer)  # fmt: skip
DONE = (State.completed, State.pending_verification, State.verified, State.closed)


@dataclass(frozen=True)
class Setup:
    """What dispatch needs from the live rules."""

    policies: Mapping[str, DispatchPolicy]
    certified_skills: Mapping[str, Sequence[str]]
    tz: tzinfo
    rules_version: str | None
    response: Mapping[str, float]  # SLA policy -> seconds to the first response (or arrival)

    @classmethod
    def of(cls, rules: DecisionRules | None) -> Setup | None:
        rs = rules.dispatch if rules is not None else None
        if rules is None or rs is None:
            return None
        spec = rs.spec
        certified = getattr(spec, "certified_skills", {}) if spec is not None else {}
        response = {}
        for pid, p in (rules.sla.policies if rules.sla else {}).items():
            first = p.targets.response or p.targets.arrival
            if first is not None:
                response[pid] = first
        return cls(dict(rs.policies), certified, ZoneInfo(rules.timezone), rs.version, response)

    def policy_for(self, ticket: Ticket) -> DispatchPolicy | None:
        return self.policies.get(ticket.dispatch_policy or "")


# --- from the database to the pure decision ---------------------------------------------------


def _ranges(spans: Any) -> tuple[tuple[time, time], ...]:
    out = []
    for s in spans or []:
        start, _, end = str(s).partition("-")
        out.append((time.fromisoformat(start.strip()), time.fromisoformat(end.strip())))
    return tuple(out)


def profiles(
    session: Session, now: datetime, usernames: Sequence[str] | None = None
) -> list[EngineerProfile]:
    """Every active engineer (or those named) as the decision sees them: skills, shifts, leave,
    position, open jobs and first-time-fix record, in four queries whatever their number."""
    q = select(Engineer).where(Engineer.active.is_(True))
    if usernames is not None:
        q = q.where(Engineer.username.in_(list(usernames)))
    rows = list(session.execute(q).scalars())
    if not rows:
        return []
    names = [r.username for r in rows]
    load = dict(
        session.execute(
            select(Ticket.assignee, func.count())
            .where(Ticket.assignee.in_(names), Ticket.state.in_([s.value for s in WORKING]))
            .group_by(Ticket.assignee)
        ).all()
    )
    leave: dict[str, list[tuple[datetime, datetime]]] = {}
    for name, start, end in session.execute(
        select(EngineerLeave.engineer, EngineerLeave.starts_at, EngineerLeave.ends_at).where(
            EngineerLeave.engineer.in_(names), EngineerLeave.ends_at > now
        )
    ):
        leave.setdefault(name, []).append((start, end))
    ftf: dict[str, dict[str, tuple[int, int]]] = {}
    for name, category, done, first in session.execute(
        select(
            Ticket.assignee,
            Ticket.category,
            func.count(),
            func.sum(case((Ticket.reopen_count == 0, 1), else_=0)),
        )
        .where(Ticket.assignee.in_(names), Ticket.state.in_([s.value for s in DONE]))
        .group_by(Ticket.assignee, Ticket.category)
    ):
        ftf.setdefault(name, {})[category or ""] = (int(first or 0), int(done))
    return [
        EngineerProfile(
            id=r.username,
            name=r.name,
            department=r.department,
            regions=frozenset(r.regions or ()),
            skills={str(k): int(v) for k, v in (r.skills or {}).items()},
            certifications={
                str(k): (date.fromisoformat(v) if v else None)
                for k, v in (r.certifications or {}).items()
            },
            lat=r.lat if r.lat is not None else r.home_lat,
            lon=r.lon if r.lon is not None else r.home_lon,
            shifts={str(d): _ranges(v) for d, v in (r.shifts or {}).items()},
            leave=tuple(leave.get(r.username, ())),
            open_jobs=int(load.get(r.username, 0)),
            first_time_fix=ftf.get(r.username, {}),
            active=r.active,
        )
        for r in rows
    ]


def job_for(session: Session, ticket: Ticket, setup: Setup | None = None) -> Job:
    """The ticket as the decision sees it: needed skills, queue, where it is, how urgent."""
    site = session.get(Site, ticket.site) if ticket.site else None
    last = None
    if ticket.asset_id:
        last = session.execute(
            select(Ticket.assignee)
            .where(
                Ticket.asset_id == ticket.asset_id,
                Ticket.id != ticket.id,
                Ticket.assignee.is_not(None),
            )
            .order_by(Ticket.id.desc())
            .limit(1)
        ).scalar_one_or_none()
    return Job(
        ticket_id=ticket.id,
        skills=tuple((s["skill"], int(s.get("level", 1))) for s in ticket.skills or []),
        queue=ticket.department,
        site=ticket.site,
        region=site.region if site else None,
        lat=site.lat if site else None,
        lon=site.lon if site else None,
        priority=ticket.priority,
        category=ticket.category,
        sla_due=_sla_due(ticket, setup),
        last_engineer=last,
        exclude=offers.passed_over(session, ticket.id),
    )


def _sla_due(ticket: Ticket, setup: Setup | None) -> datetime | None:
    """When the response promise falls due: the SLA policy's target from the ticket's
    creation, on the wall clock (the SLA clocks refine it on business calendars)."""
    seconds = setup.response.get(ticket.sla_policy or "") if setup else None
    return None if seconds is None else ticket.created_at + timedelta(seconds=seconds)


def _candidate_json(c: Candidate) -> dict[str, Any]:
    return {
        "engineer": c.engineer,
        "eligible": c.eligible,
        "total": round(c.total, 6),
        "distance_km": None if c.distance_km is None else round(c.distance_km, 3),
        "eta_minutes": None if c.eta_minutes is None else round(c.eta_minutes, 1),
        "scores": {k: round(v, 6) for k, v in c.scores.items()},
        "checks": [{"name": k.name, "passed": k.passed, "detail": k.detail} for k in c.checks],
    }


def record(
    session: Session,
    ticket: Ticket,
    decision: Decision,
    *,
    kind: str,
    actor: str,
    now: datetime,
    rules_version: str | None,
    chosen: Sequence[str] | None = None,
    reason: str | None = None,
) -> DispatchDecisionRow:
    row = DispatchDecisionRow(
        ticket_id=ticket.id,
        at=now,
        kind=kind,
        actor=actor,
        policy=decision.policy,
        mode=decision.mode,
        rules_version=rules_version,
        relaxed=list(decision.relaxed),
        chosen=list(decision.chosen if chosen is None else chosen),
        reason=reason or decision.reason,
        ranked=[_candidate_json(c) for c in decision.ranked],
        explanation=explain(decision),
    )
    session.add(row)
    return row


def assess(
    job: Job, engineer: EngineerProfile, policy: DispatchPolicy, setup: Setup, now: datetime
) -> Candidate:
    """One engineer against the policy's constraints for ``job``, nothing relaxed: what a
    hand-picked or self-claimed engagement is checked against."""
    d = decide(job, [engineer], policy, now=now, tz=setup.tz,
               certified_skills=setup.certified_skills)  # fmt: skip
    found = next((c for c in d.ranked if c.engineer == engineer.id), None)
    if found is not None and not d.relaxed:
        return found
    if found is not None:  # it took relaxing: report what was relaxed as failed
        checks = tuple(
            Check(k.name, False, k.detail) if k.name in d.relaxed else k for k in found.checks
        )
        return Candidate(**{**found.__dict__, "eligible": False, "checks": checks})
    # the decision never considers an engineer without the skills (or inactive)
    needed = ", ".join(f"{k} level {v}" for k, v in job.skills) or "none"
    has = ", ".join(f"{k} {v}" for k, v in engineer.skills.items()) or "none"
    why = (f"needs {needed}; has {has}", "skills") if engineer.active else ("inactive", "active")
    return Candidate(
        engineer=engineer.id, eligible=False, checks=(Check(why[1], False, why[0]),),
        scores={}, total=0.0, distance_km=None, eta_minutes=None,
    )  # fmt: skip


# --- offering a job -------------------------------------------------------------------------


def auto_dispatch(
    session: Session, ticket: Ticket, rules: DecisionRules | None, *, now: datetime
) -> Decision | None:
    """Decide who gets ``ticket`` (new, on a locked row) and offer it to them; when nobody
    may, or the policy says a person decides, it waits in the dispatcher's queue with an alert.
    None: no dispatch policy applies (no dispatch.yaml, or the ticket was suppressed)."""
    setup = Setup.of(rules)
    if setup is None or ticket.state != State.new.value or ticket.needs_dispatcher:
        return None
    policy = setup.policy_for(ticket)
    if policy is None:
        return None
    decision = decide(
        job_for(session, ticket, setup), profiles(session, now), policy,
        now=now, tz=setup.tz, certified_skills=setup.certified_skills,
    )  # fmt: skip
    record(session, ticket, decision, kind="auto", actor=DISPATCH_ACTOR, now=now,
           rules_version=setup.rules_version)  # fmt: skip
    if decision.chosen:
        _offer(session, ticket, decision.chosen, policy, now, actor=DISPATCH_ACTOR,
               data={"policy": policy.id, "relaxed": list(decision.relaxed)})  # fmt: skip
    elif decision.mode == "grab":
        eligible = [c.engineer for c in decision.ranked if c.eligible]
        history.record(
            session, ticket, at=now, actor=DISPATCH_ACTOR, action="open_for_grab",
            note=decision.reason, data={"policy": policy.id, "eligible": eligible},
        )  # fmt: skip
        for name in eligible[:50]:
            notifications.enqueue(
                session, kind="grab_open", recipient=name, now=now, ticket_id=ticket.id,
                payload={"ticket": ticket.id, "title": ticket.title, "priority": ticket.priority,
                         "location": ticket.location},
            )  # fmt: skip
    else:
        to_queue(session, ticket, now, decision.reason, policy=policy.id)
    return decision


def to_queue(
    session: Session, ticket: Ticket, now: datetime, why: str, *, policy: str | None
) -> None:
    """The job waits for a dispatcher to decide by hand; they are told why."""
    ticket.needs_dispatcher = True
    ticket.updated_at = now
    history.record(session, ticket, at=now, actor=DISPATCH_ACTOR, action="dispatcher_queue",
                   note=why, data={"policy": policy})  # fmt: skip
    notifications.enqueue(
        session, kind="alert", recipient="role:dispatcher", now=now, ticket_id=ticket.id,
        payload={"ticket": ticket.id, "title": ticket.title, "priority": ticket.priority,
                 "why": why},
    )  # fmt: skip


def _offer(
    session: Session,
    ticket: Ticket,
    engineers: Sequence[str],
    policy: DispatchPolicy | None,
    now: datetime,
    *,
    actor: str,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """The lifecycle's dispatch (派单) to one engineer, or to several at once (the first to
    accept wins), and an offer each that lapses when unanswered."""
    if ticket.state == State.dispatched.value:
        offers.withdraw_all(session, ticket, now, f"moved by {actor}")
    single = engineers[0] if len(engineers) == 1 else None
    apply_step(
        session, ticket,
        Step(Action.dispatch, engineer=single, offer_to=tuple(engineers), reason=reason,
             data={**(data or {}), "offered_to": list(engineers)}),
        actor=actor, now=now,
    )  # fmt: skip
    within = timedelta(seconds=policy.accept_within) if policy else DEFAULT_ACCEPT_WITHIN
    offers.make(session, ticket, engineers, policy=policy.id if policy else None,
                accept_within=within, now=now)  # fmt: skip
    ticket.needs_dispatcher = False


def after_refusal(
    session: Session, ticket: Ticket, rules: DecisionRules | None, now: datetime
) -> None:
    """A declined or lapsed offer sent the job back (new): offer it to the next best, unless
    the policy's misses are used up, then it goes to the dispatcher with an alert."""
    if ticket.state != State.new.value:
        return
    setup = Setup.of(rules)
    policy = setup.policy_for(ticket) if setup else None
    if policy is not None and ticket.dispatch_misses >= policy.max_misses:
        to_queue(
            session, ticket, now,
            f"{ticket.dispatch_misses} offer(s) declined or unanswered "
            f"(the {policy.id} policy allows {policy.max_misses})",
            policy=policy.id,
        )  # fmt: skip
        return
    auto_dispatch(session, ticket, rules, now=now)


def lapse_due(session: Session, ticket_id: int, rules: DecisionRules | None, now: datetime) -> int:
    """End this ticket's offers that were not answered in time (the ticket row locked); when
    none is left open, the job goes back and on to the next engineer. Returns how many lapsed."""
    ticket = lock_ticket(session, ticket_id)
    due = [o for o in offers.open_offers(session, ticket.id) if o.expires_at <= now]
    if not due:
        return 0
    for o in due:
        o.state, o.decided_at = "lapsed", now
        notifications.enqueue(session, kind="offer_lapsed", recipient=o.engineer, now=now,
                              ticket_id=ticket.id, payload={"ticket": ticket.id})  # fmt: skip
    lapsed = {o.engineer for o in due}
    ticket.offered_to = [e for e in ticket.offered_to or [] if e not in lapsed]
    ticket.dispatch_misses += len(due)
    if ticket.offered_to or ticket.state != State.dispatched.value:
        history.record(session, ticket, at=now, actor=DISPATCH_ACTOR, action="offer_lapsed",
                       data={"engineers": sorted(lapsed)})  # fmt: skip
        return len(due)
    apply_step(
        session, ticket,
        Step(Action.decline, reason="no answer in time: " + ", ".join(sorted(lapsed)),
             data={"lapsed": sorted(lapsed)}),
        actor=DISPATCH_ACTOR, now=now,
    )  # fmt: skip
    after_refusal(session, ticket, rules, now)
    return len(due)


def tickets_with_lapsed_offers(session: Session, now: datetime, limit: int = 100) -> list[int]:
    """Tickets holding an offer past its time; on PostgreSQL the offers are taken with SKIP
    LOCKED, so several central processes each sweep different ones."""
    q = (
        select(DispatchOffer.ticket_id)
        .where(DispatchOffer.state == offers.OPEN, DispatchOffer.expires_at <= now)
        .order_by(DispatchOffer.expires_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    return sorted(set(session.execute(q).scalars()))


# --- a person decides -----------------------------------------------------------------------


def hand_dispatch(
    session: Session,
    ticket_id: int,
    caller: Caller,
    engineer: str,
    reason: str | None,
    rules: DecisionRules | None,
    now: datetime,
) -> Ticket:
    """A dispatcher or supervisor sends the job to ``engineer``. Picking someone the policy
    rules out (a failed constraint), or moving a job already on offer, is an override: a
    supervisor's, with a reason, recorded with what the decision would have been."""
    from central.services.tickets import may, visible_ticket

    ticket = visible_ticket(session, caller, ticket_id, lock=True)
    may(caller, Action.dispatch, ticket)
    setup = Setup.of(rules)
    policy = setup.policy_for(ticket) if setup else None
    found = profiles(session, now, [engineer])
    decision: Decision | None = None
    checked: Candidate | None = None
    if found and policy is not None and setup is not None:
        job = job_for(session, ticket, setup)
        job = Job(**{**job.__dict__, "exclude": frozenset()})  # a person may send it back
        everyone = profiles(session, now)
        decision = decide(job, everyone, policy, now=now, tz=setup.tz,
                          certified_skills=setup.certified_skills)  # fmt: skip
        checked = assess(job, found[0], policy, setup, now)
    failed = [k for k in (checked.checks if checked else ()) if not k.passed]
    moving = ticket.state == State.dispatched.value
    override = bool(failed) or moving
    if override:
        if caller.role is not Role.supervisor:
            why = (
                "it is already on offer" if moving
                else "they fail " + ", ".join(f"{k.name} ({k.detail})" for k in failed)
            )  # fmt: skip
            raise Forbidden(f"sending this job to {engineer} is an override ({why}): only a "
                            "supervisor may, with a reason")  # fmt: skip
        if not reason or not reason.strip():
            raise MissingInput(Action.dispatch, ["reason"])
    recommended = [c.engineer for c in decision.ranked if c.eligible][:3] if decision else []
    data: dict[str, Any] = {"policy": policy.id if policy else None, "recommended": recommended}
    if override:
        data["override"] = True
        data["failed"] = [f"{k.name}: {k.detail}" for k in failed]
    if not found:
        data["profile"] = "no dispatch profile: constraints not checked"
    if decision is not None:
        record(session, ticket, decision, kind="override" if override else "manual",
               actor=caller.user, now=now, rules_version=setup.rules_version if setup else None,
               chosen=[engineer], reason=reason or f"sent by hand to {engineer}")  # fmt: skip
    _offer(session, ticket, [engineer], policy, now, actor=caller.user, reason=reason, data=data)
    return ticket


# --- grab mode (抢单) -------------------------------------------------------------------------


def grab_on(policy: DispatchPolicy, backlog: int, now: datetime, tz: tzinfo) -> bool:
    """Whether engineers may claim this policy's open jobs now."""
    if policy.mode == "grab":
        return True
    g = policy.grab
    if g is None:
        return False
    if g.backlog_at_least is not None and backlog >= g.backlog_at_least:
        return True
    if g.between is not None:
        t = now.astimezone(tz).time()
        start, end = g.between
        return start <= t < end if start < end else (t >= start or t < end)
    return False


def _waiting(session: Session) -> list[Ticket]:
    return list(
        session.execute(
            select(Ticket)
            .where(Ticket.state == State.new.value, Ticket.assignee.is_(None))
            .order_by(Ticket.id)
        ).scalars()
    )


def grab_pool(
    session: Session, engineer: str, rules: DecisionRules | None, now: datetime
) -> list[tuple[Ticket, Candidate]]:
    """The open jobs ``engineer`` may claim now, best match first."""
    setup = Setup.of(rules)
    me = profiles(session, now, [engineer])
    if setup is None or not me:
        return []
    waiting = _waiting(session)
    backlog: dict[str, int] = {}
    for t in waiting:
        backlog[t.dispatch_policy or ""] = backlog.get(t.dispatch_policy or "", 0) + 1
    out = []
    for t in waiting:
        policy = setup.policy_for(t)
        if policy is None or not grab_on(policy, backlog[t.dispatch_policy or ""], now, setup.tz):
            continue
        mine = assess(job_for(session, t, setup), me[0], policy, setup, now)
        if mine.eligible:
            out.append((t, mine))
    out.sort(key=lambda tc: (-tc[1].total, tc[0].id))
    return out


class ClaimRefused(ValueError):
    """The claim lost (someone was first) or is not allowed; the message says which."""


def claim(
    session: Session, ticket_id: int, caller: Caller, rules: DecisionRules | None, now: datetime
) -> Ticket:
    """An engineer grabs an open job. Exactly one claim wins under any concurrency: the ticket
    row is locked (a second claimer waits, then finds it taken), and the engineer's own row is
    locked too so their claim limit holds across parallel claims."""
    if caller.role is not Role.engineer:
        raise Forbidden("only engineers grab jobs (抢单)")
    setup = Setup.of(rules)
    if setup is None:
        raise ClaimRefused("no dispatch rules are live: nothing is open for grabbing")
    me_row = session.execute(
        select(Engineer).where(Engineer.username == caller.user).with_for_update()
    ).scalar_one_or_none()
    if me_row is None or not me_row.active:
        raise Forbidden(f"{caller.user} has no active dispatch profile")
    ticket = lock_ticket(session, ticket_id)
    if ticket.state != State.new.value or ticket.assignee is not None:
        raise ClaimRefused(f"ticket #{ticket_id} is already taken ({ticket.state})")
    policy = setup.policy_for(ticket)
    backlog = len(_waiting(session))
    if policy is None or not grab_on(policy, backlog, now, setup.tz):
        raise ClaimRefused(f"ticket #{ticket_id} is not open for grabbing now")
    (me,) = profiles(session, now, [caller.user])
    job = job_for(session, ticket, setup)
    mine = assess(job, me, policy, setup, now)
    if not mine.eligible:
        failed = [f"{k.name} ({k.detail})" for k in mine.checks if not k.passed]
        raise Forbidden(f"{caller.user} may not take ticket #{ticket_id}: " + ", ".join(failed))
    limit = policy.grab.claim_limit if policy.grab else 1
    held = session.execute(
        select(func.count())
        .select_from(Ticket)
        .join(DispatchDecisionRow, DispatchDecisionRow.ticket_id == Ticket.id)
        .where(
            DispatchDecisionRow.kind == "claim",
            DispatchDecisionRow.actor == caller.user,
            Ticket.assignee == caller.user,
            Ticket.state.in_([s.value for s in WORKING]),
        )
    ).scalar_one()
    if held >= limit:
        raise ClaimRefused(f"{caller.user} already holds {held} grabbed job(s); the "
                           f"{policy.id} policy allows {limit} at a time")  # fmt: skip
    d = Decision(
        ticket_id=ticket.id, policy=policy.id, mode=policy.mode, relaxed=(), ranked=(mine,),
        chosen=(caller.user,), reason=f"grabbed by {caller.user}",
    )  # fmt: skip
    record(session, ticket, d, kind="claim", actor=caller.user, now=now,
           rules_version=setup.rules_version, chosen=[caller.user],
           reason=f"grabbed by {caller.user}")  # fmt: skip
    apply_step(session, ticket, Step(Action.accept, data={"claimed": True, "policy": policy.id}),
               actor=caller.user, now=now)  # fmt: skip
    return ticket


# --- explaining -----------------------------------------------------------------------------


def decisions_of(session: Session, ticket_id: int) -> list[DispatchDecisionRow]:
    return list(
        session.execute(
            select(DispatchDecisionRow)
            .where(DispatchDecisionRow.ticket_id == ticket_id)
            .order_by(DispatchDecisionRow.id)
        ).scalars()
    )


def offers_of(session: Session, ticket_id: int) -> list[DispatchOffer]:
    return list(
        session.execute(
            select(DispatchOffer)
            .where(DispatchOffer.ticket_id == ticket_id)
            .order_by(DispatchOffer.id)
        ).scalars()
    )


def valid_position(lat: float, lon: float) -> None:
    if not (math.isfinite(lat) and -90 <= lat <= 90):
        raise BadInput("lat", "a latitude is between -90 and 90")
    if not (math.isfinite(lon) and -180 <= lon <= 180):
        raise BadInput("lon", "a longitude is between -180 and 180")


# --- a backlog at once ------------------------------------------------------------------------


def assign_backlog(
    session: Session,
    ticket_ids: Sequence[int] | None,
    caller: Caller,
    rules: DecisionRules | None,
    now: datetime,
) -> dict[str, Any]:
    """Offer a backlog (the given tickets, or every one waiting in the dispatcher's queue) at
    the least total cost under the hard constraints, one job per free slot of each engineer;
    reports that cost against assigning one by one (greedy) on the same jobs."""
    from central.domain.batch_assign import assign_batch, greedy_batch

    setup = Setup.of(rules)
    if setup is None:
        return {"assigned": {}, "unassigned": [], "total_cost": 0.0, "greedy_cost": 0.0}
    q = select(Ticket).where(Ticket.state == State.new.value, Ticket.assignee.is_(None))
    q = (
        q.where(Ticket.id.in_(list(ticket_ids)))
        if ticket_ids
        else q.where(Ticket.needs_dispatcher.is_(True))
    )
    tickets = {
        t.id: t
        for t in session.execute(q.order_by(Ticket.id).with_for_update()).scalars()
        if setup.policy_for(t) is not None
    }
    if not tickets:
        return {"assigned": {}, "unassigned": [], "total_cost": 0.0, "greedy_cost": 0.0}
    jobs = [job_for(session, t, setup) for t in tickets.values()]
    people = profiles(session, now)
    by_job = {j.ticket_id: setup.policy_for(tickets[j.ticket_id]) for j in jobs}

    def policy_of(job: Job) -> DispatchPolicy:
        p = by_job[job.ticket_id]
        assert p is not None
        return p

    args = {"now": now, "tz": setup.tz, "certified_skills": setup.certified_skills}
    best = assign_batch(jobs, people, policy_of, **args)  # type: ignore[arg-type]
    greedy = greedy_batch(jobs, people, policy_of, **args)  # type: ignore[arg-type]
    for tid, engineer in sorted(best.assignments.items()):
        ticket = tickets[tid]
        policy = by_job[tid]
        why = f"batch assignment by {caller.user}: least total cost over {len(jobs)} job(s)"
        session.add(
            DispatchDecisionRow(
                ticket_id=tid, at=now, kind="batch", actor=caller.user,
                policy=policy.id if policy else None, mode="offer",
                rules_version=setup.rules_version, relaxed=[], chosen=[engineer], reason=why,
                ranked=[], explanation=[f"{engineer} was chosen by the batch optimiser: {why}."],
            )
        )  # fmt: skip
        _offer(session, ticket, [engineer], policy, now, actor=caller.user,
               data={"batch": True, "policy": policy.id if policy else None})  # fmt: skip
    return {
        "assigned": {str(k): v for k, v in sorted(best.assignments.items())},
        "unassigned": list(best.unassigned),
        "total_cost": round(best.total_cost, 6),
        "greedy_cost": round(greedy.total_cost, 6),
        "greedy_assigned": len(greedy.assignments),
    }
