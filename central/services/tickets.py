"""Ticket actions: every state change goes through the lifecycle and permission tables, records
who, when, where and why, and leaves a hash-chained history entry in the same transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.domain.lifecycle import (
    TERMINAL,
    Action,
    State,
    next_state,
    required_inputs,
)
from central.domain.permissions import Caller, Forbidden, Operation, authorize
from central.services import history, offers, sla
from central.storage.models import Attachment, Ticket

SYSTEM = "system"


class TicketNotFound(LookupError):
    def __init__(self, ticket_id: int) -> None:
        super().__init__(f"ticket {ticket_id} does not exist")
        self.ticket_id = ticket_id


class MissingInput(ValueError):
    """The action needs inputs the caller did not send; ``fields`` names them."""

    def __init__(self, action: Action, fields: list[str]) -> None:
        self.action = action
        self.fields = fields
        super().__init__(f"{action.value} needs: {', '.join(fields)}")


class BadInput(ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        self.field = field_name
        super().__init__(f"{field_name}: {message}")


@dataclass(frozen=True)
class Gps:
    lat: float
    lon: float
    accuracy_m: float | None = None


@dataclass(frozen=True)
class Step:
    """One action with what the caller sent along with it."""

    action: Action
    note: str | None = None
    reason: str | None = None
    location: Gps | None = None
    engineer: str | None = None  # dispatch: who is offered the job
    offer_to: tuple[str, ...] = ()  # dispatch to several at once: the first to accept wins
    department: str | None = None  # transfer: where it goes
    parts: list[dict[str, Any]] | None = None  # wait_parts: what is awaited
    report: str | None = None  # complete: what was found and done
    signature_sha256: str | None = None  # complete: the customer's signature (an attachment)
    data: dict[str, Any] = field(default_factory=dict)

    def provided(self) -> set[str]:
        names = ("reason", "engineer", "department", "parts", "report")
        given = {n for n in names if getattr(self, n)}
        if self.offer_to:
            given.add("engineer")
        return given


def lock_ticket(session: Session, ticket_id: int) -> Ticket:
    ticket = session.execute(
        select(Ticket)
        .where(Ticket.id == ticket_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if ticket is None:
        raise TicketNotFound(ticket_id)
    return ticket


def may(caller: Caller, what: Action | Operation, ticket: Ticket) -> None:
    authorize(
        caller,
        what,
        assignee=ticket.assignee,
        reporter=ticket.reporter_user,
        offered_to=ticket.offered_to or (),
    )


def visible_ticket(
    session: Session, caller: Caller, ticket_id: int, *, lock: bool = False
) -> Ticket:
    """The ticket if ``caller`` may see it. A ticket they may not see is reported as missing,
    so an engineer cannot probe other people's job numbers (BOLA)."""
    ticket = lock_ticket(session, ticket_id) if lock else session.get(Ticket, ticket_id)
    if ticket is None:
        raise TicketNotFound(ticket_id)
    try:
        may(caller, Operation.view, ticket)
    except Forbidden:
        raise TicketNotFound(ticket_id) from None
    return ticket


def act(
    session: Session,
    ticket_id: int,
    step: Step,
    *,
    caller: Caller | None,
    now: datetime,
    actor: str | None = None,
) -> Ticket:
    """Apply ``step`` to the ticket as ``caller`` (None: the system itself, e.g. edge ingest), or
    raise TicketNotFound / Forbidden / InvalidTransition / MissingInput / BadInput; nothing is
    written on error (the caller's transaction rolls back)."""
    if caller is None:
        ticket = lock_ticket(session, ticket_id)
        who = actor or SYSTEM
    else:
        ticket = visible_ticket(session, caller, ticket_id, lock=True)
        may(caller, step.action, ticket)
        who = actor or caller.user
    if step.action is Action.decline and offers.decline_one(session, ticket, who, step.reason, now):
        return ticket  # offered to several: the others may still take it
    return apply_step(session, ticket, step, actor=who, now=now)


def apply_step(
    session: Session, ticket: Ticket, step: Step, *, actor: str, now: datetime
) -> Ticket:
    before = State(ticket.state)
    after = next_state(before, step.action)
    missing = sorted(required_inputs(before, step.action) - step.provided())
    if missing:
        raise MissingInput(step.action, missing)
    data: dict[str, Any] = dict(step.data)
    _effects(session, ticket, step, before, actor, now, data)
    offers.settle(session, ticket, step.action, actor, now)
    ticket.state = after.value
    ticket.state_entered_at = now
    ticket.updated_at = now
    if after in TERMINAL:
        ticket.closed_at = now
        ticket.open_episode_key = None  # a new fault on this asset now opens a new ticket
    elif before in TERMINAL:
        ticket.closed_at = None
    if step.reason:
        data["reason"] = step.reason
    if step.location is not None:
        data["gps"] = {
            "lat": step.location.lat,
            "lon": step.location.lon,
            "accuracy_m": step.location.accuracy_m,
        }
    history.append(
        session,
        ticket,
        at=now,
        actor=actor,
        action=step.action.value,
        from_state=before.value,
        to_state=after.value,
        note=step.note,
        data=data,
    )
    sla.refresh(session, ticket, now)  # the clocks follow the log: move the timers with it
    return ticket


def _effects(
    session: Session,
    ticket: Ticket,
    step: Step,
    before: State,
    actor: str,
    now: datetime,
    data: dict[str, Any],
) -> None:
    """What each action changes besides the state (the record of it goes into ``data``)."""
    a = step.action
    if a is Action.dispatch:
        ticket.assignee = step.engineer  # None when offered to several at once
        data["engineer"] = step.engineer
    elif a is Action.accept and ticket.assignee is None:
        ticket.assignee = actor  # offered to several, or grabbed: whoever accepts takes it
    elif a is Action.decline:
        holders = ticket.offered_to or []
        data["engineer"] = ticket.assignee or (actor if actor in holders else None)
        ticket.assignee = None
    elif a is Action.wait_parts:
        data["parts"] = step.parts
    elif a is Action.complete:
        if step.signature_sha256 is not None:
            _require_signature(session, ticket, step.signature_sha256)
            ticket.signature_sha256 = step.signature_sha256
            data["signature_sha256"] = step.signature_sha256
        ticket.completion_report = step.report
        data["report"] = step.report
    elif a is Action.confirm:
        ticket.verified_at = now
    elif a is Action.reject:
        ticket.reopen_count += 1
        ticket.verified_at = None
    elif a is Action.reopen:
        ticket.reopen_count += 1
        ticket.verified_at = None
        ticket.resolution = None
    elif a is Action.close:
        if before is not State.verified:
            data["without_customer_confirmation"] = True
    elif a is Action.transfer:
        data["from_department"] = ticket.department
        data["to_department"] = step.department
        data["engineer"] = ticket.assignee
        ticket.department = step.department
        ticket.assignee = None
        ticket.transfers += 1
    elif a is Action.auto_resolve:
        ticket.resolution = step.note


def _require_signature(session: Session, ticket: Ticket, sha256: str) -> None:
    found = session.execute(
        select(Attachment.id).where(
            Attachment.ticket_id == ticket.id,
            Attachment.sha256 == sha256,
            Attachment.kind == "signature",
        )
    ).first()
    if found is None:
        raise BadInput(
            "signature_sha256",
            f"no signature {sha256[:12]}… is attached to ticket {ticket.id}; upload the image "
            "first (POST /tickets/{id}/attachments with kind=signature)",
        )
