"""Offers of a job to engineers: who holds one, until when, and what became of it.

A dispatched ticket carries the engineers holding an open offer (``offered_to``); each offer is a
row that ends accepted, declined, lapsed (no answer in time) or withdrawn (someone else took
it, or a supervisor moved the job). Everything here runs in the caller's transaction on a locked
ticket; the notifications it writes are sent after commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from central.domain.lifecycle import Action
from central.services import history, notifications
from central.storage.models import DispatchOffer, Ticket

OPEN = "open"


def open_offers(session: Session, ticket_id: int) -> list[DispatchOffer]:
    return list(
        session.execute(
            select(DispatchOffer)
            .where(DispatchOffer.ticket_id == ticket_id, DispatchOffer.state == OPEN)
            .order_by(DispatchOffer.id)
        ).scalars()
    )


def passed_over(session: Session, ticket_id: int) -> frozenset[str]:
    """Engineers who declined this job or let its offer lapse: not offered it again."""
    return frozenset(
        session.execute(
            select(DispatchOffer.engineer).where(
                DispatchOffer.ticket_id == ticket_id,
                DispatchOffer.state.in_(("declined", "lapsed")),
            )
        ).scalars()
    )


def make(
    session: Session,
    ticket: Ticket,
    engineers: Sequence[str],
    *,
    policy: str | None,
    accept_within: timedelta,
    now: datetime,
) -> list[DispatchOffer]:
    """Offer ``ticket`` to ``engineers`` (in the order given) until ``now + accept_within``."""
    last = session.execute(
        select(func.max(DispatchOffer.round)).where(DispatchOffer.ticket_id == ticket.id)
    ).scalar_one()
    rnd = (last or 0) + 1
    rows = []
    for name in engineers:
        row = DispatchOffer(
            ticket_id=ticket.id, engineer=name, round=rnd, policy=policy, offered_at=now,
            expires_at=now + accept_within, state=OPEN,
        )  # fmt: skip
        session.add(row)
        rows.append(row)
        notifications.enqueue(
            session, kind="offer", recipient=name, now=now, ticket_id=ticket.id,
            payload={
                "ticket": ticket.id, "title": ticket.title, "location": ticket.location,
                "priority": ticket.priority, "category": ticket.category,
                "expires_at": (now + accept_within).isoformat(), "round": rnd,
                "shared_with": len(engineers) - 1,
            },
        )  # fmt: skip
    ticket.offered_to = list(engineers)
    return rows


def _close(
    session: Session, ticket: Ticket, state: str, now: datetime, engineers: Sequence[str] | None
) -> list[str]:
    q = update(DispatchOffer).where(
        DispatchOffer.ticket_id == ticket.id, DispatchOffer.state == OPEN
    )
    if engineers is not None:
        q = q.where(DispatchOffer.engineer.in_(list(engineers)))
    gone = [o.engineer for o in open_offers(session, ticket.id)]
    if engineers is not None:
        gone = [e for e in gone if e in engineers]
    session.execute(q.values(state=state, decided_at=now))
    ticket.offered_to = [e for e in (ticket.offered_to or []) if e not in gone]
    return gone


def withdraw_all(session: Session, ticket: Ticket, now: datetime, why: str) -> list[str]:
    """End every open offer on ``ticket`` (someone took it, it moved, it was cancelled),
    telling each engineer it is no longer theirs to take."""
    gone = _close(session, ticket, "withdrawn", now, None)
    for name in gone:
        notifications.enqueue(
            session, kind="offer_withdrawn", recipient=name, now=now, ticket_id=ticket.id,
            payload={"ticket": ticket.id, "why": why},
        )  # fmt: skip
    return gone


_ENDS_OFFERS = {
    Action.transfer: "the job was transferred to another department",
    Action.cancel: "the job was cancelled",
    Action.auto_resolve: "the fault recovered before anyone was sent",
    Action.close: "the job was closed",
}


def settle(session: Session, ticket: Ticket, action: Action, actor: str, now: datetime) -> None:
    """What a lifecycle step does to the offers (called by apply_step with the ticket locked)."""
    if action is Action.accept:
        _close(session, ticket, "accepted", now, [actor])
        withdraw_all(session, ticket, now, f"accepted by {actor}")
        ticket.offered_to = []
        ticket.dispatch_misses = 0
        ticket.needs_dispatcher = False
    elif action is Action.decline:
        # the engineer's own offer, or (the system sending it back) whatever is still open
        declined = [actor] if actor in (ticket.offered_to or []) else None
        ticket.dispatch_misses += len(_close(session, ticket, "declined", now, declined))
        ticket.offered_to = []
    elif action in _ENDS_OFFERS:
        withdraw_all(session, ticket, now, _ENDS_OFFERS[action])
        ticket.offered_to = []
        ticket.needs_dispatcher = False  # a transferred job is dispatched anew
        if action is Action.transfer:
            ticket.dispatch_misses = 0


def decline_one(
    session: Session, ticket: Ticket, engineer: str, reason: str | None, now: datetime
) -> bool:
    """An engineer turns down a job offered to several at once while others may still take it:
    their offer ends, the ticket stays dispatched. False when theirs is the last open offer (the
    caller then takes the lifecycle's decline, back to dispatch)."""
    holders = [o.engineer for o in open_offers(session, ticket.id)]
    if engineer not in holders or len(holders) < 2:
        return False
    _close(session, ticket, "declined", now, [engineer])
    ticket.dispatch_misses += 1
    ticket.updated_at = now
    history.record(
        session, ticket, at=now, actor=engineer, action="offer_declined",
        note=reason, data={"engineer": engineer, "still_offered_to": list(ticket.offered_to)},
    )  # fmt: skip
    return True
