"""Appending to a ticket's hash-chained history (the caller holds the ticket's row lock)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from central.domain.audit import GENESIS, canonical_entry, entry_hash
from central.storage.models import Ticket, TicketEvent


def append(
    session: Session,
    ticket: Ticket,
    *,
    at: datetime,
    actor: str,
    action: str,
    from_state: str | None,
    to_state: str | None,
    note: str | None = None,
    data: dict[str, Any] | None = None,
) -> TicketEvent:
    if ticket.id is None:
        session.flush()  # a new ticket needs its id before its history can reference it
    # The anchor on the (locked) ticket row is the chain's end: no query for the last entry.
    # The ticket's version column makes a writer that did not hold the lock fail, not fork.
    seq = (ticket.history_len or 0) + 1
    prev = ticket.history_head or GENESIS
    row = TicketEvent(
        ticket_id=ticket.id,
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        from_state=from_state,
        to_state=to_state,
        note=note,
        data=data or {},
        prev_hash=prev,
    )
    row.hash = entry_hash(prev, stored_entry(row))
    ticket.history_len, ticket.history_head = seq, row.hash  # the anchor, same transaction
    # A plain INSERT rather than the unit of work: the row is never changed once written, and
    # this runs on every step of every ticket. The ticket's own changes flush with it.
    session.execute(
        insert(TicketEvent.__table__),  # type: ignore[arg-type]
        [{c: getattr(row, c) for c in _COLUMNS}],
    )
    if "history" in ticket.__dict__:  # a collection loaded earlier would now be missing this
        session.expire(ticket, ["history"])
    return row


_COLUMNS = (
    "ticket_id", "seq", "at", "actor", "action", "from_state", "to_state", "note", "data",
    "prev_hash", "hash",
)  # fmt: skip


def record(
    session: Session,
    ticket: Ticket,
    *,
    at: datetime,
    actor: str,
    action: str,
    note: str | None = None,
    data: dict[str, Any] | None = None,
) -> TicketEvent:
    """An entry that does not move the ticket (a note, a photo, a rating, a decision)."""
    return append(
        session, ticket, at=at, actor=actor, action=action, from_state=ticket.state,
        to_state=ticket.state, note=note, data=data,
    )  # fmt: skip


def stored_entry(row: TicketEvent) -> dict[str, Any]:
    return canonical_entry(
        ticket_id=row.ticket_id,
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        action=row.action,
        from_state=row.from_state,
        to_state=row.to_state,
        note=row.note,
        data=row.data,
    )
