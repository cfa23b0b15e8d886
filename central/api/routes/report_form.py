"""A public problem-report form for people without an account: plain HTML, no JavaScript, usable
on a phone, labels in English and Chinese. It validates through the same TicketRequest as the API
and the webhooks, so a web report is the same ticket as any other.

CSRF: nothing to protect. The form needs no login and we set and read no cookies, so a forged
cross-site POST can do only what anyone can do by filling the form in themselves."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from central.api.deps import SessionDep, current_rules
from central.api.routes.webhooks import configure, intake_config, read_body
from central.domain.intake import URGENCY_LABELS, TicketRequest, parse_urgency
from central.services.intake import Opened, create_ticket
from central.services.live_rules import DecisionRules

__all__ = ["PROBLEM_TYPES", "configure", "router"]

router = APIRouter(tags=["intake"])

# 20,000 Chinese characters percent-encoded are 180 kB.
MAX_FORM_BYTES = 256 * 1024
MAX_FORM_FIELDS = 50

PROBLEM_TYPES: tuple[tuple[str, str, str], ...] = (
    ("hvac", "HVAC", "空调"),
    ("electrical", "Electrical", "电气"),
    ("plumbing", "Plumbing", "给排水"),
    ("lift", "Lift", "电梯"),
    ("fire", "Fire safety", "消防"),
    ("other", "Other", "其他"),
)


@dataclass(frozen=True)
class _Field:
    name: str
    en: str
    zh: str
    kind: str = "text"  # text | textarea | problem_type | urgency
    required: bool = True
    max_length: int = 255
    autocomplete: str = "off"
    hint: str = ""


FIELDS: tuple[_Field, ...] = (
    _Field("location", "Location", "位置", hint="site, building, room · 场地、楼栋、房间"),
    _Field("problem_type", "Problem type", "问题类型", kind="problem_type"),
    _Field("urgency", "Urgency", "紧急程度", kind="urgency"),
    _Field("description", "What is wrong", "问题描述", kind="textarea", max_length=20_000),
    _Field("asset_id", "Asset ID (optional)", "设备编号（选填）", required=False, max_length=128),
    _Field("reporter", "Your name", "您的姓名", max_length=128, autocomplete="name"),
    _Field("contact", "Phone or e-mail", "电话或邮箱", hint="so we can reach you · 方便联系您"),
)
_BY_NAME = {f.name: f for f in FIELDS}

_STYLE = (
    "body{font:16px/1.45 system-ui,sans-serif;margin:0 auto;padding:1rem;max-width:40rem;"
    "color:#222}label{display:block;font-weight:600;margin-top:1rem}"
    "input,select,textarea{box-sizing:border-box;width:100%;font:inherit;padding:.55rem;"
    "margin-top:.25rem;border:1px solid #888;border-radius:4px}textarea{min-height:8rem}"
    ".hint{color:#555;font-weight:normal;font-size:.9rem}"
    ".err{color:#b00;margin:.25rem 0 0}[aria-invalid=true]{border:2px solid #b00}"
    ".box{border:2px solid #b00;padding:.5rem 1rem;margin:1rem 0}"
    "button{margin-top:1.5rem;width:100%;padding:.8rem;font:inherit;font-weight:600}"
    ".link{word-break:break-all;font-size:1.1rem}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
_HEADERS = {
    # Everything we show is escaped; the policy is the second line of defence (no script at all).
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the success page holds a private link
    "Cache-Control": "no-store",  # nor should a shared device's cache keep it
}


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _page(title: str, body: str, status_code: int) -> HTMLResponse:
    html = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>\n{body}\n</body></html>"
    )
    return HTMLResponse(html, status_code=status_code, headers=_HEADERS)


def _options(choices: list[tuple[str, str]], selected: str, placeholder: str) -> str:
    out = [f'<option value="">{_e(placeholder)}</option>']
    if selected and selected not in {value for value, _ in choices}:
        # a value our list does not offer (posted by hand) is still shown back, escaped
        choices = [*choices, (selected, selected)]
    for value, label in choices:
        mark = " selected" if value == selected else ""
        out.append(f'<option value="{_e(value)}"{mark}>{_e(label)}</option>')
    return "".join(out)


def _control(f: _Field, value: str, invalid: bool) -> str:
    attrs = f'id="{f.name}" name="{f.name}"'
    if f.required:
        attrs += " required"
    if invalid:
        attrs += f' aria-invalid="true" aria-describedby="{f.name}-err"'
    if f.kind == "problem_type":
        choices = [(key, f"{en} {zh}") for key, en, zh in PROBLEM_TYPES]
        return f"<select {attrs}>{_options(choices, value, 'Choose · 请选择')}</select>"
    if f.kind == "urgency":
        parsed = parse_urgency(value)  # "紧急" or "High" posted by hand selects its option
        current = getattr(parsed, "value", value)
        choices = [(u.value, f"{en} {zh}") for u, (en, zh) in URGENCY_LABELS.items()]
        return f"<select {attrs}>{_options(choices, current, 'Choose · 请选择')}</select>"
    attrs += f' maxlength="{f.max_length}"'
    if f.kind == "textarea":
        return f'<textarea {attrs} rows="6">{_e(value)}</textarea>'
    return f'<input type="text" {attrs} autocomplete="{f.autocomplete}" value="{_e(value)}">'


def _form(values: dict[str, str], errors: dict[str, str]) -> str:
    parts = ["<h1>Report a problem · 报修</h1>"]
    if errors:
        names = "".join(
            f'<li><a href="#{n}">{_e(_BY_NAME[n].en)} {_e(_BY_NAME[n].zh)}</a>: {_e(msg)}</li>'
            if n in _BY_NAME
            else f"<li>{_e(msg)}</li>"
            for n, msg in errors.items()
        )
        parts.append(
            '<div class="box" role="alert"><p>Please fix these fields · 请修改以下内容：</p>'
            f"<ul>{names}</ul></div>"
        )
    # no action attribute: the form posts back to the address it was served from (/report)
    parts.append('<form method="post" accept-charset="utf-8">')
    for f in FIELDS:
        hint = f' <span class="hint">{_e(f.hint)}</span>' if f.hint else ""
        parts.append(f'<label for="{f.name}">{_e(f.en)} <span lang="zh">{_e(f.zh)}</span>{hint}')
        parts.append("</label>")
        if f.name in errors:
            parts.append(f'<p class="err" id="{f.name}-err">{_e(errors[f.name])}</p>')
        parts.append(_control(f, values.get(f.name, ""), f.name in errors))
    parts.append('<button type="submit">Send report · 提交</button></form>')
    return "\n".join(parts)


def _message(error: dict[str, Any]) -> str:
    """Pydantic's error in both languages, for people rather than programs."""
    kind, ctx = error.get("type"), error.get("ctx") or {}
    if kind == "missing" or (kind == "string_too_short" and ctx.get("min_length") == 1):
        return "Required · 必填"
    if kind == "string_too_short":
        n = ctx.get("min_length")
        return f"At least {n} characters · 至少 {n} 个字符"
    if kind == "string_too_long":
        n = ctx.get("max_length")
        return f"At most {n} characters · 最多 {n} 个字符"
    if kind == "enum":
        return "Choose one of the listed values · 请从列表中选择"
    return str(error.get("msg", "invalid"))


