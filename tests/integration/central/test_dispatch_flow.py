"""Dispatch end to end on a running central with the shipped rules, the real database (SQLite
and PostgreSQL) and the machine's Mosquitto: a report is offered to the best engineer (who
hears of it over MQTT), declined, offered to the next, accepted and travelled to; parallel
offers where the first to accept wins; lapsed offers; the dispatcher's queue after too many
misses; a supervisor's override, audited."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from support import add_people

from central.api.app import create_app
from central.domain.permissions import Role
from central.services.audit import verify
from central.settings import Settings
from central.storage.models import Notification

pytestmark = pytest.mark.integration

SITE = {"name": "Plant 1 / 一号厂区", "region": "pudong", "lat": 31.2304, "lon": 121.4737}
PEOPLE = {
    "disp.zhao": Role.dispatcher, "sup.wang": Role.supervisor, "cust.chen": Role.customer,
    "admin": Role.admin, "eng.li": Role.engineer, "eng.wu": Role.engineer,
    "eng.zhou": Role.engineer, "eng.sun": Role.engineer, "eng.qian": Role.engineer,
}  # fmt: skip


def engineer(name: str, km_north: float, **over: Any) -> dict[str, Any]:
    body = {
        "name": name, "department": "hvac", "regions": ["plant-1"], "skills": {"hvac": 3},
        "home_lat": SITE["lat"] + km_north / 111.2, "home_lon": SITE["lon"],
    }  # fmt: skip
    body.update(over)
    return body


class Inbox:
    """Everything central publishes to engineers over MQTT under this test's topic root."""

    def __init__(self, root: str) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"inbox-{root}")
        self.client.on_connect = lambda c, *_: (
            c.subscribe(f"{root}/v1/_notify/#", qos=1),
            self._ready.set(),
        )
        self.client.on_message = lambda _c, _u, m: self.messages.append(
            (m.topic.rsplit("/", 1)[1], json.loads(m.payload))
        )
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()
        assert self._ready.wait(10)

    def wait_for(self, who: str, kind: str, ticket: int, within: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for to, m in list(self.messages):
                if (to, m["kind"], m["ticket"]) == (who, kind, ticket):
                    return m
            time.sleep(0.05)
        raise AssertionError(f"no {kind} for {who} on #{ticket}; got {self.messages}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def stack(db_url: str, mosquitto: str) -> Iterator[tuple[TestClient, Inbox]]:
    root = f"fltest-{uuid.uuid4().hex[:10]}"
    inbox = Inbox(root)
    settings = Settings(
        db_url=db_url, broker_url=mosquitto, topic_root=root, rules_engine="reference",
        consumer_client_id=f"central-{root}",
    )  # fmt: skip
    app = create_app(settings)
    try:
        with TestClient(app) as c:
            c.people = add_people(app.state.sessions, PEOPLE)  # type: ignore[attr-defined]
            admin = c.people["admin"]  # type: ignore[attr-defined]
            assert c.put("/sites/plant-1", json=SITE, headers=admin).status_code == 200
            yield c, inbox
    finally:
        inbox.close()


def st(t: dict[str, Any]) -> str:
    return t["state"]["key"]


def h(c: TestClient, who: str) -> dict[str, str]:
    return c.people[who]  # type: ignore[attr-defined]


def put_engineer(c: TestClient, username: str, body: dict[str, Any]) -> None:
    r = c.put(f"/engineers/{username}", json=body, headers=h(c, "admin"))
    assert r.status_code == 200, r.text


def report(c: TestClient, description: str, urgency: str = "low") -> dict[str, Any]:
    r = c.post(
        "/tickets",
        json={"location": "Plant 1, office 203", "problem_type": "other", "urgency": urgency,
              "description": description, "reporter": "Chen Jing", "contact": "13800000000",
              "site": "plant-1"},
        headers=h(c, "cust.chen"),
    )  # fmt: skip
    assert r.status_code == 201, r.text
    return r.json()["ticket"]


def ticket(c: TestClient, tid: int) -> dict[str, Any]:
    return c.get(f"/tickets/{tid}", headers=h(c, "sup.wang")).json()


def test_offer_decline_next_accept_en_route(stack: tuple[TestClient, Inbox]) -> None:
    c, inbox = stack
    put_engineer(c, "eng.li", engineer("Li Wei 李伟", 1.0))
    put_engineer(c, "eng.wu", engineer("Wu Fang 吴芳", 6.0))
    put_engineer(c, "eng.zhou", engineer("Zhou Jie 周杰", 0.5, department="plumbing",
                                         skills={"plumbing": 4}))  # fmt: skip
    t = report(c, "办公室空调不制冷，出风是热的")
    assert (st(t), t["department"], t["assignee"]) == ("dispatched", "hvac", "eng.li")
    assert t["dispatch_policy"] in ("standard", "urgent")
    offer = inbox.wait_for("eng.li", "offer", t["id"])
    assert offer["payload"]["title"] == t["title"]

    # why: eng.li is nearest; eng.zhou is not in the hvac department
    why = c.get(f"/tickets/{t['id']}/dispatch", headers=h(c, "disp.zhao")).json()
    first = why["decisions"][0]
    assert (first["kind"], first["chosen"]) == ("auto", ["eng.li"])
    ranked = [x["engineer"] for x in first["candidates"] if x["eligible"]]
    assert ranked == ["eng.li", "eng.wu"]
    # eng.zhou lacks the skill: never a candidate (the reason counts such engineers)
    assert "eng.zhou" not in [x["engineer"] for x in first["candidates"]]
    assert any("eng.li" in line or "Li Wei" in line for line in first["explanation"])

    # the engineer sees the offer, declines; the next best is offered it
    mine = c.get("/me/offers", headers=h(c, "eng.li")).json()
    assert [o["ticket"] for o in mine] == [t["id"]]
    r = c.post(f"/tickets/{t['id']}/decline", json={"reason": "在另一个现场 / on another job"},
               headers=h(c, "eng.li"))  # fmt: skip
    assert r.status_code == 200, r.text
    now = ticket(c, t["id"])
    assert (st(now), now["assignee"]) == ("dispatched", "eng.wu")
    inbox.wait_for("eng.wu", "offer", t["id"])
    # eng.li may no longer see it (BOLA), nor accept it
    assert c.get(f"/tickets/{t['id']}", headers=h(c, "eng.li")).status_code == 404

    assert c.post(f"/tickets/{t['id']}/accept", json={}, headers=h(c, "eng.wu")).status_code == 200
    gps = {"location": {"lat": 31.28, "lon": 121.47}}
    r = c.post(f"/tickets/{t['id']}/depart", json=gps, headers=h(c, "eng.wu"))
    assert r.status_code == 200 and st(r.json()) == "en_route"
    why = c.get(f"/tickets/{t['id']}/dispatch", headers=h(c, "disp.zhao")).json()
    assert [(o["engineer"], o["state"]) for o in why["offers"]] == [
        ("eng.li", "declined"), ("eng.wu", "accepted"),
    ]  # fmt: skip
    assert [d["chosen"] for d in why["decisions"]] == [["eng.li"], ["eng.wu"]]
    with c.app.state.sessions() as s:  # type: ignore[attr-defined]
        assert verify(s).ok


def test_parallel_offers_first_to_accept_wins(stack: tuple[TestClient, Inbox]) -> None:
    c, inbox = stack
    gas = {"skills": {"gas_safety": 3}, "certifications": {"gas-licence": None},
           "department": "emergency"}  # fmt: skip
    for i, name in enumerate(("eng.li", "eng.wu", "eng.zhou", "eng.sun")):
        put_engineer(c, name, engineer(name, 1.0 + i, **gas))
    t = report(c, "厨房有很重的煤气味", urgency="critical")
    assert (t["dispatch_policy"], st(t), t["assignee"]) == ("emergency", "dispatched", None)
    offered = sorted(t["offered_to"]) if "offered_to" in t else None
    why = c.get(f"/tickets/{t['id']}/dispatch", headers=h(c, "disp.zhao")).json()
    assert why["offered_to"] == ["eng.li", "eng.wu", "eng.zhou"]  # the three nearest
    assert offered in (None, ["eng.li", "eng.wu", "eng.zhou"])
    for who in ("eng.li", "eng.wu", "eng.zhou"):
        inbox.wait_for(who, "offer", t["id"])
    # one declines: the others still hold it
    r = c.post(f"/tickets/{t['id']}/decline", json={"reason": "too far"}, headers=h(c, "eng.li"))
    assert r.status_code == 200 and st(r.json()) == "dispatched"
    assert (
        c.post(f"/tickets/{t['id']}/accept", json={}, headers=h(c, "eng.zhou")).status_code == 200
    )
    late = c.post(f"/tickets/{t['id']}/accept", json={}, headers=h(c, "eng.wu"))
    assert late.status_code == 404  # no longer theirs to see
    assert ticket(c, t["id"])["assignee"] == "eng.zhou"
    inbox.wait_for("eng.wu", "offer_withdrawn", t["id"])
    # eng.sun, fourth nearest, was never offered it
    assert not [m for to, m in inbox.messages if to == "eng.sun"]


def test_a_lapsed_offer_moves_on_and_misses_go_to_the_dispatcher(
    stack: tuple[TestClient, Inbox],
) -> None:
    c, inbox = stack
    for i, name in enumerate(("eng.li", "eng.wu", "eng.zhou", "eng.sun")):
        put_engineer(c, name, engineer(name, 1.0 + i))
    t = report(c, "会议室空调不制冷")
    assert ticket(c, t["id"])["assignee"] == "eng.li"
    sweeper = c.app.state.offer_sweeper  # type: ignore[attr-defined]
    later = datetime.now(UTC) + timedelta(hours=1)
    assert sweeper.sweep(later) == 1
    assert ticket(c, t["id"])["assignee"] == "eng.wu"
    inbox.wait_for("eng.li", "offer_lapsed", t["id"])
    assert sweeper.sweep(later + timedelta(hours=1)) == 1  # eng.wu lets it lapse too
    assert ticket(c, t["id"])["assignee"] == "eng.zhou"
    r = c.post(f"/tickets/{t['id']}/decline", json={"reason": "no"}, headers=h(c, "eng.zhou"))
    assert r.status_code == 200
    now = ticket(c, t["id"])  # three misses: the standard policy's limit
    assert (st(now), now["assignee"]) == ("new", None)
    why = c.get(f"/tickets/{t['id']}/dispatch", headers=h(c, "disp.zhao")).json()
    assert why["needs_dispatcher"] is True and why["misses"] == 3
    alerts = c.get("/me/notifications", headers=h(c, "disp.zhao")).json()
    assert any(a["kind"] == "alert" and a["ticket"] == t["id"] for a in alerts)
    assert sweeper.sweep(later + timedelta(hours=5)) == 0  # nothing left to lapse


def test_an_override_needs_a_supervisor_and_a_reason_and_is_audited(
    stack: tuple[TestClient, Inbox],
) -> None:
    c, _ = stack
    put_engineer(c, "eng.li", engineer("Li Wei", 1.0))
    put_engineer(c, "eng.zhou", engineer("Zhou Jie", 0.5, department="plumbing",
                                         skills={"plumbing": 4}))  # fmt: skip
    t = report(c, "走廊空调滴水")
    assert ticket(c, t["id"])["assignee"] == "eng.li"
    url = f"/tickets/{t['id']}/dispatch"
    # moving a job on offer to an unqualified engineer: the dispatcher may not
    r = c.post(url, json={"engineer": "eng.zhou"}, headers=h(c, "disp.zhao"))
    assert r.status_code == 403 and "override" in r.json()["detail"]
    r = c.post(url, json={"engineer": "eng.zhou"}, headers=h(c, "sup.wang"))
    assert r.status_code == 422
    r = c.post(url, json={"engineer": "eng.zhou", "reason": "只有他在附近 / only one nearby"},
               headers=h(c, "sup.wang"))  # fmt: skip
    assert r.status_code == 200, r.text
    assert (st(r.json()), r.json()["assignee"]) == ("dispatched", "eng.zhou")
    detail = ticket(c, t["id"])
    entry = [e for e in detail["history"] if e["action"] == "dispatch"][-1]
    assert entry["actor"] == "sup.wang" and entry["data"]["override"] is True
    assert entry["data"]["reason"] == "只有他在附近 / only one nearby"
    assert entry["data"]["recommended"][0] == "eng.li"
    assert any(f.startswith("skills") for f in entry["data"]["failed"])
    why = c.get(url, headers=h(c, "disp.zhao")).json()
    assert why["decisions"][-1]["kind"] == "override"
    assert [(o["engineer"], o["state"]) for o in why["offers"]] == [
        ("eng.li", "withdrawn"), ("eng.zhou", "open"),
    ]  # fmt: skip
    with c.app.state.sessions() as s:  # type: ignore[attr-defined]
        assert verify(s).ok
        kinds = s.execute(select(Notification.kind).where(Notification.recipient == "eng.li"))
        assert list(kinds.scalars()) == ["offer", "offer_withdrawn"]


def test_nobody_qualified_waits_for_the_dispatcher(stack: tuple[TestClient, Inbox]) -> None:
    c, inbox = stack
    t = report(c, "空调异响")  # no engineers at all
    now = ticket(c, t["id"])
    assert (st(now), now["assignee"]) == ("new", None)
    inbox.wait_for("dispatcher", "alert", t["id"])
    # a dispatcher picks by hand: no override, no reason needed for a qualified engineer
    put_engineer(c, "eng.wu", engineer("Wu Fang", 3.0))
    r = c.post(f"/tickets/{t['id']}/dispatch", json={"engineer": "eng.wu"},
               headers=h(c, "disp.zhao"))  # fmt: skip
    assert r.status_code == 200 and r.json()["assignee"] == "eng.wu"
    why = c.get(f"/tickets/{t['id']}/dispatch", headers=h(c, "disp.zhao")).json()
    assert why["needs_dispatcher"] is False and why["decisions"][-1]["kind"] == "manual"
