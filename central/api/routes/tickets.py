"""Tickets: list, read, and the engineer/supervisor actions a mobile app calls."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from central.api.deps import SessionDep
from central.api.schemas import (
    ActorIn,
    CompleteIn,
    ProblemPublic,
    TicketDetail,
    TicketPage,
    TicketPublic,
)
from central.domain.lifecycle import Action, InvalidTransition, parse_state
from central.services.tickets import TicketNotFound, act
from central.storage.models import Ticket

router = APIRouter(prefix="/tickets", tags=["tickets"])

_ERRORS = {
    404: {"model": ProblemPublic, "description": "no such ticket"},
    409: {"model": ProblemPublic, "description": "not allowed in the ticket's current state"},
}


@router.get("", response_model=TicketPage)
def list_tickets(
    session: SessionDep,
    state: Annotated[str | None, Query(description="state key or label, e.g. new or 新建")] = None,
    asset: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> TicketPage:
    query = select(Ticket)
    if state is not None:
        try:
            query = query.where(Ticket.state == parse_state(state).value)
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"state: {exc}") from None
    if asset is not None:
        query = query.where(Ticket.asset_id == asset)
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = session.execute(query.order_by(Ticket.id.desc()).limit(limit).offset(offset)).scalars()
    return TicketPage(
        items=[TicketPublic.of(t) for t in rows], total=total, limit=limit, offset=offset
    )


@router.get("/{ticket_id}", response_model=TicketDetail, responses={404: _ERRORS[404]})
def get_ticket(ticket_id: int, session: SessionDep) -> TicketDetail:
    ticket = session.execute(
        select(Ticket).where(Ticket.id == ticket_id).options(selectinload(Ticket.history))
    ).scalar_one_or_none()
    if ticket is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"ticket {ticket_id} does not exist")
    return TicketDetail.of(ticket)


def _act(
    session: SessionDep, ticket_id: int, action: Action, actor: str, note: str | None
) -> TicketPublic:
    try:
        with session.begin():
            ticket = act(session, ticket_id, action, actor=actor, note=note, now=datetime.now(UTC))
            return TicketPublic.of(ticket)
    except TicketNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except InvalidTransition as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


@router.post("/{ticket_id}/accept", response_model=TicketPublic, responses=_ERRORS)
def accept(ticket_id: int, body: ActorIn, session: SessionDep) -> TicketPublic:
    """The engineer takes the job (接单)."""
    return _act(session, ticket_id, Action.accept, body.actor, body.note)


@router.post("/{ticket_id}/complete", response_model=TicketPublic, responses=_ERRORS)
def complete(ticket_id: int, body: CompleteIn, session: SessionDep) -> TicketPublic:
    """The engineer reports the job done (完工), with what was found and done."""
    note = body.report if body.note is None else f"{body.report}\n\n{body.note}"
    return _act(session, ticket_id, Action.complete, body.actor, note)


@router.post("/{ticket_id}/close", response_model=TicketPublic, responses=_ERRORS)
def close(ticket_id: int, body: ActorIn, session: SessionDep) -> TicketPublic:
    """A supervisor reviews the completed job and closes it (关闭)."""
    return _act(session, ticket_id, Action.close, body.actor, body.note)
