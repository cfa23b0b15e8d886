"""Applying one edge event inside one transaction: exactly-once effect by the event id.

An opening event (fault opened, comm lost, maintenance due) opens a ticket for its (site, asset,
rule) episode, or attaches to the episode's open ticket; a clearing event marks the fault cleared
on that ticket. The inbox row and the ticket change commit together, so a redelivered event finds
its inbox row and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from central.domain.lifecycle import Action, State
from central.services import dispatching, history
from central.services.decisions import apply_rules
from central.services.live_rules import LiveRules
from central.services.tickets import Step, apply_step
from central.storage.models import DeadLetter, EdgeEvent, Ticket, TicketEvent
from fieldloop.messages import OPENING_KINDS, AckResult, Event, EventKind

SYSTEM_ACTOR = "system:edge-ingest"

_PRIORITY_BY_SEVERITY = {"critical": "P1", "major": "P2", "minor": "P3"}
_CATEGORY_BY_KIND = {
    EventKind.fault_opened: "equipment_fault",
    EventKind.comm_lost: "communication",
    EventKind.maintenance_due: "preventive_maintenance",
    EventKind.flapping: "equipment_fault",
}


RECOVERED_BEFORE_DISPATCH = "recovered before dispatch"


@dataclass(frozen=True)
class IngestPolicy:
    """How edge events turn into tickets (settings: FIELDLOOP_IOT_REOPEN_WINDOW)."""

    # The same fault on the same asset this soon after its ticket closed reopens that ticket:
    # it was not really fixed, and one record of it is what the service review needs.
    reopen_window: timedelta = timedelta(hours=24)
    # A fault that clears before anyone was sent closes its ticket by itself.
    auto_resolve: bool = True
    # The planners' decision rules (classification, priority) for new tickets; None: none.
    rules: LiveRules | None = None


DEFAULT_POLICY = IngestPolicy()


@dataclass(frozen=True)
class IngestOutcome:
    result: AckResult
    ticket_id: int | None
    created: bool = False
    cleared: bool = False
    reopened: bool = False
    resolved: bool = False


def episode_key(event: Event) -> str:
    return f"{event.site}|{event.asset}|{event.rule_id}"


def _describe(event: Event) -> str:
    parts = [event.title + "."]
    if event.metric and event.value is not None:
        cmp = f" (threshold {event.threshold:g})" if event.threshold is not None else ""
        parts.append(f"{event.metric} = {event.value:g}{cmp}.")
    parts.append(
        f"Detected by rule {event.rule_id} on device {event.device} at "
        f"{event.event_time.isoformat(timespec='seconds')}."
    )
    return " ".join(parts)


def apply_event(
    session: Session,
    event: Event,
    received_at: datetime,
    policy: IngestPolicy = DEFAULT_POLICY,
) -> IngestOutcome:
    seen = session.get(EdgeEvent, event.id, with_for_update=True)
    if seen is not None:
        seen.duplicates += 1  # counted, never applied twice
        return IngestOutcome(AckResult.duplicate, seen.ticket_id)
    key = episode_key(event)
    ticket = session.execute(
        select(Ticket)
        .where(Ticket.open_episode_key == key)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if ticket is None:
        ticket = _ticket_of_neighbour(session, event)
    created = reopened = False
    if ticket is None and event.kind in OPENING_KINDS:
        ticket = _recent_ticket(session, event, received_at - policy.reopen_window)
        if ticket is not None:
            _reopen(session, ticket, event, key, received_at)
            reopened = True
    if ticket is None and event.kind in OPENING_KINDS:
        ticket = _open_ticket(session, event, key, received_at)
        created = True
        if policy.rules is not None:
            apply_rules(
                session,
                ticket,
                policy.rules.current,
                now=received_at,
                extra={
                    "fault.kind": event.kind.value,
                    "fault.metric": event.metric,
                    "fault.value": event.value,
                },
            )
            dispatching.auto_dispatch(session, ticket, policy.rules.current, now=received_at)
    was_active = ticket.fault_active if ticket is not None and not created else False
    session.add(
        EdgeEvent(
            id=event.id,
            site=event.site,
            device=event.device,
            asset=event.asset,
            rule_id=event.rule_id,
            kind=event.kind.value,
            seq=event.seq,
            event_time=event.event_time,
            received_at=received_at,
            ticket_id=ticket.id if ticket is not None else None,
            payload=event.model_dump(mode="json", by_alias=True),
        )
    )
    session.flush()
    if ticket is None:  # a clear whose opening event has not arrived yet: kept, adopted later
        return IngestOutcome(AckResult.committed, None)
    _adopt_overtaking_events(session, ticket, event)
    if not created:
        ticket.updated_at = received_at
        history.record(
            session,
            ticket,
            at=received_at,
            actor=SYSTEM_ACTOR,
            action=event.kind.value,
            note=f"{event.metric or event.rule_id} from {event.device} at "
            f"{event.event_time.isoformat()}",
            data={"event_id": event.id, "seq": event.seq, "value": event.value},
        )
    _derive_fault_state(session, ticket)
    cleared = was_active and not ticket.fault_active
    resolved = False
    if (
        cleared
        and policy.auto_resolve
        and State(ticket.state) in (State.new, State.reopened)
        and not _sent_since_opened(session, ticket)
    ):
        apply_step(
            session,
            ticket,
            Step(Action.auto_resolve, note=RECOVERED_BEFORE_DISPATCH, data={"event_id": event.id}),
            actor=SYSTEM_ACTOR,
            now=received_at,
        )
        resolved = True
    session.flush()
    return IngestOutcome(
        AckResult.committed,
        ticket.id,
        created=created,
        cleared=cleared,
        reopened=reopened,
        resolved=resolved,
    )


def _sent_since_opened(session: Session, ticket: Ticket) -> bool:
    """Whether anyone was dispatched to (or took) the ticket since it was opened or last
    reopened: a job transferred back to the queue after a visit was not "recovered before
    dispatch", even though it is new and unassigned again."""
    opened = (
        select(func.max(TicketEvent.seq))
        .where(TicketEvent.ticket_id == ticket.id, TicketEvent.action.in_(("created", "reopen")))
        .scalar_subquery()
    )
    sent = session.execute(
        select(TicketEvent.id)
        .where(
            TicketEvent.ticket_id == ticket.id,
            TicketEvent.action.in_((Action.dispatch.value, Action.accept.value)),
            TicketEvent.seq > opened,
        )
        .limit(1)
    ).first()
    return sent is not None


