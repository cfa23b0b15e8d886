"""Appending to a ticket's hash-chained history (the caller holds the ticket's row lock)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
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
    session.flush()  # the ticket needs its id before its history can reference it
    last = session.execute(
        select(TicketEvent.seq, TicketEvent.hash)
        .where(TicketEvent.ticket_id == ticket.id)
        .order_by(TicketEvent.seq.desc())
        .limit(1)
    ).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
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
    session.add(row)
    ticket.history_len, ticket.history_head = seq, row.hash  # the anchor, same transaction
    return row


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
