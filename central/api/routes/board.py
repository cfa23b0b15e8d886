"""A plain live board for dispatchers: open tickets first, refreshed every few seconds.
Server-rendered with no JavaScript framework so it works on any screen in the control room."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from sqlalchemy import case, select

from central.api.deps import SessionDep
from central.domain.lifecycle import STATE_LABELS, TERMINAL, State
from central.storage.models import Ticket

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
<th>Fault</th><th>Assignee</th><th>Updated (UTC)</th></tr>
{rows}
</table></body></html>"""


@router.get("/board", response_class=HTMLResponse, include_in_schema=False)
def board(session: SessionDep) -> HTMLResponse:
    open_first = case((Ticket.state.in_([s.value for s in TERMINAL]), 1), else_=0)
    tickets = list(
        session.execute(select(Ticket).order_by(open_first, Ticket.id.desc()).limit(200)).scalars()
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
            f"<td>{escape(t.assignee or '')}</td>"
            f"<td>{t.updated_at:%Y-%m-%d %H:%M:%S}</td></tr>"
        )
    open_count = sum(1 for t in tickets if State(t.state) not in TERMINAL)
    return HTMLResponse(
        _PAGE.format(open_count=open_count, total=len(tickets), rows="\n".join(rows))
    )
