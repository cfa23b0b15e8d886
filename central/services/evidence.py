"""What the engineer records on the job besides state changes: notes and parts used."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from central.services import history
from central.storage.models import PartUsed, Ticket


def add_note(session: Session, ticket: Ticket, text: str, *, actor: str, now: datetime) -> None:
    ticket.updated_at = now
    history.record(
        session,
        ticket,
        at=now,
        actor=actor,
        action="note",
        note=text,
    )


def record_parts(
    session: Session,
    ticket: Ticket,
    parts: list[tuple[str, str | None, float, str]],
    *,
    actor: str,
    now: datetime,
) -> list[PartUsed]:
    """parts: (part_no, description, quantity, unit), all recorded or none."""
    rows = [
        PartUsed(
            ticket_id=ticket.id,
            part_no=no,
            description=desc,
            quantity=qty,
            unit=unit,
            recorded_by=actor,
            recorded_at=now,
        )
        for no, desc, qty, unit in parts
    ]
    session.add_all(rows)
    ticket.updated_at = now
    history.record(
        session,
        ticket,
        at=now,
        actor=actor,
        action="parts_used",
        data={"parts": [{"part_no": n, "quantity": q, "unit": u} for n, _d, q, u in parts]},
    )
    return rows
