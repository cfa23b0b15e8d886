"""Signed webhooks and the public web form over a real database (SQLite and PostgreSQL): each
accepted report is one ticket, a replayed delivery is none, and every refusal says why."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from central.api.app import create_app
from central.api.routes import report_form, webhooks
from central.domain.secrets import digest
from central.domain.signatures import sign
from central.settings import Settings
from central.storage.models import Ticket, TicketEvent, WebhookDelivery

pytestmark = pytest.mark.integration

SECRET = "whsec_cmms_old_0123456789"
NEW_SECRET = "whsec_cmms_new_9876543210"
REPORT: dict[str, Any] = {
    "location": "Tower 3, B1 plant room · 三号楼B1机房",
    "problem_type": "hvac",
    "urgency": "high",
    "description": "Chiller 2 trips on high pressure\nsince 07:40",
    "reporter": "Wang Fang",
    "contact": "+86 138 0013 8000",
    "asset_id": "CH-02",
}
MANDATORY = {"location", "problem_type", "urgency", "description", "reporter", "contact"}


def build_app(db_url: str) -> FastAPI:
    # no decision rules: these tests are about intake, not classification
    app = create_app(Settings(db_url=db_url, broker_url=None, rules_dir=None, workers=False))
    paths = {getattr(r, "path", None) for r in app.routes}
    if "/intake/webhooks/{source}" not in paths:
        app.include_router(webhooks.router)
    if "/report" not in paths:
        app.include_router(report_form.router)
    return app


def configure(app: FastAPI, *, public_reporting: bool = True) -> None:
    webhooks.configure(
        app,
        webhook_secrets={"cmms": [NEW_SECRET, SECRET]},  # rotating: both accepted
        replay_window_s=300,
        public_reporting=public_reporting,
    )


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    app = build_app(db_url)
    with TestClient(app) as c:
        configure(app)  # after start-up, so nothing the lifespan sets overrides the test's own
        yield c


def deliver(
    client: TestClient,
    payload: dict[str, Any] | bytes,
    *,
    delivery: str | None = "evt-0001",
    secret: str = SECRET,
    t: int | None = None,
    source: str = "cmms",
    signed_body: bytes | None = None,
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signed = body if signed_body is None else signed_body
    signed = f"{delivery or ''}.".encode() + signed  # the delivery id is signed with the body
    headers = {
        "Content-Type": "application/json",
        "FieldLoop-Signature": sign(secret, signed, int(time.time()) if t is None else t),
    }
    if delivery is not None:
        headers["FieldLoop-Delivery"] = delivery
    return client.post(f"/intake/webhooks/{source}", content=body, headers=headers)


def counts(client: TestClient) -> tuple[int, int]:
    with client.app.state.sessions() as s:  # type: ignore[attr-defined]
        tickets = s.execute(select(func.count()).select_from(Ticket)).scalar_one()
        deliveries = s.execute(select(func.count()).select_from(WebhookDelivery)).scalar_one()
    return tickets, deliveries


def load(client: TestClient, ticket_id: int) -> tuple[Ticket, list[TicketEvent]]:
    with client.app.state.sessions() as s:  # type: ignore[attr-defined]
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None
        history = list(
            s.execute(select(TicketEvent).where(TicketEvent.ticket_id == ticket_id)).scalars()
        )
    return ticket, history


# --- webhooks ------------------------------------------------------------------------------------


def test_a_signed_delivery_opens_a_webhook_ticket(client: TestClient) -> None:
    r = deliver(client, REPORT)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["duplicate"] is False
    assert body["state"] == {"key": "new", "en": "New", "zh": "新建"}
    assert re.fullmatch(r"/t/flc_[A-Za-z0-9_-]+", body["follow_url"])
    assert r.headers["cache-control"] == "no-store"

    ticket, history = load(client, body["ticket_id"])
    assert ticket.source == "webhook"
    assert (ticket.location, ticket.problem_type, ticket.urgency, ticket.priority) == (
        REPORT["location"],
        "hvac",
        "high",
        "P2",
    )
    assert (ticket.reporter, ticket.contact, ticket.asset_id) == (
        "Wang Fang",
        REPORT["contact"],
        "CH-02",
    )
    assert ticket.title == "Chiller 2 trips on high pressure"
    assert ticket.description == REPORT["description"]
    assert ticket.customer_token_hash == digest(body["follow_url"].removeprefix("/t/"))
    assert [(h.actor, h.data["channel"], h.data["delivery_id"]) for h in history] == [
        ("webhook:cmms", "webhook", "evt-0001")
    ]
    with client.app.state.sessions() as s:  # type: ignore[attr-defined]
        row = s.execute(select(WebhookDelivery)).scalar_one()
    assert (row.source, row.delivery_id, row.ticket_id) == ("cmms", "evt-0001", ticket.id)


def test_a_replayed_delivery_answers_with_the_same_ticket_and_creates_nothing(
    client: TestClient,
) -> None:
    first = deliver(client, REPORT)
    assert first.status_code == 201
    before = counts(client)
    # the sender's retry: the same delivery, signed again a little later, even with another secret
    again = deliver(client, REPORT, secret=NEW_SECRET, t=int(time.time()) + 5)
    assert again.status_code == 200, again.text
    assert again.json() == {
        "ticket_id": first.json()["ticket_id"],
        "state": first.json()["state"],
        "follow_url": None,
        "duplicate": True,
    }
    assert counts(client) == before == (1, 1)
    # the same delivery id with another body is the sender's bug: refused, nothing merged
    changed = deliver(client, {**REPORT, "description": "something else"})
    assert changed.status_code == 422 and "different body" in changed.json()["detail"]
    assert counts(client) == (1, 1)
    # another delivery id is another report
    other = deliver(client, REPORT, delivery="evt-0002")
    assert other.status_code == 201
    assert other.json()["ticket_id"] != first.json()["ticket_id"]
    assert counts(client) == (2, 2)


def test_the_same_delivery_id_from_another_source_is_its_own_delivery(db_url: str) -> None:
    app = build_app(db_url)
    with TestClient(app) as c:
        webhooks.configure(
            app,
            webhook_secrets={"cmms": [SECRET], "bms": [NEW_SECRET]},
            replay_window_s=300,
            public_reporting=False,  # webhooks do not depend on the public form
        )
        assert deliver(c, REPORT).status_code == 201
        assert deliver(c, REPORT, source="bms", secret=NEW_SECRET).status_code == 201
        assert counts(c) == (2, 2)


def test_a_tampered_body_is_401_and_stores_nothing(client: TestClient) -> None:
    body = json.dumps(REPORT).encode()
    tampered = body.replace(b'"high"', b'"critical"')
    r = deliver(client, tampered, signed_body=body)
    assert r.status_code == 401
    assert "signature mismatch" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "FieldLoop-Signature"
    assert counts(client) == (0, 0)


def test_a_stale_timestamp_is_401_saying_by_how_much(client: TestClient) -> None:
    r = deliver(client, REPORT, t=int(time.time()) - 900)
    assert r.status_code == 401
    assert re.search(r"is 90\d s old: 60\d s outside the replay window", r.json()["detail"])
    assert counts(client) == (0, 0)


def test_a_wrong_secret_is_401(client: TestClient) -> None:
    r = deliver(client, REPORT, secret="whsec_somebody_elses_secret")
    assert r.status_code == 401
    assert "signature mismatch" in r.json()["detail"]


def test_a_missing_or_malformed_signature_is_401_with_the_reason(client: TestClient) -> None:
    body = json.dumps(REPORT).encode()
    headers = {"FieldLoop-Delivery": "evt-1"}
    r = client.post("/intake/webhooks/cmms", content=body, headers=headers)
    assert r.status_code == 401
    assert "missing FieldLoop-Signature header" in r.json()["detail"]
    headers["FieldLoop-Signature"] = "t=yesterday,v1=abc"
    r = client.post("/intake/webhooks/cmms", content=body, headers=headers)
    assert r.status_code == 401
    assert "t must be unix seconds" in r.json()["detail"]


def test_an_unknown_source_is_404_and_names_no_source(client: TestClient) -> None:
    for secret in (SECRET, "whsec_guess_0123456789"):
        r = deliver(client, REPORT, source="helpdesk", secret=secret)
        assert r.status_code == 404
        assert r.json() == {"detail": "no such webhook source"}
    assert deliver(client, REPORT, source="CMMS").status_code == 404  # names are exact
    assert counts(client) == (0, 0)


def test_a_missing_delivery_id_is_400(client: TestClient) -> None:
    for delivery in (None, "", "x" * 129):
        r = deliver(client, REPORT, delivery=delivery)
        assert r.status_code == 400, delivery
        assert "FieldLoop-Delivery" in r.json()["detail"]
    assert deliver(client, REPORT, delivery="x" * 128).status_code == 201


def test_an_empty_object_is_422_naming_every_mandatory_field(client: TestClient) -> None:
    r = deliver(client, {})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert {f["field"] for f in detail["fields"]} == {f"body.{n}" for n in MANDATORY}
    for name in MANDATORY:
        assert f"body.{name}" in detail["message"]
    assert counts(client) == (0, 0)


def test_invalid_json_and_server_owned_fields_are_422(client: TestClient) -> None:
    r = deliver(client, b'{"location": ')
    assert r.status_code == 422
    assert [f["field"] for f in r.json()["detail"]["fields"]] == ["body"]
    assert "JSON" in r.json()["detail"]["fields"][0]["problem"]

    r = deliver(client, b"[1, 2]", delivery="evt-list")
    assert r.status_code == 422

    r = deliver(client, {**REPORT, "state": "closed", "priority": "P1"}, delivery="evt-extra")
    assert r.status_code == 422
    assert {f["field"] for f in r.json()["detail"]["fields"]} == {"body.state", "body.priority"}

    r = deliver(client, {**REPORT, "urgency": "whenever"}, delivery="evt-urgency")
    assert [f["field"] for f in r.json()["detail"]["fields"]] == ["body.urgency"]
    assert counts(client) == (0, 0)


def test_a_refused_body_does_not_use_up_the_delivery_id(client: TestClient) -> None:
    assert deliver(client, {}).status_code == 422
    assert deliver(client, REPORT).status_code == 201  # the sender fixed it and sent it again


def test_urgency_may_be_given_in_chinese(client: TestClient) -> None:
    r = deliver(client, {**REPORT, "urgency": "紧急"})
    assert r.status_code == 201, r.text
    ticket, _ = load(client, r.json()["ticket_id"])
    assert (ticket.urgency, ticket.priority) == ("critical", "P1")


def test_a_body_over_the_limit_is_413(client: TestClient) -> None:
    r = deliver(client, {**REPORT, "description": "x" * (webhooks.MAX_BODY_BYTES + 1)})
    assert r.status_code == 413
    assert counts(client) == (0, 0)


def test_many_copies_of_one_delivery_at_once_open_one_ticket(client: TestClient) -> None:
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: deliver(client, REPORT), range(8)))
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201]
    assert len({a.json()["ticket_id"] for a in answers}) == 1
    assert counts(client) == (1, 1)


def test_two_copies_racing_past_the_check_open_one_ticket(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both requests look, see no delivery, then both insert: PostgreSQL's unique constraint
    makes one wait and fail, and that one answers with the other's ticket."""
    barrier = threading.Barrier(2, timeout=15)
    real_find = webhooks._find
    seen: list[bool] = []

    def find_then_wait(*args: Any) -> WebhookDelivery | None:
        found = real_find(*args)
        seen.append(found is not None)
        if found is None:
            barrier.wait()  # neither goes on until both have seen nothing
        return found

    monkeypatch.setattr(webhooks, "_find", find_then_wait)
    app = build_app(pg_url)
    with TestClient(app) as c:
        configure(app)
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda _: deliver(c, REPORT), range(2)))
        assert sorted(a.status_code for a in answers) == [200, 201], [a.text for a in answers]
        assert answers[0].json()["ticket_id"] == answers[1].json()["ticket_id"]
        assert counts(c) == (1, 1)
        with c.app.state.sessions() as s:  # type: ignore[attr-defined]
            assert s.execute(select(func.count()).select_from(TicketEvent)).scalar_one() == 1
    # two looks that found nothing, then the loser's look after its insert failed
    assert seen == [False, False, True]


