"""Readings over the API: an asset's series downsampled to a step, the readings around a
ticket's fault, and what was quarantined and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from sqlalchemy import func, select

from central.api.auth import CallerDep
from central.api.deps import SessionDep
from central.api.errors import domain_errors, unprocessable
from central.api.schemas import ProblemPublic
from central.domain.permissions import Role
from central.services.tickets import visible_ticket
from central.storage.models import EdgeEvent, TelemetryQuarantine
from central.telemetry import series as S
from central.telemetry.store import TelemetryStore
from fieldloop.messages import OPENING_KINDS

router = APIRouter(tags=["telemetry"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ProblemPublic, "description": "not signed in"},
    403: {"model": ProblemPublic, "description": "your role may not do this"},
    404: {"model": ProblemPublic, "description": "no such ticket, or not one of yours"},
    422: {"description": "a field is wrong: each one is named"},
}
_STAFF = frozenset({Role.engineer, Role.dispatcher, Role.supervisor, Role.planner, Role.admin})
_QUARANTINE_ROLES = frozenset({Role.dispatcher, Role.supervisor, Role.planner, Role.admin})
RAW_LIMIT = 2_000  # a ticket's window shows the readings themselves up to this many


def _store(request: Request) -> TelemetryStore:
    store: TelemetryStore = request.app.state.telemetry
    return store


def _window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """[from, to) as asked, by default the last 24 hours; each field named when wrong."""
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.tzinfo is None:
            raise unprocessable([{"field": name, "problem": "add a zone, e.g. +08:00 or Z"}])
    end = end or datetime.now(UTC)
    start = start or end - timedelta(hours=24)
    if end <= start:
        raise unprocessable([{"field": "to", "problem": "must be after from"}])
    return start, end


def _point(p: S.Point) -> dict[str, Any]:
    return {"time": p.time.isoformat(), "avg": p.avg, "min": p.low, "max": p.high,
            "count": p.count}  # fmt: skip


def _points(found: list[S.Series]) -> list[dict[str, Any]]:
    return [{"metric": s.metric, "points": [_point(p) for p in s.points]} for s in found]


@router.get("/assets/{asset}/telemetry", responses=_ERRORS)
def asset_telemetry(
    asset: str,
    request: Request,
    session: SessionDep,
    caller: CallerDep,
    metric: Annotated[list[str] | None, Query(description="repeat for several; none: all")] = None,
    start: Annotated[
        datetime | None, Query(alias="from", description="ISO 8601 with a zone; default to-24h")
    ] = None,
    end: Annotated[
        datetime | None, Query(alias="to", description="ISO 8601 with a zone; default now")
    ] = None,
    step: Annotated[
        int | None, Query(ge=1, le=366 * 86400, description="seconds per point; default: ~500")
    ] = None,
) -> dict[str, Any]:
    """The asset's readings as a series per metric: average, min, max and count per ``step``
    over [from, to) (widened to whole steps). Whole minutes and hours come from TimescaleDB's
    continuous aggregates where they exist."""
    if caller.role not in _STAFF:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "readings are for staff")
    start, end = _window(start, end)
    step = step or S.choose_step(end - start)
    points = (end - start).total_seconds() / step
    if points > S.MAX_POINTS:
        raise unprocessable([{
            "field": "step",
            "problem": f"{step} s over this range is {points:.0f} points a metric; at most "
            f"{S.MAX_POINTS}: use a step of at least "
            f"{int((end - start).total_seconds() // S.MAX_POINTS) + 1} s",
        }])  # fmt: skip
    store = _store(request)
    source, found = S.series(
        session.connection(), store.layout, asset, metric or [], start, end, step
    )
    a, b = S.align(start, end, step)
    return {
        "asset": asset,
        "from": a.isoformat(),
        "to": b.isoformat(),
        "step": step,
        "source": source,
        "series": _points(found),
    }


@router.get("/tickets/{ticket_id}/telemetry", responses=_ERRORS)
def ticket_telemetry(
    ticket_id: int,
    request: Request,
    session: SessionDep,
    caller: CallerDep,
    before: Annotated[int, Query(ge=0, le=7 * 86400, description="seconds before")] = 3600,
    after: Annotated[int, Query(ge=0, le=7 * 86400, description="seconds after")] = 1800,
) -> dict[str, Any]:
    """The readings of the ticket's asset around its fault (the edge event that raised it, or
    when the ticket was reported): the readings themselves when there are few, else a series
    over [from, to) widened to whole steps."""
    if caller.role not in _STAFF:  # a customer's report may name any asset
        raise HTTPException(status.HTTP_403_FORBIDDEN, "readings are for staff")
    with domain_errors():
        ticket = visible_ticket(session, caller, ticket_id)
    if not ticket.asset_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"ticket {ticket_id} names no asset")
    # the latest opening: a reopened ticket's fault is the one that reopened it
    event = session.scalars(
        select(EdgeEvent)
        .where(EdgeEvent.ticket_id == ticket.id, EdgeEvent.kind.in_(sorted(OPENING_KINDS)))
        .order_by(EdgeEvent.event_time.desc())
        .limit(1)
    ).first()
    at = event.event_time if event is not None else ticket.created_at
    fault: dict[str, Any] = {"time": at.isoformat(), "source": "edge" if event else "report"}
    if event is not None:
        fault |= {
            k: event.payload.get(k) for k in ("metric", "value", "threshold", "kind", "rule_id")
        }
    start, end = at - timedelta(seconds=before), at + timedelta(seconds=after)
    conn = session.connection()
    n = S.count(conn, ticket.asset_id, [], start, end)
    if n <= RAW_LIMIT:
        found, step, source = (
            S.readings(conn, ticket.asset_id, [], start, end, RAW_LIMIT),
            None,
            "readings",
        )
    else:
        step = S.choose_step(end - start)
        start, end = S.align(start, end, step)
        source, found = S.series(
            conn, _store(request).layout, ticket.asset_id, [], start, end, step
        )
        n = sum(p.count for s in found for p in s.points)  # of the widened window
    return {
        "ticket": ticket.id,
        "asset": ticket.asset_id,
        "fault": fault,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "step": step,
        "source": source,
        "readings": n,
        "series": _points(found),
    }


@router.get("/telemetry/quarantine", responses=_ERRORS)
def quarantine(
    session: SessionDep,
    caller: CallerDep,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    site: str | None = None,
    device: str | None = None,
    limit: Annotated[int, Query(ge=0, le=1000)] = 50,
) -> dict[str, Any]:
    """Readings refused since ``from`` (default: the last 24 hours): counted by reason and by
    device, and the latest ones with what was wrong."""
    if caller.role not in _QUARANTINE_ROLES:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the quarantine is for staff")
    start, end = _window(start, end)
    Q = TelemetryQuarantine
    where = [Q.received_at >= start, Q.received_at < end]
    if site:
        where.append(Q.site == site)
    if device:
        where.append(Q.device == device)
    by_reason = session.execute(
        select(Q.reason, func.count())
        .where(*where)
        .group_by(Q.reason)
        .order_by(func.count().desc())
    ).all()
    by_device = session.execute(
        select(Q.site, Q.device, Q.reason, func.count())
        .where(*where)
        .group_by(Q.site, Q.device, Q.reason)
        .order_by(func.count().desc())
        .limit(100)
    ).all()
    latest = session.scalars(select(Q).where(*where).order_by(Q.id.desc()).limit(limit)).all()
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "total": sum(n for _, n in by_reason),
        "by_reason": {r: n for r, n in by_reason},
        "by_device": [
            {"site": s, "device": d, "reason": r, "count": n} for s, d, r, n in by_device
        ],
        "latest": [
            {"batch": q.batch_id, "site": q.site, "device": q.device, "asset": q.asset,
             "metric": q.metric, "time": q.time, "value": q.value, "reason": q.reason,
             "detail": q.detail, "received_at": q.received_at.isoformat()}
            for q in latest
        ],
    }  # fmt: skip
