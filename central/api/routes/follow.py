"""The customer's private link: follow the job, confirm or reject the fix, rate it. The token in
the link is the credential (a capability for one ticket), so the customer needs no account.
JSON under /track/{token}; a plain page under /t/{token} whose forms post back to it."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from central.api.deps import SessionDep
from central.api.errors import domain_errors
from central.api.schemas import HistoryPublic, RatingIn, StateLabel
from central.domain.lifecycle import STATE_LABELS, Action, State
from central.services import customers
from central.services.tickets import BadInput, Step, TicketNotFound, apply_step
from central.storage.models import Ticket

router = APIRouter(tags=["customer"])

_GONE = "this link is not valid (it may have been replaced by a newer one)"


class ConfirmIn(BaseModel):
    note: str | None = Field(None, max_length=2000)


class RejectIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000, description="what is still wrong")


class Progress(BaseModel):
    """What the customer sees: the job's progress, never the engineers' internal notes."""

    ticket_id: int
    title: str
    location: str | None
    state: StateLabel
    engineer: str | None
    completion_report: str | None
    can_confirm: bool
    can_rate: bool
    csat_score: int | None
    steps: list[HistoryPublic]


def _actor(ticket: Ticket) -> str:
    return f"customer:{ticket.reporter or 'link'}"[:128]  # the history's actor column


def _load(session: Session, token: str, *, lock: bool = False) -> Ticket:
    try:
        return customers.ticket_for_link(session, token, lock=lock)
    except TicketNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, _GONE) from None


def _progress(ticket: Ticket) -> Progress:
    state = State(ticket.state)
    shown = [h for h in ticket.history if h.action not in ("note", "attached", "parts_used")]
    return Progress(
        ticket_id=ticket.id,
        title=ticket.title,
        location=ticket.location,
        state=StateLabel.of(state),
        engineer=ticket.assignee,
        completion_report=ticket.completion_report,
        can_confirm=state is State.pending_verification,
        can_rate=state in customers.RATABLE and ticket.csat_score is None,
        csat_score=ticket.csat_score,
        steps=[
            HistoryPublic.model_validate(h).model_copy(update={"data": {}, "note": None})
            for h in shown
        ],
    )


def _verify(session: Session, token: str, action: Action, **inputs: Any) -> Ticket:
    with session.begin():
        ticket = _load(session, token, lock=True)
        with domain_errors():
            apply_step(session, ticket, Step(action, **inputs), actor=_actor(ticket), now=_now())
        return ticket


def _now() -> datetime:
    return datetime.now(UTC)


@router.get("/track/{token}", response_model=Progress)
def track(token: str, session: SessionDep) -> Progress:
    return _progress(_load(session, token))


@router.post("/track/{token}/confirm", response_model=Progress)
def confirm(token: str, body: ConfirmIn, session: SessionDep) -> Progress:
    """The fix works (验收通过)."""
    _verify(session, token, Action.confirm, note=body.note)
    return _progress(_load(session, token))


@router.post("/track/{token}/reject", response_model=Progress)
def reject(token: str, body: RejectIn, session: SessionDep) -> Progress:
    """The fix does not work (验收不通过): the job reopens for the engineer."""
    _verify(session, token, Action.reject, reason=body.reason)
    return _progress(_load(session, token))


@router.post("/track/{token}/rating", response_model=Progress)
def rating(token: str, body: RatingIn, session: SessionDep) -> Progress:
    """Rate the job 1-5 with a comment (满意度), once."""
    with session.begin():
        ticket = _load(session, token, lock=True)
        with domain_errors():
            customers.rate(
                session, ticket, body.score, body.comment, actor=_actor(ticket), now=_now()
            )
    return _progress(_load(session, token))


# --- the page -----------------------------------------------------------------------------

_PAGE = """<!doctype html><html lang="zh"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer"><title>Ticket #{id} 工单</title>
<style>body{{font:16px system-ui,sans-serif;margin:1rem;max-width:40rem}}
li{{margin:.3rem 0}}form{{margin:1rem 0}}textarea{{width:100%}}.err{{color:#b00}}</style>
</head><body><h1>#{id} {title}</h1><p>{location}</p>
{reported}<p>Status 状态: <b>{state_en} {state_zh}</b>{engineer}</p>{error}{report}
<h2>Progress 进度</h2><ol>{steps}</ol>{forms}</body></html>"""

_CONFIRM = """<h2>Is it fixed? 是否修好?</h2>
<form method="post" action="/t/{t}/confirm"><button>Yes, confirm 验收通过</button></form>
<form method="post" action="/t/{t}/reject"><label>What is still wrong? 仍有问题:<br>
<textarea name="reason" required maxlength="2000"></textarea></label>
<button>No, reject 验收不通过</button></form>"""

_RATE = """<h2>Rate the service 服务评价</h2><form method="post" action="/t/{t}/rating">
<select name="score">{options}</select><br><textarea name="comment" maxlength="2000"
placeholder="Comment 评价"></textarea><button>Send 提交</button></form>"""


_REPORTED = """<div style="border:2px solid #2a6;padding:.5rem 1rem;margin:1rem 0">
<p><strong>Reported · 已提交.</strong> <strong>Keep this page's address</strong>: it is your
private link to follow the work and confirm when it is done; anyone who has it can see this
ticket.</p><p><strong>请保存本页地址</strong>：这是您的私人链接，用于查看维修进度并在完工后确认，
持有链接的人都可以查看此工单。</p><p><code>{url}</code></p></div>"""


def _page(token: str, p: Progress, error: str | None = None, reported_url: str = "") -> str:
    t = escape(token, quote=True)
    steps = "".join(
        f"<li>{h.at:%Y-%m-%d %H:%M} UTC · "
        f"{escape(' '.join(STATE_LABELS[State(h.to_state)]) if h.to_state else h.action)}</li>"
        for h in p.steps
    )
    forms = _CONFIRM.format(t=t) if p.can_confirm else ""
    if p.can_rate:
        options = "".join(f'<option value="{n}">{"★" * n}</option>' for n in range(5, 0, -1))
        forms += _RATE.format(t=t, options=options)
    elif p.csat_score is not None:
        forms += f"<p>Rated 已评价 {'★' * p.csat_score}</p>"
    return _PAGE.format(
        id=p.ticket_id,
        title=escape(p.title),
        location=escape(p.location or ""),
        state_en=escape(p.state.en),
        state_zh=escape(p.state.zh),
        engineer=f" · engineer 工程师 {escape(p.engineer)}" if p.engineer else "",
        error=f'<p class="err">{escape(error)}</p>' if error else "",
        reported=_REPORTED.format(url=escape(reported_url)) if reported_url else "",
        report=(
            f"<p>Report 完工报告: {escape(p.completion_report)}</p>" if p.completion_report else ""
        ),
        steps=steps,
        forms=forms,
    )


@router.get("/t/{token}", response_class=HTMLResponse, include_in_schema=False)
def page(token: str, request: Request, session: SessionDep, reported: bool = False) -> HTMLResponse:
    url = str(request.url.remove_query_params("reported")) if reported else ""
    return HTMLResponse(
        _page(token, _progress(_load(session, token)), reported_url=url),
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def _form_result(session: Session, token: str, run: Any) -> HTMLResponse | RedirectResponse:
    try:
        run()
    except HTTPException as exc:
        if exc.status_code == status.HTTP_404_NOT_FOUND:
            raise
        msg = exc.detail if isinstance(exc.detail, str) else str(exc.detail.get("message"))
        body = _page(token, _progress(_load(session, token)), error=msg)
        return HTMLResponse(body, status_code=exc.status_code)
    # post/redirect/get: a reload does not send the form again
    return RedirectResponse(f"/t/{token}", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/t/{token}/confirm", include_in_schema=False, response_model=None)
def page_confirm(token: str, session: SessionDep) -> HTMLResponse | RedirectResponse:
    return _form_result(session, token, lambda: _verify(session, token, Action.confirm))


@router.post("/t/{token}/reject", include_in_schema=False, response_model=None)
def page_reject(
    token: str, session: SessionDep, reason: Annotated[str, Form(max_length=2000)] = ""
) -> HTMLResponse | RedirectResponse:
    def run() -> None:
        if not reason.strip():
            raise HTTPException(422, "say what is still wrong 请说明仍存在的问题")
        _verify(session, token, Action.reject, reason=reason.strip())

    return _form_result(session, token, run)


@router.post("/t/{token}/rating", include_in_schema=False, response_model=None)
def page_rating(
    token: str,
    session: SessionDep,
    score: Annotated[int, Form(ge=1, le=5)],
    comment: Annotated[str, Form(max_length=2000)] = "",
) -> HTMLResponse | RedirectResponse:
    def run() -> None:
        with session.begin():
            ticket = _load(session, token, lock=True)
            try:
                customers.rate(
                    session,
                    ticket,
                    score,
                    comment.strip() or None,
                    actor=_actor(ticket),
                    now=_now(),
                )
            except BadInput as exc:
                raise HTTPException(422, str(exc)) from None

    return _form_result(session, token, run)
