"""Ticket actions: every state change goes through the lifecycle table and leaves history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.domain.lifecycle import TERMINAL, Action, State, next_state
from central.services import history
from central.storage.models import Ticket


class TicketNotFound(LookupError):
    def __init__(self, ticket_id: int) -> None:
        super().__init__(f"ticket {ticket_id} does not exist")
        self.ticket_id = ticket_id


def lock_ticket(session: Session, ticket_id: int) -> Ticket:
    ticket = session.execute(
        select(Ticket).where(Ticket.id == ticket_id).with_for_update()
    ).scalar_one_or_none()
    if ticket is None:
        raise TicketNotFound(ticket_id)
    return ticket


def act(
    session: Session,
    ticket_id: int,
    action: Action,
    *,
    actor: str,
    now: datetime,
    note: str | None = None,
) -> Ticket:
    """Apply ``action`` to the ticket or raise InvalidTransition; nothing is written on error."""
    ticket = lock_ticket(session, ticket_id)
    before = State(ticket.state)
    after = next_state(before, action)
    ticket.state = after.value
    ticket.state_entered_at = now
    ticket.updated_at = now
    if action is Action.accept:
        ticket.assignee = actor
    elif action is Action.decline:
        ticket.assignee = None
    if after in TERMINAL:
        ticket.closed_at = now
        ticket.open_episode_key = None  # a new fault on this asset now opens a new ticket
    elif before in TERMINAL:
        ticket.closed_at = None
    history.append(
        session,
        ticket,
        at=now,
        actor=actor,
        action=action.value,
        from_state=before.value,
        to_state=after.value,
        note=note,
    )
    return ticket
