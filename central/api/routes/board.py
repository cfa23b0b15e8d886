"""A plain live board for dispatchers: open tickets first, refreshed every few seconds.
Server-rendered with no JavaScript framework so it works on any screen in the control room."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html import escape
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import case, select

from central.api.auth import BOARD_COOKIE, caller_from_cookie
from central.api.deps import SessionDep
from central.domain.lifecycle import STATE_LABELS, TERMINAL, State
from central.domain.permissions import Role
from central.services.users import UserError, authenticate, issue_token
from central.storage.models import Ticket, TicketSla

router = APIRouter(tags=["board"])

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="3">
<title>FieldLoop board</title>
<style>
body{{font:14px system-ui,sans-serif;margin:1.5rem;color:#222}}
table{{border-collapse:collapse;width:100%}}
th,td{{padding:.35rem .6rem;border-bottom:1px solid #ddd;text-align:left}}
th{{background:#f4f4f4}}.P1{{color:#b00;font-weight:bold}}.P2{{color:#c60}}
.closed td,.cancelled td{{color:#999}}.fault{{color:#b00}}
</style></head><body>
<h1>FieldLoop — work orders 工单</h1>
<p>{open_count} open · {total} shown ·
<a href="/docs">API docs</a> · <a href="/tickets">JSON</a></p>
<table><tr><th>#</th><th>State 状态</th><th>Priority</th><th>Asset</th><th>Title</th>
<th>Fault</th><th>Assignee</th><th>SLA 时限</th><th>Updated (UTC)</th></tr>
{rows}
</table></body></html>"""


#: Who watches the board: the people who dispatch, supervise and plan.
BOARD_ROLES = frozenset({Role.dispatcher, Role.supervisor, Role.planner, Role.admin})
SIGN_IN_FOR = timedelta(hours=12)

_LOGIN = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>Sign in 登录</title>
<style>body{{font:16px system-ui,sans-serif;margin:2rem;max-width:24rem}}
input{{display:block;width:100%;margin:.3rem 0 1rem}}.err{{color:#b00}}</style></head><body>
<h1>FieldLoop board 工单看板</h1>{error}
<form method="post" action="/login"><label>User 用户名<input name="username" required
autocomplete="username" value="{username}"></label><label>Password 密码<input name="password"
type="password" required autocomplete="current-password"></label>
<button>Sign in 登录</button></form></body></html>"""


def _login_page(error: str = "", username: str = "", status_code: int = 200) -> HTMLResponse:
    err = f'<p class="err">{escape(error)}</p>' if error else ""
    return HTMLResponse(
        _LOGIN.format(error=err, username=escape(username, quote=True)), status_code=status_code
    )


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_form() -> HTMLResponse:
    return _login_page()


@router.post("/login", include_in_schema=False, response_model=None)
def login(
    request: Request,
    session: SessionDep,
    username: Annotated[str, Form(max_length=128)],
    password: Annotated[str, Form(max_length=1024)],
) -> HTMLResponse | RedirectResponse:
    now = datetime.now(UTC)
    with session.begin():
        try:
            user = authenticate(session, username.strip(), password)
        except UserError as exc:
            return _login_page(str(exc), username, 401)
        if Role(user.role) not in BOARD_ROLES:
            return _login_page(f"a {user.role} does not use the board", username, 403)
        token = issue_token(session, user, now=now, ttl=SIGN_IN_FOR, label="board").token
    response = RedirectResponse("/board", status_code=303)
    response.set_cookie(
        BOARD_COOKIE,
        token,
        max_age=int(SIGN_IN_FOR.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


def _sla(t: Ticket, late: set[int]) -> str:
    words = [w for w in (t.sla_policy or "", "overdue 超时" if t.id in late else "") if w]
    if t.flagged:
        words.append(f"⚑ {t.flagged}")
    return " · ".join(words)


def _who(t: Ticket) -> str:
    """The engineer, those holding an offer, or the dispatcher's queue (调度台)."""
    if t.assignee:
        return t.assignee
    if t.offered_to:
        return "offered: " + ", ".join(t.offered_to)
    return "dispatcher queue / 待调度" if t.needs_dispatcher else ""


@router.get("/board", response_class=HTMLResponse, include_in_schema=False, response_model=None)
def board(request: Request, session: SessionDep) -> HTMLResponse | RedirectResponse:
    caller = caller_from_cookie(request)
    if caller is None:
        return RedirectResponse("/login", status_code=303)
    if caller.role not in BOARD_ROLES:
        return HTMLResponse("the board is for dispatchers and supervisors", status_code=403)
    open_first = case((Ticket.state.in_([s.value for s in TERMINAL]), 1), else_=0)
    tickets = list(
        session.execute(select(Ticket).order_by(open_first, Ticket.id.desc()).limit(200)).scalars()
    )
    late = set(
        session.execute(
            select(TicketSla.ticket_id).where(
                TicketSla.breached.is_(True),
                TicketSla.ticket_id.in_([t.id for t in tickets]),
            )
        ).scalars()
    )
    rows = []
    for t in tickets:
        en, zh = STATE_LABELS[State(t.state)]
        rows.append(
            f'<tr class="{escape(t.state)}"><td><a href="/tickets/{t.id}">{t.id}</a></td>'
            f"<td>{escape(en)} {escape(zh)}</td>"
            f'<td class="{escape(t.priority or "")}">{escape(t.priority or "")}</td>'
            f"<td>{escape(t.asset_id or '')}</td><td>{escape(t.title)}</td>"
            f'<td class="{"fault" if t.fault_active else ""}">'
            f"{'active' if t.fault_active else 'cleared' if t.fault_cleared_at else ''}</td>"
            f"<td>{escape(_who(t))}</td>"
            f'<td class="{"fault" if t.id in late or t.flagged else ""}">'
            f"{escape(_sla(t, late))}</td>"
            f"<td>{t.updated_at:%Y-%m-%d %H:%M:%S}</td></tr>"
        )
    open_count = sum(1 for t in tickets if State(t.state) not in TERMINAL)
    return HTMLResponse(
        _PAGE.format(open_count=open_count, total=len(tickets), rows="\n".join(rows))
    )
