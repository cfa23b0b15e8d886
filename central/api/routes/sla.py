"""SLA over the API: a ticket's clocks (each promise and stage, the pauses, who held it how
long, the timers) and the period's overdue root-cause report, as JSON or CSV."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status
from sqlalchemy import select

from central.api.auth import CallerDep
from central.api.deps import SessionDep
from central.api.errors import domain_errors, unprocessable
from central.api.schemas import ProblemPublic
from central.domain.permissions import Role
from central.domain.sla_report import TicketFacts, as_csv, as_json, summarise
from central.services import sla
from central.services.tickets import visible_ticket
from central.storage.models import SlaTimer

router = APIRouter(tags=["sla"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ProblemPublic, "description": "not signed in"},
    403: {"model": ProblemPublic, "description": "your role may not do this"},
    404: {"model": ProblemPublic, "description": "no such ticket, or not one of yours"},
    422: {"description": "a field is wrong: each one is named"},
}
_REPORT_ROLES = frozenset({Role.dispatcher, Role.supervisor, Role.planner, Role.admin})


def _iso(d: datetime | None) -> str | None:
    return d.isoformat() if d is not None else None


@router.get("/tickets/{ticket_id}/sla", responses=_ERRORS)
def ticket_sla(ticket_id: int, session: SessionDep, caller: CallerDep) -> dict[str, Any]:
    """Each promise (response, arrival, resolution) and each stage's clock in business time on
    the pinned calendar, the pauses, how long each person and department held it, and the
    warnings and escalations with when they fire (or fired)."""
    now = datetime.now(UTC)
    with domain_errors():
        ticket = visible_ticket(session, caller, ticket_id)
    found = sla.view(session, ticket, now)
    if found is None:
        return {"ticket": ticket.id, "policy": None, "clocks": [], "note": "no SLA policy"}
    row, v = found
    timers = session.execute(
        select(SlaTimer).where(SlaTimer.ticket_id == ticket.id).order_by(SlaTimer.due_at)
    ).scalars()
    return {
        "ticket": ticket.id,
        "policy": row.policy_id,
        "calendar": row.calendar.get("id"),
        "rules_version": row.rules_version,
        "attached_at": _iso(row.attached_at),
        "coordinator": ticket.coordinator,
        "flagged": ticket.flagged,
        "worst_stage": v.worst,
        "clocks": [
            {"name": c.name, "status": c.status, "target_s": c.target,
             "elapsed_s": round(c.elapsed, 3), "used_pct": round(c.used * 100, 1),
             "started_at": _iso(c.started_at), "stopped_at": _iso(c.stopped_at),
             "due_at": _iso(c.due_at), "breached": c.breached}
            for c in v.clocks
        ],
        "pauses": [{"reason": p.reason, "start": _iso(p.start), "end": _iso(p.end)}
                   for p in v.pauses],
        "shares": [{"stage": s.stage, "who": s.who, "department": s.department,
                    "seconds": round(s.seconds, 3)} for s in v.shares],
        "timers": [{"key": t.key, "kind": t.kind, "clock": t.clock, "percent": t.percent,
                    "to": t.to_role, "due_at": _iso(t.due_at), "fired_at": _iso(t.fired_at)}
                   for t in timers],
    }  # fmt: skip


def report_for(session: Any, start: datetime, end: datetime, now: datetime) -> Any:
    facts = [
        TicketFacts(
            id=t.id,
            title=t.title,
            priority=t.priority,
            policy=t.sla_policy or "-",
            department=t.coordinator or t.department,
            created_at=t.created_at,
            view=v,
            now=now,
        )
        for t, v in sla.all_views(session, start, end, now)
    ]
    return summarise(facts, start, end)


@router.get("/reports/sla", responses=_ERRORS)
def sla_report(
    session: SessionDep,
    caller: CallerDep,
    start: Annotated[datetime, Query(alias="from", description="ISO 8601, with a zone")],
    end: Annotated[datetime, Query(alias="to", description="ISO 8601, with a zone")],
    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
) -> Any:
    """Overdue and at-risk tickets created in [from, to): the stages that consumed the budget,
    the departments and people who held the time, the blocking reasons (pauses)."""
    if caller.role not in _REPORT_ROLES:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the SLA report is for staff")
    for name, value in (("from", start), ("to", end)):
        if value.tzinfo is None:
            raise unprocessable([{"field": name, "problem": "add a zone, e.g. +08:00"}])
    if end <= start:
        raise unprocessable([{"field": "to", "problem": "must be after from"}])
    report = report_for(session, start, end, datetime.now(UTC))
    if format == "csv":
        disposition = {"Content-Disposition": 'attachment; filename="sla.csv"'}
        return Response(as_csv(report), media_type="text/csv; charset=utf-8", headers=disposition)
    return as_json(report)
