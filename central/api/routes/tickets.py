"""Tickets: report, list, read, and every action a mobile app, a dispatcher's console or a
supervisor takes. State-changing calls take an ``Idempotency-Key``: a retry gets the first
answer back instead of doing the work twice."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from pydantic import BaseModel
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, selectinload

from central.api.auth import CallerDep
from central.api.deps import SessionDep, current_rules
from central.api.errors import domain_errors
from central.api.idempotency import fingerprint, run_idempotent
from central.api.schemas import (
    CloseIn,
    CompleteIn,
    Created,
    DispatchIn,
    LinkPublic,
    NoteIn,
    PartsIn,
    ProblemPublic,
    RatingIn,
    ReasonIn,
    StepIn,
    TicketDetail,
    TicketPage,
    TicketPublic,
    TransferIn,
    WaitPartsIn,
)
from central.domain.intake import TicketRequest
from central.domain.lifecycle import OPEN_STATES, Action, State, parse_state
from central.domain.permissions import (
    MAY_CREATE,
    PERMISSIONS,
    Caller,
    Operation,
    Role,
    Scope,
)
from central.domain.stages import Entry, stage_durations
from central.services import customers, dispatching, evidence, sla
from central.services.intake import create_ticket
from central.services.tickets import Gps, Step, act, may, visible_ticket
from central.storage.models import PartUsed, Ticket

router = APIRouter(tags=["tickets"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ProblemPublic, "description": "not signed in"},
    403: {"model": ProblemPublic, "description": "your role may not do this"},
    404: {"model": ProblemPublic, "description": "no such ticket, or not one of yours"},
    409: {
        "model": ProblemPublic,
        "description": "not allowed in the ticket's current state, or the same Idempotency-Key "
        "is still being processed",
    },
    422: {"description": "a field is wrong: each one is named"},
}

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="any unique string (a UUID): a retry with the same key returns the first "
        "response; the same key with a different body is refused",
    ),
]


def _now() -> datetime:
    return datetime.now(UTC)


def _idempotent(
    request: Request,
    caller: Caller,
    key: str | None,
    body: BaseModel | None,
    handler: Callable[[Session], tuple[int, Any]],
) -> Response:
    raw = body.model_dump_json().encode() if body is not None else b""
    return run_idempotent(
        request.app.state.sessions,
        principal=caller.user,
        key=key,
        request_fingerprint=fingerprint(request.method, request.url.path, raw),
        handler=handler,
    )


def _scoped(query: Any, caller: Caller) -> Any:
    """Only the tickets the caller may see (BOLA): an engineer their jobs, a customer their
    reports; a role that may see none gets 403."""
    scope = _VIEW_SCOPES.get(caller.role)
    if scope is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"a {caller.role.value} may not list tickets"
        )
    if scope is Scope.assigned:
        return query.where(Ticket.assignee == caller.user)
    if scope is Scope.reported:
        return query.where(Ticket.reporter_user == caller.user)
    return query


_VIEW_SCOPES: dict[Role, Scope] = dict(PERMISSIONS[Operation.view])


# --- intake -------------------------------------------------------------------------------


@router.post(
    "/tickets", response_model=Created, status_code=201, responses=_ERRORS, tags=["intake"]
)
def report(
    body: TicketRequest, request: Request, caller: CallerDep, key: IdempotencyKey = None
) -> Response:
    """Report a problem (报修). Location, problem type, urgency, description, reporter and
    contact are required; the answer carries the customer's private follow link, once."""
    if caller.role not in MAY_CREATE:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"a {caller.role.value} may not report")
    rules = current_rules(request)

    def handler(session: Session) -> tuple[int, Any]:
        opened = create_ticket(
            session,
            body,
            source="api",
            actor=caller.user,
            now=_now(),
            reporter_user=caller.user if caller.role is Role.customer else None,
            rules=rules,
        )
        session.flush()
        return 201, Created(
            ticket=TicketPublic.of(opened.ticket, caller),
            follow_url=f"/t/{opened.customer_token}",
        )

    return _idempotent(request, caller, key, body, handler)


