"""The REST API over a real database (SQLite and PostgreSQL): the whole engineer path, roles
(who may do what, and to whose tickets), intake, idempotency, and errors that name what is
wrong."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from support import PEOPLE, add_people

from central.api.app import create_app
from central.domain.permissions import Role
from central.ingest.events import ingest
from central.services.audit import verify
from central.services.users import create_user, issue_token
from central.settings import Settings
from central.storage.models import Ticket, TicketEvent
from fieldloop.messages import Event, EventKind

pytestmark = pytest.mark.integration

GPS = {"lat": 31.2304, "lon": 121.4737, "accuracy_m": 6.5}
REPORT = {
    "location": "Building A, room 301",
    "problem_type": "hvac",
    "urgency": "high",
    "description": "Air conditioner blows warm air\nsince this morning",
    "reporter": "Chen Jing",
    "contact": "+86 138 0000 0000",
}


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(db_url=db_url, broker_url=None, workers=False))
    with TestClient(app) as c:
        c.people = add_people(app.state.sessions)  # type: ignore[attr-defined]
        yield c


def as_(client: TestClient, who: str) -> dict[str, str]:
    return client.people[who]  # type: ignore[attr-defined]


def raise_ticket(client: TestClient, asset: str = "CH-01", seq: int = 1) -> int:
    event = Event(
        site="plant-1",
        device=f"dev-{asset}",
        asset=asset,
        event_time=datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
        seq=seq,
        kind=EventKind.fault_opened,
        rule_id="chiller.discharge_temp.high",
        title="Discharge temperature high",
        location="Plant room B1",
        metric="discharge_temp",
        value=97.0,
        threshold=95.0,
    )
    outcome = ingest(client.app.state.sessions, event, datetime.now(UTC))  # type: ignore[attr-defined]
    assert outcome.ticket_id is not None
    return outcome.ticket_id


def post(client: TestClient, path: str, who: str, body: dict | None = None, **kw):  # type: ignore[no-untyped-def]
    return client.post(path, json=body if body is not None else {}, headers=as_(client, who), **kw)


def ok(r):  # type: ignore[no-untyped-def]
    assert r.status_code in (200, 201), r.text
    return r.json()


def to_in_progress(client: TestClient, tid: int, engineer: str = "eng.li") -> None:
    t = f"/tickets/{tid}"
    ok(post(client, f"{t}/dispatch", "disp.zhao", {"engineer": engineer}))
    ok(post(client, f"{t}/accept", engineer))
    ok(post(client, f"{t}/depart", engineer, {"location": GPS}))
    ok(post(client, f"{t}/arrive", engineer, {"location": GPS}))
    ok(post(client, f"{t}/start", engineer))


def test_every_field_state_to_a_verified_close(client: TestClient) -> None:
    tid = raise_ticket(client)
    t = f"/tickets/{tid}"
    body = ok(post(client, f"{t}/dispatch", "disp.zhao", {"engineer": "eng.li"}))
    assert body["state"] == {"key": "dispatched", "en": "Dispatched", "zh": "派单"}
    assert body["assignee"] == "eng.li"
    assert body["your_actions"] == ["transfer"]  # the dispatcher's part, now
    mine = ok(client.get("/me/jobs", headers=as_(client, "eng.li")))
    assert [j["id"] for j in mine["items"]] == [tid]
    assert mine["items"][0]["your_actions"] == ["accept", "decline"]
    ok(post(client, f"{t}/accept", "eng.li"))
    ok(post(client, f"{t}/depart", "eng.li", {"location": GPS}))
    ok(post(client, f"{t}/arrive", "eng.li", {"location": GPS, "note": "at the plant room"}))
    ok(post(client, f"{t}/start", "eng.li"))
    parts = [{"part_no": "GSK-220", "description": "gasket", "quantity": 2}]
    waiting = ok(post(client, f"{t}/wait-parts", "eng.li", {"parts": parts}))
    assert waiting["state"]["zh"] == "待料"
    ok(post(client, f"{t}/resume", "eng.li"))
    ok(post(client, f"{t}/notes", "eng.li", {"text": "condenser tubes fouled"}))
    ok(post(client, f"{t}/parts", "eng.li", {"parts": parts}))
    done = ok(post(client, f"{t}/complete", "eng.li", {"report": "cleaned tubes, new gasket"}))
    assert done["state"]["key"] == "completed" and done["completion_report"].startswith("cleaned")
    ok(post(client, f"{t}/request-verification", "eng.li"))
    link = ok(post(client, f"{t}/customer-link", "disp.zhao"))["follow_url"]
    token = link.removeprefix("/t/")
    seen = ok(client.get(f"/track/{token}"))
    assert seen["state"]["zh"] == "待验收" and seen["can_confirm"] is True
    assert ok(client.post(f"/track/{token}/confirm", json={}))["state"]["key"] == "verified"
    rated = ok(client.post(f"/track/{token}/rating", json={"score": 5, "comment": "fast"}))
    assert rated["csat_score"] == 5
    closed = ok(post(client, f"{t}/close", "sup.wang", {"note": "reviewed"}))
    assert closed["state"]["key"] == "closed" and closed["csat_score"] == 5

    detail = ok(client.get(t, headers=as_(client, "sup.wang")))
    assert [h["action"] for h in detail["history"]] == [
        "created", "dispatch", "accept", "depart", "arrive", "start", "wait_parts", "resume",
        "note", "parts_used", "complete", "request_verification", "customer_link", "confirm",
        "rated", "close",
    ]  # fmt: skip
    arrive = detail["history"][4]
    assert arrive["actor"] == "eng.li" and arrive["data"]["gps"] == GPS
    assert arrive["note"] == "at the plant room"
    assert detail["history"][6]["data"]["parts"][0]["part_no"] == "GSK-220"
    assert detail["history"][13]["actor"].startswith("customer:")
    assert [p["part_no"] for p in detail["parts"]] == ["GSK-220"]
    stages = {s["state"]["key"]: s for s in detail["stages"]}
    assert set(stages) >= {
        "new",
        "dispatched",
        "accepted",
        "en_route",
        "on_site",
        "in_progress",
        "waiting_parts",
        "completed",
        "pending_verification",
        "verified",
    }
    assert stages["in_progress"]["visits"] == 2
    assert all(s["seconds"] >= 0 for s in detail["stages"])
    with client.app.state.sessions() as s:  # type: ignore[attr-defined]
        assert verify(s).ok


def test_a_step_out_of_order_is_409_and_writes_nothing(client: TestClient) -> None:
    tid = raise_ticket(client)
    r = post(client, f"/tickets/{tid}/cancel", "sup.wang", {"reason": "dup"})
    assert r.status_code == 200
    r = post(client, f"/tickets/{tid}/reopen", "sup.wang", {"reason": "not a dup"})
    assert r.status_code == 409
    detail = r.json()["detail"]
    assert "cancelled" in detail and "取消" in detail
    history = ok(client.get(f"/tickets/{tid}", headers=as_(client, "sup.wang")))["history"]
    assert len(history) == 2


def test_completion_is_refused_before_work_starts(client: TestClient) -> None:
    tid = raise_ticket(client)
    ok(post(client, f"/tickets/{tid}/dispatch", "disp.zhao", {"engineer": "eng.li"}))
    ok(post(client, f"/tickets/{tid}/accept", "eng.li"))
    r = post(client, f"/tickets/{tid}/complete", "eng.li", {"report": "done"})
    assert r.status_code == 409 and "allowed now: depart" in r.json()["detail"]


def test_bad_bodies_are_422_naming_every_field(client: TestClient) -> None:
    tid = raise_ticket(client)
    to_in_progress(client, tid)
    r = post(
        client, f"/tickets/{tid}/complete", "eng.li", {"colour": "red", "location": {"lat": 91}}
    )
    assert r.status_code == 422
    fields = {f["field"] for f in r.json()["detail"]["fields"]}
    assert {"body.report", "body.colour", "body.location.lat", "body.location.lon"} <= fields
    r = client.post(
        f"/tickets/{tid}/start",
        content=b"{oops",
        headers={"content-type": "application/json", **as_(client, "eng.li")},
    )
    assert r.status_code == 422


def test_server_owned_fields_cannot_be_set(client: TestClient) -> None:
    """Mass assignment: state, assignee, priority, hashes are not inputs anywhere."""
    for extra in (
        {"state": "closed"},
        {"assignee": "eng.li"},
        {"priority": "P1"},
        {"history_head": "0" * 64},
        {"closed_by": "me"},
        {"sla_due": "2030-01-01"},
    ):
        r = post(client, "/tickets", "cust.chen", {**REPORT, **extra})
        assert r.status_code == 422, extra
        assert [f["field"] for f in r.json()["detail"]["fields"]] == [f"body.{next(iter(extra))}"]
    tid = raise_ticket(client)
    r = post(
        client, f"/tickets/{tid}/dispatch", "disp.zhao", {"engineer": "eng.li", "state": "closed"}
    )
    assert r.status_code == 422
    with client.app.state.sessions() as s:  # type: ignore[attr-defined]
        assert s.get(Ticket, tid).state == "new"


def test_close_without_the_customers_word_needs_a_reason(client: TestClient) -> None:
    tid = raise_ticket(client)
    to_in_progress(client, tid)
    ok(post(client, f"/tickets/{tid}/complete", "eng.li", {"report": "fixed"}))
    r = post(client, f"/tickets/{tid}/close", "sup.wang", {})
    assert r.status_code == 422
    assert r.json()["detail"]["fields"] == [
        {"field": "body.reason", "problem": "required to close"}
    ]
    closed = ok(post(client, f"/tickets/{tid}/close", "sup.wang", {"reason": "customer away"}))
    assert closed["state"]["key"] == "closed"
    last = ok(client.get(f"/tickets/{tid}", headers=as_(client, "sup.wang")))["history"][-1]
    assert last["data"] == {"reason": "customer away", "without_customer_confirmation": True}


def test_rejected_fix_reopens_to_the_same_engineer(client: TestClient) -> None:
    r = ok(post(client, "/tickets", "cust.chen", REPORT))
    tid, token = r["ticket"]["id"], r["follow_url"].removeprefix("/t/")
    to_in_progress(client, tid)
    ok(post(client, f"/tickets/{tid}/complete", "eng.li", {"report": "reset the unit"}))
    ok(post(client, f"/tickets/{tid}/request-verification", "eng.li"))
    r = client.post(f"/track/{token}/reject", json={})
    assert r.status_code == 422  # a rejection says why
    back = ok(client.post(f"/track/{token}/reject", json={"reason": "still warm"}))
    assert back["state"]["key"] == "reopened"
    # the customer with an account may do the same over the API, on their own ticket only
    t = ok(client.get(f"/tickets/{tid}", headers=as_(client, "cust.chen")))
    assert t["reopen_count"] == 1 and t["assignee"] == "eng.li"
    ok(post(client, f"/tickets/{tid}/resume", "eng.li"))
    ok(post(client, f"/tickets/{tid}/complete", "eng.li", {"report": "replaced the fan"}))
    ok(post(client, f"/tickets/{tid}/request-verification", "eng.li"))
    assert ok(post(client, f"/tickets/{tid}/confirm", "cust.chen"))["state"]["key"] == "verified"
    ok(post(client, f"/tickets/{tid}/rating", "cust.chen", {"score": 4}))
    r = post(client, f"/tickets/{tid}/rating", "cust.chen", {"score": 5})
    assert r.status_code == 422 and "already rated" in r.text


def test_transfers_are_counted_and_send_the_job_back(client: TestClient) -> None:
    tid = raise_ticket(client)
    to_in_progress(client, tid)
    body = {"department": "electrical", "reason": "it is the supply, not the chiller"}
    t = ok(post(client, f"/tickets/{tid}/transfer", "disp.zhao", body))
    assert (t["state"]["key"], t["department"], t["transfers"], t["assignee"]) == (
        "new", "electrical", 1, None,
    )  # fmt: skip
    ok(post(client, f"/tickets/{tid}/transfer", "sup.wang", {"department": "hvac", "reason": "no"}))
    t = ok(client.get(f"/tickets/{tid}", headers=as_(client, "sup.wang")))
    assert t["transfers"] == 2
    transfers = [e for e in t["history"] if e["action"] == "transfer"]
    assert transfers[-1]["data"]["from_department"] == "electrical"
    # the second bounce trips the hand-off circuit breaker (sla.yaml handoffs.max_bounces)
    assert [e["action"] for e in t["history"]].count("circuit_breaker") == 1
    r = post(client, f"/tickets/{tid}/transfer", "disp.zhao", {"department": "x"})
    assert r.status_code == 422


# --- roles ----------------------------------------------------------------------------------


def test_no_token_expired_token_unknown_token_are_401(client: TestClient) -> None:
    assert client.get("/tickets").status_code == 401
    r = client.get("/tickets", headers={"Authorization": "Bearer flt_nope"})
    assert r.status_code == 401 and "not known" in r.json()["detail"]
    with client.app.state.sessions() as s, s.begin():  # type: ignore[attr-defined]
        user = create_user(s, "old.timer", Role.supervisor, now=datetime.now(UTC))
        token = issue_token(
            s, user, now=datetime.now(UTC) - timedelta(hours=2), ttl=timedelta(hours=1)
        ).token
    r = client.get("/tickets", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"


def test_sign_in_with_a_password(client: TestClient) -> None:
    with client.app.state.sessions() as s, s.begin():  # type: ignore[attr-defined]
        create_user(s, "eng.qin", Role.engineer, now=datetime.now(UTC), password="correct horse")
    r = client.post("/auth/token", json={"username": "eng.qin", "password": "wrong password"})
    assert r.status_code == 401
    r = client.post("/auth/token", json={"username": "nobody", "password": "correct horse"})
    assert r.status_code == 401 and r.json()["detail"] == "unknown user or wrong password"
    token = ok(
        client.post("/auth/token", json={"username": "eng.qin", "password": "correct horse"})
    )
    me = ok(client.get("/me", headers={"Authorization": f"Bearer {token['access_token']}"}))
    assert me["role"] == "engineer"


def test_an_engineer_sees_and_changes_only_their_own_jobs(client: TestClient) -> None:
    mine, theirs = raise_ticket(client, "CH-01"), raise_ticket(client, "CH-02")
    ok(post(client, f"/tickets/{mine}/dispatch", "disp.zhao", {"engineer": "eng.li"}))
    ok(post(client, f"/tickets/{theirs}/dispatch", "disp.zhao", {"engineer": "eng.wu"}))
    listed = ok(client.get("/tickets", headers=as_(client, "eng.li")))
    assert [t["id"] for t in listed["items"]] == [mine] and listed["total"] == 1
    # someone else's job is not there at all (404, not 403: no probing of job numbers)
    assert client.get(f"/tickets/{theirs}", headers=as_(client, "eng.li")).status_code == 404
    for step, body in (("accept", {}), ("decline", {"reason": "x"})):
        r = post(client, f"/tickets/{theirs}/{step}", "eng.li", body)
        assert r.status_code == 404, step
    r = post(client, f"/tickets/{theirs}/notes", "eng.li", {"text": "hi"})
    assert r.status_code == 404
    # nor may an engineer do a dispatcher's or supervisor's part on their own job
    for path, body in (
        ("dispatch", {"engineer": "eng.li"}),
        ("cancel", {"reason": "x"}),
        ("transfer", {"department": "x", "reason": "y"}),
        ("customer-link", {}),
    ):
        r = post(client, f"/tickets/{mine}/{path}", "eng.li", body)
        assert r.status_code == 403, path
        assert "engineer may not" in r.json()["detail"]


@pytest.mark.parametrize("who", ["disp.zhao", "eng.li", "cust.chen", "admin", "planner.he"])
def test_only_a_supervisor_closes_cancels_and_reopens(client: TestClient, who: str) -> None:
    tid = raise_ticket(client)
    to_in_progress(client, tid)
    ok(post(client, f"/tickets/{tid}/complete", "eng.li", {"report": "done"}))
    for action in ("close", "cancel"):
        r = post(client, f"/tickets/{tid}/{action}", who, {"reason": "why not"})
        assert r.status_code in (403, 404), (who, action, r.text)
    ok(post(client, f"/tickets/{tid}/close", "sup.wang", {"reason": "checked"}))
    r = post(client, f"/tickets/{tid}/reopen", who, {"reason": "again"})
    assert r.status_code in (403, 404)
    assert (
        ok(post(client, f"/tickets/{tid}/reopen", "sup.wang", {"reason": "again"}))["state"]["key"]
        == "reopened"
    )


def test_a_customer_sees_only_their_reports(client: TestClient) -> None:
    created = ok(post(client, "/tickets", "cust.chen", REPORT))
    assert created["follow_url"].startswith("/t/flc_")
    other = raise_ticket(client)
    listed = ok(client.get("/tickets", headers=as_(client, "cust.chen")))
    assert [t["id"] for t in listed["items"]] == [created["ticket"]["id"]]
    assert client.get(f"/tickets/{other}", headers=as_(client, "cust.chen")).status_code == 404
    # a customer confirms nothing that is not theirs, and no one confirms for a customer
    assert post(client, f"/tickets/{other}/confirm", "cust.chen").status_code == 404
    assert post(client, f"/tickets/{other}/confirm", "sup.wang").status_code == 403


def test_admins_and_planners_read_but_take_no_ticket_action(client: TestClient) -> None:
    tid = raise_ticket(client)
    for who in ("admin", "planner.he"):
        assert client.get(f"/tickets/{tid}", headers=as_(client, who)).status_code == 200
        r = post(client, f"/tickets/{tid}/dispatch", who, {"engineer": "eng.li"})
        assert r.status_code == 403


def test_users_are_managed_by_admins(client: TestClient) -> None:
    body = {"username": "eng.new", "role": "engineer", "password": "a long password"}
    assert post(client, "/users", "sup.wang", body).status_code == 403
    assert ok(post(client, "/users", "admin", body))["role"] == "engineer"
    r = post(client, "/users", "admin", {"username": "edge-1", "role": "device"})
    assert r.status_code == 422 and "site" in r.text
    users = ok(client.get("/users", params={"role": "engineer"}, headers=as_(client, "admin")))
    assert {u["username"] for u in users["items"]} == {"eng.li", "eng.wu", "eng.new"}


# --- intake ---------------------------------------------------------------------------------


def test_a_report_needs_every_mandatory_field(client: TestClient) -> None:
    r = post(client, "/tickets", "cust.chen", {})
    assert r.status_code == 422
    named = {f["field"] for f in r.json()["detail"]["fields"]}
    assert named == {f"body.{k}" for k in REPORT}
    with client.app.state.sessions() as s:  # type: ignore[attr-defined]
        assert s.execute(select(func.count()).select_from(Ticket)).scalar_one() == 0


def test_a_report_in_chinese(client: TestClient) -> None:
    body = {**REPORT, "urgency": "紧急", "problem_type": "空调", "description": "空调不制冷"}
    t = ok(post(client, "/tickets", "disp.zhao", body))["ticket"]
    assert (t["urgency"], t["priority"], t["title"], t["source"]) == (
        "critical", "P1", "空调不制冷", "api",
    )  # fmt: skip
    assert t["reporter"] == "Chen Jing"


def test_devices_cannot_report_or_read(client: TestClient) -> None:
    heads = add_people(client.app.state.sessions, {"site-1": Role.device})  # type: ignore[attr-defined]
    assert client.post("/tickets", json=REPORT, headers=heads["site-1"]).status_code == 403
    assert client.get("/tickets", headers=heads["site-1"]).status_code == 403


def test_edge_events_over_http_are_confined_to_the_devices_site(client: TestClient) -> None:
    heads = add_people(client.app.state.sessions, {"edge.test-site": Role.device})  # type: ignore[attr-defined]
    event = Event(
        site="test-site", device="d1", asset="AHU-1", event_time=datetime.now(UTC), seq=1,
        kind=EventKind.fault_opened, rule_id="ahu.fan", title="Fan stopped",
    )  # fmt: skip
    body = event.model_dump(mode="json", by_alias=True)
    ack = ok(client.post("/edge/events", json=body, headers=heads["edge.test-site"]))
    assert ack["result"] == "committed" and ack["ticket_id"]
    again = ok(client.post("/edge/events", json=body, headers=heads["edge.test-site"]))
    assert again["result"] == "duplicate" and again["ticket_id"] == ack["ticket_id"]
    other = {**body, "site": "other-site", "id": body["id"][:-1] + "0"}
    r = client.post("/edge/events", json=other, headers=heads["edge.test-site"])
    assert r.status_code == 403 and "site" in r.json()["detail"]
    assert (
        client.post("/edge/events", json=body, headers=as_(client, "sup.wang")).status_code == 403
    )


# --- idempotency and limits -----------------------------------------------------------------


def test_a_retried_step_returns_the_first_answer_and_acts_once(client: TestClient) -> None:
    tid = raise_ticket(client)
    key = {"Idempotency-Key": "3f0c9a55-retry"}
    first = client.post(
        f"/tickets/{tid}/dispatch", json={"engineer": "eng.li"},
        headers={**as_(client, "disp.zhao"), **key},
    )  # fmt: skip
    again = client.post(
        f"/tickets/{tid}/dispatch", json={"engineer": "eng.li"},
        headers={**as_(client, "disp.zhao"), **key},
    )  # fmt: skip
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert again.headers.get("idempotent-replayed") == "true"
    other = client.post(
        f"/tickets/{tid}/dispatch", json={"engineer": "eng.wu"},
        headers={**as_(client, "disp.zhao"), **key},
    )  # fmt: skip
    assert other.status_code == 422 and "different request" in other.text
    with client.app.state.sessions() as s:  # type: ignore[attr-defined]
        n = s.execute(
            select(func.count()).where(
                TicketEvent.ticket_id == tid, TicketEvent.action == "dispatch"
            )
        ).scalar_one()
        assert n == 1
    # a report retried creates one ticket
    k2 = {**as_(client, "cust.chen"), "Idempotency-Key": "report-1"}
    a = client.post("/tickets", json=REPORT, headers=k2)
    b = client.post("/tickets", json=REPORT, headers=k2)
    assert a.status_code == b.status_code == 201 and a.json() == b.json()


def test_a_body_over_the_limit_is_413_before_it_is_read(client: TestClient) -> None:
    big = {**REPORT, "description": "x" * 2_000_000}
    r = post(client, "/tickets", "cust.chen", big)
    assert r.status_code == 413 and "limit" in r.json()["detail"]


def test_lists_paginate(client: TestClient) -> None:
    ids = [raise_ticket(client, f"CH-{i:02d}") for i in range(7)]
    sup = as_(client, "sup.wang")
    page1 = ok(client.get("/tickets", params={"limit": 3}, headers=sup))
    page3 = ok(client.get("/tickets", params={"limit": 3, "offset": 6}, headers=sup))
    assert page1["total"] == 7 and [t["id"] for t in page1["items"]] == ids[::-1][:3]
    assert [t["id"] for t in page3["items"]] == [ids[0]]
    assert client.get("/tickets", params={"limit": 501}, headers=sup).status_code == 422


def test_list_filters_by_state_in_either_language(client: TestClient) -> None:
    a = raise_ticket(client, "CH-01")
    b = raise_ticket(client, "CH-02")
    ok(post(client, f"/tickets/{b}/dispatch", "disp.zhao", {"engineer": "eng.li"}))
    sup = as_(client, "sup.wang")
    assert [
        t["id"] for t in ok(client.get("/tickets", params={"state": "新建"}, headers=sup))["items"]
    ] == [a]
    assert ok(client.get("/tickets", params={"state": "Dispatched"}, headers=sup))["total"] == 1
    r = client.get("/tickets", params={"state": "sleeping"}, headers=sup)
    assert r.status_code == 422 and "新建" in r.json()["detail"]


def test_the_board_needs_a_dispatcher_or_supervisor_signed_in(client: TestClient) -> None:
    raise_ticket(client)
    r = client.get("/board", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    with client.app.state.sessions() as s, s.begin():  # type: ignore[attr-defined]
        now = datetime.now(UTC)
        create_user(s, "disp.ma", Role.dispatcher, now=now, password="board password")
        create_user(s, "eng.ma", Role.engineer, now=now, password="board password")
    r = client.post("/login", data={"username": "disp.ma", "password": "nope nope"})
    assert r.status_code == 401 and "wrong password" in r.text
    r = client.post("/login", data={"username": "eng.ma", "password": "board password"})
    assert r.status_code == 403
    r = client.post(
        "/login", data={"username": "disp.ma", "password": "board password"},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    board = client.get("/board")
    assert board.status_code == 200 and "新建" in board.text and "CH-01" in board.text
    # the cookie signs in the board page only, never an API call
    assert client.get("/tickets").status_code == 401


def test_docs_and_states(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/tickets", "/tickets/{ticket_id}", "/tickets/{ticket_id}/accept",
            "/tickets/{ticket_id}/wait-parts", "/me/jobs", "/auth/token"} <= set(paths)  # fmt: skip
    states = client.get("/states").json()
    assert {"key": "waiting_parts", "en": "Waiting for parts", "zh": "待料"} in states
    assert client.get("/healthz").json() == {"status": "ok"}


def test_the_people_fixture_covers_every_role_but_device() -> None:
    assert set(PEOPLE.values()) == set(Role) - {Role.device}


def test_a_nul_character_is_a_named_422_not_a_crash(client: TestClient) -> None:
    r = post(client, "/tickets", "cust.chen", {**REPORT, "description": "warm\x00air"})
    assert r.status_code == 422
    assert r.json()["detail"]["fields"][0]["field"] == "body.description"
    tid = raise_ticket(client)
    r = post(client, f"/tickets/{tid}/cancel", "sup.wang", {"reason": "x\x00"})
    assert r.status_code == 422 and "NUL" in r.text
