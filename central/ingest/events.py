"""Applying one edge event inside one transaction: exactly-once effect by the event id.

An opening event (fault opened, comm lost, maintenance due) opens a ticket for its (site, asset,
rule) episode, or attaches to the episode's open ticket; a clearing event marks the fault cleared
on that ticket. The inbox row and the ticket change commit together, so a redelivered event finds
its inbox row and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from central.domain.lifecycle import State
from central.services import history
from central.storage.models import DeadLetter, EdgeEvent, Ticket
from fieldloop.messages import CLEARING_KINDS, OPENING_KINDS, AckResult, Event, EventKind

SYSTEM_ACTOR = "system:edge-ingest"

_PRIORITY_BY_SEVERITY = {"critical": "P1", "major": "P2", "minor": "P3"}
_CATEGORY_BY_KIND = {
    EventKind.fault_opened: "equipment_fault",
    EventKind.comm_lost: "communication",
    EventKind.maintenance_due: "preventive_maintenance",
}


@dataclass(frozen=True)
class IngestOutcome:
    result: AckResult
    ticket_id: int | None
    created: bool = False
    cleared: bool = False


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


def apply_event(session: Session, event: Event, received_at: datetime) -> IngestOutcome:
    seen = session.get(EdgeEvent, event.id)
    if seen is not None:
        return IngestOutcome(AckResult.duplicate, seen.ticket_id)
    key = episode_key(event)
    ticket = session.execute(
        select(Ticket).where(Ticket.open_episode_key == key).with_for_update()
    ).scalar_one_or_none()
    if ticket is None and event.kind in CLEARING_KINDS:
        # The ticket may have been closed (or cancelled) while the fault was still active:
        # its clear still belongs on that ticket's record.
        ticket = session.execute(
            select(Ticket)
            .where(
                Ticket.site == event.site,
                Ticket.asset_id == event.asset,
                Ticket.rule_id == event.rule_id,
                Ticket.fault_active.is_(True),
            )
            .order_by(Ticket.id.desc())
            .limit(1)
            .with_for_update()
        ).scalar_one_or_none()
    created = cleared = False
    if event.kind in OPENING_KINDS:
        if ticket is None:
            ticket = _open_ticket(session, event, key, received_at)
            created = True
        elif not ticket.fault_active:
            ticket.fault_active = True
            ticket.occurrences += 1
            ticket.updated_at = received_at
            history.append(
                session,
                ticket,
                at=received_at,
                actor=SYSTEM_ACTOR,
                action="fault_recurred",
                from_state=ticket.state,
                to_state=ticket.state,
                note=f"{event.kind} again at {event.event_time.isoformat()}",
                data={"event_id": event.id, "value": event.value},
            )
        if created and _cleared_later(session, event):
            ticket.fault_active = False  # its clear overtook it on the way here
    elif event.kind in CLEARING_KINDS and ticket is not None and ticket.fault_active:
        ticket.fault_active = False
        ticket.fault_cleared_at = event.event_time
        ticket.updated_at = received_at
        cleared = True
        history.append(
            session,
            ticket,
            at=received_at,
            actor=SYSTEM_ACTOR,
            action=event.kind.value,
            from_state=ticket.state,
            to_state=ticket.state,
            note=f"{event.metric or event.rule_id} normal again at {event.event_time.isoformat()}",
            data={"event_id": event.id, "value": event.value},
        )
    session.flush()
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
    return IngestOutcome(
        AckResult.committed, ticket.id if ticket else None, created=created, cleared=cleared
    )


def _open_ticket(session: Session, event: Event, key: str, now: datetime) -> Ticket:
    ticket = Ticket(
        state=State.new.value,
        state_entered_at=now,
        source="iot",
        title=event.title[:200],
        description=_describe(event),
        category=_CATEGORY_BY_KIND.get(event.kind),
        priority=_PRIORITY_BY_SEVERITY.get(event.severity.value, "P4"),
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


def _cleared_later(session: Session, event: Event) -> bool:
    later = session.execute(
        select(EdgeEvent.id)
        .where(
            EdgeEvent.site == event.site,
            EdgeEvent.device == event.device,
            EdgeEvent.rule_id == event.rule_id,
            EdgeEvent.kind.in_([k.value for k in CLEARING_KINDS]),
            EdgeEvent.seq > event.seq,
        )
        .limit(1)
    ).first()
    return later is not None


def ingest(factory: sessionmaker[Session], event: Event, received_at: datetime) -> IngestOutcome:
    """Apply the event in its own transaction. A unique-constraint race with another central
    replica (same event, or same episode opened at once) is retried: the retry sees the winner's
    rows and turns into a duplicate or an attach."""
    for attempt in range(3):
        try:
            with factory() as session, session.begin():
                return apply_event(session, event, received_at)
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