# --- reading ------------------------------------------------------------------------------


def _page(
    session: Session,
    caller: Caller,
    where: list[ColumnElement[bool]],
    limit: int,
    offset: int,
) -> TicketPage:
    query = _scoped(select(Ticket), caller).where(*where)
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = session.execute(query.order_by(Ticket.id.desc()).limit(limit).offset(offset)).scalars()
    return TicketPage(
        items=[TicketPublic.of(t, caller) for t in rows], total=total, limit=limit, offset=offset
    )


Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0)]


@router.get("/tickets", response_model=TicketPage, responses=_ERRORS)
def list_tickets(
    session: SessionDep,
    caller: CallerDep,
    state: Annotated[str | None, Query(description="state key or label, e.g. new or 新建")] = None,
    asset: Annotated[str | None, Query(max_length=128)] = None,
    assignee: Annotated[str | None, Query(max_length=128)] = None,
    department: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> TicketPage:
    """Tickets the caller may see, newest first, a page at a time."""
    where: list[ColumnElement[bool]] = []
    if state is not None:
        try:
            where.append(Ticket.state == parse_state(state).value)
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"state: {exc}") from None
    if asset is not None:
        where.append(Ticket.asset_id == asset)
    if assignee is not None:
        where.append(Ticket.assignee == assignee)
    if department is not None:
        where.append(Ticket.department == department)
    return _page(session, caller, where, limit, offset)


@router.get("/me/jobs", response_model=TicketPage, responses=_ERRORS)
def my_jobs(
    session: SessionDep, caller: CallerDep, limit: Limit = 50, offset: Offset = 0
) -> TicketPage:
    """The engineer's open jobs (offered and accepted), newest first."""
    where = [
        Ticket.assignee == caller.user,
        Ticket.state.in_([s.value for s in OPEN_STATES]),
    ]
    return _page(session, caller, where, limit, offset)


@router.get("/tickets/{ticket_id}", response_model=TicketDetail, responses=_ERRORS)
def get_ticket(ticket_id: int, session: SessionDep, caller: CallerDep) -> TicketDetail:
    """One ticket with its full history, parts used and time per stage."""
    with domain_errors():
        ticket = visible_ticket(session, caller, ticket_id)
    ticket = session.execute(
        select(Ticket).where(Ticket.id == ticket_id).options(selectinload(Ticket.history))
    ).scalar_one()
    parts = list(
        session.execute(
            select(PartUsed).where(PartUsed.ticket_id == ticket_id).order_by(PartUsed.id)
        ).scalars()
    )
    entries = [
        Entry(State(h.to_state), h.at)
        for h in ticket.history
        if h.to_state is not None and h.to_state != h.from_state
    ]
    stages = [
        (s, st.total.total_seconds(), st.visits)
        for s, st in stage_durations(entries, _now()).items()
    ]
    return TicketDetail.of_full(ticket, caller, parts, stages)


# --- the lifecycle ------------------------------------------------------------------------


def _step(
    request: Request,
    caller: Caller,
    key: str | None,
    ticket_id: int,
    action: Action,
    body: StepIn,
    **inputs: Any,
) -> Response:
    loc = body.location
    step = Step(
        action,
        note=body.note,
        location=Gps(loc.lat, loc.lon, loc.accuracy_m) if loc is not None else None,
        **inputs,
    )

    rules = current_rules(request)

    def handler(session: Session) -> tuple[int, Any]:
        now = _now()
        with domain_errors():
            ticket = act(session, ticket_id, step, caller=caller, now=now)
            if action is Action.decline:  # on to the next engineer, or the dispatcher
                dispatching.after_refusal(session, ticket, rules, now)
            elif action is Action.transfer:  # the new department's engineers
                sla.after_transfer(session, ticket, now, sla.handoffs_of(rules).max_bounces)
                dispatching.auto_dispatch(session, ticket, rules, now=now)
        session.flush()
        return 200, TicketPublic.of(ticket, caller)

    return _idempotent(request, caller, key, body, handler)


