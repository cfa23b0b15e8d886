"""Dispatch over the API: engineers' profiles (and their import), sites, an engineer's position,
offers and notifications for the mobile app (JSON and a live SSE stream), why a job went to
whom, grabbing open jobs (抢单), and assigning a backlog at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from central.api.auth import CallerDep
from central.api.deps import SessionDep, current_rules
from central.api.errors import domain_errors, unprocessable
from central.api.idempotency import fingerprint, run_idempotent
from central.api.schemas import ProblemPublic, TicketPublic
from central.domain.permissions import Caller, Role
from central.services import dispatching, engineers, notifications
from central.services.tickets import visible_ticket
from central.storage.models import DispatchOffer, Engineer, Site
from fieldloop.yamlfile import FileError

router = APIRouter(tags=["dispatch"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ProblemPublic, "description": "not signed in"},
    403: {"model": ProblemPublic, "description": "your role may not do this"},
    404: {"model": ProblemPublic, "description": "no such ticket or engineer"},
    409: {"model": ProblemPublic, "description": "someone else was first, or not allowed now"},
    422: {"description": "a field is wrong: each one is named"},
}
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
_MANAGE = frozenset({Role.admin, Role.supervisor})
_SEE = frozenset({Role.admin, Role.supervisor, Role.dispatcher})


def _now() -> datetime:
    return datetime.now(UTC)


def _need(caller: Caller, roles: frozenset[Role], what: str) -> None:
    if caller.role not in roles:
        who = ", ".join(sorted(r.value for r in roles))
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"a {caller.role.value} may not {what} "
                            f"(who may: {who})")  # fmt: skip


def _idempotent(
    request: Request, caller: Caller, key: str | None, raw: bytes, handler: Any
) -> Response:
    return run_idempotent(
        request.app.state.sessions,
        principal=caller.user,
        key=key,
        request_fingerprint=fingerprint(request.method, request.url.path, raw),
        handler=handler,
    )


# --- engineers ------------------------------------------------------------------------------


class EngineerPublic(BaseModel):
    username: str
    name: str
    department: str | None
    regions: list[str]
    skills: dict[str, int]
    certifications: dict[str, str | None]
    shifts: dict[str, list[str]]
    home_lat: float | None
    home_lon: float | None
    lat: float | None
    lon: float | None
    location_at: datetime | None
    active: bool
    open_jobs: int = Field(description="jobs offered or assigned and not yet completed")

    @classmethod
    def of(cls, row: Engineer, open_jobs: int) -> EngineerPublic:
        return cls(
            username=row.username, name=row.name, department=row.department,
            regions=list(row.regions or []), skills=dict(row.skills or {}),
            certifications=dict(row.certifications or {}), shifts=dict(row.shifts or {}),
            home_lat=row.home_lat, home_lon=row.home_lon, lat=row.lat, lon=row.lon,
            location_at=row.location_at, active=row.active, open_jobs=open_jobs,
        )  # fmt: skip


def _loads(session: Session, now: datetime) -> dict[str, int]:
    return {p.id: p.open_jobs for p in dispatching.profiles(session, now)}


@router.get("/engineers", response_model=list[EngineerPublic], responses=_ERRORS)
def list_engineers(session: SessionDep, caller: CallerDep) -> list[EngineerPublic]:
    _need(caller, _SEE, "list engineers")
    loads = _loads(session, _now())
    return [
        EngineerPublic.of(r, loads.get(r.username, 0)) for r in engineers.all_engineers(session)
    ]


@router.put("/engineers/{username}", response_model=EngineerPublic, responses=_ERRORS)
def put_engineer(
    username: str, body: engineers.EngineerIn, session: SessionDep, caller: CallerDep
) -> EngineerPublic:
    """Create or replace an engineer's dispatch profile (skills with levels, certificates,
    department, regions, shifts, home base)."""
    _need(caller, _MANAGE, "manage engineers")
    now = _now()
    with session.begin():
        row = engineers.upsert(session, username, body, now)
    return EngineerPublic.of(row, _loads(session, now).get(username, 0))


@router.post("/engineers/import", responses=_ERRORS)
def import_engineers(
    session: SessionDep,
    caller: CallerDep,
    body: Annotated[str, Body(media_type="text/plain", description="YAML or CSV")],
    content_type: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Import profiles from a YAML file (``kind: Engineers``) or a CSV export, all or nothing;
    every problem is named by line and column."""
    _need(caller, _MANAGE, "import engineers")
    kind = (content_type or "").split(";")[0].strip().lower()
    is_csv = kind in ("text/csv", "application/csv") or (
        kind not in ("application/yaml", "application/x-yaml", "text/yaml")
        and body.lstrip().startswith("username")
    )
    try:
        specs = (
            engineers.parse_csv_file("engineers.csv", body)
            if is_csv
            else engineers.parse_yaml_file("engineers.yaml", body)
        )
    except FileError as exc:
        raise unprocessable(
            [{"field": f"line {p.line}, column {p.col}", "problem": p.message}
             for p in exc.problems]
        ) from None  # fmt: skip
    with session.begin():
        n = engineers.import_specs(session, specs, _now())
    return {"imported": n, "engineers": [s.username for s in specs]}