def _recent_ticket(session: Session, event: Event, since: datetime) -> Ticket | None:
    """The latest ticket of this (site, asset, rule) closed at or after ``since`` (cancelled
    tickets are not reopened: someone decided there was nothing to do)."""
    return session.execute(
        select(Ticket)
        .where(
            Ticket.site == event.site,
            Ticket.asset_id == event.asset,
            Ticket.rule_id == event.rule_id,
            Ticket.state == State.closed.value,
            Ticket.closed_at >= since,
        )
        .order_by(Ticket.closed_at.desc(), Ticket.id.desc())
        .limit(1)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def _reopen(session: Session, ticket: Ticket, event: Event, key: str, now: datetime) -> None:
    apply_step(
        session,
        ticket,
        Step(
            Action.reopen,
            reason=f"the same fault recurred within the reopen window ({event.kind.value} "
            f"from {event.device} at {event.event_time.isoformat()})",
            data={"event_id": event.id},
        ),
        actor=SYSTEM_ACTOR,
        now=now,
    )
    ticket.open_episode_key = key
    ticket.fault_active = True
    ticket.fault_cleared_at = None
    ticket.readings = dict(event.readings)


def _same_source(event: Event) -> tuple[ColumnElement[bool], ...]:
    return (
        EdgeEvent.site == event.site,
        EdgeEvent.device == event.device,
        EdgeEvent.rule_id == event.rule_id,
    )


def _ticket_of_neighbour(session: Session, event: Event) -> Ticket | None:
    """The (closed) ticket an event belongs to when its episode has no open ticket any more: a
    stale opening event joins the ticket of the next event from its source; a clear joins the
    ticket of the previous one. Edge sequence numbers, not arrival order, decide."""
    if event.kind in OPENING_KINDS:
        order, cmp = EdgeEvent.seq.asc(), EdgeEvent.seq > event.seq
    else:
        order, cmp = EdgeEvent.seq.desc(), EdgeEvent.seq < event.seq
    ticket_id = session.execute(
        select(EdgeEvent.ticket_id)
        .where(*_same_source(event), cmp, EdgeEvent.ticket_id.is_not(None))
        .order_by(order)
        .limit(1)
    ).scalar_one_or_none()
    if ticket_id is None:
        return None
    return session.execute(
        select(Ticket)
        .where(Ticket.id == ticket_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()


def _adopt_overtaking_events(session: Session, ticket: Ticket, event: Event) -> None:
    """Events of this source that arrived before their opening event (a clear that overtook it
    on a resend) join the ticket once an earlier event of theirs is on it."""
    first = session.execute(
        select(func.min(EdgeEvent.seq)).where(
            *_same_source(event), EdgeEvent.ticket_id == ticket.id
        )
    ).scalar_one()
    orphans = session.execute(
        select(EdgeEvent).where(
            *_same_source(event), EdgeEvent.seq > first, EdgeEvent.ticket_id.is_(None)
        )
    ).scalars()
    for orphan in orphans:
        orphan.ticket_id = ticket.id


def _derive_fault_state(session: Session, ticket: Ticket) -> None:
    """Fault state from the ticket's events in edge order, never from arrival order: the same
    events give the same state however they were delivered."""
    events = session.execute(
        select(EdgeEvent.device, EdgeEvent.kind, EdgeEvent.seq, EdgeEvent.event_time)
        .where(EdgeEvent.ticket_id == ticket.id)
        .order_by(EdgeEvent.device, EdgeEvent.seq)
    ).all()
    opening = {k.value for k in OPENING_KINDS}
    latest: dict[str, tuple[str, datetime]] = {}
    opened_at: list[datetime] = []
    for device, kind, _seq, at in events:
        latest[device] = (kind, at)
        if kind in opening:
            opened_at.append(at)
    ticket.occurrences = max(len(opened_at), 1)
    ticket.fault_active = any(kind in opening for kind, _ in latest.values())
    if opened_at:
        ticket.fault_opened_at = min(opened_at)
    clears = [at for kind, at in latest.values() if kind not in opening]
    ticket.fault_cleared_at = None if ticket.fault_active or not clears else max(clears)


def _open_ticket(session: Session, event: Event, key: str, now: datetime) -> Ticket:
    ticket = Ticket(
        state=State.new.value,
        state_entered_at=now,
        source="iot",
        title=event.title[:200],
        description=_describe(event),
        category=_CATEGORY_BY_KIND.get(event.kind),
        priority=_PRIORITY_BY_SEVERITY.get(event.severity.value, "P4"),
        priority_source="intake",
        severity=event.severity.value,
        location=event.location,
        site=event.site,
        asset_id=event.asset,
        device_id=event.device,
        rule_id=event.rule_id,
        open_episode_key=key,
        fault_active=True,
        fault_opened_at=event.event_time,
        occurrences=1,
        readings=dict(event.readings),
        created_at=now,
        updated_at=now,
    )
    session.add(ticket)
    history.append(
        session,
        ticket,
        at=now,
        actor=SYSTEM_ACTOR,
        action="created",
        from_state=None,
        to_state=State.new.value,
        note=f"raised by {event.kind} from {event.site}/{event.device}",
        data={"event_id": event.id, "seq": event.seq, "value": event.value},
    )
    return ticket


def ingest(
    factory: sessionmaker[Session],
    event: Event,
    received_at: datetime,
    policy: IngestPolicy = DEFAULT_POLICY,
) -> IngestOutcome:
    """Apply the event in its own transaction. A unique-constraint race with another central
    replica (same event, or same episode opened at once) is retried: the retry sees the winner's
    rows and turns into a duplicate or an attach."""
    for attempt in range(3):
        try:
            with factory() as session, session.begin():
                return apply_event(session, event, received_at, policy)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def dead_letter(
    factory: sessionmaker[Session],
    *,
    source: str,
    topic: str | None,
    message_id: str | None,
    payload: bytes,
    reason: str,
    received_at: datetime,
) -> int:
    with factory() as session, session.begin():
        row = DeadLetter(
            received_at=received_at,
            source=source,
            topic=topic,
            message_id=message_id,
            payload=payload,
            reason=reason[:10_000],
        )
        session.add(row)
        session.flush()
        return row.id