def _doc(action: Action, text: str) -> dict[str, Any]:
    return {"response_model": TicketPublic, "responses": _ERRORS, "description": text}


@router.post(
    "/tickets/{ticket_id}/dispatch",
    **_doc(
        Action.dispatch,
        "Offer the job to an engineer by hand (派单). Sending it to someone the dispatch policy "
        "rules out, or moving a job already on offer, is an override: a supervisor's, with a "
        "reason, recorded with the recommendation it overrides.",
    ),
)
def dispatch(
    ticket_id: int,
    body: DispatchIn,
    request: Request,
    caller: CallerDep,
    key: IdempotencyKey = None,
) -> Response:
    rules = current_rules(request)

    def handler(session: Session) -> tuple[int, Any]:
        with domain_errors():
            ticket = dispatching.hand_dispatch(
                session, ticket_id, caller, body.engineer, body.reason, rules, _now()
            )
        session.flush()
        return 200, TicketPublic.of(ticket, caller)

    return _idempotent(request, caller, key, body, handler)


def _simple(action: Action, path: str, text: str) -> None:
    def route(
        ticket_id: int,
        body: StepIn,
        request: Request,
        caller: CallerDep,
        key: IdempotencyKey = None,
    ) -> Response:
        return _step(request, caller, key, ticket_id, action, body)

    route.__name__ = action.value
    router.post(f"/tickets/{{ticket_id}}/{path}", **_doc(action, text))(route)


def _reasoned(action: Action, path: str, text: str) -> None:
    def route(
        ticket_id: int,
        body: ReasonIn,
        request: Request,
        caller: CallerDep,
        key: IdempotencyKey = None,
    ) -> Response:
        return _step(request, caller, key, ticket_id, action, body, reason=body.reason)

    route.__name__ = action.value
    router.post(f"/tickets/{{ticket_id}}/{path}", **_doc(action, text))(route)


_simple(Action.accept, "accept", "The offered engineer takes the job (接单).")
_reasoned(Action.decline, "decline", "The offered engineer declines, saying why (拒单).")
_simple(Action.depart, "depart", "The engineer sets off (出发); send GPS.")
_simple(Action.arrive, "arrive", "The engineer is on site (到达); send GPS.")
_simple(Action.start, "start", "Work starts (开始服务).")
_simple(Action.resume, "resume", "Work resumes: the parts came, or a rejected fix (恢复服务).")
_simple(
    Action.request_verification,
    "request-verification",
    "Ask the customer to confirm the fix (提交验收).",
)
_simple(Action.confirm, "confirm", "The customer confirms the fix (验收通过).")
_reasoned(
    Action.wait_customer,
    "wait-customer",
    "Waiting for the customer (待客户): say what for; the SLA clock may pause.",
)
_reasoned(Action.reject, "reject", "The customer rejects the fix; the job reopens (验收不通过).")
_reasoned(Action.cancel, "cancel", "A supervisor cancels the ticket, saying why (取消).")
_reasoned(Action.reopen, "reopen", "A supervisor reopens a closed ticket, saying why (重开).")


@router.post("/tickets/{ticket_id}/wait-parts", **_doc(Action.wait_parts, "Wait for parts (待料)."))
def wait_parts(
    ticket_id: int,
    body: WaitPartsIn,
    request: Request,
    caller: CallerDep,
    key: IdempotencyKey = None,
) -> Response:
    parts = [p.model_dump() for p in body.parts]
    return _step(request, caller, key, ticket_id, Action.wait_parts, body, parts=parts)


@router.post(
    "/tickets/{ticket_id}/complete",
    **_doc(Action.complete, "The engineer reports the job done (完工), with the signature."),
)
def complete(
    ticket_id: int,
    body: CompleteIn,
    request: Request,
    caller: CallerDep,
    key: IdempotencyKey = None,
) -> Response:
    return _step(
        request,
        caller,
        key,
        ticket_id,
        Action.complete,
        body,
        report=body.report,
        signature_sha256=body.signature_sha256,
    )


