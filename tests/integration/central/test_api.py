"""The REST API over a real database (SQLite and PostgreSQL): reading tickets, the engineer's
minimal path, and errors that name what is wrong."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from central.api.app import create_app
from central.ingest.events import ingest
from central.settings import Settings
from fieldloop.messages import Event, EventKind

pytestmark = pytest.mark.integration


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(db_url=db_url, broker_url=None))
    with TestClient(app) as c:
        yield c


def raise_ticket(client: TestClient, asset: str = "CH-01") -> int:
    event = Event(
        site="plant-1",
        device="chiller-1",
        asset=asset,
        event_time=datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
        seq=1,
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


def test_minimal_engineer_path_to_closed(client: TestClient) -> None:
    tid = raise_ticket(client)
    r = client.post(f"/tickets/{tid}/accept", json={"actor": "eng.li"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == {"key": "accepted", "en": "Accepted", "zh": "接单"}
    assert body["assignee"] == "eng.li"
    assert "complete" in body["allowed_actions"]
    r = client.post(f"/tickets/{tid}/complete", json={"actor": "eng.li", "report": "replaced fan"})
    assert r.json()["state"]["key"] == "completed"
    r = client.post(f"/tickets/{tid}/close", json={"actor": "sup.wang"})
    assert r.json()["state"]["zh"] == "关闭"

    detail = client.get(f"/tickets/{tid}").json()
    assert [h["to_state"] for h in detail["history"]] == ["new", "accepted", "completed", "closed"]
    assert detail["history"][2]["note"] == "replaced fan"
    assert all(len(h["hash"]) == 64 for h in detail["history"])


def test_a_step_out_of_order_is_409_naming_state_and_allowed_actions(client: TestClient) -> None:
    tid = raise_ticket(client)
    r = client.post(f"/tickets/{tid}/close", json={"actor": "sup.wang"})
    assert r.status_code == 409
    detail = r.json()["detail"]
    assert "new" in detail and "accept" in detail
    # nothing was written
    assert len(client.get(f"/tickets/{tid}").json()["history"]) == 1


def test_bad_bodies_are_422_naming_every_field(client: TestClient) -> None:
    tid = raise_ticket(client)
    r = client.post(f"/tickets/{tid}/complete", json={"actor": "", "colour": "red"})
    assert r.status_code == 422
    fields = {tuple(e["loc"]) for e in r.json()["detail"]}
    assert ("body", "actor") in fields
    assert ("body", "report") in fields
    assert ("body", "colour") in fields
    r = client.post(
        f"/tickets/{tid}/accept", content=b"{oops", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422


def test_unknown_ticket_is_404(client: TestClient) -> None:
    assert client.get("/tickets/999999").status_code == 404
    r = client.post("/tickets/999999/accept", json={"actor": "eng"})
    assert r.status_code == 404 and "999999" in r.json()["detail"]


def test_list_filters_by_state_in_either_language_and_by_asset(client: TestClient) -> None:
    a = raise_ticket(client, "CH-01")
    b = raise_ticket(client, "CH-02")
    client.post(f"/tickets/{b}/accept", json={"actor": "eng"})
    assert [t["id"] for t in client.get("/tickets", params={"state": "新建"}).json()["items"]] == [
        a
    ]
    assert [
        t["id"] for t in client.get("/tickets", params={"state": "Accepted"}).json()["items"]
    ] == [b]
    assert client.get("/tickets", params={"asset": "CH-02"}).json()["total"] == 1
    r = client.get("/tickets", params={"state": "sleeping"})
    assert r.status_code == 422 and "新建" in r.json()["detail"]


def test_board_docs_and_states(client: TestClient) -> None:
    raise_ticket(client)
    board = client.get("/board")
    assert board.status_code == 200 and "新建" in board.text and "CH-01" in board.text
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/tickets", "/tickets/{ticket_id}", "/tickets/{ticket_id}/accept"} <= set(paths)
    states = client.get("/states").json()
    assert {"key": "waiting_parts", "en": "Waiting for parts", "zh": "待料"} in states
    assert client.get("/healthz").json() == {"status": "ok"}