@router.post("/engineers/{username}/leave", status_code=201, responses=_ERRORS)
def add_leave(
    username: str, body: engineers.LeaveIn, session: SessionDep, caller: CallerDep
) -> dict[str, Any]:
    _need(caller, _SEE, "record leave")
    try:
        with session.begin():
            row = engineers.add_leave(session, username, body)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except ValueError as exc:
        raise unprocessable([{"field": "ends_at", "problem": str(exc)}]) from None
    return {"id": row.id, "engineer": username, "starts_at": row.starts_at,
            "ends_at": row.ends_at}  # fmt: skip


class PositionIn(BaseModel):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    accuracy_m: float | None = Field(None, ge=0, le=100_000)


@router.post("/me/location", status_code=204, responses=_ERRORS)
def my_location(body: PositionIn, session: SessionDep, caller: CallerDep) -> Response:
    """The engineer's app reports where they are; dispatch measures distance from here."""
    _need(caller, frozenset({Role.engineer}), "report an engineer's position")
    try:
        with session.begin():
            engineers.set_location(session, caller.user, body.lat, body.lon, _now())
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return Response(status_code=204)


# --- sites ------------------------------------------------------------------------------------


@router.put("/sites/{site_id}", responses=_ERRORS)
def put_site(
    site_id: str, body: engineers.SiteIn, session: SessionDep, caller: CallerDep
) -> dict[str, Any]:
    _need(caller, _MANAGE, "manage sites")
    with session.begin():
        row = engineers.upsert_site(session, site_id, body)
    return {"id": row.id, "name": row.name, "region": row.region, "lat": row.lat, "lon": row.lon}


@router.get("/sites", responses=_ERRORS)
def list_sites(session: SessionDep, caller: CallerDep) -> list[dict[str, Any]]:
    _need(caller, _SEE | {Role.planner}, "list sites")
    rows = session.execute(select(Site).order_by(Site.id)).scalars()
    return [{"id": r.id, "name": r.name, "region": r.region, "lat": r.lat, "lon": r.lon}
            for r in rows]  # fmt: skip


# --- the engineer's app -----------------------------------------------------------------------


@router.get("/me/offers", responses=_ERRORS)
def my_offers(session: SessionDep, caller: CallerDep) -> list[dict[str, Any]]:
    """Jobs offered to the caller and not yet answered, with when each offer lapses."""
    rows = session.execute(
        select(DispatchOffer)
        .where(DispatchOffer.engineer == caller.user, DispatchOffer.state == "open")
        .order_by(DispatchOffer.expires_at)
    ).scalars()
    return [{"ticket": o.ticket_id, "offered_at": o.offered_at, "expires_at": o.expires_at,
             "round": o.round, "policy": o.policy} for o in rows]  # fmt: skip


def _recipients(caller: Caller) -> list[str]:
    return [caller.user, f"role:{caller.role.value}"]


def _notification(n: Any) -> dict[str, Any]:
    return {"id": n.id, "kind": n.kind, "ticket": n.ticket_id, "at": n.created_at.isoformat(),
            "payload": n.payload}  # fmt: skip


