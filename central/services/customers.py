"""The customer's side: the private link (a token) that follows a ticket, confirming or rejecting
the fix through it, and the satisfaction rating (CSAT)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.domain.lifecycle import State
from central.domain.secrets import digest, new_token
from central.services import history
from central.services.tickets import BadInput, TicketNotFound
from central.storage.models import Ticket

#: A rating is taken once the work is done and until a month after closing.
RATABLE = frozenset({State.completed, State.pending_verification, State.verified, State.closed})


def ticket_for_link(session: Session, token: str, *, lock: bool = False) -> Ticket:
    query = select(Ticket).where(Ticket.customer_token_hash == digest(token))
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    ticket = session.execute(query).scalar_one_or_none()
    if ticket is None:
        raise TicketNotFound(0)
    return ticket


def issue_link(session: Session, ticket: Ticket, *, actor: str, now: datetime) -> str:
    """A new private link for the ticket's customer; the previous one stops working."""
    token = new_token("flc")
    ticket.customer_token_hash = digest(token)
    ticket.updated_at = now
    history.record(
        session,
        ticket,
        at=now,
        actor=actor,
        action="customer_link",
        note="a new private link was issued to the customer",
    )
    return token


def rate(
    session: Session,
    ticket: Ticket,
    score: int,
    comment: str | None,
    *,
    actor: str,
    now: datetime,
) -> Ticket:
    if State(ticket.state) not in RATABLE:
        raise BadInput("score", f"the job can be rated once it is completed (now {ticket.state})")
    if ticket.csat_score is not None:
        raise BadInput("score", f"ticket {ticket.id} was already rated {ticket.csat_score}/5")
    if not 1 <= score <= 5:
        raise BadInput("score", "1 to 5")
    ticket.csat_score = score
    ticket.csat_comment = comment
    ticket.rated_at = now
    ticket.updated_at = now
    history.record(
        session,
        ticket,
        at=now,
        actor=actor,
        action="rated",
        note=comment,
        data={"score": score},
    )
    return ticket
