"""Recorded tickets as the facts the decision rules saw (or would have seen), for
`fieldloop rules replay --db`: read-only, a page at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.services.decisions import facts_for
from central.storage.models import Ticket


def recorded_tickets(
    session: Session, batch: int = 500, timezone: str = "UTC"
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each ticket's facts on its own creation time (the virtual clock), oldest first."""
    last = 0
    while True:
        rows = list(
            session.execute(
                select(Ticket).where(Ticket.id > last).order_by(Ticket.id).limit(batch)
            ).scalars()
        )
        if not rows:
            return
        for t in rows:
            yield f"ticket #{t.id}", facts_for(t, t.created_at, timezone)
        last = rows[-1].id
        session.expunge_all()