@router.post(
    "/tickets/{ticket_id}/close",
    **_doc(Action.close, "A supervisor reviews and closes (关闭); a reason when unconfirmed."),
)
def close(
    ticket_id: int, body: CloseIn, request: Request, caller: CallerDep, key: IdempotencyKey = None
) -> Response:
    return _step(request, caller, key, ticket_id, Action.close, body, reason=body.reason)


@router.post(
    "/tickets/{ticket_id}/transfer",
    **_doc(Action.transfer, "Send the job to another department (转派); counted."),
)
def transfer(
    ticket_id: int,
    body: TransferIn,
    request: Request,
    caller: CallerDep,
    key: IdempotencyKey = None,
) -> Response:
    return _step(
        request,
        caller,
        key,
        ticket_id,
        Action.transfer,
        body,
        reason=body.reason,
        department=body.department,
    )


# --- evidence and the customer ------------------------------------------------------------


def _on_ticket(
    request: Request,
    caller: Caller,
    key: str | None,
    ticket_id: int,
    what: Operation,
    body: BaseModel,
    work: Callable[[Session, Ticket], tuple[int, Any] | None],
) -> Response:
    """Lock the ticket, check ``what`` is the caller's to do, run ``work``; its answer, or the
    ticket as it now is."""

    def handler(session: Session) -> tuple[int, Any]:
        with domain_errors():
            ticket = visible_ticket(session, caller, ticket_id, lock=True)
            may(caller, what, ticket)
            answer = work(session, ticket)
        if answer is not None:
            return answer
        session.flush()
        return 200, TicketPublic.of(ticket, caller)

    return _idempotent(request, caller, key, body, handler)


@router.post(
    "/tickets/{ticket_id}/notes", response_model=TicketPublic, responses=_ERRORS, tags=["evidence"]
)
def add_note(
    ticket_id: int, body: NoteIn, request: Request, caller: CallerDep, key: IdempotencyKey = None
) -> Response:
    def work(session: Session, ticket: Ticket) -> None:
        evidence.add_note(session, ticket, body.text, actor=caller.user, now=_now())

    return _on_ticket(request, caller, key, ticket_id, Operation.note, body, work)


@router.post(
    "/tickets/{ticket_id}/parts", response_model=TicketPublic, responses=_ERRORS, tags=["evidence"]
)
def parts_used(
    ticket_id: int, body: PartsIn, request: Request, caller: CallerDep, key: IdempotencyKey = None
) -> Response:
    """Parts fitted on the job (for stores and invoicing); the assigned engineer's."""

    def work(session: Session, ticket: Ticket) -> None:
        rows = [(p.part_no, p.description, p.quantity, p.unit) for p in body.parts]
        evidence.record_parts(session, ticket, rows, actor=caller.user, now=_now())

    return _on_ticket(request, caller, key, ticket_id, Operation.record_parts, body, work)


@router.post(
    "/tickets/{ticket_id}/rating", response_model=TicketPublic, responses=_ERRORS, tags=["customer"]
)
def rate(
    ticket_id: int, body: RatingIn, request: Request, caller: CallerDep, key: IdempotencyKey = None
) -> Response:
    """The customer rates the job 1-5 with a comment (CSAT), once."""

    def work(session: Session, ticket: Ticket) -> None:
        customers.rate(session, ticket, body.score, body.comment, actor=caller.user, now=_now())

    return _on_ticket(request, caller, key, ticket_id, Operation.rate, body, work)


@router.post(
    "/tickets/{ticket_id}/customer-link",
    response_model=LinkPublic,
    responses=_ERRORS,
    tags=["customer"],
)
def customer_link(ticket_id: int, request: Request, caller: CallerDep) -> Response:
    """A new private link for the customer to follow, confirm and rate (the old one stops
    working). Not idempotent on purpose: each call is a new secret."""

    def work(session: Session, ticket: Ticket) -> tuple[int, Any]:
        token = customers.issue_link(session, ticket, actor=caller.user, now=_now())
        return 201, LinkPublic(follow_url=f"/t/{token}")

    return _on_ticket(
        request, caller, None, ticket_id, Operation.customer_link, LinkPublic(follow_url=""), work
    )
