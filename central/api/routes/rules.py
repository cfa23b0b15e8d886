"""The live decision rules: their status, a reload (after editing rules/*.yaml), and why a
ticket was classified and prioritised as it was. Also the dispatcher's hand-set priority, which
the rules never recompute."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from central.api.auth import CallerDep, require_role
from central.api.deps import SessionDep
from central.api.errors import domain_errors
from central.api.schemas import TicketPublic
from central.domain.permissions import Role
from central.services import history
from central.services.tickets import visible_ticket
from central.storage.models import TicketDecision

router = APIRouter(tags=["rules"])

_WATCHERS = (Role.planner, Role.admin, Role.supervisor, Role.dispatcher)


class RulesStatus(BaseModel):
    version: str
    files: list[str]
    loaded_at: datetime
    classification_version: str | None
    priority_version: str | None
    dispatch_version: str | None
    sla_version: str | None
    timezone: str = Field(description="the hour and weekday the rules see are local time here")
    rejected: list[str] = Field(description="problems of the last rejected edit, if the set on "
                                "disk is not the live one")  # fmt: skip


def _status(request: Request) -> RulesStatus:
    live = request.app.state.live_rules
    cur = live.current
    return RulesStatus(
        version=cur.version,
        files=list(cur.files),
        loaded_at=cur.loaded_at,
        classification_version=cur.classification.version if cur.classification else None,
        priority_version=cur.priority.version if cur.priority else None,
        dispatch_version=cur.dispatch.version if cur.dispatch else None,
        sla_version=cur.sla.version if cur.sla else None,
        timezone=cur.timezone,
        rejected=list(live.last_error),
    )


@router.get("/rules", response_model=RulesStatus)
def rules_status(request: Request, caller: CallerDep) -> RulesStatus:
    require_role(caller, *_WATCHERS)
    return _status(request)


@router.post("/rules/reload", response_model=RulesStatus)
async def reload_rules(request: Request, caller: CallerDep) -> RulesStatus:
    """Load rules/*.yaml now. A set with any problem is rejected whole (422 listing them) and
    the live set stays."""
    require_role(caller, Role.planner, Role.admin)
    result = await asyncio.to_thread(request.app.state.live_rules.reload)
    if not result.ok:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            {
                "message": f"rejected; version {result.version} stays live",
                "problems": result.problems,
            },
        )
    return _status(request)


class DecisionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    kind: str
    rules_file: str
    rules_version: str
    rule_ids: list[str]
    outcome: dict[str, Any]
    facts: dict[str, Any]


@router.get("/tickets/{ticket_id}/decisions", response_model=list[DecisionPublic])
def decisions(ticket_id: int, session: SessionDep, caller: CallerDep) -> list[DecisionPublic]:
    """Which rules decided the ticket's category, queue and priority, and from what facts."""
    with domain_errors():
        visible_ticket(session, caller, ticket_id)
    rows = session.execute(
        select(TicketDecision)
        .where(TicketDecision.ticket_id == ticket_id)
        .order_by(TicketDecision.id)
    ).scalars()
    return [DecisionPublic.model_validate(r) for r in rows]


class PriorityIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    priority: Literal["P1", "P2", "P3", "P4"]
    reason: str = Field(min_length=1, max_length=2000)


@router.post("/tickets/{ticket_id}/priority", response_model=TicketPublic)
def set_priority(
    ticket_id: int, body: PriorityIn, session: SessionDep, caller: CallerDep
) -> TicketPublic:
    """A dispatcher's or supervisor's own priority, with why; the rules never recompute it."""
    require_role(caller, Role.dispatcher, Role.supervisor)
    now = datetime.now(UTC)
    with session.begin(), domain_errors():
        ticket = visible_ticket(session, caller, ticket_id, lock=True)
        before = ticket.priority
        ticket.priority, ticket.priority_source, ticket.updated_at = body.priority, "manual", now
        history.record(
            session,
            ticket,
            at=now,
            actor=caller.user,
            action="priority_set",
            data={"from": before, "to": body.priority, "reason": body.reason},
        )
        return TicketPublic.of(ticket, caller)