# --- the web form --------------------------------------------------------------------------------

FORM = dict(REPORT)


def test_the_form_has_every_field_with_both_labels(client: TestClient) -> None:
    r = client.get("/report")
    assert r.status_code == 200
    page = r.text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "<script" not in page
    for name in (*MANDATORY, "asset_id"):
        assert f'name="{name}"' in page
    for label in ("Location", "位置", "Urgency", "紧急程度", "Your name", "您的姓名"):
        assert label in page
    for key, zh in [("hvac", "空调"), ("electrical", "电气"), ("plumbing", "给排水"),
                    ("lift", "电梯"), ("fire", "消防"), ("other", "其他")]:  # fmt: skip
        assert re.search(rf'<option value="{key}">[^<]*{zh}</option>', page)
    assert re.search(r'<option value="critical">Critical 紧急</option>', page)
    assert '<form method="post"' in page
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "set-cookie" not in r.headers


def test_a_form_with_missing_fields_is_422_keeping_the_values_escaped(client: TestClient) -> None:
    sent = {
        "location": 'Tower "3" & B1 · 三号楼',
        "problem_type": "",
        "description": "<script>alert(1)</script>\n</textarea><b>x</b>",
        "reporter": "   ",
        "asset_id": "",
    }
    r = client.post("/report", data=sent)
    assert r.status_code == 422
    page = r.text
    assert "<script>" not in page and "</textarea><b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\n&lt;/textarea&gt;&lt;b&gt;x&lt;/b&gt;" in page
    assert 'value="Tower &quot;3&quot; &amp; B1 · 三号楼"' in page
    for name in ("problem_type", "urgency", "reporter", "contact"):
        assert f'<p class="err" id="{name}-err">Required · 必填</p>' in page
        assert f'href="#{name}"' in page  # the summary at the top links to it
    for name in ("location", "description", "asset_id"):
        assert f'id="{name}-err"' not in page
    assert counts(client) == (0, 0)