@router.get("/me/notifications", responses=_ERRORS)
def my_notifications(
    session: SessionDep,
    caller: CallerDep,
    after: Annotated[int, Query(ge=0, description="the last id you have")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    """Offers, withdrawals and alerts for the caller (and their role), oldest first."""
    rows = notifications.for_recipient(session, _recipients(caller), after_id=after, limit=limit)
    return [_notification(n) for n in rows]


@router.get("/me/notifications/stream", responses=_ERRORS)
async def my_notification_stream(
    request: Request,
    caller: CallerDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Server-sent events: each notification as it is written (``id`` is its number, so a
    reconnecting client resumes with Last-Event-ID and misses nothing)."""
    after = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
    sessions = request.app.state.sessions
    recipients = _recipients(caller)

    def fetch(since: int) -> list[dict[str, Any]]:
        with sessions() as s:
            rows = notifications.for_recipient(s, recipients, after_id=since)
            return [_notification(n) for n in rows]

    async def events() -> AsyncIterator[bytes]:
        since = after
        idle = 0.0
        while not await request.is_disconnected():
            batch = await asyncio.to_thread(fetch, since)
            for n in batch:
                since = n["id"]
                yield f"id: {n['id']}\nevent: {n['kind']}\ndata: {json.dumps(n)}\n\n".encode()
            if batch:
                idle = 0.0
                continue
            await asyncio.sleep(0.25)
            idle += 0.25
            if idle >= 15:  # a comment keeps proxies from closing an idle stream
                idle = 0.0
                yield b": keep-alive\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store"})  # fmt: skip


# --- why, grabbing, the backlog ---------------------------------------------------------------


@router.get("/tickets/{ticket_id}/dispatch", responses=_ERRORS)
def why_dispatched(ticket_id: int, session: SessionDep, caller: CallerDep) -> dict[str, Any]:
    """Every dispatch decision on the ticket: the policy, the ranked candidates with each
    constraint's pass/fail and each objective's score, in words a dispatcher understands."""
    _need(caller, _SEE, "see why a job went to whom")
    with domain_errors():
        ticket = visible_ticket(session, caller, ticket_id)
    rows = dispatching.decisions_of(session, ticket.id)
    return {
        "ticket": ticket.id,
        "policy": ticket.dispatch_policy,
        "needs_dispatcher": ticket.needs_dispatcher,
        "misses": ticket.dispatch_misses,
        "offered_to": list(ticket.offered_to or []),
        "decisions": [
            {"at": r.at, "kind": r.kind, "actor": r.actor, "policy": r.policy, "mode": r.mode,
             "rules_version": r.rules_version, "relaxed": r.relaxed, "chosen": r.chosen,
             "reason": r.reason, "explanation": r.explanation, "candidates": r.ranked}
            for r in rows
        ],
        "offers": [
            {"engineer": o.engineer, "round": o.round, "state": o.state,
             "offered_at": o.offered_at, "expires_at": o.expires_at, "decided_at": o.decided_at}
            for o in dispatching.offers_of(session, ticket.id)
        ],
    }  # fmt: skip


@router.get("/jobs/open", responses=_ERRORS)
def open_jobs(request: Request, session: SessionDep, caller: CallerDep) -> list[dict[str, Any]]:
    """抢单: the open jobs the calling engineer may grab now, best match first."""
    _need(caller, frozenset({Role.engineer}), "grab jobs")
    pool = dispatching.grab_pool(session, caller.user, current_rules(request), _now())
    return [
        {"ticket": TicketPublic.of(t, caller).model_dump(mode="json"),
         "match": round(c.total, 3), "distance_km": c.distance_km}
        for t, c in pool
    ]  # fmt: skip


@router.post("/tickets/{ticket_id}/claim", response_model=TicketPublic, responses=_ERRORS)
def claim(
    ticket_id: int, request: Request, caller: CallerDep, key: IdempotencyKey = None
) -> Response:
    """Grab an open job (抢单): exactly one engineer wins; the others get 409."""
    rules = current_rules(request)

    def handler(session: Session) -> tuple[int, Any]:
        with domain_errors():
            try:
                ticket = dispatching.claim(session, ticket_id, caller, rules, _now())
            except dispatching.ClaimRefused as exc:
                return 409, {"detail": str(exc)}
        session.flush()
        return 200, TicketPublic.of(ticket, caller)

    return _idempotent(request, caller, key, b"", handler)


class BatchIn(BaseModel):
    tickets: list[int] | None = Field(
        None, max_length=5000, description="which; none: every job in the dispatcher's queue"
    )


@router.post("/dispatch/batch", responses=_ERRORS)
def batch(
    body: BatchIn, request: Request, caller: CallerDep, key: IdempotencyKey = None
) -> Response:
    """Assign a backlog at once, at the least total cost under the hard constraints
    (Hungarian method), reporting its cost against assigning one by one."""
    _need(caller, frozenset({Role.dispatcher, Role.supervisor}), "assign a backlog")
    rules = current_rules(request)

    def handler(session: Session) -> tuple[int, Any]:
        result = dispatching.assign_backlog(session, body.tickets, caller, rules, _now())
        return 200, result

    return _idempotent(request, caller, key, body.model_dump_json().encode(), handler)
