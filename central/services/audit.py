"""Verifying every ticket's history chain in the database (`fieldloop audit verify`).

Each chain is checked entry by entry (content against its hash, each link against the previous
hash, no missing sequence numbers) and against the anchor kept on the ticket row (how many
entries, and the last hash), so a deleted tail is caught too. It reads only, in ticket order, one
ticket's history at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.domain.audit import ChainBreak, verify_chain
from central.services.history import stored_entry
from central.storage.models import Ticket, TicketEvent


@dataclass(frozen=True)
class TicketBreak:
    ticket_id: int
    breaks: list[ChainBreak]

    def __str__(self) -> str:
        first = self.breaks[0]
        return f"ticket #{self.ticket_id}: entry {first.seq}: {first.reason}"


@dataclass
class AuditReport:
    tickets: int = 0
    entries: int = 0
    broken: list[TicketBreak] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.broken


def _anchor_breaks(ticket: Ticket, events: list[TicketEvent]) -> list[ChainBreak]:
    last_seq = events[-1].seq if events else 0
    last_hash = events[-1].hash if events else None
    if ticket.history_len != last_seq:
        return [
            ChainBreak(
                last_seq + 1,
                f"the history ends at entry {last_seq} but the ticket records "
                f"{ticket.history_len} entries (entries deleted)",
            )
        ]
    if ticket.history_head != last_hash:
        return [ChainBreak(last_seq, "the last entry is not the one the ticket records")]
    return []


def _tickets(session: Session, batch: int = 500) -> Iterator[Ticket]:
    after = 0
    while True:
        rows = session.scalars(
            select(Ticket).where(Ticket.id > after).order_by(Ticket.id).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].id
        session.expunge_all()


def verify(session: Session) -> AuditReport:
    report = AuditReport()
    for ticket in _tickets(session):
        events = list(
            session.scalars(
                select(TicketEvent)
                .where(TicketEvent.ticket_id == ticket.id)
                .order_by(TicketEvent.seq)
            )
        )
        report.tickets += 1
        report.entries += len(events)
        breaks = verify_chain((stored_entry(e), e.prev_hash, e.hash) for e in events)
        breaks += _anchor_breaks(ticket, events)
        if breaks:
            report.broken.append(TicketBreak(ticket.id, breaks))
    return report