def test_a_hand_posted_value_is_shown_back_escaped(client: TestClient) -> None:
    r = client.post("/report", data={**FORM, "problem_type": '"><script>x', "contact": "1"})
    assert r.status_code == 422
    assert '<option value="&quot;&gt;&lt;script&gt;x" selected>' in r.text
    assert "At least 3 characters · 至少 3 个字符" in r.text
    assert "<script>" not in r.text


def test_a_valid_form_opens_a_web_ticket_and_shows_the_private_link(client: TestClient) -> None:
    form = {**FORM, "urgency": "紧急", "asset_id": "", "colour": "red"}
    posted = client.post("/report", data=form, follow_redirects=False)
    # post/redirect/get: a reload of the page shown next does not report it again
    assert posted.status_code == 303, posted.text
    link = re.fullmatch(r"(/t/flc_[A-Za-z0-9_-]+)\?reported=1", posted.headers["location"])
    assert link
    r = client.get(posted.headers["location"])
    m = re.search(r"<h1>#(\d+) ", r.text)
    assert r.status_code == 200 and m
    assert f"<code>http://testserver{link.group(1)}</code>" in r.text
    assert "Keep this page" in r.text and "请保存本页地址" in r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "no-referrer"

    ticket, history = load(client, int(m.group(1)))
    assert ticket.source == "web"
    assert (ticket.location, ticket.urgency, ticket.asset_id) == (
        FORM["location"],
        "critical",
        None,
    )
    assert ticket.customer_token_hash == digest(link.group(1).removeprefix("/t/"))
    assert [(h.actor, h.data["channel"]) for h in history] == [("web:Wang Fang", "web")]
    assert counts(client) == (1, 0)