def _guard(request: Request) -> None:
    if not intake_config(request).public_reporting:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")  # as if it did not exist


@router.get("/report", response_class=HTMLResponse, include_in_schema=False)
def report_form(request: Request) -> HTMLResponse:
    _guard(request)
    return _page("Report a problem · 报修", _form({}, {}), status.HTTP_200_OK)


def _open(session: Session, req: TicketRequest, rules: DecisionRules | None) -> Opened:
    with session.begin():
        now = datetime.now(UTC)
        return create_ticket(
            session, req, source="web", actor=f"web:{req.reporter}", now=now, rules=rules
        )


@router.post("/report", include_in_schema=False, response_model=None)
async def submit_report(request: Request, session: SessionDep) -> HTMLResponse | RedirectResponse:
    _guard(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send the form as x-www-form-urlencoded"
        )
    # Read with a bound, then parse ourselves: a form post cannot grow without limit.
    body = await read_body(request, MAX_FORM_BYTES)
    try:
        pairs = parse_qsl(
            body.decode("utf-8", errors="replace"),
            keep_blank_values=True,
            max_num_fields=MAX_FORM_FIELDS,
            errors="replace",
        )
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "too many form fields") from None
    values: dict[str, str] = {}
    for key, value in pairs:
        if key in _BY_NAME and key not in values:  # only our fields; the first of repeats
            values[key] = value
    # A blank box is "not given": a required field then reads "Required", an optional one None.
    data = {k: v for k, v in values.items() if v.strip()}
    try:
        req = TicketRequest.model_validate(data)
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for e in exc.errors(include_url=False):
            name = str(e["loc"][0]) if e["loc"] else "form"
            errors.setdefault(name, _message(dict(e)))
        return _page(
            "Please check the form · 请检查表单",
            _form(values, errors),
            status.HTTP_422_UNPROCESSABLE_CONTENT,
        )

    opened = await run_in_threadpool(_open, session, req, current_rules(request))
    # post/redirect/get: the customer lands on their ticket's own page (its address is the
    # private link), and reloading it does not report the problem a second time
    return RedirectResponse(
        f"/t/{opened.customer_token}?reported=1",
        status_code=status.HTTP_303_SEE_OTHER,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
