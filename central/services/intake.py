"""Opening a ticket from a validated problem report, whatever channel it came through."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from central.domain.intake import PRIORITY_BY_URGENCY, TicketRequest
from central.domain.lifecycle import State
from central.domain.secrets import digest, new_token
from central.services import dispatching, history, sla
from central.services.decisions import apply_rules
from central.services.live_rules import DecisionRules
from central.storage.models import Ticket

CHANNELS = frozenset({"api", "web", "webhook"})


@dataclass(frozen=True)
class Opened:
    ticket: Ticket
    customer_token: str  # the private follow-and-confirm link's token: shown once


def create_ticket(
    session: Session,
    req: TicketRequest,
    *,
    source: str,
    actor: str,
    now: datetime,
    reporter_user: str | None = None,
    data: dict[str, object] | None = None,
    rules: DecisionRules | None = None,
) -> Opened:
    """Insert the ticket and its first history entry in the caller's transaction."""
    if source not in CHANNELS:
        raise ValueError(f"unknown intake channel {source!r}")
    token = new_token("flc")
    ticket = Ticket(
        state=State.new.value,
        state_entered_at=now,
        source=source,
        title=req.display_title(),
        description=req.description,
        category=req.problem_type,
        problem_type=req.problem_type,
        urgency=req.urgency.value,
        priority=PRIORITY_BY_URGENCY[req.urgency],
        priority_source="intake",
        location=req.location,
        site=req.site,
        asset_id=req.asset_id,
        reporter=req.reporter,
        reporter_user=reporter_user,
        contact=req.contact,
        customer_token_hash=digest(token),
        fault_active=False,
        occurrences=1,
        readings={},
        created_at=now,
        updated_at=now,
    )
    session.add(ticket)
    history.append(
        session,
        ticket,
        at=now,
        actor=actor,
        action="created",
        from_state=None,
        to_state=State.new.value,
        note=f"reported via {source} by {req.reporter}",
        data={"channel": source, **(data or {})},
    )
    if rules is not None:
        apply_rules(session, ticket, rules, now=now)
        if ticket.state == State.new.value:
            sla.check_repeat(session, ticket, rules, now)
        dispatching.auto_dispatch(session, ticket, rules, now=now)
    return Opened(ticket, token)