def test_the_form_accepts_only_url_encoded_posts(client: TestClient) -> None:
    r = client.post("/report", json=FORM)
    assert r.status_code == 415
    assert counts(client) == (0, 0)


def test_public_reporting_off_hides_the_form(db_url: str) -> None:
    app = build_app(db_url)
    with TestClient(app) as c:
        configure(app, public_reporting=False)
        assert c.get("/report").status_code == 404
        assert c.post("/report", data=FORM).status_code == 404
        assert counts(c) == (0, 0)
        assert deliver(c, REPORT).status_code == 201  # the webhooks are not affected


def test_an_app_never_configured_has_no_public_form() -> None:
    app = FastAPI()
    app.include_router(report_form.router)
    with TestClient(app) as c:
        assert c.get("/report").status_code == 404


def test_a_captured_delivery_resent_under_a_new_id_is_refused(client: TestClient) -> None:
    body = json.dumps(REPORT).encode()
    header = sign(SECRET, b"evt-1." + body, int(time.time()))
    first = client.post(
        "/intake/webhooks/cmms",
        content=body,
        headers={"FieldLoop-Signature": header, "FieldLoop-Delivery": "evt-1"},
    )
    assert first.status_code == 201, first.text
    replayed = client.post(
        "/intake/webhooks/cmms",
        content=body,
        headers={"FieldLoop-Signature": header, "FieldLoop-Delivery": "evt-2"},
    )
    assert replayed.status_code == 401 and "mismatch" in replayed.text
    assert counts(client) == (1, 1)
